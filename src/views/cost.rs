//! `egressor cost`: the bill as a table (with `--explain`, its arithmetic), JSON (schema
//! `egressor.cost/v1`, docs/cost.md) or CSV (one row per line).

use super::{Format, align_right, new_table, write_json};
use crate::engines::cost::{CostLine, CostReport, Meter};
use crate::engines::savings::Recommendation;
use crate::model::human_bytes;
use anyhow::Result;
use comfy_table::Table;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;
use std::io::Write;

/// Money as printed: cents, half away from zero.
pub fn money(d: Decimal) -> String {
    format!("{:.2}", d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero))
}

/// A unit quantity as printed: up to 6 decimals, trailing zeros removed.
fn qty(d: Decimal) -> String {
    d.round_dp_with_strategy(6, RoundingStrategy::MidpointAwayFromZero).normalize().to_string()
}

#[derive(Serialize)]
struct JsonReport<'a> {
    #[serde(flatten)]
    report: &'a CostReport,
    lines_shown: usize,
    recommendations: Option<&'a [Recommendation]>,
}

#[derive(Serialize)]
struct CsvLine<'a> {
    key: &'a str,
    bytes: u64,
    cost: String,
    monthly: String,
    classes: String,
}

pub struct CostView<'a> {
    pub report: &'a CostReport,
    pub top: Option<usize>,
    pub explain: bool,
    pub recommendations: Option<&'a [Recommendation]>,
    pub prices: String,
}

pub fn cost_report(out: &mut dyn Write, v: &CostView<'_>, format: Format, color: bool) -> Result<()> {
    let r = v.report;
    let shown: &[CostLine] = &r.lines[..v.top.unwrap_or(usize::MAX).min(r.lines.len())];
    match format {
        Format::Json => {
            let mut report = r.clone();
            report.lines = shown.to_vec();
            if !v.explain {
                for l in &mut report.lines {
                    l.parts.clear();
                }
            }
            write_json(
                out,
                &JsonReport { report: &report, lines_shown: shown.len(), recommendations: v.recommendations },
            )
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            for l in shown {
                w.serialize(CsvLine {
                    key: &l.key,
                    bytes: l.bytes,
                    cost: money(l.cost),
                    monthly: money(r.monthly(l.cost)),
                    classes: l.classes.keys().map(|c| c.as_str()).collect::<Vec<_>>().join(" "),
                })?;
            }
            w.flush()?;
            Ok(())
        }
        Format::Table => table(out, v, shown, color),
    }
}

/// The bill for people: header, the grouped lines, classes, hourly charges, the total, then what
/// could not be priced, the arithmetic (`--explain`) and the recommendations (`--recommend`).
fn table(out: &mut dyn Write, v: &CostView<'_>, shown: &[CostLine], color: bool) -> Result<()> {
    let r = v.report;
    header(out, v)?;
    writeln!(out, "{}", lines_table(r, shown, color))?;
    writeln!(out, "{}", classes_table(r, color))?;
    if !r.hourly.is_empty() {
        writeln!(out, "{}", hourly_table(r, color))?;
    }
    let cur = &r.currency;
    writeln!(
        out,
        "total {} {cur} (transfer {} + hourly {}); projected {} {cur} per 730-hour month from the period's {} h",
        money(r.totals.cost),
        money(r.totals.transfer_cost),
        money(r.totals.hourly_cost),
        money(r.totals.projected_monthly),
        qty(r.hours)
    )?;
    if !r.unpriced.is_empty() {
        unpriced(out, r)?;
    }
    for z in &r.zone_problems {
        writeln!(out, "\nwarning: {z}")?;
    }
    if v.explain {
        explain(out, r, shown)?;
    }
    if let Some(recs) = v.recommendations {
        recommendations(out, recs, cur)?;
    }
    Ok(())
}

fn header(out: &mut dyn Write, v: &CostView<'_>) -> Result<()> {
    let r = v.report;
    writeln!(
        out,
        "Data transfer cost {} .. {} ({} h), {} prices in {}",
        r.since,
        r.until,
        qty(r.hours),
        r.provider,
        r.currency
    )?;
    writeln!(
        out,
        "prices: {}; tiers accumulate {}; topology: {}",
        v.prices,
        r.tier_accumulation,
        r.topology.as_deref().unwrap_or("none (zones and regions from flow metadata only)")
    )?;
    Ok(())
}

/// One row per shown line (share of the transfer cost, its three costliest classes), the rest
/// folded into one row, and the transfer total.
fn lines_table(r: &CostReport, shown: &[CostLine], color: bool) -> Table {
    let cur = &r.currency;
    let mut t =
        new_table(&[r.by.as_str(), "bytes", &format!("cost {cur}"), "per month", "share", "classes"], color);
    for l in shown {
        let share = if r.totals.transfer_cost.is_zero() {
            "-".to_string()
        } else {
            format!("{:.1}%", (l.cost * Decimal::from(100) / r.totals.transfer_cost).round_dp(1))
        };
        let mut classes: Vec<_> = l.classes.iter().collect();
        classes.sort_by(|a, b| b.1.cost.cmp(&a.1.cost).then(b.1.bytes.cmp(&a.1.bytes)));
        t.add_row(vec![
            l.key.clone(),
            human_bytes(l.bytes),
            money(l.cost),
            money(r.monthly(l.cost)),
            share,
            classes.iter().take(3).map(|(c, _)| c.as_str()).collect::<Vec<_>>().join(", "),
        ]);
    }
    if shown.len() < r.lines.len() {
        let rest: Decimal = r.lines[shown.len()..].iter().map(|l| l.cost).sum();
        t.add_row(vec![
            format!("({} more)", r.lines.len() - shown.len()),
            String::new(),
            money(rest),
            money(r.monthly(rest)),
            String::new(),
            String::new(),
        ]);
    }
    t.add_row(vec![
        "transfer total".into(),
        human_bytes(r.totals.bytes),
        money(r.totals.transfer_cost),
        money(r.monthly(r.totals.transfer_cost)),
        String::new(),
        String::new(),
    ]);
    align_right(&mut t, &[1, 2, 3, 4]);
    t
}

fn classes_table(r: &CostReport, color: bool) -> Table {
    let mut c = new_table(&["class", "bytes", &format!("cost {}", r.currency), "per month"], color);
    let mut classes: Vec<_> = r.by_class.iter().collect();
    classes.sort_by(|a, b| b.1.cost.cmp(&a.1.cost).then(b.1.bytes.cmp(&a.1.bytes)).then(a.0.cmp(b.0)));
    for (class, ct) in classes {
        c.add_row(vec![class.to_string(), human_bytes(ct.bytes), money(ct.cost), money(r.monthly(ct.cost))]);
    }
    align_right(&mut c, &[1, 2, 3]);
    c
}

fn hourly_table(r: &CostReport, color: bool) -> Table {
    let mut h = new_table(
        &["hourly charge", "region", "quantity", "hours", "price", &format!("cost {}", r.currency)],
        color,
    );
    for l in &r.hourly {
        h.add_row(vec![
            l.resource.clone(),
            l.region.clone(),
            qty(l.quantity),
            qty(l.hours),
            format!("{}/h", l.unit_price),
            money(l.cost),
        ]);
    }
    align_right(&mut h, &[2, 3, 4, 5]);
    h
}

/// Traffic no price applied to, said loudly: it is not free, it is unknown.
fn unpriced(out: &mut dyn Write, r: &CostReport) -> Result<()> {
    writeln!(
        out,
        "\nnot priced: {} ({} of all bytes) — these are NOT counted as free:",
        human_bytes(r.totals.unpriced_bytes),
        if r.totals.bytes == 0 {
            "-".into()
        } else {
            format!("{:.1}%", r.totals.unpriced_bytes as f64 * 100.0 / r.totals.bytes as f64)
        }
    )?;
    for u in &r.unpriced {
        writeln!(
            out,
            "  {}: {} in {} transfers, e.g. {}",
            u.reason,
            human_bytes(u.bytes),
            u.transfers,
            u.example
        )?;
    }
    Ok(())
}

/// Each shown line as its shares of meters, then every meter's own arithmetic.
fn explain(out: &mut dyn Write, r: &CostReport, shown: &[CostLine]) -> Result<()> {
    let cur = &r.currency;
    writeln!(out, "\nHow each line is computed (a meter is one price applied to one month's usage):")?;
    for l in shown {
        writeln!(out, "\n{} = {} {cur}", l.key, money(l.cost))?;
        for p in &l.parts {
            let m = &r.meters[p.meter];
            writeln!(
                out,
                "  {} [{:?} side]: {} of meter #{}'s {} -> {} of {} {cur}",
                p.class,
                p.side,
                human_bytes(p.bytes),
                m.id,
                human_bytes(m.bytes),
                qty(p.cost),
                qty(m.cost)
            )?;
        }
    }
    writeln!(out, "\nMeters:")?;
    for m in &r.meters {
        explain_meter(out, m, cur)?;
    }
    seen_twice(out, r)
}

/// Transfers reported by both ends: which report the bill used.
fn seen_twice(out: &mut dyn Write, r: &CostReport) -> Result<()> {
    if r.seen_twice.is_empty() {
        return Ok(());
    }
    writeln!(out, "\nSeen at both ends, billed once (the larger report; a tie goes to the sender's):")?;
    let who = |o: &crate::engines::observations::Observer| {
        let role = match o.role {
            crate::engines::observations::Role::Sender => "sender",
            crate::engines::observations::Role::Receiver => "receiver",
        };
        format!("{} ({role}, {})", o.node, human_bytes(o.bytes))
    };
    for s in &r.seen_twice {
        writeln!(
            out,
            "  {} -> {} in {}{}: billed from {}; not billed: {}",
            s.src,
            s.dst,
            s.month.to_datetime().format("%Y-%m"),
            if s.in_period { "" } else { " (before the period)" },
            s.billed.iter().map(who).collect::<Vec<_>>().join(", "),
            s.not_billed.iter().map(who).collect::<Vec<_>>().join(", ")
        )?;
    }
    Ok(())
}

fn recommendations(out: &mut dyn Write, recs: &[Recommendation], cur: &str) -> Result<()> {
    writeln!(out, "\nRecommendations ({}):", recs.len())?;
    if recs.is_empty() {
        writeln!(out, "  none: no avoidable NAT, cross-zone, cross-region or public-address traffic found")?;
    }
    for (i, rec) in recs.iter().enumerate() {
        writeln!(
            out,
            "\n{}. {} — saves {} {cur}/month ({} in this period)",
            i + 1,
            rec.title,
            money(rec.monthly_saving),
            money(rec.period_saving)
        )?;
        writeln!(out, "   {}", rec.action)?;
        for e in &rec.evidence {
            writeln!(out, "   - {e}")?;
        }
    }
    Ok(())
}

fn explain_meter(out: &mut dyn Write, m: &Meter, cur: &str) -> Result<()> {
    writeln!(
        out,
        "  #{} {}{} from {}{} in {}: {} = {} {} (payer {}; price {} as of {}: {})",
        m.id,
        m.category,
        m.variant.as_ref().map(|v| format!(" ({v})")).unwrap_or_default(),
        m.region,
        m.dest.as_ref().map(|d| format!(" to {d}")).unwrap_or_default(),
        m.month,
        human_bytes(m.bytes),
        qty(m.units),
        m.unit,
        m.payer,
        m.price_origin,
        m.as_of,
        m.price_source
    )?;
    if !m.units_before.is_zero() || !m.tier_position.is_zero() {
        writeln!(
            out,
            "     month usage before the period: {} {} (tier position {})",
            qty(m.units_before),
            m.unit,
            qty(m.tier_position)
        )?;
    }
    for s in &m.slices {
        writeln!(
            out,
            "     tier {}: {} {} x {} = {}",
            s.tier + 1,
            qty(s.units),
            m.unit,
            s.unit_price,
            qty(s.cost)
        )?;
    }
    if !m.free_units.is_zero() {
        writeln!(
            out,
            "     free allowance {}: -{} {} = -{}",
            m.free_allowance.as_deref().unwrap_or(""),
            qty(m.free_units),
            m.unit,
            qty(m.free_value)
        )?;
    }
    writeln!(out, "     = {} {cur}", qty(m.cost))?;
    Ok(())
}
