//! Temporary: replaced by the domain branch's `TableRef`/`DatasetRef` on merge.

use std::fmt;

#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct DatasetRef {
    pub project: String,
    pub dataset: String,
}

impl DatasetRef {
    pub fn new(project: impl Into<String>, dataset: impl Into<String>) -> Self {
        Self {
            project: project.into(),
            dataset: dataset.into(),
        }
    }
}

impl fmt::Display for DatasetRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.project, self.dataset)
    }
}

#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct TableRef {
    pub project: String,
    pub dataset: String,
    pub table: String,
}

impl TableRef {
    pub fn new(
        project: impl Into<String>,
        dataset: impl Into<String>,
        table: impl Into<String>,
    ) -> Self {
        Self {
            project: project.into(),
            dataset: dataset.into(),
            table: table.into(),
        }
    }

    pub fn resource_name(&self) -> String {
        format!(
            "projects/{}/datasets/{}/tables/{}",
            self.project, self.dataset, self.table
        )
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.project, self.dataset, self.table)
    }
}

/// Temporary stand-in for the domain branch's `StorageUri`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageScheme {
    Gcs,
    S3,
    Azure,
    File,
    Memory,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageUri {
    pub scheme: StorageScheme,
    pub bucket: Option<String>,
    pub prefix: String,
}

impl StorageUri {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or("must start with gs://, s3://, az://, file:// or memory://")?;
        let scheme = match scheme {
            "gs" => StorageScheme::Gcs,
            "s3" => StorageScheme::S3,
            "az" => StorageScheme::Azure,
            "file" => StorageScheme::File,
            "memory" => StorageScheme::Memory,
            _ => return Err("must start with gs://, s3://, az://, file:// or memory://".into()),
        };
        if scheme == StorageScheme::File {
            return Ok(Self {
                scheme,
                bucket: None,
                prefix: rest.trim_end_matches('/').to_string(),
            });
        }
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err("bucket name missing".into());
        }
        Ok(Self {
            scheme,
            bucket: Some(bucket.to_string()),
            prefix: prefix.trim_matches('/').to_string(),
        })
    }
}

impl fmt::Display for StorageUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            StorageScheme::Gcs => "gs",
            StorageScheme::S3 => "s3",
            StorageScheme::Azure => "az",
            StorageScheme::File => "file",
            StorageScheme::Memory => "memory",
        };
        match &self.bucket {
            Some(b) if self.prefix.is_empty() => write!(f, "{scheme}://{b}"),
            Some(b) => write!(f, "{scheme}://{b}/{}", self.prefix),
            None => write!(f, "{scheme}://{}", self.prefix),
        }
    }
}
