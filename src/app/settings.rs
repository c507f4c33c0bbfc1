//! The server's settings: where `serve` listens, how long a request may take and how large it
//! may be, and how long in-flight requests may finish after a stop signal.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::variables::{Problem, Reader, Source, Variable};

/// Default HTTP port when `PORT` is unset (Cloud Run always sets it).
pub(crate) const DEFAULT_PORT: u16 = 8080;
/// Every interface: a container is reached through its platform's network, never loopback.
pub(crate) const DEFAULT_HOST: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
/// Cloud Run's longest request timeout: a `wait=true` backup may take that long.
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);
pub(crate) const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Cloud Run sends SIGKILL about 10 s after SIGTERM; leave a margin to flush logs and job state.
pub(crate) const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

pub(crate) static PORT: Variable = Variable {
    name: "PORT",
    default: "8080",
    doc: "HTTP port of `bq-backup serve` (Cloud Run sets it).",
};
pub(crate) static HOST: Variable = Variable {
    name: "BQB_HOST",
    default: "0.0.0.0",
    doc: "Address `serve` binds to.",
};
pub(crate) static REQUEST_TIMEOUT_SECS: Variable = Variable {
    name: "BQB_REQUEST_TIMEOUT_SECS",
    default: "3600",
    doc: "Longest an HTTP request may take (a `wait=true` backup included).",
};
pub(crate) static MAX_BODY_BYTES: Variable = Variable {
    name: "BQB_MAX_BODY_BYTES",
    default: "1048576",
    doc: "Largest accepted request body; larger gets 413.",
};
pub(crate) static SHUTDOWN_GRACE_SECS: Variable = Variable {
    name: "BQB_SHUTDOWN_GRACE_SECS",
    default: "8",
    doc: "After SIGTERM/SIGINT, how long in-flight requests may finish before the process exits.",
};

/// How `serve` listens and bounds its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    pub port: u16,
    pub host: IpAddr,
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub shutdown_grace: Duration,
}

impl ServerSettings {
    pub(crate) fn from_source(source: &Source) -> Result<Self, Vec<Problem>> {
        let mut read = Reader::new(source);
        let request_timeout_secs: u64 =
            read.parsed(&REQUEST_TIMEOUT_SECS, DEFAULT_REQUEST_TIMEOUT.as_secs());
        if request_timeout_secs == 0 {
            read.problem(&REQUEST_TIMEOUT_SECS, "must be at least 1");
        }
        let settings = Self {
            port: read.parsed(&PORT, DEFAULT_PORT),
            host: read.parsed(&HOST, DEFAULT_HOST),
            request_timeout: Duration::from_secs(request_timeout_secs.max(1)),
            max_body_bytes: read.positive(&MAX_BODY_BYTES, DEFAULT_MAX_BODY_BYTES),
            shutdown_grace: Duration::from_secs(
                read.parsed(&SHUTDOWN_GRACE_SECS, DEFAULT_SHUTDOWN_GRACE.as_secs()),
            ),
        };
        read.finish(settings)
    }
}
