use crate::helpers::{TestServices, spawn_app, spawn_app_with};

#[tokio::test]
async fn healthz_answers_ok() {
    let app = spawn_app().await;
    let resp = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers().contains_key("x-request-id"),
        "every response carries a request id"
    );
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn readyz_is_ready_when_bigquery_answers() {
    let app = spawn_app().await;
    let resp = app.client.get(app.url("/readyz")).send().await.unwrap();
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["bigquery"]["ok"], true);
}

#[tokio::test]
async fn readyz_fails_when_bigquery_is_unreachable() {
    // Port 9 (discard) on loopback: nothing listens, the connection is refused.
    let settings =
        TestServices::get().settings_with(&[("BQB_BIGQUERY_ENDPOINT", "http://127.0.0.1:9")]);
    let app = spawn_app_with(settings).await;
    let resp = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "unready");
    assert_eq!(body["checks"]["bigquery"]["ok"], false);
}

#[tokio::test]
async fn readyz_fails_while_shutting_down_and_the_server_then_stops() {
    let mut app = spawn_app().await;
    app.shutdown.cancel();
    let handle = app.handle.take().unwrap();
    let result = tokio::time::timeout(std::time::Duration::from_secs(15), handle).await;
    assert!(
        matches!(result, Ok(Ok(Ok(())))),
        "the server stops cleanly after shutdown: {result:?}"
    );
}

#[tokio::test]
async fn unknown_routes_get_the_json_error_shape() {
    let app = spawn_app().await;
    let resp = app
        .client
        .get(app.url("/api/v1/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["errorCode"], "RESOURCE_NOT_FOUND");
    assert_eq!(body["path"], "/api/v1/nope");
    assert!(body["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(body["requestId"].as_str().is_some_and(|t| !t.is_empty()));
}

#[tokio::test]
async fn a_wrong_method_is_a_json_405() {
    let app = spawn_app().await;
    let resp = app.client.post(app.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["errorCode"], "METHOD_NOT_ALLOWED");
}

#[tokio::test]
async fn the_request_id_sent_by_the_caller_is_echoed() {
    let app = spawn_app().await;
    let resp = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc-123");
}
