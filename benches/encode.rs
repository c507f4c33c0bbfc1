//! Encode benchmark: how fast [`FileEncoder`] turns a large mixed-type table into each format
//! with its default compression, and how much memory it needs doing so.
//!
//! Not a test (`harness = false`): `scripts/bench-encode.sh` drives it, one process per format,
//! next to DuckDB, pyarrow and fastavro writing the same rows; `cargo test` only smoke-runs it.
//!
//! ```text
//! encode --bench [--rows N] [--batch-rows N] --write-input PATH.parquet   the table, for the others
//! encode --bench [--rows N] [--batch-rows N] --format F [--out PATH] [--threads N]
//!                                                             F only, one JSON line
//! encode --bench [--rows N]                                   every format in turn (`cargo bench`)
//! encode                                                      smoke run (`cargo test --all-targets`),
//!                                                             in clear and encrypted
//! ```
//!
//! As with libtest, `--bench` (which `cargo bench` passes) asks for the measurement. Without it,
//! as `cargo test --all-targets` runs every bench target, the binary ignores its arguments
//! (test filters, libtest flags) and encodes a small table into every format: a check that the
//! benchmark still works, over in a moment even in a debug build.
//!
//! `--columns int64,string` encodes only those columns: where a format's time goes, per type.
//!
//! `--encrypt` encrypts the output with age as a backup to recipients does (one X25519
//! recipient); `--compare-encryption` runs each format twice in the same process, in clear and
//! encrypted, and prints a last line per format with the overhead (README, "Encryption").
//!
//! `--threads N` (default 1) encodes the table as a backup does with N read streams: the batches
//! split into N contiguous parts, each encoded by its own [`FileEncoder`] into its own file
//! (`PATH.0`, `PATH.1`, …), all on a rayon pool of N threads, so that any parallelism inside the
//! encoders stays within N threads too. The figure to compare with another tool at N threads.
//! `seconds` is then the slowest part's encoding time: each thread also generates its own
//! batches, which is not counted (on N free cores the parts run side by side).
//!
//! The table is generated batch by batch from a seeded xorshift, so the same `--rows` gives the
//! same bytes in every process and memory holds one batch at a time, never the table. Only flat
//! types every compared tool writes are used: INT64, FLOAT64, NUMERIC, BOOL, STRING, DATE and
//! TIMESTAMP. Generation is timed apart from encoding: `seconds` is encoding (write, take_output,
//! finish) plus writing the bytes to `--out` (or counting them), which is what the other tools'
//! figures cover too.

use std::error::Error;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int64Array, RecordBatch,
    StringBuilder, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bq_backup::encryption::{Encryptor, Recipients};
use bq_backup::formats::{EncodeOptions, FileEncoder, Format};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use serde_json::json;

// Send + Sync: parts encoded on other threads hand their errors back.
type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

const DEFAULT_ROWS: u64 = 10_000_000;
/// Rows of the smoke run (no `--bench`).
const SMOKE_ROWS: u64 = 10_000;
/// Rows per generated batch: about what one Storage Read API response holds.
const DEFAULT_BATCH_ROWS: usize = 65_536;
/// Seconds since 1970 of 2000-01-01 and 2030-01-01: the TIMESTAMP range.
const TS_FROM: i64 = 946_684_800;
const TS_TO: i64 = 1_893_456_000;
/// Days since 1970 of 2030-01-01: DATEs fall in 1970..2030.
const DATE_TO: u64 = 21_915;
/// One in this many FLOAT64, NUMERIC and STRING values is NULL.
const NULL_EVERY: u64 = 20;
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 _";

struct Args {
    rows: u64,
    batch_rows: usize,
    format: Option<Format>,
    out: Option<PathBuf>,
    write_input: Option<PathBuf>,
    /// Indices of the columns to encode; all when empty.
    columns: Vec<usize>,
    /// Parts encoded in parallel, one encoder and one output file each.
    threads: usize,
    /// Encrypt the output (age) as an encrypted backup does.
    encrypt: bool,
    /// Each format in clear and encrypted, with the overhead.
    compare_encryption: bool,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        rows: DEFAULT_ROWS,
        batch_rows: DEFAULT_BATCH_ROWS,
        format: None,
        out: None,
        write_input: None,
        columns: Vec::new(),
        threads: 1,
        encrypt: false,
        compare_encryption: false,
    };
    if !std::env::args().any(|arg| arg == "--bench") {
        args.rows = SMOKE_ROWS;
        args.compare_encryption = true;
        return Ok(args);
    }
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--rows" => args.rows = value()?.replace('_', "").parse()?,
            "--batch-rows" => args.batch_rows = value()?.parse()?,
            "--threads" => args.threads = value()?.parse()?,
            "--encrypt" => args.encrypt = true,
            "--compare-encryption" => args.compare_encryption = true,
            "--format" => args.format = Some(value()?.parse()?),
            "--out" => args.out = Some(value()?.into()),
            "--write-input" => args.write_input = Some(value()?.into()),
            "--columns" => {
                let all = schema();
                for name in value()?.split(',') {
                    args.columns.push(all.index_of(name)?);
                }
            }
            "--bench" => {}
            other => return Err(format!("unknown argument `{other}`").into()),
        }
    }
    if args.batch_rows == 0 {
        return Err("--batch-rows must be positive".into());
    }
    if args.threads == 0 {
        return Err("--threads must be positive".into());
    }
    Ok(args)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    if let Some(path) = &args.write_input {
        return write_input(&args, path);
    }
    let formats = match args.format {
        Some(format) => vec![format],
        None => Format::ALL.to_vec(),
    };
    for format in formats {
        if !args.compare_encryption {
            encode(&args, format, args.encrypt)?;
            continue;
        }
        let clear = encode(&args, format, false)?;
        let encrypted = encode(&args, format, true)?;
        let line = json!({
            "tool": "bq-backup",
            "format": format.as_str(),
            "rows": args.rows,
            "rows_per_s_clear": clear,
            "rows_per_s_encrypted": encrypted,
            "encryption_overhead_percent": (clear / encrypted - 1.0) * 100.0,
        });
        println!("{line}");
    }
    Ok(())
}

/// xorshift64*: fast, deterministic, and enough for benchmark data (no extra crate).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // Zero is xorshift's fixed point; the odd constant keeps every seed away from it.
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn null(&mut self) -> bool {
        self.below(NULL_EVERY) == 0
    }
}

/// The benchmark table: BigQuery's flat types as the Storage Read API delivers them.
fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("int64", DataType::Int64, true),
        Field::new("float64", DataType::Float64, true),
        Field::new("numeric", DataType::Decimal128(38, 9), true),
        Field::new("bool", DataType::Boolean, true),
        Field::new("string", DataType::Utf8, true),
        Field::new("date", DataType::Date32, true),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
    ]))
}

/// Batch number `index` of the table: `rows` rows, the same for a given index in every run.
fn generate(schema: &SchemaRef, index: u64, rows: usize) -> Result<RecordBatch> {
    let mut rng = Rng::new(index + 1);
    let int64: Int64Array = (0..rows)
        .map(|_| Some(rng.next() as i64 >> rng.below(48)))
        .collect();
    let float64: Float64Array = (0..rows)
        .map(|_| {
            let unit = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
            (!rng.null()).then_some(unit * 2e6 - 1e6)
        })
        .collect();
    // Up to 6 integer and 9 fractional digits, like amounts in a NUMERIC column.
    let numeric = (0..rows)
        .map(|_| {
            let unscaled = (rng.below(2_000_000_000_000_000) as i128) - 1_000_000_000_000_000;
            (!rng.null()).then_some(unscaled)
        })
        .collect::<Decimal128Array>()
        .with_precision_and_scale(38, 9)?;
    let boolean: BooleanArray = (0..rows).map(|_| Some(rng.below(2) == 0)).collect();
    let mut strings = StringBuilder::with_capacity(rows, rows * 20);
    let mut text = Vec::with_capacity(32);
    for _ in 0..rows {
        if rng.null() {
            strings.append_null();
            continue;
        }
        // 10 to 30 characters, 20 on average; one draw gives 10 characters of 6 bits.
        let len = 10 + rng.below(21) as usize;
        text.clear();
        while text.len() < len {
            let mut bits = rng.next();
            for _ in 0..10.min(len - text.len()) {
                text.push(ALPHABET[(bits & 63) as usize]);
                bits >>= 6;
            }
        }
        strings.append_value(std::str::from_utf8(&text)?);
    }
    let date: Date32Array = (0..rows).map(|_| Some(rng.below(DATE_TO) as i32)).collect();
    let span = ((TS_TO - TS_FROM) * 1_000_000) as u64;
    let timestamp = (0..rows)
        .map(|_| Some(TS_FROM * 1_000_000 + rng.below(span) as i64))
        .collect::<TimestampMicrosecondArray>()
        .with_timezone("UTC");
    let columns: Vec<ArrayRef> = vec![
        Arc::new(int64),
        Arc::new(float64),
        Arc::new(numeric),
        Arc::new(boolean),
        Arc::new(strings.finish()),
        Arc::new(date),
        Arc::new(timestamp),
    ];
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// The batches of a `rows`-row table, generated one at a time as the caller asks for them.
fn batches(args: &Args) -> impl Iterator<Item = (u64, usize)> {
    let batch_rows = args.batch_rows as u64;
    let count = args.rows.div_ceil(batch_rows);
    let rows = args.rows;
    (0..count).map(move |i| (i, (rows - i * batch_rows).min(batch_rows) as usize))
}

/// Bytes of Arrow buffers the batch's values occupy (validity, offsets, data): "input bytes"
/// for the MB/s figures, the same whichever tool writes the table.
fn arrow_bytes(batch: &RecordBatch) -> Result<u64> {
    let mut total = 0;
    for column in batch.columns() {
        total += column.to_data().get_slice_memory_size()? as u64;
    }
    Ok(total)
}

/// Writes the table once as uncompressed PARQUET for DuckDB, pyarrow and fastavro to read.
fn write_input(args: &Args, path: &PathBuf) -> Result<()> {
    let schema = schema();
    let props = WriterProperties::builder()
        .set_compression(parquet::basic::Compression::UNCOMPRESSED)
        // Random data gains nothing from dictionaries; plain pages are the cheapest to read back.
        .set_dictionary_enabled(false)
        .build();
    let started = Instant::now();
    let mut writer = ArrowWriter::try_new(File::create(path)?, schema.clone(), Some(props))?;
    let mut input_bytes = 0;
    for (index, rows) in batches(args) {
        let batch = generate(&schema, index, rows)?;
        input_bytes += arrow_bytes(&batch)?;
        writer.write(&batch)?;
    }
    writer.close()?;
    let line = json!({
        "tool": "input",
        "rows": args.rows,
        "input_bytes": input_bytes,
        "file_bytes": std::fs::metadata(path)?.len(),
        "seconds": started.elapsed().as_secs_f64(),
        "path": path,
    });
    println!("{line}");
    Ok(())
}

/// Where encoded bytes go (encrypted first with `--encrypt`): a file, or nowhere (counted only).
struct Sink {
    file: Option<File>,
    bytes: u64,
    encryptor: Option<Encryptor>,
}

impl Sink {
    fn write(&mut self, chunk: &[u8]) -> Result<()> {
        match &mut self.encryptor {
            Some(encryptor) => {
                let sealed = encryptor.write(chunk)?;
                self.put(&sealed)
            }
            None => self.put(chunk),
        }
    }

    fn put(&mut self, chunk: &[u8]) -> Result<()> {
        self.bytes += chunk.len() as u64;
        if let Some(file) = &mut self.file {
            file.write_all(chunk)?;
        }
        Ok(())
    }
}

/// What one encoder did with its part of the table.
#[derive(Default)]
struct Part {
    encoding: Duration,
    generating: Duration,
    input_bytes: u64,
    output_bytes: u64,
}

/// Encodes the table in `format` (encrypted with `encrypt`), prints one JSON line, and returns
/// the rows per second.
fn encode(args: &Args, format: Format, encrypt: bool) -> Result<f64> {
    let all = schema();
    let schema = if args.columns.is_empty() {
        all.clone()
    } else {
        Arc::new(all.project(&args.columns)?)
    };
    let opts = EncodeOptions::new(format);
    let batches: Vec<(u64, usize)> = batches(args).collect();
    let per_part = batches.len().div_ceil(args.threads).max(1);
    // One output per part: the path itself with one thread, PATH.i with several.
    let outs: Vec<Option<PathBuf>> = (0..batches.len().div_ceil(per_part))
        .map(|i| match &args.out {
            Some(path) if args.threads > 1 => {
                Some(PathBuf::from(format!("{}.{i}", path.display())))
            }
            other => other.clone(),
        })
        .collect();

    // Even one thread runs in a pool of its own: rayon work inside the encoders stays on it.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()?;
    let results = std::sync::Mutex::new(Vec::new());
    let recipients = if encrypt {
        let key = age::x25519::Identity::generate().to_public().to_string();
        Some(
            Recipients::parse_at("--encrypt", &[key])
                .map_err(|e| format!("a generated recipient: {e:?}"))?,
        )
    } else {
        None
    };
    let started = Instant::now();
    pool.scope(|scope| {
        for (chunk, out) in batches.chunks(per_part).zip(&outs) {
            let (all, schema, opts, results) = (&all, &schema, &opts, &results);
            let recipients = recipients.as_ref();
            scope.spawn(move |_| {
                let part = encode_part(args, all, schema, opts, chunk, out.as_ref(), recipients);
                // A poisoned lock only means another part panicked: that panic ends the run.
                if let Ok(mut results) = results.lock() {
                    results.push(part);
                }
            });
        }
    });
    let wall = started.elapsed();
    let parts = results
        .into_inner()
        .map_err(|_| "an encoding thread panicked")?;
    let parts = parts.into_iter().collect::<Result<Vec<Part>>>()?;

    // The slowest part's encoding time: what the run took, generation aside.
    let seconds = parts
        .iter()
        .map(|p| p.encoding)
        .max()
        .unwrap_or_default()
        .as_secs_f64();
    let generating: Duration = parts.iter().map(|p| p.generating).sum();
    let input_bytes: u64 = parts.iter().map(|p| p.input_bytes).sum();
    let output_bytes: u64 = parts.iter().map(|p| p.output_bytes).sum();
    let mb = 1e6;
    let line = json!({
        "tool": "bq-backup",
        "format": format.as_str(),
        "compression": opts.compression.as_str(),
        "rows": args.rows,
        "columns": schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(),
        "seconds": seconds,
        "rows_per_s": args.rows as f64 / seconds,
        "input_mb_per_s": input_bytes as f64 / mb / seconds,
        "output_mb_per_s": output_bytes as f64 / mb / seconds,
        "input_bytes": input_bytes,
        "output_bytes": output_bytes,
        "generate_seconds": generating.as_secs_f64(),
        "part_seconds": parts.iter().map(|p| p.encoding.as_secs_f64()).collect::<Vec<_>>(),
        "wall_seconds": wall.as_secs_f64(),
        "peak_rss_mb": peak_rss_mb(),
        "threads": args.threads,
        "files": parts.len(),
        "encrypted": encrypt,
    });
    println!("{line}");
    Ok(args.rows as f64 / seconds)
}

/// Encodes `batches` of the table with one [`FileEncoder`] into `out` (or counts the bytes).
fn encode_part(
    args: &Args,
    all: &SchemaRef,
    schema: &SchemaRef,
    opts: &EncodeOptions,
    batches: &[(u64, usize)],
    out: Option<&PathBuf>,
    recipients: Option<&Recipients>,
) -> Result<Part> {
    let mut sink = Sink {
        file: out.map(File::create).transpose()?,
        bytes: 0,
        encryptor: recipients.map(Encryptor::new).transpose()?,
    };
    let mut part = Part::default();

    let started = Instant::now();
    let mut encoder = FileEncoder::new(schema.clone(), opts)?;
    part.encoding += started.elapsed();
    for &(index, rows) in batches {
        let generated = Instant::now();
        let mut batch = generate(all, index, rows)?;
        if !args.columns.is_empty() {
            batch = batch.project(&args.columns)?;
        }
        part.input_bytes += arrow_bytes(&batch)?;
        let encoded = Instant::now();
        part.generating += encoded - generated;
        encoder.write(&batch)?;
        for chunk in encoder.take_output() {
            sink.write(&chunk)?;
        }
        part.encoding += encoded.elapsed();
    }
    let finished = Instant::now();
    for chunk in encoder.finish()? {
        sink.write(&chunk)?;
    }
    if let Some(encryptor) = sink.encryptor.take() {
        let last = encryptor.finish()?;
        sink.put(&last)?;
    }
    if let Some(file) = &mut sink.file {
        file.flush()?;
    }
    part.encoding += finished.elapsed();
    part.output_bytes = sink.bytes;
    Ok(part)
}

/// The process's peak resident set (VmHWM) in MB, or null where /proc is not available.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024.0 / 1e6)
}
