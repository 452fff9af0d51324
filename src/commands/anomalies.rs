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
            if matches!(o.output, crate::cli::OutputFormat::Csv) {
                bail!("`anomalies show` prints a table or JSON (--output table|json); CSV is for the list");
            }
            let a = analyse(settings, detect)?;
            let f = find(&a, id)?;
            finding_report(out, f, o.output.into())?;
            Ok(ExitCode::SUCCESS)
        }
        Some(AnomalyAction::Ack { id, detect }) => set_state(settings, id, detect, State::Acknowledged, out),
        Some(AnomalyAction::Resolve { id, detect }) => set_state(settings, id, detect, State::Resolved, out),
        Some(AnomalyAction::Reopen { id, detect }) => set_state(settings, id, detect, State::Open, out),
    }
}

fn list(settings: &Settings, args: &AnomaliesArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let since = args.since.resolve(settings.now);
    let a = analyse(settings, &args.detect)?;
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

fn analyse(settings: &Settings, d: &DetectArgs) -> Result<Analysis> {
    load::analyse(
        settings,
        &AnalysisQuery {
            thresholds: thresholds(d),
            topology: d.net.topology.as_deref(),
            pricing: &d.net.prices.pricing,
            series_only: false,
        },
    )
}

fn find<'a>(a: &'a Analysis, id: &str) -> Result<&'a Finding> {
    a.findings.iter().find(|f| f.id == id).ok_or_else(|| anyhow::anyhow!(not_found(id)))
}

fn set_state(
    settings: &Settings,
    id: &str,
    d: &DetectArgs,
    state: State,
    out: &mut dyn Write,
) -> Result<ExitCode> {
    // The id comes from a list run with these thresholds, or from one that showed smaller findings.
    let mut found = None;
    for min_bytes in [d.min_bytes as f64, 0.0] {
        let query = AnalysisQuery {
            thresholds: Thresholds { min_bytes, min_cost: rust_decimal::Decimal::ZERO, ..thresholds(d) },
            topology: d.net.topology.as_deref(),
            pricing: &d.net.prices.pricing,
            series_only: false,
        };
        let a = load::analyse(settings, &query)?;
        if let Some(f) = a.findings.iter().find(|f| f.id == id) {
            found = Some(f.clone());
            break;
        }
    }
    let Some(f) = found else { bail!(not_found(id)) };
    let ws = Workspace::open(&settings.workspace)?;
    ws.set_anomaly_state(id, state.as_str(), settings.now, (f.kind.as_str(), &f.subject.key(), f.start))?;
    writeln!(out, "{id} {}: {} on {}, since {}", state.as_str(), f.kind.as_str(), f.subject.name, f.start)?;
    Ok(ExitCode::SUCCESS)
}

fn not_found(id: &str) -> String {
    format!(
        "no anomaly {id} in this workspace with these thresholds; `egressor anomalies --since 90d --all` \
         lists every finding with its id (give `show`/`ack` the thresholds of the list that showed it)"
    )
}
