//! Anomaly benchmark: how often the detectors are right, and how fast they run.
//!
//! Run: `cargo xtask bench anomalies`. Three parts, each printed as a table for docs/benchmarks.md:
//! 1. The demo (14 days, its four injected events) over 20 seeds, end to end: demo -> workspace
//!    -> hourly series -> detectors -> cost engine, as `egressor anomalies` runs them.
//! 2. The second generator (src/demo/scenarios.rs: weekly rhythms, a holiday, an outage, an agent
//!    down, noisy trickles, a deliberate launch, two spikes, a slow burn, a new endpoint, a leak) over
//!    20 seeds of 35 days x 60 series, and the same scenarios without events (false positives a week).
//! 3. Speed: baselines (24h/7d/28d statistics and the weekday x hour profile) and all detectors over
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
                println!("seed {seed}: {} {} {} {}", f.id, f.kind.as_str(), f.subject.name, f.start);
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
    let which = std::env::args().nth(1).unwrap_or_default();
    if which.is_empty() || which == "demo" {
        demo_seeds();
    }
    if which.is_empty() || which == "generated" {
        generated();
    }
    if which.is_empty() || which == "speed" {
        speed();
    }
}
