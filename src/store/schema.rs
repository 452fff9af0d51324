//! The workspace schema, and the ordered list of migrations.
//!
//! Two column lists: [`flow_columns`] is the logical flow record, flattened (what the `flows` view,
//! CSV and Parquet show and the row reader expects); [`flow_row_columns`] is how a record is stored
//! (`flow_rows`: integers only, with the node name, the descriptive fields of each endpoint and the
//! batch id held once in `nodes`, `endpoints` and `batches`). Why: DuckDB appends a row of twenty
//! strings at ~150,000 rows/s on this class of machine and a row of integers several times faster,
//! and an agent repeats the same ~400 bytes of cgroup path, container id and pod names in every
//! record of a container (ADR 0005).

use crate::model::{Endpoint, FlowRecord, Initiator, Proto, Source};
use std::net::IpAddr;

/// Storage type of a flows column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    Timestamp,
    Text,
    U8,
    U16,
    U32,
    U64,
}

impl ColType {
    pub fn sql(self) -> &'static str {
        match self {
            ColType::Timestamp => "TIMESTAMP",
            ColType::Text => "VARCHAR",
            ColType::U8 => "UTINYINT",
            ColType::U16 => "USMALLINT",
            ColType::U32 => "UINTEGER",
            ColType::U64 => "UBIGINT",
        }
    }
}

/// A value borrowed out of a record for one column, without allocating.
pub enum Val<'a> {
    Ts(i64),
    Text(Option<&'a str>),
    Ip(IpAddr),
    U8(u8),
    U16(Option<u16>),
    U32(Option<u32>),
    U64(u64),
}

pub struct Column {
    pub name: &'static str,
    pub ty: ColType,
    pub nullable: bool,
    pub get: fn(&FlowRecord) -> Val<'_>,
}

macro_rules! endpoint_columns {
    ($side:ident, $p:literal) => {
        [
            Column {
                name: concat!($p, "_ip"),
                ty: ColType::Text,
                nullable: false,
                get: |r| Val::Ip(r.$side.ip),
            },
            Column {
                name: concat!($p, "_port"),
                ty: ColType::U16,
                nullable: false,
                get: |r| Val::U16(Some(r.$side.port)),
            },
            Column {
                name: concat!($p, "_process"),
                ty: ColType::Text,
                nullable: true,
                get: |r| Val::Text(r.$side.process.as_deref()),
            },
            Column {
                name: concat!($p, "_pid"),
                ty: ColType::U32,
                nullable: true,
                get: |r| Val::U32(r.$side.pid),
            },
            Column {
                name: concat!($p, "_cgroup"),
                ty: ColType::Text,
                nullable: true,
                get: |r| Val::Text(r.$side.cgroup.as_deref()),
            },
            Column {
                name: concat!($p, "_container_id"),
                ty: ColType::Text,
                nullable: true,
                get: |r| Val::Text(r.$side.container_id.as_deref()),
            },
            Column {
                name: concat!($p, "_pod_uid"),
                ty: ColType::Text,
                nullable: true,
                get: |r| Val::Text(r.$side.pod_uid.as_deref()),
            },
            Column {
                name: concat!($p, "_pod"),
                ty: ColType::Text,
                nullable: true,
                get: |r| Val::Text(r.$side.pod.as_deref()),
            },
            Column {
                name: concat!($p, "_namespace"),
                ty: ColType::Text,
                nullable: true,
                get: |r| Val::Text(r.$side.namespace.as_deref()),
            },
            Column {
                name: concat!($p, "_workload_kind"),
                ty: ColType::Text,
                nullable: true,
                get: |r| Val::Text(r.$side.workload_kind.as_deref()),
            },
            Column {
                name: concat!($p, "_workload_name"),
                ty: ColType::Text,
                nullable: true,
                get: |r| Val::Text(r.$side.workload_name.as_deref()),
            },
            Column {
                name: concat!($p, "_service"),
                ty: ColType::Text,
                nullable: true,
                get: |r| Val::Text(r.$side.service.as_deref()),
            },
            Column {
                name: concat!($p, "_node"),
                ty: ColType::Text,
                nullable: true,
                get: |r| Val::Text(r.$side.node.as_deref()),
            },
            Column {
                name: concat!($p, "_zone"),
                ty: ColType::Text,
                nullable: true,
                get: |r| Val::Text(r.$side.zone.as_deref()),
            },
            Column {
                name: concat!($p, "_region"),
                ty: ColType::Text,
                nullable: true,
                get: |r| Val::Text(r.$side.region.as_deref()),
            },
        ]
    };
}

/// Columns per endpoint (`local_*`, `remote_*`).
pub const ENDPOINT_COLUMNS: usize = 15;

/// Every column of a flattened flow record, in the order of the `flows` view (and of the version 1
/// table), CSV and Parquet.
pub fn flow_columns() -> &'static [Column] {
    use std::sync::OnceLock;
    static COLS: OnceLock<Vec<Column>> = OnceLock::new();
    COLS.get_or_init(|| {
        let mut v = vec![
            Column {
                name: "window_start",
                ty: ColType::Timestamp,
                nullable: false,
                get: |r| Val::Ts(r.window_start.micros()),
            },
            Column {
                name: "window_end",
                ty: ColType::Timestamp,
                nullable: false,
                get: |r| Val::Ts(r.window_end.micros()),
            },
            Column { name: "node", ty: ColType::Text, nullable: false, get: |r| Val::Text(Some(&r.node)) },
        ];
        v.extend(endpoint_columns!(local, "local"));
        v.extend(endpoint_columns!(remote, "remote"));
        v.extend([
            Column {
                name: "proto",
                ty: ColType::Text,
                nullable: false,
                get: |r| Val::Text(Some(r.proto.as_str())),
            },
            Column { name: "ip_version", ty: ColType::U8, nullable: false, get: |r| Val::U8(r.ip_version) },
            Column {
                name: "initiator",
                ty: ColType::Text,
                nullable: false,
                get: |r| Val::Text(Some(r.initiator.as_str())),
            },
            Column { name: "bytes_out", ty: ColType::U64, nullable: false, get: |r| Val::U64(r.bytes_out) },
            Column { name: "bytes_in", ty: ColType::U64, nullable: false, get: |r| Val::U64(r.bytes_in) },
            Column {
                name: "packets_out",
                ty: ColType::U64,
                nullable: false,
                get: |r| Val::U64(r.packets_out),
            },
            Column { name: "packets_in", ty: ColType::U64, nullable: false, get: |r| Val::U64(r.packets_in) },
            Column {
                name: "connections_opened",
                ty: ColType::U32,
                nullable: false,
                get: |r| Val::U32(Some(r.connections_opened)),
            },
            Column {
                name: "connections_closed",
                ty: ColType::U32,
                nullable: false,
                get: |r| Val::U32(Some(r.connections_closed)),
            },
            Column {
                name: "batch_id",
                ty: ColType::Text,
                nullable: false,
                get: |r| Val::Text(r.batch_id.as_deref()),
            },
            Column {
                name: "source",
                ty: ColType::Text,
                nullable: false,
                get: |r| Val::Text(r.source.map(|s| s.as_str())),
            },
        ]);
        v
    })
}

/// The descriptive fields of an endpoint, stored once per distinct endpoint in `endpoints` (with
/// `ip`); the port and the pid change from flow to flow and stay in `flow_rows`.
pub const ENDPOINT_TEXT_FIELDS: [&str; 12] = [
    "process",
    "cgroup",
    "container_id",
    "pod_uid",
    "pod",
    "namespace",
    "workload_kind",
    "workload_name",
    "service",
    "node",
    "zone",
    "region",
];

/// An endpoint's [`ENDPOINT_TEXT_FIELDS`], in that order.
pub fn endpoint_texts(e: &Endpoint) -> [Option<&str>; 12] {
    [
        e.process.as_deref(),
        e.cgroup.as_deref(),
        e.container_id.as_deref(),
        e.pod_uid.as_deref(),
        e.pod.as_deref(),
        e.namespace.as_deref(),
        e.workload_kind.as_deref(),
        e.workload_name.as_deref(),
        e.service.as_deref(),
        e.node.as_deref(),
        e.zone.as_deref(),
        e.region.as_deref(),
    ]
}

/// Stored codes of the small enumerations. Part of schema version 2: never renumber.
pub const PROTO_CODES: [(u8, &str); 3] = [(0, "tcp"), (1, "udp"), (2, "other")];
pub const INITIATOR_CODES: [(u8, &str); 3] = [(0, "local"), (1, "remote"), (2, "unknown")];
pub const SOURCE_CODES: [(u8, &str); 3] = [(0, "agent"), (1, "import"), (2, "demo")];

pub fn proto_code(p: Proto) -> u8 {
    match p {
        Proto::Tcp => 0,
        Proto::Udp => 1,
        Proto::Other => 2,
    }
}

pub fn initiator_code(i: Initiator) -> u8 {
    match i {
        Initiator::Local => 0,
        Initiator::Remote => 1,
        Initiator::Unknown => 2,
    }
}

pub fn source_code(s: Source) -> u8 {
    match s {
        Source::Agent => 0,
        Source::Import => 1,
        Source::Demo => 2,
    }
}

/// SQL that turns a stored code back into its name (`CASE col WHEN 0 THEN 'tcp' ... END`).
pub fn code_to_name_sql(col: &str, codes: &[(u8, &str)]) -> String {
    let whens: Vec<String> = codes.iter().map(|(c, n)| format!("WHEN {c} THEN '{n}'")).collect();
    format!("CASE {col} {} END", whens.join(" "))
}

fn name_to_code_sql(col: &str, codes: &[(u8, &str)]) -> String {
    let whens: Vec<String> = codes.iter().map(|(c, n)| format!("WHEN '{n}' THEN {c}")).collect();
    format!("CASE {col} {} END", whens.join(" "))
}

/// The dictionary ids of one stored record.
#[derive(Debug, Clone, Copy)]
pub struct RowIds {
    pub node: u32,
    pub local: u32,
    pub remote: u32,
    pub batch: u32,
}

/// Where a `flow_rows` column's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// The record's field of the same name.
    Plain,
    /// `nodes.node_id` of the record's node.
    NodeId,
    /// `endpoints.endpoint_id` of the local (true) or remote (false) endpoint.
    Endpoint { local: bool },
    /// The code of an enumeration field of the same name.
    Code(&'static [(u8, &'static str)]),
    /// `batches.batch_key` of the record's batch.
    BatchKey,
}

pub struct RowColumn {
    pub name: &'static str,
    pub ty: ColType,
    pub nullable: bool,
    pub stored: Stored,
    pub get: for<'a> fn(&'a FlowRecord, &RowIds) -> Val<'a>,
}

/// Every column of `flow_rows`, in table order (schema version 2).
pub fn flow_row_columns() -> &'static [RowColumn] {
    use ColType::*;
    use Stored::*;
    macro_rules! col {
        ($name:literal, $ty:expr, $nullable:expr, $stored:expr, $get:expr) => {
            RowColumn { name: $name, ty: $ty, nullable: $nullable, stored: $stored, get: $get }
        };
    }
    static COLS: [RowColumn; 20] = [
        col!("window_start", Timestamp, false, Plain, |r, _| Val::Ts(r.window_start.micros())),
        col!("window_end", Timestamp, false, Plain, |r, _| Val::Ts(r.window_end.micros())),
        col!("node_id", U32, false, NodeId, |_, ids| Val::U32(Some(ids.node))),
        col!("local_endpoint", U32, false, Endpoint { local: true }, |_, ids| Val::U32(Some(ids.local))),
        col!("local_port", U16, false, Plain, |r, _| Val::U16(Some(r.local.port))),
        col!("local_pid", U32, true, Plain, |r, _| Val::U32(r.local.pid)),
        col!("remote_endpoint", U32, false, Endpoint { local: false }, |_, ids| Val::U32(Some(ids.remote))),
        col!("remote_port", U16, false, Plain, |r, _| Val::U16(Some(r.remote.port))),
        col!("remote_pid", U32, true, Plain, |r, _| Val::U32(r.remote.pid)),
        col!("proto", U8, false, Code(&PROTO_CODES), |r, _| Val::U8(proto_code(r.proto))),
        col!("ip_version", U8, false, Plain, |r, _| Val::U8(r.ip_version)),
        col!("initiator", U8, false, Code(&INITIATOR_CODES), |r, _| Val::U8(initiator_code(r.initiator))),
        col!("bytes_out", U64, false, Plain, |r, _| Val::U64(r.bytes_out)),
        col!("bytes_in", U64, false, Plain, |r, _| Val::U64(r.bytes_in)),
        col!("packets_out", U64, false, Plain, |r, _| Val::U64(r.packets_out)),
        col!("packets_in", U64, false, Plain, |r, _| Val::U64(r.packets_in)),
        col!("connections_opened", U32, false, Plain, |r, _| Val::U32(Some(r.connections_opened))),
        col!("connections_closed", U32, false, Plain, |r, _| Val::U32(Some(r.connections_closed))),
        col!("batch_key", U32, false, BatchKey, |_, ids| Val::U32(Some(ids.batch))),
        // Also implied by the batch; kept so counting records by source needs no join.
        col!("source", U8, false, Code(&SOURCE_CODES), |r, _| {
            Val::U8(source_code(r.source.expect("ingest checks that every record has a source")))
        }),
    ];
    &COLS
}

/// The expression of the `flows` view for one logical column, over `flow_rows f` joined with
/// `nodes n`, `endpoints l` (local), `endpoints r` (remote) and `batches b`.
fn view_expr(logical: &str) -> String {
    if let Some(c) = flow_row_columns().iter().find(|c| c.name == logical) {
        return match c.stored {
            Stored::Code(codes) => code_to_name_sql(&format!("f.{logical}"), codes),
            _ => format!("f.{logical}"),
        };
    }
    match logical {
        "node" => "n.name".into(),
        "batch_id" => "b.batch_id".into(),
        _ => {
            let (alias, field) = if let Some(f) = logical.strip_prefix("local_") {
                ("l", f)
            } else if let Some(f) = logical.strip_prefix("remote_") {
                ("r", f)
            } else {
                unreachable!("flows column {logical} has no storage")
            };
            assert!(
                field == "ip" || ENDPOINT_TEXT_FIELDS.contains(&field),
                "flows column {logical} has no storage"
            );
            format!("{alias}.{field}")
        }
    }
}

/// The `flows` view: flow records as [`flow_columns`] describes them, rebuilt from `flow_rows` and
/// the dictionaries. Readers never need to know about the storage.
pub(crate) fn create_flows_view_sql() -> String {
    let cols: Vec<String> =
        flow_columns().iter().map(|c| format!("    {} AS {}", view_expr(c.name), c.name)).collect();
    format!(
        "CREATE VIEW flows AS SELECT\n{}\nFROM flow_rows f\n\
         JOIN nodes n ON n.node_id = f.node_id\n\
         JOIN endpoints l ON l.endpoint_id = f.local_endpoint\n\
         JOIN endpoints r ON r.endpoint_id = f.remote_endpoint\n\
         JOIN batches b ON b.batch_key = f.batch_key;",
        cols.join(",\n")
    )
}

fn create_storage_sql() -> String {
    let rows: Vec<String> = flow_row_columns()
        .iter()
        .map(|c| format!("    {} {}{}", c.name, c.ty.sql(), if c.nullable { "" } else { " NOT NULL" }))
        .collect();
    let texts: Vec<String> = ENDPOINT_TEXT_FIELDS.iter().map(|f| format!("    {f} VARCHAR")).collect();
    format!(
        "CREATE TABLE nodes (\n    node_id UINTEGER PRIMARY KEY,\n    name VARCHAR NOT NULL\n);
CREATE TABLE endpoints (\n    endpoint_id UINTEGER PRIMARY KEY,\n    ip VARCHAR NOT NULL,\n{}\n);
CREATE TABLE flow_rows (\n{}\n);",
        texts.join(",\n"),
        rows.join(",\n")
    )
}

const BATCHES_V1_COLUMNS: &str = "batch_id, source, origin, ingest_seq, ingested_at, records, bytes_out, bytes_in, window_start, window_end";

/// Version 1 -> 2: the `flows` table becomes `flow_rows` + dictionaries + the `flows` view. Every
/// row is carried over and the migration fails (and changes nothing) if one would not be.
fn migrate_to_v2_sql() -> String {
    let side = |p: &str| -> String {
        std::iter::once("ip")
            .chain(ENDPOINT_TEXT_FIELDS)
            .map(|f| format!("{p}_{f} AS {f}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let endpoint_cols = std::iter::once("ip").chain(ENDPOINT_TEXT_FIELDS).collect::<Vec<_>>().join(", ");
    let join_on = |alias: &str, p: &str| -> String {
        std::iter::once(format!("{alias}.ip = f.{p}_ip"))
            .chain(ENDPOINT_TEXT_FIELDS.iter().map(|x| format!("{alias}.{x} IS NOT DISTINCT FROM f.{p}_{x}")))
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    let inserts: Vec<String> = flow_row_columns()
        .iter()
        .map(|c| match c.stored {
            Stored::Plain => format!("f.{}", c.name),
            Stored::NodeId => "n.node_id".into(),
            Stored::Endpoint { local: true } => "l.endpoint_id".into(),
            Stored::Endpoint { local: false } => "r.endpoint_id".into(),
            Stored::Code(codes) => name_to_code_sql(&format!("f.{}", c.name), codes),
            Stored::BatchKey => "b.batch_key".into(),
        })
        .collect();
    format!(
        "{storage}
CREATE TEMP TABLE batches_v1 AS SELECT * FROM batches;
DROP TABLE batches;
{batches}
INSERT INTO batches SELECT batch_id,
    (row_number() OVER (ORDER BY ingest_seq, batch_id) - 1)::UINTEGER, {rest}
    FROM batches_v1;
DROP TABLE batches_v1;
INSERT INTO nodes SELECT (row_number() OVER (ORDER BY name) - 1)::UINTEGER, name
    FROM (SELECT DISTINCT node AS name FROM flows);
INSERT INTO endpoints SELECT (row_number() OVER (ORDER BY {endpoint_cols}) - 1)::UINTEGER, *
    FROM (SELECT {local} FROM flows UNION SELECT {remote} FROM flows);
INSERT INTO flow_rows SELECT {inserts}
    FROM flows f
    JOIN nodes n ON n.name = f.node
    JOIN endpoints l ON {join_l}
    JOIN endpoints r ON {join_r}
    JOIN batches b ON b.batch_id = f.batch_id;
SELECT CASE WHEN (SELECT count(*) FROM flows) <> (SELECT count(*) FROM flow_rows)
    THEN error('migration to schema 2: ' || ((SELECT count(*) FROM flows) - (SELECT count(*) FROM flow_rows))
        || ' flow row(s) could not be carried over (their batch_id is missing from table batches); '
        || 'the workspace is unchanged at version 1: export it with the egressor that wrote it')
    END;
DROP TABLE flows;
{view}",
        storage = create_storage_sql(),
        batches = create_batches_sql(),
        rest = BATCHES_V1_COLUMNS.trim_start_matches("batch_id, "),
        local = side("local"),
        remote = side("remote"),
        inserts = inserts.join(", "),
        join_l = join_on("l", "local"),
        join_r = join_on("r", "remote"),
        view = create_flows_view_sql(),
    )
}

/// `batches` as of version 2: `batch_key` is the small integer `flow_rows` refers to a batch by.
fn create_batches_sql() -> String {
    "CREATE TABLE batches (
    batch_id VARCHAR PRIMARY KEY,
    batch_key UINTEGER NOT NULL UNIQUE,
    source VARCHAR NOT NULL,
    origin VARCHAR NOT NULL,
    ingest_seq UBIGINT NOT NULL,
    ingested_at TIMESTAMP NOT NULL,
    records UBIGINT NOT NULL,
    bytes_out UBIGINT NOT NULL,
    bytes_in UBIGINT NOT NULL,
    window_start TIMESTAMP,
    window_end TIMESTAMP
);"
    .into()
}

/// Comma-separated column names of `flows`, for SELECT lists.
pub fn flow_column_list() -> String {
    flow_columns().iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
}

/// Dimensions kept by the hourly rollup: what cost, graph and baselines group by. Ports are dropped
/// except the service port (the remote port of flows we initiated, the local one of flows we accepted),
/// because ephemeral ports would make the rollup as large as the raw table.
pub const ROLLUP_DIMENSIONS: &[&str] = &[
    "node",
    "proto",
    "ip_version",
    "source",
    "local_ip",
    "local_process",
    "local_pod",
    "local_namespace",
    "local_workload_kind",
    "local_workload_name",
    "local_service",
    "local_zone",
    "local_region",
    "remote_ip",
    "remote_pod",
    "remote_namespace",
    "remote_workload_kind",
    "remote_workload_name",
    "remote_service",
    "remote_node",
    "remote_zone",
    "remote_region",
];
pub const ROLLUP_MEASURES: &[&str] =
    &["bytes_out", "bytes_in", "packets_out", "packets_in", "connections_opened", "connections_closed"];

/// The SQL expression for the service port of a raw flow row.
pub const SERVICE_PORT_SQL: &str =
    "CASE initiator WHEN 'local' THEN remote_port WHEN 'remote' THEN local_port ELSE NULL END";

fn create_flows_sql() -> String {
    let cols: Vec<String> = flow_columns()
        .iter()
        .map(|c| format!("    {} {}{}", c.name, c.ty.sql(), if c.nullable { "" } else { " NOT NULL" }))
        .collect();
    format!("CREATE TABLE flows (\n{}\n);", cols.join(",\n"))
}

fn create_hourly_sql() -> String {
    let mut cols = vec!["    hour TIMESTAMP NOT NULL".to_string()];
    for d in ROLLUP_DIMENSIONS {
        let ty = flow_columns().iter().find(|c| c.name == *d).expect("rollup dimension is a flow column");
        cols.push(format!("    {} {}", d, ty.ty.sql()));
    }
    cols.push("    service_port USMALLINT".into());
    for m in ROLLUP_MEASURES {
        cols.push(format!("    {m} UBIGINT NOT NULL"));
    }
    cols.push("    flow_records UBIGINT NOT NULL".into());
    format!("CREATE TABLE flows_hourly (\n{}\n);", cols.join(",\n"))
}

/// A schema change. Applied in order, each in the same transaction as its row in `schema_migrations`.
pub struct Migration {
    pub version: u32,
    pub description: &'static str,
    pub sql: fn() -> String,
}

pub fn migrations() -> Vec<Migration> {
    vec![
        Migration {
            version: 1,
            description: "flows, hourly rollups, batches, settings, demo ground truth",
            sql: || {
                format!(
                    "{}\n{}\n{}",
                    create_flows_sql(),
                    create_hourly_sql(),
                    r#"
CREATE TABLE batches (
    batch_id VARCHAR PRIMARY KEY,
    source VARCHAR NOT NULL,
    origin VARCHAR NOT NULL,
    ingest_seq UBIGINT NOT NULL,
    ingested_at TIMESTAMP NOT NULL,
    records UBIGINT NOT NULL,
    bytes_out UBIGINT NOT NULL,
    bytes_in UBIGINT NOT NULL,
    window_start TIMESTAMP,
    window_end TIMESTAMP
);
CREATE TABLE settings (
    key VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);
CREATE TABLE demo_events (
    event_id VARCHAR PRIMARY KEY,
    kind VARCHAR NOT NULL,
    started_at TIMESTAMP NOT NULL,
    ended_at TIMESTAMP NOT NULL,
    subject VARCHAR NOT NULL,
    remote VARCHAR,
    description VARCHAR NOT NULL,
    seed UBIGINT NOT NULL
);
"#
                )
            },
        },
        Migration {
            version: 2,
            description: "flows stored as integers: flow_rows + nodes + endpoints dictionaries, flows is a view",
            sql: migrate_to_v2_sql,
        },
        Migration {
            version: 3,
            description: "k8s_objects: what the Kubernetes API said (pods, owners, services, nodes) over time",
            sql: || super::cluster::CREATE_SQL.to_string(),
        },
        Migration {
            version: 4,
            description: "anomaly_state: open / acknowledged / resolved, by stable finding id",
            sql: || super::anomalies::CREATE_SQL.to_string(),
        },
    ]
}

/// The schema version this binary writes and understands.
pub fn current_version() -> u32 {
    migrations().last().map(|m| m.version).unwrap_or(0)
}
