//! `explain` and `ask` as printed: the explanation's sentences and tables; the answer's check.

use super::{Format, new_table, write_json};
use crate::engines::compare::Change;
use crate::engines::explain::{Explanation, money};
use crate::engines::honesty::Figure;
use crate::model::human_bytes;
use anyhow::Result;
use serde::Serialize;
use std::io::Write;

pub fn explanation_report(out: &mut dyn Write, e: &Explanation, format: Format, color: bool) -> Result<()> {
    if format == Format::Json {
        return write_json(out, e);
    }
    let c = &e.comparison;
    writeln!(out, "{}", e.summary[0])?;
    if !c.lines.is_empty() {
        writeln!(out, "\nWhat grew (by {}):", c.grouped_by)?;
        writeln!(out, "{}", changes_table(&c.lines, &c.currency, color))?;
    }
    if !c.classes.is_empty() {
        writeln!(out, "\nBy class:")?;
        writeln!(out, "{}", changes_table(&c.classes, &c.currency, color))?;
    }
    if e.anomalies.is_empty() {
        writeln!(out, "\nNo anomaly is going on in this period.")?;
    } else {
        writeln!(out, "\nAnomalies in this period:")?;
        let mut t = new_table(&["ID", "TYPE", "SUBJECT", "START", "COST/DAY", "EXTRA/MONTH", "NEXT"], color);
        for a in &e.anomalies {
            t.add_row(vec![
                a.id.clone(),
                a.kind.as_str().to_string(),
                a.subject.clone(),
                a.start.to_string(),
                a.cost_per_day.map(money).unwrap_or_else(|| "-".into()),
                a.projected_extra_per_month.map(money).unwrap_or_else(|| "-".into()),
                a.next_step.clone().unwrap_or_default(),
            ]);
        }
        writeln!(out, "{t}")?;
    }
    if !e.recommendations.is_empty() {
        writeln!(out, "\nRecommendations:")?;
        for r in &e.recommendations {
            writeln!(
                out,
                "- {} (saves {} {}/month): {}",
                r.title,
                money(r.monthly_saving),
                c.currency,
                r.action
            )?;
        }
    }
    writeln!(out, "\nIn short:")?;
    for s in &e.summary[1..] {
        writeln!(out, "- {s}")?;
    }
    Ok(())
}

fn changes_table(rows: &[Change], currency: &str, color: bool) -> comfy_table::Table {
    let before = format!("COST BEFORE ({currency})");
    let now = format!("COST NOW ({currency})");
    let mut t = new_table(&["KEY", "BYTES BEFORE", "BYTES NOW", "GROWTH", &before, &now, "CHANGE"], color);
    for ch in rows {
        t.add_row(vec![
            ch.key.clone(),
            human_bytes(ch.bytes_before),
            human_bytes(ch.bytes_now),
            ch.growth.map_or("new".to_string(), |g| format!("{:+.0}%", g * 100.0)),
            money(ch.cost_before),
            money(ch.cost_now),
            money(ch.cost_change),
        ]);
    }
    t
}

/// One tool call of an `ask` conversation, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub input: serde_json::Value,
    /// The result as sent (redacted).
    pub result: serde_json::Value,
    pub is_error: bool,
}

/// `ask --output json`.
#[derive(Debug, Serialize)]
pub struct AskReport<'a> {
    pub schema_version: &'static str,
    pub model: &'a str,
    pub question: &'a str,
    /// The answer with pseudonyms turned back into the real names.
    pub answer: &'a str,
    pub redacted: bool,
    pub rounds: u32,
    pub tool_calls: &'a [ToolCall],
    pub check: CheckReport<'a>,
}

#[derive(Debug, Serialize)]
pub struct CheckReport<'a> {
    pub figures: &'a [Figure],
    pub verified: usize,
    pub unverified: usize,
}

pub fn check_of(figures: &[Figure]) -> CheckReport<'_> {
    let verified = figures.iter().filter(|f| f.verified).count();
    CheckReport { figures, verified, unverified: figures.len() - verified }
}

/// After a streamed answer: what the check found.
pub fn check_report(out: &mut dyn Write, figures: &[Figure]) -> Result<()> {
    let c = check_of(figures);
    writeln!(out)?;
    if figures.is_empty() {
        writeln!(out, "Checked: the answer quotes no money or byte figure.")?;
        return Ok(());
    }
    writeln!(
        out,
        "Checked {} figures against the tool results of this conversation: {} verified, {} unverified.",
        figures.len(),
        c.verified,
        c.unverified
    )?;
    for f in figures.iter().filter(|f| !f.verified) {
        writeln!(out, "  UNVERIFIED: {} — no tool result holds this figure; do not rely on it.", f.text)?;
    }
    Ok(())
}

pub fn ask_json(out: &mut dyn Write, r: &AskReport<'_>) -> Result<()> {
    write_json(out, r)
}
