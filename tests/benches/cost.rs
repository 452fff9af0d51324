//! Cost benchmark: `egressor cost --since 30d` over N flow records (default 50 million), next to the
//! bare DuckDB aggregate over the same rows, in the same run.
//!
//! Run: `cargo xtask bench cost` (`EGRESSOR_BENCH_RECORDS=N` to change the size). Each measurement is
//! repeated 5 times and the median printed:
//! - `bare rollup aggregate`: the GROUP BY over `flows_hourly` that cost reads, rows not decoded;
//! - `bare raw aggregate`: the same GROUP BY over the raw `flows` table (what a naive tool would scan);
//! - `cost end to end`: read + decode + classify + price + tiers + lines, as the CLI runs it.

mod synth;

use egressor::engines::cost::{CostInput, GroupBy, Period, compute};
use egressor::engines::pricing::PriceBook;
use egressor::model::Timestamp;
use egressor::store::Workspace;
use std::time::{Duration, Instant};

fn median(mut f: impl FnMut() -> u64) -> (Duration, u64) {
    let mut times = Vec::new();
    let mut n = 0;
    for _ in 0..5 {
        let t0 = Instant::now();
        n = f();
        times.push(t0.elapsed());
    }
    times.sort();
    (times[2], n)
}

fn main() {
    let total: u64 =
        std::env::var("EGRESSOR_BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(50_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut ws = Workspace::open(&dir.path().join("bench.duckdb")).expect("workspace");
    let busy = synth::ingest(&mut ws, total);
    ws.checkpoint().expect("checkpoint");
    let info = ws.info().expect("info");
    let (first, last) = ws.traffic_span().expect("span").expect("data");
    let until = last.add_micros(Timestamp::MICROS_PER_HOUR);
    let since = until.add_micros(-30 * Timestamp::MICROS_PER_DAY).max(first);
    let book = PriceBook::shipped().expect("prices");
    println!("records               {total} (ingested in {:.1} s)", busy.as_secs_f64());
    println!("hourly rollup rows    {}", info.hourly_rollup_rows);
    let (bare, groups) = median(|| ws.traffic_aggregate_only(since, until, false).expect("query"));
    println!("bare rollup aggregate {:>8.3} s  ({groups} groups)", bare.as_secs_f64());
    let (raw, raw_groups) = median(|| ws.traffic_aggregate_only(since, until, true).expect("query"));
    println!("bare raw aggregate    {:>8.3} s  ({raw_groups} groups)", raw.as_secs_f64());
    let (cost, lines) = median(|| {
        let rows = ws.traffic(since, until).expect("traffic");
        let r = compute(&CostInput {
            rows: &rows,
            period: Period { since, until },
            book: &book,
            topology: None,
            by: GroupBy::Workload,
            free_allowances: true,
        })
        .expect("cost");
        assert!(r.totals.bytes > 0);
        r.lines.len() as u64
    });
    println!("cost end to end       {:>8.3} s  ({lines} lines)", cost.as_secs_f64());
    println!("cost / bare rollup    {:>8.2}x", cost.as_secs_f64() / bare.as_secs_f64());
    println!("cost / bare raw       {:>8.2}x", cost.as_secs_f64() / raw.as_secs_f64());
    drop(ws);
    if std::env::var("EGRESSOR_BENCH_ENRICH").as_deref() != Ok("0") {
        enriched_vs_unnamed(total, &book, dir.path());
    }
}

/// The same stream as an agent sends it (addresses and pod UIDs), ingested twice: named by the
/// Kubernetes enrichment on the way in (as `pull` does, ADR 0009), and left unnamed. `cost --by
/// workload` over each, side by side: the join is at ingest, so the query must not notice it.
fn enriched_vs_unnamed(total: u64, book: &PriceBook, dir: &std::path::Path) {
    let enricher = egressor::engines::enrich::Enricher::new(&synth::cluster_meta());
    let mut named = Workspace::open(&dir.join("named.duckdb")).expect("workspace");
    let busy_named = synth::ingest_unnamed(&mut named, total, Some(&enricher));
    let mut plain = Workspace::open(&dir.join("unnamed.duckdb")).expect("workspace");
    let busy_plain = synth::ingest_unnamed(&mut plain, total, None);
    println!(
        "ingest named / unnamed {:>7.1} s / {:.1} s ({:.2}x)",
        busy_named.as_secs_f64(),
        busy_plain.as_secs_f64(),
        busy_named.as_secs_f64() / busy_plain.as_secs_f64()
    );
    let cost_of = |ws: &Workspace| {
        let (first, last) = ws.traffic_span().expect("span").expect("data");
        let until = last.add_micros(Timestamp::MICROS_PER_HOUR);
        let since = until.add_micros(-30 * Timestamp::MICROS_PER_DAY).max(first);
        median(|| {
            let rows = ws.traffic(since, until).expect("traffic");
            let r = compute(&CostInput {
                rows: &rows,
                period: Period { since, until },
                book,
                topology: None,
                by: GroupBy::Workload,
                free_allowances: true,
            })
            .expect("cost");
            r.lines.len() as u64
        })
    };
    let (t_named, l_named) = cost_of(&named);
    let (t_plain, l_plain) = cost_of(&plain);
    println!("cost named            {:>8.3} s  ({l_named} lines)", t_named.as_secs_f64());
    println!("cost unnamed          {:>8.3} s  ({l_plain} lines)", t_plain.as_secs_f64());
    println!("cost named / unnamed  {:>8.2}x", t_named.as_secs_f64() / t_plain.as_secs_f64());
}
