//! Reads a table through the BigQuery Storage Read API as Arrow `RecordBatch`es: one read session
//! at a snapshot time, several streams read in parallel, each resumed by the client library from
//! its row offset after transient errors.

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamDecoder;
use chrono::{DateTime, Utc};
use futures::Stream;
use google_cloud_bigquery::model::read_session::{TableModifiers, TableReadOptions};
use google_cloud_bigquery::model::{DataFormat, ReadSession};

use super::client::BigQuery;
use super::error::BigQueryError;
use crate::domain::TableRef;

/// The Arrow IPC end-of-stream marker (continuation token + zero length). Some servers (the
/// emulator) append it to the serialized schema; left in, the decoder would see the stream as
/// finished and silently yield no batches. Real BigQuery does not send it; stripping is harmless.
const IPC_END_OF_STREAM: [u8; 8] = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Columns to read (top-level names or `a.b` paths); empty = all.
    pub selected_fields: Vec<String>,
    /// SQL predicate, e.g. `_PARTITIONDATE = "2026-11-20"`; empty = every row.
    pub row_restriction: String,
    /// Read the table as it was at this instant (time travel); None = now.
    pub snapshot_time: Option<DateTime<Utc>>,
    /// Upper bound on parallel streams; None = the configured default.
    pub max_streams: Option<usize>,
    /// Project billed for the read session; None = the table's project.
    pub billing_project: Option<String>,
}

/// An open read session: its Arrow schema, estimated size, and streams to read.
#[derive(Debug)]
pub struct TableReader {
    client: BigQuery,
    table: TableRef,
    schema: SchemaRef,
    schema_bytes: bytes::Bytes,
    streams: Vec<String>,
    estimated_rows: i64,
    estimated_bytes: i64,
}

/// An open read session as another process needs it to read some of its streams (a shard of a
/// backup): the table, the Arrow schema (an IPC schema message) and the streams' names. A
/// session stays readable for six hours after it was created (BigQuery's limit), from anywhere.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoredSession {
    pub table: TableRef,
    /// The session's Arrow schema, an IPC schema message in base64.
    pub arrow_schema: String,
    pub streams: Vec<String>,
    pub estimated_rows: i64,
    pub estimated_bytes: i64,
}

pub type BatchStream = Pin<Box<dyn Stream<Item = Result<RecordBatch, BigQueryError>> + Send>>;

impl BigQuery {
    /// Opens a read session on `table`. A table with no rows yields a session with no streams.
    pub async fn open_read(
        &self,
        table: &TableRef,
        options: &ReadOptions,
    ) -> Result<TableReader, BigQueryError> {
        let mut read_options =
            TableReadOptions::new().set_selected_fields(options.selected_fields.clone());
        if !options.row_restriction.is_empty() {
            read_options = read_options.set_row_restriction(options.row_restriction.clone());
        }
        let mut session = ReadSession::new()
            .set_table(table.resource_name())
            .set_data_format(DataFormat::Arrow)
            .set_read_options(read_options);
        if let Some(at) = options.snapshot_time {
            let ts =
                google_cloud_wkt::Timestamp::try_from(at).map_err(|e| BigQueryError::Build {
                    client: "snapshot time",
                    source: Box::new(e),
                })?;
            session = session.set_table_modifiers(TableModifiers::new().set_snapshot_time(ts));
        }
        let billing = options
            .billing_project
            .clone()
            .or_else(|| self.inner.config.default_project.clone())
            .unwrap_or_else(|| table.project.clone());
        let max_streams = options
            .max_streams
            .unwrap_or(self.inner.config.read_streams_per_table)
            .max(1);
        let session = self
            .inner
            .read
            .create_read_session()
            .set_parent(format!("projects/{billing}"))
            .set_read_session(session)
            .set_max_stream_count(i32::try_from(max_streams).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| BigQueryError::api(format!("createReadSession({table})"), e))?;

        let mut schema_bytes = session
            .arrow_schema()
            .map(|s| s.serialized_schema.clone())
            .ok_or_else(|| BigQueryError::MissingSchema {
                table: table.to_string(),
            })?;
        if schema_bytes.ends_with(&IPC_END_OF_STREAM) {
            schema_bytes.truncate(schema_bytes.len() - IPC_END_OF_STREAM.len());
        }
        // The schema message has no body; StreamDecoder only materialises it once the next
        // message arrives, so the schema is parsed on its own here.
        let schema =
            arrow::ipc::convert::try_schema_from_ipc_buffer(&schema_bytes).map_err(|source| {
                BigQueryError::Arrow {
                    table: table.to_string(),
                    source,
                }
            })?;
        let schema = Arc::new(schema);
        Ok(TableReader {
            client: self.clone(),
            table: table.clone(),
            schema,
            schema_bytes,
            streams: session.streams.into_iter().map(|s| s.name).collect(),
            estimated_rows: session.estimated_row_count,
            estimated_bytes: session.estimated_total_bytes_scanned,
        })
    }

    /// A session another process opened ([`TableReader::stored`]), ready to read its streams.
    pub fn resume_read(&self, stored: &StoredSession) -> Result<TableReader, BigQueryError> {
        use base64::Engine;
        let table = stored.table.to_string();
        let schema_bytes = base64::engine::general_purpose::STANDARD
            .decode(&stored.arrow_schema)
            .map_err(|e| BigQueryError::Build {
                client: "stored read session",
                source: Box::new(e),
            })?;
        let schema = arrow::ipc::convert::try_schema_from_ipc_buffer(&schema_bytes)
            .map_err(|source| BigQueryError::Arrow { table, source })?;
        Ok(TableReader {
            client: self.clone(),
            table: stored.table.clone(),
            schema: Arc::new(schema),
            schema_bytes: bytes::Bytes::from(schema_bytes),
            streams: stored.streams.clone(),
            estimated_rows: stored.estimated_rows,
            estimated_bytes: stored.estimated_bytes,
        })
    }
}

impl TableReader {
    /// This session, to be read by another process ([`BigQuery::resume_read`]).
    pub fn stored(&self) -> StoredSession {
        use base64::Engine;
        StoredSession {
            table: self.table.clone(),
            arrow_schema: base64::engine::general_purpose::STANDARD.encode(&self.schema_bytes),
            streams: self.streams.clone(),
            estimated_rows: self.estimated_rows,
            estimated_bytes: self.estimated_bytes,
        }
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    pub fn estimated_rows(&self) -> i64 {
        self.estimated_rows
    }

    pub fn estimated_bytes(&self) -> i64 {
        self.estimated_bytes
    }

    /// The batches of stream `index` (0..stream_count), in order. Pulls from the network only as
    /// fast as the consumer polls, so memory stays bounded by one response per stream.
    pub fn stream(&self, index: usize) -> BatchStream {
        let Some(name) = self.streams.get(index).cloned() else {
            return Box::pin(futures::stream::empty());
        };
        let reader = self
            .client
            .inner
            .read
            .read_rows()
            .set_read_stream(name)
            .into_reader();
        let state = StreamState {
            reader,
            decoder: StreamDecoder::new(),
            pending: Buffer::from(Vec::<u8>::new()),
            schema_bytes: Some(self.schema_bytes.clone()),
            table: self.table.to_string(),
        };
        Box::pin(futures::stream::unfold(state, |mut state| async move {
            let item = state.next_batch().await?;
            Some((item, state))
        }))
    }

    /// Every stream's batches, merged as they arrive (order across streams is not kept).
    pub fn batches(&self) -> BatchStream {
        let streams: Vec<BatchStream> = (0..self.streams.len()).map(|i| self.stream(i)).collect();
        Box::pin(futures::stream::select_all(streams))
    }
}

struct StreamState {
    reader: google_cloud_bigquery::read::Reader,
    decoder: StreamDecoder,
    /// Bytes of the last response not decoded yet (a response may hold more than one message).
    pending: Buffer,
    /// Fed to the decoder before the first batch.
    schema_bytes: Option<bytes::Bytes>,
    table: String,
}

impl StreamState {
    async fn next_batch(&mut self) -> Option<Result<RecordBatch, BigQueryError>> {
        if let Some(schema) = self.schema_bytes.take()
            && let Err(source) = self.decoder.decode(&mut Buffer::from(schema))
        {
            return Some(Err(BigQueryError::Arrow {
                table: self.table.clone(),
                source,
            }));
        }
        loop {
            while !self.pending.is_empty() {
                match self.decoder.decode(&mut self.pending) {
                    Ok(Some(batch)) => return Some(Ok(batch)),
                    Ok(None) => {}
                    Err(source) => {
                        return Some(Err(BigQueryError::Arrow {
                            table: self.table.clone(),
                            source,
                        }));
                    }
                }
            }
            let response = match self.reader.next().await? {
                Ok(r) => r,
                Err(e) => {
                    return Some(Err(BigQueryError::api(
                        format!("readRows({})", self.table),
                        e,
                    )));
                }
            };
            if let Some(arrow) = response.arrow_record_batch() {
                self.pending = Buffer::from(arrow.serialized_record_batch.clone());
            }
        }
    }
}
