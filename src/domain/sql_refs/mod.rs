//! Which tables, views and routines a piece of GoogleSQL (a view's query, a routine's body) names.
//! No I/O and no BigQuery calls: the caller resolves the names against what exists.
//!
//! # How names are found
//!
//! - **Parser first** (`parse`): the SQL is parsed with sqlparser's BigQuery dialect, as
//!   statements (a view, a procedure, a table function) or else as one expression (a SQL
//!   function's body). Only names in a table position (`FROM`, `JOIN`, DML and DDL targets) and
//!   called names (`ds.f(…)`, `FROM ds.tvf(…)`, `CALL ds.p()`) are references: column paths,
//!   table aliases, `UNNEST` aliases and CTE names are not, and neither is a `FROM` path that
//!   starts with a range variable in scope (`FROM shop.orders AS o, o.items` reads `o`'s array).
//!   Each name's position comes from the parser's spans, checked against the text.
//! - **Text scan as the fallback** (`scan`): GoogleSQL the parser does not read (`ML.PREDICT`,
//!   `TABLE` arguments, an unquoted wildcard table, procedural `FOR` loops…) is scanned for
//!   every dotted name outside comments and string literals, which over-approximates (see that
//!   module). The fallback is logged at debug level.
//!
//! Either way a name is found in any of the spellings BigQuery accepts (`project.dataset.table`,
//! `` `project.dataset.table` ``, `` `project`.dataset.table ``, dashed project ids, domain-scoped
//! projects, wildcard tables) with how each piece is written, so that a caller can rewrite it in
//! the same style.
//!
//! Case is kept as written: whether `Shop.Orders` names `shop.orders` depends on the dataset's
//! case-insensitivity setting, which only the caller knows.

use std::ops::Range;

use super::ids::TableRef;

mod parse;
mod scan;

/// A dotted name as written in SQL, its parts unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlPath {
    /// `a.b.c`, `` `a.b.c` `` and `` `a`.`b`.`c` `` all give `["a", "b", "c"]`. A domain-scoped
    /// project keeps its dots (`["example.com:proj", "ds", "t"]`).
    pub parts: Vec<String>,
    /// A call (`ds.f(…)`, `FROM ds.tvf(…)`, `CALL ds.p()`), so the name may be a routine as well
    /// as a table. From the text scan: any name followed by `(`, a DML column list too
    /// (`INSERT INTO ds.t (a, b)`).
    pub called: bool,
    /// Where the name is in the SQL (byte offsets), for a caller that rewrites it.
    pub span: Range<usize>,
    /// How the name is written, piece by piece, for a caller that rewrites it in the same style.
    pub pieces: Vec<PathPiece>,
}

/// One piece of a dotted name as written: a bare word, or one backquoted run that may hold
/// several parts. `` `p.d`.t `` is two pieces, `` `p.d` `` (two parts) and `t`; `p.d.t` is three.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPiece {
    /// Where the piece is in the SQL (byte offsets), backquotes included.
    pub span: Range<usize>,
    /// Written between backquotes.
    pub quoted: bool,
    /// How many of the name's `parts` it holds, in order (the pieces' counts add up to
    /// `parts.len()`).
    pub parts: usize,
}

impl SqlPath {
    /// The name's parts with a domain-scoped project joined back into one part:
    /// `` `example.com:proj.ds.t` `` gives `["example.com:proj", "ds", "t"]`.
    pub fn name_parts(&self) -> Vec<String> {
        merge_domain_scoped_project(&self.parts)
    }

    /// The objects this name may denote, most qualified first. `project.dataset.name` is tried
    /// both as written and as `dataset.name.field` in the default project (a struct field of
    /// `alias.column` looks the same to the text scan); `dataset.name` resolves in
    /// `default_project` — the project of the view or routine, as BigQuery resolves names inside
    /// them. A one-part name is never a table in a saved view or routine.
    pub fn candidates(&self, default_project: &str) -> Vec<TableRef> {
        let parts = merge_domain_scoped_project(&self.parts);
        match parts.as_slice() {
            [project, dataset, name, ..] => vec![
                TableRef::new(project.clone(), dataset.clone(), name.clone()),
                TableRef::new(default_project, project.clone(), dataset.clone()),
            ],
            [dataset, name] => vec![TableRef::new(
                default_project,
                dataset.clone(),
                name.clone(),
            )],
            _ => Vec::new(),
        }
    }
}

/// `["example", "com:proj", "ds", "t"]` (from `` `example.com:proj.ds.t` ``) →
/// `["example.com:proj", "ds", "t"]`: the part with `:` ends a domain-scoped project id.
fn merge_domain_scoped_project(parts: &[String]) -> Vec<String> {
    match parts.iter().position(|p| p.contains(':')) {
        Some(end) if end + 1 < parts.len() => {
            let mut merged = vec![parts[..=end].join(".")];
            merged.extend(parts[end + 1..].iter().cloned());
            merged
        }
        _ => parts.to_vec(),
    }
}

/// The table, view and routine names of two or more parts in `sql`, in order of appearance,
/// spans never overlapping. See the module doc.
pub fn sql_paths(sql: &str) -> Vec<SqlPath> {
    match parse::parse_paths(sql) {
        Ok(paths) => paths,
        Err(unparsed) => {
            tracing::debug!(
                error = %unparsed,
                sql_bytes = sql.len(),
                "SQL not read by the parser; its names come from the text scan, which also takes aliases and columns for names"
            );
            scan::scan_paths(sql)
        }
    }
}

#[cfg(test)]
mod tests;
