//! Ingest benchmark: 10 million agent-shaped flow records into a fresh on-disk workspace, in pulls of
//! 100,000 records (10 batches each), as `egressor pull` would write them.
//!
//! Run: `cargo xtask bench ingest` (or `cargo bench --bench ingest`; `EGRESSOR_BENCH_RECORDS=N` to
//! change the size). Prints records/s (generation excluded) and bytes on disk per record after a
//! checkpoint. Results and the machine they came from are recorded in docs/benchmarks.md.

mod synth;

use egressor::store::Workspace;
use std::time::Instant;

fn main() {
    let total: u64 =
        std::env::var("EGRESSOR_BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bench.duckdb");
    let mut ws = Workspace::open(&path).expect("workspace");
    // As `egressor pull` opens it.
    ws.tune_for_ingest().expect("ingest settings");
    let busy = synth::ingest(&mut ws, total);
    let t0 = Instant::now();
    ws.checkpoint().expect("checkpoint");
    let checkpoint = t0.elapsed();
    let info = ws.info().expect("info");
    assert_eq!(info.flow_records, total);
    let (raw, hourly) = ws.totals().expect("totals");
    assert_eq!(raw, hourly, "rollups must match raw flows");
    let secs = (busy + checkpoint).as_secs_f64();
    println!("records            {total}");
    println!(
        "ingest time        {:.2} s (+ checkpoint {:.2} s)",
        busy.as_secs_f64(),
        checkpoint.as_secs_f64()
    );
    println!("records/s          {:.0}", total as f64 / secs);
    println!("size on disk       {} bytes", info.size_on_disk_bytes);
    println!("bytes/record       {:.1}", info.size_on_disk_bytes as f64 / total as f64);
    println!("hourly rollup rows {}", info.hourly_rollup_rows);
}
