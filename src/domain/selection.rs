//! Which tables of one dataset a request selects. Pure matching on names: listing the dataset's
//! tables (and reporting explicitly named tables that do not exist) is the caller's job.
//!
//! # Semantics
//!
//! - A dataset entry with no `tables`, no `tableFilter` and no `tableRegex` selects every table.
//! - Otherwise a table is selected when it is named in `tables`, **or** matches the `tableFilter`
//!   glob, **or** fully matches `tableRegex` — the Java service combined `tables` and
//!   `tableFilter` the same way (the example request names `customers`, `orders` *and*
//!   `events_*`), and an OR keeps each field meaning the same thing whatever else is set.
//! - Then every table matching an `excludeTables` entry (a name or a glob) is removed — even one
//!   named in `tables`: an exclusion is the more deliberate statement.
//!
//! Matching is case-sensitive, as BigQuery table names are.

use globset::{GlobBuilder, GlobMatcher};
use regex::{Regex, RegexBuilder};

/// Which part of a dataset entry a [`SelectionError`] is about; the request module turns it
/// into a JSON path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SelectionPart {
    Tables(usize),
    TableFilter,
    TableRegex,
    ExcludeTables(usize),
}

/// One problem with one part of a dataset entry's selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SelectionError {
    pub part: SelectionPart,
    pub message: String,
}

/// The selection fields of one dataset entry, as the user wrote them.
#[derive(Debug, Default)]
pub(crate) struct SelectionInput<'a> {
    pub tables: &'a [String],
    pub table_filter: Option<&'a str>,
    pub table_regex: Option<&'a str>,
    pub exclude_tables: &'a [String],
}

/// Longest pattern we compile. Table ids are at most 1024 bytes, and a bound keeps a hostile
/// request from making us build huge automata.
const MAX_PATTERN_LEN: usize = 1024;
/// Compiled-size bound for `tableRegex` (the regex crate's default is 10 MiB).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A compiled table selection for one dataset; see the module doc for the rules.
#[derive(Debug, Clone)]
pub struct TableSelector {
    named: Vec<String>,
    filter: Option<GlobMatcher>,
    regex: Option<Regex>,
    exclude: Vec<GlobMatcher>,
}

impl TableSelector {
    /// Selects every table of the dataset.
    pub fn all() -> Self {
        Self {
            named: Vec::new(),
            filter: None,
            regex: None,
            exclude: Vec::new(),
        }
    }

    /// Compiles a selection, reporting every bad name and pattern (not only the first).
    ///
    /// Duplicate names are dropped silently (first occurrence kept). Excluding a table that does
    /// not exist is not an error: an exclusion only says what must not be backed up.
    pub(crate) fn build(input: SelectionInput<'_>) -> Result<Self, Vec<SelectionError>> {
        let mut errors = Vec::new();
        let mut named: Vec<String> = Vec::with_capacity(input.tables.len());
        for (i, name) in input.tables.iter().enumerate() {
            if !super::is_valid_table_id(name) {
                errors.push(SelectionError {
                    part: SelectionPart::Tables(i),
                    message: invalid_table_message(name),
                });
            } else if !named.contains(name) {
                named.push(name.clone());
            }
        }
        let filter = input.table_filter.and_then(|pattern| {
            compile_glob(pattern)
                .map_err(|message| {
                    errors.push(SelectionError {
                        part: SelectionPart::TableFilter,
                        message,
                    })
                })
                .ok()
        });
        let regex = input.table_regex.and_then(|pattern| {
            compile_regex(pattern)
                .map_err(|message| {
                    errors.push(SelectionError {
                        part: SelectionPart::TableRegex,
                        message,
                    })
                })
                .ok()
        });
        let mut exclude = Vec::with_capacity(input.exclude_tables.len());
        for (i, pattern) in input.exclude_tables.iter().enumerate() {
            match compile_glob(pattern) {
                Ok(glob) => exclude.push(glob),
                Err(message) => errors.push(SelectionError {
                    part: SelectionPart::ExcludeTables(i),
                    message,
                }),
            }
        }
        if errors.is_empty() {
            Ok(Self {
                named,
                filter,
                regex,
                exclude,
            })
        } else {
            Err(errors)
        }
    }

    /// Whether `table` is selected.
    pub fn matches(&self, table: &str) -> bool {
        let included = self.selects_all()
            || self.named.iter().any(|n| n == table)
            || self.filter.as_ref().is_some_and(|g| g.is_match(table))
            || self.regex.as_ref().is_some_and(|r| r.is_match(table));
        included && !self.exclude.iter().any(|g| g.is_match(table))
    }

    /// Whether an `excludeTables` entry removes `table`, whatever the inclusion rules say (tables
    /// added to a backup for another reason, such as `includeDependents`, still honour it).
    pub fn excludes(&self, table: &str) -> bool {
        self.exclude.iter().any(|g| g.is_match(table))
    }

    /// The tables named explicitly (deduplicated, in request order), so the caller can report
    /// the ones that do not exist instead of silently backing up less than was asked for.
    pub fn named_tables(&self) -> &[String] {
        &self.named
    }

    /// Whether no inclusion rule was given, so every table (minus exclusions) is selected.
    pub fn selects_all(&self) -> bool {
        self.named.is_empty() && self.filter.is_none() && self.regex.is_none()
    }
}

pub(crate) fn invalid_table_message(name: &str) -> String {
    format!(
        "`{name}` is not a valid table name: 1–1024 bytes of letters, marks, numbers, `_`, `-` and spaces"
    )
}

/// Globs: `*` and `?` (any characters except none), `[...]` classes, `{a,b}` alternatives and
/// `\` escapes. Table names contain no `/`, so `*` simply matches any run of characters.
fn compile_glob(pattern: &str) -> Result<GlobMatcher, String> {
    if pattern.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(format!("must be at most {MAX_PATTERN_LEN} bytes"));
    }
    GlobBuilder::new(pattern)
        .literal_separator(false)
        .backslash_escape(true)
        .case_insensitive(false)
        .build()
        .map(|glob| glob.compile_matcher())
        .map_err(|e| format!("`{pattern}` is not a valid glob: {}", e.kind()))
}

/// `tableRegex` must match the whole table name (`events_\d+` does not select
/// `old_events_1`), which is what people mean when they write a pattern for names.
fn compile_regex(pattern: &str) -> Result<Regex, String> {
    if pattern.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(format!("must be at most {MAX_PATTERN_LEN} bytes"));
    }
    RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => "is too complex".to_owned(),
            _ => format!("`{pattern}` is not a valid regular expression"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn selector(
        tables: &[&str],
        filter: Option<&str>,
        regex: Option<&str>,
        exclude: &[&str],
    ) -> TableSelector {
        let tables = strings(tables);
        let exclude = strings(exclude);
        TableSelector::build(SelectionInput {
            tables: &tables,
            table_filter: filter,
            table_regex: regex,
            exclude_tables: &exclude,
        })
        .unwrap()
    }

    #[test]
    fn an_entry_without_rules_selects_every_table() {
        let s = selector(&[], None, None, &[]);
        assert!(s.selects_all());
        for t in ["orders", "events-2026", "daily sales", "表"] {
            assert!(s.matches(t), "{t}");
        }
        assert!(TableSelector::all().matches("anything"));
    }

    #[test]
    fn named_tables_are_selected_exactly() {
        let s = selector(
            &["orders", "daily sales", "café", "orders"],
            None,
            None,
            &[],
        );
        assert!(s.matches("orders"));
        assert!(s.matches("daily sales"));
        assert!(s.matches("café"));
        assert!(!s.matches("Orders"));
        assert!(!s.matches("orders_2026"));
        assert_eq!(s.named_tables(), ["orders", "daily sales", "café"]);
    }

    #[test]
    fn names_filter_and_regex_are_combined_with_or() {
        let s = selector(&["customers"], Some("events_*"), Some(r"log-\d{4}"), &[]);
        assert!(s.matches("customers"));
        assert!(s.matches("events_"));
        assert!(s.matches("events_2026"));
        assert!(s.matches("log-2026"));
        assert!(
            !s.matches("log-2026-01"),
            "the regex must match the whole name"
        );
        assert!(!s.matches("old_events_1"));
        assert!(!s.matches("orders"));
    }

    #[test]
    fn globs_support_question_marks_and_classes() {
        let s = selector(&[], Some("t?_[ab]*"), None, &[]);
        assert!(s.matches("t1_a"));
        assert!(s.matches("tx_bcd"));
        assert!(!s.matches("t1_c"));
        let dash = selector(&[], Some("events-*"), None, &[]);
        assert!(dash.matches("events-2026-01"));
        let unicode = selector(&[], Some("ventes_*"), None, &[]);
        assert!(unicode.matches("ventes_été"));
        let spaced = selector(&[], Some("daily *"), None, &[]);
        assert!(spaced.matches("daily sales"));
    }

    #[test]
    fn exclusions_remove_tables_even_when_named() {
        let s = selector(
            &["orders", "tmp_x"],
            Some("events_*"),
            None,
            &["tmp_*", "events_debug"],
        );
        assert!(s.matches("orders"));
        assert!(!s.matches("tmp_x"));
        assert!(s.matches("events_1"));
        assert!(!s.matches("events_debug"));
        let all_but = selector(&[], None, None, &["staging *", "scratch"]);
        assert!(all_but.selects_all());
        assert!(all_but.matches("orders"));
        assert!(!all_but.matches("staging sales"));
        assert!(!all_but.matches("scratch"));
        assert!(all_but.excludes("scratch") && all_but.excludes("staging x"));
        assert!(!all_but.excludes("orders"));
        assert!(s.excludes("tmp_x") && !s.excludes("customers"));
    }

    #[test]
    fn every_bad_name_and_pattern_is_reported() {
        let tables = strings(&["ok", "bad.name", "also/bad"]);
        let exclude = strings(&["fine", "[unclosed"]);
        let errors = TableSelector::build(SelectionInput {
            tables: &tables,
            table_filter: Some("{a,"),
            table_regex: Some("(unclosed"),
            exclude_tables: &exclude,
        })
        .unwrap_err();
        let parts: Vec<_> = errors.iter().map(|e| e.part).collect();
        assert_eq!(
            parts,
            vec![
                SelectionPart::Tables(1),
                SelectionPart::Tables(2),
                SelectionPart::TableFilter,
                SelectionPart::TableRegex,
                SelectionPart::ExcludeTables(1),
            ]
        );
    }

    #[test]
    fn empty_and_oversized_patterns_are_rejected() {
        let huge = "a".repeat(MAX_PATTERN_LEN + 1);
        for (filter, regex) in [
            (Some(""), None),
            (None, Some("")),
            (Some(huge.as_str()), None),
            (None, Some(huge.as_str())),
        ] {
            let result = TableSelector::build(SelectionInput {
                table_filter: filter,
                table_regex: regex,
                ..SelectionInput::default()
            });
            assert!(result.is_err());
        }
        let too_complex = TableSelector::build(SelectionInput {
            table_regex: Some(r"\w{1000}\w{1000}"),
            ..SelectionInput::default()
        })
        .unwrap_err();
        assert_eq!(too_complex[0].message, "is too complex");
    }
}
