//! Batch ingest: records -> Arrow columns -> `flows`, and the same records folded into their hourly
//! rollup rows in memory -> `flows_hourly`, all inside one DuckDB transaction per session.
//!
//! Why the rollup is computed here and not in SQL: a staging table aggregated and then copied into
//! `flows` made DuckDB write, scan twice and re-append every string of every record (~400 bytes of
//! cgroup paths, container ids and names per agent record), which cost more than the rest of ingest
//! put together. The rollup is computed from exactly the records appended, in the same session, and
//! `rollups_match_raw_*` tests keep the two equal. Chunks are appended every [`ARROW_ROWS`] records and
//! rollup rows every [`ROLLUP_FLUSH_GROUPS`] groups, so a large import holds little in memory; all of
//! it stays inside the one transaction, so an error or a crash at any point leaves nothing behind.

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
/// Rollup groups held in memory before they are appended to `flows_hourly` (more rows for the same
/// hour and dimensions are fine: every reader sums, and `prune` compacts them).
const ROLLUP_FLUSH_GROUPS: usize = 256 * 1024;

/// An Arrow column builder for one [`ColType`]: the flows chunk and the rollup rows both fill theirs
/// with [`Val`]s through it.
enum Builder {
    Ts(TimestampMicrosecondBuilder),
    Text(StringBuilder),
    U8(UInt8Builder),
    U16(UInt16Builder),
    U32(UInt32Builder),
    U64(UInt64Builder),
}

impl Builder {
    fn new(ty: ColType, rows: usize) -> Builder {
        match ty {
            ColType::Timestamp => Builder::Ts(TimestampMicrosecondBuilder::with_capacity(rows)),
            ColType::Text => Builder::Text(StringBuilder::with_capacity(rows, rows * 8)),
            ColType::U8 => Builder::U8(UInt8Builder::with_capacity(rows)),
            ColType::U16 => Builder::U16(UInt16Builder::with_capacity(rows)),
            ColType::U32 => Builder::U32(UInt32Builder::with_capacity(rows)),
            ColType::U64 => Builder::U64(UInt64Builder::with_capacity(rows)),
        }
    }

    /// Appends `v`; `ip_buf` is scratch space for addresses, stored as text. `column` names the
    /// column in the panic that a schema/accessor mismatch (a programming error) raises.
    fn append(&mut self, v: Val<'_>, ip_buf: &mut String, column: &str) {
        match (v, self) {
            (Val::Ts(v), Builder::Ts(b)) => b.append_value(v),
            (Val::Text(v), Builder::Text(b)) => b.append_option(v),
            (Val::Ip(ip), Builder::Text(b)) => {
                ip_buf.clear();
                let _ = write!(ip_buf, "{ip}");
                b.append_value(&*ip_buf);
            }
            (Val::U8(v), Builder::U8(b)) => b.append_value(v),
            (Val::U16(v), Builder::U16(b)) => b.append_value(v),
            (Val::U32(v), Builder::U32(b)) => b.append_option(v),
            (Val::U64(v), Builder::U64(b)) => b.append_value(v),
            _ => unreachable!("column {column}: value and column type disagree"),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Ts(b) => Arc::new(b.finish()),
            Builder::Text(b) => Arc::new(b.finish()),
            Builder::U8(b) => Arc::new(b.finish()),
            Builder::U16(b) => Arc::new(b.finish()),
            Builder::U32(b) => Arc::new(b.finish()),
            Builder::U64(b) => Arc::new(b.finish()),
        }
    }
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
        let fields: Vec<Field> =
            cols.iter().map(|c| Field::new(c.name, arrow_type(c.ty), c.nullable)).collect();
        let builders = cols.iter().map(|c| Builder::new(c.ty, ARROW_ROWS)).collect();
        ArrowChunk {
            builders,
            rows: 0,
            ip_buf: String::with_capacity(48),
            schema: Arc::new(Schema::new(fields)),
        }
    }

    fn push(&mut self, r: &FlowRecord) {
        for (col, b) in schema::flow_columns().iter().zip(self.builders.iter_mut()) {
            b.append((col.get)(r), &mut self.ip_buf, col.name);
        }
        self.rows += 1;
    }

    fn finish(&mut self) -> Result<RecordBatch> {
        let arrays: Vec<ArrayRef> = self.builders.iter_mut().map(Builder::finish).collect();
        self.rows = 0;
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
    }
}

/// One dimension value of a rollup row, owned.
enum Dim {
    Text(Option<String>),
    Ip(std::net::IpAddr),
    U8(u8),
    U16(u16),
    U32(Option<u32>),
    U64(u64),
    Ts(i64),
}

impl Dim {
    fn as_val(&self) -> Val<'_> {
        match self {
            Dim::Text(t) => Val::Text(t.as_deref()),
            Dim::Ip(ip) => Val::Ip(*ip),
            Dim::U8(v) => Val::U8(*v),
            Dim::U16(v) => Val::U16(*v),
            Dim::U32(v) => Val::U32(*v),
            Dim::U64(v) => Val::U64(*v),
            Dim::Ts(v) => Val::Ts(*v),
        }
    }
}

struct RollupRow {
    hour: i64,
    dims: Vec<Dim>,
    service_port: Option<u16>,
    /// In [`schema::ROLLUP_MEASURES`] order.
    sums: [u64; 6],
    flow_records: u64,
}

/// The hourly rollup of the records a session appends: `date_trunc('hour', window_start)`, the
/// [`schema::ROLLUP_DIMENSIONS`], the service port, and the sums of the measures.
struct Rollup {
    dims: Vec<&'static schema::Column>,
    groups: HashMap<Vec<u8>, usize>,
    rows: Vec<RollupRow>,
    key: Vec<u8>,
}

impl Rollup {
    fn new() -> Self {
        let dims = schema::ROLLUP_DIMENSIONS
            .iter()
            .map(|d| {
                schema::flow_columns()
                    .iter()
                    .find(|c| c.name == *d)
                    .expect("rollup dimension is a flow column")
            })
            .collect();
        Rollup { dims, groups: HashMap::new(), rows: Vec::new(), key: Vec::with_capacity(512) }
    }

    fn service_port(r: &FlowRecord) -> Option<u16> {
        match r.initiator {
            crate::model::Initiator::Local => Some(r.remote.port),
            crate::model::Initiator::Remote => Some(r.local.port),
            crate::model::Initiator::Unknown => None,
        }
    }

    fn add(&mut self, r: &FlowRecord) {
        let hour =
            r.window_start.micros().div_euclid(Timestamp::MICROS_PER_HOUR) * Timestamp::MICROS_PER_HOUR;
        let sp = Self::service_port(r);
        // The key: every grouped value, tagged and length-prefixed so no two groups share bytes.
        let k = &mut self.key;
        k.clear();
        k.extend_from_slice(&hour.to_le_bytes());
        match sp {
            Some(p) => {
                k.push(1);
                k.extend_from_slice(&p.to_le_bytes());
            }
            None => k.push(0),
        }
        for c in &self.dims {
            match (c.get)(r) {
                Val::Text(None) => k.push(0),
                Val::Text(Some(t)) => {
                    k.push(1);
                    k.extend_from_slice(&(t.len() as u32).to_le_bytes());
                    k.extend_from_slice(t.as_bytes());
                }
                Val::Ip(std::net::IpAddr::V4(a)) => {
                    k.push(4);
                    k.extend_from_slice(&a.octets());
                }
                Val::Ip(std::net::IpAddr::V6(a)) => {
                    k.push(6);
                    k.extend_from_slice(&a.octets());
                }
                Val::U8(v) => k.push(v),
                Val::U16(v) => k.extend_from_slice(&v.to_le_bytes()),
                Val::U32(None) => k.push(0),
                Val::U32(Some(v)) => {
                    k.push(1);
                    k.extend_from_slice(&v.to_le_bytes());
                }
                Val::U64(v) => k.extend_from_slice(&v.to_le_bytes()),
                Val::Ts(v) => k.extend_from_slice(&v.to_le_bytes()),
            }
        }
        let i = match self.groups.get(self.key.as_slice()) {
            Some(&i) => i,
            None => {
                let dims = self
                    .dims
                    .iter()
                    .map(|c| match (c.get)(r) {
                        Val::Text(t) => Dim::Text(t.map(str::to_owned)),
                        Val::Ip(ip) => Dim::Ip(ip),
                        Val::U8(v) => Dim::U8(v),
                        Val::U16(v) => Dim::U16(v),
                        Val::U32(v) => Dim::U32(v),
                        Val::U64(v) => Dim::U64(v),
                        Val::Ts(v) => Dim::Ts(v),
                    })
                    .collect();
                self.rows.push(RollupRow { hour, dims, service_port: sp, sums: [0; 6], flow_records: 0 });
                self.groups.insert(self.key.clone(), self.rows.len() - 1);
                self.rows.len() - 1
            }
        };
        let row = &mut self.rows[i];
        let m = [
            r.bytes_out,
            r.bytes_in,
            r.packets_out,
            r.packets_in,
            r.connections_opened as u64,
            r.connections_closed as u64,
        ];
        for (s, v) in row.sums.iter_mut().zip(m) {
            *s = s.saturating_add(v);
        }
        row.flow_records += 1;
    }

    /// The groups as one Arrow batch in `flows_hourly`'s column order; empties the rollup.
    fn take_batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.rows.is_empty() {
            return Ok(None);
        }
        let rows = std::mem::take(&mut self.rows);
        self.groups.clear();
        let n = rows.len();
        let mut ip_buf = String::new();
        let mut column = |name: &str, ty: ColType, nullable: bool, val: &dyn Fn(&RollupRow) -> Val<'_>| {
            let mut b = Builder::new(ty, n);
            for r in &rows {
                b.append(val(r), &mut ip_buf, name);
            }
            (Field::new(name, arrow_type(ty), nullable), b.finish())
        };
        // flows_hourly's column order: hour, dimensions, service_port, measures, flow_records.
        let mut cols = vec![column("hour", ColType::Timestamp, false, &|r| Val::Ts(r.hour))];
        for (d, c) in self.dims.iter().enumerate() {
            cols.push(column(c.name, c.ty, true, &|r| r.dims[d].as_val()));
        }
        // The one nullable port: [`Val::U16`] has no NULL.
        let mut sp = UInt16Builder::with_capacity(n);
        for r in &rows {
            sp.append_option(r.service_port);
        }
        cols.push((Field::new("service_port", DataType::UInt16, true), Arc::new(sp.finish())));
        for (m, name) in schema::ROLLUP_MEASURES.iter().enumerate() {
            cols.push(column(name, ColType::U64, false, &|r| Val::U64(r.sums[m])));
        }
        cols.push(column("flow_records", ColType::U64, false, &|r| Val::U64(r.flow_records)));
        let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = cols.into_iter().unzip();
        Ok(Some(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?))
    }
}

fn arrow_type(ty: ColType) -> DataType {
    match ty {
        ColType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        ColType::Text => DataType::Utf8,
        ColType::U8 => DataType::UInt8,
        ColType::U16 => DataType::UInt16,
        ColType::U32 => DataType::UInt32,
        ColType::U64 => DataType::UInt64,
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
    rollup: Rollup,
    batches: BTreeMap<String, BatchState>,
    lookup_cache: HashMap<String, bool>,
    open: bool,
}

impl Workspace {
    /// Starts an ingest session; `origin` says where the data came from (a file, an agent URL, "demo").
    pub fn begin_ingest(&mut self, origin: &str) -> Result<IngestSession<'_>> {
        self.conn.execute_batch("BEGIN TRANSACTION;")?;
        Ok(IngestSession {
            ws: self,
            origin: origin.to_string(),
            chunk: ArrowChunk::new(),
            rollup: Rollup::new(),
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
        self.rollup.add(r);
        if self.chunk.rows >= ARROW_ROWS {
            self.append_chunk()?;
        }
        if self.rollup.rows.len() >= ROLLUP_FLUSH_GROUPS {
            self.append_rollup()?;
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
        let batch = self.chunk.finish()?;
        let mut app = self.ws.conn.appender("flows")?;
        app.append_record_batch(batch).context("appending flow records")?;
        app.flush()?;
        Ok(())
    }

    fn append_rollup(&mut self) -> Result<()> {
        if let Some(batch) = self.rollup.take_batch()? {
            let mut app = self.ws.conn.appender("flows_hourly")?;
            app.append_record_batch(batch).context("appending hourly rollup rows")?;
            app.flush()?;
        }
        Ok(())
    }

    /// Makes the session's batches durable, all or nothing.
    pub fn commit(mut self) -> Result<IngestReport> {
        self.append_chunk()?;
        self.append_rollup()?;
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
            let _ = self.ws.conn.execute_batch("ROLLBACK;");
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
    fn rollups_match_raw_across_sessions_and_prune() {
        let mut ws = Workspace::open_in_memory().unwrap();
        // Several Arrow chunks, several batches, hours and ports; two sessions whose rollup rows
        // share hours and dimensions.
        let n = 3 * super::ARROW_ROWS as u64 + 12_345;
        let mut ingested = 0;
        for (half, range) in [(0, 0..n / 2), (1, n / 2..n)] {
            let mut s = ws.begin_ingest("test").unwrap();
            for i in range {
                s.push(&rec(i, &format!("{half}-{}", i % 2))).unwrap();
            }
            ingested += s.commit().unwrap().records_ingested;
        }
        assert_eq!(ingested, n);
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

    /// The rollup computed in Rust is, group for group, the SQL aggregate of the raw rows it came
    /// from: hour truncation, the service port rule, NULLs, IPv6 and every measure.
    #[test]
    fn rollup_rows_equal_the_sql_aggregate_of_the_raw_rows() {
        use crate::model::Initiator;
        let mut ws = Workspace::open_in_memory().unwrap();
        let mut s = ws.begin_ingest("test").unwrap();
        for i in 0..50_000u64 {
            let mut r = rec(i, &format!("b{}", i % 7));
            r.initiator = [Initiator::Local, Initiator::Remote, Initiator::Unknown][(i % 3) as usize];
            r.window_start = Timestamp::from_secs(1_700_000_000 + (i as i64 % 900) * 37);
            r.window_end = r.window_start.add_micros(10_000_000);
            if i % 5 == 0 {
                r.remote = crate::model::Endpoint::addr("2600:1f18::17".parse().unwrap(), 443);
                r.ip_version = 6;
            }
            if i % 4 == 0 {
                r.local.namespace = Some(format!("ns-{}", i % 3));
                r.local.process = Some("java".into());
            }
            r.connections_opened = (i % 2) as u32;
            s.push(&r).unwrap();
        }
        s.commit().unwrap();
        let dims = super::schema::ROLLUP_DIMENSIONS.join(", ");
        let sums: Vec<String> =
            super::schema::ROLLUP_MEASURES.iter().map(|m| format!("sum({m})::UBIGINT")).collect();
        let sql = format!(
            "SELECT date_trunc('hour', window_start), {dims}, {sp}, {sums}, count(*)::UBIGINT
             FROM flows GROUP BY ALL",
            sp = super::schema::SERVICE_PORT_SQL,
            sums = sums.join(", ")
        );
        let diff = |a: &str, b: &str| -> i64 {
            ws.conn
                .query_row(&format!("SELECT count(*) FROM ({a} EXCEPT ALL {b})"), [], |r| r.get(0))
                .unwrap()
        };
        let hourly = "SELECT * FROM flows_hourly";
        let groups: i64 = ws.conn.query_row("SELECT count(*) FROM flows_hourly", [], |r| r.get(0)).unwrap();
        assert!(groups > 1000, "{groups} groups");
        assert_eq!(diff(&sql, hourly), 0, "groups of the raw rows missing from the rollup");
        assert_eq!(diff(hourly, &sql), 0, "rollup rows that are not groups of the raw rows");
    }
}
