//! Flow records as a table, one JSON document (`flows --output json`), JSON lines (`export`) or
//! CSV. All but the table stream (constant memory), so `egressor export` of a month of flows works
//! the same as `egressor flows --limit 10`.

use super::{align_right, new_table};
use crate::model::{Endpoint, FlowRecord, human_bytes};
use crate::store::schema::{self, Val};
use anyhow::Result;
use std::io::Write;

/// The version of `egressor flows --output json` (docs/schemas/flows.v1.json).
pub const FLOWS_SCHEMA: &str = "egressor.flows/v1";

pub enum FlowSink<'o> {
    Table {
        rows: Vec<FlowRecord>,
        color: bool,
        out: &'o mut dyn Write,
    },
    /// `{"schema_version": .., "records": [..]}` written as it goes: each record compact on a line
    /// of its own inside `records`, so the output is still read line by line with grep.
    Json {
        out: &'o mut dyn Write,
        started: bool,
    },
    JsonLines {
        out: &'o mut dyn Write,
    },
    // Boxed: the CSV writer carries its own buffer and would make every variant that large.
    Csv {
        w: Box<csv::Writer<&'o mut dyn Write>>,
        wrote_header: bool,
        ip: String,
    },
}

impl<'o> FlowSink<'o> {
    pub fn table(out: &'o mut dyn Write, color: bool) -> Self {
        FlowSink::Table { rows: Vec::new(), color, out }
    }
    /// One document ([`FLOWS_SCHEMA`]) holding the records.
    pub fn json(out: &'o mut dyn Write) -> Self {
        FlowSink::Json { out, started: false }
    }
    /// A record per line and nothing else: the import format (docs/data-model.md).
    pub fn json_lines(out: &'o mut dyn Write) -> Self {
        FlowSink::JsonLines { out }
    }
    pub fn csv(out: &'o mut dyn Write) -> Self {
        FlowSink::Csv { w: Box::new(csv::Writer::from_writer(out)), wrote_header: false, ip: String::new() }
    }

    pub fn push(&mut self, r: FlowRecord) -> Result<()> {
        match self {
            FlowSink::Table { rows, .. } => rows.push(r),
            FlowSink::Json { out, started } => {
                if *started {
                    out.write_all(b",\n")?;
                } else {
                    json_head(&mut **out)?;
                    *started = true;
                }
                serde_json::to_writer(&mut **out, &r)?;
            }
            FlowSink::JsonLines { out } => {
                serde_json::to_writer(&mut **out, &r)?;
                out.write_all(b"\n")?;
            }
            FlowSink::Csv { w, wrote_header, ip } => {
                let cols = schema::flow_columns();
                if !*wrote_header {
                    w.write_record(cols.iter().map(|c| c.name))?;
                    *wrote_header = true;
                }
                for c in cols {
                    match (c.get)(&r) {
                        Val::Ts(us) => w.write_field(crate::model::Timestamp::from_micros(us).to_string())?,
                        Val::Text(t) => w.write_field(t.unwrap_or(""))?,
                        Val::Ip(a) => {
                            ip.clear();
                            use std::fmt::Write as _;
                            let _ = write!(ip, "{a}");
                            w.write_field(ip.as_bytes())?
                        }
                        Val::U8(v) => w.write_field(v.to_string())?,
                        Val::U16(v) => w.write_field(v.map(|v| v.to_string()).unwrap_or_default())?,
                        Val::U32(v) => w.write_field(v.map(|v| v.to_string()).unwrap_or_default())?,
                        Val::U64(v) => w.write_field(v.to_string())?,
                    }
                }
                w.write_record(None::<&[u8]>)?;
            }
        }
        Ok(())
    }

    pub fn finish(self) -> Result<()> {
        match self {
            FlowSink::Table { rows, color, out } => {
                let mut t = new_table(
                    &["window start", "node", "local", "remote", "proto", "sent", "received", "conns"],
                    color,
                );
                for r in &rows {
                    t.add_row(vec![
                        r.window_start.to_string(),
                        r.node.clone(),
                        describe(&r.local),
                        describe(&r.remote),
                        format!("{}{}", r.proto, if r.ip_version == 6 { "6" } else { "" }),
                        human_bytes(r.bytes_out),
                        human_bytes(r.bytes_in),
                        r.connections_opened.to_string(),
                    ]);
                }
                align_right(&mut t, &[5, 6, 7]);
                writeln!(out, "{t}")?;
                writeln!(out, "{} flow record(s)", rows.len())?;
            }
            FlowSink::Json { out, started } => {
                if !started {
                    json_head(&mut *out)?;
                }
                out.write_all(b"\n]}\n")?;
                out.flush()?
            }
            FlowSink::JsonLines { out } => out.flush()?,
            FlowSink::Csv { mut w, .. } => w.flush()?,
        }
        Ok(())
    }
}

/// The start of the `flows --output json` document, up to the records.
fn json_head(out: &mut dyn Write) -> Result<()> {
    writeln!(out, "{{\"schema_version\":\"{FLOWS_SCHEMA}\",\"records\":[")?;
    Ok(())
}

/// `namespace/workload (pod) ip:port` or `process[pid] ip:port`: the most specific name we have.
pub fn describe(e: &Endpoint) -> String {
    let addr = if e.ip.is_ipv6() { format!("[{}]:{}", e.ip, e.port) } else { format!("{}:{}", e.ip, e.port) };
    let who = match (&e.namespace, &e.workload_name, &e.service, &e.process) {
        (Some(ns), Some(w), _, _) => Some(format!("{ns}/{w}")),
        (_, _, Some(svc), _) => Some(svc.clone()),
        (_, _, _, Some(p)) => Some(match e.pid {
            Some(pid) => format!("{p}[{pid}]"),
            None => p.clone(),
        }),
        _ => None,
    };
    match who {
        Some(w) => format!("{w} {addr}"),
        None => addr,
    }
}
