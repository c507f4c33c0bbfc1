//! How many tables one backup or restore processes at once, at most.

use crate::variables::{Problem, Reader, Source, Variable};

pub(crate) const DEFAULT_MAX_PARALLEL_TABLES: usize = 4;

pub(crate) static MAX_PARALLEL_TABLES: Variable = Variable {
    name: "BQB_MAX_PARALLEL_TABLES",
    default: "4",
    doc: "Tables backed up or restored at once (a request may ask for fewer).",
};

/// The service's limit that [`super::parallel_tables`] caps requests at.
pub(crate) fn max_parallel_tables(source: &Source) -> Result<usize, Vec<Problem>> {
    let mut read = Reader::new(source);
    let limit = read.positive(&MAX_PARALLEL_TABLES, DEFAULT_MAX_PARALLEL_TABLES);
    read.finish(limit)
}
