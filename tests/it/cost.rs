//! `egressor cost`, `topology` and `graph` as a user runs them: on the demo, with a malformed
//! topology, and byte-identical output for identical inputs.

use crate::TestContext;

fn demo(t: &TestContext) {
    t.ok(&["demo", "--days", "8"]);
}

#[test]
fn demo_bill_by_workload_and_class_reads_like_a_bill() {
    let t = TestContext::new();
    demo(&t);
    let by_workload = t.ok(&["cost", "--since", "7d", "--by", "workload"]);
    assert!(by_workload.contains("Data transfer cost"), "{by_workload}");
    assert!(by_workload.contains("docs/examples/demo-topology.toml"), "{by_workload}");
    assert!(by_workload.contains("transfer total"), "{by_workload}");
    assert!(by_workload.contains("projected"), "{by_workload}");
    // The nightly export to S3 goes through the single NAT gateway; hourly NAT charges are shown apart.
    assert!(by_workload.contains("nat gateway nat-shop-a"), "{by_workload}");
    let by_class = t.json(&["cost", "--since", "7d", "--by", "class", "--output", "json"]);
    assert_eq!(by_class["schema_version"], "egressor.cost/v1");
    let classes: Vec<&str> =
        by_class["lines"].as_array().unwrap().iter().map(|l| l["key"].as_str().unwrap()).collect();
    for c in ["cross-zone", "nat-internet", "nat-cloud-service", "cross-region", "same-zone"] {
        assert!(classes.contains(&c), "{c} missing from {classes:?}");
    }
    // Lines add up to the total (decimal strings, exact).
    let total: rust_decimal::Decimal = by_class["totals"]["transfer_cost"].as_str().unwrap().parse().unwrap();
    let sum: rust_decimal::Decimal = by_class["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["cost"].as_str().unwrap().parse::<rust_decimal::Decimal>().unwrap())
        .sum();
    assert_eq!(total, sum);
    assert!(total > rust_decimal::Decimal::ZERO);
}

#[test]
fn explain_and_recommend() {
    let t = TestContext::new();
    demo(&t);
    let out = t.ok(&["cost", "--since", "7d", "--by", "class", "--explain", "--recommend"]);
    assert!(out.contains("Meters:"), "{out}");
    assert!(out.contains("pricing/aws.toml:"), "{out}");
    assert!(out.contains("tier 1:"), "{out}");
    assert!(out.contains("Add a s3 gateway endpoint to vpc-shop"), "{out}");
    assert!(out.contains("saves"), "{out}");
}

#[test]
fn identical_inputs_give_byte_identical_output() {
    let t = TestContext::new();
    demo(&t);
    for fmt in ["json", "csv", "table"] {
        let a = t.ok(&["cost", "--since", "7d", "--by", "edge", "--explain", "--recommend", "--output", fmt]);
        let b = t.ok(&["cost", "--since", "7d", "--by", "edge", "--explain", "--recommend", "--output", fmt]);
        assert_eq!(a, b, "{fmt} output differs between two runs");
    }
}

#[test]
fn malformed_topology_is_refused_with_position_and_nothing_is_computed() {
    let t = TestContext::new();
    demo(&t);
    let bad = t.path("bad.toml");
    std::fs::write(
        &bad,
        "cloud = \"aws\"\n\n[[vpc]]\nid = \"v1\"\nregion = \"us-east-1\"\ncidrs = [\"10.0.0.5/16\"]\n\n[[subnet]]\nid = \"s1\"\nvpc = \"v2\"\ncidr = \"10.0.1.0/24\"\nzone = \"a\"\n",
    )
    .unwrap();
    let err = t.fails(&["cost", "--topology", bad.to_str().unwrap()]);
    assert!(err.contains("bad.toml:6:"), "{err}");
    assert!(err.contains("host bits"), "{err}");
    assert!(err.contains("bad.toml:10:"), "{err}");
    assert!(err.contains("unknown vpc \"v2\""), "{err}");
    let syntax = t.path("syntax.toml");
    std::fs::write(&syntax, "[[vpc]]\nid = \"v1\"\nregion = us-east-1\n").unwrap();
    let err = t.fails(&["topology", "validate", syntax.to_str().unwrap()]);
    assert!(err.contains("syntax.toml:3:"), "{err}");
    // A broken file never replaces the stored topology.
    t.fails(&["topology", "set", bad.to_str().unwrap()]);
    assert!(t.ok(&["topology", "show"]).contains("vpc-shop"));
    let ok = t.ok(&[
        "topology",
        "validate",
        concat!(env!("CARGO_MANIFEST_DIR"), "/docs/examples/demo-topology.toml"),
    ]);
    assert!(ok.contains("ok (aws, 2 VPCs, 5 subnets, 2 NAT gateways, 1 peerings"), "{ok}");
}

#[test]
fn pricing_override_changes_the_bill() {
    let t = TestContext::new();
    demo(&t);
    let base = t.json(&["cost", "--since", "7d", "--output", "json"]);
    let o = t.path("edp.toml");
    std::fs::write(
        &o,
        "provider = \"aws\"\nas_of = \"2026-10-01\"\ncurrency = \"USD\"\nunit = \"GiB\"\n\n[[rate]]\ncategory = \"nat-processing\"\nregions = [\"*\"]\npayer = \"owner\"\nprice = \"0\"\n",
    )
    .unwrap();
    let cheaper = t.json(&["cost", "--since", "7d", "--output", "json", "--pricing", o.to_str().unwrap()]);
    let a: rust_decimal::Decimal = base["totals"]["transfer_cost"].as_str().unwrap().parse().unwrap();
    let b: rust_decimal::Decimal = cheaper["totals"]["transfer_cost"].as_str().unwrap().parse().unwrap();
    assert!(b < a, "free NAT processing must lower the bill: {a} -> {b}");
}

#[test]
fn graph_outputs_and_dot_renders() {
    let t = TestContext::new();
    demo(&t);
    let table = t.ok(&["graph", "--since", "24h", "--level", "workload"]);
    assert!(table.contains("top senders:"), "{table}");
    let json = t.json(&["graph", "--since", "24h", "--level", "zone", "--output", "json"]);
    assert_eq!(json["schema_version"], "egressor.graph/v1");
    let edges = json["edges"].as_array().unwrap();
    assert!(
        edges
            .iter()
            .any(|e| e["src"] == "us-east-1a" && e["dst"] == "us-east-1b" && e["class"] == "cross-zone")
    );
    let focus =
        t.json(&["graph", "--since", "24h", "--focus", "checkout", "--hops", "1", "--output", "json"]);
    for e in focus["edges"].as_array().unwrap() {
        let (s, d) = (e["src"].as_str().unwrap(), e["dst"].as_str().unwrap());
        assert!(s.contains("checkout") || d.contains("checkout"), "{s} -> {d}");
    }
    let internet = t.json(&["graph", "--since", "24h", "--class", "nat-internet", "--output", "json"]);
    assert!(internet["edges"].as_array().unwrap().iter().all(|e| e["class"] == "nat-internet"));
    let dot = t.ok(&["graph", "--since", "24h", "--top", "15", "--output", "dot"]);
    assert!(dot.starts_with("digraph egressor {"), "{dot}");
    let png = t.path("graph.png");
    let dot_file = t.path("graph.dot");
    std::fs::write(&dot_file, &dot).unwrap();
    let st = std::process::Command::new("dot")
        .args(["-Tpng", "-o", png.to_str().unwrap(), dot_file.to_str().unwrap()])
        .status()
        .expect("Graphviz `dot` must be installed (cargo xtask deps)");
    assert!(st.success());
    assert!(std::fs::metadata(&png).unwrap().len() > 1000);
    let mermaid = t.ok(&["graph", "--since", "24h", "--top", "5", "--output", "mermaid"]);
    assert!(mermaid.starts_with("flowchart LR"), "{mermaid}");
}

#[test]
fn top_once_replays_the_workspace_as_json() {
    let t = TestContext::new();
    demo(&t);
    let snap = t.json(&["top", "--replay", "--since", "1h", "--once", "--output", "json"]);
    assert_eq!(snap["schema_version"], "egressor.top/v1");
    let edges = snap["edges"].as_array().unwrap();
    assert!(!edges.is_empty());
    assert!(edges.iter().any(|e| e["class"] == "cross-zone"), "{snap}");
}
