//! `egressor reconcile --cur FILE [--month M]`: the month's bill as egressor computes it, against
//! the AWS Cost and Usage Report, per usage type and per billed resource.

use super::load::{self, PeriodQuery};
use crate::cli::{ReconcileArgs, Settings};
use crate::engines::cost::GroupBy;
use crate::engines::reconcile::{self, Billed};
use crate::import::cur::BillLine;
use crate::model::{TimeBound, Timestamp};
use anyhow::{Context, Result};
use std::io::Write;
use std::process::ExitCode;

pub fn run(settings: &Settings, args: &ReconcileArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let lines = crate::import::read_cur(&args.cur)?;
    let month = match &args.month {
        Some(m) => m.clone(),
        None => lines.iter().filter_map(|l| l.month.clone()).max().with_context(|| {
            format!("{} has no usage start dates; say which month with --month YYYY-MM", args.cur.display())
        })?,
    };
    let (bill, other_lines) = month_bill(&lines, &month);
    let (since, until) = month_bounds(&month)?;
    let query = PeriodQuery {
        since: TimeBound::At(since),
        until: Some(TimeBound::At(until)),
        topology: args.net.topology.as_deref(),
        pricing: &args.net.prices.pricing,
        // Lines by node name the observers, which the bill's resource ids are compared with.
        by: GroupBy::Node,
    };
    let (_, report) = load::priced_period(settings, &query)?;
    let r = reconcile::reconcile(&month, &bill, other_lines, &report);
    crate::views::reconcile::reconciliation(out, &r, args.out.output.into(), settings.color)?;
    Ok(ExitCode::SUCCESS)
}

/// The month's data-transfer lines (a line without a date is taken as the month's), and how many
/// other lines there were.
fn month_bill(lines: &[BillLine], month: &str) -> (Vec<Billed>, u64) {
    let mut bill = Vec::new();
    let mut other = 0;
    for l in lines.iter().filter(|l| l.month.as_deref().is_none_or(|m| m == month)) {
        match reconcile::normalise_usage_type(&l.usage_type) {
            Some(usage_type) => bill.push(Billed {
                usage_type,
                amount: l.usage_amount,
                cost: l.cost,
                resource: l.resource_id.clone(),
            }),
            None => other += 1,
        }
    }
    (bill, other)
}

fn month_bounds(month: &str) -> Result<(Timestamp, Timestamp)> {
    let start = Timestamp::parse(&format!("{month}-01T00:00:00Z")).map_err(anyhow::Error::msg)?;
    let next = Timestamp::parse(&format!("{month}-28T00:00:00Z"))
        .map_err(anyhow::Error::msg)?
        .add_micros(5 * 24 * Timestamp::MICROS_PER_HOUR)
        .floor_month();
    Ok((start, next))
}
