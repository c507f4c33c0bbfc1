//! Shared test harness: the services' addresses, `spawn_app()`, and BigQuery fixtures.

use std::sync::OnceLock;

use bq_backup::app::Application;
use bq_backup::config::Settings;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub const PROJECT: &str = "test-project";
/// The bucket (and Azure container) `scripts/test-services.sh start` creates in every store.
pub const BUCKET: &str = "bqb-test";

/// Where the test services listen, from the environment `scripts/test-services.sh env` prints.
#[derive(Debug, Clone)]
pub struct TestServices {
    pub bigquery_rest: String,
    pub bigquery_grpc: String,
    pub gcs: String,
    pub s3: String,
    pub azurite: String,
}

impl TestServices {
    /// Panics with instructions when the services are not running: never skip silently.
    pub fn get() -> &'static TestServices {
        static SERVICES: OnceLock<TestServices> = OnceLock::new();
        SERVICES.get_or_init(|| {
            let var = |name: &str| {
                std::env::var(name).unwrap_or_else(|_| {
                    panic!(
                        "\n\n*** TEST SERVICES MISSING: {name} is not set. ***\n\
                         Integration tests need the real test servers. Run the tests with\n\
                         `scripts/test.sh`, or start them yourself:\n\
                         `scripts/test-services.sh start && eval \"$(scripts/test-services.sh env)\"`\n\n"
                    )
                })
            };
            var("BQB_TEST_SERVICES");
            TestServices {
                bigquery_rest: var("BQB_BIGQUERY_ENDPOINT"),
                bigquery_grpc: var("BQB_BIGQUERY_STORAGE_ENDPOINT"),
                gcs: var("STORAGE_EMULATOR_HOST"),
                s3: var("BQB_S3_ENDPOINT"),
                azurite: var("AZURITE_BLOB_STORAGE_URL"),
            }
        })
    }

    /// Settings wired to the test services, as the binary would read them from the environment.
    pub fn settings(&self) -> Settings {
        self.settings_with(&[])
    }

    pub fn settings_with(&self, extra: &[(&str, &str)]) -> Settings {
        Settings::from_vars(self.env_with(extra)).expect("test settings are valid")
    }

    /// The environment variables behind [`Self::settings_with`], for a child `bq-backup` process.
    pub fn env_with(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        // Each server its own job records unless a test shares them on purpose.
        let state_uri = format!("memory://jobs-{}", uuid::Uuid::new_v4().simple());
        // The tests' storage: the test buckets, memory stores and temporary directories (where
        // `unique_root("file")` and `tempfile` put theirs). Tests of the confinement itself
        // pass a narrower list.
        let allowed = format!(
            "gs://*,s3://*,az://*,memory://,file://{}",
            std::env::temp_dir().display()
        );
        let mut vars: Vec<(String, String)> = [
            ("PORT", "0"),
            ("BQB_HOST", "127.0.0.1"),
            ("BQB_LOG_LEVEL", "warn"),
            ("BQB_PROJECT_ID", PROJECT),
            ("BQB_BIGQUERY_ENDPOINT", self.bigquery_rest.as_str()),
            ("BQB_BIGQUERY_STORAGE_ENDPOINT", self.bigquery_grpc.as_str()),
            ("BQB_GOOGLE_ANONYMOUS", "true"),
            ("STORAGE_EMULATOR_HOST", self.gcs.as_str()),
            ("BQB_S3_ENDPOINT", self.s3.as_str()),
            ("BQB_S3_ALLOW_HTTP", "true"),
            ("BQB_AZURE_USE_EMULATOR", "true"),
            ("AZURITE_BLOB_STORAGE_URL", self.azurite.as_str()),
            ("BQB_STATE_URI", state_uri.as_str()),
            ("BQB_ALLOWED_STORAGE", allowed.as_str()),
            ("BQB_JOB_HEARTBEAT_SECS", "1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        vars.retain(|(k, _)| !extra.iter().any(|(ek, _)| ek == k));
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        vars
    }
}

/// A running server on a free port, stopped (gracefully) when dropped.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub shutdown: CancellationToken,
    pub handle: Option<tokio::task::JoinHandle<Result<(), bq_backup::Error>>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(TestServices::get().settings()).await
}

pub async fn spawn_app_with(settings: Settings) -> TestApp {
    // As `serve` does: confined to BQB_ALLOWED_STORAGE (or the service's default).
    let storage = bq_backup::storage::StorageConfig::for_service(&settings.storage);
    spawn_app_with_storage(settings, storage).await
}

/// A server whose store clients `storage` makes (the faults suite wraps them).
pub async fn spawn_app_with_storage(
    settings: Settings,
    storage: bq_backup::storage::StorageConfig,
) -> TestApp {
    init_crypto();
    bq_backup::telemetry::init(&settings.log, settings.bigquery.project_id.as_deref());
    let shutdown = CancellationToken::new();
    let app = Application::build_with_storage(settings, storage, shutdown.clone())
        .await
        .expect("the app builds");
    let address = format!("http://{}", app.local_addr());
    let handle = tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::new(),
        shutdown,
        handle: Some(handle),
    }
}

/// As `main` does: choose the rustls provider before any TLS client is built.
pub fn init_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A dataset name no other test uses.
pub fn unique_dataset(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .get(..10)
            .unwrap_or("x")
    )
}

/// Thin REST client for fixtures (dataset/table creation, inserts); product code uses the
/// official crates instead.
pub struct BigQueryFixtures {
    http: reqwest::Client,
    base: String,
}

impl BigQueryFixtures {
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::new(),
            base: format!(
                "{}/bigquery/v2/projects/{PROJECT}",
                TestServices::get().bigquery_rest
            ),
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let resp = self
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .expect("bqemulator answers");
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "POST {url} -> {status}: {value}");
        value
    }

    pub async fn create_dataset(&self, dataset: &str, labels: Value) {
        self.post(
            "/datasets",
            json!({
                "datasetReference": { "projectId": PROJECT, "datasetId": dataset },
                "description": format!("fixture dataset {dataset}"),
                "labels": labels,
                "location": "US",
            }),
        )
        .await;
    }

    pub async fn create_table(&self, dataset: &str, table: Value) {
        self.post(&format!("/datasets/{dataset}/tables"), table)
            .await;
    }

    pub async fn insert_rows(&self, dataset: &str, table: &str, rows: Vec<Value>) {
        let rows: Vec<Value> = rows.into_iter().map(|r| json!({ "json": r })).collect();
        let resp = self
            .post(
                &format!("/datasets/{dataset}/tables/{table}/insertAll"),
                json!({ "rows": rows }),
            )
            .await;
        assert!(
            resp.get("insertErrors")
                .is_none_or(|e| e.as_array().is_none_or(Vec::is_empty)),
            "insert errors: {resp}"
        );
    }

    /// Creates `dataset` with table `all_types` holding every BigQuery type the emulator can store
    /// (all but BIGNUMERIC, which the format unit tests cover) and [`all_types_rows`].
    pub async fn create_all_types_dataset(&self, dataset: &str) {
        self.create_all_types_dataset_without(dataset, &[]).await;
    }

    /// As [`Self::create_all_types_dataset`] without the `excluded` columns. Restore tests leave
    /// out `geo`: bqemulator returns GEOGRAPHY as WKB bytes over the Read API and cannot load
    /// bytes back into a GEOGRAPHY column (real BigQuery sends and loads WKT text).
    pub async fn create_all_types_dataset_without(&self, dataset: &str, excluded: &[&str]) {
        self.create_dataset(dataset, json!({ "env": "test" })).await;
        let keep = |name: &str| !excluded.contains(&name);
        let fields: Vec<Value> = all_types_schema()
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["name"].as_str().is_some_and(keep))
            .cloned()
            .collect();
        self.create_table(
            dataset,
            json!({
                "tableReference": { "projectId": PROJECT, "datasetId": dataset, "tableId": "all_types" },
                "description": "every BigQuery type",
                "labels": { "kind": "fixture" },
                "schema": { "fields": fields },
            }),
        )
        .await;
        let rows = all_types_rows()
            .into_iter()
            .map(|r| match r {
                Value::Object(map) => {
                    Value::Object(map.into_iter().filter(|(k, _)| keep(k)).collect())
                }
                other => other,
            })
            .collect();
        self.insert_rows(dataset, "all_types", rows).await;
    }
}

/// `flat`: the all-types table without RECORD/REPEATED columns (for CSV).
pub async fn create_flat_table(fixtures: &BigQueryFixtures, dataset: &str) {
    let fields: Vec<Value> = all_types_schema()
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["type"] != "RECORD" && f["mode"] != "REPEATED")
        .cloned()
        .collect();
    let names: Vec<String> = fields
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    fixtures
        .create_table(dataset, json!({ "tableReference": { "projectId": PROJECT, "datasetId": dataset, "tableId": "flat" }, "labels": { "kind": "fixture" }, "schema": { "fields": fields } }))
        .await;
    let rows = all_types_rows()
        .into_iter()
        .map(|r| {
            Value::Object(
                r.as_object()
                    .unwrap()
                    .iter()
                    .filter(|(k, _)| names.contains(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )
        })
        .collect();
    fixtures.insert_rows(dataset, "flat", rows).await;
}

pub fn all_types_schema() -> Value {
    json!([
        { "name": "id", "type": "INT64", "mode": "REQUIRED", "description": "row id" },
        { "name": "i64", "type": "INT64" },
        { "name": "f64", "type": "FLOAT64" },
        { "name": "num", "type": "NUMERIC" },
        { "name": "flag", "type": "BOOL" },
        { "name": "s", "type": "STRING" },
        { "name": "b", "type": "BYTES" },
        { "name": "d", "type": "DATE" },
        { "name": "t", "type": "TIME" },
        { "name": "dt", "type": "DATETIME" },
        { "name": "ts", "type": "TIMESTAMP" },
        { "name": "geo", "type": "GEOGRAPHY" },
        { "name": "js", "type": "JSON" },
        { "name": "rec", "type": "RECORD", "fields": [
            { "name": "name", "type": "STRING" },
            { "name": "sub", "type": "RECORD", "fields": [
                { "name": "x", "type": "INT64" },
                { "name": "y", "type": "FLOAT64" }
            ]}
        ]},
        { "name": "tags", "type": "STRING", "mode": "REPEATED" },
        { "name": "items", "type": "RECORD", "mode": "REPEATED", "fields": [
            { "name": "sku", "type": "STRING" },
            { "name": "qty", "type": "INT64" }
        ]}
    ])
}

/// Row 1: ordinary values; row 2: extremes (unicode, empty string, negative, big NUMERIC); row 3:
/// NULL in every nullable column (and empty repeated fields).
pub fn all_types_rows() -> Vec<Value> {
    vec![
        json!({
            "id": 1, "i64": 42, "f64": 1.5, "num": "12345.678901234", "flag": true, "s": "hello",
            "b": "AAEC/w==", "d": "2026-11-20", "t": "23:59:58.123456", "dt": "2026-11-20T12:34:56.789012",
            "ts": "2026-11-20T12:34:56.789012Z", "geo": "POINT(1 2)", "js": "{\"a\":1}",
            "rec": { "name": "r1", "sub": { "x": 7, "y": 0.25 } },
            "tags": ["a", "b"], "items": [{ "sku": "s1", "qty": 2 }, { "sku": "s2", "qty": 3 }]
        }),
        json!({
            "id": 2, "i64": -9223372036854775807i64, "f64": -0.0, "num": "-99999999999999999999999999999.999999999",
            "flag": false, "s": "", "b": "", "d": "0001-01-01", "t": "00:00:00", "dt": "9999-12-31T23:59:59.999999",
            "ts": "1970-01-01T00:00:00Z", "geo": "LINESTRING(0 0, 1 1)", "js": "[1,2,3]",
            "rec": { "name": "żółw 🐢", "sub": { "x": -1, "y": null } },
            "tags": ["ünïcödé"], "items": [{ "sku": null, "qty": null }]
        }),
        json!({
            "id": 3, "i64": null, "f64": null, "num": null, "flag": null, "s": null, "b": null, "d": null,
            "t": null, "dt": null, "ts": null, "geo": null, "js": null, "rec": null, "tags": [], "items": []
        }),
    ]
}

/// Every row of `batches` as canonical strings (arrow's display form), sorted by the first
/// column, so tables read by different paths compare cell by cell.
pub fn canonical_rows(batches: &[arrow::array::RecordBatch]) -> Vec<Vec<String>> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters: Vec<ArrayFormatter> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("displayable column"))
            .collect();
        for r in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| f.value(r).to_string())
                    .collect::<Vec<_>>(),
            );
        }
    }
    rows.sort_by_key(|r| r.first().and_then(|id| id.parse::<i64>().ok()));
    rows
}

/// The BigQuery client wired to the test services.
pub async fn bigquery_client() -> bq_backup::bigquery::BigQuery {
    init_crypto();
    bq_backup::bigquery::BigQueryConfig::from_settings(&TestServices::get().settings().bigquery)
        .build()
        .await
        .expect("BigQuery clients build")
}

/// bqemulator's load jobs read `gs://bucket/key` from `$BQB_TEST_BQ_GCS_ROOT/bucket/key`, not from
/// fake-gcs: on Google Cloud both are the same GCS. Copies every object under the gs:// `root`
/// (as written to fake-gcs) to where the emulator reads it, so a gs:// restore runs its
/// server-side load path against the files the backup really wrote.
pub async fn mirror_gcs_for_bigquery(root: &str) {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    let local_root = std::env::var("BQB_TEST_BQ_GCS_ROOT")
        .expect("BQB_TEST_BQ_GCS_ROOT (scripts/test-services.sh env)");
    let uri = bq_backup::domain::StorageUri::parse(root).expect("gs:// root");
    let store =
        bq_backup::storage::StorageConfig::from_settings(&TestServices::get().settings().storage)
            .open_configured(&uri, bq_backup::storage::Access::Read)
            .expect("store opens");
    let objects: Vec<_> = store
        .object_store()
        .list(None)
        .try_collect()
        .await
        .expect("list");
    for meta in objects {
        let bytes = store
            .object_store()
            .get(&meta.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let dest = std::path::Path::new(&local_root)
            .join(uri.bucket().unwrap_or_default())
            .join(uri.prefix())
            .join(meta.location.as_ref());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(&dest, &bytes).unwrap();
    }
}

/// A store opened the way the service opens it, wired to the test services.
pub fn open_store(uri: &str) -> bq_backup::storage::Store {
    init_crypto();
    bq_backup::storage::StorageConfig::from_settings(&TestServices::get().settings().storage)
        .open_configured(
            &bq_backup::domain::StorageUri::parse(uri).expect("valid uri"),
            bq_backup::storage::Access::Write,
        )
        .expect("store opens")
}

/// A storage root no other test uses: a new temporary directory for `file`, a new prefix in
/// the test bucket for `gs`, `s3` and `az`.
pub fn unique_root(scheme: &str) -> String {
    let id = uuid::Uuid::new_v4().simple();
    match scheme {
        "file" => format!(
            "file://{}",
            std::env::temp_dir().join(format!("bqb-it-{id}")).display()
        ),
        _ => format!("{scheme}://{BUCKET}/it-{id}"),
    }
}

impl TestApp {
    /// POSTs JSON to `path`; the status and the JSON answer (`null` when the body is not JSON).
    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("server answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// GETs `path`; the status and the JSON answer.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let resp = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("server answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// DELETEs `path`; the status and the JSON answer.
    pub async fn delete_json(&self, path: &str) -> (u16, Value) {
        let resp = self
            .client
            .delete(self.url(path))
            .send()
            .await
            .expect("server answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Polls job `id` until it ends (panics after 60 s); its last record.
    pub async fn wait_for_job(&self, id: &str) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let (status, job) = self.get_json(&format!("/api/v1/jobs/{id}")).await;
            assert_eq!(status, 200, "{job}");
            if ["SUCCEEDED", "FAILED", "CANCELLED"].contains(&job["state"].as_str().unwrap_or("")) {
                return job;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "job {id} did not end: {job}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// The manifest of backup `id` in the `file://` repository at `dir`, as JSON.
pub fn manifest_json(dir: &std::path::Path, id: &str) -> Value {
    let path = dir.join(format!("backups/{id}/manifest.json"));
    serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .expect("the manifest is JSON")
}

/// `rows` rows `{"id", column}` numbered from `first`, each with 100 pseudo-random lowercase
/// letters from `state` (xorshift): text that does not compress away, for tests that need big
/// files.
pub fn incompressible_rows(state: &mut u64, first: u64, rows: u64, column: &str) -> Vec<Value> {
    (first..first + rows)
        .map(|id| {
            let text: String = (0..100)
                .map(|_| {
                    *state ^= *state << 13;
                    *state ^= *state >> 7;
                    *state ^= *state << 17;
                    char::from(b'a' + (*state % 26) as u8)
                })
                .collect();
            json!({ "id": id, column: text })
        })
        .collect()
}

/// A dataset of `tables` small tables (`t00`, `t01`, …; 20 rows each, one file each in a
/// backup): backed up one table at a time, it takes long enough (a second or more) to be
/// cancelled or collided with while it runs.
pub async fn dataset_of(tables: usize) -> String {
    let dataset = unique_dataset("job");
    let f = BigQueryFixtures::new();
    f.create_dataset(&dataset, json!({})).await;
    for i in 0..tables {
        let table = format!("t{i:02}");
        f.create_table(
            &dataset,
            json!({ "tableReference": { "projectId": PROJECT, "datasetId": dataset, "tableId": table },
                    "schema": { "fields": [{ "name": "id", "type": "INT64" }, { "name": "s", "type": "STRING" }] } }),
        )
        .await;
        f.insert_rows(
            &dataset,
            &table,
            (0..20)
                .map(|r| json!({ "id": r, "s": format!("row {r}") }))
                .collect(),
        )
        .await;
    }
    dataset
}

/// The built `bq-backup` binary with only the variables `vars` (so a stray `BQB_*` variable of
/// this process cannot change what it does), plus what a child needs from this process: `PATH`,
/// `HOME`, `TMPDIR`, and the S3 credentials and region the harness exports (without them
/// object_store would look for credentials elsewhere).
pub fn bq_backup_command(vars: Vec<(String, String)>) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_bq-backup"));
    command.env_clear().envs(vars);
    for inherited in [
        "PATH",
        "HOME",
        "TMPDIR",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
    ] {
        if let Some(value) = std::env::var_os(inherited) {
            command.env(inherited, value);
        }
    }
    command
}

/// `bq-backup ARGS` run to its end with the test services' environment plus `extra`, and
/// nothing else from this process's environment (so a stray `BQB_*` variable cannot change the
/// result).
pub fn bq_backup(args: &[&str], extra: &[(&str, &str)]) -> std::process::Output {
    let mut command = bq_backup_command(TestServices::get().env_with(extra));
    command.args(args);
    command.output().expect("the bq-backup binary runs")
}

/// The whole of a command's stdout as one JSON document: anything else there (a log line)
/// breaks `| jq`.
pub fn stdout_json(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Runs one GoogleSQL statement on the emulator (jobs.query); fails the test when it fails. Its
/// answer.
pub async fn run_sql(statement: &str) -> Value {
    let rest = &TestServices::get().bigquery_rest;
    let answer: Value = reqwest::Client::new()
        .post(format!("{rest}/bigquery/v2/projects/{PROJECT}/queries"))
        .json(&json!({ "query": statement, "useLegacySql": false }))
        .send()
        .await
        .expect("the emulator answers")
        .json()
        .await
        .expect("a JSON answer");
    assert!(answer.get("error").is_none(), "{statement}: {answer}");
    answer
}

/// `body` with the top-level fields of `edit` set (a request made wrong one field at a time).
pub fn edited(body: &Value, edit: &Value) -> Value {
    let mut body = body.clone();
    for (k, v) in edit.as_object().expect("an edit is an object") {
        body[k] = v.clone();
    }
    body
}

/// Whether an error answer's `details` name `field`.
pub fn names_field(answer: &Value, field: &str) -> bool {
    answer["details"]
        .as_array()
        .is_some_and(|d| d.iter().any(|d| d["field"] == field))
}

/// Backs up every table of `dataset` as AVRO into `root` through `app` and waits; the backup id.
pub async fn avro_backup(app: &TestApp, dataset: &str, root: &str) -> String {
    let (status, backup) = app
        .post_json(
            "/api/v1/backup?wait=true",
            &json!({
                "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset }] },
                "backupStorage": { "uri": root, "exportOptions": { "format": "AVRO" } },
            }),
        )
        .await;
    assert_eq!(status, 200, "{backup}");
    backup["backupId"].as_str().expect("backupId").to_string()
}
