//! `GET /api/v1/openapi.json` documents exactly the routes the router serves.
//!
//! Three views of the routes must agree: the OpenAPI document, the `.route(…)` calls in
//! `src/api/*.rs` (read from the source, so a route added without documentation fails here),
//! and the list below (what a reviewer reads). Then the running app is probed: every documented
//! operation is served (not "no such route", not 405), and every other method on a routed path
//! is a 405.

use std::collections::BTreeSet;

use regex::Regex;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

/// Every operation of the API, as documented (`{id}:verify` is a custom method on `{id}`).
const DOCUMENTED: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/openapi.json"),
    ("POST", "/api/v1/backup"),
    ("POST", "/api/v1/restore"),
    ("POST", "/api/v1/recover"),
    ("GET", "/api/v1/jobs"),
    ("GET", "/api/v1/jobs/{id}"),
    ("DELETE", "/api/v1/jobs/{id}"),
    ("GET", "/api/v1/schedules"),
    ("GET", "/api/v1/backups"),
    ("POST", "/api/v1/backups:prune"),
    ("GET", "/api/v1/backups/{id}"),
    ("DELETE", "/api/v1/backups/{id}"),
    ("POST", "/api/v1/backups/{id}:verify"),
    ("POST", "/api/v1/backups/{id}:copy"),
];

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];

type Operations = BTreeSet<(String, String)>;

async fn fetch_spec(app: &TestApp) -> Value {
    let resp = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    resp.json().await.expect("the document is JSON")
}

fn spec_operations(spec: &Value) -> Operations {
    let mut ops = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("paths is an object") {
        for (method, _) in item.as_object().expect("a path item is an object") {
            let method = method.to_ascii_uppercase();
            if METHODS.contains(&method.as_str()) {
                ops.insert((method, path.clone()));
            }
        }
    }
    ops
}

/// `/api/v1/backups/{id}:verify` is served by the `{id}` route (the handler reads the suffix).
fn router_path(documented: &str) -> String {
    Regex::new(r"\}:[A-Za-z]+$")
        .unwrap()
        .replace(documented, "}")
        .into_owned()
}

/// The `.route("path", get(…).post(…))` calls in `src/api/*.rs`, read from the source.
fn routes_in_source() -> Operations {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let method = Regex::new(r"(?:^|[^A-Za-z0-9_:])(get|post|put|delete|patch)\s*\(").unwrap();
    let literal = Regex::new(r#"^\s*"([^"]*)""#).unwrap();
    let mut ops = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        assert!(
            !source.contains(".nest("),
            "{}: nested routers are not understood by this test; extend `routes_in_source`",
            path.display()
        );
        for (start, _) in source.match_indices(".route(") {
            let args = &source[start + ".route(".len()..];
            let route = literal.captures(args).unwrap_or_else(|| {
                panic!("{}: a route path that is not a literal", path.display())
            })[1]
                .to_string();
            // The arguments end at the parenthesis that closes `.route(`.
            let mut depth = 1;
            let end = args
                .char_indices()
                .find_map(|(i, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    (depth == 0).then_some(i)
                })
                .expect("balanced parentheses");
            let methods: Vec<String> = method
                .captures_iter(&args[..end])
                .map(|c| c[1].to_ascii_uppercase())
                .collect();
            assert!(!methods.is_empty(), "no method found for route {route}");
            for m in methods {
                ops.insert((m, route.clone()));
            }
        }
    }
    ops
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_the_router_serves() {
    let app = spawn_app().await;
    let spec = fetch_spec(&app).await;
    assert!(
        spec["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "OpenAPI 3.x: {}",
        spec["openapi"]
    );
    assert_eq!(spec["info"]["title"], "bq-backup");

    let documented = spec_operations(&spec);
    let listed: Operations = DOCUMENTED
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        documented, listed,
        "the OpenAPI document and this test's list differ"
    );

    let served = routes_in_source();
    let documented_routes: Operations = documented
        .iter()
        .map(|(m, p)| (m.clone(), router_path(p)))
        .collect();
    assert_eq!(
        documented_routes, served,
        "the router (src/api/*.rs) and the OpenAPI document differ: document every route with \
         #[utoipa::path] and list it in api::openapi::ApiDoc"
    );
}

#[tokio::test]
async fn every_documented_operation_is_served_and_no_other_method_is() {
    let app = spawn_app().await;
    let spec = fetch_spec(&app).await;
    let documented = spec_operations(&spec);
    let paths: BTreeSet<String> = documented.iter().map(|(_, p)| p.clone()).collect();
    let routed: Operations = documented
        .iter()
        .map(|(m, p)| (m.clone(), router_path(p)))
        .collect();
    let placeholder = Regex::new(r"\{[^}]+\}").unwrap();
    for path in &paths {
        // Path parameters get a value no resource has; handlers answer 400/404 of their own.
        let concrete = placeholder.replace_all(path, "0").into_owned();
        for method in METHODS {
            let is_documented = documented.contains(&(method.to_string(), path.clone()));
            let resp = app
                .client
                .request(method.parse().unwrap(), app.url(&concrete))
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            let no_route = status == 404 && body["message"] == "no such route";
            if is_documented {
                assert!(
                    status != 405 && !no_route,
                    "{method} {concrete} is documented but not served: {status} {body}"
                );
            } else if router_path(path) == *path
                && !routed.contains(&(method.to_string(), path.clone()))
            {
                // (A custom-method path like `{id}:verify` also matches its `{id}` route.)
                assert_eq!(
                    status, 405,
                    "{method} {concrete} is served but not documented: {body}"
                );
            }
        }
    }
}

#[tokio::test]
async fn each_operation_has_an_id_a_summary_its_parameters_and_the_error_shape() {
    let app = spawn_app().await;
    let spec = fetch_spec(&app).await;
    let mut ids = BTreeSet::new();
    let placeholder = Regex::new(r"\{([^}]+)\}").unwrap();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_default();
            assert!(
                ids.insert(id.to_string()),
                "duplicate operationId `{id}` ({method} {path})"
            );
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{method} {path} has a summary"
            );
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path} lists its responses"
            );
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            for name in placeholder.captures_iter(path).map(|c| c[1].to_string()) {
                assert!(
                    params
                        .iter()
                        .any(|p| p["name"] == name.as_str() && p["in"] == "path"),
                    "{method} {path} declares its path parameter `{name}`"
                );
            }
        }
    }
    // Query parameters callers need are declared where the handler reads them.
    let query = |path: &str, method: &str| -> BTreeSet<String> {
        spec["paths"][path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(query("/api/v1/backup", "post").contains("wait"));
    assert!(query("/api/v1/restore", "post").contains("wait"));
    for name in ["state", "kind", "pageSize", "pageToken"] {
        assert!(query("/api/v1/jobs", "get").contains(name), "{name}");
    }
    for name in ["uri", "pageSize", "pageToken"] {
        assert!(query("/api/v1/backups", "get").contains(name), "{name}");
    }
    assert!(query("/api/v1/backups/{id}:verify", "post").contains("uri"));
    assert!(query("/api/v1/backups/{id}:copy", "post").contains("uri"));
    let codes = |path: &str, method: &str| -> BTreeSet<String> {
        spec["paths"][path][method]["responses"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    for code in ["200", "202", "400", "404", "409", "429"] {
        assert!(codes("/api/v1/backup", "post").contains(code), "{code}");
    }
    assert!(codes("/api/v1/jobs/{id}", "delete").contains("409"));
    for code in ["200", "202", "400", "404", "409"] {
        assert!(
            codes("/api/v1/backups/{id}:copy", "post").contains(code),
            "{code}"
        );
    }

    // The documented error body is the one the service writes.
    let schema = &spec["components"]["schemas"]["ErrorResponse"]["properties"];
    let documented: BTreeSet<String> = schema.as_object().unwrap().keys().cloned().collect();
    let resp = app
        .client
        .get(app.url("/api/v1/backups?pageSize=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    let written: BTreeSet<String> = body.as_object().unwrap().keys().cloned().collect();
    assert_eq!(documented, written, "{body}");
    assert_eq!(
        spec["paths"]["/api/v1/backups"]["get"]["responses"]["400"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/ErrorResponse"
    );
}
