//! Where the service's own schedules are (none by default).

use std::path::PathBuf;

use crate::variables::{Problem, Reader, Source, Variable};

pub(crate) static SCHEDULE_FILE: Variable = Variable {
    name: "BQB_SCHEDULE_FILE",
    default: "(none)",
    doc: "A TOML file of schedules (cron expression, time zone, backup or restore request) the service runs itself, for hosts without Cloud Scheduler. With several replicas, one runs each tick.",
};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduleSettings {
    /// Read and checked at start by [`super::load_schedule_file`].
    pub file: Option<PathBuf>,
}

impl ScheduleSettings {
    pub(crate) fn from_source(source: &Source) -> Result<Self, Vec<Problem>> {
        let read = Reader::new(source);
        let file = read.text(&SCHEDULE_FILE).map(|p| PathBuf::from(p.trim()));
        read.finish(Self { file })
    }
}
