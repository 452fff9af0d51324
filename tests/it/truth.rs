//! Bills computed by hand from the AWS price pages, against `egressor cost` on files a user would
//! import: each byte billed once however many observers saw it, zone IDs and names, the free tier
//! before the tier ladder, and periods that follow the records' windows.

use crate::TestContext;
use rust_decimal::Decimal;

const GIB: u64 = 1 << 30;

/// One VPC in us-east-1, a private subnet per zone, a public subnet in zone a; the account's zone
/// IDs when `ids` is set.
fn topology(t: &TestContext, ids: bool) -> String {
    let path = t.path(if ids { "topo-ids.toml" } else { "topo.toml" });
    let mut text = String::from(
        "cloud = \"aws\"\n\n[[vpc]]\nid = \"vpc-1\"\nregion = \"us-east-1\"\ncidrs = [\"10.0.0.0/16\"]\n\n\
         [[subnet]]\nid = \"subnet-a\"\nvpc = \"vpc-1\"\ncidr = \"10.0.1.0/24\"\nzone = \"us-east-1a\"\n\n\
         [[subnet]]\nid = \"subnet-b\"\nvpc = \"vpc-1\"\ncidr = \"10.0.2.0/24\"\nzone = \"us-east-1b\"\n\n\
         [[subnet]]\nid = \"subnet-pub\"\nvpc = \"vpc-1\"\ncidr = \"10.0.9.0/24\"\nzone = \"us-east-1a\"\n",
    );
    if ids {
        text.push_str("\n[zone_ids]\nuse1-az1 = \"us-east-1a\"\nuse1-az2 = \"us-east-1b\"\n");
    }
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn cost_json(t: &TestContext, topo: &str, since: &str, until: &str) -> serde_json::Value {
    t.json(&[
        "cost",
        "--since",
        since,
        "--until",
        until,
        "--topology",
        topo,
        "--by",
        "class",
        "--output",
        "json",
    ])
}

fn dec(v: &serde_json::Value) -> Decimal {
    v.as_str().unwrap_or_else(|| panic!("not a decimal string: {v}")).parse().unwrap()
}

fn cents(d: Decimal) -> Decimal {
    d.round_dp(2)
}

const NOV: (&str, &str) = ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z");

/// 2026-11-10T10:00:00Z, a one-minute window.
const START: i64 = 1_794_304_800;

fn import(t: &TestContext, name: &str, text: &str, format: &str) {
    let path = t.path(name);
    std::fs::write(&path, text).unwrap();
    t.ok(&["import", path.to_str().unwrap(), "--format", format]);
}

const V5_HEADER: &str = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status az-id flow-direction\n";

fn v5_line(eni: &str, src: &str, dst: &str, az: &str, dir: &str) -> String {
    format!(
        "5 111122223333 {eni} {src} {dst} 40000 443 6 1000 {} {START} {} ACCEPT OK {az} {dir}\n",
        10 * GIB,
        START + 60
    )
}

fn v2_line(eni: &str, src: &str, dst: &str) -> String {
    format!(
        "2 111122223333 {eni} {src} {dst} 40000 443 6 1000 {} {START} {} ACCEPT OK\n",
        10 * GIB,
        START + 60
    )
}

/// 10 GiB from zone a to zone b: $0.01/GB on each side = $0.20, whether one ENI or both logged it.
#[test]
fn a_cross_zone_flow_logged_at_both_enis_costs_what_one_observation_does() {
    for (format, both, one) in [
        (
            "v5",
            format!(
                "{V5_HEADER}{}{}",
                v5_line("eni-a", "10.0.1.101", "10.0.2.101", "use1-az1", "egress"),
                v5_line("eni-b", "10.0.1.101", "10.0.2.101", "use1-az2", "ingress")
            ),
            format!("{V5_HEADER}{}", v5_line("eni-a", "10.0.1.101", "10.0.2.101", "use1-az1", "egress")),
        ),
        (
            "v2",
            format!(
                "{}{}",
                v2_line("eni-a", "10.0.1.101", "10.0.2.101"),
                v2_line("eni-b", "10.0.1.101", "10.0.2.101")
            ),
            v2_line("eni-a", "10.0.1.101", "10.0.2.101"),
        ),
    ] {
        for (name, text) in [("both", &both), ("one", &one)] {
            let t = TestContext::new();
            let topo = topology(&t, true);
            import(&t, "flows.log", text, "vpc-flow-logs");
            let bill = cost_json(&t, &topo, NOV.0, NOV.1);
            assert_eq!(
                cents(dec(&bill["totals"]["transfer_cost"])),
                Decimal::new(20, 2),
                "{format} {name}: {bill}"
            );
            assert_eq!(
                bill["by_class"]["cross-zone"]["bytes"],
                10 * GIB,
                "{format} {name}: bytes counted once"
            );
        }
    }
}

/// Two agents on two nodes report one connection: A's bytes_out is B's bytes_in.
#[test]
fn two_agents_records_of_one_connection_cost_what_one_does() {
    let rec = |node: &str, local: &str, zone: &str, remote: &str, out: u64, inb: u64| {
        format!(
            "{{\"window_start\":\"2026-11-10T10:00:00Z\",\"window_end\":\"2026-11-10T10:00:10Z\",\"node\":\"{node}\",\
             \"local\":{{\"ip\":\"{local}\",\"port\":40000,\"zone\":\"{zone}\",\"region\":\"us-east-1\"}},\
             \"remote\":{{\"ip\":\"{remote}\",\"port\":443}},\"proto\":\"tcp\",\"ip_version\":4,\"initiator\":\"local\",\
             \"bytes_out\":{out},\"bytes_in\":{inb},\"packets_out\":1,\"packets_in\":1}}\n"
        )
    };
    let a = rec("node-a", "10.0.1.10", "us-east-1a", "10.0.2.20", 10 * GIB, GIB);
    let b = rec("node-b", "10.0.2.20", "us-east-1b", "10.0.1.10", GIB, 10 * GIB);
    for (name, text) in [("both", format!("{a}{b}")), ("one", a.clone())] {
        let t = TestContext::new();
        let topo = topology(&t, false);
        import(&t, "flows.jsonl", &text, "jsonl");
        let bill = cost_json(&t, &topo, NOV.0, NOV.1);
        // 11 GiB crossed zones (10 one way, 1 back), each charged on both sides.
        assert_eq!(cents(dec(&bill["totals"]["transfer_cost"])), Decimal::new(22, 2), "{name}: {bill}");
        assert_eq!(bill["by_class"]["cross-zone"]["bytes"], 11 * GIB, "{name}");
    }
}

/// Same subnet, logged with zone IDs while the topology speaks zone names: free, and never
/// cross-zone. Without the mapping the label is reported with the fix, and the subnet decides.
#[test]
fn zone_ids_in_flow_logs_and_zone_names_in_the_topology_do_not_make_cross_zone() {
    let text = format!(
        "{V5_HEADER}{}{}",
        v5_line("eni-a", "10.0.1.101", "10.0.1.102", "use1-az1", "egress"),
        v5_line("eni-c", "10.0.1.101", "10.0.1.102", "use1-az1", "ingress")
    );
    for ids in [true, false] {
        let t = TestContext::new();
        let topo = topology(&t, ids);
        import(&t, "flows.log", &text, "vpc-flow-logs");
        let bill = cost_json(&t, &topo, NOV.0, NOV.1);
        assert_eq!(dec(&bill["totals"]["transfer_cost"]), Decimal::ZERO, "ids={ids}: {bill}");
        assert!(bill["by_class"].get("cross-zone").is_none(), "ids={ids}: {bill}");
        let table = t.ok(&["cost", "--since", NOV.0, "--until", NOV.1, "--topology", &topo]);
        if ids {
            assert!(!table.contains("use1-az1"), "{table}");
        } else {
            assert!(table.contains("zone \"use1-az1\""), "{table}");
            assert!(table.contains("[zone_ids]"), "the fix is named: {table}");
        }
    }
}

/// Internet egress from a public subnet: `gib` GiB to one address, in one record spanning November.
fn internet_month(t: &TestContext, gib: u64) {
    let text = format!(
        "{{\"window_start\":\"2026-11-01T00:00:00Z\",\"window_end\":\"2026-12-01T00:00:00Z\",\"node\":\"i-1\",\
         \"local\":{{\"ip\":\"10.0.9.10\",\"port\":40000}},\"remote\":{{\"ip\":\"203.0.113.10\",\"port\":443}},\
         \"proto\":\"tcp\",\"ip_version\":4,\"initiator\":\"local\",\"bytes_out\":{},\"bytes_in\":0,\
         \"packets_out\":1,\"packets_in\":0}}\n",
        gib * GIB
    );
    import(t, "month.jsonl", &text, "jsonl");
}

/// From aws.amazon.com/ec2/pricing/on-demand (us-east-1 to the internet): first 100 GB free
/// ("beyond the global free tier"), then $0.09 for the first 10 TB, $0.085 for the next 40 TB,
/// $0.07 for the next 100 TB.
#[test]
fn internet_tiers_start_after_the_free_tier_as_the_bill_reads() {
    for (gib, expected) in [
        (50, "0.00"),
        // 10 TB + 100 GB: 10,240 paid units at $0.09, none at $0.085.
        (10_340, "921.60"),
        // 60,000 GB: 100 free, 10,240 x 0.09 + 40,960 x 0.085 + 8,700 x 0.07.
        (60_000, "5012.20"),
    ] {
        let t = TestContext::new();
        let topo = topology(&t, false);
        internet_month(&t, gib);
        let bill = cost_json(&t, &topo, NOV.0, NOV.1);
        assert_eq!(
            cents(dec(&bill["totals"]["transfer_cost"])),
            expected.parse::<Decimal>().unwrap(),
            "{gib} GiB"
        );
    }
}

/// A month-long record is spread over the month: each half costs its share with the tier
/// position the first half left, the halves add up to the month, and the period is the month.
#[test]
fn halves_of_a_month_add_up_and_the_period_is_what_the_record_covers() {
    let t = TestContext::new();
    let topo = topology(&t, false);
    internet_month(&t, 60_000);
    let whole = cost_json(&t, &topo, NOV.0, NOV.1);
    assert_eq!(whole["hours"], "720");
    let first = cost_json(&t, &topo, NOV.0, "2026-11-16T00:00:00Z");
    let second = cost_json(&t, &topo, "2026-11-16T00:00:00Z", NOV.1);
    // 30,000 GiB each: 100 free, 10,240 x 0.09 + 19,660 x 0.085 = 2,592.70; then from paid
    // position 29,900: 21,300 x 0.085 + 8,700 x 0.07 = 2,419.50.
    assert_eq!(cents(dec(&first["totals"]["transfer_cost"])), "2592.70".parse::<Decimal>().unwrap());
    assert_eq!(cents(dec(&second["totals"]["transfer_cost"])), "2419.50".parse::<Decimal>().unwrap());
    assert_eq!(
        dec(&first["totals"]["transfer_cost"]) + dec(&second["totals"]["transfer_cost"]),
        dec(&whole["totals"]["transfer_cost"])
    );
    // The projection divides by the month's 720 hours, and says so.
    let table = t.ok(&["cost", "--since", NOV.0, "--until", NOV.1, "--topology", &topo]);
    assert!(table.contains("(720 h)"), "{table}");
    assert!(table.contains("from the period's 720 h"), "{table}");
}

/// The month's bill as a Cost and Usage Report would have it, written from egressor's own cost
/// lines by node (usage types mapped here, independently of the engine's mapping).
fn cur_from_cost(t: &TestContext) -> String {
    let bill = t.json(&[
        "cost",
        "--since",
        NOV.0,
        "--until",
        NOV.1,
        "--by",
        "node",
        "--explain",
        "--output",
        "json",
    ]);
    let code = |r: &str| match r {
        "us-east-1" => "USE1",
        "us-west-2" => "USW2",
        other => panic!("no region code for {other} in this test"),
    };
    let mut csv = String::from(
        "lineItem/UsageStartDate,lineItem/UsageType,lineItem/Operation,lineItem/ResourceId,lineItem/UsageAmount,lineItem/UnblendedCost,lineItem/LineItemType\n",
    );
    let meters = bill["meters"].as_array().unwrap();
    for line in bill["lines"].as_array().unwrap() {
        for part in line["parts"].as_array().unwrap() {
            let m = &meters[part["meter"].as_u64().unwrap() as usize];
            let cost = dec(&part["cost"]);
            let region = code(m["region"].as_str().unwrap());
            let usage_type = match m["category"].as_str().unwrap() {
                "cross-zone" => format!("{region}-DataTransfer-Regional-Bytes"),
                "inter-region" => format!("{region}-{}-AWS-Out-Bytes", code(m["dest"].as_str().unwrap())),
                "internet-egress" => format!("{region}-DataTransfer-Out-Bytes"),
                "nat-processing" => format!("{region}-NatGateway-Bytes"),
                _ if cost.is_zero() => continue,
                other => panic!("a priced category this test does not map: {other}"),
            };
            let gb = Decimal::from(part["bytes"].as_u64().unwrap()) / Decimal::from(GIB);
            csv.push_str(&format!(
                "2026-11-15T00:00:00Z,{usage_type},RunInstances,{},{gb},{cost},Usage\n",
                line["key"].as_str().unwrap()
            ));
        }
    }
    for h in bill["hourly"].as_array().unwrap() {
        assert_eq!(h["kind"], "nat-gateway-hour");
        let id = h["resource"].as_str().unwrap().rsplit(' ').next().unwrap();
        let hours = dec(&h["quantity"]) * dec(&h["hours"]);
        csv.push_str(&format!(
            "2026-11-15T00:00:00Z,{}-NatGateway-Hours,NatGateway,arn:aws:ec2:{}:111122223333:natgateway/{id},{hours},{},Usage\n",
            code(h["region"].as_str().unwrap()),
            h["region"].as_str().unwrap(),
            dec(&h["cost"])
        ));
    }
    // An instance line that is not data transfer.
    csv.push_str("2026-11-15T00:00:00Z,USE1-BoxUsage:m5.large,RunInstances,i-0aaa,720,69.12,Usage\n");
    csv
}

#[test]
fn reconcile_explains_the_demos_own_bill_and_names_an_unlogged_eni() {
    let t = TestContext::new();
    t.ok(&["demo", "--days", "14"]);
    let cur = cur_from_cost(&t);
    let path = t.path("cur.csv");
    std::fs::write(&path, &cur).unwrap();
    let r = t.json(&["reconcile", "--cur", path.to_str().unwrap(), "--month", "2026-11", "--output", "json"]);
    assert_eq!(r["schema_version"], "egressor.reconcile/v1");
    assert_eq!(dec(&r["explained_percent"]), Decimal::from(100), "{r}");
    assert!(r["gaps"].as_array().unwrap().is_empty(), "{r}");
    assert!(r["rows"].as_array().unwrap().iter().all(|row| row["status"] == "match"), "{r}");
    assert!(r["rows"].as_array().unwrap().len() >= 4, "{r}");
    assert_eq!(r["other_lines"], 1);

    // 50 GB of cross-zone transfer billed to an ENI nobody logged.
    let extra =
        format!("{cur}2026-11-15T00:00:00Z,USE1-DataTransfer-Regional-Bytes,,eni-0unlogged,50,0.50,Usage\n");
    std::fs::write(&path, extra).unwrap();
    let r = t.json(&["reconcile", "--cur", path.to_str().unwrap(), "--output", "json"]);
    assert!(dec(&r["explained_percent"]) < Decimal::from(100), "{r}");
    let gaps = r["gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 1, "{r}");
    assert_eq!(gaps[0]["resource"], "eni-0unlogged");
    assert_eq!(dec(&gaps[0]["billed_cost"]), Decimal::new(50, 2));
    let table = t.ok(&["reconcile", "--cur", path.to_str().unwrap()]);
    assert!(table.contains("eni-0unlogged"), "{table}");
    assert!(table.contains("bill higher"), "{table}");

    // A malformed extract is refused with file, row and column.
    std::fs::write(
        &path,
        "lineItem/UsageType,lineItem/UsageAmount,lineItem/UnblendedCost\nUSE1-NatGateway-Bytes,x,1\n",
    )
    .unwrap();
    let err = t.fails(&["reconcile", "--cur", path.to_str().unwrap(), "--month", "2026-11"]);
    assert!(err.contains("cur.csv:2: lineItem/UsageAmount"), "{err}");
}

/// More bills from the AWS price pages (us-east-1): NAT gateway processing $0.045/GB on top of
/// the internet price, NAT to S3 in the same region (processing only: S3 in-region is free), and
/// inter-region over a peering at inter-region rates ($0.02/GB, paid by the sender's region).
#[test]
fn nat_internet_nat_to_s3_and_inter_region_peering_to_the_cent() {
    let topo_text = "cloud = \"aws\"\n\n\
        [[vpc]]\nid = \"vpc-1\"\nregion = \"us-east-1\"\ncidrs = [\"10.0.0.0/16\"]\n\n\
        [[vpc]]\nid = \"vpc-2\"\nregion = \"us-west-2\"\ncidrs = [\"10.1.0.0/16\"]\n\n\
        [[subnet]]\nid = \"subnet-a\"\nvpc = \"vpc-1\"\ncidr = \"10.0.1.0/24\"\nzone = \"us-east-1a\"\nnat = \"nat-a\"\n\n\
        [[subnet]]\nid = \"subnet-w\"\nvpc = \"vpc-2\"\ncidr = \"10.1.1.0/24\"\nzone = \"us-west-2a\"\n\n\
        [[nat_gateway]]\nid = \"nat-a\"\nvpc = \"vpc-1\"\nzone = \"us-east-1a\"\n\n\
        [[peering]]\nid = \"pcx-1\"\nvpcs = [\"vpc-1\", \"vpc-2\"]\n";
    for (remote, gib, expected) in [
        // 1,100 GiB: NAT 1,100 x 0.045 = 49.50; internet 100 free + 1,000 x 0.09 = 90.00.
        ("203.0.113.10", 1_100u64, "139.50"),
        // 100 GiB to S3 through the NAT: 100 x 0.045 = 4.50.
        ("52.216.8.20", 100, "4.50"),
        // 100 GiB to us-west-2 over the peering: 100 x 0.02 = 2.00.
        ("10.1.1.10", 100, "2.00"),
    ] {
        let t = TestContext::new();
        let topo = t.path("topo.toml");
        std::fs::write(&topo, topo_text).unwrap();
        let text = format!(
            "{{\"window_start\":\"2026-11-10T10:00:00Z\",\"window_end\":\"2026-11-10T10:01:00Z\",\"node\":\"i-1\",\
             \"local\":{{\"ip\":\"10.0.1.10\",\"port\":40000}},\"remote\":{{\"ip\":\"{remote}\",\"port\":443}},\
             \"proto\":\"tcp\",\"ip_version\":4,\"initiator\":\"local\",\"bytes_out\":{},\"bytes_in\":0,\
             \"packets_out\":1,\"packets_in\":0}}\n",
            gib * GIB
        );
        import(&t, "f.jsonl", &text, "jsonl");
        let bill = cost_json(&t, topo.to_str().unwrap(), NOV.0, NOV.1);
        assert_eq!(
            cents(dec(&bill["totals"]["transfer_cost"])),
            expected.parse::<Decimal>().unwrap(),
            "{remote}: {bill}"
        );
    }
}
