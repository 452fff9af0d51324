//! The workspace schema: one column list for the `flows` table that DDL, the Arrow ingest path,
//! the row reader, CSV and Parquet all derive from, and the ordered list of migrations.

use crate::model::FlowRecord;
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
    U16(u16),
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
                get: |r| Val::U16(r.$side.port),
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

/// Every column of `flows`, in table order. The order is part of schema version 1.
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
    vec![Migration {
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
    }]
}

/// The schema version this binary writes and understands.
pub fn current_version() -> u32 {
    migrations().last().map(|m| m.version).unwrap_or(0)
}
