//! Tick leases in the state store (`BQB_STATE_URI`), so that one instance runs each tick however
//! many replicas run the same schedules:
//!
//! ```text
//! schedules/{name}/{tick yyyyMMddTHHmmssZ}.json    created (create-if-absent) by the instance
//!                                                  that runs the tick; then updated with the
//!                                                  job it started, or why it could not
//! ```
//!
//! Every instance tries to create the object when a tick is due; the store lets exactly one
//! create succeed (`PutMode::Create`), and the others skip the tick. The newest
//! [`KEEP_CLAIMS`] claims of each schedule are kept, as its recent history.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind};
use crate::storage::versioned::{self, VersionedFile};
use crate::storage::{Store, delete_if_exists, get_if_exists, layout, put_if_absent};

/// Claims kept per schedule; older ones are deleted by the instance that claims a new tick.
pub const KEEP_CLAIMS: usize = 100;

/// One tick's lease, and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claim {
    /// Claims written before this field are version 1.
    #[serde(default = "versioned::version_1")]
    pub version: u32,
    pub schedule: String,
    /// The tick this claim is for (when the cron said to run), UTC.
    pub tick: DateTime<Utc>,
    /// Which instance claimed it: `{HOSTNAME}/{pid}/{random}`.
    pub instance: String,
    pub claimed_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<DateTime<Utc>>,
    /// Why no job was started for this tick.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ClaimError>,
}

impl VersionedFile for Claim {
    const WHAT: &'static str = "schedule claim";
    const VERSION: u32 = 1;
}

impl Claim {
    /// The claim of `schedule`'s `tick` by `instance`, before anything came of it.
    pub fn new(schedule: &str, tick: DateTime<Utc>, instance: &str) -> Self {
        Self {
            version: Self::VERSION,
            schedule: schedule.to_string(),
            tick,
            instance: instance.to_string(),
            claimed_at: Utc::now(),
            job_id: None,
            backup_id: None,
            submitted_at: None,
            error: None,
        }
    }
}

/// Why a claimed tick started no job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimError {
    pub kind: ErrorKind,
    pub message: String,
}

/// The claims of every schedule. Cheap to clone.
#[derive(Clone)]
pub struct Claims {
    store: Store,
}

impl Claims {
    /// Claims kept in `store` (the state store).
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    fn os(&self) -> &std::sync::Arc<dyn ObjectStore> {
        self.store.object_store()
    }

    /// A failed call on the state store: a missing bucket or refused access there is this
    /// service's setup (`BQB_STATE_URI`), never the caller's (see [`Store::attribute`]).
    fn write_error(&self, path: &Path, e: object_store::Error) -> Error {
        (self.store).call_error("writing the state store object", path, e)
    }

    fn read_error(&self, path: &Path, e: object_store::Error) -> Error {
        (self.store).call_error("reading the state store object", path, e)
    }

    /// Creates the claim unless one exists for the same tick: `true` when this call created it
    /// (this instance runs the tick), `false` when another instance was first.
    pub async fn claim(&self, claim: &Claim) -> Result<bool, Error> {
        let path = layout::schedule_claim(&claim.schedule, claim.tick);
        put_if_absent(self.os().as_ref(), &path, payload(claim)?)
            .await
            .map_err(|e| self.write_error(&path, e))
    }

    /// Replaces a claim this instance holds with its outcome.
    pub async fn record(&self, claim: &Claim) -> Result<(), Error> {
        let path = layout::schedule_claim(&claim.schedule, claim.tick);
        self.os()
            .put(&path, PutPayload::from(payload(claim)?))
            .await
            .map_err(|e| self.write_error(&path, e))?;
        Ok(())
    }

    /// The claims' keys of `schedule`, oldest first (the key's time stamp sorts as text).
    async fn keys(&self, schedule: &str) -> Result<Vec<Path>, Error> {
        let dir = layout::schedule_dir(schedule);
        let mut keys: Vec<Path> = self
            .os()
            .list(Some(&dir))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(|e| self.read_error(&dir, e))?;
        keys.retain(|k| layout::schedule_tick_of(k).is_some());
        keys.sort();
        Ok(keys)
    }

    /// The newest claim of `schedule`, if any.
    pub async fn newest(&self, schedule: &str) -> Result<Option<Claim>, Error> {
        let Some(key) = self.keys(schedule).await?.pop() else {
            return Ok(None);
        };
        // None when pruned between the listing and the read: a newer one exists, but this is
        // rare enough to report as none rather than list again.
        let Some(bytes) = get_if_exists(self.os().as_ref(), &key)
            .await
            .map_err(|e| self.read_error(&key, e))?
        else {
            return Ok(None);
        };
        versioned::decode(&bytes)
            .map(Some)
            .map_err(|e| e.into_state_error(&key))
    }

    /// Deletes all but the newest `keep` claims of `schedule`. Failures are logged: an old
    /// claim left behind costs a little listing, nothing more.
    pub async fn prune(&self, schedule: &str, keep: usize) {
        let keys = match self.keys(schedule).await {
            Ok(keys) => keys,
            Err(e) => {
                tracing::warn!(schedule, error = %e, "listing schedule claims failed");
                return;
            }
        };
        let excess = keys.len().saturating_sub(keep);
        for key in &keys[..excess] {
            if let Err(e) = delete_if_exists(self.os().as_ref(), key).await {
                tracing::warn!(schedule, object_key = %key, error = %e, "deleting an old schedule claim failed");
                return;
            }
        }
    }
}

/// A claim as stored. Unique to its instance (`instance` holds a random part), as
/// [`put_if_absent`] requires.
fn payload(claim: &Claim) -> Result<bytes::Bytes, Error> {
    versioned::encode_pretty(claim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::StorageUri;
    use crate::storage::{Access, StorageConfig};

    fn claims() -> Claims {
        let uri = format!("memory://claims-{}", uuid::Uuid::new_v4().simple());
        let store = StorageConfig::default()
            .open_configured(
                &StorageUri::parse(&uri).expect("a memory uri"),
                Access::Write,
            )
            .expect("memory stores open");
        Claims::new(store)
    }

    fn claim(instance: &str, tick: &str) -> Claim {
        Claim::new("nightly", tick.parse().expect("an instant"), instance)
    }

    #[test]
    fn keys_name_the_tick_in_utc() {
        let tick = "2026-03-29T01:00:00Z".parse().unwrap();
        assert_eq!(
            layout::schedule_claim("nightly", tick).as_ref(),
            "schedules/nightly/20260329T010000Z.json"
        );
    }

    #[tokio::test]
    async fn claims_written_before_versioning_still_read_and_unreadable_ones_are_errors() {
        let claims = claims();
        let tick = "2026-03-29T01:00:00Z".parse().unwrap();
        let key = layout::schedule_claim("nightly", tick);
        let old = r#"{"schedule":"nightly","tick":"2026-03-29T01:00:00Z","instance":"a",
            "claimedAt":"2026-03-29T01:00:01Z","jobId":"job-00000000000000b1"}"#;
        claims.os().put(&key, PutPayload::from(old)).await.unwrap();
        let newest = claims.newest("nightly").await.unwrap().unwrap();
        assert_eq!(
            (newest.version, newest.job_id.as_deref()),
            (1, Some("job-00000000000000b1"))
        );
        let bad = r#"{"schedule":"nightly","tick":"2026-03-29T01:00:00Z","instance":"a",
            "claimedAt":"2026-03-29T01:00:01Z","error":{"kind":"GONE","message":"x"}}"#;
        claims.os().put(&key, PutPayload::from(bad)).await.unwrap();
        let err = claims.newest("nightly").await.unwrap_err();
        assert!(err.to_string().contains("at `error.kind`"), "{err}");
        assert!(err.to_string().contains(key.as_ref()), "{err}");
    }

    #[tokio::test]
    async fn only_the_first_claim_of_a_tick_wins() {
        let claims = claims();
        let tick = "2026-03-29T01:00:00Z";
        assert!(claims.claim(&claim("a", tick)).await.unwrap());
        assert!(!claims.claim(&claim("b", tick)).await.unwrap());
        let newest = claims.newest("nightly").await.unwrap().unwrap();
        assert_eq!(newest.instance, "a");
    }

    #[tokio::test]
    async fn the_newest_claim_is_the_latest_tick_and_old_ones_are_pruned() {
        let claims = claims();
        assert_eq!(claims.newest("nightly").await.unwrap(), None);
        for (i, tick) in [
            "2026-03-29T23:00:00Z",
            "2026-03-30T01:00:00Z",
            "2026-03-30T00:00:00Z",
        ]
        .iter()
        .enumerate()
        {
            let mut c = claim("a", tick);
            assert!(claims.claim(&c).await.unwrap());
            c.job_id = Some(format!("job-{i}"));
            claims.record(&c).await.unwrap();
        }
        let newest = claims.newest("nightly").await.unwrap().unwrap();
        assert_eq!(newest.tick.to_rfc3339(), "2026-03-30T01:00:00+00:00");
        assert_eq!(newest.job_id.as_deref(), Some("job-1"));

        claims.prune("nightly", 1).await;
        assert_eq!(claims.keys("nightly").await.unwrap().len(), 1);
        assert_eq!(claims.newest("nightly").await.unwrap(), Some(newest));
    }
}
