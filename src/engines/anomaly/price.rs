//! What a finding costs: the subject's own traffic over the finding's window, priced by the cost
//! engine (its classes, its NAT legs, its tiers at the marginal rate), gives a price per byte; the
//! excess bytes per day at that price are the finding's cost per day. Not a flat rate: a spike
//! across zones and one inside a zone cost differently, and say so.

use super::series::Labeler;
use super::{Finding, Kind, SubjectKind};
use crate::engines::classify::Classifier;
use crate::engines::cloud_ranges::CloudRanges;
use crate::engines::cost::{self, CostInput, GroupBy, Period};
use crate::engines::pricing::PriceBook;
use crate::engines::topology::Topology;
use crate::model::{Timestamp, TrafficRow, human_bytes};
use anyhow::Result;
use rust_decimal::Decimal;

/// Sum of k for k = 1..=30: a linear trend's extra bytes over the next 30 days, in slopes.
const TREND_DAYS_SUM: i64 = 465;

pub struct Pricing<'a> {
    pub book: &'a PriceBook,
    pub topology: Option<&'a Topology>,
    /// The end of the data the findings were computed over.
    pub until: Timestamp,
}

/// The hours the price is taken over: a spike's own hours; for what goes on (a slow burn, a new
/// endpoint, a leak), its last 24 hours.
fn window(f: &Finding, until: Timestamp) -> (Timestamp, Timestamp) {
    let end = f.end.unwrap_or(until).min(until);
    match f.kind {
        Kind::Spike | Kind::Outlier => (f.start, end),
        _ => (f.start.max(end.add_micros(-Timestamp::MICROS_PER_DAY)), end),
    }
}

/// Prices every finding; `traffic(since, until)` loads the period's rows (the store's
/// `Workspace::traffic`).
pub fn price(
    findings: &mut [Finding],
    p: &Pricing<'_>,
    mut traffic: impl FnMut(Timestamp, Timestamp) -> Result<Vec<TrafficRow>>,
) -> Result<()> {
    let ranges = CloudRanges::shipped()?;
    let mut classifier = Classifier::new(p.topology, ranges);
    let mut labeler = Labeler::new(&mut classifier);
    for f in findings.iter_mut() {
        let (a, b) = window(f, p.until);
        if b <= a {
            continue;
        }
        let rows: Vec<TrafficRow> = traffic(a, b)?
            .into_iter()
            .filter(|r| r.in_period)
            .filter_map(|r| subject_share(f, r, &mut labeler))
            .collect();
        let report = cost::compute(&CostInput {
            rows: &rows,
            period: Period { since: a, until: b },
            book: p.book,
            topology: p.topology,
            by: GroupBy::Class,
            free_allowances: false,
        })?;
        let (bytes, spent) = match f.subject.kind {
            SubjectKind::Class => report
                .by_class
                .iter()
                .find(|(c, _)| c.as_str() == f.subject.name)
                .map_or((0, Decimal::ZERO), |(_, t)| (t.bytes, t.cost)),
            _ => (report.totals.bytes, report.totals.transfer_cost),
        };
        if bytes == 0 {
            continue;
        }
        let per_byte = spent / Decimal::from(bytes);
        let per_day = (per_byte * Decimal::from(f.excess_bytes_per_day)).round_dp(6);
        f.cost_per_day = Some(per_day);
        f.projected_extra_per_month = Some(match (f.kind, f.slope_bytes_per_day) {
            (Kind::SlowBurn, Some(slope)) => {
                (per_byte * Decimal::from(slope.round() as i64) * Decimal::from(TREND_DAYS_SUM)).round_dp(6)
            }
            // A spike that is over happened once: it projects nothing onto the month.
            (Kind::Spike | Kind::Outlier, _) if f.end.is_some() => Decimal::ZERO,
            _ => (per_day * Decimal::from(cost::HOURS_PER_MONTH) / Decimal::from(24)).round_dp(6),
        });
        let per_gb = (per_byte * Decimal::from(1_000_000_000u64)).round_dp(6);
        f.cost_basis = Some(format!(
            "{} a day above expected x {per_gb} USD/GB: the cost engine priced this subject's {} from {a} to {b} at {} USD{}",
            human_bytes(f.excess_bytes_per_day),
            human_bytes(bytes),
            spent.round_dp(6),
            classes_note(&report),
        ));
    }
    Ok(())
}

fn classes_note(r: &cost::CostReport) -> String {
    let parts: Vec<String> = r
        .by_class
        .iter()
        .filter(|(_, t)| t.bytes > 0)
        .map(|(c, t)| format!("{c} {}", human_bytes(t.bytes)))
        .collect();
    if parts.is_empty() { String::new() } else { format!(" ({})", parts.join(", ")) }
}

/// The part of a row that belongs to the finding's subject, or `None`.
fn subject_share(f: &Finding, mut r: TrafficRow, labeler: &mut Labeler<'_, '_>) -> Option<TrafficRow> {
    let l = labeler.labels(&r.node, &r.local, &r.remote);
    let s = &f.subject;
    let keep = match s.kind {
        SubjectKind::Edge => {
            (l.local == s.ends[0] && l.remote == s.ends[1]) || (l.local == s.ends[1] && l.remote == s.ends[0])
        }
        SubjectKind::Egress => {
            r.bytes_in = 0;
            l.local == s.name
        }
        SubjectKind::External => l.remote == s.name,
        SubjectKind::Class => true,
    };
    keep.then_some(r)
}
