//! `egressor check --policy F [--since 24h]`: the workspace's traffic of a period against a policy, for
//! scheduled jobs. The same rules as `run`, read per day: budgets per day (per-run budgets are
//! listed as not checked), destinations outside our networks by address, byte limits per day.
//! Exit 4 on a violation (0 in report-only mode), 1 when the check itself fails.

use super::load::{self, PeriodQuery};
use super::run::{VIOLATION, publish};
use crate::cli::{CheckArgs, Settings};
use crate::engines::cost::GroupBy;
use crate::engines::policy::{self, Mode, Policy};
use crate::views::run::{CHECK_SCHEMA, CheckView, PolicyOutcome, check_report};
use anyhow::{Context, Result};
use rust_decimal::Decimal;
use std::io::Write;
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
    let render = |w: &mut dyn Write, f, _color| check_report(w, &view, f);
    publish(out, args.policy.output, args.policy.report.as_deref(), Some(&verdict), false, render)?;
    Ok(if verdict.fails() { ExitCode::from(VIOLATION) } else { ExitCode::SUCCESS })
}
