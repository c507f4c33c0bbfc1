use serde_json::json;

use super::*;
use crate::domain::storage_uri::StorageScheme;

const JAVA_FULL: &str = include_str!("../../../examples/java-compat/restore_request.json");
const JAVA_MINIMAL: &str =
    include_str!("../../../examples/java-compat/restore_request_minimal.json");

fn parse(value: serde_json::Value) -> RestoreRequest {
    parse_restore_request(value.to_string().as_bytes()).unwrap()
}

fn minimal() -> serde_json::Value {
    json!({
        "bigQuery": {"projectId": "test-project"},
        "restoreStorage": {"uri": "memory://t"},
        "backupId": "latest"
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
    parse(value).validate().unwrap_err()
}

fn fields_of(value: serde_json::Value) -> Vec<String> {
    errors_of(value).into_iter().map(|e| e.field).collect()
}

fn spec_of(value: serde_json::Value) -> RestoreSpec {
    parse(value).validate().unwrap_or_else(|e| panic!("{e:?}"))
}

#[test]
fn the_java_example_request_parses_and_validates_unchanged() {
    let spec = parse_restore_request(JAVA_FULL.as_bytes())
        .unwrap()
        .validate()
        .unwrap();
    assert_eq!(spec.target_project, "test-project-dev");
    assert_eq!(spec.storage.scheme(), StorageScheme::Gs);
    assert_eq!(spec.storage.to_string(), "gs://backup-bucket/nightly");
    assert_eq!(
        spec.backup,
        BackupSelector::Id(BackupId::parse("20261121_075959").unwrap())
    );
    assert_eq!(
        spec.backup_field,
        "restoreStorage.gcsOptions.backupTimestamp"
    );
    assert_eq!(spec.source_project.as_deref(), Some("test-project"));
    assert_eq!(
        spec.datasets,
        Some(vec!["shop".to_owned(), "analytics".to_owned()])
    );
    assert_eq!(spec.location.as_deref(), Some("EU"));
    assert_eq!(spec.format.as_deref(), Some("CSV"));
    assert_eq!(
        spec.format_field,
        "restoreStorage.gcsOptions.importOptions.format"
    );
    assert!(spec.csv_header);
    assert_eq!(spec.field_delimiter, b',');
    assert!(spec.ignore_unknown_values);
    assert_eq!(spec.max_bad_records, 0);
    assert_eq!(spec.write_disposition, WriteDisposition::WriteTruncate);
    assert_eq!(spec.max_parallel_tables, Some(5));
    assert_eq!(spec.target_dataset("shop"), "restored_shop");
    assert!(spec.selects_table("analytics", "events"));
    assert!(!spec.selects_dataset("other"));
}

#[test]
fn the_minimal_java_example_gets_java_defaults() {
    let spec = parse_restore_request(JAVA_MINIMAL.as_bytes())
        .unwrap()
        .validate()
        .unwrap();
    assert_eq!(spec.storage.to_string(), "gs://backup-bucket");
    assert_eq!(spec.location.as_deref(), Some("europe-west3"));
    assert_eq!(spec.format.as_deref(), Some("AVRO"));
    assert_eq!(spec.max_parallel_tables, None);
    assert!(!spec.ignore_unknown_values);
    assert!(spec.tables.is_empty());
    assert!(!spec.dry_run && !spec.wait);
    assert_eq!(spec.target_dataset("shop"), "restored_shop");
}

#[test]
fn extensions_choose_any_store_the_latest_backup_and_a_table_subset() {
    let spec = spec_of(json!({
        "bigQuery": {"projectId": "test-project"},
        "restoreStorage": {"uri": "file://./demo-backups", "importOptions": {"writeDisposition": "write_append"}},
        "backupId": "latest",
        "tables": ["shop.orders", "daily sales", "shop.orders"],
        "datasetPrefix": "",
        "location": "US",
        "dryRun": true,
        "wait": true
    }));
    assert_eq!(spec.storage.file_path().as_deref(), Some("./demo-backups"));
    assert_eq!(spec.backup, BackupSelector::Latest);
    assert_eq!(spec.backup_field, "backupId");
    assert_eq!(spec.source_project, None);
    assert_eq!(spec.datasets, None);
    assert_eq!(spec.tables.len(), 2, "duplicates are dropped");
    assert_eq!(spec.write_disposition, WriteDisposition::WriteAppend);
    assert_eq!(spec.location.as_deref(), Some("US"));
    assert_eq!(spec.target_dataset("shop"), "shop");
    assert!(spec.dry_run && spec.wait);

    assert!(spec.selects_table("shop", "orders"));
    assert!(spec.selects_table("shop", "daily sales"));
    assert!(spec.selects_table("analytics", "daily sales"));
    assert!(!spec.selects_table("analytics", "orders"));
    assert!(spec.selects_dataset("analytics"));
}

#[test]
fn a_dataset_qualified_table_subset_only_selects_its_datasets() {
    let spec = spec_of(with(minimal(), json!({"tables": ["shop.orders"]})));
    assert!(spec.selects_dataset("shop"));
    assert!(!spec.selects_dataset("analytics"));
}

#[test]
fn write_disposition_defaults_to_write_empty_and_rejects_others() {
    assert_eq!(
        spec_of(minimal()).write_disposition,
        WriteDisposition::WriteEmpty
    );
    let errors = errors_of(with(
        minimal(),
        json!({"restoreStorage": {"uri": "memory://t",
        "importOptions": {"writeDisposition": "REPLACE"}}}),
    ));
    assert_eq!(
        errors[0].field,
        "restoreStorage.importOptions.writeDisposition"
    );
    assert!(
        errors[0]
            .message
            .contains("WRITE_EMPTY, WRITE_TRUNCATE or WRITE_APPEND")
    );
}

#[test]
fn a_request_with_several_problems_reports_all_of_them() {
    let fields = fields_of(json!({
        "bigQuery": {"projectId": "x", "datasetsToRestore": ["shop", "bad-name"]},
        "restoreStorage": {"gcsOptions": {
            "uri": "gs://b", "backupTimestamp": "2026-11-21", "projectIdOfBackup": "NOPE",
            "importOptions": {"restoreRegion": "EU", "fieldDelimiter": "ab", "maxBadRecords": -1, "threadPoolSize": 0}
        }},
        "location": "EU",
        "tables": ["other.t", "shop.a*b"],
        "datasetPrefix": "bad-prefix",
        "schemas": {"orders": []}
    }));
    assert_eq!(
        fields,
        [
            "bigQuery.projectId",
            "bigQuery.datasetsToRestore[1]",
            "restoreStorage.gcsOptions.uri",
            "restoreStorage.gcsOptions.backupTimestamp",
            "restoreStorage.gcsOptions.projectIdOfBackup",
            "location",
            "restoreStorage.gcsOptions.importOptions.fieldDelimiter",
            "restoreStorage.gcsOptions.importOptions.maxBadRecords",
            "restoreStorage.gcsOptions.importOptions.threadPoolSize",
            "tables[0]",
            "tables[1]",
            "datasetPrefix",
            "schemas.orders",
        ]
    );
}

#[test]
fn an_empty_body_object_names_the_required_fields() {
    assert_eq!(
        fields_of(json!({})),
        ["bigQuery.projectId", "restoreStorage", "backupId"]
    );
}

#[test]
fn the_backup_must_be_chosen_exactly_once() {
    let both = json!({"bigQuery": {"projectId": "test-project"},
        "restoreStorage": {"gcsOptions": {"uri": "gs://bucket", "backupTimestamp": "20261121_075959"}},
        "backupId": "latest"});
    assert_eq!(fields_of(both), ["backupId"]);
    let neither =
        json!({"bigQuery": {"projectId": "test-project"}, "restoreStorage": {"uri": "memory://t"}});
    assert_eq!(fields_of(neither), ["backupId"]);
    let errors = errors_of(with(minimal(), json!({"backupId": "yesterday"})));
    assert_eq!(errors[0].field, "backupId");
    assert!(
        errors[0].message.ends_with("or `latest`"),
        "{}",
        errors[0].message
    );
    let spec = spec_of(with(minimal(), json!({"backupId": "20261121_075959-2"})));
    assert_eq!(
        spec.backup,
        BackupSelector::Id(BackupId::parse("20261121_075959-2").unwrap())
    );
}

#[test]
fn the_storage_uri_must_be_given_exactly_once_and_gcs_options_must_be_gs() {
    let both = with(
        minimal(),
        json!({"restoreStorage": {"uri": "memory://t", "gcsOptions": {"uri": "gs://bucket"}}}),
    );
    assert_eq!(fields_of(both), ["restoreStorage.uri"]);
    let s3_in_gcs = with(
        minimal(),
        json!({"restoreStorage": {"gcsOptions": {"uri": "s3://bucket"}}}),
    );
    assert_eq!(fields_of(s3_in_gcs), ["restoreStorage.gcsOptions.uri"]);
    let missing_bucket = with(minimal(), json!({"restoreStorage": {"uri": "az://"}}));
    assert_eq!(
        errors_of(missing_bucket),
        [FieldError::new("restoreStorage.uri", "bucket name missing")]
    );
}

#[test]
fn import_options_may_not_be_given_in_both_places() {
    let request = with(
        minimal(),
        json!({"restoreStorage": {
        "gcsOptions": {"uri": "gs://bucket", "importOptions": {}}, "importOptions": {}}}),
    );
    assert_eq!(fields_of(request), ["restoreStorage.importOptions"]);
}

#[test]
fn location_is_an_alias_of_restore_region_but_not_both() {
    let request = with(
        minimal(),
        json!({"location": "EU",
        "restoreStorage": {"uri": "memory://t", "importOptions": {"restoreRegion": "EU"}}}),
    );
    assert_eq!(fields_of(request), ["location"]);
    assert_eq!(
        fields_of(with(minimal(), json!({"location": "eu west"}))),
        ["location"]
    );
}

#[test]
fn target_datasets_rename_mapped_datasets_and_others_keep_the_default_prefix() {
    let spec = spec_of(with(
        minimal(),
        json!({
            "bigQuery": {"projectId": "test-project", "datasetsToRestore": ["shop", "analytics"]},
            "targetDatasets": {"shop": "shop_dev"}
        }),
    ));
    assert_eq!(spec.target_dataset("shop"), "shop_dev");
    assert_eq!(spec.target_dataset("analytics"), "restored_analytics");
    let spec = spec_of(with(minimal(), json!({"datasetPrefix": "copy_"})));
    assert_eq!(spec.target_dataset("shop"), "copy_shop");
}

#[test]
fn target_dataset_names_are_checked() {
    let fields = fields_of(with(
        minimal(),
        json!({
            "bigQuery": {"projectId": "test-project", "datasetsToRestore": ["shop", "analytics"]},
            "targetDatasets": {"shop": "shop-dev", "orders": "x", "bad key": "y"}
        }),
    ));
    assert_eq!(
        fields,
        [
            "targetDatasets[\"bad key\"]",
            "targetDatasets.orders",
            "targetDatasets.shop"
        ]
    );
    let both = with(
        minimal(),
        json!({"datasetPrefix": "x_", "targetDatasets": {"shop": "y"}}),
    );
    assert_eq!(fields_of(both), ["targetDatasets"]);
    let long = with(
        minimal(),
        json!({
            "bigQuery": {"projectId": "test-project", "datasetsToRestore": ["a".repeat(1020)]}
        }),
    );
    assert_eq!(fields_of(long), ["datasetPrefix"]);
}

#[test]
fn two_datasets_restored_into_one_target_are_rejected() {
    let errors = errors_of(with(
        minimal(),
        json!({
            "bigQuery": {"projectId": "test-project", "datasetsToRestore": ["a", "b"]},
            "targetDatasets": {"a": "restored_b"}
        }),
    ));
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].field, "targetDatasets.a");
    assert!(errors[0].message.contains("restored_b"));
}

#[test]
fn a_table_subset_names_tables_by_dataset_and_name() {
    let fields = fields_of(with(
        minimal(),
        json!({
            "bigQuery": {"projectId": "test-project", "datasetsToRestore": ["shop"]},
            "tables": ["shop.orders", "analytics.events", "bad-ds.t", "shop.", "a/b", "café sales"]
        }),
    ));
    assert_eq!(fields, ["tables[1]", "tables[2]", "tables[3]", "tables[4]"]);
}

#[test]
fn schemas_must_be_arrays_of_named_typed_fields() {
    let spec = spec_of(with(
        minimal(),
        json!({"schemas": {"shop.orders": [
            {"name": "id", "type": "INT64", "mode": "REQUIRED"},
            {"name": "items", "type": "RECORD", "mode": "REPEATED", "fields": [{"name": "sku", "type": "STRING"}]}
        ]}}),
    ));
    let key = SourceTable {
        dataset: "shop".into(),
        table: "orders".into(),
    };
    assert_eq!(spec.schemas[&key].as_array().map(Vec::len), Some(2));

    let fields = fields_of(with(
        minimal(),
        json!({"schemas": {
            "shop.orders": [{"name": "id"}, "x", {"name": "r", "type": "RECORD", "fields": [{"type": "STRING"}]}],
            "shop.empty": [],
            "shop.object": {"name": "id", "type": "INT64"},
            "noDot": [{"name": "id", "type": "INT64"}]
        }}),
    ));
    assert_eq!(
        fields,
        [
            "schemas.noDot",
            "schemas[\"shop.empty\"]",
            "schemas[\"shop.object\"]",
            "schemas[\"shop.orders\"][0].type",
            "schemas[\"shop.orders\"][1]",
            "schemas[\"shop.orders\"][2].fields[0].name",
        ]
    );
}

#[test]
fn java_clients_may_send_booleans_and_numbers_as_strings() {
    let spec = spec_of(with(
        minimal(),
        json!({"restoreStorage": {"uri": "memory://t", "importOptions":
        {"ignoreUnknownValues": "true", "maxBadRecords": "10", "threadPoolSize": 100, "header": false, "fieldDelimiter": "tab"}}}),
    ));
    assert!(spec.ignore_unknown_values);
    assert_eq!(spec.max_bad_records, 10);
    assert_eq!(spec.max_parallel_tables, Some(64));
    assert_eq!(
        spec.warnings[0].field,
        "restoreStorage.importOptions.threadPoolSize"
    );
    assert!(!spec.csv_header);
    assert_eq!(spec.field_delimiter, b'\t');
}

#[test]
fn an_unknown_field_or_wrong_type_names_its_path() {
    let err = parse_restore_request(
        br#"{"restoreStorage": {"gcsOptions": {"importOptions": {"region": "EU"}}}}"#,
    )
    .unwrap_err();
    assert_eq!(err.field, "restoreStorage.gcsOptions.importOptions.region");
    let err = parse_restore_request(br#"{"bigQuery": {"datasetsToRestore": "shop"}}"#).unwrap_err();
    assert_eq!(err.field, "bigQuery.datasetsToRestore");
    let err = parse_restore_request(br#"{"targetDatasets": {"shop": 1}}"#).unwrap_err();
    assert_eq!(err.field, "targetDatasets.shop");
}

#[test]
fn a_parsed_request_serializes_back_to_the_same_json() {
    let request = parse_restore_request(JAVA_FULL.as_bytes()).unwrap();
    let original: serde_json::Value = serde_json::from_str(JAVA_FULL).unwrap();
    assert_eq!(serde_json::to_value(&request).unwrap(), original);
}

#[test]
fn shards_are_a_count_and_never_append() {
    assert_eq!(
        spec_of(with(minimal(), json!({"shards": 4}))).shards,
        Some(4)
    );
    assert_eq!(spec_of(minimal()).shards, None);
    for bad in [json!(0), json!(10_001)] {
        assert_eq!(
            fields_of(with(minimal(), json!({ "shards": bad }))),
            ["shards"]
        );
    }
    let appending = json!({
        "bigQuery": {"projectId": "test-project"},
        "restoreStorage": {"uri": "memory://t", "importOptions": {"writeDisposition": "WRITE_APPEND"}},
        "backupId": "latest",
        "shards": 2
    });
    assert_eq!(fields_of(appending), ["shards"]);
}
