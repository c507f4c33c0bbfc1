//! Starting the workers of a sharded backup (`BQB_SHARD_LAUNCHER`): with `cloud-run`, one
//! execution of the configured Cloud Run Job (Admin API v2 `jobs.run`, Application Default
//! Credentials) with one task per shard and what the tasks work on in their environment (a
//! backup's id and repository, or a sharded restore's job); Cloud Run gives each task
//! `CLOUD_RUN_TASK_INDEX` and `CLOUD_RUN_TASK_COUNT`.

use serde_json::{Value, json};

use super::settings::{CLOUD_RUN_JOB, Launcher};
use crate::error::{Error, ErrorKind};

/// What the workers of one sharded run are told: its variables (`BQB_BACKUP_ID` and
/// `BQB_REPOSITORY`, or `BQB_RESTORE_JOB`) and how many shards it has; `what` names it in errors
/// (`backup 20261202_101500`).
pub struct Work<'a> {
    pub what: String,
    pub env: Vec<(&'a str, String)>,
    pub shards: u32,
}

/// What starting the workers gave: where to follow them (the Cloud Run operation and execution),
/// or `None` when the service starts nothing.
pub async fn launch(launcher: &Launcher, work: &Work<'_>) -> Result<Option<Value>, Error> {
    match launcher {
        Launcher::None => Ok(None),
        Launcher::CloudRun { job, endpoint } => {
            run_cloud_run_job(endpoint, job, work).await.map(Some)
        }
        Launcher::Kubernetes {
            endpoint,
            namespace,
        } => run_indexed_job(endpoint.as_deref(), namespace.as_deref(), work)
            .await
            .map(Some),
    }
}

/// The body of `jobs.run`: the task count and the variables every task's container gets.
pub fn cloud_run_overrides(env: &[(&str, String)], shards: u32) -> Value {
    let env: Vec<Value> = env
        .iter()
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect();
    json!({
        "overrides": {
            "taskCount": shards,
            "containerOverrides": [{ "env": env }],
        },
    })
}

async fn run_cloud_run_job(endpoint: &str, job: &str, work: &Work<'_>) -> Result<Value, Error> {
    let shards = work.shards;
    let failed = |kind: ErrorKind, message: String| {
        Error::new(
            kind,
            format!(
                "running Cloud Run Job {job} ({}) for the {shards} shards of {} failed: {message}",
                CLOUD_RUN_JOB.name, work.what
            ),
        )
    };
    let url = format!("{}/v2/{job}:run", endpoint.trim_end_matches('/'));
    let mut request = reqwest::Client::new()
        .post(&url)
        .timeout(std::time::Duration::from_secs(60))
        .json(&cloud_run_overrides(&work.env, shards));
    if !endpoint.starts_with("http://") {
        let credentials = google_cloud_auth::credentials::Builder::default()
            .build_access_token_credentials()
            .map_err(|e| {
                failed(
                    ErrorKind::Unavailable,
                    format!("no Google credentials: {e}"),
                )
            })?;
        let token = credentials
            .access_token()
            .await
            .map_err(|e| failed(ErrorKind::Unavailable, format!("no access token: {e}")))?;
        request = request.bearer_auth(token.token);
    }
    let operation = answer(request)
        .await
        .map_err(|(kind, message)| failed(kind, message))?;
    Ok(json!({
        "launcher": "cloud-run",
        "job": job,
        "operation": operation.get("name").cloned().unwrap_or(Value::Null),
        "execution": operation
            .pointer("/metadata/name")
            .cloned()
            .unwrap_or(Value::Null),
        "tasks": shards,
    }))
}

/// The JSON answer to `request`, or what went wrong: a refusal (401/403) is the service's
/// permission; any other error status is the platform's answer to this service's configuration
/// (a wrong job name, namespace or body), never the caller's input.
async fn answer(request: reqwest::RequestBuilder) -> Result<Value, (ErrorKind, String)> {
    let response = request
        .send()
        .await
        .map_err(|e| (ErrorKind::Unavailable, e.to_string()))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let first: String = body.chars().take(300).collect();
        let kind = match status.as_u16() {
            401 | 403 => ErrorKind::PermissionDenied,
            _ => ErrorKind::Upstream,
        };
        return Err((kind, format!("HTTP {status}: {first}")));
    }
    response
        .json()
        .await
        .map_err(|e| (ErrorKind::Upstream, format!("unexpected answer: {e}")))
}

/// Where a pod's service account credentials are mounted.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The Kubernetes API as this pod reaches it.
struct KubernetesApi {
    base: String,
    client: reqwest::Client,
    token: Option<String>,
    namespace: String,
}

impl KubernetesApi {
    /// `endpoint` as given (no credentials over `http://`), or the in-cluster API with the pod's
    /// service account token and CA.
    fn connect(endpoint: Option<&str>, namespace: Option<&str>) -> Result<Self, String> {
        let read = |name: &str| {
            std::fs::read(format!("{SERVICE_ACCOUNT_DIR}/{name}"))
                .map_err(|e| format!("{SERVICE_ACCOUNT_DIR}/{name}: {e} (is this a pod with a service account token?)"))
        };
        let namespace = match namespace {
            Some(ns) => ns.to_string(),
            None => String::from_utf8_lossy(&read("namespace")?)
                .trim()
                .to_string(),
        };
        let timeout = std::time::Duration::from_secs(60);
        if let Some(url) = endpoint.filter(|e| e.starts_with("http://")) {
            return Ok(Self {
                base: url.trim_end_matches('/').to_string(),
                client: reqwest::Client::builder()
                    .timeout(timeout)
                    .build()
                    .map_err(|e| e.to_string())?,
                token: None,
                namespace,
            });
        }
        let base = match endpoint {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => {
                let host = std::env::var("KUBERNETES_SERVICE_HOST")
                    .map_err(|_| "KUBERNETES_SERVICE_HOST is not set: not in a pod".to_string())?;
                let port =
                    std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
                format!("https://{host}:{port}")
            }
        };
        let ca = reqwest::Certificate::from_pem(&read("ca.crt")?).map_err(|e| e.to_string())?;
        let token = String::from_utf8_lossy(&read("token")?).trim().to_string();
        Ok(Self {
            base,
            client: reqwest::Client::builder()
                .timeout(timeout)
                .add_root_certificate(ca)
                .build()
                .map_err(|e| e.to_string())?,
            token: Some(token),
            namespace,
        })
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> Result<Value, (ErrorKind, String)> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        answer(request).await
    }
}

/// The name of this pod: Kubernetes sets the host name to it.
fn pod_name() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
}

async fn run_indexed_job(
    endpoint: Option<&str>,
    namespace: Option<&str>,
    work: &Work<'_>,
) -> Result<Value, Error> {
    let failed = |kind: ErrorKind, message: String| {
        Error::new(
            kind,
            format!(
                "creating the Kubernetes Indexed Job for the {} shards of {} (BQB_SHARD_LAUNCHER=kubernetes) failed: {message}",
                work.shards, work.what
            ),
        )
    };
    let api = KubernetesApi::connect(endpoint, namespace)
        .map_err(|m| failed(ErrorKind::Unavailable, m))?;
    let ns = &api.namespace;
    let pod = pod_name().ok_or_else(|| {
        failed(
            ErrorKind::Unavailable,
            "this pod's name is unknown (HOSTNAME)".into(),
        )
    })?;
    let own = api
        .call(
            api.client
                .get(format!("{}/api/v1/namespaces/{ns}/pods/{pod}", api.base)),
        )
        .await
        .map_err(|(kind, m)| failed(kind, format!("reading this pod ({pod}): {m}")))?;
    let job = indexed_job(&own, work).map_err(|m| failed(ErrorKind::Upstream, m))?;
    let created = api
        .call(
            api.client
                .post(format!("{}/apis/batch/v1/namespaces/{ns}/jobs", api.base))
                .json(&job),
        )
        .await
        .map_err(|(kind, m)| failed(kind, m))?;
    Ok(json!({
        "launcher": "kubernetes",
        "namespace": ns,
        "job": created.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
        "completions": work.shards,
    }))
}

/// The Indexed Job that runs `work`'s shards with what the service's own pod runs with: its
/// image, service account, settings (`env`, `envFrom`), security context, resources and volumes;
/// the container runs `bq-backup worker`, one completion per shard (Kubernetes sets
/// `JOB_COMPLETION_INDEX`; the count is `BQB_SHARDS`), each index retried on its own.
pub fn indexed_job(pod: &Value, work: &Work<'_>) -> Result<Value, String> {
    let spec = &pod["spec"];
    let container = spec["containers"]
        .as_array()
        .and_then(|c| {
            c.iter()
                .find(|c| {
                    c["args"]
                        .as_array()
                        .is_some_and(|a| a.first() == Some(&json!("serve")))
                })
                .or_else(|| c.first())
        })
        .ok_or("the service's pod has no container")?;
    let ours: Vec<String> = work
        .env
        .iter()
        .map(|(name, _)| name.to_string())
        .chain(["BQB_SHARDS".to_string(), "PORT".to_string()])
        .collect();
    let mut env: Vec<Value> = container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            !e["name"]
                .as_str()
                .is_some_and(|n| ours.iter().any(|o| o == n))
        })
        .cloned()
        .collect();
    env.extend(
        work.env
            .iter()
            .map(|(name, value)| json!({ "name": name, "value": value })),
    );
    env.push(json!({ "name": "BQB_SHARDS", "value": work.shards.to_string() }));
    let mut worker = json!({
        "name": "worker",
        "image": container["image"],
        "args": ["worker"],
        "env": env,
    });
    for field in ["envFrom", "resources", "securityContext", "volumeMounts"] {
        if !container[field].is_null() {
            worker[field] = container[field].clone();
        }
    }
    let labels = json!({ "app.kubernetes.io/name": "bq-backup-worker" });
    let mut pod_spec = json!({
        "restartPolicy": "Never",
        // SIGTERM stops a shard, which removes what it wrote before exiting.
        "terminationGracePeriodSeconds": 60,
        "containers": [worker],
    });
    for field in [
        "serviceAccountName",
        "securityContext",
        "volumes",
        "nodeSelector",
        "tolerations",
    ] {
        if !spec[field].is_null() {
            pod_spec[field] = spec[field].clone();
        }
    }
    Ok(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "generateName": "bq-backup-shards-", "labels": labels },
        "spec": {
            "completionMode": "Indexed",
            "completions": work.shards,
            "parallelism": work.shards,
            // Each shard is retried on its own; a worker is idempotent.
            "backoffLimitPerIndex": 3,
            "ttlSecondsAfterFinished": 86_400,
            "template": { "metadata": { "labels": labels }, "spec": pod_spec },
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Value {
        json!({
            "metadata": { "name": "bq-backup-7d9f-abcde" },
            "spec": {
                "serviceAccountName": "bq-backup",
                "securityContext": { "runAsNonRoot": true, "runAsUser": 65532 },
                "volumes": [{ "name": "tmp", "emptyDir": {} }],
                "containers": [{
                    "name": "bq-backup",
                    "image": "registry/bq-backup:1.2.3",
                    "args": ["serve"],
                    "env": [
                        { "name": "PORT", "value": "8080" },
                        { "name": "BQB_PROJECT_ID", "value": "p" },
                        { "name": "BQB_BACKUP_ID", "value": "stale" },
                    ],
                    "envFrom": [{ "configMapRef": { "name": "bq-backup-settings" } }],
                    "resources": { "limits": { "memory": "2Gi" } },
                    "securityContext": { "allowPrivilegeEscalation": false },
                    "volumeMounts": [{ "name": "tmp", "mountPath": "/tmp" }],
                }],
            },
        })
    }

    #[test]
    fn the_indexed_job_runs_workers_with_the_services_image_identity_and_settings() {
        let work = Work {
            what: "backup 20261202_101500".into(),
            env: vec![
                ("BQB_BACKUP_ID", "20261202_101500".into()),
                ("BQB_REPOSITORY", "gs://b/p".into()),
            ],
            shards: 6,
        };
        let job = indexed_job(&pod(), &work).unwrap();
        assert_eq!(job["spec"]["completionMode"], "Indexed");
        assert_eq!(job["spec"]["completions"], 6);
        let pod_spec = &job["spec"]["template"]["spec"];
        assert_eq!(pod_spec["serviceAccountName"], "bq-backup");
        assert_eq!(pod_spec["restartPolicy"], "Never");
        assert_eq!(pod_spec["volumes"], pod()["spec"]["volumes"]);
        let worker = &pod_spec["containers"][0];
        assert_eq!(worker["image"], "registry/bq-backup:1.2.3");
        assert_eq!(worker["args"], json!(["worker"]));
        assert_eq!(worker["envFrom"], pod()["spec"]["containers"][0]["envFrom"]);
        let env: Vec<(String, String)> = worker["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap().to_string(),
                    e["value"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let expected: Vec<(String, String)> = [
            ("BQB_PROJECT_ID", "p"),
            ("BQB_BACKUP_ID", "20261202_101500"),
            ("BQB_REPOSITORY", "gs://b/p"),
            ("BQB_SHARDS", "6"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            env, expected,
            "the service's own work variables and PORT are replaced"
        );
    }
}
