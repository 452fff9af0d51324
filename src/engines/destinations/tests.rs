use super::*;
use crate::model::Endpoint;
use std::str::FromStr;

fn record(
    local: &str,
    remote: &str,
    initiator: Initiator,
    out: u64,
    inn: u64,
    opened: u32,
    comm: &str,
) -> FlowRecord {
    let l: std::net::SocketAddr = local.parse().unwrap();
    let r: std::net::SocketAddr = remote.parse().unwrap();
    let mut local = Endpoint::addr(l.ip(), l.port());
    local.process = Some(comm.into());
    FlowRecord {
        window_start: Timestamp::from_secs(1_780_000_000),
        window_end: Timestamp::from_secs(1_780_000_010),
        node: "ci-runner".into(),
        local,
        remote: Endpoint::addr(r.ip(), r.port()),
        proto: Proto::Tcp,
        ip_version: 4,
        initiator,
        bytes_out: out,
        bytes_in: inn,
        packets_out: 1,
        packets_in: 1,
        connections_opened: opened,
        connections_closed: opened,
        batch_id: None,
        source: None,
    }
}

fn runner(region: Option<&str>) -> Runner {
    Runner {
        host: "ci-runner".into(),
        provider: Provider::Aws,
        region: region.map(str::to_string),
        zone: None,
    }
}

fn job(records: &[FlowRecord], region: Option<&str>) -> JobReport {
    let book = PriceBook::shipped().unwrap();
    let pricing = JobPricing { book: &book, topology: None, runs_per_day: 24 };
    let t0 = Timestamp::from_secs(1_780_000_000);
    report(records, &runner(region), &pricing, t0, t0.add_micros(10_000_000)).unwrap()
}

/// The price tables meter data in GiB ("GB" on AWS bills).
const GB: u64 = 1 << 30;

#[test]
fn destinations_are_grouped_by_peer_and_priced_per_run_and_per_month() {
    let records = [
        // Two connections of two processes to one internet server, in two windows.
        record("10.0.0.5:40000", "198.51.100.10:443", Initiator::Local, GB / 2, 1000, 1, "curl"),
        record("10.0.0.5:40001", "198.51.100.10:443", Initiator::Local, GB / 2, 1000, 1, "git"),
        // A peer that connected in to our port 8080 from two ephemeral ports: one line.
        record("10.0.0.5:8080", "198.51.100.20:50001", Initiator::Remote, 100, 5000, 1, "python3"),
        record("10.0.0.5:8080", "198.51.100.20:50002", Initiator::Remote, 100, 5000, 1, "python3"),
        // Loopback: listed, never priced.
        record("127.0.0.1:40002", "127.0.0.1:5432", Initiator::Local, 7 * GB, 7 * GB, 1, "psql"),
    ];
    let r = job(&records, Some("us-east-1"));
    let keys: Vec<_> =
        r.lines.iter().map(|l| (l.address.to_string(), l.port, l.way, l.connections)).collect();
    assert_eq!(
        keys,
        vec![
            ("198.51.100.10".into(), 443, Way::Outbound, 2),
            ("198.51.100.20".into(), 8080, Way::Inbound, 2),
            ("127.0.0.1".into(), 5432, Way::Outbound, 1),
        ]
    );
    let internet = &r.lines[0];
    assert_eq!((internet.bytes_out, internet.bytes_in), (GB, 2000));
    assert_eq!(internet.processes, vec!["curl".to_string(), "git".into()]);
    assert_eq!(internet.class, Class::Internet);
    assert_eq!(internet.label, "internet 198.51.100.10");
    // 1 GB out at the first tier of us-east-1 internet egress (0.09 USD/GB); inbound is free.
    assert_eq!(internet.cost_per_run, Decimal::from_str("0.09").unwrap());
    // 24 runs a day, 730/24 days a month.
    assert_eq!(internet.cost_per_month, Decimal::from_str("65.70").unwrap());
    assert_eq!(r.lines[1].class, Class::Internet, "a line's class is its outbound class");
    let lo = &r.lines[2];
    assert!(lo.same_host);
    assert_eq!((lo.class, lo.cost_per_run), (Class::SameNode, Decimal::ZERO));
    assert_eq!(r.totals.connections, 5);
    assert_eq!(r.totals.bytes_out, GB + 200 + 7 * GB);
    assert_eq!(r.currency, "USD");
}

#[test]
fn the_policy_reads_external_destinations_with_their_port() {
    let records = [
        record("10.0.0.5:40000", "198.51.100.10:443", Initiator::Local, 1000, 10, 1, "curl"),
        record("127.0.0.1:40002", "127.0.0.1:5432", Initiator::Local, 5, 5, 1, "psql"),
    ];
    let u = job(&records, Some("us-east-1")).usage();
    assert_eq!(u.destinations.len(), 1, "loopback is not a destination");
    assert_eq!(u.destinations[0].port, Some(443));
    assert_eq!(u.destinations[0].label, "internet 198.51.100.10 (198.51.100.10:443/tcp)");
    assert_eq!(u.bytes_by_class.get(&Class::Internet), Some(&1000));
}

#[test]
fn without_a_region_nothing_is_priced_and_the_report_says_why() {
    let records = [record("10.0.0.5:40000", "198.51.100.10:443", Initiator::Local, 1000, 10, 1, "curl")];
    let r = job(&records, None);
    assert_eq!(r.lines[0].class, Class::Unknown);
    assert!(r.lines[0].reason.contains("has no region"), "{}", r.lines[0].reason);
    assert_eq!(r.totals.cost_per_run, Decimal::ZERO);
    assert!(!r.unpriced.is_empty());
}
