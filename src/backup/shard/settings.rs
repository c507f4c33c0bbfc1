//! How the service starts the workers of a sharded backup or restore once its plan is written:
//! not at all (`none`: they are started by hand, by `gcloud run jobs execute`, or by an Indexed
//! Job created by hand), by running a Cloud Run Job execution with as many tasks as shards
//! (`cloud-run`), or by creating a Kubernetes Indexed Job of the service's own pod
//! (`kubernetes`).

use crate::variables::{Problem, Reader, Source, Variable};

pub(crate) const DEFAULT_CLOUD_RUN_ENDPOINT: &str = "https://run.googleapis.com";
/// Where a pod finds the Kubernetes API (the in-cluster default).
pub(crate) const IN_CLUSTER: &str =
    "(in-cluster: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT)";

pub(crate) static LAUNCHER: Variable = Variable {
    name: "BQB_SHARD_LAUNCHER",
    default: "none",
    doc: "How a sharded backup's or restore's workers are started once the service wrote its plan: `none` (by hand, `gcloud run jobs execute`, an Indexed Job created by hand), `cloud-run` (the service runs an execution of `BQB_SHARD_CLOUD_RUN_JOB` with one task per shard), or `kubernetes` (the service creates an Indexed Job of its own pod's image, identity and settings, one completion per shard).",
};
pub(crate) static CLOUD_RUN_JOB: Variable = Variable {
    name: "BQB_SHARD_CLOUD_RUN_JOB",
    default: "(none)",
    doc: "The Cloud Run Job whose tasks run the shards (`projects/P/locations/L/jobs/NAME`, running `bq-backup worker`: deploy/cloudrun/job.yaml); required with `BQB_SHARD_LAUNCHER=cloud-run`. The service needs `run.jobs.runWithOverrides` on it (roles/run.developer).",
};
pub(crate) static CLOUD_RUN_ENDPOINT: Variable = Variable {
    name: "BQB_CLOUD_RUN_ENDPOINT",
    default: DEFAULT_CLOUD_RUN_ENDPOINT,
    doc: "Cloud Run Admin API endpoint for `BQB_SHARD_LAUNCHER=cloud-run` (Application Default Credentials; none over plain `http://`, for tests).",
};

pub(crate) static KUBERNETES_ENDPOINT: Variable = Variable {
    name: "BQB_KUBERNETES_ENDPOINT",
    default: IN_CLUSTER,
    doc: "Kubernetes API for `BQB_SHARD_LAUNCHER=kubernetes`. In a pod: the in-cluster API with the pod's service account token and CA; the service account needs `get` on pods and `create` on jobs (batch) in its namespace (deploy/k8s/rbac.yaml). An `http://` URL is used without credentials (tests).",
};
pub(crate) static KUBERNETES_NAMESPACE: Variable = Variable {
    name: "BQB_KUBERNETES_NAMESPACE",
    default: "(the pod's own)",
    doc: "Namespace of the Indexed Jobs `BQB_SHARD_LAUNCHER=kubernetes` creates (and of the service's pod); default: the pod's, from its service account.",
};

/// Who starts the workers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Launcher {
    /// Nobody: the plan is written and the job waits for workers started elsewhere.
    #[default]
    None,
    /// An execution of this Cloud Run Job (`projects/P/locations/L/jobs/NAME`), one task per
    /// shard, through the Admin API at `endpoint`.
    CloudRun { job: String, endpoint: String },
    /// A Kubernetes Indexed Job made from the service's own pod, through the API at `endpoint`
    /// (`None`: in-cluster).
    Kubernetes {
        endpoint: Option<String>,
        namespace: Option<String>,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardSettings {
    pub launcher: Launcher,
}

impl ShardSettings {
    pub(crate) fn from_source(source: &Source) -> Result<Self, Vec<Problem>> {
        let mut read = Reader::new(source);
        let endpoint = read.endpoint(&CLOUD_RUN_ENDPOINT, DEFAULT_CLOUD_RUN_ENDPOINT);
        let job = read
            .text(&CLOUD_RUN_JOB)
            .map(str::trim)
            .filter(|t| !t.is_empty());
        if let Some(job) = job
            && !is_job_name(job)
        {
            read.problem(
                &CLOUD_RUN_JOB,
                format!("`{job}` is not a job name (projects/P/locations/L/jobs/NAME)"),
            );
        }
        let kubernetes = read
            .text(&KUBERNETES_ENDPOINT)
            .filter(|t| !t.trim().is_empty())
            .map(|_| read.endpoint(&KUBERNETES_ENDPOINT, "http://127.0.0.1"));
        let namespace = read
            .text(&KUBERNETES_NAMESPACE)
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        let kind = read
            .text(&LAUNCHER)
            .map(|t| t.trim().to_ascii_lowercase())
            .unwrap_or_else(|| "none".into());
        let launcher = match (kind.as_str(), job) {
            ("none", _) => Launcher::None,
            ("cloud-run", Some(job)) => Launcher::CloudRun {
                job: job.to_string(),
                endpoint,
            },
            ("kubernetes", _) => Launcher::Kubernetes {
                endpoint: kubernetes,
                namespace,
            },
            ("cloud-run", None) => {
                read.problem(
                    &LAUNCHER,
                    format!("`cloud-run` needs {} (the job to run)", CLOUD_RUN_JOB.name),
                );
                Launcher::None
            }
            (other, _) => {
                read.problem(
                    &LAUNCHER,
                    format!("`{other}` is not `none`, `cloud-run` or `kubernetes`"),
                );
                Launcher::None
            }
        };
        read.finish(Self { launcher })
    }
}

/// `projects/P/locations/L/jobs/NAME`, each part non-empty and without `/`.
fn is_job_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    matches!(
        parts.as_slice(),
        ["projects", p, "locations", l, "jobs", j] if ![p, l, j].iter().any(|s| s.is_empty())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::variables::read_pairs;

    fn read(pairs: &[(&str, &str)]) -> Result<ShardSettings, String> {
        read_pairs(pairs, ShardSettings::from_source)
    }

    #[test]
    fn no_launcher_by_default() {
        assert_eq!(read(&[]).ok(), Some(ShardSettings::default()));
    }

    #[test]
    fn cloud_run_needs_a_job_name() {
        let job = "projects/p/locations/europe-west1/jobs/bq-backup-worker";
        assert_eq!(
            read(&[
                ("BQB_SHARD_LAUNCHER", "cloud-run"),
                ("BQB_SHARD_CLOUD_RUN_JOB", job)
            ])
            .ok()
            .map(|s| s.launcher),
            Some(Launcher::CloudRun {
                job: job.into(),
                endpoint: DEFAULT_CLOUD_RUN_ENDPOINT.into()
            })
        );
        let missing = read(&[("BQB_SHARD_LAUNCHER", "cloud-run")]).unwrap_err();
        assert!(
            missing.contains("BQB_SHARD_LAUNCHER") && missing.contains("BQB_SHARD_CLOUD_RUN_JOB"),
            "{missing}"
        );
        let bad = read(&[("BQB_SHARD_CLOUD_RUN_JOB", "bq-backup-worker")]).unwrap_err();
        assert!(bad.contains("BQB_SHARD_CLOUD_RUN_JOB"), "{bad}");
        assert_eq!(
            read(&[("BQB_SHARD_LAUNCHER", "kubernetes")])
                .ok()
                .map(|s| s.launcher),
            Some(Launcher::Kubernetes {
                endpoint: None,
                namespace: None
            })
        );
        let unknown = read(&[("BQB_SHARD_LAUNCHER", "slurm")]).unwrap_err();
        assert!(unknown.contains("slurm"), "{unknown}");
    }
}
