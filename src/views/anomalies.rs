//! `egressor anomalies`, `anomalies show` and `baseline`: findings as a table, JSON (schema
//! `egressor.anomalies/v1`, docs/schemas/anomalies.v1.json) or CSV; one finding or one series
//! drawn against its baseline band in the terminal.

use super::cost::money;
use super::{Format, align_right, new_table, write_json};
use crate::engines::anomaly::baseline::{Baseline, Stats};
use crate::engines::anomaly::{ANOMALIES_SCHEMA, Evidence, Finding, Thresholds};
use crate::model::{Timestamp, human_bytes};
use anyhow::Result;
use serde::Serialize;
use std::io::Write;

pub struct AnomaliesView<'a> {
    pub findings: &'a [&'a Finding],
    pub since: Timestamp,
    pub until: Timestamp,
    pub thresholds: &'a Thresholds,
}

#[derive(Serialize)]
struct JsonThresholds {
    min_bytes_per_day: u64,
    min_cost_per_day: rust_decimal::Decimal,
    spike_z: f64,
    spike_ratio: f64,
    burn_min_growth_per_day: f64,
    forest: bool,
}

#[derive(Serialize)]
struct JsonList<'a> {
    schema_version: &'static str,
    since: Timestamp,
    until: Timestamp,
    thresholds: JsonThresholds,
    anomalies: &'a [&'a Finding],
}

#[derive(Serialize)]
struct CsvRow<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    subject_kind: &'a str,
    subject: &'a str,
    start: String,
    end: String,
    detected_at: String,
    expected_bytes_per_day: u64,
    observed_bytes_per_day: u64,
    excess_bytes_per_day: u64,
    growth_per_day: String,
    cost_per_day: String,
    projected_extra_per_month: String,
    state: &'a str,
    next_step: &'a str,
}

pub fn anomalies_report(
    out: &mut dyn Write,
    v: &AnomaliesView<'_>,
    format: Format,
    color: bool,
) -> Result<()> {
    match format {
        Format::Json => write_json(
            out,
            &JsonList {
                schema_version: ANOMALIES_SCHEMA,
                since: v.since,
                until: v.until,
                thresholds: JsonThresholds {
                    min_bytes_per_day: v.thresholds.min_bytes as u64,
                    min_cost_per_day: v.thresholds.min_cost,
                    spike_z: v.thresholds.spike_z,
                    spike_ratio: v.thresholds.spike_ratio,
                    burn_min_growth_per_day: v.thresholds.burn_min_growth,
                    forest: v.thresholds.forest,
                },
                anomalies: v.findings,
            },
        ),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            for f in v.findings {
                w.serialize(CsvRow {
                    id: &f.id,
                    kind: f.kind.as_str(),
                    subject_kind: f.subject.kind.as_str(),
                    subject: &f.subject.name,
                    start: f.start.to_string(),
                    end: f.end.map(|e| e.to_string()).unwrap_or_default(),
                    detected_at: f.detected_at.to_string(),
                    expected_bytes_per_day: f.expected_bytes_per_day,
                    observed_bytes_per_day: f.observed_bytes_per_day,
                    excess_bytes_per_day: f.excess_bytes_per_day,
                    growth_per_day: f.growth_per_day.map(|g| format!("{g}")).unwrap_or_default(),
                    cost_per_day: f.cost_per_day.map(|c| c.to_string()).unwrap_or_default(),
                    projected_extra_per_month: f
                        .projected_extra_per_month
                        .map(|c| c.to_string())
                        .unwrap_or_default(),
                    state: f.state.as_str(),
                    next_step: f.next_steps.first().map(String::as_str).unwrap_or(""),
                })?;
            }
            w.flush()?;
            Ok(())
        }
        Format::Table => table(out, v, color),
    }
}

fn short_time(t: Timestamp) -> String {
    t.to_datetime().format("%m-%d %H:%M").to_string()
}

/// What a finding's size is, in the words its type needs.
fn what(f: &Finding) -> String {
    let per_day = |b: u64| format!("{}/day", human_bytes(b));
    match (f.kind, f.growth_per_day) {
        (crate::engines::anomaly::Kind::SlowBurn, Some(g)) => {
            format!("+{:.1}%/day, now {}", g * 100.0, per_day(f.observed_bytes_per_day))
        }
        (crate::engines::anomaly::Kind::NewEndpoint | crate::engines::anomaly::Kind::Leak, _) => {
            per_day(f.observed_bytes_per_day)
        }
        _ => {
            let hours = f.end.map(|e| (e.micros() - f.start.micros()) / Timestamp::MICROS_PER_HOUR);
            let took = hours.map(|h| format!(" in {h}h")).unwrap_or_default();
            format!(
                "{}{took} vs {} expected",
                human_bytes(f.observed_bytes_per_day),
                human_bytes(f.expected_bytes_per_day)
            )
        }
    }
}

fn table(out: &mut dyn Write, v: &AnomaliesView<'_>, color: bool) -> Result<()> {
    writeln!(out, "Anomalies going on since {} (data until {})", v.since, v.until)?;
    if v.findings.is_empty() {
        writeln!(
            out,
            "No anomalies above {}/day and {} USD/day.",
            human_bytes(v.thresholds.min_bytes as u64),
            money(v.thresholds.min_cost)
        )?;
        return Ok(());
    }
    let mut t = new_table(&["ID", "TYPE", "SUBJECT", "START", "END", "OBSERVED", "COST/DAY", "STATE"], color);
    for f in v.findings {
        let subject = if f.also.is_empty() {
            f.subject.name.clone()
        } else {
            format!("{} (+{} more)", f.subject.name, f.also.len())
        };
        t.add_row(vec![
            f.id.clone(),
            f.kind.as_str().to_string(),
            subject,
            short_time(f.start),
            f.end.map(short_time).unwrap_or_else(|| "ongoing".into()),
            what(f),
            f.cost_per_day.map(money).unwrap_or_else(|| "-".into()),
            f.state.as_str().to_string(),
        ]);
    }
    align_right(&mut t, &[6]);
    writeln!(out, "{t}")?;
    if let Some(top) = v.findings.iter().max_by_key(|f| f.cost_per_day.unwrap_or_default()) {
        writeln!(
            out,
            "Costliest: {} — next: {}",
            top.id,
            top.next_steps.first().map(String::as_str).unwrap_or("")
        )?;
    }
    writeln!(out, "Details and the series against its baseline: egressor anomalies show ID")?;
    Ok(())
}

#[derive(Serialize)]
struct JsonFinding<'a> {
    schema_version: &'static str,
    anomaly: &'a Finding,
}

pub fn finding_report(out: &mut dyn Write, f: &Finding, format: Format) -> Result<()> {
    if format != Format::Table {
        return write_json(out, &JsonFinding { schema_version: ANOMALIES_SCHEMA, anomaly: f });
    }
    writeln!(out, "{} {} on {} ({})", f.id, f.kind.as_str(), f.subject.name, f.subject.kind.as_str())?;
    writeln!(out, "  state      {}", f.state.as_str())?;
    writeln!(
        out,
        "  when       {} -> {} (detected {})",
        f.start,
        f.end.map(|e| e.to_string()).unwrap_or_else(|| "ongoing".into()),
        f.detected_at
    )?;
    writeln!(
        out,
        "  bytes/day  expected {}, observed {}, excess {}",
        human_bytes(f.expected_bytes_per_day),
        human_bytes(f.observed_bytes_per_day),
        human_bytes(f.excess_bytes_per_day)
    )?;
    if let Some(g) = f.growth_per_day {
        writeln!(
            out,
            "  trend      +{:.2}%/day (Mann-Kendall z {:.2}, p {:.4})",
            g * 100.0,
            f.score,
            f.p_value.unwrap_or(1.0)
        )?;
    } else if f.score > 0.0 {
        writeln!(out, "  score      {:.2}", f.score)?;
    }
    let over =
        matches!(f.kind, crate::engines::anomaly::Kind::Spike | crate::engines::anomaly::Kind::Outlier)
            && f.end.is_some();
    match (f.cost_per_day, f.projected_extra_per_month) {
        (Some(d), Some(_)) if over => writeln!(out, "  cost       {} USD, once (it is over)", money(d))?,
        (Some(d), Some(m)) => {
            writeln!(out, "  cost       {} USD/day, {} USD/month projected", money(d), money(m))?
        }
        _ => writeln!(out, "  cost       not priced (no priced traffic in its window)")?,
    }
    if let Some(b) = &f.cost_basis {
        writeln!(out, "  how        {b}")?;
    }
    if !f.also.is_empty() {
        writeln!(out, "  also seen  {}", f.also.join(", "))?;
    }
    if f.forest_agrees {
        writeln!(out, "  the isolation forest flagged the same hours")?;
    }
    writeln!(out)?;
    chart(out, &f.evidence, Some((f.start, f.end)))?;
    writeln!(out)?;
    for s in &f.next_steps {
        writeln!(out, "  next: {s}")?;
    }
    Ok(())
}

const CHART_ROWS: usize = 10;
const CHART_COLS: usize = 96;

/// The series (`█`) against its expectation (`─`) and band (`░`), hourly or in buckets of hours
/// (the bucket's largest hour) when longer than the chart is wide; `^` marks the finding's hours.
pub fn chart(out: &mut dyn Write, e: &Evidence, mark: Option<(Timestamp, Option<Timestamp>)>) -> Result<()> {
    let n = e.observed.len();
    if n == 0 {
        writeln!(out, "  (no hours to draw)")?;
        return Ok(());
    }
    let per = n.div_ceil(CHART_COLS);
    let cols = n.div_ceil(per);
    let bucket = |v: &[Option<f64>], c: usize| -> Option<f64> {
        v[c * per..((c + 1) * per).min(n)].iter().flatten().copied().reduce(f64::max)
    };
    let obs: Vec<Option<f64>> = (0..cols).map(|c| bucket(&e.observed, c)).collect();
    let exp: Vec<Option<f64>> = (0..cols).map(|c| bucket(&e.expected, c)).collect();
    let low: Vec<Option<f64>> = (0..cols).map(|c| bucket(&e.low, c)).collect();
    let high: Vec<Option<f64>> = (0..cols).map(|c| bucket(&e.high, c)).collect();
    let top = obs.iter().chain(&high).flatten().copied().fold(1.0, f64::max);
    let row_of = |v: f64| ((v / top * CHART_ROWS as f64).ceil() as usize).clamp(1, CHART_ROWS);
    for r in (1..=CHART_ROWS).rev() {
        let label = if r == CHART_ROWS { format!("{:>9}", human_bytes(top as u64)) } else { " ".repeat(9) };
        let mut line = format!("{label} │");
        for c in 0..cols {
            let ch = match (obs[c], exp[c], low[c], high[c]) {
                (Some(o), _, _, _) if row_of(o) >= r && o > 0.0 => '█',
                (_, Some(x), _, _) if row_of(x) == r && x > 0.0 => '─',
                (_, _, Some(l), Some(h)) if row_of(h) >= r && row_of(l.max(1.0)) <= r => '░',
                (None, ..) if r == 1 => '?',
                _ => ' ',
            };
            line.push(ch);
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    let mut axis = format!("{:>9} └", "0");
    axis.push_str(&"─".repeat(cols));
    writeln!(out, "{axis}")?;
    if let Some((a, b)) = mark {
        let hour = |c: usize| e.start.add_micros((c * per) as i64 * Timestamp::MICROS_PER_HOUR);
        let marks: String = (0..cols)
            .map(|c| {
                let t = hour(c);
                let next = hour(c + 1);
                if next > a && b.is_none_or(|b| t < b) { '^' } else { ' ' }
            })
            .collect();
        writeln!(out, "{:>9}  {}", "", marks.trim_end())?;
    }
    writeln!(
        out,
        "{:>9}  {} .. {}, {} per column; █ observed, ─ expected, ░ band (3 sigma), ? no data",
        "",
        short_time(e.start),
        short_time(e.start.add_micros(n as i64 * Timestamp::MICROS_PER_HOUR)),
        if per == 1 { "1 hour".to_string() } else { format!("{per} hours (largest)") }
    )?;
    Ok(())
}

/// The version of `egressor baseline --output json` (docs/schemas/baseline.v1.json).
pub const BASELINE_SCHEMA: &str = "egressor.baseline/v1";

#[derive(Serialize)]
struct JsonBaseline<'a> {
    schema_version: &'static str,
    subject: &'a str,
    #[serde(flatten)]
    baseline: &'a Baseline,
    series: &'a Evidence,
}

pub fn baseline_report(
    out: &mut dyn Write,
    key: &str,
    b: &Baseline,
    recent: &Evidence,
    format: Format,
    color: bool,
) -> Result<()> {
    if format != Format::Table {
        return write_json(
            out,
            &JsonBaseline { schema_version: BASELINE_SCHEMA, subject: key, baseline: b, series: recent },
        );
    }
    writeln!(out, "Baseline of {key}, bytes per hour, before {}", b.at)?;
    let mut t = new_table(&["WINDOW", "HOURS", "MEAN", "STDDEV", "MEDIAN", "MAD", "P95", "P99"], color);
    let hb = |v: f64| human_bytes(v.max(0.0).round() as u64);
    for (name, s) in &b.windows {
        let s: &Stats = s;
        t.add_row(vec![
            name.clone(),
            s.hours.to_string(),
            hb(s.mean),
            hb(s.stddev),
            hb(s.median),
            hb(s.mad),
            hb(s.p95),
            hb(s.p99),
        ]);
    }
    align_right(&mut t, &[1, 2, 3, 4, 5, 6, 7]);
    writeln!(out, "{t}")?;
    writeln!(out, "\nMedian by weekday and hour (UTC), last 28 days: ' ' none .. '█' the busiest slot")?;
    let top = b.profile.iter().flatten().flatten().copied().fold(0.0, f64::max);
    const SHADES: [char; 5] = ['·', '░', '▒', '▓', '█'];
    writeln!(out, "     0     6     12    18   23")?;
    for (d, name) in ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].iter().enumerate() {
        let row: String = b.profile[d]
            .iter()
            .map(|v| match v {
                None => ' ',
                Some(_) if top <= 0.0 => SHADES[0],
                Some(v) => SHADES[((v / top) * 4.0).round() as usize],
            })
            .collect();
        writeln!(out, "{name}  {row}")?;
    }
    writeln!(out, "\nThe recent hours against the band:")?;
    chart(out, recent, None)
}
