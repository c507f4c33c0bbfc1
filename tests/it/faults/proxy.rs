//! The fault proxies `scripts/test-services.sh` starts in front of BigQuery's REST port, moto and
//! the GCS shim (`scripts/fault_proxy.py`), idle until a test configures them. They are shared
//! by every test of the binary, so a test holds [`Proxies::lock`] while it uses them; the guard
//! turns every fault off again when dropped, also when the test fails.

use serde_json::{Value, json};
use tokio::sync::{Mutex, MutexGuard};

use crate::helpers::TestServices;

static LOCK: Mutex<()> = Mutex::const_new(());

/// The three proxies' endpoints, from `scripts/test-services.sh env`.
pub struct Proxies {
    pub bigquery: String,
    pub s3: String,
    pub gcs: String,
    _held: MutexGuard<'static, ()>,
}

fn var(name: &str) -> String {
    TestServices::get();
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the services with scripts/test-services.sh (it starts the fault proxies)")
    })
}

impl Proxies {
    /// Waits for the proxies to be free, then holds them (faults off) until dropped.
    pub async fn lock() -> Self {
        let held = LOCK.lock().await;
        let proxies = Self {
            bigquery: var("BQB_TEST_FAULTY_BIGQUERY_ENDPOINT"),
            s3: var("BQB_TEST_FAULTY_S3_ENDPOINT"),
            gcs: var("BQB_TEST_FAULTY_GCS_ENDPOINT"),
            _held: held,
        };
        for endpoint in proxies.all() {
            configure_blocking(endpoint, &quiet());
        }
        proxies
    }

    fn all(&self) -> [&str; 3] {
        [&self.bigquery, &self.s3, &self.gcs]
    }

    /// Sets the faults of the proxy at `endpoint` (`/__faults/config` keys: p503,
    /// p403, pResetBefore, pResetAfter, pDelay, delaySecs, seed, onlyMethods, pathRegex).
    pub async fn configure(&self, endpoint: &str, config: Value) {
        let resp = reqwest::Client::new()
            .post(format!("{endpoint}/__faults/config"))
            .json(&config)
            .send()
            .await
            .expect("the fault proxy answers");
        assert!(resp.status().is_success(), "{config}: {}", resp.status());
        let _ = reqwest::Client::new()
            .post(format!("{endpoint}/__faults/reset-stats"))
            .send()
            .await;
    }

    /// What the proxy at `endpoint` injected since it was configured.
    pub async fn stats(&self, endpoint: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{endpoint}/__faults/stats"))
            .send()
            .await
            .expect("the fault proxy answers")
            .json()
            .await
            .expect("stats are JSON")
    }

    /// Turns every fault of every proxy off.
    pub async fn quiet_all(&self) {
        for endpoint in self.all() {
            self.configure(endpoint, quiet()).await;
        }
    }
}

impl Drop for Proxies {
    fn drop(&mut self) {
        for endpoint in self.all() {
            configure_blocking(endpoint, &quiet());
        }
    }
}

fn quiet() -> Value {
    json!({ "p503": 0.0, "p403": 0.0, "pResetBefore": 0.0, "pResetAfter": 0.0, "pDelay": 0.0,
            "onlyMethods": "", "pathRegex": "" })
}

/// From `Drop`, which cannot await: a plain blocking request on its own thread.
fn configure_blocking(endpoint: &str, config: &Value) {
    let url = format!("{endpoint}/__faults/config");
    let body = config.to_string();
    let _ = std::thread::spawn(move || {
        let Some(rest) = url.strip_prefix("http://") else {
            return;
        };
        let Some((host, path)) = rest.split_once('/') else {
            return;
        };
        use std::io::{Read, Write};
        if let Ok(mut stream) = std::net::TcpStream::connect(host) {
            let request = format!(
                "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(request.as_bytes());
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
        }
    })
    .join();
}
