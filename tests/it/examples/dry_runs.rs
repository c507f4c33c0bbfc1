//! The examples sent as dry runs to a running service against the BigQuery emulator: backups on
//! datasets created for them, restores from real backups of those datasets in every store (and a
//! Java-layout backup for the example that restores one). The planned tables must be exactly the
//! ones the request selects, as the library's own selection reads it.

use std::collections::{BTreeMap, BTreeSet};

use bq_backup::domain::DatasetSelection;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use object_store::ObjectStoreExt;
use serde_json::{Value, json};

use super::{RequestKind, check_backup, check_restore, requests_of};
use crate::helpers::{
    BigQueryFixtures, PROJECT, open_store, spawn_app, unique_dataset, unique_root,
};

/// The tables every fixture dataset gets for the dry runs; the examples' names, globs and regexes
/// are written against these.
const FIXTURE_TABLES: [&str; 5] = [
    "customers",
    "orders",
    "events_2024",
    "events_2025",
    "tmp_scratch",
];

/// The datasets the examples name; each is created in the emulator under a unique name with
/// [`FIXTURE_TABLES`].
const FIXTURE_DATASETS: [&str; 2] = ["shop", "analytics"];

/// Example dataset name → the fixture dataset created for it in the emulator. The tables hold no
/// rows: planning needs only their existence, and a backup of them is a manifest alone.
async fn fixture_datasets() -> BTreeMap<String, String> {
    let fixtures = BigQueryFixtures::new();
    let mut datasets = BTreeMap::new();
    for name in FIXTURE_DATASETS {
        let dataset = unique_dataset(&format!("ex_{name}"));
        fixtures.create_dataset(&dataset, json!({})).await;
        for table in FIXTURE_TABLES {
            fixtures
                .create_table(
                    &dataset,
                    json!({ "tableReference": { "projectId": PROJECT, "datasetId": dataset, "tableId": table },
                            "schema": { "fields": [{ "name": "id", "type": "INT64" }] } }),
                )
                .await;
        }
        datasets.insert(name.to_owned(), dataset);
    }
    datasets
}

fn fixture<'a>(datasets: &'a BTreeMap<String, String>, example: &str, name: &str) -> &'a str {
    datasets
        .get(name)
        .unwrap_or_else(|| panic!("{example} names dataset `{name}`: add it to FIXTURE_DATASETS"))
}

/// The scheme of a storage URI in an example.
fn scheme_of(uri: &Value) -> &str {
    uri.as_str()
        .and_then(|text| text.split_once("://"))
        .expect("a URI with a scheme")
        .0
}

/// A backup example as sent to the emulator: our project, the fixture datasets instead of the
/// example's names, a fresh root in the same store, a snapshot time inside the time-travel
/// window when it names one, and `dryRun`.
fn backup_for_the_emulator(
    name: &str,
    mut body: Value,
    datasets: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> Value {
    body["bigQuery"]["projectId"] = json!(PROJECT);
    if let Some(entries) = body
        .pointer_mut("/bigQuery/tablesToBackup")
        .and_then(Value::as_array_mut)
    {
        for entry in entries {
            let dataset = entry["datasetName"].as_str().expect("a dataset name");
            entry["datasetName"] = json!(fixture(datasets, name, dataset));
        }
    }
    for pointer in ["/backupStorage/uri", "/backupStorage/gcsOptions/uri"] {
        if let Some(uri) = body.pointer_mut(pointer) {
            *uri = json!(unique_root(scheme_of(uri)));
        }
    }
    let recent = now - Duration::minutes(5);
    if body.get("asOf").is_some() {
        body["asOf"] = json!(recent.to_rfc3339_opts(SecondsFormat::Secs, true));
    }
    if body.get("backupTime").is_some() {
        body["backupTime"] = json!({
            "localDateTime": recent.naive_utc().format("%Y-%m-%dT%H:%M:%S").to_string(),
            "timezone": "UTC"
        });
    }
    body["dryRun"] = json!(true);
    body
}

/// The `(dataset, table)` pairs of a dry-run plan's `tables`, read at `side` (`""` for a backup
/// plan's `table`, `source` or `target` for a restore plan's).
fn planned(answer: &Value, side: &str) -> BTreeSet<(String, String)> {
    answer["plan"]["tables"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let table = if side.is_empty() {
                &t["table"]
            } else {
                &t[side]
            };
            (
                table["datasetId"].as_str().unwrap_or_default().to_owned(),
                table["tableId"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn backup_examples_plan_the_tables_they_select_on_the_emulator() {
    // Every backup request that names its datasets (a whole-project backup would plan whatever
    // other tests left in the emulator's project).
    let requests: Vec<(String, Value)> = requests_of(RequestKind::Backup)
        .into_iter()
        .filter(|(_, body)| {
            body["bigQuery"]["tablesToBackup"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        })
        .collect();
    assert!(requests.len() >= 10, "{} backup examples", requests.len());
    let datasets = fixture_datasets().await;
    let app = spawn_app().await;

    let mut failures = Vec::new();
    for (name, body) in requests {
        let now = Utc::now();
        let body = backup_for_the_emulator(&name, body, &datasets, now);
        let (spec, format, compression) = check_backup(body.to_string().as_bytes(), now)
            .unwrap_or_else(|e| panic!("{name} as rewritten: {e}"));
        let DatasetSelection::Listed(entries) = &spec.datasets else {
            panic!("{name}: names its datasets");
        };
        let expected: BTreeSet<(String, String)> = entries
            .iter()
            .flat_map(|e| {
                FIXTURE_TABLES
                    .iter()
                    .filter(|t| e.tables.matches(t))
                    .map(|t| (e.dataset.dataset.clone(), t.to_string()))
            })
            .collect();
        assert!(!expected.is_empty(), "{name} selects no fixture table");

        let (status, answer) = app.post_json("/api/v1/backup", &body).await;
        let as_expected = status == 200
            && answer["dryRun"] == json!(true)
            && planned(&answer, "") == expected
            && answer["plan"]["format"] == json!(format.as_str())
            && answer["plan"]["compression"] == json!(compression.as_str());
        if !as_expected {
            failures.push(format!(
                "{name}: expected a dry-run plan of {expected:?} as {format}/{compression}, got {status} {answer}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// One CSV row of sample values for a BigQuery schema (flat: CSV holds no RECORD), with a header.
fn csv_for(schema: &Value) -> String {
    let fields = schema.as_array().expect("a schema is an array of fields");
    let names: Vec<&str> = fields
        .iter()
        .map(|f| f["name"].as_str().expect("a name"))
        .collect();
    let values: Vec<&str> = fields
        .iter()
        .map(|f| match f["type"].as_str().expect("a type") {
            "INT64" | "INTEGER" => "1",
            "NUMERIC" | "FLOAT64" | "FLOAT" => "1.5",
            "STRING" => "text",
            "BOOL" | "BOOLEAN" => "true",
            "DATE" => "2026-11-20",
            "TIMESTAMP" => "2026-11-20T10:00:00Z",
            other => panic!("add a CSV sample value for {other}"),
        })
        .collect();
    format!("{}\n{}\n", names.join(","), values.join(","))
}

/// Writes, for each table of a rewritten Java-layout example's `schemas`, a CSV file where the
/// Java service put its exports: `{root}/backups/{backupTimestamp}/{project}/{dataset}/{table}-*.csv`.
/// Returns the `(dataset, table)` pairs written.
async fn put_java_layout(body: &Value) -> BTreeSet<(String, String)> {
    let gcs = &body["restoreStorage"]["gcsOptions"];
    let root = gcs["uri"].as_str().expect("the Java uri");
    let stamp = gcs["backupTimestamp"].as_str().expect("a backupTimestamp");
    let store = open_store(root);
    let mut written = BTreeSet::new();
    for (key, schema) in body["schemas"].as_object().expect("schemas") {
        let (dataset, table) = key.split_once('.').expect("dataset.table");
        let file = format!("{table}-000000000000.csv");
        let path = object_store::path::Path::from_iter(["backups", stamp, PROJECT, dataset, &file]);
        store
            .object_store()
            .put(&path, bytes::Bytes::from(csv_for(schema)).into())
            .await
            .expect("the Java-layout file is written");
        written.insert((dataset.to_owned(), table.to_owned()));
    }
    written
}

/// A restore example as sent to the emulator: our project, the fixture datasets instead of the
/// example's names (in `datasetsToRestore`, `tables`, `targetDatasets` and `schemas`; mapped
/// targets get fresh names), the repository holding `backups[scheme]` in the example's store,
/// that backup's id instead of the example's (`latest` stays), and `dryRun`.
fn restore_for_the_emulator(
    name: &str,
    mut body: Value,
    datasets: &BTreeMap<String, String>,
    backups: &BTreeMap<String, (String, String)>,
) -> Value {
    let map_dataset = |dataset: &str| fixture(datasets, name, dataset).to_owned();
    let map_table = |text: &str| match text.split_once('.') {
        Some((dataset, table)) => format!("{}.{table}", map_dataset(dataset)),
        None => text.to_owned(),
    };
    body["bigQuery"]["projectId"] = json!(PROJECT);
    if let Some(list) = body
        .pointer_mut("/bigQuery/datasetsToRestore")
        .and_then(Value::as_array_mut)
    {
        for d in list {
            *d = json!(map_dataset(d.as_str().expect("a dataset name")));
        }
    }
    if let Some(list) = body.pointer_mut("/tables").and_then(Value::as_array_mut) {
        for t in list {
            *t = json!(map_table(t.as_str().expect("a table name")));
        }
    }
    if let Some(map) = body
        .pointer_mut("/targetDatasets")
        .and_then(Value::as_object_mut)
    {
        *map = std::mem::take(map)
            .into_iter()
            .map(|(source, target)| {
                let target = unique_dataset(&format!("ex_{}", target.as_str().unwrap_or("t")));
                (map_dataset(&source), json!(target))
            })
            .collect();
    }
    if let Some(map) = body.pointer_mut("/schemas").and_then(Value::as_object_mut) {
        *map = std::mem::take(map)
            .into_iter()
            .map(|(table, schema)| (map_table(&table), schema))
            .collect();
    }
    let mut scheme = None;
    for pointer in ["/restoreStorage/uri", "/restoreStorage/gcsOptions/uri"] {
        if let Some(uri) = body.pointer_mut(pointer) {
            let (root, _) = &backups[scheme_of(uri)];
            scheme = Some(scheme_of(uri).to_owned());
            *uri = json!(root);
        }
    }
    let (_, backup_id) = &backups[&scheme.expect("a storage URI")];
    if let Some(id) = body.get_mut("backupId")
        && id != "latest"
    {
        *id = json!(backup_id);
    }
    // With `schemas` the example restores a Java-layout backup: the test writes one under the
    // example's own timestamp (see `put_java_layout`).
    let java_layout = body.get("schemas").is_some();
    if let Some(stamp) = body.pointer_mut("/restoreStorage/gcsOptions/backupTimestamp")
        && !java_layout
    {
        *stamp = json!(backup_id);
    }
    if let Some(project) = body.pointer_mut("/restoreStorage/gcsOptions/projectIdOfBackup") {
        *project = json!(PROJECT);
    }
    body["dryRun"] = json!(true);
    body
}

#[tokio::test]
async fn restore_examples_plan_the_tables_they_select_from_a_backup_on_every_store() {
    let datasets = fixture_datasets().await;
    let app = spawn_app().await;
    // One real backup of the fixture datasets in each store, for the examples to restore.
    let mut backups: BTreeMap<String, (String, String)> = BTreeMap::new();
    for scheme in ["gs", "s3", "az", "file"] {
        let root = unique_root(scheme);
        let entries: Vec<Value> = datasets
            .values()
            .map(|d| json!({ "datasetName": d }))
            .collect();
        let body = json!({
            "bigQuery": { "projectId": PROJECT, "tablesToBackup": entries },
            "backupStorage": { "uri": root },
            "wait": true
        });
        let (status, report) = app.post_json("/api/v1/backup", &body).await;
        assert_eq!(status, 200, "backup to {root}: {report}");
        let id = report["backupId"].as_str().expect("a backup id").to_owned();
        backups.insert(scheme.to_owned(), (root, id));
    }

    let requests = requests_of(RequestKind::Restore);
    assert!(requests.len() >= 10, "{} restore examples", requests.len());
    let mut failures = Vec::new();
    for (name, body) in requests {
        let body = restore_for_the_emulator(&name, body, &datasets, &backups);
        let spec = check_restore(body.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{name} as rewritten: {e}"));
        let java_layout = body.get("schemas").is_some();
        let in_backup: BTreeSet<(String, String)> = if java_layout {
            put_java_layout(&body).await
        } else {
            datasets
                .values()
                .flat_map(|d| FIXTURE_TABLES.map(|t| (d.clone(), t.to_owned())))
                .collect()
        };
        let sources: BTreeSet<(String, String)> = in_backup
            .into_iter()
            .filter(|(dataset, table)| spec.selects_table(dataset, table))
            .collect();
        let targets: BTreeSet<(String, String)> = sources
            .iter()
            .map(|(dataset, table)| (spec.target_dataset(dataset), table.clone()))
            .collect();
        assert!(!sources.is_empty(), "{name} selects no fixture table");

        let (status, answer) = app.post_json("/api/v1/restore", &body).await;
        // A drill names its scratch datasets with a random part of its own
        // (`bqb_drill_{8 hex}_{dataset}`): compared without it.
        let unrandom = |set: BTreeSet<(String, String)>| -> BTreeSet<(String, String)> {
            set.into_iter()
                .map(
                    |(dataset, table)| match dataset.strip_prefix("bqb_drill_") {
                        Some(rest) if rest.len() > 9 && rest.as_bytes()[8] == b'_' => {
                            (format!("bqb_drill_*_{}", &rest[9..]), table)
                        }
                        _ => (dataset, table),
                    },
                )
                .collect()
        };
        let as_expected = status == 200
            && answer["dryRun"] == json!(true)
            && planned(&answer, "source") == sources
            && unrandom(planned(&answer, "target")) == unrandom(targets.clone())
            && answer["plan"]["targetProject"] == json!(PROJECT)
            && (answer["plan"]["legacy"] == json!(true)) == java_layout
            && answer["plan"]["writeDisposition"] == json!(spec.write_disposition.as_str());
        if !as_expected {
            failures.push(format!(
                "{name}: expected a dry-run plan of {sources:?} into {targets:?}, got {status} {answer}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
