//! Logging settings: the output format and the filter.

use crate::variables::{Problem, Reader, Source, Variable};

pub(crate) const DEFAULT_LOG_LEVEL: &str = "info";

pub(crate) static LOG_FORMAT: Variable = Variable {
    name: "BQB_LOG_FORMAT",
    default: "auto",
    doc: "`json` (Cloud Logging: `severity`, `message`, trace), `pretty`, or `auto` (pretty on a terminal, JSON otherwise).",
};
pub(crate) static LOG_LEVEL: Variable = Variable {
    name: "BQB_LOG_LEVEL",
    default: DEFAULT_LOG_LEVEL,
    doc: "Log filter, `tracing` directive syntax (`info`, `bq_backup=debug,info`).",
};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Pretty on a terminal, JSON otherwise.
    #[default]
    Auto,
    Json,
    Pretty,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A `tracing` filter directive, checked to parse.
    pub level: String,
}

impl LogSettings {
    pub(crate) fn from_source(source: &Source) -> Result<Self, Vec<Problem>> {
        let mut read = Reader::new(source);
        let format = match read.text(&LOG_FORMAT).map(str::trim) {
            None | Some("auto") => LogFormat::Auto,
            Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => {
                read.problem(
                    &LOG_FORMAT,
                    format!("`{other}` is not one of auto, json, pretty"),
                );
                LogFormat::default()
            }
        };
        let level = read
            .text(&LOG_LEVEL)
            .unwrap_or(DEFAULT_LOG_LEVEL)
            .trim()
            .to_string();
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&level) {
            read.problem(&LOG_LEVEL, format!("`{level}` is not a valid filter: {e}"));
        }
        read.finish(Self { format, level })
    }
}
