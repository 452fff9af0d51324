//! The workspace: the only module that touches DuckDB.
//!
//! A workspace is one DuckDB file on the user's machine. Flow records arrive in batches
//! ([`ingest::IngestSession`]) that are transactional (all of a batch or nothing) and idempotent
//! (a batch id already present is skipped and reported), and each ingest updates the hourly rollup
//! (`flows_hourly`) in the same transaction, so raw rows and rollups never disagree.

mod anomalies;
mod cluster;
mod dictionary;
pub mod ingest;
mod query;
pub mod replay;
pub mod schema;

pub use anomalies::{AnomalyState, DemoEvent};
pub use ingest::{IngestReport, IngestSession};
pub use query::{FlowFilter, WORKSPACE_INFO_SCHEMA, WorkspaceInfo};

use crate::model::Timestamp;
use anyhow::{Context, Result, bail};
use duckdb::{Connection, params};
use std::path::{Path, PathBuf};

/// Retention defaults: raw flows are large and only needed for drill-down; rollups drive cost,
/// graphs and baselines and are kept for more than a year so month-over-month comparisons work.
pub const DEFAULT_RAW_RETENTION_DAYS: u32 = 30;
pub const DEFAULT_ROLLUP_RETENTION_DAYS: u32 = 400;

pub struct Workspace {
    conn: Connection,
    path: Option<PathBuf>,
    /// The node and endpoint dictionaries, loaded by the first ingest of this process.
    dicts: Option<dictionary::Dictionaries>,
    /// The second connection ingest sessions write through (on their writer threads), kept between
    /// sessions.
    writer: Option<ingest::WriterLink>,
    /// Sessions sent to commit in the background and not yet waited for.
    in_flight: ingest::InFlightQueue,
}

/// The name the workspace file is attached under; every connection to it starts with `USE` of it.
const CATALOG: &str = "workspace";

/// Rows per row group in workspace files. DuckDB writes the full row groups of a transaction to the
/// file while it appends (compressed, once), and only the rest through the write-ahead log at
/// commit. With the default 122,880 rows a pull's page (~100,000 records) never fills one, so every
/// record went through the log and was written again at the next checkpoint; at 32,768 most of a
/// page skips the log and ingest ran 1.34x as fast (docs/benchmarks.md). 16,384 compressed worse
/// (33 bytes/record instead of 20). Files written with the default size open the same way: the
/// option applies to row groups written from then on.
const ROW_GROUP_ROWS: u32 = 32_768;

/// Opens the workspace file through an in-memory connection, attached with [`ROW_GROUP_ROWS`].
fn attach(path: &Path) -> Result<Connection> {
    let name = path
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("the workspace path {} is not valid UTF-8", path.display()))?;
    let quoted = name.replace('\'', "''");
    let conn = Connection::open_in_memory()?;
    // Spill files next to the workspace, as DuckDB does for a file it opens directly (for an
    // in-memory database it would use `.tmp` in the current directory).
    conn.execute_batch(&format!(
        "SET temp_directory = '{quoted}.tmp';
         ATTACH '{quoted}' AS {CATALOG} (ROW_GROUP_SIZE {ROW_GROUP_ROWS}); USE {CATALOG};"
    ))?;
    Ok(conn)
}

impl Drop for Workspace {
    /// Commits sent in the background finish before the workspace closes (they were sent to be
    /// stored; whoever sent them learns the outcome only by waiting, so a failure here is logged).
    fn drop(&mut self) {
        if let Err(e) = self.wait_all_ingests() {
            tracing::error!("{e:#}");
        }
        if let Some(ingest::WriterLink::Busy(h)) = self.writer.take() {
            let _ = h.join();
        }
    }
}

impl Workspace {
    /// Opens (creating if needed) the workspace file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create workspace directory {}", dir.display()))?;
        }
        let conn = attach(path).with_context(|| {
            format!("cannot open workspace {} (is another egressor process writing to it?)", path.display())
        })?;
        let mut ws = Workspace::from_conn(conn, Some(path));
        ws.migrate(schema::current_version()).with_context(|| format!("workspace {}", path.display()))?;
        Ok(ws)
    }

    /// A workspace file at an older schema version, for migration tests.
    #[cfg(test)]
    pub(crate) fn create_at_version(path: &Path, version: u32) -> Result<Self> {
        let mut ws = Workspace::from_conn(attach(path)?, Some(path));
        ws.migrate(version)?;
        Ok(ws)
    }

    fn from_conn(conn: Connection, path: Option<&Path>) -> Self {
        Workspace {
            conn,
            path: path.map(Path::to_path_buf),
            dicts: None,
            writer: None,
            in_flight: Default::default(),
        }
    }

    /// For processes that only ingest (pull, import, demo): DuckDB does its work on the calling
    /// threads, without worker threads. Appends and commits have nothing for workers to do in
    /// parallel, but an idle worker polling for tasks took ~15% of the CPU samples of an ingest on
    /// two cores, beside the two threads that do the work; without it ingest ran ~7% faster
    /// (docs/benchmarks.md). Queries (cost, graph, export) keep one worker per core.
    pub fn tune_for_ingest(&self) -> Result<()> {
        self.conn.execute_batch("SET threads = 1;").context("setting DuckDB threads for ingest")
    }

    /// A second handle on this workspace, for reading on another thread while this one goes on
    /// (`top` analyses anomalies beside its replay). Same database, its own connection.
    pub fn reader(&self) -> Result<Workspace> {
        Ok(Workspace::from_conn(self.second_connection()?, self.path.as_deref()))
    }

    /// Another connection to the same workspace (for the ingest writer thread), using the same
    /// database as this one.
    fn second_connection(&self) -> Result<Connection> {
        let conn = self.conn.try_clone()?;
        if self.path.is_some() {
            conn.execute_batch(&format!("USE {CATALOG};"))?;
        }
        Ok(conn)
    }

    /// A throw-away workspace in memory, for tests and dry runs.
    pub fn open_in_memory() -> Result<Self> {
        let mut ws = Workspace::from_conn(Connection::open_in_memory()?, None);
        ws.migrate(schema::current_version())?;
        Ok(ws)
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Applies the migrations up to `target`, each in its own transaction.
    fn migrate(&mut self, target: u32) -> Result<()> {
        self.conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version INTEGER PRIMARY KEY,
                 applied_at TIMESTAMP NOT NULL,
                 description VARCHAR NOT NULL)",
        )?;
        let have = self.schema_version()?;
        let latest = schema::current_version();
        if have > latest {
            bail!(
                "the workspace has schema version {have} but this egressor understands up to {latest}; \
                 upgrade egressor (the workspace was not modified)"
            );
        }
        for m in schema::migrations().into_iter().filter(|m| m.version > have && m.version <= target) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(&(m.sql)())
                .with_context(|| format!("migration {} ({}) failed", m.version, m.description))?;
            tx.execute(
                "INSERT INTO schema_migrations VALUES (?, make_timestamp(?), ?)",
                params![m.version, Timestamp::now().micros(), m.description],
            )?;
            tx.commit()?;
        }
        Ok(())
    }

    pub fn schema_version(&self) -> Result<u32> {
        let v: Option<i64> =
            self.conn.query_row("SELECT max(version) FROM schema_migrations", [], |r| r.get(0))?;
        Ok(v.unwrap_or(0) as u32)
    }

    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        let mut st = self.conn.prepare("SELECT value FROM settings WHERE key = ?")?;
        let mut rows = st.query(params![key])?;
        Ok(match rows.next()? {
            Some(r) => Some(r.get(0)?),
            None => None,
        })
    }

    pub fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO settings VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    /// The topology `cost` uses when none is given: (TOML text, where it came from).
    pub fn topology(&self) -> Result<Option<(String, String)>> {
        let origin = self.setting("topology_origin")?.unwrap_or_else(|| "workspace".into());
        Ok(self.setting("topology")?.map(|t| (t, origin)))
    }

    /// Stores a (checked) topology as the workspace default.
    pub fn set_topology(&self, text: &str, origin: &str) -> Result<()> {
        self.set_setting("topology", text)?;
        self.set_setting("topology_origin", origin)
    }

    /// Retention in days for (raw flows, hourly rollups).
    pub fn retention(&self) -> Result<(u32, u32)> {
        let get = |k: &str, d: u32| -> Result<u32> {
            match self.setting(k)? {
                Some(v) => v.parse().with_context(|| format!("setting {k} = {v:?} is not a number of days")),
                None => Ok(d),
            }
        };
        Ok((
            get("retention.raw_days", DEFAULT_RAW_RETENTION_DAYS)?,
            get("retention.rollup_days", DEFAULT_ROLLUP_RETENTION_DAYS)?,
        ))
    }

    pub fn set_retention(&self, raw_days: Option<u32>, rollup_days: Option<u32>) -> Result<()> {
        let (cur_raw, cur_roll) = self.retention()?;
        let raw = raw_days.unwrap_or(cur_raw);
        let roll = rollup_days.unwrap_or(cur_roll);
        if raw == 0 || roll == 0 {
            bail!("retention must be at least 1 day");
        }
        if roll < raw {
            bail!("rollup retention ({roll} days) must not be shorter than raw retention ({raw} days)");
        }
        self.set_setting("retention.raw_days", &raw.to_string())?;
        self.set_setting("retention.rollup_days", &roll.to_string())
    }

    /// Deletes raw flows and rollups older than the retention settings, and merges rollup rows that
    /// separate ingests wrote for the same hour and key. Batch ids are kept forever (they are tiny) so
    /// that re-pulling or re-importing an old batch stays a no-op, and so are the node and endpoint
    /// dictionaries (one row per distinct endpoint, not per flow).
    pub fn prune(&mut self, now: Timestamp) -> Result<PruneReport> {
        let (raw_days, rollup_days) = self.retention()?;
        let raw_cut = now.add_micros(-(raw_days as i64) * Timestamp::MICROS_PER_DAY);
        let roll_cut = now.add_micros(-(rollup_days as i64) * Timestamp::MICROS_PER_DAY);
        let tx = self.conn.transaction()?;
        let raw_deleted = tx.execute(
            "DELETE FROM flow_rows WHERE window_start < make_timestamp(?)",
            params![raw_cut.micros()],
        )?;
        let rollup_deleted = tx
            .execute("DELETE FROM flows_hourly WHERE hour < make_timestamp(?)", params![roll_cut.micros()])?;
        let before: i64 = tx.query_row("SELECT count(*) FROM flows_hourly", [], |r| r.get(0))?;
        let dims = schema::ROLLUP_DIMENSIONS.join(", ");
        let sums: Vec<String> = schema::ROLLUP_MEASURES
            .iter()
            .chain(std::iter::once(&"flow_records"))
            .map(|m| format!("sum({m})::UBIGINT AS {m}"))
            .collect();
        tx.execute_batch(&format!(
            "CREATE TEMP TABLE hourly_compacted AS
                 SELECT hour, {dims}, service_port, {sums} FROM flows_hourly
                 GROUP BY ALL;
             DELETE FROM flows_hourly;
             INSERT INTO flows_hourly SELECT * FROM hourly_compacted;
             DROP TABLE hourly_compacted;",
            sums = sums.join(", ")
        ))?;
        let after: i64 = tx.query_row("SELECT count(*) FROM flows_hourly", [], |r| r.get(0))?;
        tx.commit()?;
        self.conn.execute_batch("CHECKPOINT")?;
        Ok(PruneReport {
            raw_cutoff: raw_cut,
            rollup_cutoff: roll_cut,
            raw_deleted: raw_deleted as u64,
            rollup_deleted: rollup_deleted as u64,
            rollup_rows_merged: (before - after).max(0) as u64,
        })
    }

    /// Stores the ground truth of a demo scenario (kept when the same scenario is written again).
    pub fn record_demo_events(&mut self, seed: u64, events: &[crate::model::LabelledEvent]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut st = tx.prepare(
                "INSERT INTO demo_events VALUES (?, ?, make_timestamp(?), make_timestamp(?), ?, ?, ?, ?)
                 ON CONFLICT (event_id) DO NOTHING",
            )?;
            for e in events {
                st.execute(params![
                    e.event_id,
                    e.kind,
                    e.started_at.micros(),
                    e.ended_at.micros(),
                    e.subject,
                    e.remote,
                    e.description,
                    seed
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Forces DuckDB to write the WAL into the main file (so size on disk is the compressed size).
    pub fn checkpoint(&self) -> Result<()> {
        self.conn.execute_batch("CHECKPOINT")?;
        Ok(())
    }
}

/// The version of `egressor workspace prune --output json` (docs/schemas/prune.v1.json).
pub const PRUNE_SCHEMA: &str = "egressor.prune/v1";

#[derive(Debug, serde::Serialize)]
pub struct PruneReport {
    pub raw_cutoff: Timestamp,
    pub rollup_cutoff: Timestamp,
    pub raw_deleted: u64,
    pub rollup_deleted: u64,
    pub rollup_rows_merged: u64,
}

#[cfg(test)]
mod duckdb_build_tests {
    /// The DuckDB a build links is the one libduckdb-sys =1.20000.1 bundles, whether compiled
    /// (feature `bundled-duckdb`) or prebuilt (`cargo xtask setup --prebuilt-duckdb`, pinned in
    /// xtask as DUCKDB_VERSION / DUCKDB_SOURCE_ID): workspace files and results must not depend on
    /// how egressor was built. Bumping the duckdb crate fails here until both agree again.
    #[test]
    fn linked_duckdb_is_the_pinned_build() {
        let conn = duckdb::Connection::open_in_memory().unwrap();
        let (version, source_id): (String, String) = conn
            .query_row("SELECT library_version, source_id FROM pragma_version()", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((version.as_str(), source_id.as_str()), ("v2.0.0", "d54cbbe3df"));
    }
}
