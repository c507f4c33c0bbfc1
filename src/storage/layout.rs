//! Key names inside a backup repository (relative to the storage URI):
//!
//! ```text
//! backups/{backupId}/manifest.json                                written last; presence = committed
//! backups/{backupId}/_claim/{epoch}.json                          the backup being written (a lease)
//! backups/{backupId}/_restore-{token}.json                        a restore reading it (a lease)
//! backups/{backupId}/{project}/{dataset}/{table}/part-00000.{ext}
//! jobs/{jobId}.json                                               job state, readable by any instance
//! ```
//!
//! Each name component is one object_store path part: characters that are not allowed in a key
//! (`/`, control characters, non-ASCII, `%`, ...) are percent-encoded, so table names with spaces,
//! dashes or non-ASCII letters always map to exactly one key and back.

use object_store::path::{Path, PathPart};

use crate::domain::{BackupId, TableRef};

pub const BACKUPS: &str = "backups";
pub const MANIFEST: &str = "manifest.json";

/// `backups/{id}`: everything of one backup lives below it.
pub fn backup_dir(id: &BackupId) -> Path {
    Path::from_iter([BACKUPS, &id.to_string()])
}

/// `backups/{id}/_claim`: the records of the claim of a backup being written.
pub const CLAIM: &str = "_claim";

pub fn claim_dir(id: &BackupId) -> Path {
    backup_dir(id).join(CLAIM)
}

pub fn manifest(id: &BackupId) -> Path {
    backup_dir(id).clone().join(MANIFEST)
}

/// `backups/{id}/{project}/{dataset}/{table}`.
pub fn table_dir(id: &BackupId, table: &TableRef) -> Path {
    backup_dir(id)
        .clone()
        .join(PathPart::from(table.project.as_str()))
        .clone()
        .join(PathPart::from(table.dataset.as_str()))
        .clone()
        .join(PathPart::from(table.table.as_str()))
}

/// `backups/{id}/{project}/{dataset}/{table}/part-{index:05}.{extension}`.
pub fn data_file(id: &BackupId, table: &TableRef, index: usize, extension: &str) -> Path {
    table_dir(id, table)
        .clone()
        .join(format!("part-{index:05}.{extension}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_layout() {
        let id = BackupId::parse("20261121_075959").unwrap();
        let t = TableRef::new("p-1", "shop", "orders");
        assert_eq!(
            manifest(&id).as_ref(),
            "backups/20261121_075959/manifest.json"
        );
        assert_eq!(
            data_file(&id, &t, 3, "csv.gz").as_ref(),
            "backups/20261121_075959/p-1/shop/orders/part-00003.csv.gz"
        );
    }

    #[test]
    fn odd_table_names_map_to_one_key_each() {
        let id = BackupId::parse("20261121_075959").unwrap();
        let a = table_dir(&id, &TableRef::new("p", "d", "my table-ü"));
        let b = table_dir(&id, &TableRef::new("p", "d", "my table/ü"));
        assert_ne!(a, b);
        assert_eq!(a.parts().count(), 5, "{a}");
        assert_eq!(
            b.parts().count(),
            5,
            "a slash in a name does not add a level: {b}"
        );
    }
}
