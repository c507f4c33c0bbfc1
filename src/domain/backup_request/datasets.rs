//! Checks `bigQuery.tablesToBackup[]` into dataset entries with compiled table selectors.

use std::collections::BTreeMap;

use super::{DatasetEntry, DatasetSelection, DatasetToBackup};
use crate::domain::ids::DatasetRef;
use crate::domain::is_valid_dataset_id;
use crate::domain::request_fields::invalid_dataset_message;
use crate::domain::selection::{SelectionInput, SelectionPart, TableSelector};
use crate::error::FieldError;

/// Checks each `tablesToBackup` entry. Returns `None` if any entry is unusable (the errors say
/// why); a dataset listed twice is an error rather than a silent merge of two selections.
pub(super) fn check_datasets(
    project: &str,
    entries: Vec<DatasetToBackup>,
    errors: &mut Vec<FieldError>,
) -> Option<DatasetSelection> {
    if entries.is_empty() {
        return Some(DatasetSelection::All);
    }
    let mut checked = Vec::with_capacity(entries.len());
    let mut first_seen: BTreeMap<String, String> = BTreeMap::new();
    let mut ok = true;
    for (i, entry) in entries.into_iter().enumerate() {
        let field = format!("bigQuery.tablesToBackup[{i}]");
        let dataset = match entry.dataset_name {
            None => {
                errors.push(FieldError::new(
                    format!("{field}.datasetName"),
                    "is required",
                ));
                None
            }
            Some(name) if !is_valid_dataset_id(&name) => {
                errors.push(FieldError::new(
                    format!("{field}.datasetName"),
                    invalid_dataset_message(&name),
                ));
                None
            }
            Some(name) => {
                if let Some(first) = first_seen.get(&name) {
                    errors.push(FieldError::new(
                        format!("{field}.datasetName"),
                        format!("dataset `{name}` is already listed at {first}"),
                    ));
                    None
                } else {
                    first_seen.insert(name.clone(), field.clone());
                    Some(name)
                }
            }
        };
        let tables = entry.tables.unwrap_or_default();
        let exclude = entry.exclude_tables.unwrap_or_default();
        let selector = TableSelector::build(SelectionInput {
            tables: &tables,
            // A blank Java `tableFilter` means "no filter": Java clients send "" for unset strings.
            table_filter: entry
                .table_filter
                .as_deref()
                .filter(|f| !f.trim().is_empty()),
            table_regex: entry.table_regex.as_deref(),
            exclude_tables: &exclude,
        })
        .map_err(|problems| {
            for p in problems {
                let path = match p.part {
                    SelectionPart::Tables(j) => format!("{field}.tables[{j}]"),
                    SelectionPart::TableFilter => format!("{field}.tableFilter"),
                    SelectionPart::TableRegex => format!("{field}.tableRegex"),
                    SelectionPart::ExcludeTables(j) => format!("{field}.excludeTables[{j}]"),
                };
                errors.push(FieldError::new(path, p.message));
            }
        })
        .ok();
        match (dataset, selector) {
            (Some(dataset), Some(tables)) => checked.push(DatasetEntry {
                dataset: DatasetRef::new(project, dataset),
                tables,
                field,
            }),
            _ => ok = false,
        }
    }
    ok.then_some(DatasetSelection::Listed(checked))
}
