//! Exclusive ownership of a name in a store shared by many instances: a compare-and-swap built
//! from create-if-absent writes alone, so that it works the same on every store.
//!
//! A slot is a directory of holder records `{dir}/{epoch:020}.json` (named by
//! [`super::layout::slot_record`]); the holder is whoever wrote
//! the highest epoch. Taking a free slot creates epoch 1; taking over a holder judged dead
//! creates the epoch after the one read. Both are create-if-absent writes of one name, so when
//! many instances race for the same slot exactly one of them wins, and the others see the
//! winner. Conditional overwrites (`PutMode::Update`) would do the same with one object, but
//! object_store's local file system does not implement them, and a backup repository on
//! `file://` needs the same guarantees as one on `gs://`.
//!
//! Every record carries a holder token; a holder only ever refreshes or removes a record that
//! still holds its own token, so a holder that was paused past its staleness and replaced can
//! neither refresh nor delete its successor's record.
//!
//! Depends on nothing but object_store and the key layout.

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::layout::{slot_epoch, slot_record as record_path};
use super::{delete_if_exists, get_if_exists, put_if_absent};

/// The record of the holder of a slot.
#[derive(Debug, Clone)]
pub struct SlotRecord {
    pub epoch: u64,
    pub path: Path,
    pub body: Bytes,
}

/// The epochs recorded in `dir`, lowest first.
async fn epochs(os: &dyn ObjectStore, dir: &Path) -> Result<Vec<u64>, object_store::Error> {
    let mut epochs: Vec<u64> = os
        .list(Some(dir))
        .try_filter_map(|meta| async move { Ok(slot_epoch(&meta.location)) })
        .try_collect()
        .await?;
    epochs.sort_unstable();
    Ok(epochs)
}

/// The current holder's record, `None` when the slot is free.
pub async fn current(
    os: &dyn ObjectStore,
    dir: &Path,
) -> Result<Option<SlotRecord>, object_store::Error> {
    // A record can be released between the listing and the read: list again then.
    for _ in 0..3 {
        let Some(epoch) = epochs(os, dir).await?.pop() else {
            return Ok(None);
        };
        let path = record_path(dir, epoch);
        if let Some(body) = get_if_exists(os, &path).await? {
            return Ok(Some(SlotRecord { epoch, path, body }));
        }
    }
    Ok(None)
}

/// Takes the slot after `seen` (the record read and judged free or dead; `None` when the slot
/// was free) by creating the next epoch with `body`, which must hold a token unique to the
/// caller. `Some(epoch)` when this caller won; `None` when another caller was first.
pub async fn take(
    os: &dyn ObjectStore,
    dir: &Path,
    seen: Option<&SlotRecord>,
    body: Bytes,
) -> Result<Option<u64>, object_store::Error> {
    let epoch = seen.map_or(1, |r| r.epoch + 1);
    let won = put_if_absent(os, &record_path(dir, epoch), body).await?;
    Ok(won.then_some(epoch))
}

/// Whether `epoch` is still the newest record and still holds `token`.
pub async fn holds(
    os: &dyn ObjectStore,
    dir: &Path,
    epoch: u64,
    token: &str,
) -> Result<bool, object_store::Error> {
    Ok(current(os, dir)
        .await?
        .is_some_and(|r| r.epoch == epoch && contains(&r.body, token)))
}

/// Rewrites the holder's record (a heartbeat) if it still holds the slot; `false` when it lost it.
pub async fn refresh(
    os: &dyn ObjectStore,
    dir: &Path,
    epoch: u64,
    token: &str,
    body: Bytes,
) -> Result<bool, object_store::Error> {
    if !holds(os, dir, epoch, token).await? {
        return Ok(false);
    }
    os.put(&record_path(dir, epoch), PutPayload::from(body))
        .await?;
    Ok(true)
}

/// Releases the slot: removes the holder's record and the superseded records below it. Does
/// nothing when the holder lost the slot (its record then belongs to history or to another).
pub async fn release(
    os: &dyn ObjectStore,
    dir: &Path,
    epoch: u64,
    token: &str,
) -> Result<(), object_store::Error> {
    let own = record_path(dir, epoch);
    if !get_if_exists(os, &own)
        .await?
        .is_some_and(|body| contains(&body, token))
    {
        return Ok(());
    }
    for older in epochs(os, dir).await?.into_iter().filter(|e| *e < epoch) {
        delete_if_exists(os, &record_path(dir, older)).await?;
    }
    delete_if_exists(os, &own).await
}

/// Whether a record's bytes carry `token` (records are small JSON documents).
fn contains(body: &[u8], token: &str) -> bool {
    !token.is_empty() && body.windows(token.len()).any(|w| w == token.as_bytes())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::memory::InMemory;

    use super::*;

    fn body(token: &str) -> Bytes {
        Bytes::from(format!("{{\"holder\":\"{token}\"}}"))
    }

    #[tokio::test]
    async fn many_callers_racing_for_one_dead_holder_leave_exactly_one_winner() {
        for round in 0..50 {
            let os: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
            let dir = Path::from("slot");
            take(os.as_ref(), &dir, None, body("dead"))
                .await
                .unwrap()
                .unwrap();
            let seen = current(os.as_ref(), &dir).await.unwrap().unwrap();
            let racers = (0..8).map(|i| {
                let (os, dir, seen) = (os.clone(), dir.clone(), seen.clone());
                tokio::spawn(async move {
                    take(os.as_ref(), &dir, Some(&seen), body(&format!("r{i}")))
                        .await
                        .unwrap()
                })
            });
            let winners = futures::future::join_all(racers)
                .await
                .into_iter()
                .filter(|r| r.as_ref().unwrap().is_some())
                .count();
            assert_eq!(winners, 1, "round {round}");
        }
    }

    #[tokio::test]
    async fn a_replaced_holder_can_neither_refresh_nor_release_its_successors_record() {
        let os = InMemory::new();
        let dir = Path::from("slot");
        let a = take(&os, &dir, None, body("a")).await.unwrap().unwrap();
        let seen = current(&os, &dir).await.unwrap().unwrap();
        let b = take(&os, &dir, Some(&seen), body("b"))
            .await
            .unwrap()
            .unwrap();
        assert!(!refresh(&os, &dir, a, "a", body("a")).await.unwrap());
        release(&os, &dir, a, "a").await.unwrap();
        assert!(holds(&os, &dir, b, "b").await.unwrap());
        release(&os, &dir, b, "b").await.unwrap();
        assert!(current(&os, &dir).await.unwrap().is_none(), "nothing left");
    }

    #[tokio::test]
    async fn a_holder_whose_epoch_was_reused_after_a_release_sees_it_lost() {
        let os = InMemory::new();
        let dir = Path::from("slot");
        let a = take(&os, &dir, None, body("a")).await.unwrap().unwrap();
        let seen = current(&os, &dir).await.unwrap().unwrap();
        let b = take(&os, &dir, Some(&seen), body("b"))
            .await
            .unwrap()
            .unwrap();
        release(&os, &dir, b, "b").await.unwrap();
        let c = take(&os, &dir, None, body("c")).await.unwrap().unwrap();
        assert_eq!(a, c, "the epoch number came round again");
        assert!(!holds(&os, &dir, a, "a").await.unwrap());
        release(&os, &dir, a, "a").await.unwrap();
        assert!(
            holds(&os, &dir, c, "c").await.unwrap(),
            "c's record survived"
        );
    }
}
