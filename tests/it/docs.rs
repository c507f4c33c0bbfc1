//! The documentation holds together: every relative link of README.md, docs/, examples/ and
//! deploy/ leads to a file that exists and, with `#anchor`, to a heading (or `<a id>`) in it; and
//! the README's documentation index lists every file in docs/. Needs no test services.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Markdown files whose links are checked: the README, and every `.md` under the folders
/// that hold documentation.
fn markdown_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut files = vec![repo().join("README.md")];
    for dir in ["docs", "examples", "deploy"] {
        walk(&repo().join(dir), &mut files);
    }
    files
}

#[test]
fn every_relative_link_in_the_documentation_leads_somewhere() {
    let mut anchors: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    let files = markdown_files();
    assert!(files.len() > 10, "only {files:?}: is docs/ missing?");
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file:?}: {e}"));
        let shown = file
            .strip_prefix(repo())
            .unwrap_or(file)
            .display()
            .to_string();
        for (line, target) in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue; // not ours to check offline
            }
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let resolved = if path.is_empty() {
                file.clone()
            } else {
                file.parent().expect("a file has a folder").join(path)
            };
            if !resolved.exists() {
                problems.push(format!("{shown}:{line}: `{target}`: no such file"));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            if resolved.extension().is_none_or(|e| e != "md") {
                continue; // anchors into other files (source lines on GitHub) are not checked
            }
            let known = anchors.entry(resolved.clone()).or_insert_with(|| {
                let target_text = std::fs::read_to_string(&resolved)
                    .unwrap_or_else(|e| panic!("{resolved:?}: {e}"));
                heading_anchors(&target_text)
            });
            if !known.contains(anchor) {
                problems.push(format!(
                    "{shown}:{line}: `{target}`: no heading with anchor `#{anchor}` there"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_readme_lists_every_document_in_docs() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md exists");
    let linked: BTreeSet<String> = links(&readme).into_iter().map(|(_, t)| t).collect();
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(repo().join("docs")).expect("docs/ exists") {
        let name = entry.expect("docs/ is readable").file_name();
        let name = format!("docs/{}", name.to_string_lossy());
        if name.ends_with(".md") && !linked.contains(&name) {
            missing.push(name);
        }
    }
    missing.sort();
    assert!(
        missing.is_empty(),
        "README.md's documentation index does not link: {missing:?}"
    );
}

/// Every inline link and image target `[text](target)` and reference definition `[x]: target`
/// outside code blocks and code spans, with its line.
fn links(markdown: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (n, raw) in markdown.lines().enumerate() {
        if raw.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let line = without_code_spans(raw);
        let trimmed = line.trim_start();
        if trimmed.starts_with('[')
            && let Some((label, target)) = trimmed.split_once("]: ")
            && !label.contains(']')
        {
            out.push((
                n + 1,
                target.split_whitespace().next().unwrap_or("").to_string(),
            ));
            continue;
        }
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            // The target ends at its closing parenthesis (balanced) or before a title.
            let mut depth = 0;
            let end = after
                .char_indices()
                .find(|(_, c)| match c {
                    '(' => {
                        depth += 1;
                        false
                    }
                    ')' if depth == 0 => true,
                    ')' => {
                        depth -= 1;
                        false
                    }
                    c => c.is_whitespace(),
                })
                .map(|(i, _)| i)
                .unwrap_or(after.len());
            let target = after[..end].trim_start_matches('<').trim_end_matches('>');
            out.push((n + 1, target.to_string()));
            rest = &after[end..];
        }
    }
    out
}

/// The line with every code span (`` `…` ``, ``` `` … `` ```) blanked out.
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let ticks = rest[start..].chars().take_while(|c| *c == '`').count();
        let fence = "`".repeat(ticks);
        let body = &rest[start + ticks..];
        match body.find(&fence) {
            Some(end) => rest = &body[end + ticks..],
            None => {
                // An unmatched backtick is literal text.
                out.push_str(&rest[start..start + ticks]);
                rest = body;
            }
        }
        out.push(' ');
    }
    out.push_str(rest);
    out
}

/// The anchors a Markdown file offers: one per heading (outside code blocks), as GitHub makes
/// them, plus every `<a id="…">` / `<a name="…">`.
fn heading_anchors(markdown: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    let mut used: BTreeMap<String, usize> = BTreeMap::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        for marker in ["<a id=\"", "<a name=\""] {
            let mut rest = line;
            while let Some(at) = rest.find(marker) {
                let after = &rest[at + marker.len()..];
                let end = after.find('"').unwrap_or(after.len());
                anchors.insert(after[..end].to_string());
                rest = &after[end..];
            }
        }
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            let base = slug(&line[hashes..]);
            // GitHub numbers repeated headings: `x`, `x-1`, `x-2`.
            let n = used.entry(base.clone()).or_insert(0);
            let anchor = if *n == 0 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            *n += 1;
            anchors.insert(anchor);
        }
    }
    anchors
}

/// GitHub's heading anchor: the heading's text (link targets dropped), lower case, every
/// character that is not a letter, digit, `-`, `_` or space removed, spaces turned into `-`.
fn slug(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading.trim();
    // `[text](target)` shows as `text`.
    while let Some(open) = rest.find("](") {
        let close = rest[open..].find(')').map_or(rest.len(), |c| open + c + 1);
        text.push_str(&rest[..open]);
        rest = &rest[close..];
    }
    text.push_str(rest);
    text.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[cfg(test)]
mod checker {
    use super::{heading_anchors, links, slug};

    #[test]
    fn anchors_follow_githubs_rules() {
        assert_eq!(slug(" Pub/Sub push"), "pubsub-push");
        assert_eq!(slug(" Why these crates"), "why-these-crates");
        assert_eq!(
            slug(" Encoding (`scripts/bench-encode.sh`, 10,000,000 rows)"),
            "encoding-scriptsbench-encodesh-10000000-rows"
        );
        assert_eq!(slug(" Backup → Request"), "backup--request");
        let anchors = heading_anchors(
            "# A\n## Jobs\n```sh\n# not a heading\n```\n### Jobs\n<a id=\"dependents\"></a>x\n",
        );
        let expected: Vec<&str> = vec!["a", "dependents", "jobs", "jobs-1"];
        assert_eq!(
            anchors.iter().map(String::as_str).collect::<Vec<_>>(),
            expected
        );
    }

    #[test]
    fn links_in_code_are_not_links() {
        let found = links(
            "See [Jobs](http-api.md#jobs) and `[x](nowhere.md)`.\n```\n[y](nowhere.md)\n```\n[ref]: docs/a.md\n![img](a.png \"title\")\n",
        );
        assert_eq!(
            found,
            [
                (1, "http-api.md#jobs".to_string()),
                (5, "docs/a.md".to_string()),
                (6, "a.png".to_string())
            ]
        );
    }
}
