//! Batch ingest: records -> Arrow columns -> a staging table -> `flows` + `flows_hourly`, all inside
//! one DuckDB transaction per session.
//!
//! Why a staging table: the hourly rollup must be computed from exactly the rows this session adds.
//! Aggregating the staged rows in SQL and then moving them is cheaper than hashing every record in Rust
//! and cannot drift from what was stored. Staging is flushed every [`STAGE_ROWS`] rows so a large import
//! never holds more than that in memory; all flushes stay inside the one transaction, so an error or a
//! crash at any point leaves nothing of the session behind.

use super::Workspace;
use super::schema::{self, ColType, Val};
use crate::model::{FlowRecord, Source, Timestamp};
use anyhow::{Context, Result, anyhow, bail};
use duckdb::arrow::array::{
    ArrayRef, StringBuilder, TimestampMicrosecondBuilder, UInt8Builder, UInt16Builder, UInt32Builder,
    UInt64Builder,
};
use duckdb::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::params;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

/// Rows converted to Arrow before they are handed to DuckDB in one append.
const ARROW_ROWS: usize = 64 * 1024;
/// Rows staged before they are moved into `flows` and rolled up.
const STAGE_ROWS: u64 = 2 * 1024 * 1024;

enum Builder {
    Ts(TimestampMicrosecondBuilder),
    Text(StringBuilder),
    U8(UInt8Builder),
    U16(UInt16Builder),
    U32(UInt32Builder),
    U64(UInt64Builder),
}

/// Column builders for the flows schema, reused across chunks.
struct ArrowChunk {
    builders: Vec<Builder>,
    rows: usize,
    ip_buf: String,
    schema: Arc<Schema>,
}

impl ArrowChunk {
    fn new() -> Self {
        let cols = schema::flow_columns();
        let fields: Vec<Field> = cols
            .iter()
            .map(|c| {
                let dt = match c.ty {
                    ColType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
                    ColType::Text => DataType::Utf8,
                    ColType::U8 => DataType::UInt8,
                    ColType::U16 => DataType::UInt16,
                    ColType::U32 => DataType::UInt32,
                    ColType::U64 => DataType::UInt64,
                };
                Field::new(c.name, dt, c.nullable)
            })
            .collect();
        let builders = cols
            .iter()
            .map(|c| match c.ty {
                ColType::Timestamp => Builder::Ts(TimestampMicrosecondBuilder::with_capacity(ARROW_ROWS)),
                ColType::Text => Builder::Text(StringBuilder::with_capacity(ARROW_ROWS, ARROW_ROWS * 8)),
                ColType::U8 => Builder::U8(UInt8Builder::with_capacity(ARROW_ROWS)),
                ColType::U16 => Builder::U16(UInt16Builder::with_capacity(ARROW_ROWS)),
                ColType::U32 => Builder::U32(UInt32Builder::with_capacity(ARROW_ROWS)),
                ColType::U64 => Builder::U64(UInt64Builder::with_capacity(ARROW_ROWS)),
            })
            .collect();
        ArrowChunk {
            builders,
            rows: 0,
            ip_buf: String::with_capacity(48),
            schema: Arc::new(Schema::new(fields)),
        }
    }

    fn push(&mut self, r: &FlowRecord) {
        for (col, b) in schema::flow_columns().iter().zip(self.builders.iter_mut()) {
            match ((col.get)(r), b) {
                (Val::Ts(v), Builder::Ts(b)) => b.append_value(v),
                (Val::Text(v), Builder::Text(b)) => b.append_option(v),
                (Val::Ip(ip), Builder::Text(b)) => {
                    self.ip_buf.clear();
                    let _ = write!(self.ip_buf, "{ip}");
                    b.append_value(&self.ip_buf);
                }
                (Val::U8(v), Builder::U8(b)) => b.append_value(v),
                (Val::U16(v), Builder::U16(b)) => b.append_value(v),
                (Val::U32(v), Builder::U32(b)) => b.append_option(v),
                (Val::U64(v), Builder::U64(b)) => b.append_value(v),
                _ => unreachable!("column {} accessor and type disagree", col.name),
            }
        }
        self.rows += 1;
    }

    fn finish(&mut self) -> Result<RecordBatch> {
        let arrays: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(|b| -> ArrayRef {
                match b {
                    Builder::Ts(b) => Arc::new(b.finish()),
                    Builder::Text(b) => Arc::new(b.finish()),
                    Builder::U8(b) => Arc::new(b.finish()),
                    Builder::U16(b) => Arc::new(b.finish()),
                    Builder::U32(b) => Arc::new(b.finish()),
                    Builder::U64(b) => Arc::new(b.finish()),
                }
            })
            .collect();
        self.rows = 0;
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BatchSummary {
    pub batch_id: String,
    pub source: Source,
    pub records: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub window_start: Option<Timestamp>,
    pub window_end: Option<Timestamp>,
}

enum BatchState {
    New(BatchSummary),
    /// Already in the workspace before this session: its records are skipped.
    Existing {
        records_skipped: u64,
    },
}

/// What an ingest did: new batches stored, and batches skipped because they were already there.
#[derive(Debug, Default, Serialize)]
pub struct IngestReport {
    pub origin: String,
    pub records_ingested: u64,
    pub records_skipped: u64,
    pub batches_ingested: Vec<BatchSummary>,
    pub batches_skipped: Vec<String>,
}

/// One transaction's worth of ingest. Dropping it without [`IngestSession::commit`] rolls back.
pub struct IngestSession<'w> {
    ws: &'w mut Workspace,
    origin: String,
    chunk: ArrowChunk,
    staged: u64,
    batches: BTreeMap<String, BatchState>,
    lookup_cache: HashMap<String, bool>,
    open: bool,
}

impl Workspace {
    /// Starts an ingest session; `origin` says where the data came from (a file, an agent URL, "demo").
    pub fn begin_ingest(&mut self, origin: &str) -> Result<IngestSession<'_>> {
        self.conn.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS flows_staging AS SELECT * FROM flows LIMIT 0;
             DELETE FROM flows_staging;
             BEGIN TRANSACTION;",
        )?;
        Ok(IngestSession {
            ws: self,
            origin: origin.to_string(),
            chunk: ArrowChunk::new(),
            staged: 0,
            batches: BTreeMap::new(),
            lookup_cache: HashMap::new(),
            open: true,
        })
    }
}

impl IngestSession<'_> {
    /// Adds one record. It must carry a `batch_id` and a `source` (importers assign them). Records of a
    /// batch that the workspace already holds are counted and skipped.
    pub fn push(&mut self, r: &FlowRecord) -> Result<()> {
        let batch_id = r.batch_id.as_deref().ok_or_else(|| anyhow!("record has no batch_id"))?;
        let source = r.source.ok_or_else(|| anyhow!("record has no source"))?;
        if !self.batches.contains_key(batch_id) {
            let exists = self.batch_exists(batch_id)?;
            let state = if exists {
                BatchState::Existing { records_skipped: 0 }
            } else {
                BatchState::New(BatchSummary {
                    batch_id: batch_id.to_string(),
                    source,
                    records: 0,
                    bytes_out: 0,
                    bytes_in: 0,
                    window_start: None,
                    window_end: None,
                })
            };
            self.batches.insert(batch_id.to_string(), state);
        }
        match self.batches.get_mut(batch_id).expect("inserted above") {
            BatchState::Existing { records_skipped } => {
                *records_skipped += 1;
                return Ok(());
            }
            BatchState::New(s) => {
                if s.source != source {
                    bail!("batch {batch_id} mixes sources {} and {source}", s.source);
                }
                s.records += 1;
                s.bytes_out = s.bytes_out.saturating_add(r.bytes_out);
                s.bytes_in = s.bytes_in.saturating_add(r.bytes_in);
                s.window_start = Some(s.window_start.map_or(r.window_start, |w| w.min(r.window_start)));
                s.window_end = Some(s.window_end.map_or(r.window_end, |w| w.max(r.window_end)));
            }
        }
        self.chunk.push(r);
        if self.chunk.rows >= ARROW_ROWS {
            self.append_chunk()?;
        }
        Ok(())
    }

    fn batch_exists(&mut self, batch_id: &str) -> Result<bool> {
        if let Some(&b) = self.lookup_cache.get(batch_id) {
            return Ok(b);
        }
        let n: i64 = self.ws.conn.query_row(
            "SELECT count(*) FROM batches WHERE batch_id = ?",
            params![batch_id],
            |r| r.get(0),
        )?;
        self.lookup_cache.insert(batch_id.to_string(), n > 0);
        Ok(n > 0)
    }

    fn append_chunk(&mut self) -> Result<()> {
        if self.chunk.rows == 0 {
            return Ok(());
        }
        let rows = self.chunk.rows as u64;
        let batch = self.chunk.finish()?;
        {
            let mut app = self.ws.conn.appender_to_catalog_and_db("flows_staging", "temp", "main")?;
            app.append_record_batch(batch).context("appending flow records")?;
            app.flush()?;
        }
        self.staged += rows;
        if self.staged >= STAGE_ROWS {
            self.move_staged()?;
        }
        Ok(())
    }

    /// Rolls the staged rows up into `flows_hourly` and moves them into `flows`.
    fn move_staged(&mut self) -> Result<()> {
        if self.staged == 0 {
            return Ok(());
        }
        let dims = schema::ROLLUP_DIMENSIONS.join(", ");
        let sums: Vec<String> =
            schema::ROLLUP_MEASURES.iter().map(|m| format!("sum({m})::UBIGINT")).collect();
        self.ws.conn.execute_batch(&format!(
            "INSERT INTO flows_hourly
                 SELECT date_trunc('hour', window_start) AS hour, {dims}, {sp} AS service_port,
                        {sums}, count(*)::UBIGINT
                 FROM flows_staging GROUP BY ALL;
             INSERT INTO flows SELECT * FROM flows_staging;
             DELETE FROM flows_staging;",
            sp = schema::SERVICE_PORT_SQL,
            sums = sums.join(", ")
        ))?;
        self.staged = 0;
        Ok(())
    }

    /// Makes the session's batches durable, all or nothing.
    pub fn commit(mut self) -> Result<IngestReport> {
        self.append_chunk()?;
        self.move_staged()?;
        let seq: i64 =
            self.ws
                .conn
                .query_row("SELECT coalesce(max(ingest_seq), 0) + 1 FROM batches", [], |r| r.get(0))?;
        let now = Timestamp::now().micros();
        let mut report = IngestReport { origin: self.origin.clone(), ..Default::default() };
        {
            let mut ins = self.ws.conn.prepare(
                "INSERT INTO batches VALUES (?, ?, ?, ?, make_timestamp(?), ?, ?, ?, make_timestamp(?), make_timestamp(?))",
            )?;
            for (id, state) in &self.batches {
                match state {
                    BatchState::New(s) => {
                        ins.execute(params![
                            id,
                            s.source.as_str(),
                            self.origin,
                            seq,
                            now,
                            s.records,
                            s.bytes_out,
                            s.bytes_in,
                            s.window_start.map(|t| t.micros()),
                            s.window_end.map(|t| t.micros()),
                        ])?;
                        report.records_ingested += s.records;
                        report.batches_ingested.push(s.clone());
                    }
                    BatchState::Existing { records_skipped } => {
                        report.records_skipped += records_skipped;
                        report.batches_skipped.push(id.clone());
                    }
                }
            }
        }
        self.ws.conn.execute_batch("COMMIT")?;
        self.open = false;
        Ok(report)
    }
}

impl Drop for IngestSession<'_> {
    fn drop(&mut self) {
        if self.open {
            // Nothing of an unfinished session may remain; the error, if any, is already on its way up.
            let _ = self.ws.conn.execute_batch("ROLLBACK; DELETE FROM flows_staging;");
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{Endpoint, FlowRecord, Initiator, Proto, Source, Timestamp};
    use crate::store::{FlowFilter, Workspace};

    fn rec(i: u64, batch: &str) -> FlowRecord {
        FlowRecord {
            window_start: Timestamp::from_secs(1_700_000_000 + (i as i64 % 7200) * 10),
            window_end: Timestamp::from_secs(1_700_000_010 + (i as i64 % 7200) * 10),
            node: format!("node-{}", i % 3),
            local: Endpoint::addr(format!("10.0.0.{}", i % 250).parse().unwrap(), 40000 + (i % 1000) as u16),
            remote: Endpoint::addr("52.216.8.20".parse().unwrap(), 443),
            proto: Proto::Tcp,
            ip_version: 4,
            initiator: Initiator::Local,
            bytes_out: 1000 + i,
            bytes_in: 10 * i,
            packets_out: 3,
            packets_in: 4,
            connections_opened: 1,
            connections_closed: 0,
            batch_id: Some(batch.into()),
            source: Some(Source::Agent),
        }
    }

    #[test]
    fn rollups_match_raw_across_stage_flushes_and_prune() {
        let mut ws = Workspace::open_in_memory().unwrap();
        let mut s = ws.begin_ingest("test").unwrap();
        // More than one staging flush, several batches.
        let n = super::STAGE_ROWS + 12_345;
        for i in 0..n {
            s.push(&rec(i, if i % 2 == 0 { "a" } else { "b" })).unwrap();
        }
        let report = s.commit().unwrap();
        assert_eq!(report.records_ingested, n);
        let (raw, hourly) = ws.totals().unwrap();
        assert_eq!(raw, hourly);
        assert_eq!(raw.0, (0..n).map(|i| 1000 + i).sum::<u64>());
        // Compaction merges rows without changing totals.
        let rows_before = ws.info().unwrap().hourly_rollup_rows;
        let pr = ws.prune(Timestamp::from_secs(1_700_000_000)).unwrap();
        assert!(pr.rollup_rows_merged > 0 && pr.raw_deleted == 0);
        assert_eq!(ws.info().unwrap().hourly_rollup_rows, rows_before - pr.rollup_rows_merged);
        assert_eq!(ws.totals().unwrap().1, raw);
    }

    #[test]
    fn a_dropped_session_leaves_nothing_and_a_batch_counts_once() {
        let mut ws = Workspace::open_in_memory().unwrap();
        {
            let mut s = ws.begin_ingest("test").unwrap();
            for i in 0..100_000 {
                s.push(&rec(i, "x")).unwrap();
            }
            // dropped: an error on the way up
        }
        let info = ws.info().unwrap();
        assert_eq!((info.flow_records, info.hourly_rollup_rows, info.batches), (0, 0, 0));

        let mut s = ws.begin_ingest("test").unwrap();
        s.push(&rec(1, "x")).unwrap();
        s.commit().unwrap();
        let mut s = ws.begin_ingest("test").unwrap();
        s.push(&rec(1, "x")).unwrap();
        s.push(&rec(2, "y")).unwrap();
        let r = s.commit().unwrap();
        assert_eq!(r.batches_skipped, vec!["x".to_string()]);
        assert_eq!(r.records_ingested, 1);
        let mut got = Vec::new();
        ws.for_each_flow(&FlowFilter::default(), |r| {
            got.push(r);
            Ok(())
        })
        .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], rec(1, "x"), "a record reads back exactly as written");
    }
}
