//! `sql_paths`: the parser's reading first, the text scan for what it cannot parse. The scan's own
//! tests are in `scan.rs`.

use super::parse::parse_paths;
use super::scan::scan_paths;
use super::*;

fn names(sql: &str) -> Vec<String> {
    sql_paths(sql)
        .into_iter()
        .map(|p| p.parts.join("."))
        .collect()
}

/// `sql` is read by the parser, not by the fallback scan.
fn parsed(sql: &str) -> Vec<SqlPath> {
    match parse_paths(sql) {
        Ok(paths) => paths,
        Err(e) => panic!("not parsed: {e}\n{sql}"),
    }
}

#[test]
fn aliases_columns_and_ctes_named_like_datasets_are_not_names() {
    for (sql, expected) in [
        ("SELECT d.x FROM other.t AS d", vec!["other.t"]),
        ("SELECT d.x FROM other.t d WHERE d.y > 0", vec!["other.t"]),
        (
            "WITH shop AS (SELECT * FROM shop.orders) SELECT shop.id, shop.total FROM shop",
            vec!["shop.orders"],
        ),
        (
            "WITH orders AS (SELECT * FROM shop.orders) SELECT o.id FROM orders AS o",
            vec!["shop.orders"],
        ),
        (
            "SELECT ds.x, ds.y.z FROM s.t, UNNEST(t.items) AS ds",
            vec!["s.t"],
        ),
        (
            "SELECT shop.id FROM `prod-1.shop.orders` AS shop JOIN shop.customers USING (id)",
            // `shop.customers` after `AS shop` is the alias' array, as BigQuery reads it.
            vec!["prod-1.shop.orders"],
        ),
        (
            "SELECT s.table_name FROM shop.INFORMATION_SCHEMA.TABLES AS s",
            vec!["shop.INFORMATION_SCHEMA.TABLES"],
        ),
        (
            "SELECT * FROM (SELECT * FROM sales.orders) AS sales WHERE sales.id IN (SELECT id FROM crm.refunds)",
            vec!["sales.orders", "crm.refunds"],
        ),
    ] {
        assert_eq!(names(sql), expected, "{sql}");
        parsed(sql);
    }
}

#[test]
fn from_paths_that_start_with_a_range_variable_are_arrays_not_tables() {
    // Correlated paths: an array column of an earlier item of the same FROM, or of the outer
    // query's FROM in a subquery of its select list or WHERE.
    assert_eq!(
        names("SELECT * FROM shop.orders AS o, o.items AS i LEFT JOIN i.parts USING (id)"),
        ["shop.orders"]
    );
    assert_eq!(
        names("SELECT (SELECT COUNT(*) FROM o.items) FROM shop.orders AS O"),
        ["shop.orders"]
    );
    assert_eq!(
        names("SELECT * FROM shop.orders AS shop WHERE EXISTS (SELECT 1 FROM shop.items)"),
        ["shop.orders"]
    );
    assert_eq!(
        names("SELECT * FROM shop.orders, orders.items"),
        ["shop.orders"]
    );
    // An alias is not visible before it is defined, nor inside the item it names.
    assert_eq!(
        names("SELECT * FROM shop.orders AS o, shop.items AS shop"),
        ["shop.orders", "shop.items"]
    );
    assert_eq!(names("SELECT * FROM shop.orders AS shop"), ["shop.orders"]);
    assert_eq!(
        names("SELECT * FROM (SELECT * FROM shop.orders) AS shop"),
        ["shop.orders"]
    );
}

#[test]
fn calls_table_functions_procedures_and_dml_targets_are_names() {
    let sql =
        "SELECT shop.add_tax(price), NET.HOST(url), `shop.fmt`(x) FROM shop.orders, shop.top(10)";
    let found: Vec<(String, bool)> = parsed(sql)
        .into_iter()
        .map(|p| (p.parts.join("."), p.called))
        .collect();
    assert_eq!(
        found,
        [
            ("shop.add_tax".to_string(), true),
            ("NET.HOST".to_string(), true),
            ("shop.fmt".to_string(), true),
            ("shop.orders".to_string(), false),
            ("shop.top".to_string(), true),
        ]
    );
    let body = "BEGIN
          DECLARE n INT64 DEFAULT (SELECT COUNT(*) FROM shop.orders);
          INSERT INTO shop.audit (n) VALUES (n);
          MERGE `shop.totals` t USING (SELECT 1 AS id) s ON t.id = s.id
            WHEN NOT MATCHED THEN INSERT ROW;
          DELETE FROM shop.tmp WHERE TRUE;
          UPDATE shop.x SET a = 1 WHERE TRUE;
          CALL shop.refresh(1);
          TRUNCATE TABLE shop.z;
        END";
    let found: Vec<(String, bool)> = parsed(body)
        .into_iter()
        .map(|p| (p.parts.join("."), p.called))
        .collect();
    assert_eq!(
        found,
        [
            ("shop.orders".to_string(), false),
            ("shop.audit".to_string(), false),
            ("shop.totals".to_string(), false),
            ("shop.tmp".to_string(), false),
            ("shop.x".to_string(), false),
            ("shop.refresh".to_string(), true),
            ("shop.z".to_string(), false),
        ]
    );
}

#[test]
fn a_sql_function_body_is_read_as_an_expression() {
    // `s` is a STRUCT parameter, not dataset `s`.
    assert_eq!(
        names("shop.add_tax(s.price) * (SELECT MAX(rate) FROM shop.rates WHERE region = s.region)"),
        ["shop.add_tax", "shop.rates"]
    );
    parsed("x * 1.1");
    assert_eq!(names("x * 1.1"), Vec::<String>::new());
}

#[test]
fn the_parser_gives_the_scans_parts_spans_and_pieces() {
    // Where both read only table names, they agree to the byte.
    for sql in [
        "SELECT * FROM p-1.shop.orders",
        "SELECT * FROM my-proj-1.shop.orders JOIN region-us.INFORMATION_SCHEMA.JOBS USING (id)",
        "SELECT * FROM `p-1.shop.orders`",
        "SELECT * FROM `p-1`.`shop`.`orders`",
        "SELECT * FROM `p-1`.shop.orders",
        "SELECT * FROM `p-1.shop`.orders",
        "SELECT * FROM p-1.`shop.orders`",
        "select *\r\nfrom\n\t`p-1`.shop.orders\nwhere true",
        "SELECT 'été' FROM `shop`.`ventes été` JOIN shop.`2024 x` USING (id) JOIN `shop.events_*` USING (id)",
        "SELECT * FROM `example.com:proj.shop.orders` JOIN `example.com:proj`.shop.x USING (id)",
        r"SELECT * FROM `shop.a\\b`",
        "SELECT * FROM shop.t1 UNION ALL SELECT * FROM `shop`.t2 -- shop.t3\n# shop.t4\n/* shop.t5 */",
        "SELECT * FROM shop.INFORMATION_SCHEMA.TABLES, `p-1`.shop.INFORMATION_SCHEMA.VIEWS",
    ] {
        assert_eq!(parsed(sql), scan_paths(sql), "{sql}");
    }
}

#[test]
fn spans_count_characters_as_the_parser_does() {
    // Multi-byte letters, tabs and CRLF before a name: byte offsets stay right.
    let sql =
        "SELECT 'ééé', \"日本\" AS u\r\n\tFROM\t`p-1`.shop.orders AS o JOIN shop.x USING (id)";
    let paths = parsed(sql);
    assert_eq!(&sql[paths[0].span.clone()], "`p-1`.shop.orders");
    assert_eq!(&sql[paths[1].span.clone()], "shop.x");
}

#[test]
fn sql_the_parser_cannot_read_falls_back_to_the_scan() {
    for (sql, expected) in [
        // BigQuery ML and TABLE arguments.
        (
            "SELECT * FROM ML.PREDICT(MODEL shop.m, TABLE shop.inputs)",
            vec!["ML.PREDICT", "shop.m", "shop.inputs"],
        ),
        // An unquoted wildcard table, an unquoted name part starting with a digit.
        (
            "SELECT * FROM shop.events_* WHERE _TABLE_SUFFIX > '2024'",
            vec!["shop.events_"],
        ),
        ("SELECT * FROM shop.2024_orders", vec!["shop.2024_orders"]),
        // A backquote escaped inside backquotes.
        (r"SELECT * FROM `shop.we\`ird`", vec!["shop.we`ird"]),
        // Procedural FOR loops.
        (
            "BEGIN FOR r IN (SELECT * FROM shop.f) DO SELECT r.x; END FOR; END",
            vec!["shop.f", "r.x"],
        ),
    ] {
        assert!(parse_paths(sql).is_err(), "parsed: {sql}");
        assert_eq!(names(sql), expected, "{sql}");
    }
}

#[test]
fn deeply_nested_sql_falls_back_without_overflowing_the_stack() {
    // Past the parser's recursion limit: refused, then scanned.
    let depth = 300;
    let sql = format!(
        "SELECT * FROM {}shop.orders{}",
        "(SELECT * FROM ".repeat(depth),
        ")".repeat(depth)
    );
    assert!(parse_paths(&sql).is_err());
    assert_eq!(names(&sql), ["shop.orders"]);
}
