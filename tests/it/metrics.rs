//! `GET /metrics`: a real backup moves the job, row and byte counters; a failed request counts
//! under its error code; the text parses as the exposition format.

use std::collections::BTreeMap;

use serde_json::json;

use crate::helpers::{
    BigQueryFixtures, PROJECT, TestApp, create_flat_table, spawn_app, unique_dataset, unique_root,
};

/// One sample: the family name and its labels, sorted (`name{a="1",b="2"}`), and the value.
type Samples = BTreeMap<String, f64>;

/// Scrapes `/metrics`, checks the content type and that every line is a comment or a sample,
/// and returns the samples.
async fn scrape(app: &TestApp) -> Samples {
    let resp = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = resp.text().await.unwrap();
    assert_eq!(text.lines().last(), Some("# EOF"), "ends with # EOF");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| parse_sample(l).unwrap_or_else(|e| panic!("line `{l}`: {e}")))
        .collect()
}

/// Parses `name{label="value",…} number` (labels optional, values with `\"` `\\` `\n` escapes).
fn parse_sample(line: &str) -> Result<(String, f64), String> {
    let name_end = line.find(['{', ' ']).ok_or("no value after the name")?;
    let name = &line[..name_end];
    let valid_name = name.chars().enumerate().all(|(i, c)| {
        c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
    });
    if name.is_empty() || !valid_name {
        return Err(format!("`{name}` is not a metric name"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find("=\"").ok_or("a label without =\"")?;
            let key = &rest[..eq];
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("`{key}` is not a label name"));
            }
            let mut value = String::new();
            let mut chars = rest[eq + 2..].char_indices();
            let close = loop {
                match chars.next() {
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c @ ('"' | '\\'))) => value.push(c),
                        _ => return Err("a bad escape in a label value".into()),
                    },
                    Some((_, c)) => value.push(c),
                    None => return Err("an unterminated label value".into()),
                }
            };
            labels.push(format!("{key}=\"{value}\""));
            rest = &rest[eq + 2 + close + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let number = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse::<f64>().map_err(|e| format!("value `{v}`: {e}"))?,
    };
    labels.sort();
    let key = if labels.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{}}}", labels.join(","))
    };
    Ok((key, number))
}

fn value(samples: &Samples, key: &str) -> f64 {
    samples.get(key).copied().unwrap_or(0.0)
}

#[test]
fn the_sample_parser_rejects_what_is_not_a_sample() {
    assert_eq!(
        parse_sample(r#"a_total{b="x",a="y\"z"} 3"#),
        Ok((r#"a_total{a="y"z",b="x"}"#.to_string(), 3.0))
    );
    assert_eq!(parse_sample("up 1"), Ok(("up".to_string(), 1.0)));
    for bad in ["a_total{b=\"x\"}", "a b", "1a 2", "a{b=x} 1", "a{b=\"x} 1"] {
        assert!(parse_sample(bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn a_backup_and_a_failed_request_show_in_the_metrics() {
    let app = spawn_app().await;
    let fixtures = BigQueryFixtures::new();
    let dataset = unique_dataset("metrics");
    fixtures.create_dataset(&dataset, json!({})).await;
    create_flat_table(&fixtures, &dataset).await;
    let before = scrape(&app).await;

    let body = json!({
        "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": dataset }] },
        "backupStorage": { "uri": unique_root("file"), "exportOptions": { "format": "PARQUET" } },
        "wait": true
    });
    let (status, report) = app.post_json("/api/v1/backup", &body).await;
    assert_eq!(status, 200, "{report}");
    let rows = report["totals"]["rows"].as_f64().unwrap();
    let bytes = report["totals"]["bytes"].as_f64().unwrap();
    assert_eq!(rows, 3.0, "{report}");
    assert!(bytes > 0.0, "{report}");

    let missing = json!({
        "bigQuery": { "projectId": PROJECT, "tablesToBackup": [{ "datasetName": unique_dataset("missing") }] },
        "backupStorage": { "uri": unique_root("file") },
        "wait": true
    });
    let (status, error) = app.post_json("/api/v1/backup", &missing).await;
    assert_eq!(status, 404, "{error}");
    assert_eq!(error["errorCode"], "RESOURCE_NOT_FOUND");
    let unrouted = app.client.get(app.url("/nowhere/42")).send().await.unwrap();
    assert_eq!(unrouted.status(), 404);

    let after = scrape(&app).await;
    let delta = |key: &str| value(&after, key) - value(&before, key);
    assert_eq!(delta(r#"bqbackup_jobs_started_total{kind="BACKUP"}"#), 1.0);
    assert_eq!(
        delta(r#"bqbackup_jobs_ended_total{kind="BACKUP",state="SUCCEEDED"}"#),
        1.0
    );
    assert_eq!(
        delta(r#"bqbackup_job_duration_seconds_count{kind="BACKUP",state="SUCCEEDED"}"#),
        1.0
    );
    assert_eq!(delta(r#"bqbackup_job_rows_total{kind="BACKUP"}"#), rows);
    assert_eq!(delta(r#"bqbackup_job_bytes_total{kind="BACKUP"}"#), bytes);
    assert_eq!(
        delta(r#"bqbackup_errors_total{code="RESOURCE_NOT_FOUND",source="http"}"#),
        2.0,
        "the unknown dataset and the unknown route"
    );
    assert_eq!(
        delta(r#"bqbackup_http_requests_total{method="POST",route="/api/v1/backup",status="200"}"#),
        1.0
    );
    assert_eq!(
        delta(r#"bqbackup_http_requests_total{method="POST",route="/api/v1/backup",status="404"}"#),
        1.0
    );
    assert_eq!(
        delta(r#"bqbackup_http_requests_total{method="GET",route="unmatched",status="404"}"#),
        1.0,
        "unknown paths share one series"
    );
    // The first scrape was counted when it ended, before the second one rendered.
    assert_eq!(
        value(
            &after,
            r#"bqbackup_http_requests_total{method="GET",route="/metrics",status="200"}"#
        ),
        1.0
    );
    // Nothing is left running or queued, and the gauges say so for both kinds.
    for kind in ["BACKUP", "RESTORE"] {
        assert_eq!(
            after.get(&format!(r#"bqbackup_jobs_active{{kind="{kind}"}}"#)),
            Some(&0.0)
        );
        assert_eq!(
            after.get(&format!(r#"bqbackup_jobs_queued{{kind="{kind}"}}"#)),
            Some(&0.0)
        );
    }
    assert!(
        !after.keys().any(|k| k.contains(&dataset)),
        "no dataset or table names in the metrics"
    );
}

#[tokio::test]
async fn every_job_counter_has_a_series_before_the_first_job() {
    let app = spawn_app().await;
    let samples = scrape(&app).await;
    for kind in ["BACKUP", "RESTORE"] {
        for key in [
            format!(r#"bqbackup_jobs_started_total{{kind="{kind}"}}"#),
            format!(r#"bqbackup_job_rows_total{{kind="{kind}"}}"#),
            format!(r#"bqbackup_job_bytes_total{{kind="{kind}"}}"#),
            format!(r#"bqbackup_jobs_ended_total{{kind="{kind}",state="SUCCEEDED"}}"#),
            format!(r#"bqbackup_jobs_ended_total{{kind="{kind}",state="FAILED"}}"#),
            format!(r#"bqbackup_jobs_ended_total{{kind="{kind}",state="CANCELLED"}}"#),
            format!(r#"bqbackup_jobs_active{{kind="{kind}"}}"#),
            format!(r#"bqbackup_jobs_queued{{kind="{kind}"}}"#),
        ] {
            assert_eq!(samples.get(&key), Some(&0.0), "{key}");
        }
    }
}
