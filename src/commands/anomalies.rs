//! `egressor anomalies`: what changed, each finding with its cost, evidence and next step;
//! `anomalies show ID` one of them against its baseline band; `ack`, `resolve`, `reopen` its state.

use super::load::{self, Analysis, AnalysisQuery};
use crate::cli::{AnomaliesArgs, AnomalyAction, DetectArgs, Settings};
use crate::engines::anomaly::{Finding, Kind, State, Thresholds};
use crate::store::Workspace;
use crate::views::anomalies::{AnomaliesView, anomalies_report, finding_report};
use anyhow::{Result, bail};
use std::io::Write;
use std::process::ExitCode;

pub fn run(settings: &Settings, args: &AnomaliesArgs, out: &mut dyn Write) -> Result<ExitCode> {
    match &args.action {
        None => list(settings, args, out),
        Some(AnomalyAction::Show { id, detect, out: o }) => {
            let a = analyse(settings, detect, None)?;
            let f = find(&a, id)?;
            finding_report(out, f, o.output.into())?;
            Ok(ExitCode::SUCCESS)
        }
        Some(AnomalyAction::Ack { id }) => set_state(settings, id, State::Acknowledged, out),
        Some(AnomalyAction::Resolve { id }) => set_state(settings, id, State::Resolved, out),
        Some(AnomalyAction::Reopen { id }) => set_state(settings, id, State::Open, out),
    }
}

fn list(settings: &Settings, args: &AnomaliesArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let since = args.since.resolve(settings.now);
    let a = analyse(settings, &args.detect, Some(since))?;
    let kind = args.kind.as_deref().map(|k| Kind::parse(k).expect("clap checked --type"));
    let shown: Vec<&Finding> = a
        .findings
        .iter()
        .filter(|f| f.end.is_none_or(|e| e > since))
        .filter(|f| kind.is_none_or(|k| f.kind == k))
        .filter(|f| args.all || f.state != State::Resolved)
        .collect();
    let view =
        AnomaliesView { findings: &shown, since, until: a.until, thresholds: &thresholds(&args.detect) };
    anomalies_report(out, &view, args.out.output.into(), settings.color)?;
    Ok(ExitCode::SUCCESS)
}

fn thresholds(d: &DetectArgs) -> Thresholds {
    Thresholds {
        min_bytes: d.min_bytes as f64,
        min_cost: d.min_cost,
        spike_z: d.spike_z,
        spike_ratio: d.spike_ratio,
        burn_min_growth: d.burn_min_growth / 100.0,
        forest: !d.no_forest,
        ..Thresholds::default()
    }
}

fn analyse(settings: &Settings, d: &DetectArgs, since: Option<crate::model::Timestamp>) -> Result<Analysis> {
    load::analyse(
        settings,
        &AnalysisQuery {
            thresholds: thresholds(d),
            since: since.unwrap_or(crate::model::Timestamp::from_micros(0)),
            topology: d.net.topology.as_deref(),
            pricing: &d.net.prices.pricing,
            series_only: false,
        },
    )
}

fn find<'a>(a: &'a Analysis, id: &str) -> Result<&'a Finding> {
    match a.findings.iter().find(|f| f.id == id) {
        Some(f) => Ok(f),
        None => bail!(
            "no anomaly {id} in this workspace's last 90 days (with these thresholds); \
             `egressor anomalies --since 90d --all` lists every finding with its id"
        ),
    }
}

fn set_state(settings: &Settings, id: &str, state: State, out: &mut dyn Write) -> Result<ExitCode> {
    // The id may come from a list run with lower thresholds than the defaults: look there second.
    let mut found = None;
    for min_bytes in [Thresholds::default().min_bytes, 0.0] {
        let a = load::analyse(
            settings,
            &AnalysisQuery {
                thresholds: Thresholds { min_bytes, ..Thresholds::default() },
                since: crate::model::Timestamp::from_micros(0),
                topology: None,
                pricing: &[],
                series_only: false,
            },
        )?;
        if let Some(f) = a.findings.iter().find(|f| f.id == id) {
            found = Some(f.clone());
            break;
        }
    }
    let Some(f) = found else {
        bail!(
            "no anomaly {id} in this workspace's last 90 days; \
             `egressor anomalies --since 90d --all` lists every finding with its id"
        )
    };
    let ws = Workspace::open(&settings.workspace)?;
    ws.set_anomaly_state(id, state.as_str(), settings.now, (f.kind.as_str(), &f.subject.key(), f.start))?;
    writeln!(out, "{id} {}: {} on {}, since {}", state.as_str(), f.kind.as_str(), f.subject.name, f.start)?;
    Ok(ExitCode::SUCCESS)
}
