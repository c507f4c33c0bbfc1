//! The backup files read by someone else's decoder: `independent_read.py` (pyarrow.parquet,
//! fastavro, Python's gzip/json and an RFC 4180 tokenizer, from the test venv) must give back
//! exactly the rows the fixture inserted. The expected rows are computed here from
//! [`all_types_rows`], never from our own decoder, so a bug shared by our encoder and decoder
//! cannot hide.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use serde_json::{Value, json};

use crate::helpers::{
    BigQueryFixtures, PROJECT, all_types_rows, all_types_schema, create_flat_table, spawn_app,
    unique_dataset,
};

/// `$BQB_TEST_VENV/bin/python`; panics (never skips) when the venv is not known.
pub(crate) fn venv_python() -> PathBuf {
    let venv = std::env::var("BQB_TEST_VENV").unwrap_or_else(|_| {
        panic!(
            "\n\n*** BQB_TEST_VENV is not set. ***\nThe independent-reader tests need the test \
             venv (pyarrow, fastavro): `eval \"$(scripts/test-services.sh env)\"`.\n\n"
        )
    });
    let python = Path::new(&venv).join("bin").join("python");
    assert!(
        python.exists(),
        "{} does not exist: run `scripts/test-services.sh start` to install the test venv",
        python.display()
    );
    python
}

/// Backs up `table` of `dataset` into a fresh directory; returns the directory and the manifest.
async fn back_up(
    dataset: &str,
    table: &str,
    format: &str,
    compression: &str,
) -> (tempfile::TempDir, Value) {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let body = json!({
        "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset, "tables": [table] }] },
        "backupStorage": {
            "uri": format!("file://{}", dir.path().display()),
            "exportOptions": { "format": format, "compression": compression }
        }
    });
    let resp = app
        .client
        .post(app.url("/api/v1/backup?wait=true"))
        .json(&body)
        .send()
        .await
        .expect("server answers");
    let status = resp.status();
    let report: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "{report}");
    let backup_id = report["backupId"].as_str().expect("backupId");
    let manifest_path = dir
        .path()
        .join("backups")
        .join(backup_id)
        .join("manifest.json");
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(&manifest_path)
            .unwrap_or_else(|e| panic!("{}: {e}", manifest_path.display())),
    )
    .expect("the manifest is JSON");
    assert_eq!(manifest["format"]["format"], format);
    assert_eq!(manifest["format"]["compression"], compression);
    (dir, manifest)
}

/// Runs `independent_read.py` on every file the manifest lists for its only table.
pub(crate) fn read_independently(dir: &Path, manifest: &Value) -> Vec<Value> {
    let table = &manifest["tables"][0];
    let schema_file = dir.join("schema-fields.json");
    std::fs::write(
        &schema_file,
        serde_json::to_vec(&table["resource"]["schema"]["fields"]).unwrap(),
    )
    .unwrap();
    let files: Vec<PathBuf> = table["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| dir.join(f["path"].as_str().expect("file path")))
        .collect();
    assert!(!files.is_empty(), "the manifest lists files: {table}");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/independent_read.py");
    let output = Command::new(venv_python())
        .arg(&script)
        .args(["--format", manifest["format"]["format"].as_str().unwrap()])
        .args([
            "--compression",
            manifest["format"]["compression"].as_str().unwrap(),
        ])
        .arg("--schema-json")
        .arg(&schema_file)
        .args([
            "--csv-header",
            &manifest["format"]["csvHeader"]
                .as_bool()
                .unwrap()
                .to_string(),
        ])
        .args([
            "--csv-delimiter",
            manifest["format"]["csvDelimiter"].as_str().unwrap(),
        ])
        .args(&files)
        .output()
        .expect("the test venv's python runs");
    assert!(
        output.status.success(),
        "independent_read.py failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "independent_read.py printed no JSON rows ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// The fixture's rows in the script's canonical form (see the table in `independent_read.py`).
pub(crate) fn expected_rows(fields: &[Value]) -> Vec<Value> {
    all_types_rows()
        .iter()
        .map(|row| canonical_record(fields, row))
        .collect()
}

fn canonical_record(fields: &[Value], record: &Value) -> Value {
    Value::Object(
        fields
            .iter()
            .map(|f| {
                let name = f["name"].as_str().unwrap();
                (name.to_string(), canonical_cell(f, &record[name], true))
            })
            .collect(),
    )
}

fn canonical_cell(field: &Value, value: &Value, whole_column: bool) -> Value {
    if whole_column && field["mode"] == "REPEATED" {
        return match value {
            Value::Null => Value::Null,
            Value::Array(items) => items
                .iter()
                .map(|v| canonical_cell(field, v, false))
                .collect(),
            other => panic!("REPEATED {field} holds {other}"),
        };
    }
    if value.is_null() {
        return Value::Null;
    }
    let text = || match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match field["type"].as_str().unwrap() {
        "INT64" | "INTEGER" => json!(text()),
        "FLOAT64" | "FLOAT" => json!(canonical_float(value.as_f64().expect("a number"))),
        "NUMERIC" | "BIGNUMERIC" => json!(canonical_decimal(&text())),
        "BOOL" | "BOOLEAN" => value.clone(),
        "STRING" | "JSON" | "DATE" | "GEOGRAPHY" => value.clone(),
        "BYTES" => {
            let b64 = base64::engine::general_purpose::STANDARD;
            json!(b64.encode(b64.decode(text()).expect("fixture bytes are base64")))
        }
        "TIME" => {
            let t = chrono::NaiveTime::parse_from_str(&text(), "%H:%M:%S%.f").unwrap();
            json!(t.format("%H:%M:%S%.6f").to_string())
        }
        "DATETIME" => {
            let t = chrono::NaiveDateTime::parse_from_str(&text(), "%Y-%m-%dT%H:%M:%S%.f").unwrap();
            json!(t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string())
        }
        "TIMESTAMP" => {
            let t: chrono::DateTime<chrono::Utc> = text().parse().unwrap();
            json!(t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        }
        "RECORD" | "STRUCT" => canonical_record(field["fields"].as_array().unwrap(), value),
        other => panic!("no canonical form for {other}"),
    }
}

/// Python's `repr` with a Rust-style exponent; both switch to exponents at the same magnitudes.
fn canonical_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        format!("{v:?}")
    }
}

fn canonical_decimal(text: &str) -> String {
    let text = match text.split_once('.') {
        Some(_) => text.trim_end_matches('0').trim_end_matches('.'),
        None => text,
    };
    if text.trim_start_matches('-').chars().all(|c| c == '0') {
        "0".into()
    } else {
        text.to_string()
    }
}

/// bqemulator sends GEOGRAPHY as WKB (real BigQuery: WKT text), so the files hold WKB and the
/// script prints it as hex. Where a cell is the WKB of exactly the expected WKT, put the WKT in
/// its place; any other difference still fails the comparison.
pub(crate) fn accept_wkb_for_wkt(actual: &mut [Value], expected: &[Value], column: &str) {
    for (a, e) in actual.iter_mut().zip(expected) {
        if let (Some(hex), Some(wkt)) = (a[column].as_str(), e[column].as_str())
            && wkb_as_wkt(hex).as_deref() == Some(wkt)
        {
            a[column] = json!(wkt);
        }
    }
}

/// Little-endian 2D WKB POINT or LINESTRING (all the fixture holds) as WKT.
fn wkb_as_wkt(hex: &str) -> Option<String> {
    let bytes = hex::decode(hex).ok()?;
    let u32_at = |i: usize| Some(u32::from_le_bytes(bytes.get(i..i + 4)?.try_into().ok()?));
    let f64_at = |i: usize| Some(f64::from_le_bytes(bytes.get(i..i + 8)?.try_into().ok()?));
    if bytes.first() != Some(&1) {
        return None;
    }
    let point = |i: usize| Some(format!("{} {}", f64_at(i)?, f64_at(i + 8)?));
    match u32_at(1)? {
        1 if bytes.len() == 21 => Some(format!("POINT({})", point(5)?)),
        2 => {
            let n = u32_at(5)? as usize;
            if bytes.len() != 9 + 16 * n {
                return None;
            }
            let points: Option<Vec<String>> = (0..n).map(|k| point(9 + 16 * k)).collect();
            Some(format!("LINESTRING({})", points?.join(", ")))
        }
        _ => None,
    }
}

/// Backs up the all-types fixture (for CSV: its flat columns) in `format` + `compression`, reads
/// the files with the independent reader and compares with the inserted rows.
async fn files_decode_independently(format: &str, compression: &str) {
    let dataset = unique_dataset(&format!("indep_{}", format.to_lowercase()));
    let fixtures = BigQueryFixtures::new();
    fixtures.create_all_types_dataset(&dataset).await;
    let table = if format == "CSV" {
        create_flat_table(&fixtures, &dataset).await;
        "flat"
    } else {
        "all_types"
    };
    let (dir, manifest) = back_up(&dataset, table, format, compression).await;

    let fields = manifest["tables"][0]["resource"]["schema"]["fields"]
        .as_array()
        .expect("the manifest records the schema")
        .clone();
    let fixture_fields: Vec<Value> = all_types_schema()
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| table == "all_types" || (f["type"] != "RECORD" && f["mode"] != "REPEATED"))
        .cloned()
        .collect();
    let names = |fs: &[Value]| -> Vec<String> {
        fs.iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&fields), names(&fixture_fields), "recorded schema");

    let mut actual = read_independently(dir.path(), &manifest);
    let expected = expected_rows(&fixture_fields);
    accept_wkb_for_wkt(&mut actual, &expected, "geo");
    assert_eq!(actual.len(), expected.len(), "rows: {actual:#?}");
    for (a, e) in actual.iter().zip(&expected) {
        assert_eq!(a, e, "{format}/{compression}, row id {}", e["id"]);
    }
}

#[tokio::test]
async fn avro_files_with_deflate_decode_with_fastavro_into_the_source_rows() {
    // DEFLATE: fastavro decodes SNAPPY and ZSTD only with extra packages the venv lacks.
    files_decode_independently("AVRO", "DEFLATE").await;
}

#[tokio::test]
async fn parquet_files_with_zstd_decode_with_pyarrow_into_the_source_rows() {
    files_decode_independently("PARQUET", "ZSTD").await;
}

#[tokio::test]
async fn gzipped_json_files_decode_with_python_json_into_the_source_rows() {
    files_decode_independently("JSON", "GZIP").await;
}

#[tokio::test]
async fn gzipped_csv_files_decode_with_python_into_the_source_rows() {
    files_decode_independently("CSV", "GZIP").await;
}

#[test]
fn wkb_points_and_linestrings_read_as_wkt() {
    assert_eq!(
        wkb_as_wkt("0101000000000000000000f03f0000000000000040").as_deref(),
        Some("POINT(1 2)")
    );
    let line = "01020000000200000000000000000000000000000000000000000000000000f03f000000000000f03f";
    assert_eq!(wkb_as_wkt(line).as_deref(), Some("LINESTRING(0 0, 1 1)"));
    assert_eq!(wkb_as_wkt("00"), None);
}
