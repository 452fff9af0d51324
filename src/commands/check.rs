//! `egressor check --policy F [--since 24h]`: the workspace's traffic of a period against a policy, for
//! scheduled jobs. The same rules as `run`, read per day: budgets per day (per-run budgets are
//! listed as not checked), destinations outside our networks by address, byte limits per day.
//! Exit 4 on a violation (0 in report-only mode), 1 when the check itself fails.

use super::load::{self, PeriodQuery};
use super::run::{VIOLATION, append, format, format_for_file};
use crate::cli::{CheckArgs, Settings};
use crate::engines::cost::GroupBy;
use crate::engines::policy::{self, Mode, Policy};
use crate::views::run::{
    CHECK_SCHEMA, CheckView, PolicyOutcome, ReportFormat, check_report, github_annotations,
};
use anyhow::{Context, Result};
use rust_decimal::Decimal;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

pub fn run(settings: &Settings, args: &CheckArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let file = args
        .policy
        .policy
        .as_deref()
        .context("check needs a policy: --policy FILE (or EGRESSOR_POLICY); see docs/policy.md")?;
    let policy = Policy::load_file(file)?;
    let query = PeriodQuery {
        since: args.since,
        until: args.until,
        topology: args.net.topology.as_deref(),
        pricing: &args.net.prices.pricing,
        by: GroupBy::Namespace,
    };
    let (_, report) = load::priced_period(settings, &query)?;
    let usage = policy::period_usage(&report);
    let mut verdict = policy::evaluate(&policy, &usage, &report.currency);
    if args.policy.report_only {
        verdict.mode = Mode::Report;
    }
    let days = report.hours / Decimal::from(24);
    let view = CheckView {
        schema_version: CHECK_SCHEMA,
        since: report.since,
        until: report.until,
        days,
        currency: report.currency.clone(),
        cost: report.totals.cost,
        cost_per_day: if days.is_zero() { Decimal::ZERO } else { report.totals.cost / days },
        destinations: usage.destinations.len(),
        policy: PolicyOutcome {
            file: file.display().to_string(),
            verdict: &verdict,
            passed: !verdict.fails(),
        },
    };
    check_report(out, &view, format(args.policy.output))?;
    if let Some(f) = &args.policy.report {
        let mut buf = Vec::new();
        check_report(&mut buf, &view, format_for_file(f))?;
        std::fs::write(f, buf).with_context(|| format!("cannot write the report {}", f.display()))?;
    }
    if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|s| !s.is_empty()) {
        let mut buf = Vec::new();
        check_report(&mut buf, &view, ReportFormat::Markdown)?;
        append(Path::new(&summary), &buf)?;
    }
    if std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true") {
        github_annotations(out, &verdict)?;
    }
    Ok(if verdict.fails() { ExitCode::from(VIOLATION) } else { ExitCode::SUCCESS })
}
