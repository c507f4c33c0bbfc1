//! The checksum a manifest records for each file, computed while the bytes stream by: SHA-256
//! for files this service wrote (STREAM), CRC32C for files BigQuery wrote to gs:// (EXTRACT),
//! taken from Cloud Storage's object metadata so that no byte had to pass through the service
//! when the backup was taken. Verify and restore check whichever one the entry carries.

use sha2::{Digest, Sha256};

use super::manifest::FileEntry;

/// CRC-32C (Castagnoli, iSCSI polynomial): what Cloud Storage computes for every object.
const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// The running checksum of one file, of the algorithm its manifest entry names.
pub enum FileHasher {
    Sha256 {
        hasher: Sha256,
        expected: String,
    },
    Crc32c {
        digest: crc::Digest<'static, u32>,
        expected: String,
    },
}

impl FileHasher {
    /// The hasher `entry` asks for: CRC32C when it records one, else SHA-256.
    pub fn for_entry(entry: &FileEntry) -> Self {
        match &entry.crc32c {
            Some(crc) => Self::Crc32c {
                digest: CRC32C.digest(),
                expected: crc.to_ascii_lowercase(),
            },
            None => Self::Sha256 {
                hasher: Sha256::new(),
                expected: entry.sha256.to_ascii_lowercase(),
            },
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha256 { hasher, .. } => hasher.update(bytes),
            Self::Crc32c { digest, .. } => digest.update(bytes),
        }
    }

    /// `Err` with the finding's words when the bytes do not match the recorded checksum.
    pub fn check(self) -> Result<(), String> {
        let (name, actual, expected) = match self {
            Self::Sha256 { hasher, expected } => {
                ("SHA-256", hex::encode(hasher.finalize()), expected)
            }
            Self::Crc32c { digest, expected } => (
                "CRC32C",
                hex::encode(digest.finalize().to_be_bytes()),
                expected,
            ),
        };
        if actual == expected {
            Ok(())
        } else {
            Err(format!(
                "does not match its {name} checksum in the manifest"
            ))
        }
    }
}

/// CRC32C of `bytes` as the manifest records it (lower-case hex of the big-endian value).
pub fn crc32c_hex(bytes: &[u8]) -> String {
    hex::encode(CRC32C.checksum(bytes).to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sha256: &str, crc32c: Option<&str>) -> FileEntry {
        FileEntry {
            path: "p".into(),
            bytes: 5,
            rows: 1,
            sha256: sha256.into(),
            plaintext_sha256: None,
            crc32c: crc32c.map(str::to_string),
            partition: None,
        }
    }

    #[test]
    fn crc32c_is_the_castagnoli_checksum_cloud_storage_reports() {
        // Cloud Storage (fake-gcs-server too) reports "mnG7TA==" for "hello": 0x9a71bb4c.
        assert_eq!(crc32c_hex(b"hello"), "9a71bb4c");
        // The catalogue's check value of CRC-32C.
        assert_eq!(crc32c_hex(b"123456789"), "e3069283");
    }

    #[test]
    fn a_file_is_checked_with_the_algorithm_its_entry_names() {
        let mut hasher = FileHasher::for_entry(&entry("", Some("9A71BB4C")));
        hasher.update(b"hel");
        hasher.update(b"lo");
        assert_eq!(hasher.check(), Ok(()));
        let mut hasher = FileHasher::for_entry(&entry("", Some("9a71bb4d")));
        hasher.update(b"hello");
        assert!(hasher.check().unwrap_err().contains("CRC32C"));
        let sha = hex::encode(Sha256::digest(b"hello"));
        let mut hasher = FileHasher::for_entry(&entry(&sha, None));
        hasher.update(b"hello");
        assert_eq!(hasher.check(), Ok(()));
        let mut hasher = FileHasher::for_entry(&entry(&sha, None));
        hasher.update(b"hellO");
        assert!(hasher.check().unwrap_err().contains("SHA-256"));
    }
}
