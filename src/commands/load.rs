//! What several commands stand on, loaded one way: the workspace opened for ingest, the price
//! book, the topology, and a period's traffic priced by the cost engine.

use crate::cli::Settings;
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
