//! `egressor run` and `egressor check` reports: a table for people, JSON for scripts
//! (docs/schemas/run.v1.json, check.v1.json), Markdown for a CI job summary, and GitHub Actions
//! annotations for violations.

use super::{align_right, new_table, write_json};
use crate::engines::destinations::{JobReport, Line};
use crate::engines::explain::money;
use crate::engines::policy::{Mode, Verdict, Violation};
use crate::model::{Timestamp, human_bytes};
use rust_decimal::Decimal;
use serde::Serialize;
use std::io::Write;

pub const CHECK_SCHEMA: &str = "egressor.check/v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Table,
    Json,
    Markdown,
}

/// The policy's verdict as reports show it.
#[derive(Serialize)]
pub struct PolicyOutcome<'a> {
    pub file: String,
    #[serde(flatten)]
    pub verdict: &'a Verdict,
    /// No violation, or report-only mode.
    pub passed: bool,
}

/// Everything a run report shows.
#[derive(Serialize)]
pub struct RunView<'a> {
    pub schema_version: &'static str,
    pub command: Vec<String>,
    /// The command's exit code (128 + N when signal N killed it).
    pub exit_code: i32,
    #[serde(flatten)]
    pub report: &'a JobReport,
    /// Processes the command left running, stopped when it exited.
    pub left_running: usize,
    pub map_insert_failures: u64,
    pub sockets_evicted: u64,
    pub policy: Option<PolicyOutcome<'a>>,
    /// The allow list written by --learn, and how many entries it holds.
    pub learned: Option<Learned>,
}

#[derive(Clone, Serialize)]
pub struct Learned {
    pub file: String,
    pub entries: usize,
}

pub fn run_report(
    out: &mut dyn Write,
    v: &RunView<'_>,
    format: ReportFormat,
    color: bool,
) -> anyhow::Result<()> {
    match format {
        ReportFormat::Json => write_json(out, v),
        ReportFormat::Table => run_table(out, v, color),
        ReportFormat::Markdown => run_markdown(out, v),
    }
}

fn per_run_line(v: &RunView<'_>) -> String {
    let r = v.report;
    let cur = &r.currency;
    let place = match (&r.runner.region, &r.runner.zone) {
        (Some(region), Some(zone)) => format!("from {} {region} ({zone})", r.runner.provider),
        (Some(region), None) => format!("from {} {region}", r.runner.provider),
        _ => "no region given (--region): not priced".into(),
    };
    format!(
        "{} destinations, {} connections: {} sent, {} received; {} {cur} per run, {} {cur} per month at {} runs/day; {place}",
        r.totals.destinations,
        r.totals.connections,
        human_bytes(r.totals.bytes_out),
        human_bytes(r.totals.bytes_in),
        money(r.totals.cost_per_run),
        money(r.totals.cost_per_month),
        r.runs_per_day,
    )
}

fn destination(l: &Line) -> String {
    let arrow = match l.way {
        crate::engines::destinations::Way::Outbound => "",
        crate::engines::destinations::Way::Inbound => "(in) ",
    };
    let name = if l.label == l.address.to_string() { String::new() } else { format!(" {}", l.label) };
    let addr = if l.address.is_ipv6() { format!("[{}]", l.address) } else { l.address.to_string() };
    format!("{arrow}{addr}:{}/{}{name}", l.port, l.proto)
}

fn run_table(out: &mut dyn Write, v: &RunView<'_>, color: bool) -> anyhow::Result<()> {
    let r = v.report;
    writeln!(
        out,
        "egressor run: {} exited {} after {}",
        v.command.join(" "),
        v.exit_code,
        duration(r.started, r.ended)
    )?;
    writeln!(out, "{}", per_run_line(v))?;
    let mut t = new_table(
        &["Destination", "Class", "Processes", "Conns", "Sent", "Received", "Per run", "Per month"],
        color,
    );
    for l in &r.lines {
        t.add_row(vec![
            destination(l),
            l.class.to_string(),
            l.processes.join(", "),
            l.connections.to_string(),
            human_bytes(l.bytes_out),
            human_bytes(l.bytes_in),
            money(l.cost_per_run),
            money(l.cost_per_month),
        ]);
    }
    align_right(&mut t, &[3, 4, 5, 6, 7]);
    writeln!(out, "{t}")?;
    notes(out, v)?;
    if let Some(p) = &v.policy {
        policy_lines(out, p)?;
    }
    Ok(())
}

fn notes(out: &mut dyn Write, v: &RunView<'_>) -> anyhow::Result<()> {
    for u in &v.report.unpriced {
        writeln!(out, "not priced: {} ({}, e.g. {})", u.reason, human_bytes(u.bytes), u.example)?;
    }
    if v.left_running > 0 {
        writeln!(out, "the command left {} processes running: stopped when it exited", v.left_running)?;
    }
    if v.map_insert_failures > 0 || v.sockets_evicted > 0 {
        writeln!(
            out,
            "warning: the kernel could not count {} packets and lost {} sockets' last counters: figures are low",
            v.map_insert_failures, v.sockets_evicted
        )?;
    }
    if let Some(l) = &v.learned {
        writeln!(out, "learned: {} destinations allowed in {}", l.entries, l.file)?;
    }
    Ok(())
}

fn policy_lines(out: &mut dyn Write, p: &PolicyOutcome<'_>) -> anyhow::Result<()> {
    let v = p.verdict;
    let mode = match v.mode {
        Mode::Enforce => "",
        Mode::Report => " (report only)",
    };
    if v.violations.is_empty() {
        writeln!(out, "policy {}{mode}: passed ({} rules checked)", p.file, v.checked)?;
    } else {
        writeln!(
            out,
            "policy {}{mode}: {} violations ({} rules checked)",
            p.file,
            v.violations.len(),
            v.checked
        )?;
        for x in &v.violations {
            writeln!(out, "  VIOLATION {}", x.message)?;
        }
    }
    for s in &v.skipped {
        writeln!(out, "  not checked: {} ({})", s.rule, s.why)?;
    }
    Ok(())
}

fn run_markdown(out: &mut dyn Write, v: &RunView<'_>) -> anyhow::Result<()> {
    let r = v.report;
    let status = match &v.policy {
        Some(p) if !p.verdict.violations.is_empty() => " — policy violated",
        _ => "",
    };
    writeln!(out, "### egressor run: `{}` exited {}{status}\n", v.command.join(" "), v.exit_code)?;
    writeln!(out, "{}\n", per_run_line(v))?;
    writeln!(out, "| Destination | Class | Processes | Conns | Sent | Received | Per run | Per month |")?;
    writeln!(out, "|---|---|---|--:|--:|--:|--:|--:|")?;
    for l in &r.lines {
        writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} | {} | {} |",
            destination(l),
            l.class,
            l.processes.join(", "),
            l.connections,
            human_bytes(l.bytes_out),
            human_bytes(l.bytes_in),
            money(l.cost_per_run),
            money(l.cost_per_month)
        )?;
    }
    writeln!(out)?;
    let mut notes_text = Vec::new();
    notes(&mut notes_text, v)?;
    for line in String::from_utf8_lossy(&notes_text).lines() {
        writeln!(out, "- {line}")?;
    }
    if let Some(p) = &v.policy {
        policy_markdown(out, p)?;
    }
    Ok(())
}

fn policy_markdown(out: &mut dyn Write, p: &PolicyOutcome<'_>) -> anyhow::Result<()> {
    let v = p.verdict;
    let mode = if v.mode == Mode::Report { " (report only)" } else { "" };
    if v.violations.is_empty() {
        writeln!(out, "\n**Policy** `{}`{mode}: passed, {} rules checked.", p.file, v.checked)?;
    } else {
        writeln!(out, "\n**Policy** `{}`{mode}: {} violations\n", p.file, v.violations.len())?;
        for x in &v.violations {
            writeln!(out, "- :x: {}", x.message)?;
        }
    }
    for s in &v.skipped {
        writeln!(out, "- not checked: {} ({})", s.rule, s.why)?;
    }
    Ok(())
}

/// GitHub Actions workflow commands: one annotation per violation, on the policy line that was broken
/// (an error, or a warning in report-only mode).
pub fn github_annotations(out: &mut dyn Write, verdict: &Verdict) -> anyhow::Result<()> {
    let level = if verdict.mode == Mode::Report { "warning" } else { "error" };
    for x in &verdict.violations {
        writeln!(
            out,
            "::{level} file={},line={},title=egressor policy: {}::{}",
            escape_property(&x.rule.file),
            x.rule.line,
            escape_property(&kind_title(x)),
            escape_data(&x.message)
        )?;
    }
    Ok(())
}

fn kind_title(x: &Violation) -> String {
    match x.kind {
        crate::engines::policy::RuleKind::Budget => format!("budget ({})", x.subject),
        crate::engines::policy::RuleKind::Denied => "denied destination".into(),
        crate::engines::policy::RuleKind::NotAllowed => "destination not in the allow list".into(),
        crate::engines::policy::RuleKind::ByteLimit => format!("byte limit ({})", x.subject),
    }
}

/// The escaping GitHub's workflow commands define for a message and for a property.
fn escape_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

fn duration(a: Timestamp, b: Timestamp) -> String {
    let ms = (b.micros() - a.micros()).max(0) / 1000;
    format!("{}.{:03} s", ms / 1000, ms % 1000)
}

/// Everything a check report shows.
#[derive(Serialize)]
pub struct CheckView<'a> {
    pub schema_version: &'static str,
    pub since: Timestamp,
    pub until: Timestamp,
    pub days: Decimal,
    pub currency: String,
    /// Cost of the period (transfer and hourly charges) and per day.
    pub cost: Decimal,
    pub cost_per_day: Decimal,
    /// External destinations in the period.
    pub destinations: usize,
    pub policy: PolicyOutcome<'a>,
}

pub fn check_report(out: &mut dyn Write, v: &CheckView<'_>, format: ReportFormat) -> anyhow::Result<()> {
    match format {
        ReportFormat::Json => write_json(out, v),
        ReportFormat::Table => {
            writeln!(out, "{}", check_summary(v))?;
            policy_lines(out, &v.policy)
        }
        ReportFormat::Markdown => {
            writeln!(out, "### egressor check\n\n{}", check_summary(v))?;
            policy_markdown(out, &v.policy)
        }
    }
}

fn check_summary(v: &CheckView<'_>) -> String {
    format!(
        "{} to {} ({} days): {} {cur}, {} {cur} per day; {} external destinations",
        v.since,
        v.until,
        v.days.round_dp(2).normalize(),
        money(v.cost),
        money(v.cost_per_day),
        v.destinations,
        cur = v.currency
    )
}
