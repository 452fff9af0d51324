//! Anomaly benchmark: how often the detectors are right, and how fast they run.
//!
//! Run: `cargo xtask bench anomalies`. Three parts, each printed as a table for docs/benchmarks.md:
//! 1. The demo (14 days, its four injected events) over 20 seeds, end to end: demo -> workspace
//!    -> hourly series -> detectors -> cost engine, as `egressor anomalies` runs them.
//! 2. The second generator (src/demo/scenarios.rs: weekly rhythms, a holiday, an outage, an agent
//!    down, noisy trickles, a deliberate launch, two spikes, a slow burn, a new endpoint, a leak) over
//!    20 seeds of 35 days x 60 series, and the same scenarios without events (false positives a week).
//! 3. Slow burns of the second generator one by one: time to detect against how far the burn's
//!    first three days rise above the series' own day-to-day noise.
//! 4. Speed: baselines (24h/7d/28d statistics and the weekday x hour profile) and all detectors over
//!    10,000 series x 90 days hourly; median of 3 runs.

use egressor::commands::load::{AnalysisQuery, analyse_workspace};
use egressor::demo::scenarios;
use egressor::demo::{self, DemoSpec};
use egressor::engines::anomaly::score::{Label, TypeScore, score};
use egressor::engines::anomaly::{self, Finding, Kind, Thresholds, baseline};
use egressor::model::Timestamp;
use egressor::store::Workspace;
use std::time::Instant;

const SEEDS: u64 = 20;

#[derive(Default, Clone)]
struct Tally {
    labels: usize,
    detected: usize,
    findings: usize,
    true_findings: usize,
    hours: Vec<f64>,
}

fn add(into: &mut [Tally; 5], scores: &[TypeScore]) {
    for (t, s) in into.iter_mut().zip(scores) {
        t.labels += s.labels;
        t.detected += s.detected;
        t.findings += s.findings;
        t.true_findings += s.true_findings;
        t.hours.extend(&s.detect_hours);
    }
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn print(title: &str, t: &[Tally; 5]) {
    println!("\n{title}\n");
    println!(
        "| type | labelled | found | findings | true | precision | recall | time to detect (median / max) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    for (k, x) in Kind::ALL.iter().zip(t) {
        let p = if x.findings > 0 {
            format!("{:.2}", x.true_findings as f64 / x.findings as f64)
        } else {
            "-".into()
        };
        let r = if x.labels > 0 { format!("{:.2}", x.detected as f64 / x.labels as f64) } else { "-".into() };
        let mut h = x.hours.clone();
        let ttd = if h.is_empty() {
            "-".to_string()
        } else {
            let max = h.iter().copied().fold(0.0, f64::max);
            format!("{:.0} h / {:.0} h", median(&mut h), max)
        };
        let found =
            if *k == Kind::Outlier { format!("{} alone", x.detected) } else { x.detected.to_string() };
        println!(
            "| {} | {} | {found} | {} | {} | {p} | {r} | {ttd} |",
            k.as_str(),
            x.labels,
            x.findings,
            x.true_findings
        );
    }
}

fn demo_seeds() {
    let mut tally: [Tally; 5] = Default::default();
    let end = Timestamp::parse("2026-11-20T00:00:00Z").unwrap();
    let t0 = Instant::now();
    for seed in 0..SEEDS {
        let mut ws = Workspace::open_in_memory().unwrap();
        demo::write(&mut ws, DemoSpec { days: 14, seed, end }).unwrap();
        let labels: Vec<Label> = ws
            .demo_events()
            .unwrap()
            .into_iter()
            .map(|e| Label {
                kind: Kind::parse(&e.kind).unwrap(),
                start: e.started_at,
                end: e.ended_at,
                subject: e.subject,
                remote: e.remote,
            })
            .collect();
        let q = AnalysisQuery {
            thresholds: Thresholds::default(),
            topology: None,
            pricing: &[],
            series_only: false,
        };
        let a = analyse_workspace(&ws, end, &q).unwrap();
        let s = score(&a.findings, &labels);
        if std::env::var_os("BENCH_VERBOSE").is_some() {
            for f in &a.findings {
                println!(
                    "seed {seed}: {} {} {} {} detected {}",
                    f.id,
                    f.kind.as_str(),
                    f.subject.name,
                    f.start,
                    f.detected_at
                );
            }
        }
        add(&mut tally, &s);
    }
    print(
        &format!("Demo, 14 days, seeds 0..{SEEDS}, end to end ({:.1} s)", t0.elapsed().as_secs_f64()),
        &tally,
    );
}

fn generated() {
    let (mut tally, mut quiet): ([Tally; 5], [Tally; 5]) = Default::default();
    let mut quiet_findings: Vec<Finding> = Vec::new();
    let th = Thresholds::default();
    for seed in 0..SEEDS {
        let g = scenarios::generate(seed, 35, 60, true);
        let found = anomaly::detect(&g.set, &th, 0);
        if std::env::var_os("BENCH_VERBOSE").is_some() {
            for f in &found {
                let hit = g.labels.iter().any(|l| anomaly::score::matches(f, l));
                println!(
                    "gen {seed}: {} {} {} {} {}",
                    hit,
                    f.kind.as_str(),
                    f.subject.name,
                    f.start,
                    f.detected_at
                );
            }
            if std::env::var_os("BENCH_DEBUG").is_some() {
                for f in found.iter().filter(|f| {
                    f.kind == Kind::SlowBurn && !g.labels.iter().any(|l| anomaly::score::matches(f, l))
                }) {
                    let s = g.set.series.iter().find(|s| s.subject == f.subject).unwrap();
                    let days: Vec<String> = s
                        .bytes
                        .chunks(24)
                        .map(|d| format!("{:.0}", d.iter().filter(|v| !v.is_nan()).sum::<f64>() / 1e6))
                        .collect();
                    println!(
                        "burn {} {} growth {:?} z {} days(MB) {}",
                        f.subject.name,
                        f.start,
                        f.growth_per_day,
                        f.score,
                        days.join(" ")
                    );
                }
            }
            for l in &g.labels {
                println!("gen {seed}: label {:?} {} {:?} {}", l.kind, l.subject, l.remote, l.start);
            }
        }
        add(&mut tally, &score(&found, &g.labels));
        let q = scenarios::generate(seed + 1000, 35, 60, false);
        let found = anomaly::detect(&q.set, &th, 0);
        if std::env::var_os("BENCH_DEBUG").is_some() {
            for f in found.iter().filter(|f| f.kind == Kind::Leak) {
                let s = q.set.series.iter().find(|s| s.subject == f.subject).unwrap();
                let i = q.set.index_of(f.detected_at);
                println!(
                    "{} detected {} hours {:?}",
                    f.subject.name,
                    f.detected_at,
                    &s.bytes[i.saturating_sub(24)..i]
                );
            }
        }
        add(&mut quiet, &score(&found, &[]));
        quiet_findings.extend(found);
    }
    print(&format!("Second generator, 35 days x 60 series, seeds 0..{SEEDS}"), &tally);
    let weeks = SEEDS as f64 * 5.0;
    println!(
        "\nQuiet scenarios (same nuisances, no events), seeds 1000..{}: {} findings in {weeks} scenario-weeks = {:.2} false positives per week (per 60 series)",
        1000 + SEEDS,
        quiet_findings.len(),
        quiet_findings.len() as f64 / weeks
    );
    print("The same, by type (every finding here is false)", &quiet);
}

/// Each labelled slow burn of the second generator: its time to detect against the signal it had
/// after three days (`3 ln(1 + growth)` over the series' daily noise). Growth: day 2 of the burn
/// against the same weekday a week before (`(ratio)^(1/3) - 1`, the burn's factor at day 2 being
/// `(1 + g)^3`; a launch reads as its average rise). Noise: the robust spread of log(day / same
/// weekday a week before) over the two weeks before the burn, over sqrt 2 (each is a difference of
/// two noisy days); hours of an outage or an agent down are in both, as a user's data would be.
fn burns() {
    let th = Thresholds::default();
    let mut rows: Vec<(f64, Option<f64>)> = Vec::new();
    for seed in 0..SEEDS {
        let g = scenarios::generate(seed, 35, 60, true);
        let found = anomaly::detect(&g.set, &th, 0);
        for l in g.labels.iter().filter(|l| l.kind == Kind::SlowBurn) {
            let Some(s) = g.set.series.iter().find(|s| {
                let has = |p: &str| s.subject.ends.iter().any(|e| e == p);
                has(&l.subject) && l.remote.as_deref().is_none_or(has)
            }) else {
                panic!("no series for the label {} {:?}", l.subject, l.remote);
            };
            let days = anomaly::detectors::daily_totals(&s.bytes, 0);
            let d0 = g.set.index_of(l.start) / 24;
            let weekly: Vec<f64> = (d0.saturating_sub(14).max(7)..d0)
                .map(|d| (days[d] / days[d - 7]).ln())
                .filter(|v| v.is_finite())
                .collect();
            let mut w = weekly.clone();
            let m = median(&mut w);
            let mut dev: Vec<f64> = weekly.iter().map(|v| (v - m).abs()).collect();
            let noise = (1.4826 * median(&mut dev) / std::f64::consts::SQRT_2).max(0.005);
            let growth = (days[d0 + 2] / days[d0 - 5]).powf(1.0 / 3.0) - 1.0;
            let signal = 3.0 * (1.0 + growth).max(1e-9).ln() / noise;
            let ttd = found
                .iter()
                .filter(|f| f.kind == Kind::SlowBurn && anomaly::score::matches(f, l))
                .map(|f| {
                    (f.detected_at.micros() - l.start.micros()) as f64 / Timestamp::MICROS_PER_HOUR as f64
                })
                .reduce(f64::min);
            if std::env::var_os("BENCH_VERBOSE").is_some() {
                println!(
                    "gen {seed}: {} growth {:.3}/day noise {noise:.3} signal {signal:.1} ttd {ttd:?}",
                    s.subject.name, growth
                );
            }
            rows.push((signal, ttd));
        }
    }
    println!(
        "\nSlow burns of the second generator, seeds 0..{SEEDS}: time to detect by the signal after three days\n"
    );
    println!("| 3-day rise / daily noise | burns | found | within 72 h | time to detect (median / max) |");
    println!("|---|---:|---:|---:|---|");
    for (name, lo, hi) in [("< 3", f64::NEG_INFINITY, 3.0), ("3 - 6", 3.0, 6.0), (">= 6", 6.0, f64::INFINITY)]
    {
        let of: Vec<&(f64, Option<f64>)> = rows.iter().filter(|(s, _)| *s >= lo && *s < hi).collect();
        let mut hours: Vec<f64> = of.iter().filter_map(|(_, t)| *t).collect();
        let within = hours.iter().filter(|h| **h <= 72.0).count();
        let max = hours.iter().copied().fold(f64::NAN, f64::max);
        let ttd = if hours.is_empty() {
            "-".to_string()
        } else {
            format!("{:.0} h / {max:.0} h", median(&mut hours))
        };
        println!("| {name} | {} | {} | {within} | {ttd} |", of.len(), hours.len());
    }
}

fn speed() {
    let g = scenarios::generate(7, 90, 10_000, true);
    let th = Thresholds::default();
    let mut times = Vec::new();
    let mut n = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let mut stats = 0usize;
        for s in &g.set.series {
            let b = baseline::baseline(&s.bytes, g.set.start, s.bytes.len());
            stats += b.windows.len();
        }
        let base = t.elapsed().as_secs_f64();
        // The forest scores the last 7 days, what `anomalies --since 6d` (the day before included) asks.
        let found = anomaly::detect(&g.set, &th, g.set.hours - 7 * 24);
        println!("  baselines {base:.2} s, detectors {:.2} s", t.elapsed().as_secs_f64() - base);
        n = found.len();
        assert_eq!(stats, 3 * g.set.series.len());
        times.push(t.elapsed().as_secs_f64());
    }
    let all = times.clone();
    println!(
        "\nSpeed: baselines + all detectors over {} series x {} hours: {:.2} s median (runs {:?} s), {} findings, {} threads",
        g.set.series.len(),
        g.set.hours,
        median(&mut times),
        all.iter().map(|t| (t * 100.0).round() / 100.0).collect::<Vec<_>>(),
        n,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
}

fn main() {
    // `cargo bench` passes `--bench` to the binary: the part is the first argument that is not a flag.
    let which = std::env::args().skip(1).find(|a| !a.starts_with('-')).unwrap_or_default();
    if which.is_empty() || which == "demo" {
        demo_seeds();
    }
    if which.is_empty() || which == "generated" {
        generated();
    }
    if which.is_empty() || which == "burns" {
        burns();
    }
    if which.is_empty() || which == "speed" {
        speed();
    }
}
