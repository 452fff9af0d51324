//! `egressor baseline SUBJECT`: one hourly series' statistics over the 24 h, 7 d and 28 d before
//! the end of the data, its weekday x hour profile, and its recent hours against the band the
//! detectors use.

use super::load::{self, AnalysisQuery};
use crate::cli::{BaselineArgs, Settings};
use crate::engines::anomaly::{self, Thresholds, baseline};
use crate::views::anomalies::baseline_report;
use anyhow::{Result, bail};
use std::io::Write;
use std::process::ExitCode;

pub fn run(settings: &Settings, args: &BaselineArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let since = args.since.resolve(settings.now);
    let a = load::analyse(
        settings,
        &AnalysisQuery {
            thresholds: Thresholds::default(),
            topology: args.net.topology.as_deref(),
            pricing: &args.net.prices.pricing,
            series_only: true,
        },
    )?;
    let s = match a.set.find(&args.subject) {
        Ok(s) => s,
        Err(candidates) if candidates.is_empty() => bail!(
            "no series named {:?} in the workspace's last 90 days; series are named like \
             `egress:shop/Deployment/checkout`, `edge:A <-> B`, `external:internet 203.0.113.10`, \
             `class:cross-zone` (`egressor anomalies --output json` shows subjects)",
            args.subject
        ),
        Err(candidates) => bail!(
            "{:?} names {} series; say which:\n  {}",
            args.subject,
            candidates.len(),
            candidates.iter().take(20).cloned().collect::<Vec<_>>().join("\n  ")
        ),
    };
    let b = baseline::baseline(&s.bytes, a.set.start, s.bytes.len());
    let recent = anomaly::recent(&a.set, s, a.set.index_of(since));
    baseline_report(out, &s.subject.key(), &b, &recent, args.out.output.into(), settings.color)?;
    Ok(ExitCode::SUCCESS)
}
