//! `deploy`, `undeploy` and `status`: what was applied or removed, and each node's agent.

use super::{Format, align_right, new_table, write_json};
use crate::cluster::deploy::Applied;
use crate::transport::AgentInfo;
use anyhow::Result;
use serde::Serialize;
use std::io::Write;

/// The version of `deploy --output json`.
pub const DEPLOY_SCHEMA: &str = "egressor.deploy/v1";
/// The version of `undeploy --output json` (the same shape as deploy's).
pub const UNDEPLOY_SCHEMA: &str = "egressor.undeploy/v1";

/// `deploy` or `undeploy --output json`: what was done to each object.
#[derive(Serialize)]
struct AppliedJson<'a> {
    schema_version: &'a str,
    /// Same as `schema_version` (the key v1 first printed it under).
    schema: &'a str,
    objects: &'a [Applied],
}

/// What `deploy` or `undeploy` did to each object; `schema` is [`DEPLOY_SCHEMA`] or
/// [`UNDEPLOY_SCHEMA`].
pub fn applied(
    out: &mut dyn Write,
    schema: &str,
    done: &[Applied],
    format: Format,
    color: bool,
) -> Result<()> {
    match format {
        Format::Json => write_json(out, &AppliedJson { schema_version: schema, schema, objects: done }),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(["kind", "namespace", "name", "change"])?;
            for a in done {
                w.write_record([a.kind, a.namespace.as_deref().unwrap_or(""), &a.name, &change(a)])?;
            }
            w.flush()?;
            Ok(())
        }
        Format::Table => {
            let mut t = new_table(&["object", "change"], color);
            for a in done {
                let name = match &a.namespace {
                    Some(ns) => format!("{}/{ns}/{}", a.kind, a.name),
                    None => format!("{}/{}", a.kind, a.name),
                };
                t.add_row(vec![name, change(a)]);
            }
            writeln!(out, "{t}")?;
            Ok(())
        }
    }
}

fn change(a: &Applied) -> String {
    serde_json::to_value(a.change).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// The version of `status --output json`.
pub const STATUS_SCHEMA: &str = "egressor.status/v1";

/// `status --output json`: each node's agent.
#[derive(Serialize)]
struct StatusJson<'a> {
    schema_version: &'static str,
    /// Same as `schema_version` (the key v1 first printed it under).
    schema: &'static str,
    agents: &'a [AgentStatus],
}

/// One node's agent as `status` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct AgentStatus {
    pub node: String,
    pub pod: String,
    pub ready: bool,
    /// Pod state (`Ready`, `Pending, ContainerCreating`, ...).
    pub state: String,
    /// What the agent said about itself (absent when it could not be reached).
    pub info: Option<AgentInfo>,
    /// Why it could not be asked, or what is wrong with its answer (another version).
    pub problem: Option<String>,
}

pub fn status(out: &mut dyn Write, agents: &[AgentStatus], format: Format, color: bool) -> Result<()> {
    match format {
        Format::Json => {
            write_json(out, &StatusJson { schema_version: STATUS_SCHEMA, schema: STATUS_SCHEMA, agents })
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record([
                "node",
                "pod",
                "ready",
                "version",
                "spool_bytes",
                "spool_max_bytes",
                "last_pull",
                "lost",
                "problem",
            ])?;
            for a in agents {
                let c = cells(a);
                w.write_record([
                    &a.node,
                    &a.pod,
                    &a.ready.to_string(),
                    &c[0],
                    &c[1],
                    &c[2],
                    &c[3],
                    &c[4],
                    &c[5],
                ])?;
            }
            w.flush()?;
            Ok(())
        }
        Format::Table => {
            let mut t =
                new_table(&["node", "agent", "version", "spool", "last pull", "loss", "problem"], color);
            for a in agents {
                let c = cells(a);
                let spool = if c[1].is_empty() { String::new() } else { format!("{} / {}", c[1], c[2]) };
                t.add_row(vec![
                    a.node.clone(),
                    a.state.clone(),
                    c[0].clone(),
                    spool,
                    c[3].clone(),
                    c[4].clone(),
                    c[5].clone(),
                ]);
            }
            align_right(&mut t, &[3]);
            writeln!(out, "{t}")?;
            Ok(())
        }
    }
}

/// version, spool bytes, spool max, last pull, loss summary, problem.
fn cells(a: &AgentStatus) -> [String; 6] {
    let problem = a.problem.clone().unwrap_or_default();
    let Some(i) = &a.info else {
        return [String::new(), String::new(), String::new(), String::new(), String::new(), problem];
    };
    let l = &i.loss;
    let loss = if l.is_zero() {
        "none".to_string()
    } else {
        format!(
            "{} insert failures, {} evicted, {} batches dropped",
            l.map_insert_failures, l.sockets_evicted, l.spool_dropped_batches
        )
    };
    [
        i.version.clone(),
        i.spool_bytes.to_string(),
        i.spool_max_bytes.to_string(),
        i.last_ack.map(|t| t.to_string()).unwrap_or_else(|| "never".into()),
        loss,
        problem,
    ]
}
