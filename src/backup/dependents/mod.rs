//! `includeDependents`: what else a backup must hold so that what it holds still works after a
//! restore.
//!
//! # Rules
//!
//! - **Scope**: the datasets of the request's project (`bigQuery.projectId`). Views and routines
//!   in other projects are not searched, and references to other projects are not followed (a
//!   backup, and so a restore, covers one project).
//! - **Dependents** (upward): every view, materialized view and SQL routine whose SQL names a
//!   selected table or view — or, transitively, names another dependent — is added.
//! - **Needs** (downward): everything a view or routine of the backup names — the selected ones,
//!   the routines of the selected datasets and the dependents — is added too, tables as data,
//!   views and routines as definitions, transitively. Objects added only because something
//!   needs them do not bring their own dependents (a view over a needed table is not added):
//!   otherwise one view could pull in most of a project.
//! - **Exclusions win**: an object removed by its dataset entry's `excludeTables` is never added;
//!   the answer carries a warning naming it and what wanted it.
//! - Names are matched as BigQuery resolves them (see [`crate::domain::sql_paths`]): a name
//!   without project is in the project of the view or routine; project ids ignore case; dataset
//!   and table names are case-sensitive unless the dataset is case-insensitive
//!   (`isCaseInsensitive`); `` `ds.events_*` `` names every table starting with `events_`; a name
//!   called (`ds.f(…)`, `FROM ds.tvf(…)`, `CALL ds.p()`) may be a routine. Aliases, CTEs and
//!   columns are not names; for SQL the parser cannot read, the text scan that replaces it
//!   over-approximates (see that module): an object is only added if it exists.
//!
//! The SQL of views comes from each dataset's `INFORMATION_SCHEMA.VIEWS` (one query per dataset
//! that has views, rather than one tables.get per view), falling back to tables.get per view
//! when the query is refused; materialized views and routines come from tables.get and
//! routines.get. JavaScript and other non-SQL routines name no tables; legacy-SQL views
//! (`[project:dataset.table]`) are not read for names.

use std::collections::HashMap;

use serde::Serialize;

use super::plan::{PlannedDataset, PlannedRoutine};
use crate::bigquery::model::Dataset;
use crate::bigquery::{DatasetResource, RoutineResource, TableKind};
use crate::domain::{BackupSpec, DatasetRef, DatasetSelection, TableRef, TableSelector};
use crate::error::{Error, FieldError};
use closure::close;

mod closure;
mod scan;

pub(super) use scan::scan_project;

/// One object `includeDependents` added to the backup, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dependent {
    /// `project.dataset.name`.
    pub object: String,
    /// `TABLE`, `VIEW`, `MATERIALIZED_VIEW`, …, or `ROUTINE`.
    pub kind: &'static str,
    /// `references p.ds.t` (a dependent) or `needed by p.ds.v` (a need).
    pub reason: String,
}

/// What an object of the project is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ObjectKind {
    Table(TableKind),
    Routine,
}

impl ObjectKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Table(kind) => kind.as_str(),
            Self::Routine => "ROUTINE",
        }
    }

    /// Views, materialized views and routines have SQL that names other objects.
    fn has_sql(self) -> bool {
        matches!(
            self,
            Self::Table(TableKind::View | TableKind::MaterializedView) | Self::Routine
        )
    }
}

/// A table, view or routine of the project. For a routine, `name.table` is the routine id.
#[derive(Debug, Clone)]
pub(super) struct CatalogObject {
    pub name: TableRef,
    pub kind: ObjectKind,
    /// A view's query or a SQL routine's body; `None` when BigQuery gave none.
    pub sql: Option<String>,
    /// A view defined in legacy SQL.
    pub legacy_sql: bool,
    /// A routine's resource as BigQuery returns it.
    pub routine: Option<RoutineResource>,
}

#[derive(Debug, Clone)]
pub(super) struct CatalogDataset {
    pub dataset: DatasetRef,
    pub location: String,
    pub case_insensitive: bool,
    pub resource: Option<Dataset>,
}

/// Every dataset, table, view and routine of one project, with the SQL of views and routines.
#[derive(Debug, Clone, Default)]
pub(super) struct Catalog {
    pub project: String,
    pub datasets: Vec<CatalogDataset>,
    pub objects: Vec<CatalogObject>,
    /// Views whose SQL BigQuery did not give: their references are unknown.
    pub views_without_sql: Vec<TableRef>,
}

impl Catalog {
    pub(super) fn find(&self, name: &TableRef, routine: bool) -> Option<usize> {
        self.objects
            .iter()
            .position(|o| &o.name == name && (o.kind == ObjectKind::Routine) == routine)
    }

    pub(super) fn dataset(&self, dataset: &DatasetRef) -> Option<&CatalogDataset> {
        self.datasets.iter().find(|d| &d.dataset == dataset)
    }
}

/// What [`add_to_plan`] added to the selection.
pub(super) struct AddedDependents {
    pub dependents: Vec<Dependent>,
    pub warnings: Vec<FieldError>,
}

/// Applies `includeDependents` (see the module doc) to a resolved selection: adds the dependents'
/// and needs' tables and views to `selected`, their routines to `routines`, and their datasets
/// to `datasets` when not there yet.
pub(super) fn add_to_plan(
    catalog: &Catalog,
    spec: &BackupSpec,
    datasets: &mut Vec<PlannedDataset>,
    routines: &mut Vec<PlannedRoutine>,
    selected: &mut Vec<TableRef>,
) -> Result<AddedDependents, Error> {
    let entries: HashMap<&str, (&TableSelector, &str)> = match &spec.datasets {
        DatasetSelection::Listed(list) => list
            .iter()
            .map(|e| (e.dataset.dataset.as_str(), (&e.tables, e.field.as_str())))
            .collect(),
        DatasetSelection::All => HashMap::new(),
    };
    let excluded = |name: &TableRef| {
        entries
            .get(name.dataset.as_str())
            .filter(|(selector, _)| selector.excludes(&name.table))
            .map(|(_, field)| format!("{field}.excludeTables"))
    };
    let selected_ix: Vec<usize> = selected
        .iter()
        .filter_map(|t| catalog.find(t, false))
        .collect();
    let routine_ix: Vec<usize> = routines
        .iter()
        .filter_map(|r| catalog.find(&r.dataset.table(r.routine.clone()), true))
        .collect();
    let closure = close(catalog, &selected_ix, &routine_ix, &excluded);

    let mut added = AddedDependents {
        dependents: Vec::with_capacity(closure.added.len()),
        warnings: closure.warnings,
    };
    for (i, dependent) in closure.added {
        let object = &catalog.objects[i];
        let dataset = object.name.dataset_ref();
        if !datasets.iter().any(|d| d.dataset == dataset)
            && let Some(found) = catalog.dataset(&dataset)
        {
            datasets.push(PlannedDataset {
                dataset: dataset.clone(),
                location: found.location.clone(),
                resource: match &found.resource {
                    Some(resource) => DatasetResource::of(resource)?,
                    None => DatasetResource::default(),
                },
            });
        }
        match &object.routine {
            Some(resource) => routines.push(PlannedRoutine {
                dataset,
                routine: object.name.table.clone(),
                resource: resource.clone(),
            }),
            None => selected.push(object.name.clone()),
        }
        added.dependents.push(dependent);
    }
    Ok(added)
}
