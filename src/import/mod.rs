//! Files -> flow records -> the workspace. Each file is ingested in one session: a malformed record
//! anywhere aborts the whole file, so the workspace is exactly as before, and the error names the
//! file, the line (or Parquet row) and the field at fault.
//!
//! Records without a batch id get one derived from the file's content hash, so importing the same file
//! twice is a no-op that says so.

pub mod cur;
mod jsonl;
mod vpc_flow_logs;

pub use jsonl::parse_line as parse_jsonl_line;

use crate::model::{FlowRecord, Source};
use crate::store::{IngestReport, Workspace};
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// The file formats `import` reads; the cli maps `--format` onto it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportFormat {
    /// Flow records as JSON lines (docs/data-model.md).
    Jsonl,
    /// Parquet with the columns `egressor export --format parquet` writes.
    Parquet,
    /// AWS VPC Flow Logs: the default v2 text format, or custom formats v3-v5 with a header line.
    VpcFlowLogs,
}

/// A bad record, located precisely enough to fix it.
#[derive(Debug, thiserror::Error)]
pub struct ImportError {
    pub file: PathBuf,
    /// 1-based line (text formats) or row (Parquet).
    pub line: u64,
    pub unit: &'static str,
    /// The field at fault, when one is.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let loc = if self.unit == "line" {
            format!("{}:{}", self.file.display(), self.line)
        } else {
            format!("{} {} {}", self.file.display(), self.unit, self.line)
        };
        match &self.field {
            Some(field) => write!(f, "{loc}: field `{field}`: {}", self.message),
            None => write!(f, "{loc}: {}", self.message),
        }
    }
}

/// The version of `egressor import --output json` (docs/schemas/import.v1.json).
pub const IMPORT_SCHEMA: &str = "egressor.import/v1";

/// What an import did, beyond the ingest itself (rows the format says to skip).
#[derive(Debug, Default, serde::Serialize)]
pub struct ImportSummary {
    pub file: String,
    pub format: String,
    #[serde(flatten)]
    pub ingest: IngestReport,
    /// Lines that carry no flow by definition of the format (VPC `NODATA`, `SKIPDATA`, `REJECT`).
    pub skipped_lines: Vec<(String, u64)>,
    pub warnings: Vec<String>,
}

/// Imports one file; nothing of it is stored unless all of it is valid.
pub fn import_file(ws: &mut Workspace, file: &Path, format: ImportFormat) -> Result<ImportSummary> {
    let default_batch = format!("import-{}", content_hash(file)?);
    let mut summary = ImportSummary {
        file: file.display().to_string(),
        format: format!("{format:?}").to_lowercase(),
        ..Default::default()
    };
    let origin = format!("file:{}", file.display());
    let stamp = |mut r: FlowRecord| {
        if r.batch_id.is_none() {
            r.batch_id = Some(default_batch.clone());
        }
        if r.source.is_none() {
            r.source = Some(Source::Import);
        }
        r
    };
    let report = match format {
        ImportFormat::Jsonl => {
            let lines = open_lines(file)?;
            let mut session = ws.begin_ingest(&origin)?;
            jsonl::read(file, lines, |r| session.push(&stamp(r)))?;
            session.commit()?
        }
        ImportFormat::VpcFlowLogs => {
            let lines = open_lines(file)?;
            let mut session = ws.begin_ingest(&origin)?;
            let skipped = vpc_flow_logs::read(file, lines, |r| session.push(&stamp(r)))?;
            let report = session.commit()?;
            summary.skipped_lines = skipped.as_pairs();
            if skipped.skipdata > 0 {
                summary.warnings.push(format!(
                    "{} SKIPDATA line(s): AWS could not record some flows in those intervals, so totals \
                     for them are lower than the traffic that happened",
                    skipped.skipdata
                ));
            }
            report
        }
        ImportFormat::Parquet => {
            // Rows are read through DuckDB and then validated and ingested like any other record.
            let mut records = Vec::new();
            ws.read_parquet_flows(file, |row, rec| {
                let rec = rec.map_err(|e| parquet_error(file, row, &e))?;
                if let Err((field, msg)) = rec.validate() {
                    return Err(ImportError {
                        file: file.to_path_buf(),
                        line: row,
                        unit: "row",
                        field: Some(field.into()),
                        message: msg,
                    }
                    .into());
                }
                records.push(stamp(rec));
                Ok(())
            })?;
            let mut session = ws.begin_ingest(&origin)?;
            for r in &records {
                session.push(r)?;
            }
            session.commit()?
        }
    };
    summary.ingest = report;
    Ok(summary)
}

fn parquet_error(file: &Path, row: u64, e: &anyhow::Error) -> ImportError {
    let text = format!("{e:#}");
    let (field, message) = match text.split_once(": ") {
        Some((f, m)) if !f.contains(' ') => (Some(f.to_string()), m.to_string()),
        _ => (None, text),
    };
    ImportError { file: file.to_path_buf(), line: row, unit: "row", field, message }
}

/// SHA-256 of the file's bytes (first 16 bytes, hex): the batch id of records that carry none.
fn content_hash(file: &Path) -> Result<String> {
    let mut f = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).with_context(|| format!("cannot read {}", file.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect())
}

/// Lines of a text file, transparently gunzipped (AWS delivers flow logs to S3 as `.log.gz`).
fn open_lines(file: &Path) -> Result<Box<dyn BufRead>> {
    let mut f = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic)?;
    let f = std::fs::File::open(file)?;
    if n == 2 && magic == [0x1f, 0x8b] {
        Ok(Box::new(BufReader::with_capacity(1 << 20, flate2::read::MultiGzDecoder::new(f))))
    } else {
        Ok(Box::new(BufReader::with_capacity(1 << 20, f)))
    }
}

/// A Cost and Usage Report extract (CSV, optionally gzipped, or Parquet) as bill lines.
pub fn read_cur(file: &Path) -> Result<Vec<cur::BillLine>> {
    let is_parquet = file.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    if is_parquet {
        let (header, rows) = Workspace::read_parquet_text(file)?;
        cur::from_table(file, &header, &rows)
    } else {
        cur::read_csv(file, Box::new(open_lines(file)?))
    }
}
