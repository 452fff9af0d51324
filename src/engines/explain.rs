//! The deterministic explanation of a period (`egressor explain`, and what `ask` prints without a
//! key): what changed against the period before (the lines that grew most, by class, in money),
//! the anomalies going on in it with their cost, and the recommendations that apply, each as a
//! sentence whose figures come from the cost engine.

use super::anomaly::{Finding, Kind};
use super::compare::{Change, Comparison};
use super::savings::Recommendation;
use crate::model::{Timestamp, human_bytes};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;

pub const SCHEMA: &str = "egressor.explain/v1";

/// How many of the lines that grew are listed.
pub const GREW_SHOWN: usize = 10;

/// An anomaly as the explanation lists it.
#[derive(Debug, Clone, Serialize)]
pub struct AnomalyBrief {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub subject: String,
    pub start: Timestamp,
    pub end: Option<Timestamp>,
    pub expected_bytes_per_day: u64,
    pub observed_bytes_per_day: u64,
    pub growth_per_day: Option<f64>,
    pub cost_per_day: Option<Decimal>,
    pub projected_extra_per_month: Option<Decimal>,
    pub next_step: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub schema_version: &'static str,
    pub comparison: Comparison,
    pub anomalies: Vec<AnomalyBrief>,
    pub recommendations: Vec<Recommendation>,
    /// The explanation in sentences, most important first.
    pub summary: Vec<String>,
}

/// Explains a compared period with the findings that overlap it and the recommendations for it.
pub fn explain(
    mut comparison: Comparison,
    findings: &[&Finding],
    recommendations: Vec<Recommendation>,
) -> Explanation {
    let anomalies: Vec<AnomalyBrief> = findings.iter().map(|f| brief(f)).collect();
    let summary = sentences(&comparison, &anomalies, &recommendations);
    let grew: Vec<Change> = comparison.grew(GREW_SHOWN).cloned().collect();
    comparison.lines = grew;
    Explanation { schema_version: SCHEMA, comparison, anomalies, recommendations, summary }
}

fn brief(f: &Finding) -> AnomalyBrief {
    AnomalyBrief {
        id: f.id.clone(),
        kind: f.kind,
        subject: f.subject.name.clone(),
        start: f.start,
        end: f.end,
        expected_bytes_per_day: f.expected_bytes_per_day,
        observed_bytes_per_day: f.observed_bytes_per_day,
        growth_per_day: f.growth_per_day,
        cost_per_day: f.cost_per_day,
        projected_extra_per_month: f.projected_extra_per_month,
        next_step: f.next_steps.first().cloned(),
    }
}

/// Money as the explanation writes it: 2 decimals, or 4 below a cent so a tiny cost is not "0.00".
pub fn money(d: Decimal) -> String {
    let dp = if d.abs() < Decimal::new(1, 2) && !d.is_zero() { 4 } else { 2 };
    format!("{:.*}", dp as usize, d.round_dp_with_strategy(dp, RoundingStrategy::MidpointAwayFromZero))
}

fn signed(d: Decimal) -> String {
    if d.is_sign_negative() { money(d) } else { format!("+{}", money(d)) }
}

fn sentences(c: &Comparison, anomalies: &[AnomalyBrief], recs: &[Recommendation]) -> Vec<String> {
    let cur = &c.currency;
    let mut out = vec![format!(
        "From {} to {}, transfer cost {} {cur} for {}; the period before ({} to {}) cost {} {cur} for {}: {} {cur}.",
        c.now.since,
        c.now.until,
        money(c.now.transfer_cost),
        human_bytes(c.now.bytes),
        c.before.since,
        c.before.until,
        money(c.before.transfer_cost),
        human_bytes(c.before.bytes),
        signed(c.cost_change),
    )];
    if c.before.bytes == 0 {
        out.push("The workspace has no traffic in the period before, so everything in this period counts as growth.".into());
    }
    for ch in c.grew(3) {
        let growth = ch.growth.map_or("new".to_string(), |g| format!("{:+.0}%", g * 100.0));
        out.push(format!(
            "Grew: {} — {} {cur} ({} -> {}, {growth}).",
            ch.key,
            signed(ch.cost_change),
            human_bytes(ch.bytes_before),
            human_bytes(ch.bytes_now),
        ));
    }
    if let Some(cl) = c.classes.first().filter(|cl| cl.cost_change > Decimal::ZERO) {
        out.push(format!("The class that grew most in cost: {} ({} {cur}).", cl.key, signed(cl.cost_change)));
    }
    for a in anomalies {
        let cost = a.cost_per_day.map_or("not priced".to_string(), |d| format!("{} {cur}/day", money(d)));
        let month = a
            .projected_extra_per_month
            .map(|m| format!(", {} {cur}/month projected", money(m)))
            .unwrap_or_default();
        let next = a.next_step.as_ref().map(|s| format!(" Next: {s}")).unwrap_or_default();
        out.push(format!(
            "{} {} on {} since {}: {cost}{month}.{next}",
            a.kind.as_str(),
            a.id,
            a.subject,
            a.start
        ));
    }
    for r in recs {
        out.push(format!(
            "Recommendation: {} — saves {} {cur}/month. {}",
            r.title,
            money(r.monthly_saving),
            r.action
        ));
    }
    out
}
