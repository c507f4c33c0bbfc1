use chrono::{Duration, TimeZone};
use serde_json::json;

use super::*;
use crate::domain::storage_uri::StorageScheme;

const JAVA_FULL: &str = include_str!("../../../examples/java-compat/backup_request.json");
const JAVA_MINIMAL: &str =
    include_str!("../../../examples/java-compat/backup_request_minimal.json");

/// Shortly after the Java example's backupTime (2026-11-20 23:59 in Los Angeles).
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 8, 0, 0).unwrap()
}

fn parse(value: serde_json::Value) -> BackupRequest {
    parse_backup_request(value.to_string().as_bytes()).unwrap()
}

fn minimal() -> serde_json::Value {
    json!({
        "bigQuery": {"projectId": "test-project"},
        "backupStorage": {"uri": "memory://t"}
    })
}

fn with(mut base: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    base
}

fn errors_of(value: serde_json::Value) -> Vec<FieldError> {
    parse(value).validate(now()).unwrap_err()
}

fn fields_of(value: serde_json::Value) -> Vec<String> {
    errors_of(value).into_iter().map(|e| e.field).collect()
}

fn spec_of(value: serde_json::Value) -> BackupSpec {
    parse(value)
        .validate(now())
        .unwrap_or_else(|e| panic!("{e:?}"))
}

#[test]
fn the_java_example_request_parses_and_validates_unchanged() {
    let spec = parse_backup_request(JAVA_FULL.as_bytes())
        .unwrap()
        .validate(now())
        .unwrap();
    assert_eq!(spec.project, "test-project");
    assert_eq!(spec.storage.scheme(), StorageScheme::Gs);
    assert_eq!(spec.storage.to_string(), "gs://backup-bucket/nightly");
    assert_eq!(spec.format, "CSV");
    assert_eq!(
        spec.format_field,
        "backupStorage.gcsOptions.exportOptions.format"
    );
    assert_eq!(spec.compression.as_deref(), Some("GZIP"));
    assert_eq!(
        spec.compression_field,
        "backupStorage.gcsOptions.exportOptions.compression"
    );
    assert!(spec.csv_header);
    assert_eq!(spec.field_delimiter, b',');
    assert!(spec.overwrite);
    assert_eq!(spec.max_parallel_tables, Some(4));
    assert_eq!(
        spec.snapshot_time(),
        Some(Utc.with_ymd_and_hms(2026, 11, 21, 7, 59, 0).unwrap())
    );
    let DatasetSelection::Listed(entries) = &spec.datasets else {
        panic!("expected listed datasets");
    };
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].dataset, DatasetRef::new("test-project", "shop"));
    assert_eq!(entries[0].field, "bigQuery.tablesToBackup[0]");
    assert_eq!(entries[0].tables.named_tables(), ["customers", "orders"]);
    assert!(entries[0].tables.matches("events_2026"));
    assert!(!entries[0].tables.matches("payments"));
    assert!(entries[1].tables.selects_all());
    assert!(spec.warnings.is_empty());
}

#[test]
fn the_minimal_java_example_gets_java_defaults() {
    let spec = parse_backup_request(JAVA_MINIMAL.as_bytes())
        .unwrap()
        .validate(now())
        .unwrap();
    assert!(matches!(spec.datasets, DatasetSelection::All));
    assert_eq!(spec.storage.bucket(), Some("backup-bucket"));
    assert_eq!(spec.storage.prefix(), "");
    assert_eq!(spec.format, "AVRO");
    assert_eq!(spec.compression, None);
    assert!(spec.overwrite);
    assert_eq!(spec.snapshot, None);
    assert_eq!(spec.max_parallel_tables, None);
    assert_eq!(spec.file_size_bytes, DEFAULT_FILE_SIZE_BYTES);
    assert!(!spec.dry_run && !spec.wait && !spec.include_dependents && !spec.allow_concurrent);
    assert_eq!(spec.ttl_days, None);
}

#[test]
fn every_extension_is_accepted_and_carried_into_the_spec() {
    let spec = spec_of(json!({
        "bigQuery": {"projectId": "test-project", "tablesToBackup": [
            {"datasetName": "shop", "tableRegex": "orders_\\d+", "excludeTables": ["orders_0"]}
        ]},
        "backupStorage": {"uri": "s3://bucket/bq", "exportOptions": {"format": "parquet", "compression": "zstd"}},
        "reason": "before migration",
        "labels": {"env": "prod", "team": ""},
        "asOf": "2026-11-21T07:00:00+01:00",
        "maxParallelTables": 8,
        "fileSizeBytes": 1048576,
        "dryRun": true, "wait": true, "includeDependents": true, "allowConcurrent": true,
        "ttlDays": 30
    }));
    assert_eq!(spec.storage.to_string(), "s3://bucket/bq");
    assert_eq!(spec.format, "PARQUET");
    assert_eq!(spec.format_field, "backupStorage.exportOptions.format");
    assert_eq!(spec.compression.as_deref(), Some("ZSTD"));
    assert_eq!(spec.reason.as_deref(), Some("before migration"));
    assert_eq!(spec.labels.len(), 2);
    assert_eq!(
        spec.snapshot,
        Some(Snapshot {
            at: Utc.with_ymd_and_hms(2026, 11, 21, 6, 0, 0).unwrap(),
            field: "asOf"
        })
    );
    assert_eq!(spec.max_parallel_tables, Some(8));
    assert_eq!(spec.file_size_bytes, 1 << 20);
    assert!(spec.dry_run && spec.wait && spec.include_dependents && spec.allow_concurrent);
    assert_eq!(spec.ttl_days, Some(30));
    let DatasetSelection::Listed(entries) = &spec.datasets else {
        panic!()
    };
    assert!(entries[0].tables.matches("orders_12"));
    assert!(!entries[0].tables.matches("orders_0"));
}

#[test]
fn a_request_with_several_problems_reports_all_of_them() {
    let fields = fields_of(json!({
        "bigQuery": {"projectId": "Bad_Project", "tablesToBackup": [
            {"tables": ["a.b"]},
            {"datasetName": "my-shop", "tableRegex": "("}
        ]},
        "backupStorage": {"gcsOptions": {"uri": "s3://bucket", "exportOptions": {"fieldDelimiter": ",,"}}},
        "reason": "x".repeat(1025),
        "labels": {"Env": "prod"},
        "maxParallelTables": 0,
        "fileSizeBytes": 10,
        "ttlDays": 0
    }));
    assert_eq!(
        fields,
        [
            "bigQuery.projectId",
            "bigQuery.tablesToBackup[0].datasetName",
            "bigQuery.tablesToBackup[0].tables[0]",
            "bigQuery.tablesToBackup[1].datasetName",
            "bigQuery.tablesToBackup[1].tableRegex",
            "backupStorage.gcsOptions.uri",
            "backupStorage.gcsOptions.exportOptions.fieldDelimiter",
            "maxParallelTables",
            "reason",
            "labels.Env",
            "fileSizeBytes",
            "ttlDays",
        ]
    );
}

#[test]
fn an_empty_body_object_names_the_required_fields() {
    assert_eq!(
        fields_of(json!({})),
        ["bigQuery.projectId", "backupStorage"]
    );
}

#[test]
fn the_storage_uri_must_be_given_exactly_once() {
    let both = json!({"bigQuery": {"projectId": "test-project"},
        "backupStorage": {"uri": "s3://bucket", "gcsOptions": {"uri": "gs://bucket"}}});
    assert_eq!(fields_of(both), ["backupStorage.uri"]);
    let neither = json!({"bigQuery": {"projectId": "test-project"}, "backupStorage": {}});
    assert_eq!(fields_of(neither), ["backupStorage.uri"]);
    let gcs_without_uri = json!({"bigQuery": {"projectId": "test-project"},
        "backupStorage": {"gcsOptions": {"exportOptions": {"format": "AVRO"}}}});
    assert_eq!(fields_of(gcs_without_uri), ["backupStorage.gcsOptions.uri"]);
}

#[test]
fn the_java_gcs_uri_must_be_gs_and_the_extension_uri_may_be_anything() {
    let errors = errors_of(json!({"bigQuery": {"projectId": "test-project"},
        "backupStorage": {"gcsOptions": {"uri": "file:///tmp/x"}}}));
    assert_eq!(errors[0].field, "backupStorage.gcsOptions.uri");
    assert!(
        errors[0].message.starts_with("must start with gs://"),
        "{}",
        errors[0].message
    );

    let errors = errors_of(json!({"bigQuery": {"projectId": "test-project"},
        "backupStorage": {"uri": "ftp://host/x"}}));
    assert_eq!(
        errors,
        [FieldError::new(
            "backupStorage.uri",
            "must start with gs://, s3://, az://, file:// or memory://"
        )]
    );

    let errors = errors_of(json!({"bigQuery": {"projectId": "test-project"},
        "backupStorage": {"uri": "gs://"}}));
    assert_eq!(
        errors,
        [FieldError::new("backupStorage.uri", "bucket name missing")]
    );

    let spec = spec_of(with(
        minimal(),
        json!({"backupStorage": {"uri": "file://./demo-backups"}}),
    ));
    assert_eq!(spec.storage.file_path().as_deref(), Some("./demo-backups"));
}

#[test]
fn export_options_may_not_be_given_in_both_places() {
    let errors = errors_of(json!({"bigQuery": {"projectId": "test-project"},
        "backupStorage": {"gcsOptions": {"uri": "gs://bucket", "exportOptions": {}}, "exportOptions": {}}}));
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].field, "backupStorage.exportOptions");
}

#[test]
fn format_and_compression_are_normalized_and_located() {
    let spec = spec_of(with(
        minimal(),
        json!({"backupStorage": {"uri": "memory://t",
        "exportOptions": {"format": "json", "compression": "none"}}}),
    ));
    assert_eq!(spec.format, "JSON");
    assert_eq!(spec.compression, None);
    assert_eq!(
        spec.compression_field,
        "backupStorage.exportOptions.compression"
    );
    let spec = spec_of(json!({"bigQuery": {"projectId": "test-project"},
        "backupStorage": {"gcsOptions": {"uri": "gs://bucket"}}}));
    assert_eq!(
        spec.format_field,
        "backupStorage.gcsOptions.exportOptions.format"
    );
}

#[test]
fn csv_options_default_to_a_header_and_commas_and_accept_tab() {
    let spec = spec_of(minimal());
    assert!(spec.csv_header);
    assert_eq!(spec.field_delimiter, b',');
    for tab in ["\t", "\\t", "tab"] {
        let spec = spec_of(with(
            minimal(),
            json!({"backupStorage": {"uri": "memory://t",
            "exportOptions": {"format": "CSV", "fieldDelimiter": tab, "header": false}}}),
        ));
        assert_eq!(spec.field_delimiter, b'\t');
        assert!(!spec.csv_header);
    }
}

#[test]
fn java_clients_may_send_booleans_and_numbers_as_strings() {
    let spec = spec_of(json!({"bigQuery": {"projectId": "test-project"},
        "backupStorage": {"gcsOptions": {"uri": "gs://bucket",
            "exportOptions": {"overwrite": "true", "header": "FALSE", "threadPoolSize": "6", "threadQueueCapacity": null}}}}));
    assert!(spec.overwrite);
    assert!(!spec.csv_header);
    assert_eq!(spec.max_parallel_tables, Some(6));
}

#[test]
fn thread_pool_size_maps_to_parallelism_unless_max_parallel_tables_is_given() {
    let java = |pool: serde_json::Value| {
        json!({"bigQuery": {"projectId": "test-project"},
            "backupStorage": {"gcsOptions": {"uri": "gs://bucket", "exportOptions": {"threadPoolSize": pool}}}})
    };
    let spec = spec_of(with(java(json!(4)), json!({"maxParallelTables": 2})));
    assert_eq!(spec.max_parallel_tables, Some(2));
    assert_eq!(
        spec.warnings[0].field,
        "backupStorage.gcsOptions.exportOptions.threadPoolSize"
    );

    let spec = spec_of(java(json!(500)));
    assert_eq!(spec.max_parallel_tables, Some(64));
    assert_eq!(spec.warnings.len(), 1);

    assert_eq!(
        fields_of(java(json!(0))),
        ["backupStorage.gcsOptions.exportOptions.threadPoolSize"]
    );
    assert_eq!(
        fields_of(with(minimal(), json!({"maxParallelTables": 65}))),
        ["maxParallelTables"]
    );
}

#[test]
fn backup_time_in_los_angeles_converts_to_the_right_utc_instant() {
    let at = |local: &str| {
        spec_of(with(
            minimal(),
            json!({"backupTime": {"localDateTime": local, "timezone": "America/Los_Angeles"}}),
        ))
        .snapshot
        .unwrap()
    };
    // Winter: PST is UTC-8.
    let winter = at("2026-11-20T23:59:00");
    assert_eq!(
        winter.at,
        Utc.with_ymd_and_hms(2026, 11, 21, 7, 59, 0).unwrap()
    );
    assert_eq!(winter.field, "backupTime.localDateTime");
    // Java's LocalDateTime.toString() drops zero seconds.
    assert_eq!(at("2026-11-20T23:59").at, winter.at);
}

#[test]
fn backup_time_defaults_to_utc_and_accepts_offsets() {
    let at = |time: serde_json::Value| {
        spec_of(with(minimal(), json!({"backupTime": time}))).snapshot_time()
    };
    let utc = Utc.with_ymd_and_hms(2026, 11, 21, 7, 0, 0).unwrap();
    assert_eq!(
        at(json!({"localDateTime": "2026-11-21T07:00:00"})),
        Some(utc)
    );
    assert_eq!(
        at(json!({"localDateTime": "2026-11-21T08:00:00", "timezone": "+01:00"})),
        Some(utc)
    );
    assert_eq!(
        at(json!({"localDateTime": "2026-11-21T02:00:00", "timezone": "GMT-05"})),
        Some(utc)
    );
    assert_eq!(
        at(json!({"localDateTime": "2026-11-21T07:00:00.000", "timezone": "Z"})),
        Some(utc)
    );
    assert_eq!(
        at(json!({"timezone": "UTC"})),
        None,
        "no local time means now, as in Java"
    );
}

#[test]
fn a_local_time_in_a_daylight_saving_gap_is_rejected() {
    // 2026-03-08 02:30 never happens in Los Angeles (clocks jump from 02:00 to 03:00).
    let now = Utc.with_ymd_and_hms(2026, 3, 9, 0, 0, 0).unwrap();
    let request = parse(with(
        minimal(),
        json!({"backupTime":
        {"localDateTime": "2026-03-08T02:30:00", "timezone": "America/Los_Angeles"}}),
    ));
    let errors = request.validate(now).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].field, "backupTime.localDateTime");
    assert!(errors[0].message.contains("daylight-saving gap"));
}

#[test]
fn an_ambiguous_local_time_resolves_to_the_earlier_instant() {
    // 2026-11-01 01:30 happens twice in Los Angeles: first as PDT (UTC-7).
    let now = Utc.with_ymd_and_hms(2026, 11, 2, 0, 0, 0).unwrap();
    let spec = parse(with(
        minimal(),
        json!({"backupTime":
        {"localDateTime": "2026-11-01T01:30:00", "timezone": "America/Los_Angeles"}}),
    ))
    .validate(now)
    .unwrap();
    assert_eq!(
        spec.snapshot_time(),
        Some(Utc.with_ymd_and_hms(2026, 11, 1, 8, 30, 0).unwrap())
    );
}

#[test]
fn unknown_time_zones_and_malformed_times_are_rejected() {
    let fields = fields_of(with(
        minimal(),
        json!({"backupTime":
        {"localDateTime": "2026-11-20 23:59", "timezone": "Mars/Olympus"}}),
    ));
    assert_eq!(fields, ["backupTime.timezone", "backupTime.localDateTime"]);
    let fields = fields_of(with(
        minimal(),
        json!({"backupTime": {"localDateTime": "2026-11-20T23:59:00Z"}}),
    ));
    assert_eq!(fields, ["backupTime.localDateTime"]);
    assert_eq!(
        fields_of(with(minimal(), json!({"asOf": "yesterday"}))),
        ["asOf"]
    );
}

#[test]
fn as_of_and_backup_time_cannot_both_be_given() {
    let fields = fields_of(with(
        minimal(),
        json!({"asOf": "2026-11-21T07:00:00Z",
        "backupTime": {"localDateTime": "2026-11-21T07:00:00"}}),
    ));
    assert_eq!(fields, ["asOf"]);
}

#[test]
fn a_snapshot_older_than_seven_days_is_rejected() {
    let errors = errors_of(with(minimal(), json!({"asOf": "2026-11-14T07:59:59Z"})));
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].field, "asOf");
    assert!(errors[0].message.contains("more than 7 days ago"));
    // Exactly 7 days is still inside time travel.
    spec_of(with(minimal(), json!({"asOf": "2026-11-14T08:00:00Z"})));
    let old_local = fields_of(with(
        minimal(),
        json!({"backupTime": {"localDateTime": "2026-11-01T00:00:00"}}),
    ));
    assert_eq!(old_local, ["backupTime.localDateTime"]);
}

#[test]
fn a_snapshot_in_the_future_is_rejected_beyond_a_minute_of_skew() {
    spec_of(with(minimal(), json!({"asOf": "2026-11-21T08:01:00Z"})));
    let errors = errors_of(with(minimal(), json!({"asOf": "2026-11-21T08:01:01Z"})));
    assert_eq!(errors[0].field, "asOf");
    assert!(errors[0].message.contains("in the future"));
}

#[test]
fn the_snapshot_window_can_be_rechecked_when_a_queued_job_starts() {
    let spec = spec_of(with(minimal(), json!({"asOf": "2026-11-21T07:00:00Z"})));
    assert_eq!(spec.snapshot_window_error(now()), None);
    let later = now() + Duration::days(8);
    assert_eq!(
        spec.snapshot_window_error(later).map(|e| e.field),
        Some("asOf".to_owned())
    );
    assert_eq!(spec_of(minimal()).snapshot_window_error(later), None);
}

#[test]
fn labels_follow_bigquery_rules() {
    let spec = spec_of(with(
        minimal(),
        json!({"labels": {"env": "prod", "équipe": "données", "a-1_b": ""}}),
    ));
    assert_eq!(spec.labels.len(), 3);
    let fields = fields_of(with(
        minimal(),
        json!({"labels": {
            "1starts-digit": "x", "UPPER": "x", "ok": "Upper", "": "x", "has space": "x",
            "long": "v".repeat(64), &"k".repeat(64): "x"
        }}),
    ));
    assert_eq!(
        fields,
        [
            "labels[\"\"]",
            "labels[\"1starts-digit\"]",
            "labels.UPPER",
            "labels[\"has space\"]",
            format!("labels.{}", "k".repeat(64)).as_str(),
            "labels.long",
            "labels.ok",
        ]
    );
    let many: serde_json::Map<String, serde_json::Value> =
        (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
    assert_eq!(
        fields_of(with(minimal(), json!({"labels": many}))),
        ["labels"]
    );
}

#[test]
fn numeric_extension_fields_are_range_checked() {
    for (field, bad, good) in [
        ("maxParallelTables", json!(0), json!(64)),
        (
            "fileSizeBytes",
            json!(1048575),
            json!(5_i64 * 1024 * 1024 * 1024),
        ),
        (
            "fileSizeBytes",
            json!(5_i64 * 1024 * 1024 * 1024 + 1),
            json!(1048576),
        ),
        ("ttlDays", json!(36501), json!(36500)),
        ("ttlDays", json!(-1), json!(1)),
    ] {
        assert_eq!(fields_of(with(minimal(), json!({field: bad}))), [field]);
        spec_of(with(minimal(), json!({field: good})));
    }
    spec_of(with(minimal(), json!({"reason": "é".repeat(1024)})));
}

#[test]
fn a_dataset_listed_twice_is_rejected_at_the_second_entry() {
    let errors = errors_of(
        json!({"bigQuery": {"projectId": "test-project", "tablesToBackup": [
        {"datasetName": "shop"}, {"datasetName": "shop", "tables": ["x"]}
    ]}, "backupStorage": {"uri": "memory://t"}}),
    );
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].field, "bigQuery.tablesToBackup[1].datasetName");
    assert!(errors[0].message.contains("bigQuery.tablesToBackup[0]"));
}

#[test]
fn a_blank_java_table_filter_means_no_filter_and_table_errors_name_their_index() {
    let spec = spec_of(
        json!({"bigQuery": {"projectId": "test-project", "tablesToBackup": [
        {"datasetName": "shop", "tableFilter": "", "tables": [], "excludeTables": ["tmp"]}
    ]}, "backupStorage": {"uri": "memory://t"}}),
    );
    let DatasetSelection::Listed(entries) = &spec.datasets else {
        panic!()
    };
    assert!(entries[0].tables.selects_all());
    assert!(!entries[0].tables.matches("tmp"));

    let fields = fields_of(
        json!({"bigQuery": {"projectId": "test-project", "tablesToBackup": [
        {"datasetName": "shop", "tables": ["ok", "bad*"], "tableFilter": "[", "excludeTables": ["x", ""]}
    ]}, "backupStorage": {"uri": "memory://t"}}),
    );
    assert_eq!(
        fields,
        [
            "bigQuery.tablesToBackup[0].tables[1]",
            "bigQuery.tablesToBackup[0].tableFilter",
            "bigQuery.tablesToBackup[0].excludeTables[1]",
        ]
    );
}

#[test]
fn an_unknown_field_names_its_path() {
    let err = parse_backup_request(br#"{"bigQuery": {"projectId": "p", "tablesToBackup": [{"datasetName": "d", "table": ["x"]}]}}"#)
        .unwrap_err();
    assert_eq!(err.field, "bigQuery.tablesToBackup[0].table");
    assert!(
        err.message.contains("unknown field `table`"),
        "{}",
        err.message
    );
    let err = parse_backup_request(br#"{"bigquery": {}}"#).unwrap_err();
    assert_eq!(err.field, "bigquery");
}

#[test]
fn a_wrong_type_names_its_path() {
    let err = parse_backup_request(
        br#"{"bigQuery": {"tablesToBackup": [{"datasetName": "d", "tables": "orders"}]}}"#,
    )
    .unwrap_err();
    assert_eq!(err.field, "bigQuery.tablesToBackup[0].tables");
    assert!(
        err.message.contains("expected a sequence"),
        "{}",
        err.message
    );
    let err = parse_backup_request(br#"{"maxParallelTables": "4"}"#).unwrap_err();
    assert_eq!(err.field, "maxParallelTables");
    let err = parse_backup_request(
        br#"{"backupStorage": {"gcsOptions": {"exportOptions": {"threadPoolSize": "many"}}}}"#,
    )
    .unwrap_err();
    assert_eq!(
        err.field,
        "backupStorage.gcsOptions.exportOptions.threadPoolSize"
    );
}

#[test]
fn malformed_json_is_reported_against_the_body() {
    for body in [&b"{"[..], b"", b"[]", b"{\"bigQuery\": {}} trailing"] {
        let err = parse_backup_request(body).unwrap_err();
        assert_eq!(err.field, "body", "{:?}", String::from_utf8_lossy(body));
    }
}

#[test]
fn a_parsed_request_serializes_back_to_the_same_json() {
    let request = parse_backup_request(JAVA_FULL.as_bytes()).unwrap();
    let original: serde_json::Value = serde_json::from_str(JAVA_FULL).unwrap();
    assert_eq!(serde_json::to_value(&request).unwrap(), original);
}

#[test]
fn the_method_defaults_to_auto_and_accepts_any_case() {
    assert_eq!(spec_of(minimal()).method, BackupMethod::Auto);
    let spec = spec_of(with(minimal(), json!({ "method": "stream" })));
    assert_eq!(spec.method, BackupMethod::Stream);
    let gcs = json!({
        "bigQuery": {"projectId": "test-project"},
        "backupStorage": {"uri": "gs://bucket-1/p"},
        "method": "EXTRACT"
    });
    assert_eq!(spec_of(gcs).method, BackupMethod::Extract);
}

#[test]
fn an_unknown_method_or_extract_outside_gcs_is_refused_naming_method() {
    let errors = errors_of(with(minimal(), json!({ "method": "COPY" })));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].field, "method");
    assert!(
        errors[0].message.contains("AUTO, STREAM or EXTRACT"),
        "{errors:?}"
    );
    let s3 = json!({
        "bigQuery": {"projectId": "test-project"},
        "backupStorage": {"uri": "s3://bucket-1/p"},
        "method": "EXTRACT"
    });
    let errors = errors_of(s3);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].field, "method");
    assert!(errors[0].message.contains("gs://"), "{errors:?}");
}
