//! The deployment files (`Dockerfile`, `deploy/cloudrun`, `deploy/k8s`, `deploy/scheduler`) agree
//! with the binary and with each other: every manifest parses, the image and ports match, probes
//! hit `/healthz` and `/readyz`, pods run as non-root, every environment variable is a setting the
//! binary knows and the whole environment is a valid configuration, and the requests the
//! triggers send are valid backup requests. Reads files only: no services needed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use bq_backup::config::{AuthMode, Settings, VARIABLES};
use serde_json::Value;

/// Variables a manifest may set that are not bq-backup settings: read by the Google and cloud
/// client libraries, not by `config.rs`.
const PLATFORM_VARS: &[&str] = &[
    "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GCE_METADATA_HOST",
    "RUST_BACKTRACE",
];
/// Variables `bq-backup worker` reads for its flags (clap's `env`), set by the shard workers'
/// manifests: not settings of the service.
const WORKER_VARS: &[&str] = bq_backup::config::COMMAND_VARIABLES;
/// The Indexed Job of one sharded backup: created per backup (`kubectl create -f`), so it is
/// not among what the kustomization applies.
const INDEXED_JOB: &str = "backup-indexed-job.yaml";
/// BigQuery's read sessions expire this long after they are created.
const READ_SESSION_SECS: u64 = 6 * 60 * 60;
/// Cloud Run sends SIGKILL this long after SIGTERM.
const CLOUD_RUN_KILL_SECS: u64 = 10;
const CONTAINER_PORT: u64 = 8080;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every document of a YAML file (multi-document files included), as JSON values.
fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Every Kubernetes object under deploy/k8s (the kustomization file aside).
fn k8s_objects() -> Vec<Value> {
    yaml_files(&repo().join("deploy/k8s"))
        .iter()
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .flat_map(|p| yaml_documents(p))
        .collect()
}

fn k8s_object<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("deploy/k8s has no {kind} {name}"))
}

fn cloud_run_service() -> Value {
    let docs = yaml_documents(&repo().join("deploy/cloudrun/service.yaml"));
    assert_eq!(docs.len(), 1, "service.yaml holds one Service");
    docs.into_iter().next().unwrap()
}

fn str_of<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} must be a string, is {value}"))
}

fn u64_of(value: &Value, what: &str) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("{what} must be a number, is {value}"))
}

fn only_container(pod_spec: &Value, what: &str) -> Value {
    let containers = pod_spec["containers"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no containers"));
    assert_eq!(containers.len(), 1, "{what}: one container");
    containers[0].clone()
}

/// The `env` list of a container as name → value. Values must be strings: Kubernetes and Cloud
/// Run reject a YAML number or boolean there (write `"8"`, not `8`).
fn env_of(container: &Value, what: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for var in container["env"].as_array().into_iter().flatten() {
        let name = str_of(&var["name"], &format!("{what}: env name")).to_owned();
        let value = str_of(&var["value"], &format!("{what}: env {name}")).to_owned();
        assert!(
            env.insert(name.clone(), value).is_none(),
            "{what}: {name} twice"
        );
    }
    env
}

/// What a container of the Deployment sees: the ConfigMaps of `envFrom`, then `env` (which wins).
fn deployment_env(objects: &[Value], container: &Value) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for source in container["envFrom"].as_array().into_iter().flatten() {
        let name = str_of(&source["configMapRef"]["name"], "envFrom configMapRef");
        let map = k8s_object(objects, "ConfigMap", name);
        for (key, value) in map["data"].as_object().into_iter().flatten() {
            let value = str_of(value, &format!("ConfigMap {name} {key}"));
            env.insert(key.clone(), value.to_owned());
        }
    }
    env.extend(env_of(container, "Deployment bq-backup"));
    env
}

fn assert_known_settings(env: &BTreeMap<String, String>, what: &str) {
    let known: BTreeSet<&str> = VARIABLES
        .iter()
        .map(|v| v.name)
        .chain(PLATFORM_VARS.iter().copied())
        .collect();
    for name in env.keys() {
        assert!(
            known.contains(name.as_str()),
            "{what} sets {name}, which is neither a bq-backup setting (config::VARIABLES) nor a \
             platform variable"
        );
    }
}

/// The binary's own parser accepts the environment as a whole (values, and settings that
/// require each other, such as `AUTH_MODE=google-oidc` and its audience).
fn settings_from(env: &BTreeMap<String, String>, what: &str) -> Settings {
    Settings::from_vars(env.clone()).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// The port a probe or Service names: a number, or the name of a container port.
fn resolve_port(port: &Value, container: &Value, what: &str) -> u64 {
    if let Some(n) = port.as_u64() {
        return n;
    }
    let name = str_of(port, what);
    let found = container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{what}: no container port named {name}"));
    u64_of(&found["containerPort"], what)
}

fn dockerfile_instruction(keyword: &str) -> Vec<String> {
    read("Dockerfile")
        .lines()
        .filter_map(|l| l.trim().strip_prefix(&format!("{keyword} ")))
        .map(|rest| rest.trim().to_owned())
        .collect()
}

fn parse_and_validate_backup_request(body: &str, what: &str) -> bq_backup::domain::BackupSpec {
    let request = bq_backup::domain::parse_backup_request(body.as_bytes())
        .unwrap_or_else(|e| panic!("{what}: {}: {}", e.field, e.message));
    bq_backup::backup::validate_backup_request(request, chrono::Utc::now())
        .unwrap_or_else(|e| panic!("{what}: {e:?}"))
        .spec
}

#[test]
fn every_manifest_parses_and_names_its_kind() {
    let files = yaml_files(&repo().join("deploy"));
    assert!(
        files.len() >= 8,
        "expected the deploy/ manifests, found {files:?}"
    );
    for file in &files {
        let docs = yaml_documents(file);
        assert!(!docs.is_empty(), "{} holds no document", file.display());
        for doc in &docs {
            for field in ["apiVersion", "kind"] {
                assert!(
                    doc[field].is_string(),
                    "{}: a document without {field}",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn the_kustomization_applies_every_kubernetes_file() {
    let dir = repo().join("deploy/k8s");
    let kustomization = &yaml_documents(&dir.join("kustomization.yaml"))[0];
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| str_of(r, "resource").to_owned())
        .collect();
    let present: BTreeSet<String> = yaml_files(&dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|f| f != "kustomization.yaml" && f != INDEXED_JOB)
        .collect();
    assert_eq!(listed, present);
    let namespace = str_of(&kustomization["namespace"], "namespace");
    for object in k8s_objects() {
        if object["kind"] != "Namespace" {
            assert_eq!(
                object["metadata"]["namespace"], namespace,
                "{} {}",
                object["kind"], object["metadata"]["name"]
            );
        }
    }
}

#[test]
fn cloud_run_and_kubernetes_run_the_same_tagged_image() {
    let run = cloud_run_service();
    let run_container = only_container(&run["spec"]["template"]["spec"], "Cloud Run");
    let objects = k8s_objects();
    let deployment = k8s_object(&objects, "Deployment", "bq-backup");
    let k8s_container = only_container(&deployment["spec"]["template"]["spec"], "Deployment");
    let image = str_of(&run_container["image"], "Cloud Run image");
    assert_eq!(k8s_container["image"], image);
    let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or_default();
    assert!(
        !tag.is_empty() && !tag.contains('/') && tag != "latest",
        "pin an image tag: {image}"
    );
    for container in [&run_container, &k8s_container] {
        assert_eq!(container["args"], serde_json::json!(["serve"]));
    }
}

#[test]
fn cloud_run_keeps_the_cpu_allocated_and_allows_hour_long_requests() {
    let service = cloud_run_service();
    assert_eq!(service["apiVersion"], "serving.knative.dev/v1");
    assert_eq!(service["kind"], "Service");
    let template = &service["spec"]["template"];
    let annotations = &template["metadata"]["annotations"];
    // A string: an unquoted `false` is a YAML boolean, which Cloud Run rejects.
    assert_eq!(annotations["run.googleapis.com/cpu-throttling"], "false");
    let min: u64 = str_of(&annotations["autoscaling.knative.dev/minScale"], "minScale")
        .parse()
        .expect("minScale");
    let max: u64 = str_of(&annotations["autoscaling.knative.dev/maxScale"], "maxScale")
        .parse()
        .expect("maxScale");
    assert!(min >= 1 && min <= max, "min {min}, max {max}");

    let spec = &template["spec"];
    assert_eq!(u64_of(&spec["timeoutSeconds"], "timeoutSeconds"), 3600);
    assert!(u64_of(&spec["containerConcurrency"], "containerConcurrency") > 0);
    assert!(
        str_of(&spec["serviceAccountName"], "serviceAccountName")
            .ends_with(".iam.gserviceaccount.com")
    );
    let container = only_container(spec, "Cloud Run");
    let limits = &container["resources"]["limits"];
    assert!(
        limits["cpu"].is_string() && limits["memory"].is_string(),
        "{limits}"
    );
    assert_eq!(
        u64_of(&container["ports"][0]["containerPort"], "containerPort"),
        CONTAINER_PORT
    );
    for probe in ["startupProbe", "livenessProbe"] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], "/healthz", "{probe}");
        assert_eq!(
            resolve_port(&get["port"], &container, probe),
            CONTAINER_PORT
        );
    }
}

#[test]
fn the_cloud_run_environment_is_a_valid_configuration_for_several_instances() {
    let service = cloud_run_service();
    let container = only_container(&service["spec"]["template"]["spec"], "Cloud Run");
    let env = env_of(&container, "Cloud Run");
    assert!(!env.contains_key("PORT"), "Cloud Run sets PORT itself");
    assert_known_settings(&env, "deploy/cloudrun/service.yaml");
    let settings = settings_from(&env, "deploy/cloudrun/service.yaml");
    assert!(
        settings.server.shutdown_grace.as_secs() < CLOUD_RUN_KILL_SECS,
        "BQB_SHUTDOWN_GRACE_SECS must end before Cloud Run's SIGKILL"
    );
    assert_eq!(settings.server.request_timeout.as_secs(), 3600);
    assert!(
        settings.jobs.state_uri.starts_with("gs://"),
        "instances must share BQB_STATE_URI"
    );
    assert_eq!(settings.log.format, bq_backup::telemetry::LogFormat::Json);
    // Cloud Run's IAM check verifies tokens and strips their signature before the container sees
    // them: checking them again in the service would refuse every call.
    let iam_disabled =
        service["metadata"]["annotations"]["run.googleapis.com/invoker-iam-disabled"] == "true";
    assert_eq!(
        settings.auth.mode == AuthMode::GoogleOidc,
        iam_disabled,
        "AUTH_MODE=google-oidc on Cloud Run needs the invoker IAM check off, and the reverse"
    );
}

#[test]
fn the_kubernetes_service_targets_the_container_port() {
    let objects = k8s_objects();
    let deployment = k8s_object(&objects, "Deployment", "bq-backup");
    let pod = &deployment["spec"]["template"];
    let container = only_container(&pod["spec"], "Deployment");
    let service = k8s_object(&objects, "Service", "bq-backup");
    let port = &service["spec"]["ports"][0];
    assert_eq!(
        resolve_port(&port["targetPort"], &container, "Service targetPort"),
        CONTAINER_PORT
    );
    let env = deployment_env(&objects, &container);
    assert_eq!(
        settings_from(&env, "Deployment").server.port as u64,
        CONTAINER_PORT,
        "PORT must be the container port"
    );
    for (key, value) in service["spec"]["selector"].as_object().expect("selector") {
        assert_eq!(&pod["metadata"]["labels"][key], value, "selector {key}");
        assert_eq!(
            &deployment["spec"]["selector"]["matchLabels"][key], value,
            "Deployment selector {key}"
        );
    }
    assert_eq!(
        dockerfile_instruction("EXPOSE"),
        vec![CONTAINER_PORT.to_string()]
    );
    assert_eq!(
        dockerfile_instruction("ENV"),
        vec![format!("PORT={CONTAINER_PORT}")]
    );
}

#[test]
fn kubernetes_probes_use_healthz_and_readyz() {
    let objects = k8s_objects();
    let deployment = k8s_object(&objects, "Deployment", "bq-backup");
    let container = only_container(&deployment["spec"]["template"]["spec"], "Deployment");
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(
            resolve_port(&get["port"], &container, probe),
            CONTAINER_PORT
        );
    }
}

#[test]
fn the_kubernetes_environment_is_a_valid_configuration_that_drains_before_sigkill() {
    let objects = k8s_objects();
    let deployment = k8s_object(&objects, "Deployment", "bq-backup");
    let pod_spec = &deployment["spec"]["template"]["spec"];
    let container = only_container(pod_spec, "Deployment");
    let env = deployment_env(&objects, &container);
    assert_known_settings(&env, "deploy/k8s (Deployment env and ConfigMap)");
    let settings = settings_from(&env, "deploy/k8s");
    assert!(settings.jobs.state_uri.starts_with("gs://"));
    assert_eq!(settings.auth.mode, AuthMode::GoogleOidc);

    let kill_after = u64_of(
        &pod_spec["terminationGracePeriodSeconds"],
        "terminationGracePeriodSeconds",
    );
    let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        pre_stop + settings.server.shutdown_grace.as_secs() < kill_after,
        "preStop {pre_stop} s + BQB_SHUTDOWN_GRACE_SECS {} s must end before SIGKILL at {kill_after} s",
        settings.server.shutdown_grace.as_secs()
    );
}

#[test]
fn every_pod_and_the_image_run_as_non_root() {
    let users = dockerfile_instruction("USER");
    assert_eq!(users, vec!["65532:65532"], "numeric, for runAsNonRoot");
    let from = dockerfile_instruction("FROM");
    assert!(
        from.last()
            .is_some_and(|f| f.starts_with("gcr.io/distroless/cc-debian12")),
        "runtime image: {from:?}"
    );

    let objects = k8s_objects();
    let pods = [
        (
            "Deployment",
            &k8s_object(&objects, "Deployment", "bq-backup")["spec"]["template"]["spec"],
        ),
        (
            "CronJob",
            &k8s_object(&objects, "CronJob", "bq-backup-nightly")["spec"]["jobTemplate"]["spec"]["template"]
                ["spec"],
        ),
    ];
    for (what, pod) in pods {
        let security = &pod["securityContext"];
        assert_eq!(security["runAsNonRoot"], true, "{what}");
        assert!(u64_of(&security["runAsUser"], what) > 0, "{what}");
        let container = only_container(pod, what);
        assert_eq!(
            container["securityContext"]["allowPrivilegeEscalation"], false,
            "{what}"
        );
    }
    let deployment_user = &k8s_object(&objects, "Deployment", "bq-backup")["spec"]["template"]["spec"]
        ["securityContext"]["runAsUser"];
    assert_eq!(deployment_user, 65532, "the image's user");
}

#[test]
fn pods_use_workload_identity_service_accounts() {
    let objects = k8s_objects();
    let allowed = {
        let deployment = k8s_object(&objects, "Deployment", "bq-backup");
        let container = only_container(&deployment["spec"]["template"]["spec"], "Deployment");
        settings_from(&deployment_env(&objects, &container), "deploy/k8s")
            .auth
            .allowed_emails
    };
    let pods = [
        k8s_object(&objects, "Deployment", "bq-backup")["spec"]["template"]["spec"].clone(),
        k8s_object(&objects, "CronJob", "bq-backup-nightly")["spec"]["jobTemplate"]["spec"]
            ["template"]["spec"]
            .clone(),
    ];
    let mut emails = Vec::new();
    for pod in &pods {
        let name = str_of(&pod["serviceAccountName"], "serviceAccountName");
        let account = k8s_object(&objects, "ServiceAccount", name);
        let email = str_of(
            &account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"],
            "iam.gke.io/gcp-service-account",
        );
        assert!(email.ends_with(".iam.gserviceaccount.com"), "{email}");
        emails.push(email.to_owned());
    }
    assert_ne!(
        emails[0], emails[1],
        "the trigger needs none of the service's roles"
    );
    assert!(
        allowed.contains(&emails[1]),
        "the CronJob's account {} must be in BQB_AUTH_ALLOWED_EMAILS {allowed:?}",
        emails[1]
    );
}

#[test]
fn the_nightly_cronjob_posts_a_valid_waiting_backup_request_to_the_service() {
    let objects = k8s_objects();
    let cronjob = k8s_object(&objects, "CronJob", "bq-backup-nightly");
    assert_eq!(cronjob["spec"]["concurrencyPolicy"], "Forbid");
    let pod = &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let container = only_container(pod, "CronJob");
    let script: String = container["command"]
        .as_array()
        .into_iter()
        .chain(container["args"].as_array())
        .flatten()
        .map(|part| str_of(part, "command").to_owned() + "\n")
        .collect();

    // The URL: http://{service}[.{namespace}[.svc.cluster.local]][:{port}]/api/v1/backup
    let url = regex::Regex::new(r"http://([a-z0-9.-]+)(?::(\d+))?(/[^\s\x22')]*)")
        .unwrap()
        .captures_iter(&script)
        .find(|c| !c[1].starts_with("metadata."))
        .unwrap_or_else(|| panic!("no service URL in the CronJob's command:\n{script}"));
    let service = k8s_object(&objects, "Service", "bq-backup");
    let namespace = str_of(&service["metadata"]["namespace"], "namespace");
    let host = &url[1];
    assert!(
        [
            "bq-backup".to_owned(),
            format!("bq-backup.{namespace}"),
            format!("bq-backup.{namespace}.svc"),
            format!("bq-backup.{namespace}.svc.cluster.local"),
        ]
        .iter()
        .any(|h| h == host),
        "the CronJob calls {host}, not the Service"
    );
    let port = url
        .get(2)
        .map_or(80, |p| p.as_str().parse::<u64>().unwrap());
    assert_eq!(
        port,
        u64_of(&service["spec"]["ports"][0]["port"], "Service port")
    );
    assert_eq!(&url[3], "/api/v1/backup");

    // Its token's audience is the one the service accepts.
    let deployment = k8s_object(&objects, "Deployment", "bq-backup");
    let app = only_container(&deployment["spec"]["template"]["spec"], "Deployment");
    let settings = settings_from(&deployment_env(&objects, &app), "deploy/k8s");
    let audience = regex::Regex::new(r"audience='([^']+)'")
        .unwrap()
        .captures(&script)
        .expect("the CronJob names its token audience");
    assert!(settings.auth.audiences.contains(&audience[1].to_owned()));

    // The body: `--data-binary @{file}` from a mounted ConfigMap.
    let file = regex::Regex::new(r"--data-binary @(\S+)")
        .unwrap()
        .captures(&script)
        .expect("the CronJob posts a file")[1]
        .to_owned();
    let (dir, key) = file.rsplit_once('/').unwrap();
    let mount = container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["mountPath"] == dir)
        .unwrap_or_else(|| panic!("nothing mounted at {dir}"));
    let volume = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == mount["name"])
        .expect("the mounted volume");
    let map_name = str_of(&volume["configMap"]["name"], "volume configMap");
    let body = str_of(
        &k8s_object(&objects, "ConfigMap", map_name)["data"][key],
        "request body",
    );
    let spec = parse_and_validate_backup_request(body, "the nightly CronJob's request");
    assert!(
        spec.wait,
        "the CronJob's outcome must be the backup's: send \"wait\": true"
    );
}

#[test]
fn the_cloud_scheduler_request_is_a_valid_backup_request() {
    let body = read("deploy/scheduler/backup-request.json");
    let spec = parse_and_validate_backup_request(&body, "deploy/scheduler/backup-request.json");
    // Cloud Scheduler gives up on an HTTP call after at most 30 minutes: take the 202.
    assert!(!spec.wait);
    let setup = read("deploy/scheduler/setup.sh");
    assert!(setup.contains("backup-request.json"));
    for flag in [
        "--oidc-service-account-email",
        "--oidc-token-audience",
        "--push-auth-service-account",
        "--push-auth-token-audience",
        "--dead-letter-topic",
    ] {
        assert!(setup.contains(flag), "setup.sh lacks {flag}");
    }
}

/// The environment of a shard worker: its own flags' variables checked apart, the rest a valid
/// configuration of the service's settings.
fn assert_worker_env(mut env: BTreeMap<String, String>, what: &str) -> BTreeMap<String, String> {
    let mut worker = BTreeMap::new();
    for name in WORKER_VARS {
        if let Some(value) = env.remove(*name) {
            worker.insert(name.to_string(), value);
        }
    }
    assert_known_settings(&env, what);
    settings_from(&env, what);
    assert!(
        worker.contains_key("BQB_REPOSITORY"),
        "{what}: the worker needs BQB_REPOSITORY"
    );
    bq_backup::domain::StorageUri::parse(&worker["BQB_REPOSITORY"])
        .unwrap_or_else(|e| panic!("{what}: BQB_REPOSITORY: {e}"));
    worker
}

#[test]
fn the_worker_reads_the_variables_the_shard_manifests_set() {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_bq-backup"))
        .args(["worker", "--help"])
        .output()
        .expect("bq-backup worker --help");
    let help = String::from_utf8_lossy(&help.stdout);
    for name in ["BQB_REPOSITORY", "BQB_BACKUP_ID"] {
        assert!(help.contains(&format!("env: {name}")), "{name} in:\n{help}");
    }
    let engines = bq_backup::backup::shard::SHARD_INDEX_VARIABLES
        .iter()
        .chain(&bq_backup::backup::shard::SHARD_COUNT_VARIABLES)
        .copied()
        .collect::<Vec<_>>();
    for name in [
        "CLOUD_RUN_TASK_INDEX",
        "JOB_COMPLETION_INDEX",
        "BQB_SHARDS",
        "CLOUD_RUN_TASK_COUNT",
    ] {
        assert!(engines.contains(&name), "{name} in {engines:?}");
    }
}

#[test]
fn the_cloud_run_job_runs_workers_as_the_service_within_the_read_sessions_lifetime() {
    let docs = yaml_documents(&repo().join("deploy/cloudrun/job.yaml"));
    assert_eq!(docs.len(), 1, "job.yaml holds one Job");
    let job = &docs[0];
    assert_eq!(job["apiVersion"], "run.googleapis.com/v1");
    assert_eq!(job["kind"], "Job");
    let execution = &job["spec"]["template"]["spec"];
    let tasks = u64_of(&execution["taskCount"], "taskCount");
    assert!((1..=10_000).contains(&tasks), "taskCount {tasks}");
    assert!(u64_of(&execution["parallelism"], "parallelism") <= tasks);
    let task = &execution["template"]["spec"];
    assert!(
        u64_of(&task["maxRetries"], "maxRetries") >= 1,
        "a failed shard is run again"
    );
    assert!(u64_of(&task["timeoutSeconds"], "timeoutSeconds") <= READ_SESSION_SECS);
    let service = cloud_run_service();
    assert_eq!(
        task["serviceAccountName"], service["spec"]["template"]["spec"]["serviceAccountName"],
        "the workers need the service's roles"
    );
    let container = only_container(task, "Cloud Run Job");
    let service_container = only_container(&service["spec"]["template"]["spec"], "Cloud Run");
    assert_eq!(container["image"], service_container["image"]);
    assert_eq!(container["args"], serde_json::json!(["worker"]));
    let worker = assert_worker_env(env_of(&container, "Cloud Run Job"), "Cloud Run Job");
    // The id comes with each execution; the count is Cloud Run's own.
    assert!(!worker.contains_key("BQB_BACKUP_ID") && !worker.contains_key("BQB_SHARDS"));
}

#[test]
fn the_indexed_job_runs_one_worker_per_shard_with_the_services_identity() {
    let docs = yaml_documents(&repo().join("deploy/k8s").join(INDEXED_JOB));
    assert_eq!(docs.len(), 1, "{INDEXED_JOB} holds one Job");
    let job = &docs[0];
    assert_eq!(
        (&job["apiVersion"], &job["kind"]),
        (&serde_json::json!("batch/v1"), &serde_json::json!("Job"))
    );
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    let completions = u64_of(&spec["completions"], "completions");
    assert!(u64_of(&spec["backoffLimitPerIndex"], "backoffLimitPerIndex") >= 1);
    assert!(u64_of(&spec["activeDeadlineSeconds"], "activeDeadlineSeconds") <= READ_SESSION_SECS);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let objects = k8s_objects();
    let deployment = k8s_object(&objects, "Deployment", "bq-backup");
    assert_eq!(
        pod["serviceAccountName"],
        deployment["spec"]["template"]["spec"]["serviceAccountName"]
    );
    let container = only_container(pod, "Indexed Job");
    let service = only_container(&deployment["spec"]["template"]["spec"], "Deployment");
    assert_eq!(container["image"], service["image"]);
    assert_eq!(container["args"], serde_json::json!(["worker"]));
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    let worker = assert_worker_env(deployment_env(&objects, &container), "Indexed Job");
    assert_eq!(
        worker.get("BQB_SHARDS").map(String::as_str),
        Some(completions.to_string().as_str()),
        "BQB_SHARDS is the Job's completions"
    );
    bq_backup::domain::BackupId::parse(worker.get("BQB_BACKUP_ID").expect("BQB_BACKUP_ID"))
        .expect("a backup id");
}

#[test]
fn the_service_account_may_read_its_pod_and_create_the_shards_indexed_job() {
    let objects = k8s_objects();
    let deployment = k8s_object(&objects, "Deployment", "bq-backup");
    let container = only_container(&deployment["spec"]["template"]["spec"], "Deployment");
    let settings = settings_from(&deployment_env(&objects, &container), "deploy/k8s");
    assert!(
        matches!(
            settings.shards.launcher,
            bq_backup::backup::shard::Launcher::Kubernetes { .. }
        ),
        "the GKE deployment launches its shards itself"
    );
    let account = str_of(
        &deployment["spec"]["template"]["spec"]["serviceAccountName"],
        "serviceAccountName",
    );
    let binding = k8s_object(&objects, "RoleBinding", "bq-backup-shards");
    assert_eq!(binding["subjects"][0]["kind"], "ServiceAccount");
    assert_eq!(binding["subjects"][0]["name"], account);
    let role = k8s_object(
        &objects,
        "Role",
        str_of(&binding["roleRef"]["name"], "roleRef.name"),
    );
    let allows = |group: &str, resource: &str, verb: &str| {
        role["rules"].as_array().into_iter().flatten().any(|rule| {
            let has = |field: &str, value: &str| {
                rule[field]
                    .as_array()
                    .is_some_and(|v| v.iter().any(|x| x == value))
            };
            has("apiGroups", group) && has("resources", resource) && has("verbs", verb)
        })
    };
    assert!(allows("", "pods", "get"), "read its own pod");
    assert!(allows("batch", "jobs", "create"), "create the Indexed Job");
}
