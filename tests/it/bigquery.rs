//! The BigQuery module against bqemulator: metadata listing and the Storage Read API in Arrow.

use bq_backup::bigquery::{ReadOptions, TableKind};
use bq_backup::domain::{DatasetRef, TableRef};
use futures::TryStreamExt;

use crate::helpers::{BigQueryFixtures, PROJECT, bigquery_client, canonical_rows, unique_dataset};

#[tokio::test]
async fn lists_the_test_dataset_and_its_tables() {
    let dataset = unique_dataset("list");
    let fixtures = BigQueryFixtures::new();
    fixtures.create_all_types_dataset(&dataset).await;
    let bq = bigquery_client().await;

    let datasets = bq.list_datasets(PROJECT).await.unwrap();
    assert!(
        datasets.iter().any(|d| d.dataset.dataset == dataset),
        "{dataset} not in {datasets:?}"
    );

    let tables = bq
        .list_tables(&DatasetRef::new(PROJECT, &dataset))
        .await
        .unwrap();
    assert_eq!(tables.len(), 1, "{tables:?}");
    assert_eq!(tables[0].table.table, "all_types");
    assert_eq!(tables[0].kind, TableKind::Table);
}

#[tokio::test]
async fn gets_the_table_resource_with_its_nested_schema() {
    let dataset = unique_dataset("meta");
    BigQueryFixtures::new()
        .create_all_types_dataset(&dataset)
        .await;
    let bq = bigquery_client().await;
    let table = bq
        .get_table(&TableRef::new(PROJECT, &dataset, "all_types"))
        .await
        .unwrap();
    let schema = table.schema.expect("schema");
    let names: Vec<&str> = schema.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "id", "i64", "f64", "num", "flag", "s", "b", "d", "t", "dt", "ts", "geo", "js", "rec",
            "tags", "items"
        ]
    );
    let rec = &schema.fields[13];
    assert_eq!(rec.fields.len(), 2);
    assert_eq!(rec.fields[1].fields.len(), 2, "two nesting levels");
    assert_eq!(schema.fields[14].mode, "REPEATED");
    assert_eq!(
        table.labels.get("kind").map(String::as_str),
        Some("fixture")
    );
}

#[tokio::test]
async fn a_missing_table_is_not_found() {
    let bq = bigquery_client().await;
    let err = bq
        .get_table(&TableRef::new(PROJECT, "no_such_dataset_x", "nope"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), bq_backup::ErrorKind::NotFound, "{err}");
}

#[tokio::test]
async fn reads_every_type_through_the_storage_read_api() {
    let dataset = unique_dataset("read");
    BigQueryFixtures::new()
        .create_all_types_dataset(&dataset)
        .await;
    let bq = bigquery_client().await;
    let reader = bq
        .open_read(
            &TableRef::new(PROJECT, &dataset, "all_types"),
            &ReadOptions::default(),
        )
        .await
        .unwrap();
    let batches: Vec<_> = reader.batches().try_collect().await.unwrap();
    let rows = canonical_rows(&batches);
    assert_eq!(rows.len(), 3);
    let expected_1 = [
        "1",
        "42",
        "1.5",
        "12345.678901234",
        "true",
        "hello",
        "000102ff",
        "2026-11-20",
        "23:59:58.123456",
        "2026-11-20T12:34:56.789012",
        "2026-11-20T12:34:56.789012Z",
        "POINT(1 2)",
        "{\"a\":1}",
        "{name: r1, sub: {x: 7, y: 0.25}}",
        "[a, b]",
        "[{sku: s1, qty: 2}, {sku: s2, qty: 3}]",
    ];
    // Real BigQuery sends GEOGRAPHY as WKT text; bqemulator 1.4.0 sends WKB bytes. Accept either
    // encoding of the same point rather than depend on the emulator's gap.
    let mut row_1 = rows[0].clone();
    row_1[11] = wkb_point_as_wkt(&row_1[11]).unwrap_or_else(|| row_1[11].clone());
    assert_eq!(row_1, expected_1);
    let r2 = &rows[1];
    assert_eq!(r2[1], "-9223372036854775807");
    assert_eq!(r2[3], "-99999999999999999999999999999.999999999");
    assert_eq!(r2[5], "", "empty string kept");
    assert_eq!(r2[7], "0001-01-01");
    assert_eq!(r2[9], "9999-12-31T23:59:59.999999");
    assert_eq!(r2[10], "1970-01-01T00:00:00Z");
    assert_eq!(r2[13], "{name: żółw 🐢, sub: {x: -1, y: NULL}}");
    assert_eq!(r2[14], "[ünïcödé]");
    let r3 = &rows[2];
    for (i, cell) in r3.iter().enumerate().skip(1).take(13) {
        assert_eq!(cell, "NULL", "column {i} of the NULL row");
    }
    assert_eq!(r3[14], "[]");

    let schema = reader.schema();
    use arrow::datatypes::{DataType, TimeUnit};
    assert_eq!(
        schema.field_with_name("num").unwrap().data_type(),
        &DataType::Decimal128(38, 9)
    );
    assert_eq!(
        schema.field_with_name("ts").unwrap().data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
}

#[tokio::test]
async fn reads_selected_fields_only() {
    let dataset = unique_dataset("sel");
    BigQueryFixtures::new()
        .create_all_types_dataset(&dataset)
        .await;
    let bq = bigquery_client().await;
    let options = ReadOptions {
        selected_fields: vec!["id".into(), "s".into()],
        ..Default::default()
    };
    let reader = bq
        .open_read(&TableRef::new(PROJECT, &dataset, "all_types"), &options)
        .await
        .unwrap();
    let names: Vec<String> = reader
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["id", "s"]);
    let batches: Vec<_> = reader.batches().try_collect().await.unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
}

/// Decodes the hex display of a little-endian WKB POINT into WKT (`POINT(x y)`).
fn wkb_point_as_wkt(hex: &str) -> Option<String> {
    let bytes = hex::decode(hex).ok()?;
    if bytes.len() != 21 || bytes[0] != 1 || bytes[1..5] != [1, 0, 0, 0] {
        return None;
    }
    let x = f64::from_le_bytes(bytes[5..13].try_into().ok()?);
    let y = f64::from_le_bytes(bytes[13..21].try_into().ok()?);
    Some(format!("POINT({x} {y})"))
}
