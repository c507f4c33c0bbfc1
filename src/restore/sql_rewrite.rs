//! Points the names in a restored view's query or SQL routine's body at the datasets they were
//! restored into. Text work on top of [`sql_paths`], which finds the table and routine names
//! (with sqlparser's BigQuery dialect, or a text scan where that cannot parse) and where each is
//! written: only those spans are replaced and everything else — formatting, comments, string
//! literals, aliases — is kept byte for byte, so `'shop.orders'`, `-- shop.orders`,
//! `workshop.orders` and dataset `s` against `sales.x` are never touched.
//!
//! # Rules
//!
//! - A name is rewritten when its project — the view's or routine's own project when the name has
//!   none, as BigQuery resolves it — and its dataset are a restored source dataset. Project ids
//!   ignore case; dataset names are compared as written (case-sensitive).
//! - The name keeps its form. A qualified name stays qualified; each piece keeps its backquotes
//!   or lack of them (a bare piece whose new text needs backquotes gets them); pieces that do not
//!   change (the table, usually) are copied as written. A name without a project stays without
//!   one when the restored dataset is in the project the view or routine is restored into, else
//!   becomes `` `target_project.target_dataset.t` ``.
//! - `dataset.INFORMATION_SCHEMA.X` and `project.dataset.INFORMATION_SCHEMA.X` name a dataset too.
//! - A call whose first part is a built-in function namespace (`NET.HOST(…)`, `ml.predict(…)`,
//!   `SAFE.DIVIDE(…)`) is a function, not a routine of a dataset spelled alike.
//!
//! A table alias, `UNNEST` alias, CTE or struct column spelled like a restored dataset
//! (`SELECT shop.id FROM shop.orders AS shop`) is not a dataset and is left alone. Limit: for SQL
//! the parser cannot read (`ML.PREDICT(MODEL …)`, `TABLE` arguments, an unquoted wildcard
//! table, procedural loops), the fallback scan is position-blind (see `sql_refs`) and such an
//! alias is rewritten too.
//!
//! Depends on `domain` only.

use crate::domain::{DatasetRef, SqlPath, sql_paths};

/// `sql` with every name of a restored dataset pointed at its target (see the module doc).
/// `source_project` is where the view or routine was, `target_project` where it is restored;
/// `moves` maps each restored source dataset to its target.
pub(crate) fn rewrite_references(
    sql: &str,
    source_project: &str,
    target_project: &str,
    moves: &[(DatasetRef, DatasetRef)],
) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    // Spans come in order and never overlap.
    for path in sql_paths(sql) {
        if let Some(text) = rewritten(sql, &path, source_project, target_project, moves) {
            out.push_str(&sql[copied..path.span.start]);
            out.push_str(&text);
            copied = path.span.end;
        }
    }
    out.push_str(&sql[copied..]);
    out
}

/// Whether the dataset of a name comes after a project or first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `project.dataset.table`, `project.dataset.INFORMATION_SCHEMA.X`.
    Qualified,
    /// `dataset.table`, `dataset.INFORMATION_SCHEMA.X`.
    Unqualified,
}

fn shape(parts: &[String]) -> Option<Shape> {
    let schema = |part: &String| part.eq_ignore_ascii_case("INFORMATION_SCHEMA");
    match parts {
        [_, s, _] if schema(s) => Some(Shape::Unqualified),
        [_, _, s, _] if schema(s) => Some(Shape::Qualified),
        [_, _] => Some(Shape::Unqualified),
        [_, _, _] => Some(Shape::Qualified),
        // `alias.column.field.subfield` and the like: no table is named with more parts.
        _ => None,
    }
}

/// The new text of `path`, or `None` when it names no restored dataset or its dataset did not
/// move.
fn rewritten(
    sql: &str,
    path: &SqlPath,
    source_project: &str,
    target_project: &str,
    moves: &[(DatasetRef, DatasetRef)],
) -> Option<String> {
    let parts = path.name_parts();
    let shape = shape(&parts)?;
    let (project, dataset) = match shape {
        Shape::Qualified => (parts[0].as_str(), parts[1].as_str()),
        Shape::Unqualified => (source_project, parts[0].as_str()),
    };
    if shape == Shape::Unqualified && path.called && is_function_namespace(dataset) {
        return None;
    }
    let (_, target) = moves.iter().find(|(source, _)| {
        source.project.eq_ignore_ascii_case(project) && source.dataset == dataset
    })?;
    let mut new = parts.clone();
    match shape {
        Shape::Qualified => {
            if target.project.eq_ignore_ascii_case(project) && target.dataset == dataset {
                return None;
            }
            new[0] = target.project.clone();
            new[1] = target.dataset.clone();
        }
        Shape::Unqualified if target.project.eq_ignore_ascii_case(target_project) => {
            if target.dataset == dataset {
                return None;
            }
            new[0] = target.dataset.clone();
        }
        Shape::Unqualified => {
            // Restored where a name without a project would not find it: name the project.
            new.insert(0, target.project.clone());
            new[1] = target.dataset.clone();
            return Some(backquoted(&new.join(".")));
        }
    }
    Some(render_like(sql, path, &parts, &new))
}

/// `new` (as many parts as `old`) written piece by piece as `path` is: unchanged pieces copied,
/// changed ones quoted as they were.
fn render_like(sql: &str, path: &SqlPath, old: &[String], new: &[String]) -> String {
    // A domain-scoped project is one name part but several raw parts (`example`, `com:proj`):
    // raw parts 0..=extra are name part 0, raw part r > extra is name part r - extra.
    let extra = path.parts.len().saturating_sub(old.len());
    let name_part = |raw: usize| raw.saturating_sub(extra);
    let mut out = String::new();
    let mut raw = 0;
    let mut after: Option<usize> = None;
    for piece in &path.pieces {
        let (first, last) = (raw, raw + piece.parts.saturating_sub(1));
        raw += piece.parts;
        let within_project_split = first > 0 && first <= extra;
        if within_project_split || piece.parts == 0 || last >= path.parts.len() {
            // A project split over pieces (or pieces not matching the parts): one quoted name.
            return backquoted(&new.join("."));
        }
        let range = name_part(first)..=name_part(last);
        // The dot between two pieces as written (the parser also reads `shop . orders`).
        if let Some(end) = after {
            out.push_str(&sql[end..piece.span.start]);
        }
        after = Some(piece.span.end);
        let written = &sql[piece.span.clone()];
        if old[range.clone()] == new[range.clone()] {
            out.push_str(written);
            continue;
        }
        let text = new[range].join(".");
        if !piece.quoted && may_be_bare(&text, written) {
            out.push_str(&text);
        } else {
            out.push_str(&backquoted(&text));
        }
    }
    out
}

/// `` `text` ``, with backquotes and backslashes inside escaped.
fn backquoted(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('`', "\\`");
    format!("`{escaped}`")
}

/// `text` may replace the bare word `written` without backquotes: an identifier that is not a
/// reserved keyword, with dashes only if `written` had some (a dashed project id is only valid
/// bare where the original was, in a `FROM` clause).
fn may_be_bare(text: &str, written: &str) -> bool {
    let dashes = written.contains('-');
    text.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && !text.ends_with('-')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || (dashes && c == '-'))
        && !RESERVED_KEYWORDS.contains(&text.to_ascii_uppercase().as_str())
}

/// Built-in function namespaces: `ns.f(…)` calls a function of BigQuery's, whatever datasets
/// exist.
fn is_function_namespace(name: &str) -> bool {
    const NAMESPACES: &[&str] = &[
        "AEAD",
        "AI",
        "BQ",
        "HLL_COUNT",
        "KEYS",
        "KLL_QUANTILES",
        "ML",
        "NET",
        "OBJ",
        "SAFE",
    ];
    NAMESPACES.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// GoogleSQL's reserved keywords: never valid as a bare identifier.
const RESERVED_KEYWORDS: &[&str] = &[
    "ALL",
    "AND",
    "ANY",
    "ARRAY",
    "AS",
    "ASC",
    "ASSERT_ROWS_MODIFIED",
    "AT",
    "BETWEEN",
    "BY",
    "CASE",
    "CAST",
    "COLLATE",
    "CONTAINS",
    "CREATE",
    "CROSS",
    "CUBE",
    "CURRENT",
    "DEFAULT",
    "DEFINE",
    "DESC",
    "DISTINCT",
    "ELSE",
    "END",
    "ENUM",
    "ESCAPE",
    "EXCEPT",
    "EXCLUDE",
    "EXISTS",
    "EXTRACT",
    "FALSE",
    "FETCH",
    "FOLLOWING",
    "FOR",
    "FROM",
    "FULL",
    "GROUP",
    "GROUPING",
    "GROUPS",
    "HASH",
    "HAVING",
    "IF",
    "IGNORE",
    "IN",
    "INNER",
    "INTERSECT",
    "INTERVAL",
    "INTO",
    "IS",
    "JOIN",
    "LATERAL",
    "LEFT",
    "LIKE",
    "LIMIT",
    "LOOKUP",
    "MERGE",
    "NATURAL",
    "NEW",
    "NO",
    "NOT",
    "NULL",
    "NULLS",
    "OF",
    "ON",
    "OR",
    "ORDER",
    "OUTER",
    "OVER",
    "PARTITION",
    "PRECEDING",
    "PROTO",
    "QUALIFY",
    "RANGE",
    "RECURSIVE",
    "RESPECT",
    "RIGHT",
    "ROLLUP",
    "ROWS",
    "SELECT",
    "SET",
    "SOME",
    "STRUCT",
    "TABLESAMPLE",
    "THEN",
    "TO",
    "TREAT",
    "TRUE",
    "UNBOUNDED",
    "UNION",
    "UNNEST",
    "USING",
    "WHEN",
    "WHERE",
    "WINDOW",
    "WITH",
    "WITHIN",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// `prod-1.shop` → `prod-1.restored_shop`, `prod-1.s` → `prod-1.restored_s`; the view
    /// stays in `prod-1`.
    fn in_place(sql: &str) -> String {
        rewrite_references(
            sql,
            "prod-1",
            "prod-1",
            &[
                (
                    DatasetRef::new("prod-1", "shop"),
                    DatasetRef::new("prod-1", "restored_shop"),
                ),
                (
                    DatasetRef::new("prod-1", "s"),
                    DatasetRef::new("prod-1", "restored_s"),
                ),
            ],
        )
    }

    /// `prod-1.shop` → `dev-2.shop_copy`; the view moves to `dev-2`.
    fn to_dev(sql: &str) -> String {
        rewrite_references(
            sql,
            "prod-1",
            "dev-2",
            &[(
                DatasetRef::new("prod-1", "shop"),
                DatasetRef::new("dev-2", "shop_copy"),
            )],
        )
    }

    #[test]
    fn every_form_of_a_qualified_name_keeps_its_form() {
        for (sql, expected) in [
            (
                "SELECT * FROM prod-1.shop.orders",
                "SELECT * FROM dev-2.shop_copy.orders",
            ),
            (
                "SELECT * FROM `prod-1.shop.orders`",
                "SELECT * FROM `dev-2.shop_copy.orders`",
            ),
            (
                "SELECT * FROM `prod-1`.`shop`.`orders`",
                "SELECT * FROM `dev-2`.`shop_copy`.`orders`",
            ),
            (
                "SELECT * FROM `prod-1`.shop.orders",
                "SELECT * FROM `dev-2`.shop_copy.orders",
            ),
            (
                "SELECT * FROM `prod-1.shop`.orders",
                "SELECT * FROM `dev-2.shop_copy`.orders",
            ),
            (
                "SELECT * FROM prod-1.`shop.orders`",
                "SELECT * FROM dev-2.`shop_copy.orders`",
            ),
            (
                "SELECT * FROM `PROD-1.shop.daily sales`",
                "SELECT * FROM `dev-2.shop_copy.daily sales`",
            ),
            (
                "SELECT * FROM `prod-1.shop.events_*` WHERE _TABLE_SUFFIX > '2024'",
                "SELECT * FROM `dev-2.shop_copy.events_*` WHERE _TABLE_SUFFIX > '2024'",
            ),
        ] {
            assert_eq!(to_dev(sql), expected, "{sql}");
        }
    }

    #[test]
    fn unqualified_names_stay_unqualified_in_the_same_project() {
        for (sql, expected) in [
            (
                "SELECT * FROM shop.orders",
                "SELECT * FROM restored_shop.orders",
            ),
            (
                "SELECT * FROM `shop.orders`",
                "SELECT * FROM `restored_shop.orders`",
            ),
            (
                "SELECT * FROM `shop`.`orders`",
                "SELECT * FROM `restored_shop`.`orders`",
            ),
            (
                "SELECT * FROM shop.`my orders`",
                "SELECT * FROM restored_shop.`my orders`",
            ),
            (
                "SELECT * FROM s.t JOIN s.u USING (id)",
                "SELECT * FROM restored_s.t JOIN restored_s.u USING (id)",
            ),
            (
                "select o.id from\n\tshop.orders o join prod-1.shop.customers c using (id)",
                "select o.id from\n\trestored_shop.orders o join prod-1.restored_shop.customers c using (id)",
            ),
        ] {
            assert_eq!(in_place(sql), expected, "{sql}");
        }
    }

    #[test]
    fn unqualified_names_follow_the_view_into_its_new_project() {
        // The view moves to dev-2 with the dataset: a name without project still finds it.
        assert_eq!(
            to_dev("SELECT * FROM shop.orders JOIN `shop`.`my orders` USING (id)"),
            "SELECT * FROM shop_copy.orders JOIN `shop_copy`.`my orders` USING (id)"
        );
    }

    #[test]
    fn unqualified_names_get_the_target_project_when_the_view_lives_elsewhere() {
        let elsewhere = |sql: &str| {
            rewrite_references(
                sql,
                "prod-1",
                "other-3",
                &[(
                    DatasetRef::new("prod-1", "shop"),
                    DatasetRef::new("DEV-2", "shop"),
                )],
            )
        };
        assert_eq!(
            elsewhere(
                "SELECT * FROM shop.orders JOIN `shop`.`my orders` USING (id) JOIN `shop.x` USING (id)"
            ),
            "SELECT * FROM `DEV-2.shop.orders` JOIN `DEV-2.shop.my orders` USING (id) JOIN `DEV-2.shop.x` USING (id)"
        );
        // Project ids ignore case: `DEV-2` is the project the view is restored into.
        let same = rewrite_references(
            "SELECT * FROM shop.orders",
            "prod-1",
            "dev-2",
            &[(
                DatasetRef::new("prod-1", "shop"),
                DatasetRef::new("DEV-2", "shop_copy"),
            )],
        );
        assert_eq!(same, "SELECT * FROM shop_copy.orders");
    }

    #[test]
    fn literals_and_comments_are_untouched() {
        let sql = r#"-- reads shop.orders
            /* shop.orders and `prod-1.shop.orders` */
            SELECT 'shop.orders' AS a, "prod-1.shop.orders" AS b, r'shop.x', '''shop.y''' # shop.z
            FROM shop.orders"#;
        let expected = sql.replace("FROM shop.orders", "FROM restored_shop.orders");
        assert_eq!(in_place(sql), expected);
    }

    #[test]
    fn names_sharing_a_prefix_with_a_restored_dataset_are_untouched() {
        for sql in [
            "SELECT * FROM workshop.orders",
            "SELECT * FROM shop_archive.orders",
            "SELECT * FROM sales.orders JOIN s2.x USING (id)",
            "SELECT * FROM `prod-1.shop2.orders`",
            "SELECT * FROM `prod-10.shop.orders`",
            "SELECT * FROM other-project.shop.orders",
            "SELECT * FROM Shop.orders",
            "SELECT * FROM myshop.orders JOIN shop_.x USING (id)",
            "SELECT * FROM shop",
        ] {
            assert_eq!(in_place(sql), sql, "{sql}");
        }
    }

    #[test]
    fn projects_ignore_case_datasets_do_not() {
        assert_eq!(
            in_place("SELECT * FROM `PROD-1.shop.x`, `prod-1.SHOP.y`"),
            "SELECT * FROM `prod-1.restored_shop.x`, `prod-1.SHOP.y`"
        );
    }

    #[test]
    fn routine_calls_information_schema_and_function_namespaces() {
        assert_eq!(
            in_place(
                "SELECT shop.add_tax(price), NET.HOST(url), SAFE.DIVIDE(a, b) FROM shop.top_customers(10)"
            ),
            "SELECT restored_shop.add_tax(price), NET.HOST(url), SAFE.DIVIDE(a, b) FROM restored_shop.top_customers(10)"
        );
        assert_eq!(
            in_place(
                "SELECT * FROM shop.INFORMATION_SCHEMA.TABLES, `prod-1`.shop.INFORMATION_SCHEMA.VIEWS"
            ),
            "SELECT * FROM restored_shop.INFORMATION_SCHEMA.TABLES, `prod-1`.restored_shop.INFORMATION_SCHEMA.VIEWS"
        );
        let ml = rewrite_references(
            "SELECT * FROM ml.predict(MODEL m, TABLE ml.inputs)",
            "p",
            "p",
            &[(DatasetRef::new("p", "ml"), DatasetRef::new("p", "ml_r"))],
        );
        assert_eq!(ml, "SELECT * FROM ml.predict(MODEL m, TABLE ml_r.inputs)");
    }

    #[test]
    fn new_names_that_cannot_be_bare_are_backquoted() {
        let moved = |target: DatasetRef| {
            rewrite_references(
                "SELECT * FROM shop.orders JOIN proj.shop.x USING (id)",
                "proj",
                &target.project.clone(),
                &[(DatasetRef::new("proj", "shop"), target)],
            )
        };
        assert_eq!(
            moved(DatasetRef::new("proj", "order")),
            "SELECT * FROM `order`.orders JOIN proj.`order`.x USING (id)"
        );
        assert_eq!(
            moved(DatasetRef::new("proj", "2024_shop")),
            "SELECT * FROM `2024_shop`.orders JOIN proj.`2024_shop`.x USING (id)"
        );
        // A dashed project is bare only where the original was dashed too.
        assert_eq!(
            rewrite_references(
                "SELECT * FROM proj.shop.x",
                "proj",
                "other",
                &[(
                    DatasetRef::new("proj", "shop"),
                    DatasetRef::new("my-proj", "shop")
                )],
            ),
            "SELECT * FROM `my-proj`.shop.x"
        );
    }

    #[test]
    fn domain_scoped_projects_are_one_project() {
        let moves = [(
            DatasetRef::new("example.com:proj", "shop"),
            DatasetRef::new("example.com:proj", "shop_r"),
        )];
        let sql = "SELECT * FROM `example.com:proj.shop.orders` JOIN `example.com:proj`.shop.x USING (id) JOIN shop.y USING (id)";
        assert_eq!(
            rewrite_references(sql, "example.com:proj", "example.com:proj", &moves),
            "SELECT * FROM `example.com:proj.shop_r.orders` JOIN `example.com:proj`.shop_r.x USING (id) JOIN shop_r.y USING (id)"
        );
    }

    #[test]
    fn a_dataset_restored_under_its_own_name_is_left_as_written() {
        let sql = "SELECT * FROM `PROD-1`.shop.orders JOIN shop.x USING (id)";
        let out = rewrite_references(
            sql,
            "prod-1",
            "prod-1",
            &[(
                DatasetRef::new("prod-1", "shop"),
                DatasetRef::new("prod-1", "shop"),
            )],
        );
        assert_eq!(out, sql);
    }

    #[test]
    fn names_inside_backquotes_are_escaped_when_rewritten() {
        assert_eq!(
            to_dev(r"SELECT * FROM `shop.we\`ird` JOIN `prod-1.shop.a\\b` USING (id)"),
            r"SELECT * FROM `shop_copy.we\`ird` JOIN `dev-2.shop_copy.a\\b` USING (id)"
        );
    }

    #[test]
    fn an_alias_named_like_a_mapped_dataset_is_not_rewritten() {
        let d_to_e = rewrite_references(
            "SELECT d.x FROM other.t AS d",
            "p",
            "p",
            &[(DatasetRef::new("p", "d"), DatasetRef::new("p", "e"))],
        );
        assert_eq!(d_to_e, "SELECT d.x FROM other.t AS d");
        for (sql, expected) in [
            (
                "SELECT s.id FROM shop.orders AS s JOIN shop.customers USING (id)",
                "SELECT s.id FROM restored_shop.orders AS s JOIN restored_shop.customers USING (id)",
            ),
            (
                "SELECT shop.id FROM `shop.orders` AS shop",
                "SELECT shop.id FROM `restored_shop.orders` AS shop",
            ),
            (
                "SELECT shop.id FROM `prod-1.shop.orders` shop WHERE shop.total > 0",
                "SELECT shop.id FROM `prod-1.restored_shop.orders` shop WHERE shop.total > 0",
            ),
            (
                "SELECT `shop`.id FROM `prod-1`.`shop`.`orders` AS `shop`",
                "SELECT `shop`.id FROM `prod-1`.`restored_shop`.`orders` AS `shop`",
            ),
            // An array of the alias `s`, not a table of dataset `s`.
            (
                "SELECT i.sku FROM shop.orders AS s, s.items AS i",
                "SELECT i.sku FROM restored_shop.orders AS s, s.items AS i",
            ),
        ] {
            assert_eq!(in_place(sql), expected, "{sql}");
        }
    }

    #[test]
    fn ctes_and_unnest_aliases_named_like_a_mapped_dataset_are_not_rewritten() {
        for (sql, expected) in [
            (
                "WITH shop AS (SELECT * FROM shop.orders) SELECT shop.id, shop.total FROM shop",
                "WITH shop AS (SELECT * FROM restored_shop.orders) SELECT shop.id, shop.total FROM shop",
            ),
            (
                "WITH orders AS (SELECT * FROM shop.orders) SELECT orders.id FROM orders",
                "WITH orders AS (SELECT * FROM restored_shop.orders) SELECT orders.id FROM orders",
            ),
            (
                "SELECT s.sku, s.qty FROM shop.orders AS o, UNNEST(o.items) AS s",
                "SELECT s.sku, s.qty FROM restored_shop.orders AS o, UNNEST(o.items) AS s",
            ),
        ] {
            assert_eq!(in_place(sql), expected, "{sql}");
        }
    }

    #[test]
    fn subqueries_information_schema_and_wildcards_keep_their_aliases() {
        for (sql, expected) in [
            (
                "SELECT * FROM (SELECT * FROM shop.orders) AS shop WHERE shop.id IN (SELECT id FROM s.refunds)",
                "SELECT * FROM (SELECT * FROM restored_shop.orders) AS shop WHERE shop.id IN (SELECT id FROM restored_s.refunds)",
            ),
            (
                "SELECT s.table_name FROM shop.INFORMATION_SCHEMA.TABLES AS s",
                "SELECT s.table_name FROM restored_shop.INFORMATION_SCHEMA.TABLES AS s",
            ),
            (
                "SELECT s.user_id FROM `prod-1.s.events_*` AS s WHERE _TABLE_SUFFIX > '2024'",
                "SELECT s.user_id FROM `prod-1.restored_s.events_*` AS s WHERE _TABLE_SUFFIX > '2024'",
            ),
        ] {
            assert_eq!(in_place(sql), expected, "{sql}");
        }
    }

    #[test]
    fn literals_and_comments_stay_as_written_around_aliases() {
        let sql =
            "SELECT 'shop.x' AS a, shop.z /* shop.y */ FROM shop.t AS shop -- shop.w\n# shop.v";
        assert_eq!(
            in_place(sql),
            "SELECT 'shop.x' AS a, shop.z /* shop.y */ FROM restored_shop.t AS shop -- shop.w\n# shop.v"
        );
    }

    #[test]
    fn routine_bodies_keep_parameters_and_rewrite_calls_and_targets() {
        // A SQL function's body: `s` is a STRUCT parameter.
        assert_eq!(
            in_place("shop.add_tax(s.price) * s.qty"),
            "restored_shop.add_tax(s.price) * s.qty"
        );
        // A procedure's body.
        let body = "BEGIN
  INSERT INTO shop.audit (n) SELECT s.n FROM shop.orders AS s;
  CALL shop.refresh();
END";
        assert_eq!(
            in_place(body),
            "BEGIN
  INSERT INTO restored_shop.audit (n) SELECT s.n FROM restored_shop.orders AS s;
  CALL restored_shop.refresh();
END"
        );
    }

    #[test]
    fn sql_the_parser_cannot_read_is_still_rewritten_by_the_scan() {
        for (sql, expected) in [
            (
                "SELECT * FROM ML.PREDICT(MODEL shop.m, TABLE shop.inputs)",
                "SELECT * FROM ML.PREDICT(MODEL restored_shop.m, TABLE restored_shop.inputs)",
            ),
            (
                "SELECT * FROM shop.events_* WHERE _TABLE_SUFFIX > '2024'",
                "SELECT * FROM restored_shop.events_* WHERE _TABLE_SUFFIX > '2024'",
            ),
            (
                "BEGIN FOR r IN (SELECT * FROM shop.f) DO SELECT 1; END FOR; END",
                "BEGIN FOR r IN (SELECT * FROM restored_shop.f) DO SELECT 1; END FOR; END",
            ),
        ] {
            assert_eq!(in_place(sql), expected, "{sql}");
        }
    }
}
