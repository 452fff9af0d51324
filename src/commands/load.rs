//! What several commands stand on, loaded one way: the workspace opened for ingest, the price
//! book, the topology, and a period's traffic priced by the cost engine.

use crate::cli::Settings;
use crate::engines::anomaly::price::{self, Pricing};
use crate::engines::anomaly::series::{self, Labeler};
use crate::engines::anomaly::{self, Finding, SeriesSet, State, Thresholds};
use crate::engines::classify::Classifier;
use crate::engines::cloud_ranges::CloudRanges;
use crate::engines::cost::{self, CostInput, CostReport, GroupBy, Period};
use crate::engines::pricing::{PriceBook, PriceTable, TableKind};
use crate::engines::topology::Topology;
use crate::model::{TimeBound, Timestamp};
use crate::store::Workspace;
use anyhow::{Result, bail};
use std::path::{Path, PathBuf};

/// The workspace, tuned for a bulk write (`demo`, `import`, `pull`).
pub fn workspace_for_ingest(settings: &Settings) -> Result<Workspace> {
    let ws = Workspace::open(&settings.workspace)?;
    ws.tune_for_ingest()?;
    Ok(ws)
}

/// The shipped price tables with the user's override files layered on, in order.
pub fn price_book(overrides: &[PathBuf]) -> Result<PriceBook> {
    let mut book = PriceBook::shipped()?;
    for path in overrides {
        book = book.with_override(PriceTable::load_file(path, TableKind::Override)?)?;
    }
    Ok(book)
}

/// The topology to classify with: `--topology`, else the one stored in the workspace.
pub fn topology(ws: &Workspace, arg: Option<&Path>) -> Result<Option<Topology>> {
    if let Some(p) = arg {
        return Ok(Some(Topology::load_file(p)?));
    }
    let Some((text, origin)) = ws.topology()? else { return Ok(None) };
    let mut t = Topology::parse(Path::new(&origin), &text)?;
    t.origin = format!("{origin} (stored in the workspace)");
    Ok(Some(t))
}

/// What a priced period is asked for: `cost` and `graph` fill it from their flags.
pub struct PeriodQuery<'a> {
    pub since: TimeBound,
    pub until: Option<TimeBound>,
    pub topology: Option<&'a Path>,
    pub pricing: &'a [PathBuf],
    pub by: GroupBy,
}

/// Prices, topology and traffic of a period, priced: what `cost` and `graph` both stand on.
pub fn priced_period(settings: &Settings, q: &PeriodQuery<'_>) -> Result<(PriceBook, CostReport)> {
    let book = price_book(q.pricing)?;
    let ws = Workspace::open(&settings.workspace)?;
    let topology = topology(&ws, q.topology)?;
    let period = covered_period(&ws, settings.now, q.since, q.until)?;
    let rows = if period.until > period.since { ws.traffic(period.since, period.until)? } else { Vec::new() };
    let report = cost::compute(&CostInput {
        rows: &rows,
        period,
        book: &book,
        topology: topology.as_ref(),
        by: q.by,
        free_allowances: true,
    })?;
    Ok((book, report))
}

/// The period projections divide by. A time the user wrote (`--since 2026-11-01T00:00:00Z`) is
/// the period's bound as written; a relative or default bound (`--since 30d`, no `--until`) is
/// clipped to the hours that have data, so a workspace holding three days is not projected as if
/// it had thirty days of silence. Rollups are hourly: the start is taken down to its hour.
fn covered_period(
    ws: &Workspace,
    now: Timestamp,
    since: TimeBound,
    until: Option<TimeBound>,
) -> Result<Period> {
    let since_given = matches!(since, TimeBound::At(_));
    let until_given = matches!(until, Some(TimeBound::At(_)));
    let mut since = since.resolve(now);
    let mut until = until.map(|u| u.resolve(now)).unwrap_or(now);
    if until <= since {
        bail!("--until ({until}) must be after --since ({since})");
    }
    if since_given {
        since = since.floor_hour();
    }
    if let Some((first, last)) = ws.traffic_span()? {
        if !since_given {
            since = since.floor_hour().max(first);
        }
        if !until_given {
            until = until.min(last.add_micros(Timestamp::MICROS_PER_HOUR));
        }
    }
    Ok(Period { since, until: until.max(since) })
}

/// The anomalies of a workspace, and the series they were found in: what `anomalies`, `baseline`
/// and `top` stand on.
pub struct Analysis {
    pub set: SeriesSet,
    pub findings: Vec<Finding>,
    /// The end of the data analysed (exclusive, an hour).
    pub until: Timestamp,
}

/// What an analysis needs beyond the workspace.
pub struct AnalysisQuery<'a> {
    pub thresholds: Thresholds,
    pub topology: Option<&'a Path>,
    pub pricing: &'a [PathBuf],
    /// Skip detection (a baseline needs the series only).
    pub series_only: bool,
}

/// Builds the hourly series of every kept rollup, runs the detectors, prices
/// each finding with the cost engine and joins the states the user set.
pub fn analyse(settings: &Settings, q: &AnalysisQuery<'_>) -> Result<Analysis> {
    let ws = Workspace::open(&settings.workspace)?;
    analyse_workspace(&ws, settings.now, q)
}

/// [`analyse`] on an open workspace, as of `now` (benchmarks and tests run it on in-memory ones).
pub fn analyse_workspace(ws: &Workspace, now: Timestamp, q: &AnalysisQuery<'_>) -> Result<Analysis> {
    let topology = topology(ws, q.topology)?;
    let now = now.floor_hour();
    let Some((first, last)) = ws.traffic_span()? else {
        return Ok(Analysis {
            set: SeriesSet { start: now, hours: 0, series: Vec::new() },
            findings: Vec::new(),
            until: now,
        });
    };
    let until = now.min(last.add_micros(Timestamp::MICROS_PER_HOUR)).max(first);
    // Every scan starts at the oldest kept rollup, so a finding's start (and its id) stays the same
    // while the rollups it started in are kept (ADR 0010).
    let rollup_days = i64::from(ws.retention()?.1);
    let start = first.max(until.add_micros(-rollup_days * Timestamp::MICROS_PER_DAY));
    let hours = ((until.micros() - start.micros()) / Timestamp::MICROS_PER_HOUR) as usize;
    let rows = ws.hourly_traffic(start, until)?;
    let ranges = CloudRanges::shipped()?;
    let mut classifier = Classifier::new(topology.as_ref(), ranges);
    let set = series::build(&rows, start, hours, &mut Labeler::new(&mut classifier));
    if q.series_only {
        return Ok(Analysis { set, findings: Vec::new(), until });
    }
    // The forest is trained on the last 28 days and scores them, whatever --since says.
    let forest_from = set.hours.saturating_sub(28 * 24);
    let mut findings = anomaly::detect(&set, &q.thresholds, forest_from);
    let book = price_book(q.pricing)?;
    let pricing = Pricing { book: &book, topology: topology.as_ref(), until };
    price::price(&mut findings, &pricing, |a, b| ws.traffic(a, b))?;
    findings.retain(|f| f.cost_per_day.unwrap_or_default() >= q.thresholds.min_cost);
    let states = ws.anomaly_states()?;
    for f in &mut findings {
        if let Some(s) = states.get(&f.id).and_then(|s| State::parse(&s.state)) {
            f.state = s;
        }
    }
    Ok(Analysis { set, findings, until })
}
