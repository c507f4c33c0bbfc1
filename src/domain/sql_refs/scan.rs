//! The text scan: every dotted name of two or more parts outside comments and string literals.
//! The fallback of [`super::sql_paths`] for SQL the parser does not read.
//!
//! It finds names in any of the spellings BigQuery accepts: `project.dataset.table`,
//! `dataset.table`, `` `project.dataset.table` ``, `` `project`.`dataset`.`table` ``,
//! `` `project`.dataset.table ``, unquoted project ids with dashes (`my-project.shop.orders`),
//! domain-scoped projects (`` `example.com:proj.shop.orders` ``), wildcard tables
//! (`` `shop.events_*` ``) and names with spaces or any letters inside backquotes.
//!
//! The scan is deliberately position-blind (it does not parse `FROM`, `JOIN`, comma joins, `TABLE`
//! arguments, DML targets…): it over-approximates. `alias.column` also comes out as a two-part
//! name, and only matches something if a dataset named like the alias holds a table named like
//! the column; for a backup, one view too many is better than a view whose table is missing.

use super::{PathPiece, SqlPath};

/// Every dotted name of two or more parts in `sql`, in order of appearance. See the module doc.
pub(super) fn scan_paths(sql: &str) -> Vec<SqlPath> {
    Scanner::new(sql).run()
}

/// One pass over the characters, building the current dotted name as it goes.
struct Scanner<'a> {
    sql: &'a str,
    chars: Vec<(usize, char)>,
    i: usize,
    paths: Vec<SqlPath>,
    /// Parts of the name being read.
    parts: Vec<String>,
    /// How it is written, piece by piece.
    pieces: Vec<PathPiece>,
    /// Byte offset where it starts.
    start: usize,
    /// Character index just after its last part.
    end: usize,
    /// The last thing read was the `.` after a part: the next part continues this name.
    after_dot: bool,
}

impl<'a> Scanner<'a> {
    fn new(sql: &'a str) -> Self {
        Self {
            sql,
            chars: sql.char_indices().collect(),
            i: 0,
            paths: Vec::new(),
            parts: Vec::new(),
            pieces: Vec::new(),
            start: 0,
            end: 0,
            after_dot: false,
        }
    }

    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.i + ahead).map(|&(_, c)| c)
    }

    fn offset(&self) -> usize {
        self.chars.get(self.i).map_or(self.sql.len(), |&(o, _)| o)
    }

    fn run(mut self) -> Vec<SqlPath> {
        while let Some(c) = self.peek(0) {
            match c {
                '-' if self.peek(1) == Some('-') => self.skip_line(),
                '#' => self.skip_line(),
                '/' if self.peek(1) == Some('*') => self.skip_block_comment(),
                '\'' | '"' => {
                    self.end_path();
                    self.skip_string();
                }
                '`' => {
                    let start = self.offset();
                    let text = self.read_backquoted();
                    let mut parts = 0;
                    for (n, part) in text.split('.').enumerate() {
                        // Dots inside the quotes separate parts as dots outside do.
                        self.after_dot |= n > 0;
                        self.push_part(part.to_string(), start);
                        parts += 1;
                    }
                    self.push_piece(start, true, parts);
                }
                '.' => {
                    if self.parts.is_empty() || self.after_dot {
                        self.end_path();
                    } else {
                        self.after_dot = true;
                    }
                    self.i += 1;
                }
                c if c.is_alphabetic() || c == '_' => {
                    let start = self.offset();
                    let word = self.read_word();
                    if is_string_prefix(&word) && matches!(self.peek(0), Some('\'' | '"')) {
                        self.end_path();
                        self.skip_string();
                    } else {
                        self.push_part(word, start);
                        self.push_piece(start, false, 1);
                    }
                }
                // A part after a dot may start with a digit (`shop.2024_orders`); elsewhere a
                // digit starts a number (`1.5e3`), which is skipped whole.
                c if c.is_numeric() && self.after_dot => {
                    let start = self.offset();
                    let word = self.read_word();
                    self.push_part(word, start);
                    self.push_piece(start, false, 1);
                }
                c if c.is_numeric() => {
                    self.end_path();
                    while self
                        .peek(0)
                        .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
                    {
                        self.i += 1;
                    }
                }
                _ => {
                    self.end_path();
                    self.i += 1;
                }
            }
        }
        self.end_path();
        self.paths
    }

    /// Adds a part to the current name, or starts a new name when the last part was not
    /// followed by a dot (`FROM a b` is two names).
    fn push_part(&mut self, part: String, start: usize) {
        if !self.parts.is_empty() && !self.after_dot {
            self.end_path();
        }
        if self.parts.is_empty() {
            self.start = start;
        }
        self.parts.push(part);
        self.end = self.i;
        self.after_dot = false;
    }

    /// Notes how the parts just pushed were written: from `start` to here, quoted or bare.
    fn push_piece(&mut self, start: usize, quoted: bool, parts: usize) {
        let end = self.offset();
        self.pieces.push(PathPiece {
            span: start..end,
            quoted,
            parts,
        });
    }

    /// Records the current name if it has two parts or more.
    fn end_path(&mut self) {
        let parts = std::mem::take(&mut self.parts);
        let pieces = std::mem::take(&mut self.pieces);
        self.after_dot = false;
        if parts.len() < 2 || parts.iter().any(String::is_empty) {
            return;
        }
        let end = self.chars.get(self.end).map_or(self.sql.len(), |&(o, _)| o);
        let called = self.chars[self.end..]
            .iter()
            .map(|&(_, c)| c)
            .find(|c| !c.is_whitespace())
            == Some('(');
        self.paths.push(SqlPath {
            parts,
            called,
            span: self.start..end,
            pieces,
        });
    }

    /// An unquoted identifier: letters, digits, `_`, and `-` between two of those (project ids
    /// and, in `FROM`, table names may contain dashes; `--` starts a comment).
    fn read_word(&mut self) -> String {
        let mut word = String::new();
        while let Some(c) = self.peek(0) {
            let dash_inside = c == '-'
                && !word.is_empty()
                && self
                    .peek(1)
                    .is_some_and(|n| n.is_alphanumeric() || n == '_');
            if c.is_alphanumeric() || c == '_' || dash_inside {
                word.push(c);
                self.i += 1;
            } else {
                break;
            }
        }
        word
    }

    /// The text between backquotes, with `\x` escapes resolved to `x`.
    fn read_backquoted(&mut self) -> String {
        self.i += 1;
        let mut text = String::new();
        while let Some(c) = self.peek(0) {
            self.i += 1;
            match c {
                '`' => break,
                '\\' => {
                    if let Some(next) = self.peek(0) {
                        text.push(next);
                        self.i += 1;
                    }
                }
                _ => text.push(c),
            }
        }
        text
    }

    /// A string literal: `'…'`, `"…"`, `'''…'''`, `"""…"""`. A backslash always takes the next
    /// character with it, in raw strings too (as GoogleSQL's lexer does), so `r'\''` is one
    /// string.
    fn skip_string(&mut self) {
        let Some(quote) = self.peek(0) else { return };
        let triple = self.peek(1) == Some(quote) && self.peek(2) == Some(quote);
        self.i += if triple { 3 } else { 1 };
        while let Some(c) = self.peek(0) {
            if c == '\\' {
                self.i += 2;
                continue;
            }
            if c == quote
                && (!triple || (self.peek(1) == Some(quote) && self.peek(2) == Some(quote)))
            {
                self.i += if triple { 3 } else { 1 };
                return;
            }
            self.i += 1;
        }
    }

    fn skip_line(&mut self) {
        self.end_path();
        while let Some(c) = self.peek(0) {
            self.i += 1;
            if c == '\n' {
                break;
            }
        }
    }

    fn skip_block_comment(&mut self) {
        self.end_path();
        self.i += 2;
        while let Some(c) = self.peek(0) {
            if c == '*' && self.peek(1) == Some('/') {
                self.i += 2;
                return;
            }
            self.i += 1;
        }
    }
}

/// `r'…'`, `b'…'`, `rb'…'`, `br'…'` (any case): raw and bytes literals.
fn is_string_prefix(word: &str) -> bool {
    matches!(word.to_ascii_lowercase().as_str(), "r" | "b" | "rb" | "br")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TableRef;

    // These test the scan itself: `sql_paths` would read most of these SQL texts with the parser.
    use scan_paths as sql_paths;

    fn names(sql: &str) -> Vec<String> {
        sql_paths(sql)
            .into_iter()
            .map(|p| p.parts.join("."))
            .collect()
    }

    #[test]
    fn every_spelling_of_a_qualified_table_name_is_found() {
        for sql in [
            "SELECT * FROM p-1.shop.orders",
            "SELECT * FROM `p-1.shop.orders`",
            "SELECT * FROM `p-1`.`shop`.`orders`",
            "SELECT * FROM `p-1`.shop.orders",
            "SELECT * FROM `p-1.shop`.orders",
            "SELECT * FROM p-1.shop.`orders`",
            "select * from\n\tp-1.shop.orders\nwhere true",
        ] {
            assert_eq!(names(sql), ["p-1.shop.orders"], "{sql}");
        }
        assert_eq!(names("SELECT * FROM shop.orders o"), ["shop.orders"]);
        assert_eq!(names("SELECT * FROM `shop.orders`"), ["shop.orders"]);
        assert_eq!(names("SELECT * FROM `shop`.orders"), ["shop.orders"]);
    }

    #[test]
    fn joins_subqueries_and_ctes_give_every_name() {
        let sql = "WITH recent AS (SELECT * FROM shop.orders WHERE d > '2024-01-01')
            SELECT r.id, c.name FROM recent r
            JOIN `prod-1.crm.customers` c ON c.id = r.customer_id,
            UNNEST(r.items) AS item
            WHERE r.id IN (SELECT id FROM shop.refunds)";
        assert_eq!(
            names(sql),
            [
                "shop.orders",
                "r.id",
                "c.name",
                "prod-1.crm.customers",
                "c.id",
                "r.customer_id",
                "r.items",
                "r.id",
                "shop.refunds"
            ]
        );
    }

    #[test]
    fn names_in_comments_and_strings_are_ignored() {
        let sql = r#"-- FROM shop.old_orders
            # FROM shop.older_orders
            /* FROM shop.oldest
               FROM `p-1.shop.x` */
            SELECT 'shop.in_string', "shop.in_dq", '''shop.triple
            more''', """shop.triple_dq""", r'shop.raw\'still.raw', b"shop.bytes",
            'it\'s shop.escaped'
            FROM shop.orders -- trailing comment shop.nope
            WHERE note != "a \" shop.escaped_dq""#;
        assert_eq!(names(sql), ["shop.orders"]);
    }

    #[test]
    fn names_with_spaces_unicode_and_escaped_backquotes_are_kept_whole() {
        assert_eq!(
            names("SELECT * FROM `p-1.shop.daily sales` JOIN `shop`.`ventes été` USING (id)"),
            ["p-1.shop.daily sales", "shop.ventes été"]
        );
        assert_eq!(
            sql_paths(r"SELECT * FROM `shop.we\`ird`")[0].parts,
            ["shop", "we`ird"]
        );
    }

    #[test]
    fn wildcard_tables_keep_their_star_and_column_stars_are_dropped() {
        assert_eq!(
            names("SELECT t.* FROM `p-1.shop.events_*` t WHERE _TABLE_SUFFIX > '2024'"),
            ["p-1.shop.events_*"]
        );
        assert_eq!(
            names("SELECT o.*, 1.5e3 FROM shop.orders o"),
            ["shop.orders"]
        );
    }

    #[test]
    fn calls_are_marked_so_routines_can_match() {
        let paths =
            sql_paths("SELECT shop.add_tax(price), x FROM shop.orders, shop.top_customers (10)");
        let called: Vec<(String, bool)> = paths
            .iter()
            .map(|p| (p.parts.join("."), p.called))
            .collect();
        assert_eq!(
            called,
            [
                ("shop.add_tax".to_string(), true),
                ("shop.orders".to_string(), false),
                ("shop.top_customers".to_string(), true),
            ]
        );
    }

    #[test]
    fn dml_and_procedure_bodies_give_their_targets() {
        let body = "BEGIN
              DECLARE n INT64 DEFAULT (SELECT COUNT(*) FROM shop.orders);
              INSERT INTO shop.audit (n) VALUES (n);
              MERGE `shop.totals` t USING (SELECT 1 AS id) s ON t.id = s.id
                WHEN NOT MATCHED THEN INSERT ROW;
              DELETE FROM shop.tmp WHERE TRUE;
            END";
        assert_eq!(
            names(body),
            [
                "shop.orders",
                "shop.audit",
                "shop.totals",
                "t.id",
                "s.id",
                "shop.tmp"
            ]
        );
    }

    #[test]
    fn numbers_and_dashes_do_not_make_names() {
        assert_eq!(
            names("SELECT 1.5, a-b, x - 1, 3.e2 FROM shop.t"),
            ["shop.t"]
        );
        assert_eq!(names("SELECT shop.2024_orders.x"), ["shop.2024_orders.x"]);
        assert_eq!(names("SELECT a--b.c\nFROM d.e"), ["d.e"]);
    }

    #[test]
    fn spans_point_at_the_name_as_written() {
        let sql = "SELECT * FROM `p-1`.shop.orders AS o JOIN shop.x USING (id)";
        let paths = sql_paths(sql);
        assert_eq!(&sql[paths[0].span.clone()], "`p-1`.shop.orders");
        assert_eq!(&sql[paths[1].span.clone()], "shop.x");
        assert_eq!(sql_paths("SELECT o.* FROM t"), []);
    }

    #[test]
    fn pieces_say_how_each_part_is_written() {
        let sql = "SELECT * FROM `p-1.shop`.orders JOIN `p-1`.`shop`.x USING (id) JOIN shop.`y z` ON TRUE";
        let pieces: Vec<Vec<(&str, bool, usize)>> = sql_paths(sql)
            .iter()
            .map(|p| {
                p.pieces
                    .iter()
                    .map(|piece| (&sql[piece.span.clone()], piece.quoted, piece.parts))
                    .collect()
            })
            .collect();
        assert_eq!(
            pieces,
            [
                vec![("`p-1.shop`", true, 2), ("orders", false, 1)],
                vec![("`p-1`", true, 1), ("`shop`", true, 1), ("x", false, 1)],
                vec![("shop", false, 1), ("`y z`", true, 1)],
            ]
        );
        let path = sql_paths("SELECT * FROM `example.com:proj.shop.t`").remove(0);
        assert_eq!(path.pieces.len(), 1);
        assert_eq!(path.pieces[0].parts, 4);
        assert_eq!(path.name_parts(), ["example.com:proj", "shop", "t"]);
    }

    #[test]
    fn candidates_resolve_dataset_names_in_the_default_project() {
        let path = |sql: &str| sql_paths(sql).remove(0);
        assert_eq!(
            path("SELECT * FROM shop.orders").candidates("p-1"),
            [TableRef::new("p-1", "shop", "orders")]
        );
        assert_eq!(
            path("SELECT * FROM `p-2.shop.orders`").candidates("p-1"),
            [
                TableRef::new("p-2", "shop", "orders"),
                TableRef::new("p-1", "p-2", "shop")
            ]
        );
        assert_eq!(
            path("SELECT * FROM `example.com:proj.shop.orders`").candidates("p-1")[0],
            TableRef::new("example.com:proj", "shop", "orders")
        );
        assert_eq!(
            path("SELECT * FROM `example.com:proj`.shop.orders").candidates("p-1")[0],
            TableRef::new("example.com:proj", "shop", "orders")
        );
    }
}
