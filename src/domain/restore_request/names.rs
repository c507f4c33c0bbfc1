//! Which datasets and tables a restore reads, and what the restored datasets are called.

use std::collections::{BTreeMap, BTreeSet};

use super::{DEFAULT_DATASET_PREFIX, TableChoice};
use crate::domain::request_fields::{invalid_dataset_message, key_path};
use crate::domain::selection::invalid_table_message;
use crate::domain::{is_valid_dataset_id, is_valid_table_id};
use crate::error::FieldError;

const MAX_DATASET_ID_BYTES: usize = 1024;

/// Source dataset names, checked; duplicates are dropped (restoring a dataset twice is
/// meaningless, and the Java service would simply have done it twice).
pub(super) fn check_source_datasets(
    datasets: Vec<String>,
    errors: &mut Vec<FieldError>,
) -> Vec<String> {
    let mut checked: Vec<String> = Vec::with_capacity(datasets.len());
    for (i, name) in datasets.into_iter().enumerate() {
        if !is_valid_dataset_id(&name) {
            errors.push(FieldError::new(
                format!("bigQuery.datasetsToRestore[{i}]"),
                invalid_dataset_message(&name),
            ));
        } else if !checked.contains(&name) {
            checked.push(name);
        }
    }
    checked
}

/// `tables[]`: `dataset.table` or `table`. Dataset and table ids cannot contain `.`, so the
/// first dot splits them. A dataset outside `datasetsToRestore` would select nothing: an error.
pub(super) fn check_table_choices(
    tables: Vec<String>,
    datasets: Option<&Vec<String>>,
    errors: &mut Vec<FieldError>,
) -> Vec<TableChoice> {
    let mut checked = Vec::with_capacity(tables.len());
    for (i, name) in tables.into_iter().enumerate() {
        let field = format!("tables[{i}]");
        let (dataset, table) = match name.split_once('.') {
            Some((d, t)) => (Some(d), t),
            None => (None, name.as_str()),
        };
        if let Some(d) = dataset {
            if !is_valid_dataset_id(d) {
                errors.push(FieldError::new(field, invalid_dataset_message(d)));
                continue;
            }
            if datasets.is_some_and(|ds| !ds.iter().any(|x| x == d)) {
                errors.push(FieldError::new(
                    field,
                    format!("dataset `{d}` is not in bigQuery.datasetsToRestore"),
                ));
                continue;
            }
        }
        if !is_valid_table_id(table) {
            errors.push(FieldError::new(field, invalid_table_message(table)));
            continue;
        }
        let choice = TableChoice {
            dataset: dataset.map(str::to_owned),
            table: table.to_owned(),
        };
        if !checked.contains(&choice) {
            checked.push(choice);
        }
    }
    checked
}

/// Dataset naming: `datasetPrefix` or `targetDatasets`, not both. Every target name we can know
/// now (listed datasets, mapped targets) must be a valid dataset id, and no two sources may land
/// in the same target.
pub(super) fn check_naming(
    prefix: Option<String>,
    mapping: BTreeMap<String, String>,
    datasets: Option<&Vec<String>>,
    errors: &mut Vec<FieldError>,
) -> (String, BTreeMap<String, String>) {
    if prefix.is_some() && !mapping.is_empty() {
        errors.push(FieldError::new(
            "targetDatasets",
            "give either datasetPrefix or targetDatasets, not both",
        ));
    }
    let prefix = prefix.unwrap_or_else(|| DEFAULT_DATASET_PREFIX.to_owned());
    let prefix_ok = prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !prefix_ok {
        errors.push(FieldError::new(
            "datasetPrefix",
            format!("`{prefix}` may only contain letters, digits and underscores"),
        ));
    }
    for (source, target) in &mapping {
        let field = key_path("targetDatasets", source);
        if !is_valid_dataset_id(source) {
            errors.push(FieldError::new(field, invalid_dataset_message(source)));
        } else if datasets.is_some_and(|ds| !ds.contains(source)) {
            errors.push(FieldError::new(
                field,
                format!("dataset `{source}` is not in bigQuery.datasetsToRestore"),
            ));
        } else if !is_valid_dataset_id(target) {
            errors.push(FieldError::new(field, invalid_dataset_message(target)));
        }
    }

    // Targets of every source known now, to catch collisions such as {a → restored_b} with b
    // listed (and so restored as restored_b too).
    let sources: BTreeSet<&String> = datasets
        .into_iter()
        .flatten()
        .chain(mapping.keys())
        .collect();
    let mut seen: BTreeMap<String, &String> = BTreeMap::new();
    for source in sources {
        let target = mapping
            .get(source)
            .cloned()
            .unwrap_or_else(|| format!("{prefix}{source}"));
        if prefix_ok && !mapping.contains_key(source) && target.len() > MAX_DATASET_ID_BYTES {
            errors.push(FieldError::new(
                "datasetPrefix",
                format!("restoring `{source}` would need a dataset name longer than {MAX_DATASET_ID_BYTES} bytes"),
            ));
        }
        if let Some(other) = seen.get(&target) {
            // Two prefixed names never collide, so at least one of the two is mapped: name it.
            let mapped = if mapping.contains_key(source) {
                source
            } else {
                *other
            };
            errors.push(FieldError::new(
                key_path("targetDatasets", mapped),
                format!("datasets `{other}` and `{source}` would both be restored into `{target}`"),
            ));
        } else {
            seen.insert(target, source);
        }
    }
    (prefix, mapping)
}
