//! Property tests of everything a request body or storage URI goes through before planning, in
//! the order `POST /api/v1/backup` and `/restore` apply it: the Pub/Sub envelope, the request
//! parser, its validation, and the storage allow-list. Fed arbitrary bytes, mutated copies of the
//! requests under `examples/`, and arbitrary URI strings, none may panic, and every error must be
//! of kind `InvalidInput` (a 4xx): bad input is never a 500.

use std::path::Path;
use std::sync::OnceLock;

use chrono::Utc;
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Value};

use super::error::code_and_status;
use super::pubsub;
use crate::backup::validate_backup_request;
use crate::config::Settings;
use crate::domain::{StorageAllowList, StorageUri, parse_backup_request, parse_restore_request};
use crate::error::{Error, ErrorKind};
use crate::storage::StorageConfig;

/// Modest, so that the whole module runs in seconds; no failure files written into the tree.
fn config() -> Config {
    Config {
        cases: 384,
        failure_persistence: None,
        ..Config::default()
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Backup,
    Restore,
}

/// What the API does with `body` before planning; `Err` is what it would answer.
fn accept(kind: Kind, body: &[u8]) -> Result<(), Error> {
    if let Some(message) = pubsub::envelope(body).map_err(|e| e.0)? {
        return accept_request(kind, &message.data);
    }
    accept_request(kind, body)
}

fn accept_request(kind: Kind, body: &[u8]) -> Result<(), Error> {
    let storage = StorageConfig::for_service(&Settings::defaults().storage);
    let (uri, field) = match kind {
        Kind::Backup => {
            let request = parse_backup_request(body)
                .map_err(|f| Error::invalid("not a backup request", vec![f]))?;
            let spec = validate_backup_request(request, Utc::now())?.spec;
            (spec.storage, spec.storage_field)
        }
        Kind::Restore => {
            let request = parse_restore_request(body)
                .map_err(|f| Error::invalid("not a restore request", vec![f]))?;
            let spec = request
                .validate()
                .map_err(|p| Error::invalid("invalid restore request", p))?;
            (spec.storage, spec.storage_field)
        }
    };
    storage.admit(&uri, &field).map_err(Error::from)
}

/// Bad input: a 4xx naming at least one field (or, for a broken envelope, the envelope).
fn assert_input_error(result: Result<(), Error>) -> Result<(), TestCaseError> {
    if let Err(e) = result {
        prop_assert_eq!(e.kind(), ErrorKind::InvalidInput, "{}", e);
        prop_assert!(code_and_status(e.kind()).1.is_client_error());
        prop_assert!(!e.details().is_empty(), "no field named: {}", e);
    }
    Ok(())
}

/// The example requests of one kind (Java-compatible ones included) and its Pub/Sub envelope,
/// read once.
fn examples(kind: Kind) -> &'static [Value] {
    static BACKUP: OnceLock<Vec<Value>> = OnceLock::new();
    static RESTORE: OnceLock<Vec<Value>> = OnceLock::new();
    let (cell, dir, java) = match kind {
        Kind::Backup => (&BACKUP, "backup", "backup_request"),
        Kind::Restore => (&RESTORE, "restore", "restore_request"),
    };
    cell.get_or_init(|| read_examples(dir, java))
}

fn read_examples(dir: &str, java: &str) -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files = Vec::new();
    for (sub, prefix) in [(dir, ""), ("java-compat", java), ("pubsub", dir)] {
        let entries = std::fs::read_dir(root.join(sub)).expect("examples/ is in the repository");
        files.extend(
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let name = p.file_name().unwrap_or_default().to_string_lossy();
                    name.ends_with(".json") && name.starts_with(prefix)
                }),
        );
    }
    files.sort();
    let values: Vec<Value> = files
        .iter()
        .map(|p| {
            serde_json::from_slice(&std::fs::read(p).expect("readable example"))
                .expect("examples are JSON")
        })
        .collect();
    assert!(values.len() >= 5, "too few {dir} examples: {files:?}");
    values
}

/// JSON values a request field might be given by mistake or on purpose.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        tricky_string().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Strings near the edges of what the validators accept.
fn tricky_string() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "",
            " ",
            "gs://",
            "gs://b/..",
            "gs://bucket/%2e%2e/x",
            "file:///",
            "file://..",
            "file:///tmp/../etc",
            "file://./x",
            "memory://",
            "s3://UPPER",
            "az://a--b",
            "AVRO",
            "parquet",
            "CSV",
            "GZIP",
            "none",
            "\t",
            "tab",
            "latest",
            "20261123_060000",
            "99999999_999999",
            "2026-11-23T06:00:00Z",
            "2026-02-30T25:61:61",
            "Europe/Nowhere",
            "WRITE_TRUNCATE",
            "-1",
            "18446744073709551616",
            "NaN",
            "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
            "a\u{0}b",
            "re:(",
            "glob:[",
        ])
        .prop_map(str::to_owned),
        "[a-z0-9_.:/%*-]{0,30}",
    ]
}

/// One edit of a JSON document: replace a value, drop a key, or add one, at a chosen place.
#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, Value),
    Remove(usize),
    Insert(usize, String, Value),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), json_value()).prop_map(|(at, v)| Edit::Replace(at, v)),
        any::<usize>().prop_map(Edit::Remove),
        (any::<usize>(), "[a-zA-Z]{1,16}", json_value())
            .prop_map(|(at, k, v)| Edit::Insert(at, k, v)),
    ]
}

/// Every place in `value` (as JSON pointers), the root first.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                pointers(
                    v,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                pointers(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn apply(value: &mut Value, edit: Edit) {
    let mut all = Vec::new();
    pointers(value, String::new(), &mut all);
    let pick = |at: usize| all[at % all.len()].clone();
    match edit {
        Edit::Replace(at, new) => {
            if let Some(slot) = value.pointer_mut(&pick(at)) {
                *slot = new;
            }
        }
        Edit::Remove(at) => {
            let pointer = pick(at);
            if let Some((parent, key)) = pointer.rsplit_once('/')
                && let Some(Value::Object(map)) = value.pointer_mut(parent)
            {
                map.remove(&key.replace("~1", "/").replace("~0", "~"));
            }
        }
        Edit::Insert(at, key, new) => {
            if let Some(Value::Object(map)) = value.pointer_mut(&pick(at)) {
                map.insert(key, new);
            }
        }
    }
}

/// A byte-level edit of serialized JSON: overwrite, insert or delete at a place, or truncate.
fn mangle(bytes: &mut Vec<u8>, ops: &[(usize, u8, u8)]) {
    for &(at, op, byte) in ops {
        if bytes.is_empty() {
            bytes.push(byte);
            continue;
        }
        let at = at % bytes.len();
        match op % 4 {
            0 => bytes[at] = byte,
            1 => bytes.insert(at, byte),
            2 => {
                bytes.remove(at);
            }
            _ => bytes.truncate(at),
        }
    }
}

/// Re-wraps the request an envelope carries after editing it, so edits reach the inner request.
fn edited(example: &Value, edits: Vec<Edit>) -> Value {
    let mut value = example.clone();
    let inner = value
        .pointer("/message/data")
        .and_then(Value::as_str)
        .and_then(|d| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(d).ok()
        })
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok());
    match inner {
        Some(mut request) => {
            for e in edits {
                apply(&mut request, e);
            }
            use base64::Engine;
            value["message"]["data"] =
                Value::from(base64::engine::general_purpose::STANDARD.encode(request.to_string()));
        }
        None => {
            for e in edits {
                apply(&mut value, e);
            }
        }
    }
    value
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_are_refused_as_input(
        body in prop::collection::vec(any::<u8>(), 0..300),
        restore in any::<bool>(),
    ) {
        let kind = if restore { Kind::Restore } else { Kind::Backup };
        assert_input_error(accept(kind, &body))?;
    }

    #[test]
    fn edited_backup_examples_are_accepted_or_refused_as_input(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        let body = edited(pick.get(examples(Kind::Backup)), edits);
        assert_input_error(accept(Kind::Backup, body.to_string().as_bytes()))?;
    }

    #[test]
    fn edited_restore_examples_are_accepted_or_refused_as_input(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        let body = edited(pick.get(examples(Kind::Restore)), edits);
        assert_input_error(accept(Kind::Restore, body.to_string().as_bytes()))?;
    }

    #[test]
    fn mangled_example_bytes_are_accepted_or_refused_as_input(
        pick in any::<prop::sample::Index>(),
        ops in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6),
        restore in any::<bool>(),
    ) {
        let kind = if restore { Kind::Restore } else { Kind::Backup };
        let mut body = serde_json::to_vec(pick.get(examples(kind))).expect("JSON serializes");
        mangle(&mut body, &ops);
        assert_input_error(accept(kind, &body))?;
    }

    #[test]
    fn storage_uris_parse_to_a_canonical_form_without_dot_segments_or_are_refused(
        text in prop_oneof![
            any::<String>(),
            tricky_string(),
            ("(gs|s3|az|file|memory|GS|ftp)://", "[a-z0-9./%_*-]{0,30}").prop_map(|(s, r)| format!("{s}{r}")),
        ],
    ) {
        if let Ok(uri) = StorageUri::parse(&text) {
            let canonical = uri.to_string();
            prop_assert_eq!(StorageUri::parse(&canonical).ok(), Some(uri.clone()), "{}", canonical);
            for segment in uri.prefix().split('/') {
                let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
                for step in decoded.split(['/', '\\']) {
                    prop_assert!(step != "." && step != "..", "{} kept a dot segment", text);
                }
            }
            let admitted = StorageConfig::for_service(&Settings::defaults().storage)
                .admit(&uri, "uri")
                .map_err(Error::from);
            assert_input_error(admitted)?;
        }
        // A list made of the same text either parses or names its problems; never panics.
        let _ = StorageAllowList::parse(&text);
    }
}
