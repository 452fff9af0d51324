//! Batch ingest: records -> dictionary ids + Arrow columns of integers -> `flow_rows`, and the same
//! records folded into their hourly rollup rows in memory -> `flows_hourly`, all inside one DuckDB
//! transaction per session.
//!
//! Each record's node and endpoints are resolved to ids in the workspace's in-memory dictionaries
//! (`super::dictionary`), so `flow_rows` gets integers only; DuckDB appends those several times
//! faster than rows of strings (ADR 0005). New dictionary entries are written in the same transaction.
//!
//! Why the rollup is computed here and not in SQL: aggregating a staging table and copying it made
//! DuckDB write and scan every record twice. The rollup is computed from exactly the records
//! appended, keyed by integers (hour, node, party ids, ...), and `rollup_rows_equal_the_sql_aggregate_*`
//! keeps it equal to the SQL aggregate of the raw rows. Chunks are appended every [`ARROW_ROWS`]
//! records and rollup rows every [`ROLLUP_FLUSH_GROUPS`] groups, so a large import holds little in
//! memory; all of it stays inside the one transaction, so an error or a crash at any point leaves
//! nothing behind.

use super::Workspace;
use super::dictionary::{Dictionaries, Mark};
use super::schema::{self, ColType, RowIds, Val};
use crate::model::fxhash::FxBuild;
use crate::model::{FlowRecord, Initiator, Source, Timestamp};
use anyhow::{Context, Result, anyhow, bail};
use duckdb::arrow::array::{
    ArrayRef, StringBuilder, TimestampMicrosecondBuilder, UInt8Builder, UInt16Builder, UInt32Builder,
    UInt64Builder,
};
use duckdb::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::{Connection, params};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};
use std::thread::JoinHandle;

/// Rows converted to Arrow before they are handed to DuckDB in one append.
const ARROW_ROWS: usize = 16 * 1024;
/// Rollup groups held in memory before they are appended to `flows_hourly` (more rows for the same
/// hour and dimensions are fine: every reader sums, and `prune` compacts them).
const ROLLUP_FLUSH_GROUPS: usize = 256 * 1024;

/// An Arrow column builder for one [`ColType`]: flow rows, rollup rows and dictionary rows all fill
/// theirs with [`Val`]s through it.
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
            (Val::U16(v), Builder::U16(b)) => b.append_option(v),
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

/// Builds one Arrow batch column by column: `column(name, type, nullable, value of row i)`.
struct BatchBuilder<'a, T> {
    rows: &'a [T],
    fields: Vec<Field>,
    arrays: Vec<ArrayRef>,
    ip_buf: String,
}

impl<'a, T> BatchBuilder<'a, T> {
    fn new(rows: &'a [T]) -> Self {
        BatchBuilder { rows, fields: Vec::new(), arrays: Vec::new(), ip_buf: String::new() }
    }

    fn column(&mut self, name: &str, ty: ColType, nullable: bool, val: impl Fn(&'a T) -> Val<'a>) {
        let mut b = Builder::new(ty, self.rows.len());
        for r in self.rows {
            b.append(val(r), &mut self.ip_buf, name);
        }
        self.fields.push(Field::new(name, arrow_type(ty), nullable));
        self.arrays.push(b.finish());
    }

    fn finish(self) -> Result<RecordBatch> {
        Ok(RecordBatch::try_new(Arc::new(Schema::new(self.fields)), self.arrays)?)
    }
}

/// Column builders for `flow_rows`, reused across chunks.
struct RowChunk {
    builders: Vec<Builder>,
    rows: usize,
    ip_buf: String,
    schema: Arc<Schema>,
}

impl RowChunk {
    fn new() -> Self {
        let cols = schema::flow_row_columns();
        let fields: Vec<Field> =
            cols.iter().map(|c| Field::new(c.name, arrow_type(c.ty), c.nullable)).collect();
        let builders = cols.iter().map(|c| Builder::new(c.ty, ARROW_ROWS)).collect();
        RowChunk { builders, rows: 0, ip_buf: String::new(), schema: Arc::new(Schema::new(fields)) }
    }

    fn push(&mut self, r: &FlowRecord, ids: &RowIds) {
        for (col, b) in schema::flow_row_columns().iter().zip(self.builders.iter_mut()) {
            b.append((col.get)(r, ids), &mut self.ip_buf, col.name);
        }
        self.rows += 1;
    }

    fn finish(&mut self) -> Result<RecordBatch> {
        let arrays: Vec<ArrayRef> = self.builders.iter_mut().map(Builder::finish).collect();
        self.rows = 0;
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
    }
}

fn hour_of(micros: i64) -> i64 {
    Timestamp::from_micros(micros).floor_hour().micros()
}

/// A window `[start, end)` that crosses hours, cut at each hour: each hour gets the part of the
/// measures proportional to the time it holds of the window. Shares are differences of rounded
/// cumulative amounts, so they are integers that add up to the measures exactly. Connections
/// opened count in the first hour and closed in the last (in [`schema::ROLLUP_MEASURES`] order).
/// Used by the rollup: a month-long flow-log record fills the month, not its first hour.
pub fn spread_over_hours(start: i64, end: i64, measures: [u64; 6]) -> Vec<(i64, [u64; 6])> {
    let (first, last) = (hour_of(start), hour_of(end - 1));
    let mut out = Vec::new();
    let mut hour = first;
    while hour <= last {
        let (from, to) = (hour.max(start), (hour + Timestamp::MICROS_PER_HOUR).min(end));
        let mut share = [0u64; 6];
        for k in 0..4 {
            share[k] = crate::model::share_of_window(measures[k], (start, end), (from, to));
        }
        share[4] = if hour == first { measures[4] } else { 0 };
        share[5] = if hour == last { measures[5] } else { 0 };
        out.push((hour, share));
        hour += Timestamp::MICROS_PER_HOUR;
    }
    out
}

/// One rollup group: the hour and every grouped value, as integers (party ids stand for the
/// endpoint fields the rollup keeps).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct RollupKey {
    hour: i64,
    node: u32,
    local_party: u32,
    remote_party: u32,
    service_port: Option<u16>,
    proto: crate::model::Proto,
    ip_version: u8,
    source: Source,
}

struct RollupRow {
    key: RollupKey,
    /// In [`schema::ROLLUP_MEASURES`] order.
    sums: [u64; 6],
    flow_records: u64,
}

/// Where a [`schema::ROLLUP_DIMENSIONS`] column's value comes from.
#[derive(Clone, Copy)]
enum DimSource {
    Node,
    Proto,
    IpVersion,
    Source,
    Ip { local: bool },
    Text { local: bool, field: usize },
}

/// The hourly rollup of the records a session appends: `date_trunc('hour', window_start)` (a
/// window that crosses hours is spread over them, [`spread_over_hours`]), the
/// [`schema::ROLLUP_DIMENSIONS`], the service port, and the sums of the measures.
struct Rollup {
    dims: Vec<(&'static str, ColType, DimSource)>,
    groups: HashMap<RollupKey, usize, FxBuild>,
    rows: Vec<RollupRow>,
}

impl Rollup {
    fn new() -> Self {
        let dims = schema::ROLLUP_DIMENSIONS
            .iter()
            .map(|&d| {
                let ty = schema::flow_columns()
                    .iter()
                    .find(|c| c.name == d)
                    .expect("rollup dimension is a flow column")
                    .ty;
                let src = match d {
                    "node" => DimSource::Node,
                    "proto" => DimSource::Proto,
                    "ip_version" => DimSource::IpVersion,
                    "source" => DimSource::Source,
                    _ => {
                        let (local, field) = match d.strip_prefix("local_") {
                            Some(f) => (true, f),
                            None => (false, d.strip_prefix("remote_").expect("an endpoint column")),
                        };
                        match schema::ENDPOINT_TEXT_FIELDS.iter().position(|f| *f == field) {
                            Some(field) => DimSource::Text { local, field },
                            None if field == "ip" => DimSource::Ip { local },
                            None => unreachable!("rollup dimension {d} is not an endpoint field"),
                        }
                    }
                };
                (d, ty, src)
            })
            .collect();
        Rollup { dims, groups: HashMap::default(), rows: Vec::new() }
    }

    fn service_port(r: &FlowRecord) -> Option<u16> {
        match r.initiator {
            Initiator::Local => Some(r.remote.port),
            Initiator::Remote => Some(r.local.port),
            Initiator::Unknown => None,
        }
    }

    fn add(&mut self, r: &FlowRecord, node: u32, local_party: u32, remote_party: u32, source: Source) {
        let key = RollupKey {
            hour: hour_of(r.window_start.micros()),
            node,
            local_party,
            remote_party,
            service_port: Self::service_port(r),
            proto: r.proto,
            ip_version: r.ip_version,
            source,
        };
        let measures = [
            r.bytes_out,
            r.bytes_in,
            r.packets_out,
            r.packets_in,
            r.connections_opened as u64,
            r.connections_closed as u64,
        ];
        let (start, end) = (r.window_start.micros(), r.window_end.micros());
        // The common case (agent windows of seconds) stays one lookup: a window inside one hour.
        if end <= start || hour_of(end - 1) == key.hour {
            self.fold(key, measures, 1);
            return;
        }
        for (hour, share) in spread_over_hours(start, end, measures) {
            // Counted once, in its first hour, so `flow_records` still counts records.
            let records = u64::from(hour == key.hour);
            self.fold(RollupKey { hour, ..key }, share, records);
        }
    }

    fn fold(&mut self, key: RollupKey, measures: [u64; 6], records: u64) {
        let rows = &mut self.rows;
        let i = *self.groups.entry(key).or_insert_with(|| {
            rows.push(RollupRow { key, sums: [0; 6], flow_records: 0 });
            rows.len() - 1
        });
        let row = &mut self.rows[i];
        for (s, v) in row.sums.iter_mut().zip(measures) {
            *s = s.saturating_add(v);
        }
        row.flow_records += records;
    }

    /// The groups as one Arrow batch in `flows_hourly`'s column order; empties the rollup.
    fn take_batch(&mut self, dicts: &Dictionaries) -> Result<Option<RecordBatch>> {
        if self.rows.is_empty() {
            return Ok(None);
        }
        let rows = std::mem::take(&mut self.rows);
        self.groups.clear();
        let mut b = BatchBuilder::new(&rows);
        // flows_hourly's column order: hour, dimensions, service_port, measures, flow_records.
        b.column("hour", ColType::Timestamp, false, |r| Val::Ts(r.key.hour));
        for &(name, ty, src) in &self.dims {
            b.column(name, ty, true, |r| {
                let party = |local: bool| {
                    &dicts.parties[if local { r.key.local_party } else { r.key.remote_party } as usize]
                };
                match src {
                    DimSource::Node => Val::Text(Some(&dicts.node_names[r.key.node as usize])),
                    DimSource::Proto => Val::Text(Some(r.key.proto.as_str())),
                    DimSource::IpVersion => Val::U8(r.key.ip_version),
                    DimSource::Source => Val::Text(Some(r.key.source.as_str())),
                    DimSource::Ip { local } => Val::Ip(party(local).ip),
                    DimSource::Text { local, field } => Val::Text(party(local).text[field].as_deref()),
                }
            });
        }
        b.column("service_port", ColType::U16, true, |r| Val::U16(r.key.service_port));
        for (m, name) in schema::ROLLUP_MEASURES.iter().enumerate() {
            b.column(name, ColType::U64, false, |r| Val::U64(r.sums[m]));
        }
        b.column("flow_records", ColType::U64, false, |r| Val::U64(r.flow_records));
        Ok(Some(b.finish()?))
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
    /// New in this session; `key` is its `batches.batch_key`.
    New { key: u32, summary: BatchSummary },
    /// Already in the workspace before this session: its records are skipped.
    Existing { records_skipped: u64 },
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

/// The DuckDB side of an ingest session, on its own thread with its own connection to the
/// workspace: it opens the transaction, runs the appends and inserts it is sent, in order, and
/// commits or rolls back. The session's thread meanwhile resolves and converts the next records, so
/// on two cores converting and storing overlap (ADR 0005).
///
/// Each session has its own writer thread, which first waits for the one before it and takes over
/// its connection: transactions run one after another, in session order, while the next session can
/// already convert its records during the previous commit ([`IngestSession::commit_in_background`],
/// which `pull` uses across pages). Such a session builds on the dictionary entries of the one still
/// committing, so if that commit fails it is refused too, never stored with ids that point nowhere.
struct Writer {
    jobs: Option<SyncSender<Msg>>,
    /// The session's outcome, sent once by the thread: `Ok` when committed.
    done: Option<Receiver<Result<()>>>,
    /// A send failed: the thread stopped on an error.
    failed: bool,
}

enum Msg {
    Job(Job),
    Commit,
}

type Job = Box<dyn FnOnce(&Connection) -> Result<()> + Send>;

/// What a writer thread hands to the next one: the connection (`None` if the thread panicked), and
/// whether a session converted while this one was in flight may commit (false if this one failed).
type Handoff = (Option<Connection>, bool);

/// The workspace's writer connection between sessions: idle, or owned by the last session's thread.
pub(super) enum WriterLink {
    Idle(Connection),
    Busy(JoinHandle<Handoff>),
}

/// Jobs queued ahead of the writer: enough for a whole page of a pull (100,000 records are about
/// seven chunks and a few dictionary and rollup appends) to be converted while the previous page
/// commits; each chunk holds a few hundred KiB.
const WRITER_QUEUE: usize = 16;

impl Writer {
    /// Starts the session's writer thread behind `prev`; returns it and the link for the next one.
    fn start(prev: WriterLink) -> (Writer, JoinHandle<Handoff>) {
        let (tx, rx) = sync_channel::<Msg>(WRITER_QUEUE);
        let (done_tx, done) = channel::<Result<()>>();
        let thread = std::thread::Builder::new()
            .name("egressor-ingest".into())
            .spawn(move || -> Handoff {
                let (conn, prev_ok) = match prev {
                    WriterLink::Idle(c) => (Some(c), true),
                    WriterLink::Busy(h) => h.join().unwrap_or((None, false)),
                };
                let Some(conn) = conn else {
                    let _ = done_tx.send(Err(anyhow!("the ingest writer thread before this one panicked")));
                    return (None, false);
                };
                if !prev_ok {
                    let _ = done_tx.send(Err(anyhow!(
                        "not stored: it was converted while the ingest before it was committing, and that commit failed"
                    )));
                    return (Some(conn), false);
                }
                let run = || -> Result<bool> {
                    conn.execute_batch("BEGIN TRANSACTION;")?;
                    for msg in rx {
                        match msg {
                            Msg::Job(job) => job(&conn)?,
                            Msg::Commit => {
                                conn.execute_batch("COMMIT;")?;
                                return Ok(true);
                            }
                        }
                    }
                    Ok(false)
                };
                let (result, chain_ok) = match run() {
                    Ok(true) => (Ok(()), true),
                    Ok(false) => {
                        // The session was dropped without commit: nothing depends on it.
                        let _ = conn.execute_batch("ROLLBACK;");
                        (Err(anyhow!("the ingest session ended without commit and was rolled back")), true)
                    }
                    Err(e) => {
                        // Whatever failed (an append, an insert, the commit itself), nothing of the
                        // session may remain; a no-op if the transaction already ended.
                        let _ = conn.execute_batch("ROLLBACK;");
                        (Err(e), false)
                    }
                };
                let _ = done_tx.send(result);
                (Some(conn), chain_ok)
            })
            .expect("spawning the ingest writer thread");
        (Writer { jobs: Some(tx), done: Some(done), failed: false }, thread)
    }

    /// Queues a message; if the writer has stopped on an error, returns that error.
    fn send(&mut self, msg: Msg) -> Result<()> {
        let tx = self.jobs.as_ref().ok_or_else(|| anyhow!("the ingest session is already finished"))?;
        if tx.send(msg).is_err() {
            // The thread ended early: its error is the one to report.
            self.failed = true;
            self.jobs = None;
            let outcome = self.done.take().map(|d| d.recv());
            return match outcome {
                Some(Ok(Err(e))) => Err(e),
                _ => Err(anyhow!("the ingest writer stopped without an error")),
            };
        }
        Ok(())
    }

    fn job(&mut self, job: Job) -> Result<()> {
        self.send(Msg::Job(job))
    }
}

/// A session sent to commit, not yet waited for.
pub(super) struct InFlight {
    ticket: u64,
    done: Receiver<Result<()>>,
    report: IngestReport,
    /// The dictionaries where the session started and ended.
    start: Mark,
    end: Mark,
    batch_ids: Vec<String>,
    /// What the session after it continues from.
    next_batch_key: u32,
    next_ingest_seq: i64,
}

/// Sessions sent to commit and not yet waited for, oldest first (a pull's pages).
#[derive(Default)]
pub(super) struct InFlightQueue {
    queue: VecDeque<InFlight>,
    /// Their batch ids: a later session treats them as already stored (and is refused with them if
    /// they fail).
    batch_ids: HashSet<String>,
    next_ticket: u64,
    /// Tickets up to this one were refused because a commit before or at them failed.
    failed_through: Option<u64>,
}

/// A commit on its way: [`Workspace::wait_ingest`] says whether it is stored.
#[must_use = "an ingest is only known to be stored once wait_ingest says so"]
#[derive(Debug)]
pub struct PendingIngest(u64);

/// One transaction's worth of ingest. Dropping it without [`IngestSession::commit`] rolls back (the
/// transaction and the dictionary entries it added).
pub struct IngestSession<'w> {
    ws: &'w mut Workspace,
    origin: String,
    chunk: RowChunk,
    rollup: Rollup,
    batches: BTreeMap<String, BatchState>,
    next_batch_key: u32,
    ingest_seq: i64,
    writer: Writer,
    /// The dictionaries when the session started: its new entries are those after it.
    start: Mark,
    open: bool,
}

impl Workspace {
    /// Starts an ingest session; `origin` says where the data came from (a file, an agent URL, "demo").
    pub fn begin_ingest(&mut self, origin: &str) -> Result<IngestSession<'_>> {
        if self.dicts.is_none() {
            self.dicts = Some(Dictionaries::load(&self.conn).context("loading the workspace dictionaries")?);
        }
        // The next batch key and ingest sequence number: after the last session still committing, or
        // from what is committed (cached statement: a pull runs a session per page).
        let (next_batch_key, ingest_seq) = match self.in_flight.queue.back() {
            Some(last) => (last.next_batch_key, last.next_ingest_seq),
            None => {
                let (key, seq): (Option<i64>, i64) = self
                    .conn
                    .prepare_cached("SELECT max(batch_key), coalesce(max(ingest_seq), 0) + 1 FROM batches")?
                    .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                (key.map_or(0, |k| k as u32 + 1), seq)
            }
        };
        let link = match self.writer.take() {
            Some(link) => link,
            None => WriterLink::Idle(self.second_connection().context("opening the ingest connection")?),
        };
        let (writer, thread) = Writer::start(link);
        self.writer = Some(WriterLink::Busy(thread));
        let start = self.dicts.as_ref().expect("loaded above").mark();
        Ok(IngestSession {
            ws: self,
            origin: origin.to_string(),
            chunk: RowChunk::new(),
            rollup: Rollup::new(),
            batches: BTreeMap::new(),
            next_batch_key,
            ingest_seq,
            writer,
            start,
            open: true,
        })
    }

    /// Waits until `pending` (and every commit sent before it) is stored, and returns its report.
    /// If a commit failed, the sessions sent after it are refused with it: their records were
    /// converted on top of it. Nothing of a refused session is stored.
    pub fn wait_ingest(&mut self, pending: PendingIngest) -> Result<IngestReport> {
        let PendingIngest(ticket) = pending;
        while let Some(f) = self.in_flight.queue.pop_front() {
            let outcome = f
                .done
                .recv()
                .unwrap_or_else(|_| Err(anyhow!("the ingest writer thread ended without an answer")));
            for id in &f.batch_ids {
                self.in_flight.batch_ids.remove(id);
            }
            let dicts = self.dicts.as_mut().expect("loaded by begin_ingest");
            match outcome {
                Ok(()) => {
                    dicts.committed_to(f.end);
                    if f.ticket == ticket {
                        return Ok(f.report);
                    }
                }
                Err(e) => {
                    dicts.rollback_to(f.start);
                    let last = self.in_flight.queue.back().map_or(f.ticket, |l| l.ticket);
                    self.in_flight.queue.clear();
                    self.in_flight.batch_ids.clear();
                    self.in_flight.failed_through = Some(last);
                    self.reset_writer();
                    let e = e.context("committing the ingest transaction (nothing of it was stored)");
                    if f.ticket == ticket {
                        return Err(e);
                    }
                    return Err(e.context(
                        "an ingest sent to commit before this one failed, so this one was not stored either",
                    ));
                }
            }
        }
        match self.in_flight.failed_through {
            Some(t) if ticket <= t => {
                bail!("not stored: an ingest sent to commit before or with this one failed (reported then)")
            }
            _ => bail!("ingest {ticket} was already waited for"),
        }
    }

    /// Waits for every commit sent (before closing the workspace, or reading what they stored).
    pub fn wait_all_ingests(&mut self) -> Result<()> {
        match self.in_flight.queue.back() {
            Some(last) => self.wait_ingest(PendingIngest(last.ticket)).map(|_| ()),
            None => Ok(()),
        }
    }

    /// After a failure: lets every writer thread finish (each in-flight one is refused in turn) and
    /// takes the connection back, so that the next session starts clean rather than behind a
    /// failed one.
    fn reset_writer(&mut self) {
        match self.writer.take() {
            Some(WriterLink::Busy(h)) => {
                // A thread that panicked takes its connection with it: the next session opens one.
                if let Ok((Some(conn), _)) = h.join() {
                    self.writer = Some(WriterLink::Idle(conn));
                }
            }
            idle => self.writer = idle,
        }
    }
}

fn append_job(table: &'static str, what: &'static str, batch: RecordBatch) -> Job {
    Box::new(move |c: &Connection| {
        let mut app = c.appender(table)?;
        app.append_record_batch(batch).with_context(|| format!("appending {what}"))?;
        app.flush()?;
        Ok(())
    })
}

impl IngestSession<'_> {
    /// Adds one record. It must carry a `batch_id` and a `source` (importers assign them). Records of a
    /// batch that the workspace already holds are counted and skipped.
    pub fn push(&mut self, r: &FlowRecord) -> Result<()> {
        let batch_id = r.batch_id.as_deref().ok_or_else(|| anyhow!("record has no batch_id"))?;
        let source = r.source.ok_or_else(|| anyhow!("record has no source"))?;
        if !self.batches.contains_key(batch_id) {
            let state = if self.batch_exists(batch_id)? {
                BatchState::Existing { records_skipped: 0 }
            } else {
                let key = self.next_batch_key;
                self.next_batch_key = key.checked_add(1).ok_or_else(|| anyhow!("more than 2^32 batches"))?;
                BatchState::New {
                    key,
                    summary: BatchSummary {
                        batch_id: batch_id.to_string(),
                        source,
                        records: 0,
                        bytes_out: 0,
                        bytes_in: 0,
                        window_start: None,
                        window_end: None,
                    },
                }
            };
            self.batches.insert(batch_id.to_string(), state);
        }
        let batch = match self.batches.get_mut(batch_id).expect("inserted above") {
            BatchState::Existing { records_skipped } => {
                *records_skipped += 1;
                return Ok(());
            }
            BatchState::New { key, summary: s } => {
                if s.source != source {
                    bail!("batch {batch_id} mixes sources {} and {source}", s.source);
                }
                s.records += 1;
                s.bytes_out = s.bytes_out.saturating_add(r.bytes_out);
                s.bytes_in = s.bytes_in.saturating_add(r.bytes_in);
                s.window_start = Some(s.window_start.map_or(r.window_start, |w| w.min(r.window_start)));
                s.window_end = Some(s.window_end.map_or(r.window_end, |w| w.max(r.window_end)));
                *key
            }
        };
        let dicts = self.ws.dicts.as_mut().expect("loaded by begin_ingest");
        let ids = RowIds {
            node: dicts.node_id(&r.node),
            local: dicts.endpoint_id(&r.local),
            remote: dicts.endpoint_id(&r.remote),
            batch,
        };
        let (lp, rp) = (dicts.party_id(ids.local, true), dicts.party_id(ids.remote, false));
        self.chunk.push(r, &ids);
        self.rollup.add(r, ids.node, lp, rp, source);
        if self.chunk.rows >= ARROW_ROWS {
            self.append_chunk()?;
        }
        if self.rollup.rows.len() >= ROLLUP_FLUSH_GROUPS {
            self.append_rollup()?;
        }
        Ok(())
    }

    /// Batches are looked up once per session; ingest sessions hold a handful of batches. A batch of
    /// a session still committing counts as stored (if that commit fails, this session fails too).
    fn batch_exists(&mut self, batch_id: &str) -> Result<bool> {
        if self.ws.in_flight.batch_ids.contains(batch_id) {
            return Ok(true);
        }
        let n: i64 = self
            .ws
            .conn
            .prepare_cached("SELECT count(*) FROM batches WHERE batch_id = ?")?
            .query_row(params![batch_id], |r| r.get(0))?;
        Ok(n > 0)
    }

    fn append_chunk(&mut self) -> Result<()> {
        if self.chunk.rows == 0 {
            return Ok(());
        }
        let batch = self.chunk.finish()?;
        self.writer.job(append_job("flow_rows", "flow records", batch))
    }

    fn append_rollup(&mut self) -> Result<()> {
        let dicts = self.ws.dicts.as_ref().expect("loaded by begin_ingest");
        if let Some(batch) = self.rollup.take_batch(dicts)? {
            self.writer.job(append_job("flows_hourly", "hourly rollup rows", batch))?;
        }
        Ok(())
    }

    /// Writes the nodes and endpoints this session added to the dictionaries.
    fn append_dictionaries(&mut self) -> Result<()> {
        let dicts = self.ws.dicts.as_ref().expect("loaded by begin_ingest");
        let nodes: Vec<(u32, &str)> = dicts.new_nodes(self.start).collect();
        if !nodes.is_empty() {
            let mut b = BatchBuilder::new(&nodes);
            b.column("node_id", ColType::U32, false, |n| Val::U32(Some(n.0)));
            b.column("name", ColType::Text, false, |n| Val::Text(Some(n.1)));
            self.writer.job(append_job("nodes", "new nodes", b.finish()?))?;
        }
        let endpoints: Vec<_> = dicts.new_endpoints(self.start).collect();
        if !endpoints.is_empty() {
            let mut b = BatchBuilder::new(&endpoints);
            b.column("endpoint_id", ColType::U32, false, |e| Val::U32(Some(e.0)));
            b.column("ip", ColType::Text, false, |e| Val::Ip(e.1.ip));
            for (i, f) in schema::ENDPOINT_TEXT_FIELDS.iter().enumerate() {
                b.column(f, ColType::Text, true, |e| Val::Text(e.1.text[i].as_deref()));
            }
            let batch = b.finish()?;
            self.writer.job(append_job("endpoints", "new endpoints", batch))?;
        }
        Ok(())
    }

    /// Makes the session's batches durable, all or nothing, and waits until they are.
    pub fn commit(mut self) -> Result<IngestReport> {
        let ticket = self.send_commit()?;
        self.ws.wait_ingest(ticket)
    }

    /// Sends the session to commit and returns at once, so that the caller can fetch and convert the
    /// next records while the writer commits these; [`Workspace::wait_ingest`] says when (and
    /// whether) they are stored. Until then nothing may be acknowledged to their sender.
    pub fn commit_in_background(mut self) -> Result<PendingIngest> {
        self.send_commit()
    }

    fn send_commit(&mut self) -> Result<PendingIngest> {
        let context = "committing the ingest transaction (nothing of it was stored)";
        self.append_chunk().context(context)?;
        self.append_rollup().context(context)?;
        self.append_dictionaries().context(context)?;
        let now = Timestamp::now().micros();
        let mut report = IngestReport { origin: self.origin.clone(), ..Default::default() };
        let mut rows = Vec::new();
        let mut batch_ids = Vec::new();
        for (id, state) in &self.batches {
            match state {
                BatchState::New { key, summary: s } => {
                    rows.push(BatchRow {
                        batch_id: id.clone(),
                        key: *key,
                        source: s.source.as_str(),
                        origin: self.origin.clone(),
                        seq: self.ingest_seq,
                        now,
                        records: s.records,
                        bytes_out: s.bytes_out,
                        bytes_in: s.bytes_in,
                        window_start: s.window_start.map(|t| t.micros()),
                        window_end: s.window_end.map(|t| t.micros()),
                    });
                    batch_ids.push(id.clone());
                    report.records_ingested += s.records;
                    report.batches_ingested.push(s.clone());
                }
                BatchState::Existing { records_skipped } => {
                    report.records_skipped += records_skipped;
                    report.batches_skipped.push(id.clone());
                }
            }
        }
        self.writer
            .job(Box::new(move |c: &Connection| {
                let mut ins = c.prepare_cached(
                    "INSERT INTO batches VALUES (?, ?, ?, ?, ?, make_timestamp(?), ?, ?, ?, make_timestamp(?), make_timestamp(?))",
                )?;
                for b in rows {
                    ins.execute(params![
                        b.batch_id,
                        b.key,
                        b.source,
                        b.origin,
                        b.seq,
                        b.now,
                        b.records,
                        b.bytes_out,
                        b.bytes_in,
                        b.window_start,
                        b.window_end,
                    ])?;
                }
                Ok(())
            }))
            .context(context)?;
        self.writer.send(Msg::Commit).context(context)?;
        self.writer.jobs = None;
        self.open = false;
        let q = &mut self.ws.in_flight;
        let ticket = q.next_ticket;
        q.next_ticket += 1;
        q.batch_ids.extend(batch_ids.iter().cloned());
        q.queue.push_back(InFlight {
            ticket,
            done: self.writer.done.take().expect("taken only here or on failure"),
            report,
            start: self.start,
            end: self.ws.dicts.as_ref().expect("loaded by begin_ingest").mark(),
            batch_ids,
            next_batch_key: self.next_batch_key,
            next_ingest_seq: self.ingest_seq + 1,
        });
        Ok(PendingIngest(ticket))
    }
}

/// A `batches` row, owned so the writer thread can insert it.
struct BatchRow {
    batch_id: String,
    key: u32,
    source: &'static str,
    origin: String,
    seq: i64,
    now: i64,
    records: u64,
    bytes_out: u64,
    bytes_in: u64,
    window_start: Option<i64>,
    window_end: Option<i64>,
}

impl Drop for IngestSession<'_> {
    fn drop(&mut self) {
        if self.open {
            // Nothing of an unfinished session may remain: closing the queue makes its thread roll
            // back; the error, if any, is already on its way up.
            self.writer.jobs = None;
            if let Some(d) = self.ws.dicts.as_mut() {
                d.rollback_to(self.start);
            }
            if self.writer.failed {
                // Its thread failed: take the connection back so the next session does not start
                // behind a failed one (the sessions sent before it keep their own outcomes).
                self.ws.reset_writer();
            }
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
    /// Regression (issue "Truth", periods): a record whose window spans hours landed wholly in its
    /// first hour, so a month-long flow-log record made a one-hour period.
    #[test]
    fn a_window_across_hours_is_spread_over_them_exactly() {
        let h = Timestamp::MICROS_PER_HOUR;
        let start = 1_699_999_200 * 1_000_000 + h / 2; // 10:30
        let spread = super::spread_over_hours(start, start + 2 * h, [1000, 1001, 7, 0, 1, 1]);
        let hours: Vec<i64> = spread.iter().map(|(hr, _)| (hr - (start - h / 2)) / h).collect();
        assert_eq!(hours, vec![0, 1, 2]);
        assert_eq!(spread.iter().map(|(_, m)| m[0]).collect::<Vec<_>>(), vec![250, 500, 250]);
        for k in 0..6 {
            let sum: u64 = spread.iter().map(|(_, m)| m[k]).sum();
            assert_eq!(sum, [1000, 1001, 7, 0, 1, 1][k], "measure {k} adds up");
        }
        assert_eq!((spread[0].1[4], spread[2].1[5]), (1, 1), "opened first hour, closed last");

        // Through the workspace: a 30-day record fills 720 hours, and the totals are unchanged.
        let mut ws = Workspace::open_in_memory().unwrap();
        let mut r = rec(1, "month");
        r.window_start = Timestamp::from_secs(1_793_491_200); // 2026-11-01T00:00:00Z
        r.window_end = r.window_start.add_micros(720 * h);
        r.bytes_out = 10 * (1 << 30);
        let mut s = ws.begin_ingest("test").unwrap();
        s.push(&r).unwrap();
        s.commit().unwrap();
        let (hours, min, max): (i64, i64, i64) = ws
            .conn
            .query_row(
                "SELECT count(DISTINCT hour), min(bytes_out)::BIGINT, max(bytes_out)::BIGINT FROM flows_hourly",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .unwrap();
        assert_eq!(hours, 720);
        assert!(max - min <= 1, "evenly spread: {min}..{max}");
        let (raw, hourly) = ws.totals().unwrap();
        assert_eq!(raw, hourly);
        let records: i64 = ws
            .conn
            .query_row("SELECT sum(flow_records)::BIGINT FROM flows_hourly", [], |r| r.get(0))
            .unwrap();
        assert_eq!(records, 1);
    }

    #[test]
    fn rollup_rows_equal_the_sql_aggregate_of_the_raw_rows() {
        use crate::model::Initiator;
        let mut ws = Workspace::open_in_memory().unwrap();
        let mut s = ws.begin_ingest("test").unwrap();
        for i in 0..50_000u64 {
            let mut r = rec(i, &format!("b{}", i % 7));
            r.initiator = [Initiator::Local, Initiator::Remote, Initiator::Unknown][(i % 3) as usize];
            // Windows inside one hour: those that cross hours are spread (tested on their own).
            r.window_start = Timestamp::from_secs(
                1_699_999_200 + (i as i64 % 900) * 37 / 3590 * 3600 + (i as i64 % 97) * 37,
            );
            r.window_end = r.window_start.add_micros(10_000_000);
            if i % 5 == 0 {
                r.remote = crate::model::Endpoint::addr("2600:1f18::17".parse().unwrap(), 443);
                r.ip_version = 6;
            } else if i % 11 == 0 {
                // An IPv4-mapped address is stored as written, in raw rows and rollup alike.
                r.remote = crate::model::Endpoint::addr("::ffff:52.216.8.20".parse().unwrap(), 443);
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

    fn read_all(ws: &Workspace) -> Vec<FlowRecord> {
        let mut got = Vec::new();
        ws.for_each_flow(&FlowFilter::default(), |r| {
            got.push(r);
            Ok(())
        })
        .unwrap();
        got
    }

    fn sorted(mut v: Vec<FlowRecord>) -> Vec<FlowRecord> {
        v.sort_by_key(|r| serde_json::to_string(r).unwrap());
        v
    }

    /// Records with every optional field set or not, IPv6, the same description on both sides.
    fn varied(i: u64, batch: &str) -> FlowRecord {
        let mut r = rec(i, batch);
        if i.is_multiple_of(3) {
            r.local.process = Some(["java", "node"][(i % 2) as usize].into());
            r.local.pid = Some(4000 + (i % 5) as u32);
            r.local.cgroup = Some(format!("/kubepods.slice/pod{}.slice/cri-containerd-{i:x}.scope", i % 4));
            r.local.container_id = Some(format!("{:064x}", i % 4));
            r.local.pod_uid = Some(format!("uid-{}", i % 4));
            r.local.pod = Some(format!("pod-{}", i % 4));
            r.local.namespace = Some("shop".into());
            r.local.workload_kind = Some("Deployment".into());
            r.local.workload_name = Some("checkout".into());
            r.local.service = Some("checkout".into());
            r.local.node = Some(r.node.clone());
            r.local.zone = Some("us-east-1a".into());
            r.local.region = Some("us-east-1".into());
        }
        if i.is_multiple_of(5) {
            r.remote = crate::model::Endpoint::addr("2600:1f18::17".parse().unwrap(), 443);
            r.local.ip = "2600:1f18::1".parse().unwrap();
            r.ip_version = 6;
        }
        if i.is_multiple_of(7) {
            r.remote = r.local.clone();
            r.remote.port = 8080;
            r.remote.pid = Some(1);
        }
        r.proto = [Proto::Tcp, Proto::Udp, Proto::Other][(i % 3) as usize];
        r.initiator = [Initiator::Local, Initiator::Remote, Initiator::Unknown][(i % 3) as usize];
        r.source = Some([Source::Agent, Source::Import, Source::Demo][batch.len() % 3]);
        r
    }

    /// Appends records to a version 1 `flows` table, as egressor of schema 1 stored them.
    fn write_v1_rows(ws: &Workspace, records: &[FlowRecord]) {
        use crate::store::schema::{Val, flow_columns};
        use duckdb::types::{TimeUnit, Value};
        let mut app = ws.conn.appender("flows").unwrap();
        for r in records {
            let row: Vec<Value> = flow_columns()
                .iter()
                .map(|c| match (c.get)(r) {
                    Val::Ts(t) => Value::Timestamp(TimeUnit::Microsecond, t),
                    Val::Text(t) => t.map_or(Value::Null, |t| Value::Text(t.into())),
                    Val::Ip(ip) => Value::Text(ip.to_string()),
                    Val::U8(v) => Value::UTinyInt(v),
                    Val::U16(v) => v.map_or(Value::Null, Value::USmallInt),
                    Val::U32(v) => v.map_or(Value::Null, Value::UInt),
                    Val::U64(v) => Value::UBigInt(v),
                })
                .collect();
            app.append_row(duckdb::appender_params_from_iter(row)).unwrap();
        }
        app.flush().unwrap();
    }

    /// One committed ingest session of `records`.
    fn ingest(ws: &mut Workspace, records: &[FlowRecord]) -> super::IngestReport {
        let mut s = ws.begin_ingest("test").unwrap();
        for r in records {
            s.push(r).unwrap();
        }
        s.commit().unwrap()
    }

    /// A workspace written at schema version 1 (strings in `flows`) opens at the latest version with every
    /// record, batch and rollup row intact, and ingest continues from there.
    #[test]
    fn a_version_1_workspace_migrates_with_every_record_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.duckdb");
        let records: Vec<FlowRecord> =
            (0..2_000).map(|i| varied(i, ["a", "bb", "ccc"][(i % 3) as usize])).collect();
        {
            let ws = Workspace::create_at_version(&path, 1).unwrap();
            assert_eq!(ws.schema_version().unwrap(), 1);
            write_v1_rows(&ws, &records);
            for (seq, b) in ["a", "bb", "ccc"].iter().enumerate() {
                ws.conn
                    .execute(
                        "INSERT INTO batches VALUES (?, ?, 'test', ?, now()::TIMESTAMP, 0, 0, 0, NULL, NULL)",
                        duckdb::params![
                            b,
                            records
                                .iter()
                                .find(|r| r.batch_id.as_deref() == Some(b))
                                .unwrap()
                                .source
                                .unwrap()
                                .as_str(),
                            seq as u64 + 1
                        ],
                    )
                    .unwrap();
            }
        }
        let mut ws = Workspace::open(&path).unwrap();
        // Every migration ran (2: integer storage; 3: Kubernetes metadata, no change to flows).
        assert_eq!(ws.schema_version().unwrap(), crate::store::schema::current_version());
        assert_eq!(crate::store::schema::current_version(), 4);
        assert_eq!(sorted(read_all(&ws)), sorted(records.clone()));
        let views: i64 = ws
            .conn
            .query_row("SELECT count(*) FROM duckdb_views() WHERE view_name = 'flows'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(views, 1);
        // Ingest after the migration: new ids continue after the migrated ones, old batches are known.
        let mut s = ws.begin_ingest("test").unwrap();
        let more: Vec<FlowRecord> = (2_000..2_500).map(|i| varied(i, "dddd")).collect();
        for r in records.iter().take(10).chain(&more) {
            s.push(r).unwrap();
        }
        let rep = s.commit().unwrap();
        assert_eq!((rep.records_ingested, rep.records_skipped), (500, 10));
        let mut all = records;
        all.extend(more);
        assert_eq!(sorted(read_all(&ws)), sorted(all));
    }

    /// A version 1 workspace that the migration cannot carry over whole (a flow whose batch is not
    /// in `batches`) is refused with the reason and left exactly as it was.
    #[test]
    fn a_migration_that_would_lose_rows_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.duckdb");
        {
            let ws = Workspace::create_at_version(&path, 1).unwrap();
            write_v1_rows(&ws, &[varied(0, "kept"), varied(1, "orphan")]);
            ws.conn
                .execute_batch(
                    "INSERT INTO batches VALUES ('kept', 'import', 'test', 1, now()::TIMESTAMP, 1, 0, 0, NULL, NULL)",
                )
                .unwrap();
        }
        let err = format!("{:#}", Workspace::open(&path).err().expect("the migration must refuse"));
        assert!(
            err.contains("1 flow row(s) could not be carried over") && err.contains("unchanged"),
            "{err}"
        );
        let ws = Workspace::create_at_version(&path, 1).unwrap();
        assert_eq!(ws.schema_version().unwrap(), 1);
        let rows: i64 = ws.conn.query_row("SELECT count(*) FROM flows", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 2, "both version 1 rows are still there");
    }

    /// The dictionary entries of a session that rolls back are forgotten with it: the next session
    /// gets the same ids for other endpoints and every record reads back as written.
    #[test]
    fn dictionary_entries_of_a_rolled_back_session_do_not_leak() {
        let mut ws = Workspace::open_in_memory().unwrap();
        let first: Vec<FlowRecord> = (0..300).map(|i| varied(i, "one")).collect();
        ingest(&mut ws, &first);
        {
            let mut s = ws.begin_ingest("test").unwrap();
            for i in 0..300 {
                let mut r = varied(i, "lost");
                r.node = format!("lost-node-{i}");
                r.remote.pod = Some(format!("lost-{i}"));
                s.push(&r).unwrap();
            }
            // dropped without commit
        }
        let mut later: Vec<FlowRecord> = (0..300)
            .map(|i| {
                let mut r = varied(i, "two");
                r.node = format!("later-node-{}", i % 4);
                r.remote.namespace = Some(format!("later-{i}"));
                r
            })
            .collect();
        ingest(&mut ws, &later);
        let mut all = first;
        all.append(&mut later);
        assert_eq!(sorted(read_all(&ws)), sorted(all.clone()));
        let (n, e): (i64, i64) = ws
            .conn
            .query_row(
                "SELECT (SELECT count(*) FROM nodes), (SELECT max(endpoint_id) + 1 - count(*) FROM endpoints)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(n, 3 + 4, "nodes of the rolled-back session are not stored");
        assert_eq!(e, 0, "endpoint ids stay dense");
        // A new process loads the dictionaries from the tables and resolves the same ids.
        ws.dicts = None;
        let third: Vec<FlowRecord> = (0..50).map(|i| varied(i, "three")).collect();
        ingest(&mut ws, &third);
        all.extend(third);
        assert_eq!(sorted(read_all(&ws)), sorted(all));
        let endpoints_after: i64 =
            ws.conn.query_row("SELECT count(*) FROM endpoints", [], |r| r.get(0)).unwrap();
        let distinct: i64 = ws
            .conn
            .query_row(
                "SELECT count(*) FROM (SELECT DISTINCT ip, process, cgroup, container_id, pod_uid, pod, namespace,
                     workload_kind, workload_name, service, node, zone, region FROM endpoints)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(endpoints_after, distinct, "an endpoint already stored is not stored again");
        let (raw, hourly) = ws.totals().unwrap();
        assert_eq!(raw, hourly);
    }

    #[test]
    fn stored_codes_match_the_names() {
        use crate::store::schema::*;
        for p in Proto::ALL {
            assert_eq!(PROTO_CODES[proto_code(*p) as usize], (proto_code(*p), p.as_str()));
        }
        for i in Initiator::ALL {
            assert_eq!(INITIATOR_CODES[initiator_code(*i) as usize], (initiator_code(*i), i.as_str()));
        }
        for s in Source::ALL {
            assert_eq!(SOURCE_CODES[source_code(*s) as usize], (source_code(*s), s.as_str()));
        }
    }

    /// A failure on the writer thread (here: the endpoints table is gone) reaches the caller at
    /// commit, nothing of the session is stored, and the same records ingest once it is fixed.
    #[test]
    fn a_failure_in_the_writer_surfaces_and_leaves_nothing() {
        let mut ws = Workspace::open_in_memory().unwrap();
        let first: Vec<FlowRecord> = (0..100).map(|i| varied(i, "ok")).collect();
        ingest(&mut ws, &first);
        ws.conn.execute_batch("DROP VIEW flows; ALTER TABLE endpoints RENAME TO endpoints_away;").unwrap();
        let bad: Vec<FlowRecord> = (0..50_000)
            .map(|i| {
                let mut r = varied(i, "bad");
                r.remote.pod = Some(format!("new-{}", i % 300));
                r
            })
            .collect();
        let mut s = ws.begin_ingest("test").unwrap();
        for r in &bad {
            s.push(r).unwrap();
        }
        let err = format!("{:#}", s.commit().unwrap_err());
        assert!(err.contains("endpoints") && err.contains("nothing of it was stored"), "{err}");
        ws.conn.execute_batch("ALTER TABLE endpoints_away RENAME TO endpoints;").unwrap();
        ws.conn.execute_batch(&crate::store::schema::create_flows_view_sql()).unwrap();
        let info = ws.info().unwrap();
        assert_eq!((info.flow_records, info.batches), (100, 1));
        assert_eq!(ws.totals().unwrap().0, ws.totals().unwrap().1, "no rollup rows of the failed session");
        assert_eq!(sorted(read_all(&ws)), sorted(first.clone()));
        assert_eq!(ingest(&mut ws, &bad).records_ingested, 50_000);
        let mut all = first;
        all.extend(bad);
        assert_eq!(sorted(read_all(&ws)), sorted(all));
    }

    fn send(ws: &mut Workspace, records: &[FlowRecord]) -> anyhow::Result<super::PendingIngest> {
        let mut s = ws.begin_ingest("test")?;
        for r in records {
            s.push(r)?;
        }
        s.commit_in_background()
    }

    /// Sessions sent to commit in the background (a pull's pages): the next one converts while the
    /// previous commits, sees its batches as stored, continues its batch keys and dictionary ids, and
    /// everything reads back once waited for.
    #[test]
    fn background_commits_store_every_session_once_in_order() {
        let mut ws = Workspace::open_in_memory().unwrap();
        let pages: Vec<Vec<FlowRecord>> = (0..4u64)
            .map(|p| {
                (0..30_000u64)
                    .map(|i| {
                        let mut r = varied(p * 30_000 + i, &format!("page{p}-b{}", i % 3));
                        r.remote.pod = Some(format!("p{p}-{}", i % 500)); // new endpoints each page
                        r
                    })
                    .collect()
            })
            .collect();
        let t0 = send(&mut ws, &pages[0]).unwrap();
        let t1 = send(&mut ws, &pages[1]).unwrap();
        // Page 0 again while it is (probably) still committing: its batches count as stored.
        let again = send(&mut ws, &pages[0]).unwrap();
        let t2 = send(&mut ws, &pages[2]).unwrap();
        assert_eq!(ws.wait_ingest(t0).unwrap().records_ingested, 30_000);
        assert_eq!(ws.wait_ingest(t1).unwrap().records_ingested, 30_000);
        let a = ws.wait_ingest(again).unwrap();
        assert_eq!((a.records_ingested, a.records_skipped, a.batches_skipped.len()), (0, 30_000, 3));
        assert_eq!(ws.wait_ingest(t2).unwrap().records_ingested, 30_000);
        let t3 = send(&mut ws, &pages[3]).unwrap();
        drop(ws.wait_ingest(t3).unwrap());
        let all: Vec<FlowRecord> = pages.concat();
        assert_eq!(sorted(read_all(&ws)), sorted(all));
        let (keys, distinct, seqs): (i64, i64, i64) = ws
            .conn
            .query_row(
                "SELECT max(batch_key) + 1, count(DISTINCT batch_key), count(DISTINCT ingest_seq) FROM batches",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((keys, distinct, seqs), (12, 12, 4), "batch keys dense, one ingest_seq per session");
        let (raw, hourly) = ws.totals().unwrap();
        assert_eq!(raw, hourly);
        assert!(ws.wait_ingest(super::PendingIngest(0)).is_err(), "a ticket is answered once");
    }

    /// A background commit that fails takes the session converted behind it down with it (its rows
    /// may use the failed session's dictionary ids): neither is stored, and both say so. Sessions
    /// begun after the failure was seen are not affected, and the same records ingest then.
    #[test]
    fn a_failed_background_commit_refuses_the_session_behind_it_and_nothing_else() {
        let mut ws = Workspace::open_in_memory().unwrap();
        let first: Vec<FlowRecord> = (0..100).map(|i| varied(i, "ok")).collect();
        ingest(&mut ws, &first);
        let page = |p: u64| -> Vec<FlowRecord> {
            (0..40_000)
                .map(|i| {
                    let mut r = varied(i, &format!("page{p}"));
                    r.remote.pod = Some(format!("new-{p}-{}", i % 300));
                    r
                })
                .collect()
        };
        let (a, b) = (page(1), page(2));
        ws.conn.execute_batch("DROP VIEW flows; ALTER TABLE endpoints RENAME TO endpoints_away;").unwrap();
        let ta = send(&mut ws, &a).unwrap();
        // The session behind it fails at a send (if its writer already learned) or at its wait.
        let behind = send(&mut ws, &b);
        let err = format!("{:#}", ws.wait_ingest(ta).unwrap_err());
        assert!(err.contains("endpoints") && err.contains("nothing of it was stored"), "{err}");
        match behind {
            Err(e) => assert!(format!("{e:#}").contains("that commit failed"), "{e:#}"),
            Ok(tb) => {
                let e = format!("{:#}", ws.wait_ingest(tb).unwrap_err());
                assert!(e.contains("not stored"), "{e}");
            }
        }
        ws.conn.execute_batch("ALTER TABLE endpoints_away RENAME TO endpoints;").unwrap();
        ws.conn.execute_batch(&crate::store::schema::create_flows_view_sql()).unwrap();
        let info = ws.info().unwrap();
        assert_eq!((info.flow_records, info.batches), (100, 1));
        assert_eq!(sorted(read_all(&ws)), sorted(first.clone()));
        // Not poisoned: both pages ingest now, in the background too.
        let ta = send(&mut ws, &a).unwrap();
        let tb = send(&mut ws, &b).unwrap();
        assert_eq!(ws.wait_ingest(ta).unwrap().records_ingested, 40_000);
        assert_eq!(ws.wait_ingest(tb).unwrap().records_ingested, 40_000);
        let mut all = first;
        all.extend(a);
        all.extend(b);
        assert_eq!(sorted(read_all(&ws)), sorted(all));
        let (raw, hourly) = ws.totals().unwrap();
        assert_eq!(raw, hourly);
    }

    /// A session abandoned behind a background commit rolls back alone; and a workspace closed with
    /// a commit still in flight finishes it first (it reads back after reopening).
    #[test]
    fn abandoning_behind_a_background_commit_and_closing_with_one_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ws.duckdb");
        let a: Vec<FlowRecord> = (0..20_000).map(|i| varied(i, "a")).collect();
        let c: Vec<FlowRecord> = (0..20_000).map(|i| varied(i + 20_000, "c")).collect();
        {
            let mut ws = Workspace::open(&path).unwrap();
            let ta = send(&mut ws, &a).unwrap();
            {
                let mut s = ws.begin_ingest("test").unwrap();
                for i in 0..20_000 {
                    let mut r = varied(i, "abandoned");
                    r.remote.pod = Some(format!("gone-{i}"));
                    s.push(&r).unwrap();
                }
                // dropped without commit
            }
            assert_eq!(ws.wait_ingest(ta).unwrap().records_ingested, 20_000);
            let _in_flight = send(&mut ws, &c).unwrap();
            // closed here without waiting
        }
        let ws = Workspace::open(&path).unwrap();
        let mut all = a;
        all.extend(c);
        assert_eq!(sorted(read_all(&ws)), sorted(all));
        let gone: i64 = ws
            .conn
            .query_row("SELECT count(*) FROM endpoints WHERE pod LIKE 'gone-%'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(gone, 0, "the abandoned session's endpoints are not stored");
        assert_eq!(ws.info().unwrap().batches, 2);
    }

    /// A workspace file written with DuckDB's default row groups (as egressor wrote them before
    /// ROW_GROUP_ROWS) opens, takes pages large enough to fill row groups, and reads back whole.
    #[test]
    fn a_file_with_default_row_groups_keeps_working() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.duckdb");
        let old: Vec<FlowRecord> = (0..5_000).map(|i| varied(i, "old")).collect();
        {
            // Opened as before: a plain connection to the file, default row group size.
            let mut ws = Workspace::from_conn(duckdb::Connection::open(&path).unwrap(), None);
            ws.migrate(crate::store::schema::current_version()).unwrap();
            ingest(&mut ws, &old);
        }
        let new: Vec<FlowRecord> =
            (0..100_000).map(|i| varied(i + 5_000, &format!("new{}", i / 25_000))).collect();
        {
            let mut ws = Workspace::open(&path).unwrap();
            let t = send(&mut ws, &new).unwrap();
            drop(ws.wait_ingest(t).unwrap());
            ws.checkpoint().unwrap();
        }
        let ws = Workspace::open(&path).unwrap();
        let mut all = old;
        all.extend(new);
        assert_eq!(sorted(read_all(&ws)), sorted(all));
        let (raw, hourly) = ws.totals().unwrap();
        assert_eq!(raw, hourly);
    }
}
