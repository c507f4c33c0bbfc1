//! The `pageSize` and `pageToken` query parameters every listing route takes.

use crate::error::FieldError;

/// `pageSize`: a number from 1 to `max`, `default` when absent; otherwise a problem is noted.
pub(crate) fn page_size(
    raw: Option<&str>,
    default: usize,
    max: usize,
    problems: &mut Vec<FieldError>,
) -> usize {
    match raw.map(str::parse::<usize>) {
        None => default,
        Some(Ok(n)) if (1..=max).contains(&n) => n,
        Some(_) => {
            problems.push(FieldError::new(
                "pageSize",
                format!("must be a number from 1 to {max}"),
            ));
            default
        }
    }
}

/// `pageToken`: a token from a previous page, read by `parse`; otherwise a problem is noted.
pub(crate) fn page_token<T, E>(
    raw: Option<&str>,
    parse: impl FnOnce(&str) -> Result<T, E>,
    problems: &mut Vec<FieldError>,
) -> Option<T> {
    match raw.map(parse) {
        None => None,
        Some(Ok(token)) => Some(token),
        Some(Err(_)) => {
            problems.push(FieldError::new(
                "pageToken",
                "is not a token from a previous page",
            ));
            None
        }
    }
}
