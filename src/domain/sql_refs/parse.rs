//! The parser's reading: sqlparser's BigQuery dialect, then a walk over the tree for the names in
//! a table position and the called names, each located in the text from the parser's spans.
//!
//! Anything this reading cannot vouch for — SQL the parser refuses, a name whose position the
//! spans do not give exactly — is an [`Unparsed`], and the caller scans the text instead: a
//! wrong position would make a rewrite corrupt the SQL.

use std::collections::HashSet;
use std::fmt;
use std::ops::{ControlFlow, Range};

use sqlparser::ast::{
    Expr, Ident, ObjectName, ObjectNamePart, Select, Spanned, Statement, TableFactor,
    TableWithJoins, Visit, Visitor,
};
use sqlparser::dialect::BigQueryDialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Token};

use super::{PathPiece, SqlPath};

/// Why the parser's reading was not used.
#[derive(Debug)]
pub(super) enum Unparsed {
    /// The parser refused the SQL (as statements; and as an expression).
    Syntax(ParserError),
    /// The SQL parsed, but a name's position in the text could not be confirmed.
    Position(String),
}

impl fmt::Display for Unparsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax(e) => write!(f, "{e}"),
            Self::Position(what) => write!(f, "position of {what} not found in the text"),
        }
    }
}

/// The table and routine names of two or more parts in `sql`, in order, spans not overlapping.
pub(super) fn parse_paths(sql: &str) -> Result<Vec<SqlPath>, Unparsed> {
    let mut finder = Finder {
        text: Text::new(sql),
        scopes: Vec::new(),
        table_functions: HashSet::new(),
        paths: Vec::new(),
    };
    let walked = match parse(sql).map_err(Unparsed::Syntax)? {
        Tree::Statements(statements) => statements.visit(&mut finder),
        Tree::Expression(expr) => expr.visit(&mut finder),
    };
    if let ControlFlow::Break(unparsed) = walked {
        return Err(unparsed);
    }
    let mut paths = finder.paths;
    paths.sort_by_key(|p| (p.span.start, p.span.end));
    // A name can be reached twice (a `PIVOT`'s table); twice the same span is one name.
    paths.dedup_by(|b, a| a.span == b.span);
    if let Some(pair) = paths.windows(2).find(|w| w[0].span.end > w[1].span.start) {
        return Err(Unparsed::Position(format!(
            "`{}` (overlaps the name before it)",
            sql.get(pair[1].span.clone()).unwrap_or_default()
        )));
    }
    Ok(paths)
}

enum Tree {
    Statements(Vec<Statement>),
    /// A SQL function's body is an expression (`x * 1.1`, `shop.f(x) + 1`), not a statement.
    Expression(Box<Expr>),
}

fn parse(sql: &str) -> Result<Tree, ParserError> {
    let dialect = BigQueryDialect;
    match Parser::parse_sql(&dialect, sql) {
        Ok(statements) => Ok(Tree::Statements(statements)),
        Err(as_statements) => {
            let as_expression = Parser::new(&dialect)
                .try_with_sql(sql)
                .and_then(|mut parser| {
                    let expr = parser.parse_expr()?;
                    parser.expect_token(&Token::EOF)?;
                    Ok(expr)
                });
            // The statement error tells more for a view (the usual case) than "expected EOF".
            as_expression
                .map(|expr| Tree::Expression(Box::new(expr)))
                .map_err(|_| as_statements)
        }
    }
}

/// Walks the tree, collecting names as [`SqlPath`]s. Breaks with an [`Unparsed`] when a name
/// cannot be located.
struct Finder<'a> {
    text: Text<'a>,
    /// The range variables of each enclosing `SELECT`, innermost last.
    scopes: Vec<Scope>,
    /// Where table-function names start (`FROM ds.tvf(…)`): those names are calls.
    table_functions: HashSet<usize>,
    paths: Vec<SqlPath>,
}

/// What a `SELECT`'s `FROM` defines.
struct Scope {
    /// The `FROM` clause's extent, when the spans give it.
    from: Option<Range<usize>>,
    vars: Vec<RangeVar>,
}

/// A name a `FROM` item can be referred to by: its alias, else a table's last name part
/// (`FROM shop.orders` defines `orders`).
struct RangeVar {
    name: String,
    /// Where it is defined: a `FROM` path after this point may start with it.
    at: usize,
}

impl Visitor for Finder<'_> {
    type Break = Unparsed;

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<Unparsed> {
        let mut vars = Vec::new();
        for item in &select.from {
            self.join_vars(item, &mut vars);
        }
        let from = select
            .from
            .iter()
            .map(TableWithJoins::span)
            .filter_map(|span| self.text.range(span))
            .reduce(|a, b| a.start.min(b.start)..a.end.max(b.end));
        self.scopes.push(Scope { from, vars });
        ControlFlow::Continue(())
    }

    fn post_visit_select(&mut self, _: &Select) -> ControlFlow<Unparsed> {
        self.scopes.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Unparsed> {
        match factor {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            } => {
                if let Some(at) = first_ident(name).and_then(|i| self.text.offset(i.span.start)) {
                    self.table_functions.insert(at);
                }
            }
            // Not visited as a relation: `FROM ds.f(…)` where the dialect reads a function.
            TableFactor::Function { name, .. } => self.add(name, true)?,
            _ => {}
        }
        ControlFlow::Continue(())
    }

    /// Table positions: `FROM`/`JOIN` items, DML targets, DDL names.
    fn pre_visit_relation(&mut self, name: &ObjectName) -> ControlFlow<Unparsed> {
        let Some(first) = first_ident(name) else {
            return ControlFlow::Continue(());
        };
        let Some(at) = self.text.offset(first.span.start) else {
            return ControlFlow::Break(Unparsed::Position(format!("`{name}`")));
        };
        if name.0.len() > 1 && self.is_range_variable(&first.value, at) {
            // `FROM t, t.items`: an array of `t`, not dataset `t`.
            return ControlFlow::Continue(());
        }
        let called = self.table_functions.contains(&at);
        self.add(name, called)
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Unparsed> {
        if let Expr::Function(function) = expr {
            self.add(&function.name, true)?;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<Unparsed> {
        if let Statement::Call(function) = statement {
            self.add(&function.name, true)?;
        }
        ControlFlow::Continue(())
    }
}

impl Finder<'_> {
    /// Records `name` if it has two parts or more.
    fn add(&mut self, name: &ObjectName, called: bool) -> ControlFlow<Unparsed> {
        match self.text.locate(name, called) {
            Ok(path) => {
                self.paths.extend(path);
                ControlFlow::Continue(())
            }
            Err(unparsed) => ControlFlow::Break(unparsed),
        }
    }

    /// Whether a `FROM` path starting with `name` at `at` starts with a range variable, as
    /// BigQuery resolves it: in the `SELECT` whose `FROM` holds the path, only the items before
    /// it are visible (so `FROM shop.orders AS shop` is dataset `shop`); from a subquery in an
    /// outer `SELECT`'s select list or `WHERE`, all of that `FROM` is. Aliases ignore case.
    fn is_range_variable(&self, name: &str, at: usize) -> bool {
        let innermost = self.scopes.len().saturating_sub(1);
        self.scopes.iter().enumerate().any(|(depth, scope)| {
            let in_from =
                depth == innermost || scope.from.as_ref().is_some_and(|from| from.contains(&at));
            scope
                .vars
                .iter()
                .any(|var| var.name.eq_ignore_ascii_case(name) && (!in_from || var.at < at))
        })
    }

    fn join_vars(&self, item: &TableWithJoins, vars: &mut Vec<RangeVar>) {
        self.factor_vars(&item.relation, vars);
        for join in &item.joins {
            self.factor_vars(&join.relation, vars);
        }
    }

    fn factor_vars(&self, factor: &TableFactor, vars: &mut Vec<RangeVar>) {
        let alias = match factor {
            TableFactor::Table { name, alias, .. } => {
                let implicit = name.0.last().and_then(ObjectNamePart::as_ident);
                alias.as_ref().map(|a| &a.name).or(implicit)
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                self.join_vars(table_with_joins, vars);
                alias.as_ref().map(|a| &a.name)
            }
            TableFactor::Pivot { table, alias, .. }
            | TableFactor::Unpivot { table, alias, .. }
            | TableFactor::MatchRecognize { table, alias, .. } => {
                self.factor_vars(table, vars);
                alias.as_ref().map(|a| &a.name)
            }
            TableFactor::Derived { alias, .. }
            | TableFactor::TableFunction { alias, .. }
            | TableFactor::Function { alias, .. }
            | TableFactor::UNNEST { alias, .. }
            | TableFactor::JsonTable { alias, .. } => alias.as_ref().map(|a| &a.name),
            _ => None,
        };
        if let Some(ident) = alias {
            vars.push(RangeVar {
                name: ident.value.clone(),
                // No span: visible from the start, so a path is rather left alone than
                // taken for a dataset.
                at: self.text.offset(ident.span.start).unwrap_or(0),
            });
        }
    }
}

fn first_ident(name: &ObjectName) -> Option<&Ident> {
    name.0.first().and_then(ObjectNamePart::as_ident)
}

/// The SQL text, to turn the parser's line/column locations into byte offsets and to check
/// names against what is written.
struct Text<'a> {
    sql: &'a str,
    /// Byte offset of each line's start. The parser counts lines at `\n` only, and columns in
    /// characters from 1.
    lines: Vec<usize>,
}

impl<'a> Text<'a> {
    fn new(sql: &'a str) -> Self {
        let lines = std::iter::once(0)
            .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { sql, lines }
    }

    /// The byte offset of `location`; `None` for the empty location of a node without span.
    fn offset(&self, location: Location) -> Option<usize> {
        let line = usize::try_from(location.line).ok()?.checked_sub(1)?;
        let column = usize::try_from(location.column).ok()?.checked_sub(1)?;
        let start = *self.lines.get(line)?;
        let end = self
            .lines
            .get(line + 1)
            .map_or(self.sql.len(), |&next| next - 1);
        let text = &self.sql[start..end];
        text.char_indices()
            .map(|(i, _)| i)
            .chain(std::iter::once(text.len()))
            .nth(column)
            .map(|i| start + i)
    }

    fn range(&self, span: sqlparser::tokenizer::Span) -> Option<Range<usize>> {
        Some(self.offset(span.start)?..self.offset(span.end)?)
    }

    /// `name` as written, or `None` when it is not a name of two parts or more. Pieces come from
    /// the identifiers' spans: the parser splits `` `p.d.t` `` into three identifiers with the
    /// same span (one piece), gives a dashed `my-proj` the span of `my` only (its length is the
    /// identifier's), and keeps a called `` `d.f` `` as one identifier.
    fn locate(&self, name: &ObjectName, called: bool) -> Result<Option<SqlPath>, Unparsed> {
        let Some(idents) = name
            .0
            .iter()
            .map(ObjectNamePart::as_ident)
            .collect::<Option<Vec<&Ident>>>()
        else {
            return Ok(None);
        };
        let unlocated = || Unparsed::Position(format!("`{name}`"));
        let mut parts = Vec::new();
        let mut pieces: Vec<PathPiece> = Vec::new();
        let mut i = 0;
        while i < idents.len() {
            let ident = idents[i];
            let same_token = idents[i..]
                .iter()
                .take_while(|other| other.span == ident.span)
                .count();
            let start = self.offset(ident.span.start).ok_or_else(unlocated)?;
            let (end, piece_parts) = match ident.quote_style {
                Some('`') => {
                    let end = self.offset(ident.span.end).ok_or_else(unlocated)?;
                    let inner = self
                        .sql
                        .get(start..end)
                        .and_then(|t| t.strip_prefix('`'))
                        .and_then(|t| t.strip_suffix('`'))
                        .ok_or_else(unlocated)?;
                    // The text, not the parser's value: BigQuery's `\` escapes are resolved
                    // as the text scan resolves them, and dots split parts as dots outside do.
                    let text = unescape(inner);
                    let written: Vec<&str> = idents[i..i + same_token]
                        .iter()
                        .map(|i| i.value.as_str())
                        .collect();
                    if !inner.contains('\\') && written.join(".") != text {
                        return Err(unlocated());
                    }
                    (end, text.split('.').map(str::to_string).collect::<Vec<_>>())
                }
                None if same_token == 1 => {
                    let end = start + ident.value.len();
                    if self.sql.get(start..end) != Some(ident.value.as_str()) {
                        return Err(unlocated());
                    }
                    (end, vec![ident.value.clone()])
                }
                _ => return Err(unlocated()),
            };
            if let Some(before) = pieces.last()
                && self.sql.get(before.span.end..start).map(str::trim) != Some(".")
            {
                return Err(unlocated());
            }
            pieces.push(PathPiece {
                span: start..end,
                quoted: ident.quote_style.is_some(),
                parts: piece_parts.len(),
            });
            parts.extend(piece_parts);
            i += same_token;
        }
        let (Some(first), Some(last)) = (pieces.first(), pieces.last()) else {
            return Ok(None);
        };
        if parts.len() < 2 || parts.iter().any(String::is_empty) {
            return Ok(None);
        }
        let span = first.span.start..last.span.end;
        Ok(Some(SqlPath {
            parts,
            called,
            span,
            pieces,
        }))
    }
}

/// A backquoted identifier's text with `\x` escapes resolved to `x`.
fn unescape(inner: &str) -> String {
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            _ => out.push(c),
        }
    }
    out
}
