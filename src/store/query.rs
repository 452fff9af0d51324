//! Typed reads from the workspace: flow records in a time range, and the facts `workspace info` shows.

use super::Workspace;
use super::schema::{self, ColType};
use crate::model::{Endpoint, FlowRecord, Initiator, Party, Proto, Source, Timestamp, TrafficRow};
use anyhow::{Context, Result, anyhow};
use duckdb::{Row, params_from_iter, types::Value};
use serde::Serialize;

/// Which flows to read: windows that start in `[since, until)`, oldest first.
#[derive(Debug, Clone, Default)]
pub struct FlowFilter {
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub limit: Option<u64>,
}

impl FlowFilter {
    /// The WHERE clause (on `window_start`) and its parameters, shared by every flows query.
    pub(crate) fn where_sql(&self, ts_col: &str) -> (String, Vec<Value>) {
        let mut conds = Vec::new();
        let mut ps = Vec::new();
        if let Some(s) = self.since {
            conds.push(format!("{ts_col} >= make_timestamp(?)"));
            ps.push(Value::BigInt(s.micros()));
        }
        if let Some(u) = self.until {
            conds.push(format!("{ts_col} < make_timestamp(?)"));
            ps.push(Value::BigInt(u.micros()));
        }
        let sql = if conds.is_empty() { String::new() } else { format!("WHERE {}", conds.join(" AND ")) };
        (sql, ps)
    }
}

/// The SELECT list that reads `flows` back in schema order (timestamps as epoch microseconds).
pub(crate) fn flow_select_list() -> String {
    schema::flow_columns()
        .iter()
        .map(|c| match c.ty {
            ColType::Timestamp => format!("epoch_us({})", c.name),
            _ => c.name.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rebuilds a record from a row selected with [`flow_select_list`]. Provenance (`batch_id`,
/// `source`) may be NULL in foreign Parquet files; the importer assigns it then.
pub(crate) fn record_from_row(row: &Row<'_>) -> Result<FlowRecord> {
    let cols = schema::flow_columns();
    // Errors name the column, so a bad Parquet row says which field is at fault.
    let text = |at: usize| -> Result<String> {
        row.get::<_, Option<String>>(at)?.ok_or_else(|| anyhow!("{}: missing value", cols[at].name))
    };
    let endpoint = |at: usize| -> Result<Endpoint> {
        let ip = text(at)?;
        Ok(Endpoint {
            ip: ip.parse().map_err(|_| anyhow!("{}: {ip:?} is not an IP address", cols[at].name))?,
            port: row.get(at + 1).with_context(|| cols[at + 1].name)?,
            process: row.get(at + 2)?,
            pid: row.get(at + 3)?,
            cgroup: row.get(at + 4)?,
            container_id: row.get(at + 5)?,
            pod_uid: row.get(at + 6)?,
            pod: row.get(at + 7)?,
            namespace: row.get(at + 8)?,
            workload_kind: row.get(at + 9)?,
            workload_name: row.get(at + 10)?,
            service: row.get(at + 11)?,
            node: row.get(at + 12)?,
            zone: row.get(at + 13)?,
            region: row.get(at + 14)?,
        })
    };
    let e = 3 + 2 * schema::ENDPOINT_COLUMNS;
    let num = |at: usize| -> Result<u64> {
        row.get::<_, Option<u64>>(at)?.ok_or_else(|| anyhow!("{}: missing value", cols[at].name))
    };
    let proto = text(e)?;
    let initiator = text(e + 2)?;
    let source: Option<String> = row.get(e + 10)?;
    let u32_of = |at: usize| -> Result<u32> {
        u32::try_from(num(at)?).map_err(|_| anyhow!("{}: out of range", cols[at].name))
    };
    Ok(FlowRecord {
        window_start: Timestamp::from_micros(
            row.get::<_, Option<i64>>(0)?.ok_or_else(|| anyhow!("window_start: missing value"))?,
        ),
        window_end: Timestamp::from_micros(
            row.get::<_, Option<i64>>(1)?.ok_or_else(|| anyhow!("window_end: missing value"))?,
        ),
        node: text(2)?,
        local: endpoint(3)?,
        remote: endpoint(3 + schema::ENDPOINT_COLUMNS)?,
        proto: Proto::parse(&proto)
            .ok_or_else(|| anyhow!("proto: unknown value {proto:?} (tcp, udp, other)"))?,
        ip_version: u8::try_from(num(e + 1)?).map_err(|_| anyhow!("ip_version: out of range"))?,
        initiator: Initiator::parse(&initiator)
            .ok_or_else(|| anyhow!("initiator: unknown value {initiator:?} (local, remote, unknown)"))?,
        bytes_out: num(e + 3)?,
        bytes_in: num(e + 4)?,
        packets_out: num(e + 5)?,
        packets_in: num(e + 6)?,
        connections_opened: u32_of(e + 7)?,
        connections_closed: u32_of(e + 8)?,
        batch_id: row.get(e + 9)?,
        source: match source {
            Some(s) => Some(
                Source::parse(&s)
                    .ok_or_else(|| anyhow!("source: unknown value {s:?} (agent, import, demo)"))?,
            ),
            None => None,
        },
    })
}

/// The version of `egressor workspace info --output json` (docs/schemas/workspace-info.v2.json).
pub const WORKSPACE_INFO_SCHEMA: &str = "egressor.workspace-info/v2";

#[derive(Debug, Serialize)]
pub struct WorkspaceInfo {
    pub path: Option<String>,
    /// The version of the workspace's tables (`schema_migrations`, docs/data-model.md).
    pub database_schema_version: u32,
    pub flow_records: u64,
    pub hourly_rollup_rows: u64,
    pub batches: u64,
    pub first_window: Option<Timestamp>,
    pub last_window: Option<Timestamp>,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub records_by_source: Vec<(String, u64)>,
    pub size_on_disk_bytes: u64,
    pub raw_retention_days: u32,
    pub rollup_retention_days: u32,
}

/// Column names and rows of text values (`None` for NULL).
pub type TextTable = (Vec<String>, Vec<Vec<Option<String>>>);

impl Workspace {
    /// Calls `each` for every flow matching `filter`, in a total order (window first, then every column,
    /// so two workspaces with the same rows export byte-identical files); stops at the first error.
    pub fn for_each_flow(
        &self,
        filter: &FlowFilter,
        mut each: impl FnMut(FlowRecord) -> Result<()>,
    ) -> Result<u64> {
        let (where_sql, ps) = filter.where_sql("window_start");
        let limit = filter.limit.map(|l| format!("LIMIT {l}")).unwrap_or_default();
        let sql = format!("SELECT {} FROM flows {where_sql} ORDER BY ALL {limit}", flow_select_list());
        let mut st = self.conn.prepare(&sql)?;
        let mut rows = st.query(params_from_iter(ps))?;
        let mut n = 0;
        while let Some(row) = rows.next()? {
            each(record_from_row(row)?)?;
            n += 1;
        }
        Ok(n)
    }

    /// Calls `each` for every flow whose window overlaps `[since, until)` (a record of zero length
    /// counts where it starts), in the same order as [`Workspace::for_each_flow`].
    pub fn for_each_flow_overlapping(
        &self,
        since: Timestamp,
        until: Timestamp,
        mut each: impl FnMut(FlowRecord) -> Result<()>,
    ) -> Result<u64> {
        let sql = format!(
            "SELECT {} FROM flows
             WHERE window_start < make_timestamp(?)
               AND (window_end > make_timestamp(?) OR window_start >= make_timestamp(?))
             ORDER BY ALL",
            flow_select_list()
        );
        let mut st = self.conn.prepare(&sql)?;
        let mut rows = st.query(duckdb::params![until.micros(), since.micros(), since.micros()])?;
        let mut n = 0;
        while let Some(row) = rows.next()? {
            each(record_from_row(row)?)?;
            n += 1;
        }
        Ok(n)
    }

    /// Writes the matching flows to a Parquet file with DuckDB's writer (columns as in `flows`).
    pub fn export_parquet(&self, filter: &FlowFilter, out: &std::path::Path) -> Result<u64> {
        let (where_sql, ps) = filter.where_sql("window_start");
        let limit = filter.limit.map(|l| format!("LIMIT {l}")).unwrap_or_default();
        let target = out.to_str().ok_or_else(|| anyhow!("output path {} is not UTF-8", out.display()))?;
        let sql = format!(
            "COPY (SELECT {} FROM flows {where_sql} ORDER BY ALL {limit}) \
             TO '{}' (FORMAT parquet, COMPRESSION zstd)",
            schema::flow_column_list(),
            target.replace('\'', "''")
        );
        let n = self
            .conn
            .execute(&sql, params_from_iter(ps))
            .with_context(|| format!("writing {}", out.display()))?;
        Ok(n as u64)
    }

    /// Any Parquet file as text: its column names and every value cast to VARCHAR (NULL as
    /// `None`). For files egressor reads but does not store, such as a Cost and Usage Report.
    pub fn read_parquet_text(file: &std::path::Path) -> Result<TextTable> {
        let conn = duckdb::Connection::open_in_memory()?;
        let path = file.to_str().ok_or_else(|| anyhow!("path {} is not UTF-8", file.display()))?;
        let quoted = path.replace('\'', "''");
        let mut st = conn
            .prepare(&format!("DESCRIBE SELECT * FROM read_parquet('{quoted}')"))
            .with_context(|| format!("cannot read {} as Parquet", file.display()))?;
        let names: Vec<String> = st.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<_, _>>()?;
        let list: Vec<String> =
            names.iter().map(|n| format!("CAST(\"{}\" AS VARCHAR)", n.replace('"', "\"\""))).collect();
        let mut st = conn.prepare(&format!("SELECT {} FROM read_parquet('{quoted}')", list.join(", ")))?;
        let mut rows = st.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push((0..names.len()).map(|i| row.get::<_, Option<String>>(i)).collect::<Result<_, _>>()?);
        }
        Ok((names, out))
    }

    /// Reads the rows of a Parquet file written by [`Workspace::export_parquet`] (or by anyone using
    /// the same column names), handing each to `each` with its 1-based row number.
    pub fn read_parquet_flows(
        &self,
        file: &std::path::Path,
        mut each: impl FnMut(u64, Result<FlowRecord>) -> Result<()>,
    ) -> Result<()> {
        let path = file.to_str().ok_or_else(|| anyhow!("path {} is not UTF-8", file.display()))?;
        let quoted = path.replace('\'', "''");
        let mut st = self.conn.prepare(&format!("DESCRIBE SELECT * FROM read_parquet('{quoted}')"))?;
        let present: Vec<String> = st.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<_, _>>()?;
        let missing: Vec<&str> = schema::flow_columns()
            .iter()
            .filter(|c| !present.iter().any(|p| p == c.name))
            .filter(|c| c.name != "batch_id" && c.name != "source")
            .map(|c| c.name)
            .collect();
        if !missing.is_empty() {
            anyhow::bail!("{}: missing column(s) {}", file.display(), missing.join(", "));
        }
        // Optional provenance columns: when absent the importer assigns them.
        let list: Vec<String> = schema::flow_columns()
            .iter()
            .map(|c| {
                let has = present.iter().any(|p| p == c.name);
                match (c.ty, has) {
                    (ColType::Timestamp, _) => format!("epoch_us(CAST({} AS TIMESTAMP))", c.name),
                    (_, true) => format!("CAST({} AS {})", c.name, c.ty.sql()),
                    (_, false) => format!("CAST(NULL AS {})", c.ty.sql()),
                }
            })
            .collect();
        let mut st =
            self.conn.prepare(&format!("SELECT {} FROM read_parquet('{quoted}')", list.join(", ")))?;
        let mut rows = st.query([])?;
        let mut n = 0u64;
        while let Some(row) = rows.next()? {
            n += 1;
            each(n, record_from_row(row))?;
        }
        Ok(())
    }

    pub fn info(&self) -> Result<WorkspaceInfo> {
        let c = &self.conn;
        let (flows, first, last, out, inn): (i64, Option<i64>, Option<i64>, Option<i128>, Option<i128>) = c.query_row(
            "SELECT count(*), epoch_us(min(window_start)), epoch_us(max(window_end)), sum(bytes_out), sum(bytes_in) FROM flow_rows",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )?;
        let hourly: i64 = c.query_row("SELECT count(*) FROM flows_hourly", [], |r| r.get(0))?;
        let batches: i64 = c.query_row("SELECT count(*) FROM batches", [], |r| r.get(0))?;
        let mut st = c.prepare(&format!(
            "SELECT {} AS s, count(*) FROM flow_rows GROUP BY s ORDER BY s",
            schema::code_to_name_sql("source", &schema::SOURCE_CODES)
        ))?;
        let by_source = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?
            .collect::<Result<Vec<_>, _>>()?;
        let size = match &self.path {
            Some(p) => {
                let wal =
                    p.with_extension(format!("{}.wal", p.extension().and_then(|e| e.to_str()).unwrap_or("")));
                std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
                    + std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0)
            }
            None => 0,
        };
        let (raw_days, rollup_days) = self.retention()?;
        Ok(WorkspaceInfo {
            path: self.path.as_ref().map(|p| p.display().to_string()),
            database_schema_version: self.schema_version()?,
            flow_records: flows as u64,
            hourly_rollup_rows: hourly as u64,
            batches: batches as u64,
            first_window: first.map(Timestamp::from_micros),
            last_window: last.map(Timestamp::from_micros),
            bytes_out: out.unwrap_or(0).clamp(0, u64::MAX as i128) as u64,
            bytes_in: inn.unwrap_or(0).clamp(0, u64::MAX as i128) as u64,
            records_by_source: by_source,
            size_on_disk_bytes: size,
            raw_retention_days: raw_days,
            rollup_retention_days: rollup_days,
        })
    }

    /// Total (bytes_out, bytes_in) in raw flows and in the hourly rollup; equal unless retention
    /// has already removed raw rows. Used by tests and `workspace check`.
    pub fn totals(&self) -> Result<((u64, u64), (u64, u64))> {
        let q = |sql: &str| -> Result<(u64, u64)> {
            let (a, b): (Option<i128>, Option<i128>) =
                self.conn.query_row(sql, [], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok((a.unwrap_or(0) as u64, b.unwrap_or(0) as u64))
        };
        Ok((
            q("SELECT sum(bytes_out), sum(bytes_in) FROM flow_rows")?,
            q("SELECT sum(bytes_out), sum(bytes_in) FROM flows_hourly")?,
        ))
    }
}

/// Party columns of `flows_hourly`, in the order [`party_from`] reads them.
pub(crate) const PARTY_COLS: [&str; 10] = [
    "ip",
    "process",
    "pod",
    "namespace",
    "workload_kind",
    "workload_name",
    "service",
    "node",
    "zone",
    "region",
];

pub(crate) fn party_from(row: &Row<'_>, at: usize, has: &[bool; 10]) -> Result<Party> {
    let mut v: Vec<Option<String>> = Vec::with_capacity(10);
    let mut i = at;
    for present in has {
        if *present {
            v.push(row.get(i)?);
            i += 1;
        } else {
            v.push(None);
        }
    }
    let mut it = v.into_iter();
    let ip = it
        .next()
        .flatten()
        .map(|s| s.parse::<std::net::IpAddr>().map(|ip| ip.to_canonical()))
        .transpose()
        .context("bad address in flows_hourly")?;
    let mut next = || it.next().flatten();
    Ok(Party {
        ip,
        process: next(),
        pod: next(),
        namespace: next(),
        workload_kind: next(),
        workload_name: next(),
        service: next(),
        node: next(),
        zone: next(),
        region: next(),
    })
}

/// Which party columns exist in the rollup: it has no local node (that is `node`) and no remote process.
pub(crate) const LOCAL_HAS: [bool; 10] = [true, true, true, true, true, true, true, false, true, true];
pub(crate) const REMOTE_HAS: [bool; 10] = [true, false, true, true, true, true, true, true, true, true];

/// The aggregate behind [`Workspace::traffic`], over `table` with time column `ts`; parameters are
/// (period start, month start, period end).
fn traffic_sql(table: &str, ts: &str) -> String {
    let cols = |side: &str, has: &[bool; 10]| -> Vec<String> {
        PARTY_COLS.iter().zip(has).filter(|(_, h)| **h).map(|(c, _)| format!("{side}_{c}")).collect()
    };
    let mut dims = vec!["node".to_string()];
    dims.extend(cols("local", &LOCAL_HAS));
    dims.extend(cols("remote", &REMOTE_HAS));
    let dims = dims.join(", ");
    format!(
        "SELECT epoch_us(date_trunc('month', {ts})) AS month, {ts} >= make_timestamp(?) AS in_period, {dims},
                sum(bytes_out), sum(bytes_in)
         FROM {table}
         WHERE {ts} >= make_timestamp(?) AND {ts} < make_timestamp(?)
         GROUP BY ALL ORDER BY ALL"
    )
}

impl Workspace {
    /// The bare DuckDB aggregate of [`Workspace::traffic`] without turning rows into values: what the
    /// cost benchmark compares the whole cost computation against. `raw` runs it over `flows`
    /// instead of the hourly rollups. Returns the number of groups.
    pub fn traffic_aggregate_only(&self, since: Timestamp, until: Timestamp, raw: bool) -> Result<u64> {
        let since = since.floor_hour();
        let sql =
            if raw { traffic_sql("flows", "window_start") } else { traffic_sql("flows_hourly", "hour") };
        let mut st = self.conn.prepare(&sql)?;
        let mut rows =
            st.query(duckdb::params![since.micros(), since.floor_month().micros(), until.micros()])?;
        let mut n = 0;
        while rows.next()?.is_some() {
            n += 1;
        }
        Ok(n)
    }

    /// Traffic per (node, local party, remote party) and calendar month from the hourly rollups, for
    /// the hours in `[since, until)` plus, marked `in_period = false`, the hours of the same month
    /// before `since` (monthly price tiers start counting at the first of the month). Rollups are
    /// hourly, so `since` is taken down to its hour. Sorted, so the cost engine sees the same order
    /// every time.
    pub fn traffic(&self, since: Timestamp, until: Timestamp) -> Result<Vec<TrafficRow>> {
        let since = since.floor_hour();
        let sql = traffic_sql("flows_hourly", "hour");
        let mut st = self.conn.prepare(&sql)?;
        let mut rows =
            st.query(duckdb::params![since.micros(), since.floor_month().micros(), until.micros()])?;
        let (local_has, remote_has) = (LOCAL_HAS, REMOTE_HAS);
        let mut out = Vec::new();
        let n_local = local_has.iter().filter(|h| **h).count();
        let n_remote = remote_has.iter().filter(|h| **h).count();
        while let Some(r) = rows.next()? {
            let month: i64 = r.get(0)?;
            let in_period: bool = r.get(1)?;
            let node: String = r.get(2)?;
            let local = party_from(r, 3, &local_has)?;
            let mut local = local;
            local.node = Some(node.clone());
            let remote = party_from(r, 3 + n_local, &remote_has)?;
            let at = 3 + n_local + n_remote;
            let bytes_out: i128 = r.get(at)?;
            let bytes_in: i128 = r.get(at + 1)?;
            out.push(TrafficRow {
                month: Timestamp::from_micros(month),
                in_period,
                node,
                local,
                remote,
                bytes_out: bytes_out as u64,
                bytes_in: bytes_in as u64,
            });
        }
        Ok(out)
    }

    /// First and last hour with traffic in the rollups (cost clips its period to the data).
    pub fn traffic_span(&self) -> Result<Option<(Timestamp, Timestamp)>> {
        let (a, b): (Option<i64>, Option<i64>) = self.conn.query_row(
            "SELECT epoch_us(min(hour)), epoch_us(max(hour)) FROM flows_hourly",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(a.zip(b).map(|(a, b)| (Timestamp::from_micros(a), Timestamp::from_micros(b))))
    }
}

#[cfg(test)]
mod parquet_text_tests {
    use super::*;

    /// `reconcile` reads Cost and Usage Report extracts in Parquet through this: names as in the
    /// file, every value as text, NULL as `None`.
    #[test]
    fn any_parquet_file_reads_back_as_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cur.parquet");
        let conn = duckdb::Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!(
            "COPY (SELECT * FROM (VALUES ('USE1-NatGateway-Bytes', 12.5::DOUBLE, 0.5625::DECIMAL(18,4), NULL),
                                        ('USE1-DataTransfer-Regional-Bytes', 10::DOUBLE, 0.1::DECIMAL(18,4), 'i-1'))
                   AS t(line_item_usage_type, line_item_usage_amount, line_item_unblended_cost, line_item_resource_id))
             TO '{}' (FORMAT PARQUET)",
            path.display()
        ))
        .unwrap();
        let (names, rows) = Workspace::read_parquet_text(&path).unwrap();
        assert_eq!(names[0], "line_item_usage_type");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][1].as_deref(), Some("12.5"));
        assert_eq!(rows[0][2].as_deref(), Some("0.5625"));
        assert_eq!(rows[0][3], None);
        assert_eq!(rows[1][3].as_deref(), Some("i-1"));
        let err = Workspace::read_parquet_text(&dir.path().join("missing.parquet")).unwrap_err();
        assert!(format!("{err:#}").contains("missing.parquet"), "{err:#}");
    }
}
