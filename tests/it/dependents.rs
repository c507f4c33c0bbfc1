//! `includeDependents` and the dry-run plan, against bqemulator: views and routines that read the
//! selected tables come along with the tables they need, the dry run says what and why with size
//! estimates and writes nothing, and such a backup restores into new datasets with working views.

use futures::TryStreamExt;
use object_store::ObjectStore;
use serde_json::{Value, json};

use crate::helpers::{
    BigQueryFixtures, PROJECT, TestApp, TestServices, bigquery_client, open_store, spawn_app,
    unique_dataset,
};
use bq_backup::domain::TableRef;

/// Three fresh datasets: `a` holds the tables, `b` views and a routine over them, `c` a view over
/// `b`'s view.
struct Fixture {
    a: String,
    b: String,
    c: String,
}

/// How the fixture's SQL names things.
#[derive(Clone, Copy, PartialEq)]
enum Names {
    /// Every name with its project.
    Qualified,
    /// Some names without project, or quoted part by part.
    Mixed,
    /// No name with a project, as most views are written (and bqemulator runs: it cannot query
    /// an unquoted project id with a dash, which `Mixed` has).
    Short,
}

impl Fixture {
    /// `a`: t1 (3 rows), t2 (2 rows), t3 (unrelated). `b`: v1 = t1 ⋈ t2, v_other over t3, the
    /// table function f_t1 over t1. `c`: v2 over `b.v1`.
    async fn create(names: Names) -> Self {
        let f = BigQueryFixtures::new();
        let fixture = Self {
            a: unique_dataset("dep_a"),
            b: unique_dataset("dep_b"),
            c: unique_dataset("dep_c"),
        };
        let (a, b, c) = (&fixture.a, &fixture.b, &fixture.c);
        for dataset in [a, b, c] {
            f.create_dataset(dataset, json!({})).await;
        }
        let schema = |second: &str| json!({ "fields": [{ "name": "id", "type": "INT64" }, { "name": second, "type": "STRING" }] });
        for (table, second) in [("t1", "name"), ("t2", "country"), ("t3", "note")] {
            f.create_table(
                a,
                json!({ "tableReference": { "projectId": PROJECT, "datasetId": a, "tableId": table },
                        "schema": schema(second) }),
            )
            .await;
        }
        f.insert_rows(
            a,
            "t1",
            vec![
                json!({ "id": 1, "name": "Ala" }),
                json!({ "id": 2, "name": "Bob" }),
                json!({ "id": 3, "name": "Cyd" }),
            ],
        )
        .await;
        f.insert_rows(
            a,
            "t2",
            vec![
                json!({ "id": 1, "country": "PL" }),
                json!({ "id": 2, "country": "DE" }),
            ],
        )
        .await;
        f.insert_rows(a, "t3", vec![json!({ "id": 9, "note": "x" })])
            .await;

        let (v1, v2, tvf) = match names {
            Names::Qualified => (
                format!(
                    "SELECT t1.id, t1.name, t2.country FROM `{PROJECT}.{a}.t1` t1 JOIN `{PROJECT}.{a}.t2` t2 USING (id)"
                ),
                // No string literal: bqemulator's INFORMATION_SCHEMA.VIEWS drops their quotes.
                format!("SELECT * FROM `{PROJECT}`.`{b}`.`v1` WHERE id = 1"),
                format!("SELECT id FROM `{PROJECT}.{a}.t1`"),
            ),
            Names::Mixed => (
                format!(
                    "SELECT t1.id, t1.name, t2.country -- not {a}.t3\nFROM {PROJECT}.{a}.t1 t1 JOIN `{a}`.t2 t2 USING (id)"
                ),
                format!("SELECT * FROM {b}.v1 WHERE id = 1"),
                format!("SELECT id FROM {a}.t1"),
            ),
            Names::Short => (
                format!(
                    "SELECT t1.id, t1.name, t2.country -- not {a}.t3\nFROM {a}.t1 t1 JOIN `{a}`.`t2` t2 USING (id)"
                ),
                format!("SELECT * FROM `{b}.v1` WHERE id = 1"),
                format!("SELECT id FROM {a}.t1"),
            ),
        };
        let view = |dataset: &str, name: &str, sql: &str| {
            json!({ "tableReference": { "projectId": PROJECT, "datasetId": dataset, "tableId": name },
                    "view": { "query": sql, "useLegacySql": false } })
        };
        f.create_table(b, view(b, "v1", &v1)).await;
        f.create_table(
            b,
            view(b, "v_other", &format!("SELECT * FROM `{PROJECT}.{a}.t3`")),
        )
        .await;
        f.create_table(c, view(c, "v2", &v2)).await;
        let rest = &TestServices::get().bigquery_rest;
        let resp = reqwest::Client::new()
            .post(format!(
                "{rest}/bigquery/v2/projects/{PROJECT}/datasets/{b}/routines"
            ))
            .json(&json!({
                "routineReference": { "projectId": PROJECT, "datasetId": b, "routineId": "f_t1" },
                "routineType": "TABLE_VALUED_FUNCTION", "language": "SQL", "definitionBody": tvf
            }))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "routine: {}", resp.status());
        fixture
    }

    fn name(&self, dataset: &str, object: &str) -> String {
        format!("{PROJECT}.{dataset}.{object}")
    }

    /// A backup of `a.t1` alone, to `uri`.
    fn request(&self, uri: &str, include_dependents: bool) -> Value {
        json!({
            "bigQuery": { "projectId": PROJECT,
                          "tablesToBackup": [{ "datasetName": self.a, "tables": ["t1"] }] },
            "backupStorage": { "uri": uri, "exportOptions": { "format": "PARQUET" } },
            "includeDependents": include_dependents
        })
    }
}

async fn dry_run(app: &TestApp, mut body: Value) -> Value {
    body["dryRun"] = json!(true);
    let (status, answer) = app.post_json("/api/v1/backup", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["dryRun"], true, "{answer}");
    answer["plan"].clone()
}

/// `project.dataset.table` of each entry of a plan list (`tables`, `views`).
fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let r = &t["table"];
            format!(
                "{}.{}.{}",
                r["projectId"].as_str().unwrap(),
                r["datasetId"].as_str().unwrap(),
                r["tableId"].as_str().unwrap()
            )
        })
        .collect()
}

async fn objects_under(uri: &str) -> Vec<String> {
    open_store(uri)
        .object_store()
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap()
}

#[tokio::test]
async fn include_dependents_adds_views_routines_and_the_tables_they_need_and_says_why() {
    let app = spawn_app().await;
    let fx = Fixture::create(Names::Mixed).await;
    let uri = format!("memory://deps-{}", uuid::Uuid::new_v4().simple());
    let plan = dry_run(&app, fx.request(&uri, true)).await;

    let mut tables = names(&plan["tables"]);
    tables.sort();
    assert_eq!(
        tables,
        [fx.name(&fx.a, "t1"), fx.name(&fx.a, "t2")],
        "{plan}"
    );
    assert_eq!(
        names(&plan["views"]),
        [fx.name(&fx.b, "v1"), fx.name(&fx.c, "v2")],
        "v_other reads only t3; v2 comes after the view it reads: {plan}"
    );
    let routines: Vec<(&str, &str)> = plan["routines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["dataset"]["datasetId"].as_str().unwrap(),
                r["routine"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(routines, [(fx.b.as_str(), "f_t1")]);
    let mut datasets: Vec<&str> = plan["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["dataset"]["datasetId"].as_str().unwrap())
        .collect();
    datasets.sort();
    assert_eq!(datasets, [fx.a.as_str(), fx.b.as_str(), fx.c.as_str()]);

    let t1 = fx.name(&fx.a, "t1");
    let v1 = fx.name(&fx.b, "v1");
    let expected = [
        json!({ "object": v1, "kind": "VIEW", "reason": format!("references {t1}") }),
        json!({ "object": fx.name(&fx.b, "f_t1"), "kind": "ROUTINE", "reason": format!("references {t1}") }),
        json!({ "object": fx.name(&fx.c, "v2"), "kind": "VIEW", "reason": format!("references {v1}") }),
        json!({ "object": fx.name(&fx.a, "t2"), "kind": "TABLE", "reason": format!("needed by {v1}") }),
    ];
    let mut dependents = plan["dependents"].as_array().unwrap().clone();
    let key = |d: &Value| d["object"].as_str().unwrap().to_string();
    dependents.sort_by_key(key);
    let mut expected = expected.to_vec();
    expected.sort_by_key(key);
    assert_eq!(dependents, expected, "{plan}");

    // Estimates: bqemulator reports no byte counts, so they come from rows × the schema.
    for table in plan["tables"].as_array().unwrap() {
        assert!(table["rows"].as_u64().unwrap() > 0, "{table}");
        assert!(table["logicalBytes"].as_u64().unwrap() > 0, "{table}");
        assert!(
            table["estimatedOutputBytes"].as_u64().unwrap() > 0,
            "{table}"
        );
        assert_eq!(table["estimatedFiles"], 1, "{table}");
    }
    let totals = &plan["totals"];
    assert_eq!(
        (
            totals["tables"].as_u64(),
            totals["views"].as_u64(),
            totals["routines"].as_u64(),
            totals["dependents"].as_u64()
        ),
        (Some(2), Some(2), Some(1), Some(4)),
        "{totals}"
    );
    assert_eq!(totals["rows"], 5);
    let sum: u64 = plan["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["estimatedOutputBytes"].as_u64().unwrap())
        .sum();
    assert_eq!(totals["estimatedOutputBytes"], sum);
    assert_eq!(totals["estimatedFiles"], 2);
    let ours = |w: &Value| {
        [&fx.a, &fx.b, &fx.c]
            .iter()
            .any(|d| w.to_string().contains(d.as_str()))
    };
    assert!(
        !plan["warnings"].as_array().unwrap().iter().any(ours),
        "{plan}"
    );

    assert_eq!(
        objects_under(&uri).await,
        Vec::<String>::new(),
        "a dry run writes nothing"
    );
}

#[tokio::test]
async fn without_include_dependents_only_the_selection_is_planned_and_nothing_is_written() {
    let app = spawn_app().await;
    let fx = Fixture::create(Names::Mixed).await;
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("file://{}", dir.path().display());
    let plan = dry_run(&app, fx.request(&uri, false)).await;
    assert_eq!(names(&plan["tables"]), [fx.name(&fx.a, "t1")], "{plan}");
    assert_eq!(plan["views"], json!([]));
    assert_eq!(plan["routines"], json!([]), "dataset a has no routines");
    assert_eq!(plan["dependents"], json!([]));
    assert_eq!(plan["includeDependents"], false);
    assert!(
        plan["totals"]["estimatedOutputBytes"].as_u64().unwrap() > 0,
        "{plan}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "a dry run writes nothing"
    );
}

#[tokio::test]
async fn dependents_never_override_an_exclusion_and_the_answer_says_so() {
    let app = spawn_app().await;
    let fx = Fixture::create(Names::Qualified).await;
    let uri = format!("memory://deps-{}", uuid::Uuid::new_v4().simple());
    let mut body = fx.request(&uri, true);
    // t2 is needed by the dependent v1; v2 depends on t1 through v1. Both are excluded.
    body["bigQuery"]["tablesToBackup"] = json!([
        { "datasetName": fx.a, "tables": ["t1"], "excludeTables": ["t2"] },
        { "datasetName": fx.c, "excludeTables": ["v*"] }
    ]);
    let plan = dry_run(&app, body).await;
    assert_eq!(names(&plan["tables"]), [fx.name(&fx.a, "t1")], "{plan}");
    assert_eq!(names(&plan["views"]), [fx.name(&fx.b, "v1")], "{plan}");
    let added: Vec<&str> = plan["dependents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["object"].as_str().unwrap())
        .collect();
    assert_eq!(
        added,
        [fx.name(&fx.b, "v1"), fx.name(&fx.b, "f_t1")],
        "{plan}"
    );
    let warning = |field: &str, about: &str| {
        plan["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["field"] == field && w["message"].as_str().unwrap().starts_with(about))
    };
    assert!(
        warning(
            "bigQuery.tablesToBackup[0].excludeTables",
            &format!(
                "{} is needed by {}",
                fx.name(&fx.a, "t2"),
                fx.name(&fx.b, "v1")
            )
        ),
        "{plan}"
    );
    assert!(
        warning(
            "bigQuery.tablesToBackup[1].excludeTables",
            &format!(
                "{} references {}",
                fx.name(&fx.c, "v2"),
                fx.name(&fx.b, "v1")
            )
        ),
        "{plan}"
    );
}

#[tokio::test]
async fn a_backup_with_dependents_restores_into_new_datasets_with_working_views() {
    restore_into_new_datasets_with_working_views(Names::Qualified).await;
}

#[tokio::test]
async fn views_naming_tables_without_project_are_pointed_at_the_restored_datasets() {
    restore_into_new_datasets_with_working_views(Names::Short).await;
}

/// Backs up `a.t1` with its dependents, restores everything into `<dataset>_r` datasets, drops
/// the source tables and queries the restored `c.v2` (over `b.v1`, over `a.t1` ⋈ `a.t2`).
async fn restore_into_new_datasets_with_working_views(names: Names) {
    let app = spawn_app().await;
    let fx = Fixture::create(names).await;
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("file://{}", dir.path().display());
    let mut body = fx.request(&uri, true);
    body["wait"] = json!(true);
    let (status, report) = app.post_json("/api/v1/backup", &body).await;
    assert_eq!(status, 200, "{report}");
    let backup_id = report["backupId"].as_str().unwrap().to_string();
    let manifest = crate::helpers::manifest_json(dir.path(), &backup_id);
    let recorded: Vec<(String, &str, bool)> = manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["table"]["tableId"].as_str().unwrap().to_string(),
                t["kind"].as_str().unwrap(),
                t["definition"].as_str().is_some(),
            )
        })
        .collect();
    assert_eq!(
        recorded,
        [
            ("t1".to_string(), "TABLE", false),
            ("t2".to_string(), "TABLE", false),
            ("v1".to_string(), "VIEW", true),
            ("v2".to_string(), "VIEW", true),
        ],
        "views are recorded with their SQL, after the tables: {manifest}"
    );

    let target = |d: &str| format!("{d}_r");
    let restore = json!({
        "bigQuery": { "projectId": PROJECT },
        "restoreStorage": { "uri": uri },
        "backupId": backup_id,
        "targetDatasets": { fx.a.clone(): target(&fx.a), fx.b.clone(): target(&fx.b), fx.c.clone(): target(&fx.c) },
        "wait": true
    });
    let (status, report) = app.post_json("/api/v1/restore", &restore).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["views"],
        json!([fx.name(&target(&fx.b), "v1"), fx.name(&target(&fx.c), "v2")]),
        "{report}"
    );
    assert_eq!(
        report["routines"],
        json!([fx.name(&target(&fx.b), "f_t1")]),
        "{report}"
    );

    // With the source tables gone, only views pointed at the restored tables still answer.
    let rest = &TestServices::get().bigquery_rest;
    let http = reqwest::Client::new();
    for table in ["t1", "t2"] {
        let gone = http
            .delete(format!(
                "{rest}/bigquery/v2/projects/{PROJECT}/datasets/{}/tables/{table}",
                fx.a
            ))
            .send()
            .await
            .unwrap();
        assert!(gone.status().is_success());
    }
    let bq = bigquery_client().await;
    let restored = bq
        .get_table(&TableRef::new(PROJECT, target(&fx.c), "v2"))
        .await
        .unwrap();
    assert_eq!(restored.r#type, "VIEW");
    let answer: Value = http
        .post(format!("{rest}/bigquery/v2/projects/{PROJECT}/queries"))
        .json(&json!({
            "query": format!("SELECT id, name, country FROM `{}` ORDER BY id", fx.name(&target(&fx.c), "v2")),
            "useLegacySql": false
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        answer["rows"],
        json!([{ "f": [{ "v": "1" }, { "v": "Ala" }, { "v": "PL" }] }]),
        "{answer}"
    );
}
