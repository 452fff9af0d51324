//! Small reports: workspace info, import and demo results, retention.

use super::{Format, align_right, new_table, write_json};
use crate::demo::{DEMO_SCHEMA, DemoReport};
use crate::import::{IMPORT_SCHEMA, ImportSummary};
use crate::model::human_bytes;
use crate::store::{PRUNE_SCHEMA, PruneReport, WORKSPACE_INFO_SCHEMA, WorkspaceInfo};
use anyhow::Result;
use serde::Serialize;
use std::io::Write;

/// JSON documents carry their schema name and version (`schema_version`, docs/schemas/README.md)
/// so scripts can check what they parse. `schema` is the same name under the key v1 documents
/// first printed it as; it stays until their next version.
#[derive(Serialize)]
struct Versioned<'a, T: Serialize> {
    schema_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    schema: Option<&'a str>,
    #[serde(flatten)]
    body: &'a T,
}

impl<'a, T: Serialize> Versioned<'a, T> {
    /// A document first published with `schema` only: both keys.
    fn both_keys(schema_version: &'a str, body: &'a T) -> Self {
        Versioned { schema_version, schema: Some(schema_version), body }
    }
}

fn csv_pairs(out: &mut dyn Write, pairs: &[(&str, String)]) -> Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(["key", "value"])?;
    for (k, v) in pairs {
        w.write_record([*k, v.as_str()])?;
    }
    w.flush()?;
    Ok(())
}

fn key_value_table(out: &mut dyn Write, pairs: &[(&str, String)], color: bool) -> Result<()> {
    let mut t = new_table(&["", ""], color);
    for (k, v) in pairs {
        t.add_row(vec![k.to_string(), v.clone()]);
    }
    writeln!(out, "{t}")?;
    Ok(())
}

fn emit<T: Serialize>(
    out: &mut dyn Write,
    format: Format,
    color: bool,
    doc: Versioned<'_, T>,
    pairs: &[(&str, String)],
) -> Result<()> {
    match format {
        Format::Json => write_json(out, &doc),
        Format::Csv => csv_pairs(out, pairs),
        Format::Table => key_value_table(out, pairs, color),
    }
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

pub fn workspace_info(out: &mut dyn Write, info: &WorkspaceInfo, format: Format, color: bool) -> Result<()> {
    let per_record = if info.flow_records > 0 {
        format!("{:.1} B/record", info.size_on_disk_bytes as f64 / info.flow_records as f64)
    } else {
        "-".into()
    };
    let sources = if info.records_by_source.is_empty() {
        "-".into()
    } else {
        info.records_by_source.iter().map(|(s, n)| format!("{s}: {n}")).collect::<Vec<_>>().join(", ")
    };
    let pairs = [
        ("path", opt(&info.path)),
        ("schema version", info.database_schema_version.to_string()),
        ("flow records", info.flow_records.to_string()),
        ("records by source", sources),
        ("hourly rollup rows", info.hourly_rollup_rows.to_string()),
        ("batches", info.batches.to_string()),
        ("first window", opt(&info.first_window)),
        ("last window", opt(&info.last_window)),
        ("bytes sent", format!("{} ({})", human_bytes(info.bytes_out), info.bytes_out)),
        ("bytes received", format!("{} ({})", human_bytes(info.bytes_in), info.bytes_in)),
        ("size on disk", format!("{} ({per_record})", human_bytes(info.size_on_disk_bytes))),
        (
            "retention",
            format!("raw {} days, hourly {} days", info.raw_retention_days, info.rollup_retention_days),
        ),
    ];
    // v2: v1 printed the database's schema version as `schema_version`, the key every document now
    // gives its own version under; it is `database_schema_version` since.
    let doc = Versioned { schema_version: WORKSPACE_INFO_SCHEMA, schema: None, body: info };
    emit(out, format, color, doc, &pairs)
}

pub fn import_summary(out: &mut dyn Write, s: &ImportSummary, format: Format, color: bool) -> Result<()> {
    if format == Format::Json {
        return write_json(out, &Versioned::both_keys(IMPORT_SCHEMA, s));
    }
    let r = &s.ingest;
    let mut pairs = vec![
        ("file", s.file.clone()),
        ("format", s.format.clone()),
        ("records ingested", r.records_ingested.to_string()),
        ("batches ingested", r.batches_ingested.len().to_string()),
    ];
    if !r.batches_skipped.is_empty() {
        pairs.push((
            "already in workspace",
            format!(
                "{} batch(es), {} record(s) skipped: nothing changed for them",
                r.batches_skipped.len(),
                r.records_skipped
            ),
        ));
    }
    for (kind, n) in &s.skipped_lines {
        pairs.push(("lines without flows", format!("{n} {kind}")));
    }
    for w in &s.warnings {
        pairs.push(("warning", w.clone()));
    }
    emit(out, format, color, Versioned::both_keys(IMPORT_SCHEMA, s), &pairs)
}

pub fn demo_report(out: &mut dyn Write, r: &DemoReport, format: Format, color: bool) -> Result<()> {
    match format {
        Format::Json => write_json(out, &Versioned::both_keys(DEMO_SCHEMA, r)),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record([
                "event_id",
                "kind",
                "started_at",
                "ended_at",
                "subject",
                "remote",
                "description",
            ])?;
            for e in &r.events {
                w.write_record([
                    e.event_id.as_str(),
                    e.kind,
                    &e.started_at.to_string(),
                    &e.ended_at.to_string(),
                    &e.subject,
                    e.remote.as_deref().unwrap_or(""),
                    &e.description,
                ])?;
            }
            w.flush()?;
            Ok(())
        }
        Format::Table => {
            if r.batches_ingested == 0 && r.batches_skipped > 0 {
                writeln!(
                    out,
                    "This demo scenario ({} to {}) is already in the workspace; nothing changed.",
                    r.start, r.end
                )?;
            } else {
                writeln!(
                    out,
                    "Wrote {} synthetic flow records (source = demo) from {} to {} in {} daily batch(es).",
                    r.records, r.start, r.end, r.batches_ingested
                )?;
            }
            writeln!(out, "Injected events (ground truth in table demo_events):")?;
            let mut t = new_table(&["kind", "start", "end", "subject", "remote"], color);
            for e in &r.events {
                t.add_row(vec![
                    e.kind.to_string(),
                    e.started_at.to_string(),
                    e.ended_at.to_string(),
                    e.subject.clone(),
                    e.remote.clone().unwrap_or_default(),
                ]);
            }
            writeln!(out, "{t}")?;
            Ok(())
        }
    }
}

pub fn prune_report(out: &mut dyn Write, r: &PruneReport, format: Format, color: bool) -> Result<()> {
    let pairs = [
        ("raw flows older than", r.raw_cutoff.to_string()),
        ("raw flow records deleted", r.raw_deleted.to_string()),
        ("rollups older than", r.rollup_cutoff.to_string()),
        ("rollup rows deleted", r.rollup_deleted.to_string()),
        ("rollup rows merged", r.rollup_rows_merged.to_string()),
    ];
    emit(out, format, color, Versioned::both_keys(PRUNE_SCHEMA, r), &pairs)
}

#[derive(Serialize)]
pub struct Retention {
    pub raw_days: u32,
    pub rollup_days: u32,
}

pub fn retention(out: &mut dyn Write, r: &Retention, color: bool) -> Result<()> {
    let mut t = new_table(&["data", "kept for"], color);
    t.add_row(vec!["raw flow records".to_string(), format!("{} days", r.raw_days)]);
    t.add_row(vec!["hourly rollups".to_string(), format!("{} days", r.rollup_days)]);
    align_right(&mut t, &[1]);
    writeln!(out, "{t}")?;
    Ok(())
}

/// The version of `pull --output json`.
pub const PULL_SCHEMA: &str = "egressor.pull/v1";

/// `pull --output json`: what each agent gave, and the agents that could not be pulled.
#[derive(Serialize)]
struct PullJson<'a> {
    schema_version: &'static str,
    /// Same as `schema_version` (the key v1 first printed it under).
    schema: &'static str,
    agents: &'a [crate::transport::pull::PullReport],
    failed: &'a [AgentFailure],
}

/// An agent `pull` could not pull, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AgentFailure {
    pub agent: String,
    pub error: String,
}

pub fn pull_reports(
    out: &mut dyn Write,
    reports: &[crate::transport::pull::PullReport],
    failed: &[AgentFailure],
    format: Format,
    color: bool,
) -> Result<()> {
    match format {
        Format::Json => write_json(
            out,
            &PullJson { schema_version: PULL_SCHEMA, schema: PULL_SCHEMA, agents: reports, failed },
        ),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record([
                "agent",
                "instance",
                "batches_fetched",
                "batches_ingested",
                "batches_already_present",
                "records_ingested",
                "cursor",
            ])?;
            for r in reports {
                w.write_record([
                    r.agent.clone(),
                    r.instance.clone(),
                    r.batches_fetched.to_string(),
                    r.batches_ingested.to_string(),
                    r.batches_already_present.to_string(),
                    r.records_ingested.to_string(),
                    r.cursor.to_string(),
                ])?;
            }
            w.flush()?;
            Ok(())
        }
        Format::Table => {
            let mut t =
                new_table(&["agent", "batches", "new", "already present", "records", "cursor"], color);
            for r in reports {
                t.add_row(vec![
                    r.agent.clone(),
                    r.batches_fetched.to_string(),
                    r.batches_ingested.to_string(),
                    r.batches_already_present.to_string(),
                    r.records_ingested.to_string(),
                    format!("{}@{}", r.cursor, r.instance),
                ]);
            }
            for f in failed {
                t.add_row(vec![
                    f.agent.clone(),
                    "failed".into(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                ]);
            }
            align_right(&mut t, &[1, 2, 3, 4]);
            writeln!(out, "{t}")?;
            Ok(())
        }
    }
}

/// The version of `pricing show --output json`.
pub const PRICES_SCHEMA: &str = "egressor.prices/v1";

/// `pricing show --output json`: the price files in force, in the order applied, and every price.
#[derive(Serialize)]
struct PricesJson<'a> {
    schema_version: &'static str,
    /// Same as `schema_version` (the key v1 first printed it under).
    schema: &'static str,
    tables: &'a [crate::engines::pricing::TableInfo],
    prices: &'a [crate::engines::pricing::PriceRow],
}

/// `egressor pricing show`: which tables are in force, then one row per price.
pub fn price_rows(
    out: &mut dyn Write,
    book: &crate::engines::pricing::PriceBook,
    rows: &[crate::engines::pricing::PriceRow],
    format: Format,
    color: bool,
) -> Result<()> {
    match format {
        Format::Json => write_json(
            out,
            &PricesJson {
                schema_version: PRICES_SCHEMA,
                schema: PRICES_SCHEMA,
                tables: book.tables(),
                prices: rows,
            },
        ),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            for r in rows {
                w.serialize(r)?;
            }
            w.flush()?;
            Ok(())
        }
        Format::Table => {
            let tables: Vec<String> =
                book.tables().iter().map(|t| format!("{} ({}, as of {})", t.path, t.kind, t.as_of)).collect();
            writeln!(out, "prices: {}", tables.join(", "))?;
            let mut t = new_table(
                &[
                    "provider", "charge", "variant", "from", "to", "tier", "price", "unit", "payer", "free",
                    "origin",
                ],
                color,
            );
            let mut unverified = false;
            for r in rows {
                unverified |= r.unverified;
                t.add_row(vec![
                    r.provider.to_string(),
                    r.charge.clone(),
                    r.variant.clone(),
                    r.regions.clone(),
                    r.destination.clone(),
                    r.tier.clone(),
                    format!("{}{}", r.price, if r.unverified { " ?" } else { "" }),
                    r.unit.clone(),
                    r.payer.clone(),
                    r.free.clone(),
                    r.origin.clone(),
                ]);
            }
            align_right(&mut t, &[6]);
            writeln!(out, "{t}")?;
            if unverified {
                writeln!(
                    out,
                    "? unverified: see the source at the origin line (--output json shows it in full)"
                )?;
            }
            Ok(())
        }
    }
}

/// The version of `top --once --output json`.
pub const TOP_SCHEMA: &str = "egressor.top/v1";

/// `top --once --output json`: one snapshot of the live model.
#[derive(Serialize)]
struct TopJson<'a> {
    schema_version: &'static str,
    /// Same as `schema_version` (the key v1 first printed it under).
    schema: &'static str,
    level: crate::engines::graph::Level,
    seconds: f64,
    bytes_per_sec: f64,
    cost_per_hour: rust_decimal::Decimal,
    currency: &'a str,
    class_cost_per_hour:
        &'a std::collections::BTreeMap<crate::engines::classify::Class, rust_decimal::Decimal>,
    edges: &'a [&'a crate::engines::live::LiveEdge],
}

/// `top --once`: the live model's edges (sorted by rate) and cost rates.
pub fn live_snapshot(
    out: &mut dyn Write,
    m: &crate::engines::live::LiveModel,
    format: Format,
    color: bool,
) -> Result<()> {
    let mut edges: Vec<_> = m.edges.iter().collect();
    edges.sort_by(|a, b| {
        b.rate.total_cmp(&a.rate).then_with(|| a.src.cmp(&b.src)).then_with(|| a.dst.cmp(&b.dst))
    });
    match format {
        Format::Json => write_json(
            out,
            &TopJson {
                schema_version: TOP_SCHEMA,
                schema: TOP_SCHEMA,
                level: m.level,
                seconds: m.seconds,
                bytes_per_sec: m.bytes_per_sec,
                cost_per_hour: m.cost_per_hour,
                currency: &m.currency,
                class_cost_per_hour: &m.class_rate,
                edges: &edges,
            },
        ),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(["from", "to", "class", "bytes", "bytes_per_sec", "cost", "cost_per_hour"])?;
            for e in edges {
                w.write_record([
                    e.src.clone(),
                    e.dst.clone(),
                    e.class.to_string(),
                    e.total_bytes.to_string(),
                    format!("{:.1}", e.rate),
                    e.total_cost.to_string(),
                    e.cost_per_hour.to_string(),
                ])?;
            }
            w.flush()?;
            Ok(())
        }
        Format::Table => {
            let mut t =
                new_table(&["from", "to", "class", "bytes", "rate", &format!("{}/h", m.currency)], color);
            for e in edges {
                t.add_row(vec![
                    e.src.clone(),
                    e.dst.clone(),
                    e.class.to_string(),
                    crate::model::human_bytes(e.total_bytes),
                    crate::views::graph::human_rate(e.rate),
                    e.cost_per_hour.to_string(),
                ]);
            }
            align_right(&mut t, &[3, 4, 5]);
            writeln!(out, "{t}")?;
            writeln!(out, "cost now {} {}/h over {:.1} s", m.cost_per_hour, m.currency, m.seconds)?;
            Ok(())
        }
    }
}
