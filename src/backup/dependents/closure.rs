//! The rules of `includeDependents` (see the parent module) over a scanned [`Catalog`]: pure, no
//! I/O.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::{Catalog, Dependent, ObjectKind};
use crate::domain::{TableRef, sql_paths};
use crate::error::FieldError;

/// Names listed in one warning before "and N more".
const LISTED_NAMES: usize = 10;

/// What [`close`] decided.
#[derive(Debug, Default)]
pub(super) struct Closure {
    /// Catalog indices added, in the order found, each with why.
    pub added: Vec<(usize, Dependent)>,
    pub warnings: Vec<FieldError>,
}

/// Applies the module's rules: `selected` (tables and views) and `routines` (catalog indices)
/// are in the backup; `excluded` says, for an object, which `excludeTables` field removes it.
pub(super) fn close(
    catalog: &Catalog,
    selected: &[usize],
    routines: &[usize],
    excluded: &dyn Fn(&TableRef) -> Option<String>,
) -> Closure {
    let resolver = Resolver::new(catalog);
    let refs: Vec<BTreeSet<usize>> = (0..catalog.objects.len())
        .map(|i| resolver.references(i))
        .collect();
    let name = |i: usize| catalog.objects[i].name.to_string();
    let mut closure = Closure::default();
    let mut in_plan: HashSet<usize> = selected.iter().chain(routines).copied().collect();
    let mut refused: HashSet<usize> = HashSet::new();

    // Upward, to a fixed point: whatever names the selection, or names a dependent.
    let mut affected: BTreeSet<usize> = selected.iter().copied().collect();
    loop {
        let mut changed = false;
        for (i, object) in catalog.objects.iter().enumerate() {
            if !object.kind.has_sql() || affected.contains(&i) || refused.contains(&i) {
                continue;
            }
            let hits: Vec<String> = refs[i].intersection(&affected).map(|&r| name(r)).collect();
            if hits.is_empty() {
                continue;
            }
            if !in_plan.contains(&i) {
                if let Some(field) = excluded(&object.name) {
                    closure.warnings.push(FieldError::new(
                        field,
                        format!(
                            "{} references {} but is excluded by excludeTables: not added",
                            object.name,
                            hits.join(", ")
                        ),
                    ));
                    refused.insert(i);
                    continue;
                }
                in_plan.insert(i);
                closure.added.push((
                    i,
                    Dependent {
                        object: name(i),
                        kind: object.kind.as_str(),
                        reason: format!("references {}", hits.join(", ")),
                    },
                ));
            }
            affected.insert(i);
            changed = true;
        }
        if !changed {
            break;
        }
    }

    // Downward: what every view and routine of the backup names, transitively.
    let mut queue: std::collections::VecDeque<usize> = {
        let mut first: Vec<usize> = in_plan
            .iter()
            .copied()
            .filter(|&i| catalog.objects[i].kind.has_sql())
            .collect();
        first.sort_unstable();
        first.into()
    };
    while let Some(i) = queue.pop_front() {
        for &r in &refs[i] {
            if in_plan.contains(&r) || refused.contains(&r) {
                continue;
            }
            let needed = &catalog.objects[r];
            if let Some(field) = excluded(&needed.name) {
                closure.warnings.push(FieldError::new(
                    field,
                    format!(
                        "{} is needed by {} but is excluded by excludeTables: not added, so {} will not work after a restore until it exists",
                        needed.name,
                        name(i),
                        name(i)
                    ),
                ));
                refused.insert(r);
                continue;
            }
            in_plan.insert(r);
            closure.added.push((
                r,
                Dependent {
                    object: name(r),
                    kind: needed.kind.as_str(),
                    reason: format!("needed by {}", name(i)),
                },
            ));
            if needed.kind.has_sql() {
                queue.push_back(r);
            }
        }
    }

    if !catalog.views_without_sql.is_empty() {
        closure.warnings.push(FieldError::new(
            "includeDependents",
            format!(
                "BigQuery returned no SQL for {} view(s), so what they reference is unknown: {}",
                catalog.views_without_sql.len(),
                list_names(&catalog.views_without_sql)
            ),
        ));
    }
    closure
}

fn list_names(names: &[TableRef]) -> String {
    let mut text = names
        .iter()
        .take(LISTED_NAMES)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > LISTED_NAMES {
        text.push_str(&format!(" and {} more", names.len() - LISTED_NAMES));
    }
    text
}

/// Finds the objects a name in SQL denotes, with BigQuery's case rules.
struct Resolver<'a> {
    catalog: &'a Catalog,
    /// Dataset name as it is → its index in `lookups`.
    exact: HashMap<&'a str, usize>,
    /// Lower-cased name of a case-insensitive dataset → its index in `lookups`.
    folded: HashMap<String, usize>,
    lookups: Vec<DatasetLookup>,
}

struct DatasetLookup {
    case_insensitive: bool,
    /// Object name (lower-cased when case-insensitive) → catalog indices (a table and a routine
    /// may share a name).
    names: HashMap<String, Vec<usize>>,
}

impl DatasetLookup {
    fn key(&self, name: &str) -> String {
        if self.case_insensitive {
            name.to_lowercase()
        } else {
            name.to_string()
        }
    }
}

impl<'a> Resolver<'a> {
    fn new(catalog: &'a Catalog) -> Self {
        let mut resolver = Self {
            catalog,
            exact: HashMap::new(),
            folded: HashMap::new(),
            lookups: Vec::new(),
        };
        for d in &catalog.datasets {
            let index = resolver.lookups.len();
            resolver.exact.insert(d.dataset.dataset.as_str(), index);
            if d.case_insensitive {
                resolver
                    .folded
                    .insert(d.dataset.dataset.to_lowercase(), index);
            }
            resolver.lookups.push(DatasetLookup {
                case_insensitive: d.case_insensitive,
                names: HashMap::new(),
            });
        }
        for (i, object) in catalog.objects.iter().enumerate() {
            if let Some(&d) = resolver.exact.get(object.name.dataset.as_str()) {
                let key = resolver.lookups[d].key(&object.name.table);
                resolver.lookups[d].names.entry(key).or_default().push(i);
            }
        }
        resolver
    }

    /// The objects that object `i`'s SQL names (itself excluded).
    fn references(&self, i: usize) -> BTreeSet<usize> {
        let object = &self.catalog.objects[i];
        let mut out = BTreeSet::new();
        let Some(sql) = object.sql.as_deref().filter(|_| !object.legacy_sql) else {
            return out;
        };
        for path in sql_paths(sql) {
            for candidate in path.candidates(&object.name.project) {
                self.resolve(&candidate, path.called, &mut out);
            }
        }
        out.remove(&i);
        out
    }

    fn resolve(&self, name: &TableRef, called: bool, out: &mut BTreeSet<usize>) {
        if !name.project.eq_ignore_ascii_case(&self.catalog.project) {
            return;
        }
        let dataset = self
            .exact
            .get(name.dataset.as_str())
            .or_else(|| self.folded.get(&name.dataset.to_lowercase()));
        let Some(lookup) = dataset.map(|&d| &self.lookups[d]) else {
            return;
        };
        let is_table = |i: &usize| self.catalog.objects[*i].kind != ObjectKind::Routine;
        if let Some(prefix) = name.table.strip_suffix('*') {
            let prefix = lookup.key(prefix);
            for (key, objects) in &lookup.names {
                if key.starts_with(&prefix) {
                    out.extend(objects.iter().filter(|&i| is_table(i)));
                }
            }
            return;
        }
        if let Some(objects) = lookup.names.get(&lookup.key(&name.table)) {
            // A routine is only ever called: `ds.f(…)`, `FROM ds.tvf(…)`.
            out.extend(objects.iter().filter(|&i| called || is_table(i)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{CatalogDataset, CatalogObject};
    use super::*;
    use crate::bigquery::TableKind;
    use crate::domain::DatasetRef;

    const P: &str = "p-1";

    fn dataset(name: &str, case_insensitive: bool) -> CatalogDataset {
        CatalogDataset {
            dataset: DatasetRef::new(P, name),
            location: "US".into(),
            case_insensitive,
            resource: None,
        }
    }

    fn object(dataset: &str, name: &str, kind: ObjectKind, sql: Option<&str>) -> CatalogObject {
        CatalogObject {
            name: TableRef::new(P, dataset, name),
            kind,
            sql: sql.map(str::to_string),
            legacy_sql: false,
            routine: None,
        }
    }

    fn table(dataset: &str, name: &str) -> CatalogObject {
        object(dataset, name, ObjectKind::Table(TableKind::Table), None)
    }

    fn view(dataset: &str, name: &str, sql: &str) -> CatalogObject {
        object(dataset, name, ObjectKind::Table(TableKind::View), Some(sql))
    }

    fn routine(dataset: &str, name: &str, sql: &str) -> CatalogObject {
        object(dataset, name, ObjectKind::Routine, Some(sql))
    }

    /// Two datasets: `a` (t1, t2, t3) and `b` with views and routines over them.
    fn catalog(objects: Vec<CatalogObject>) -> Catalog {
        Catalog {
            project: P.into(),
            datasets: vec![dataset("a", false), dataset("b", false)],
            objects,
            views_without_sql: Vec::new(),
        }
    }

    fn index(c: &Catalog, dataset: &str, name: &str) -> usize {
        c.objects
            .iter()
            .position(|o| o.name == TableRef::new(P, dataset, name))
            .unwrap()
    }

    fn added(closure: &Closure) -> Vec<(String, &'static str, String)> {
        closure
            .added
            .iter()
            .map(|(_, d)| (d.object.clone(), d.kind, d.reason.clone()))
            .collect()
    }

    fn no_exclusions(_: &TableRef) -> Option<String> {
        None
    }

    #[test]
    fn a_view_over_a_selected_table_comes_with_the_other_tables_it_reads() {
        let c = catalog(vec![
            table("a", "t1"),
            table("a", "t2"),
            table("a", "t3"),
            view("b", "v1", "SELECT * FROM `p-1.a.t1` JOIN a.t2 USING (id)"),
            view("b", "unrelated", "SELECT * FROM a.t3"),
            routine("b", "count_t1", "(SELECT COUNT(*) FROM a.t1)"),
        ]);
        let closure = close(&c, &[index(&c, "a", "t1")], &[], &no_exclusions);
        assert_eq!(
            added(&closure),
            [
                ("p-1.b.v1".into(), "VIEW", "references p-1.a.t1".into()),
                (
                    "p-1.b.count_t1".into(),
                    "ROUTINE",
                    "references p-1.a.t1".into()
                ),
                ("p-1.a.t2".into(), "TABLE", "needed by p-1.b.v1".into()),
            ]
        );
        assert!(closure.warnings.is_empty());
    }

    #[test]
    fn views_over_dependent_views_are_dependents_and_needs_are_followed_through_views() {
        let c = catalog(vec![
            table("a", "t1"),
            table("a", "t2"),
            table("a", "t9"),
            view("b", "v1", "SELECT * FROM a.t1"),
            view("b", "v2", "SELECT * FROM b.v1 JOIN b.v3 USING (id)"),
            view("b", "v3", "SELECT * FROM b.v4"),
            view("b", "v4", "SELECT * FROM a.t2"),
            view("b", "over_t2", "SELECT * FROM a.t2"),
        ]);
        let closure = close(&c, &[index(&c, "a", "t1")], &[], &no_exclusions);
        let names: Vec<(String, String)> = added(&closure)
            .into_iter()
            .map(|(o, _, r)| (o, r))
            .collect();
        assert_eq!(
            names,
            [
                ("p-1.b.v1".to_string(), "references p-1.a.t1".to_string()),
                ("p-1.b.v2".to_string(), "references p-1.b.v1".to_string()),
                ("p-1.b.v3".to_string(), "needed by p-1.b.v2".to_string()),
                ("p-1.b.v4".to_string(), "needed by p-1.b.v3".to_string()),
                ("p-1.a.t2".to_string(), "needed by p-1.b.v4".to_string()),
            ],
            "a view over a merely needed table (over_t2) is not added"
        );
    }

    #[test]
    fn an_alias_named_like_a_dataset_brings_nothing_of_that_dataset() {
        // `a` is the alias of `b.v`'s table and `t2` its column; table `a.t2` also exists. Only
        // the table in FROM is read.
        let c = catalog(vec![
            table("a", "t1"),
            table("a", "t2"),
            view(
                "b",
                "v",
                "SELECT a.t2, x.t1 FROM a.t1 AS a, UNNEST(a.tags) AS x",
            ),
        ]);
        let closure = close(&c, &[index(&c, "b", "v")], &[], &no_exclusions);
        let names: Vec<String> = added(&closure).into_iter().map(|(o, _, _)| o).collect();
        assert_eq!(names, ["p-1.a.t1"]);
    }

    #[test]
    fn nothing_is_added_when_nothing_references_the_selection() {
        let c = catalog(vec![
            table("a", "t1"),
            table("a", "t2"),
            view("b", "v", "SELECT * FROM a.t2 -- not a.t1"),
            routine("b", "f", "'a.t1'"),
        ]);
        let closure = close(&c, &[index(&c, "a", "t1")], &[], &no_exclusions);
        assert!(closure.added.is_empty(), "{:?}", closure.added);
    }

    #[test]
    fn needs_of_selected_views_and_routines_are_added() {
        let c = catalog(vec![
            table("a", "t1"),
            table("a", "t2"),
            view("b", "v", "SELECT * FROM a.t1"),
            routine("b", "f", "SELECT * FROM a.t2"),
        ]);
        let closure = close(
            &c,
            &[index(&c, "b", "v")],
            &[index(&c, "b", "f")],
            &no_exclusions,
        );
        let names: Vec<String> = added(&closure).into_iter().map(|(o, _, _)| o).collect();
        assert_eq!(names, ["p-1.a.t1", "p-1.a.t2"]);
    }

    #[test]
    fn exclusions_are_never_overridden_and_are_reported() {
        let c = catalog(vec![
            table("a", "t1"),
            table("a", "t2"),
            view("a", "v_excluded", "SELECT * FROM a.t1"),
            view("b", "v1", "SELECT * FROM a.t1 JOIN a.t2 USING (id)"),
        ]);
        let excluded = |t: &TableRef| {
            (t.dataset == "a" && (t.table == "t2" || t.table == "v_excluded"))
                .then(|| "bigQuery.tablesToBackup[0].excludeTables".to_string())
        };
        let closure = close(&c, &[index(&c, "a", "t1")], &[], &excluded);
        let names: Vec<String> = added(&closure).into_iter().map(|(o, _, _)| o).collect();
        assert_eq!(names, ["p-1.b.v1"]);
        assert_eq!(closure.warnings.len(), 2, "{:?}", closure.warnings);
        assert!(
            closure
                .warnings
                .iter()
                .all(|w| w.field == "bigQuery.tablesToBackup[0].excludeTables")
        );
        assert!(
            closure.warnings[0]
                .message
                .contains("p-1.a.v_excluded references p-1.a.t1")
        );
        assert!(
            closure.warnings[1]
                .message
                .contains("p-1.a.t2 is needed by p-1.b.v1")
        );
    }

    #[test]
    fn names_follow_bigquery_case_rules() {
        let mut c = catalog(vec![
            table("a", "Orders"),
            table("CI", "Orders"),
            view("b", "wrong_case", "SELECT * FROM a.orders"),
            view("b", "dataset_case", "SELECT * FROM A.Orders"),
            view("b", "any_case", "SELECT * FROM `P-1.ci.ORDERS`"),
        ]);
        c.datasets.push(dataset("CI", true));
        let closure = close(
            &c,
            &[index(&c, "a", "Orders"), index(&c, "CI", "Orders")],
            &[],
            &no_exclusions,
        );
        let names: Vec<String> = added(&closure).into_iter().map(|(o, _, _)| o).collect();
        assert_eq!(
            names,
            ["p-1.b.any_case"],
            "dataset `a` is case-sensitive: neither `a.orders` nor `A.Orders` names a.Orders"
        );
    }

    #[test]
    fn other_projects_wildcards_and_routine_calls() {
        let c = catalog(vec![
            table("a", "events_2024"),
            table("a", "events_2025"),
            table("a", "f"),
            routine("a", "f", "x + 1"),
            routine("a", "tvf", "SELECT * FROM a.events_2024"),
            view("b", "all_events", "SELECT * FROM `p-1.a.events_*`"),
            view("b", "elsewhere", "SELECT * FROM `p-2.a.events_2024`"),
            view("b", "uses_f", "SELECT a.f(x) FROM UNNEST([1]) x"),
            view("b", "uses_tvf", "SELECT * FROM a.tvf()"),
        ]);
        let closure = close(&c, &[index(&c, "a", "events_2024")], &[], &no_exclusions);
        assert_eq!(
            added(&closure),
            [
                (
                    "p-1.a.tvf".into(),
                    "ROUTINE",
                    "references p-1.a.events_2024".into()
                ),
                (
                    "p-1.b.all_events".into(),
                    "VIEW",
                    "references p-1.a.events_2024".into()
                ),
                (
                    "p-1.b.uses_tvf".into(),
                    "VIEW",
                    "references p-1.a.tvf".into()
                ),
                (
                    "p-1.a.events_2025".into(),
                    "TABLE",
                    "needed by p-1.b.all_events".into()
                ),
            ],
            "p-2 is another project; uses_f calls routine a.f, which does not touch the selection"
        );
        let r = Resolver::new(&c);
        let uses_f = r.references(index(&c, "b", "uses_f"));
        let names: Vec<ObjectKind> = uses_f.iter().map(|&i| c.objects[i].kind).collect();
        assert_eq!(
            names,
            [ObjectKind::Table(TableKind::Table), ObjectKind::Routine],
            "a called name may be the table or the routine"
        );
    }

    #[test]
    fn views_without_sql_are_reported_once() {
        let mut c = catalog(vec![table("a", "t1")]);
        c.views_without_sql = (0..12)
            .map(|i| TableRef::new(P, "b", format!("v{i}")))
            .collect();
        let closure = close(&c, &[0], &[], &no_exclusions);
        assert_eq!(closure.warnings.len(), 1);
        assert_eq!(closure.warnings[0].field, "includeDependents");
        assert!(closure.warnings[0].message.contains("12 view(s)"));
        assert!(closure.warnings[0].message.ends_with("and 2 more"));
    }
}
