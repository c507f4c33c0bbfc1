use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde_json::json;

use super::*;
use crate::domain::{parse_backup_request, parse_restore_request};

const BACKUP_ENVELOPE: &str = include_str!("../../../examples/pubsub/backup-envelope.json");
const RESTORE_ENVELOPE: &str = include_str!("../../../examples/pubsub/restore-envelope.json");

/// Requests that must never be taken for envelopes: the Java service's, and a few of ours.
const REQUESTS: [&str; 7] = [
    include_str!("../../../examples/java-compat/backup_request.json"),
    include_str!("../../../examples/java-compat/backup_request_minimal.json"),
    include_str!("../../../examples/java-compat/restore_request.json"),
    include_str!("../../../examples/java-compat/restore_request_minimal.json"),
    include_str!("../../../examples/backup/labels-reason-ttl.json"),
    include_str!("../../../examples/backup/java-compat.json"),
    include_str!("../../../examples/restore/java-legacy-layout.json"),
];

const REQUEST: &str =
    r#"{"bigQuery":{"projectId":"test-project"},"backupStorage":{"uri":"file:///tmp/b"}}"#;

fn envelope(message: Value) -> Vec<u8> {
    json!({ "message": message, "subscription": "projects/p/subscriptions/s" })
        .to_string()
        .into_bytes()
}

fn errors_of(body: &[u8]) -> Vec<FieldError> {
    parse_push_envelope(body).expect_err("the envelope is malformed")
}

fn fields(errors: &[FieldError]) -> Vec<&str> {
    errors.iter().map(|e| e.field.as_str()).collect()
}

#[test]
fn the_example_envelopes_carry_requests_the_parsers_accept() {
    let backup = parse_push_envelope(BACKUP_ENVELOPE.as_bytes()).unwrap();
    assert_eq!(backup.message_id, "2070443601311540");
    assert_eq!(
        backup.subscription.as_deref(),
        Some("projects/my-project/subscriptions/bq-backup-nightly")
    );
    assert_eq!(backup.attributes["trigger"], "nightly");
    assert_eq!(
        backup.publish_time,
        Some("2026-11-23T06:00:00.123Z".parse().unwrap())
    );
    let request = parse_backup_request(&backup.data).unwrap();
    assert_eq!(request.reason.as_deref(), Some("nightly (Pub/Sub)"));

    let restore = parse_push_envelope(RESTORE_ENVELOPE.as_bytes()).unwrap();
    assert_eq!(restore.message_id, "2070443601311541");
    let request = parse_restore_request(&restore.data).unwrap();
    assert_eq!(request.backup_id.as_deref(), Some("latest"));
}

#[test]
fn envelopes_are_recognised_and_requests_never_are() {
    for body in [BACKUP_ENVELOPE, RESTORE_ENVELOPE] {
        assert!(is_push_envelope(&serde_json::from_str(body).unwrap()));
    }
    for body in REQUESTS {
        let value: Value = serde_json::from_str(body).unwrap();
        assert!(!is_push_envelope(&value), "{body}");
    }
    // Partial or broken envelopes still count, so the envelope parser can say what is wrong.
    for body in [
        json!({ "message": "x" }),
        json!({ "subscription": "projects/p/subscriptions/s" }),
        json!({ "message": {} }),
    ] {
        assert!(is_push_envelope(&body), "{body}");
    }
    // A request with a stray `message` field is a request (its parser names the field).
    for body in [
        json!({ "bigQuery": {}, "message": {} }),
        json!({ "restoreStorage": {}, "message": {} }),
        json!({}),
        json!([]),
        json!("message"),
    ] {
        assert!(!is_push_envelope(&body), "{body}");
    }
}

#[test]
fn the_snake_case_id_alone_is_enough_and_padding_is_optional() {
    let data = STANDARD_NO_PAD.encode(r#"{"a":1}"#);
    assert!(!data.ends_with('='), "the test needs unpadded data");
    let message =
        parse_push_envelope(&envelope(json!({ "data": data, "message_id": "42" }))).unwrap();
    assert_eq!(message.message_id, "42");
    assert_eq!(message.data, br#"{"a":1}"#);
    assert!(message.attributes.is_empty());
    assert_eq!(message.publish_time, None);
}

#[test]
fn line_breaks_in_the_data_are_ignored_as_base64_wraps_its_output() {
    let data = STANDARD.encode(REQUEST);
    let wrapped: String = data
        .as_bytes()
        .chunks(20)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    let message =
        parse_push_envelope(&envelope(json!({ "data": wrapped, "messageId": "1" }))).unwrap();
    assert_eq!(message.data, REQUEST.as_bytes());
}

#[test]
fn unknown_fields_of_the_envelope_are_ignored() {
    let body = json!({
        "message": { "data": STANDARD.encode(REQUEST), "messageId": "7", "orderingKey": "k" },
        "subscription": "projects/p/subscriptions/s",
        "deliveryAttempt": 3
    });
    let message = parse_push_envelope(body.to_string().as_bytes()).unwrap();
    assert_eq!(message.message_id, "7");
}

#[test]
fn a_missing_id_and_missing_data_are_both_named() {
    let errors = errors_of(&envelope(json!({ "attributes": {} })));
    assert_eq!(fields(&errors), ["message.messageId", "message.data"]);
}

#[test]
fn data_that_is_not_base64_json_or_an_object_is_named() {
    let cases = [
        (json!("not base64!"), "not base64"),
        (
            json!(STANDARD.encode("not json")),
            "does not decode to JSON",
        ),
        (json!(STANDARD.encode("[1, 2]")), "not an object"),
        (json!(""), "empty"),
        (json!(42), "must be a string"),
        (Value::Null, "is required"),
    ];
    for (data, expected) in cases {
        let errors = errors_of(&envelope(json!({ "data": data, "messageId": "1" })));
        assert_eq!(fields(&errors), ["message.data"], "{data}");
        assert!(
            errors[0].message.contains(expected),
            "{data}: {}",
            errors[0].message
        );
    }
}

#[test]
fn bad_message_ids_are_named() {
    let data = STANDARD.encode(REQUEST);
    let cases = [
        (json!({ "messageId": "" }), "message.messageId", "empty"),
        (json!({ "message_id": "" }), "message.message_id", "empty"),
        (json!({ "messageId": 42 }), "message.messageId", "string"),
        (
            json!({ "messageId": "../../x" }),
            "message.messageId",
            "letters",
        ),
        (
            json!({ "messageId": "a".repeat(129) }),
            "message.messageId",
            "at most",
        ),
        (
            json!({ "messageId": "1", "message_id": "2" }),
            "message.message_id",
            "differs",
        ),
    ];
    for (ids, field, expected) in cases {
        let mut message = ids.clone();
        message["data"] = json!(data);
        let errors = errors_of(&envelope(message));
        assert_eq!(fields(&errors), [field], "{ids}");
        assert!(
            errors[0].message.contains(expected),
            "{ids}: {}",
            errors[0].message
        );
    }
}

#[test]
fn bad_attributes_publish_times_and_subscriptions_are_named() {
    let data = STANDARD.encode(REQUEST);
    let errors = errors_of(&envelope(json!({
        "data": data, "messageId": "1",
        "attributes": { "ok": "x", "n": 1, "with space": true },
        "publishTime": "yesterday"
    })));
    assert_eq!(
        fields(&errors),
        [
            "message.attributes.n",
            "message.attributes[\"with space\"]",
            "message.publishTime"
        ]
    );
    let errors = errors_of(&envelope(
        json!({ "data": data, "messageId": "1", "attributes": [] }),
    ));
    assert_eq!(fields(&errors), ["message.attributes"]);
    let body = json!({ "message": { "data": data, "messageId": "1" }, "subscription": 5 });
    assert_eq!(
        fields(&errors_of(body.to_string().as_bytes())),
        ["subscription"]
    );
}

#[test]
fn a_body_that_is_not_an_envelope_object_is_named() {
    assert_eq!(fields(&errors_of(b"{not json")), ["body"]);
    assert_eq!(fields(&errors_of(b"[]")), ["body"]);
    assert_eq!(fields(&errors_of(br#"{"subscription":"s"}"#)), ["message"]);
    assert_eq!(fields(&errors_of(br#"{"message":"x"}"#)), ["message"]);
}
