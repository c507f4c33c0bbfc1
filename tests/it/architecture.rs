//! The one-way dependency rule of `src/` (README, "Architecture"), checked on the sources
//! themselves: every path that leaves a module — `use crate::…` (groups included), `crate::…` in
//! code, `super::…`, `bq_backup::…` in the binary, a name the crate root re-exports — is resolved
//! to the top-level module it reaches and held against [`LAYERS`] and [`ONLY_USED_BY`]. Comments,
//! doc comments and string literals are skipped. Needs no test services.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One layer of `src/`: modules that may use each other and every layer below.
struct Layer {
    name: &'static str,
    modules: &'static [&'static str],
}

/// The layers of `src/`, from the entry points down. A module may use the modules of its own
/// layer and of the layers below it, never one above. A top-level module missing here fails the
/// check (a new module has to be given its place); a name here without a module yet is fine.
const LAYERS: &[Layer] = &[
    Layer {
        name: "entry points",
        // `config` aggregates every module's settings into `Settings`, so it sits above them all;
        // each module reads its own part through `variables` (below).
        modules: &["main", "cli", "app", "api", "config"],
    },
    Layer {
        name: "engine",
        modules: &["engine"],
    },
    Layer {
        name: "operations",
        modules: &[
            "backup",
            "restore",
            "catalog",
            "jobs",
            "schedule",
            "recovery",
            "time_travel",
        ],
    },
    Layer {
        name: "clients",
        modules: &["bigquery", "storage", "encryption"],
    },
    // Below the clients, so that nothing here can reach the network through them: `formats` stays
    // pure bytes ↔ Arrow, and settings, logs, metrics and the rayon bridge serve every layer above.
    Layer {
        name: "support",
        modules: &["formats", "exec", "metrics", "telemetry", "variables"],
    },
    Layer {
        name: "domain",
        modules: &["domain"],
    },
    Layer {
        name: "error",
        modules: &["error"],
    },
];

/// Modules that only the named modules may use, whatever the layers allow.
const ONLY_USED_BY: &[(&str, &[&str])] = &[
    // The routes are mounted by the server (`app`); the CLI and everything below go through the
    // engine, so that HTTP stays one entry point among others.
    // `config` takes the auth settings the routes declare (`api::auth::settings`) into `Settings`.
    ("api", &["app", "config"]),
];

#[test]
fn no_module_uses_a_module_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    read_sources(&src, &src, &mut files);
    assert!(
        files.iter().any(|(path, _)| path == "lib.rs"),
        "no src/lib.rs under {}",
        src.display()
    );
    let problems = check(&files);
    assert!(
        problems.is_empty(),
        "the one-way dependency rule (README, Architecture; LAYERS in tests/it/architecture.rs) \
         is broken:\n{}",
        problems.join("\n")
    );
}

/// Every `.rs` file under `dir`, as (path relative to `src/`, text), sorted.
fn read_sources(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            e.unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path()
        })
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            read_sources(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let relative = path
                .strip_prefix(root)
                .expect("read_sources walks below its root")
                .to_string_lossy()
                .replace('\\', "/");
            out.push((relative, text));
        }
    }
}

/// Checks source files given as (path relative to `src/`, text) and returns every problem, each
/// naming the file and line: an edge the layers forbid, or a top-level module in no layer.
fn check(files: &[(String, String)]) -> Vec<String> {
    let bin_modules: BTreeSet<String> = files
        .iter()
        .find(|(path, _)| path == "main.rs")
        .map(|(_, text)| declared_modules(&tokens(text)))
        .unwrap_or_default();
    let sources: Vec<Source> = files
        .iter()
        .map(|(path, text)| Source::new(path, text, &bin_modules))
        .collect();
    let lib_modules: BTreeSet<String> = sources
        .iter()
        .filter(|s| s.krate == Crate::Lib)
        .filter_map(|s| s.module.first().cloned())
        .collect();

    let mut problems = Vec::new();
    for module in lib_modules
        .iter()
        .chain(&bin_modules)
        .chain(["main".into()].iter())
    {
        if layer_of(module).is_none() && sources.iter().any(|s| s.top() == Some(module.as_str())) {
            problems.push(format!(
                "src/: module `{module}` is in no layer: add it to LAYERS in tests/it/architecture.rs"
            ));
        }
    }

    // Names the crate root re-exports (`pub use error::{Error, …}`) lead to their module.
    let mut root_names: BTreeMap<String, String> = BTreeMap::new();
    for source in sources
        .iter()
        .filter(|s| s.krate == Crate::Lib && s.module.is_empty())
    {
        for path in source
            .paths()
            .into_iter()
            .filter(|p| p.is_use && p.at_file_level)
        {
            if let (Some(first), Some(name)) = (path.absolute.first(), path.name())
                && lib_modules.contains(first)
            {
                root_names.insert(name, first.clone());
            }
        }
    }

    for source in &sources {
        let Some(from) = source.top() else {
            continue; // the crate root declares and re-exports every module
        };
        let mut seen = BTreeSet::new();
        for path in source.paths() {
            let Some(first) = path.absolute.first() else {
                continue;
            };
            let to = match path.krate {
                Crate::Bin if bin_modules.contains(first) => first.as_str(),
                Crate::Lib if lib_modules.contains(first) => first.as_str(),
                Crate::Lib => match root_names.get(first) {
                    Some(module) => module.as_str(),
                    None => continue,
                },
                Crate::Bin => continue,
            };
            if to == from || !seen.insert((path.line, to.to_string())) {
                continue;
            }
            if let Some(why) = forbidden(from, to) {
                problems.push(format!(
                    "src/{}:{}: `{from}` uses `{to}`: {why}",
                    source.path, path.line
                ));
            }
        }
    }
    problems
}

/// Why `from` may not use `to`, or `None` when it may.
fn forbidden(from: &str, to: &str) -> Option<String> {
    if let Some((_, users)) = ONLY_USED_BY.iter().find(|(m, _)| *m == to)
        && !users.contains(&from)
    {
        return Some(format!("only {} may use `{to}`", users.join(", ")));
    }
    let (Some(from_layer), Some(to_layer)) = (layer_of(from), layer_of(to)) else {
        return None; // a module in no layer is reported once, not at every use
    };
    (to_layer < from_layer).then(|| {
        format!(
            "`{to}` is in layer \"{}\", above \"{}\"",
            LAYERS[to_layer].name, LAYERS[from_layer].name
        )
    })
}

/// Index into [`LAYERS`] (0 = top).
fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.modules.contains(&module))
}

/// The library (`src/lib.rs` and its modules) or the binary (`src/main.rs` and what it declares).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Crate {
    Lib,
    Bin,
}

/// One source file and where it sits in its crate's module tree.
struct Source {
    path: String,
    text: String,
    krate: Crate,
    /// `src/backup/plan.rs` → `["backup", "plan"]`; a crate root → `[]`.
    module: Vec<String>,
}

/// A path found in a file, resolved from the crate root.
struct FoundPath {
    line: usize,
    krate: Crate,
    absolute: Vec<String>,
    alias: Option<String>,
    is_use: bool,
    /// Not inside an inline `mod { … }` (for the crate root's re-exports).
    at_file_level: bool,
}

impl FoundPath {
    /// The name this path brings into scope (`use a::B as C` → `C`).
    fn name(&self) -> Option<String> {
        self.alias
            .clone()
            .or_else(|| self.absolute.last().cloned())
            .filter(|n| n != "*")
    }
}

impl Source {
    fn new(path: &str, text: &str, bin_modules: &BTreeSet<String>) -> Self {
        let mut module: Vec<String> = path
            .trim_end_matches(".rs")
            .split('/')
            .map(str::to_string)
            .collect();
        if module.last().is_some_and(|m| m == "mod") {
            module.pop();
        }
        let krate = if module == ["main"] || module.first().is_some_and(|m| bin_modules.contains(m))
        {
            Crate::Bin
        } else {
            Crate::Lib
        };
        if module == ["lib"] || module == ["main"] {
            module.clear();
        }
        Source {
            path: path.to_string(),
            text: text.to_string(),
            krate,
            module,
        }
    }

    /// The top-level module this file belongs to; `None` for the library's root.
    fn top(&self) -> Option<&str> {
        match (self.krate, self.module.first()) {
            (_, Some(m)) => Some(m),
            (Crate::Bin, None) => Some("main"),
            (Crate::Lib, None) => None,
        }
    }

    /// Every path of the file that starts at `crate`, `super`, `self` or `bq_backup`, and every
    /// `use` path (relative ones resolved from the current module), resolved from the crate root.
    fn paths(&self) -> Vec<FoundPath> {
        let toks = tokens(&self.text);
        let mut found = Vec::new();
        // Inline modules (`mod tests { … }`) open at a brace depth; `super` counts them.
        let mut inline: Vec<(String, usize)> = Vec::new();
        let mut depth = 0usize;
        let mut i = 0;
        while i < toks.len() {
            let current: Vec<String> = self
                .module
                .iter()
                .cloned()
                .chain(inline.iter().map(|(m, _)| m.clone()))
                .collect();
            match &toks[i].kind {
                Kind::Ident(w) if w == "use" => {
                    let mut raw = Vec::new();
                    i = use_tree(&toks, i + 1, &mut Vec::new(), &mut raw);
                    // Skip to the end of the item, whatever the tree parser left.
                    while let Some(t) = toks.get(i) {
                        i += 1;
                        if t.kind == Kind::Punct(';') {
                            break;
                        }
                    }
                    for (segments, line, alias) in raw {
                        if let Some((krate, absolute)) = self.resolve(&segments, &current, true) {
                            found.push(FoundPath {
                                line,
                                krate,
                                absolute,
                                alias,
                                is_use: true,
                                at_file_level: inline.is_empty(),
                            });
                        }
                    }
                    continue;
                }
                Kind::Ident(w)
                    if w == "mod"
                        && matches!(toks.get(i + 2).map(|t| &t.kind), Some(Kind::Punct('{'))) =>
                {
                    if let Some(Kind::Ident(name)) = toks.get(i + 1).map(|t| &t.kind) {
                        inline.push((name.clone(), depth));
                    }
                    i += 2; // the `{` is counted below
                    continue;
                }
                Kind::Punct('{') => depth += 1,
                Kind::Punct('}') => {
                    depth = depth.saturating_sub(1);
                    if inline.last().is_some_and(|(_, d)| *d == depth) {
                        inline.pop();
                    }
                }
                Kind::Ident(w)
                    if is_path_start(w)
                        && matches!(toks.get(i + 1).map(|t| &t.kind), Some(Kind::PathSep))
                        && !matches!(
                            i.checked_sub(1).map(|p| &toks[p].kind),
                            Some(Kind::PathSep)
                        ) =>
                {
                    let line = toks[i].line;
                    let mut segments = vec![w.clone()];
                    let mut j = i + 1;
                    while let (Some(Kind::PathSep), Some(Kind::Ident(next))) = (
                        toks.get(j).map(|t| &t.kind),
                        toks.get(j + 1).map(|t| &t.kind),
                    ) {
                        segments.push(next.clone());
                        j += 2;
                    }
                    if let Some((krate, absolute)) = self.resolve(&segments, &current, false) {
                        found.push(FoundPath {
                            line,
                            krate,
                            absolute,
                            alias: None,
                            is_use: false,
                            at_file_level: inline.is_empty(),
                        });
                    }
                    i = j;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        found
    }

    /// `segments` as a path from its crate's root. A `use` path that starts elsewhere is relative
    /// to the current module (edition 2018+); other code paths that start elsewhere are not ours.
    fn resolve(
        &self,
        segments: &[String],
        current: &[String],
        is_use: bool,
    ) -> Option<(Crate, Vec<String>)> {
        let first = segments.first()?;
        // `self` inside a group (`use a::{self, b}`) names the group's prefix itself.
        let rest = || -> Vec<String> {
            segments[1..]
                .iter()
                .filter(|s| *s != "self")
                .cloned()
                .collect()
        };
        match first.as_str() {
            "crate" => Some((self.krate, rest())),
            "bq_backup" => Some((Crate::Lib, rest())),
            "self" => Some((self.krate, [current, &rest()].concat())),
            "super" => {
                let ups = segments.iter().take_while(|s| *s == "super").count();
                let base = current.get(..current.len().checked_sub(ups)?)?;
                let after: Vec<String> = segments[ups..]
                    .iter()
                    .filter(|s| *s != "self")
                    .cloned()
                    .collect();
                Some((self.krate, [base, &after].concat()))
            }
            _ if is_use => Some((self.krate, [current, segments].concat())),
            _ => None,
        }
    }
}

fn is_path_start(word: &str) -> bool {
    matches!(word, "crate" | "super" | "self" | "bq_backup")
}

/// Parses the use tree starting at `toks[i]` under `prefix`, pushing each leaf path with its line
/// and alias; returns the index after the tree.
fn use_tree(
    toks: &[Token],
    mut i: usize,
    prefix: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, usize, Option<String>)>,
) -> usize {
    let depth = prefix.len();
    loop {
        match toks.get(i).map(|t| &t.kind) {
            Some(Kind::PathSep) => i += 1, // a leading `::`, or the one after a segment
            Some(Kind::Ident(w)) => {
                prefix.push(w.clone());
                i += 1;
                if !matches!(toks.get(i).map(|t| &t.kind), Some(Kind::PathSep)) {
                    let line = toks[i - 1].line;
                    let alias = match (toks.get(i).map(|t| &t.kind), toks.get(i + 1)) {
                        (
                            Some(Kind::Ident(a)),
                            Some(Token {
                                kind: Kind::Ident(b),
                                ..
                            }),
                        ) if a == "as" => {
                            i += 2;
                            Some(b.clone())
                        }
                        _ => None,
                    };
                    out.push((prefix.clone(), line, alias));
                    break;
                }
            }
            Some(Kind::Punct('*')) => {
                prefix.push("*".into());
                out.push((prefix.clone(), toks[i].line, None));
                i += 1;
                break;
            }
            Some(Kind::Punct('{')) => {
                i += 1;
                loop {
                    match toks.get(i).map(|t| &t.kind) {
                        Some(Kind::Punct('}')) => {
                            i += 1;
                            break;
                        }
                        Some(Kind::Punct(',')) => i += 1,
                        None => break,
                        Some(_) => {
                            let mut inner = prefix.clone();
                            let next = use_tree(toks, i, &mut inner, out);
                            // A token the grammar does not expect: step over it rather than loop.
                            i = next.max(i + 1);
                        }
                    }
                }
                break;
            }
            _ => break,
        }
    }
    prefix.truncate(depth);
    i
}

/// `mod name;` declarations of a file (the binary's modules, from `main.rs`).
fn declared_modules(toks: &[Token]) -> BTreeSet<String> {
    toks.windows(3)
        .filter_map(|w| match (&w[0].kind, &w[1].kind, &w[2].kind) {
            (Kind::Ident(m), Kind::Ident(name), Kind::Punct(';')) if m == "mod" => {
                Some(name.clone())
            }
            _ => None,
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Ident(String),
    PathSep,
    Punct(char),
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    line: usize,
}

/// Rust source as identifiers, `::` and punctuation with their lines; comments (doc comments
/// included, nested block comments too), string, byte-string, raw-string and char literals are
/// dropped, and `$crate` reads as `crate`.
fn tokens(src: &str) -> Vec<Token> {
    let c: Vec<char> = src.chars().collect();
    let at = |k: usize| c.get(k).copied().unwrap_or('\0');
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    // Skips a quoted literal whose opening `"` is at `k`; returns the index after it.
    let skip_string = |mut k: usize, line: &mut usize| -> usize {
        k += 1;
        while k < c.len() && c[k] != '"' {
            if c[k] == '\\' {
                k += 1;
            }
            if c.get(k) == Some(&'\n') {
                *line += 1;
            }
            k += 1;
        }
        k + 1
    };
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() || ch == '$' {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut nesting = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    nesting += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    nesting -= 1;
                    i += 2;
                    if nesting == 0 {
                        break;
                    }
                } else {
                    if c[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if ch == '"' {
            i = skip_string(i, &mut line);
        } else if ch == '\'' {
            if at(i + 1) == '\\' {
                // An escaped char literal: '\n', '\'', '\u{7FFF}'.
                i += 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3; // 'x', '{'
            } else {
                i += 1; // a lifetime or label: its name follows as an identifier
            }
        } else if ch.is_alphanumeric() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let hashes = c[i..].iter().take_while(|h| **h == '#').count();
            if matches!(word.as_str(), "r" | "br" | "cr") && at(i + hashes) == '"' {
                // A raw string: ends at `"` followed by as many `#` as it opened with.
                let mut k = i + hashes + 1;
                while k < c.len() {
                    if c[k] == '"' && c[k + 1..].iter().take_while(|h| **h == '#').count() >= hashes
                    {
                        break;
                    }
                    if c[k] == '\n' {
                        line += 1;
                    }
                    k += 1;
                }
                i = k + 1 + hashes;
            } else if matches!(word.as_str(), "b" | "c") && at(i) == '"' {
                i = skip_string(i, &mut line);
            } else if word == "b" && at(i) == '\'' {
                // A byte literal: the `'` branch above skips it next.
            } else if word == "r" && hashes == 1 && (at(i + 1).is_alphabetic() || at(i + 1) == '_')
            {
                i += 1; // a raw identifier, `r#type`: read its name next
            } else {
                out.push(Token {
                    kind: Kind::Ident(word),
                    line,
                });
            }
        } else if ch == ':' && at(i + 1) == ':' {
            out.push(Token {
                kind: Kind::PathSep,
                line,
            });
            i += 2;
        } else {
            out.push(Token {
                kind: Kind::Punct(ch),
                line,
            });
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod checker {
    //! The checker itself: each rule can fail, and what is not code cannot make it fail.

    use std::collections::BTreeMap;

    use super::check;

    /// A small crate: a lib root, the binary, and `extra` files added by each test.
    fn crate_with(extra: &[(&str, &str)]) -> Vec<String> {
        let mut files: BTreeMap<&str, &str> = [
            (
                "lib.rs",
                "pub mod app;\npub mod storage;\npub mod error;\nmod api;\npub use error::{Error as CrateError, ErrorKind};\npub(crate) use api::Router;\n",
            ),
            ("main.rs", "mod cli;\nfn main() { cli::run() }\n"),
            ("cli.rs", "use bq_backup::storage::open;\npub fn run() {}\n"),
            ("app.rs", "use crate::api::Router;\n"),
            ("api/mod.rs", "use crate::{storage, error::Error};\npub struct Router;\n"),
            ("storage/mod.rs", "use crate::error::Error;\nmod open;\n"),
            ("error.rs", "pub struct Error;\npub enum ErrorKind {}\n"),
        ]
        .into_iter()
        .collect();
        files.extend(extra.iter().copied()); // a test's file replaces the default one
        let files: Vec<(String, String)> = files
            .into_iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect();
        check(&files)
    }

    #[test]
    fn a_crate_that_keeps_the_rule_passes() {
        let problems = crate_with(&[(
            "storage/open.rs",
            "use super::Thing;\nuse crate::CrateError;\nfn f() -> crate::error::Error { todo!() }\n",
        )]);
        assert_eq!(problems, Vec::<String>::new());
    }

    #[test]
    fn a_group_import_of_a_module_above_is_named_with_file_line_and_edge() {
        let problems = crate_with(&[(
            "storage/open.rs",
            "use std::fmt;\n\nuse crate::{\n    error::Error,\n    app::Application,\n};\n",
        )]);
        assert_eq!(
            problems,
            [
                "src/storage/open.rs:5: `storage` uses `app`: `app` is in layer \"entry points\", above \"clients\""
            ]
        );
    }

    #[test]
    fn api_may_be_used_by_app_only() {
        let problems = crate_with(&[("storage/open.rs", "pub(crate) use crate::api::Router;\n")]);
        assert_eq!(
            problems,
            ["src/storage/open.rs:1: `storage` uses `api`: only app, config may use `api`"]
        );
    }

    #[test]
    fn paths_in_code_super_chains_and_root_reexports_are_followed() {
        let problems = crate_with(&[
            (
                "storage/open.rs",
                "fn f() {\n    let r = crate::api::Router;\n    let s = super::super::app::X;\n}\n",
            ),
            (
                "error.rs",
                "mod tests {\n    use super::super::Router;\n}\n",
            ),
        ]);
        assert_eq!(
            problems,
            [
                "src/error.rs:2: `error` uses `api`: only app, config may use `api`",
                "src/storage/open.rs:2: `storage` uses `api`: only app, config may use `api`",
                "src/storage/open.rs:3: `storage` uses `app`: `app` is in layer \"entry points\", above \"clients\"",
            ]
        );
    }

    #[test]
    fn comments_doc_comments_and_strings_are_not_code() {
        let problems = crate_with(&[(
            "storage/open.rs",
            concat!(
                "//! See [`crate::app::Application`].\n",
                "/// Not [`crate::api::Router`] either. /* use crate::app::X; */\n",
                "/* nested /* block */ use crate::app::Y; */\n",
                "const A: &str = \"use crate::app::Z;\";\n",
                "const B: &str = r#\"crate::api::Router \"quoted\" \"#;\n",
                "const C: char = '{';\n",
                "fn f<'a>(x: &'a str) -> &'a str { x }\n",
                "use crate::error::Error;\n",
            ),
        )]);
        assert_eq!(problems, Vec::<String>::new());
    }

    #[test]
    fn the_binary_reaches_the_library_through_its_crate_name() {
        let problems = crate_with(&[("error.rs", "pub struct Error;\n")]);
        assert!(problems.is_empty(), "{problems:?}");
        // The binary's modules are entry points: using the library is fine, but not `api`.
        let problems = crate_with(&[("cli.rs", "fn f() { bq_backup::api::Router; }\n")]);
        assert_eq!(
            problems,
            ["src/cli.rs:1: `cli` uses `api`: only app, config may use `api`"]
        );
    }

    #[test]
    fn a_module_in_no_layer_fails_until_it_is_placed() {
        let problems = crate_with(&[("lib.rs", "pub mod gadgets;\n"), ("gadgets.rs", "")]);
        assert_eq!(
            problems,
            ["src/: module `gadgets` is in no layer: add it to LAYERS in tests/it/architecture.rs"]
        );
    }
}
