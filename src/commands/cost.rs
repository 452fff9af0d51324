//! `egressor cost`: the period's traffic classified and priced, grouped as asked, with the
//! arithmetic (`--explain`) and savings (`--recommend`).

use super::load::{self, PeriodQuery};
use crate::cli::{CostArgs, Settings};
use crate::engines::cost::GroupBy;
use crate::engines::pricing::PriceBook;
use crate::engines::savings;
use crate::views::cost::{CostView, cost_report};
use anyhow::Result;
use std::io::Write;
use std::process::ExitCode;

pub fn run(settings: &Settings, args: &CostArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let query = PeriodQuery {
        since: args.since,
        until: args.until,
        topology: args.net.topology.as_deref(),
        pricing: &args.net.prices.pricing,
        by: GroupBy::parse(&args.by).expect("clap checked --by"),
    };
    let (book, report) = load::priced_period(settings, &query)?;
    let recs = args.recommend.then(|| savings::recommend(&report));
    let view = CostView {
        report: &report,
        top: args.top,
        explain: args.explain,
        recommendations: recs.as_deref(),
        prices: price_sources(&book, &report.provider),
    };
    cost_report(out, &view, args.out.output.into(), settings.color)?;
    Ok(ExitCode::SUCCESS)
}

/// The price files the report's provider was priced from, as the header names them.
fn price_sources(book: &PriceBook, provider: &crate::engines::pricing::Provider) -> String {
    book.tables()
        .iter()
        .filter(|t| &t.provider == provider)
        .map(|t| format!("{} (as of {})", t.path, t.as_of))
        .collect::<Vec<_>>()
        .join(", ")
}
