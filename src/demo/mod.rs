//! `egressor demo`: a synthetic but realistic cluster, written into the workspace with
//! `source = demo` so it can never be mistaken for measured traffic.
//!
//! The scenario: an online shop on EKS in three zones of us-east-1, with an inventory service in
//! us-west-2, a NAT gateway in front of the internet, S3, a payment provider, a database and a cache.
//! Traffic follows a daily and weekly rhythm, and four events are injected and written to the
//! `demo_events` table as ground truth for the anomaly detectors: a spike, a slow burn, a new external
//! endpoint and a steady leak.
//!
//! Every value comes from a counter-based generator keyed by (seed, edge, pair, window), so the same
//! seed and end time give the same bytes, in any order of generation.

pub mod scenarios;

use crate::model::{Endpoint, FlowRecord, Initiator, LabelledEvent, Proto, Source, Timestamp};
use crate::store::Workspace;
use anyhow::Result;
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr};

/// The demo shop's network: VPCs, subnets per zone, one NAT gateway per region, a peering.
pub const DEMO_TOPOLOGY: &str = include_str!("../../docs/examples/demo-topology.toml");

/// Length of one demo window. Agents default to 10 s; five minutes keeps two weeks of demo small.
pub const WINDOW_SECS: i64 = 300;

#[derive(Debug, Clone)]
pub struct DemoSpec {
    pub days: u32,
    pub seed: u64,
    /// Exclusive end of the generated range (an hour boundary).
    pub end: Timestamp,
}

/// The version of `egressor demo --output json` (docs/schemas/demo.v1.json).
pub const DEMO_SCHEMA: &str = "egressor.demo/v1";

#[derive(Debug, Serialize)]
pub struct DemoReport {
    pub records: u64,
    pub batches_ingested: usize,
    pub batches_skipped: usize,
    pub start: Timestamp,
    pub end: Timestamp,
    pub events: Vec<LabelledEvent>,
}

/// Counter-based SplitMix64: the value for a key never depends on what was generated before it.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn unit(seed: u64, a: u64, b: u64, c: u64, salt: u64) -> f64 {
    let h = mix(mix(mix(mix(seed ^ salt) ^ a) ^ b) ^ c);
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[derive(Clone, Copy)]
struct Zone {
    name: &'static str,
    region: &'static str,
    /// Second octet of the region's VPC and third octet of the zone's subnet.
    net: (u8, u8),
}

const ZONES: [Zone; 5] = [
    Zone { name: "us-east-1a", region: "us-east-1", net: (0, 1) },
    Zone { name: "us-east-1b", region: "us-east-1", net: (0, 2) },
    Zone { name: "us-east-1c", region: "us-east-1", net: (0, 3) },
    Zone { name: "us-west-2a", region: "us-west-2", net: (1, 1) },
    Zone { name: "us-west-2b", region: "us-west-2", net: (1, 2) },
];

fn node_name(zone: usize, i: usize) -> String {
    let z = ZONES[zone];
    format!("ip-10-{}-{}-{}.ec2.internal", z.net.0, z.net.1, 10 + i)
}

/// A pod of the scenario, fully attributed as the agent plus enrichment would report it.
#[derive(Clone)]
struct Pod {
    ip: IpAddr,
    pod: String,
    namespace: &'static str,
    kind: &'static str,
    workload: &'static str,
    service: Option<&'static str>,
    process: &'static str,
    pid: u32,
    container_id: String,
    node: String,
    zone: usize,
}

impl Pod {
    fn endpoint(&self, port: u16, with_process: bool) -> Endpoint {
        let z = ZONES[self.zone];
        let mut e = Endpoint::addr(self.ip, port);
        if with_process {
            e.process = Some(self.process.to_string());
            e.pid = Some(self.pid);
            e.container_id = Some(self.container_id.clone());
            e.cgroup = Some(format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{}.scope",
                pod_uid(&self.pod).replace('-', "_"),
                self.container_id
            ));
            e.pod_uid = Some(pod_uid(&self.pod));
        }
        e.pod = Some(self.pod.clone());
        e.namespace = Some(self.namespace.to_string());
        e.workload_kind = Some(self.kind.to_string());
        e.workload_name = Some(self.workload.to_string());
        e.service = self.service.map(str::to_string);
        e.node = Some(self.node.clone());
        e.zone = Some(z.name.to_string());
        e.region = Some(z.region.to_string());
        e
    }
}

fn hex_of(s: &str, len: usize) -> String {
    let mut out = String::new();
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in s.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    while out.len() < len {
        h = mix(h);
        out.push_str(&format!("{h:016x}"));
    }
    out.truncate(len);
    out
}

fn pod_uid(pod: &str) -> String {
    let h = hex_of(pod, 32);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

struct Workload {
    namespace: &'static str,
    kind: &'static str,
    name: &'static str,
    service: Option<&'static str>,
    process: &'static str,
    /// Zones of the replicas, one entry per pod (DaemonSets: one per node, filled in below).
    zones: &'static [usize],
}

const WORKLOADS: &[Workload] = &[
    Workload {
        namespace: "web",
        kind: "Deployment",
        name: "frontend",
        service: Some("frontend"),
        process: "node",
        zones: &[0, 1, 2],
    },
    Workload {
        namespace: "shop",
        kind: "Deployment",
        name: "checkout",
        service: Some("checkout"),
        process: "java",
        zones: &[0, 1],
    },
    Workload {
        namespace: "shop",
        kind: "Deployment",
        name: "cart",
        service: Some("cart"),
        process: "cartservice",
        zones: &[1, 2],
    },
    Workload {
        namespace: "shop",
        kind: "Deployment",
        name: "catalog",
        service: Some("catalog"),
        process: "catalog",
        zones: &[0, 1, 2],
    },
    Workload {
        namespace: "shop",
        kind: "Deployment",
        name: "payments",
        service: Some("payments"),
        process: "payments",
        zones: &[0, 2],
    },
    Workload {
        namespace: "shop",
        kind: "Deployment",
        name: "recommendations",
        service: Some("recommendations"),
        process: "python3",
        zones: &[1, 2],
    },
    Workload {
        namespace: "data",
        kind: "StatefulSet",
        name: "orders-db",
        service: Some("orders-db"),
        process: "postgres",
        zones: &[0],
    },
    Workload {
        namespace: "data",
        kind: "StatefulSet",
        name: "redis",
        service: Some("redis"),
        process: "redis-server",
        zones: &[1],
    },
    Workload {
        namespace: "data",
        kind: "CronJob",
        name: "analytics-etl",
        service: None,
        process: "spark-submit",
        zones: &[2],
    },
    Workload {
        namespace: "platform",
        kind: "DaemonSet",
        name: "log-shipper",
        service: None,
        process: "fluent-bit",
        zones: &[0, 0, 1, 1, 2, 2],
    },
    Workload {
        namespace: "platform",
        kind: "DaemonSet",
        name: "metrics-agent",
        service: None,
        process: "metrics-agent",
        zones: &[0, 0, 1, 1, 2, 2],
    },
    Workload {
        namespace: "shop",
        kind: "Deployment",
        name: "inventory",
        service: Some("inventory"),
        process: "inventory",
        zones: &[3, 4],
    },
];

fn build_pods() -> Vec<Vec<Pod>> {
    let mut next_host = [100u8; 5];
    WORKLOADS
        .iter()
        .enumerate()
        .map(|(wi, w)| {
            w.zones
                .iter()
                .enumerate()
                .map(|(i, &zone)| {
                    let z = ZONES[zone];
                    let host = next_host[zone];
                    next_host[zone] += 1;
                    let suffix = hex_of(&format!("{}-{i}", w.name), 5);
                    let pod = match w.kind {
                        "StatefulSet" => format!("{}-{i}", w.name),
                        "DaemonSet" => format!("{}-{}", w.name, &suffix),
                        "CronJob" => format!("{}-29000000-{}", w.name, &suffix),
                        _ => format!("{}-{}-{}", w.name, &hex_of(w.name, 10), &suffix),
                    };
                    // DaemonSet pods: one per node of the zone list; others spread over the zone's nodes.
                    let node = node_name(zone, if w.kind == "DaemonSet" { i % 2 } else { (wi + i) % 2 });
                    Pod {
                        ip: IpAddr::V4(Ipv4Addr::new(10, z.net.0, z.net.1, host)),
                        container_id: hex_of(&pod, 64),
                        pod,
                        namespace: w.namespace,
                        kind: w.kind,
                        workload: w.name,
                        service: w.service,
                        process: w.process,
                        pid: 1000 + (mix(wi as u64 * 31 + i as u64) % 60000) as u32,
                        node,
                        zone,
                    }
                })
                .collect()
        })
        .collect()
}

/// Who talks to what.
#[derive(Clone, Copy)]
enum Peer {
    Workload(&'static str),
    /// An address outside the cluster, with the cloud service it belongs to when it is one.
    External(Ipv4Addr, Option<&'static str>),
}

#[derive(Clone, Copy)]
enum Shape {
    /// Follows the shop's daily and weekly traffic.
    Diurnal,
    /// A nightly batch between 02:00 and 03:00 UTC.
    Nightly,
    /// The same every window, day and night.
    Flat,
}

struct Edge {
    client: &'static str,
    server: Peer,
    port: u16,
    proto: Proto,
    /// Bytes per five minutes per client pod at the daily peak (client -> server, server -> client).
    out: f64,
    back: f64,
    shape: Shape,
    /// Connections opened per window per pair (0 for long-lived).
    conns: u32,
}

const S3: Ipv4Addr = Ipv4Addr::new(52, 216, 8, 20);
const PAYMENT_API: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const NEW_API: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);
const LEAK_SINK: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 23);
const CLIENTS: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 200);

const EDGES: &[Edge] = &[
    Edge {
        client: "frontend",
        server: Peer::Workload("checkout"),
        port: 8080,
        proto: Proto::Tcp,
        out: 18e6,
        back: 60e6,
        shape: Shape::Diurnal,
        conns: 0,
    },
    Edge {
        client: "frontend",
        server: Peer::Workload("catalog"),
        port: 8080,
        proto: Proto::Tcp,
        out: 25e6,
        back: 900e6,
        shape: Shape::Diurnal,
        conns: 0,
    },
    Edge {
        client: "frontend",
        server: Peer::Workload("cart"),
        port: 8080,
        proto: Proto::Tcp,
        out: 12e6,
        back: 40e6,
        shape: Shape::Diurnal,
        conns: 0,
    },
    Edge {
        client: "frontend",
        server: Peer::Workload("recommendations"),
        port: 8080,
        proto: Proto::Tcp,
        out: 8e6,
        back: 120e6,
        shape: Shape::Diurnal,
        conns: 0,
    },
    Edge {
        client: "checkout",
        server: Peer::Workload("payments"),
        port: 8080,
        proto: Proto::Tcp,
        out: 6e6,
        back: 3e6,
        shape: Shape::Diurnal,
        conns: 0,
    },
    Edge {
        client: "checkout",
        server: Peer::Workload("orders-db"),
        port: 5432,
        proto: Proto::Tcp,
        out: 30e6,
        back: 45e6,
        shape: Shape::Diurnal,
        conns: 0,
    },
    Edge {
        client: "cart",
        server: Peer::Workload("redis"),
        port: 6379,
        proto: Proto::Tcp,
        out: 20e6,
        back: 35e6,
        shape: Shape::Diurnal,
        conns: 0,
    },
    Edge {
        client: "catalog",
        server: Peer::Workload("redis"),
        port: 6379,
        proto: Proto::Tcp,
        out: 15e6,
        back: 250e6,
        shape: Shape::Diurnal,
        conns: 0,
    },
    Edge {
        client: "catalog",
        server: Peer::Workload("inventory"),
        port: 8080,
        proto: Proto::Tcp,
        out: 5e6,
        back: 180e6,
        shape: Shape::Diurnal,
        conns: 0,
    },
    Edge {
        client: "recommendations",
        server: Peer::Workload("catalog"),
        port: 8080,
        proto: Proto::Tcp,
        out: 10e6,
        back: 150e6,
        shape: Shape::Diurnal,
        conns: 0,
    },
    Edge {
        client: "payments",
        server: Peer::External(PAYMENT_API, None),
        port: 443,
        proto: Proto::Tcp,
        out: 2e6,
        back: 1.5e6,
        shape: Shape::Diurnal,
        conns: 40,
    },
    Edge {
        client: "log-shipper",
        server: Peer::External(S3, Some("aws:S3")),
        port: 443,
        proto: Proto::Tcp,
        out: 60e6,
        back: 1e6,
        shape: Shape::Flat,
        conns: 2,
    },
    Edge {
        client: "analytics-etl",
        server: Peer::External(S3, Some("aws:S3")),
        port: 443,
        proto: Proto::Tcp,
        out: 9e9,
        back: 40e6,
        shape: Shape::Nightly,
        conns: 16,
    },
    Edge {
        client: "payments",
        server: Peer::External(NEW_API, None),
        port: 443,
        proto: Proto::Tcp,
        out: 1.2e6,
        back: 0.8e6,
        shape: Shape::Diurnal,
        conns: 25,
    },
    Edge {
        client: "metrics-agent",
        server: Peer::External(LEAK_SINK, None),
        port: 8443,
        proto: Proto::Tcp,
        out: 400e3,
        back: 8e3,
        shape: Shape::Flat,
        conns: 1,
    },
    Edge {
        client: "frontend",
        server: Peer::External(CLIENTS, None),
        port: 0,
        proto: Proto::Tcp,
        out: 300e6,
        back: 40e6,
        shape: Shape::Diurnal,
        conns: 900,
    },
    Edge {
        client: "catalog",
        server: Peer::Workload("catalog"),
        port: 7946,
        proto: Proto::Udp,
        out: 0.5e6,
        back: 0.5e6,
        shape: Shape::Flat,
        conns: 0,
    },
];

/// Indices into EDGES of the edges that carry injected events.
const SPIKE_EDGE: usize = 9;
const SLOW_BURN_EDGE: usize = 12;
const NEW_ENDPOINT_EDGE: usize = 13;
const LEAK_EDGE: usize = 14;
const INGRESS_EDGE: usize = 15;

fn shape_factor(shape: Shape, t: Timestamp) -> f64 {
    let dt = t.to_datetime();
    let hour = (t.micros().rem_euclid(Timestamp::MICROS_PER_DAY)) as f64 / Timestamp::MICROS_PER_HOUR as f64;
    let weekday = chrono::Datelike::weekday(&dt).num_days_from_monday();
    match shape {
        Shape::Flat => 1.0,
        Shape::Nightly => {
            if (2.0..3.0).contains(&hour) {
                1.0
            } else {
                0.0
            }
        }
        Shape::Diurnal => {
            // Peak at 15:00 UTC (US daytime), trough at 03:00; weekends at 60%.
            let day = 0.55 + 0.45 * ((hour - 15.0) / 24.0 * std::f64::consts::TAU).cos();
            let week = if weekday >= 5 { 0.6 } else { 1.0 };
            day * week
        }
    }
}

pub struct Scenario {
    spec: DemoSpec,
    start: Timestamp,
    pods: Vec<Vec<Pod>>,
    events: Vec<LabelledEvent>,
}

impl Scenario {
    pub fn new(spec: DemoSpec) -> Self {
        let end = spec.end.floor_hour();
        let start = end.add_micros(-(spec.days as i64) * Timestamp::MICROS_PER_DAY);
        let day = Timestamp::MICROS_PER_DAY;
        let hour = Timestamp::MICROS_PER_HOUR;
        let at = |d: i64, h: i64| start.add_micros(d * day + h * hour);
        let days = spec.days as i64;
        let mut events = vec![
            LabelledEvent {
                event_id: String::new(),
                kind: "spike",
                started_at: at(days - 2, 14),
                ended_at: at(days - 2, 16),
                subject: "shop/recommendations".into(),
                remote: Some("shop/catalog".into()),
                description: "recommendations re-fetches the whole catalog on every request after a bad deploy: 8x bytes for two hours, mostly cross-zone".into(),
            },
            LabelledEvent {
                event_id: String::new(),
                kind: "slow-burn",
                started_at: at(days / 3, 0),
                ended_at: end,
                subject: "data/analytics-etl".into(),
                remote: Some(format!("{S3} (aws:S3 via NAT)")),
                description: "the nightly export to S3 grows 12% a day as a table nobody prunes keeps growing".into(),
            },
            LabelledEvent {
                event_id: String::new(),
                kind: "new-endpoint",
                started_at: at(days - 3, 9),
                ended_at: end,
                subject: "shop/payments".into(),
                remote: Some(format!("{NEW_API}:443")),
                description: "payments starts calling a second payment provider".into(),
            },
            LabelledEvent {
                event_id: String::new(),
                kind: "leak",
                started_at: at(2.min(days - 1), 0),
                ended_at: end,
                subject: "platform/metrics-agent".into(),
                remote: Some(format!("{LEAK_SINK}:8443")),
                description: "a metrics agent ships host telemetry to an unknown external address, day and night".into(),
            },
        ];
        // Events that would fall outside a very short demo are left out rather than half-recorded.
        events.retain(|e| e.started_at >= start && e.started_at < end);
        for e in &mut events {
            e.event_id = format!("demo-{}-{}-{}", spec.seed, e.kind, e.started_at.micros() / 1_000_000);
        }
        Scenario { spec, start, pods: build_pods(), events }
    }

    pub fn events(&self) -> &[LabelledEvent] {
        &self.events
    }

    fn event(&self, kind: &str) -> Option<&LabelledEvent> {
        self.events.iter().find(|e| e.kind == kind)
    }

    /// Multiplier an injected event applies to an edge at a time (1.0 = no event; 0.0 = silent).
    fn event_factor(&self, edge: usize, t: Timestamp) -> f64 {
        let within = |k: &str| self.event(k).is_some_and(|e| t >= e.started_at && t < e.ended_at);
        match edge {
            SPIKE_EDGE if within("spike") => 8.0,
            SLOW_BURN_EDGE => match self.event("slow-burn") {
                Some(e) if t >= e.started_at => {
                    let days = (t.micros() - e.started_at.micros()) as f64 / Timestamp::MICROS_PER_DAY as f64;
                    1.12f64.powf(days.floor() + 1.0)
                }
                _ => 1.0,
            },
            NEW_ENDPOINT_EDGE => f64::from(u8::from(within("new-endpoint"))),
            LEAK_EDGE => f64::from(u8::from(within("leak"))),
            _ => 1.0,
        }
    }

    fn workload_pods(&self, name: &str) -> &[Pod] {
        let i = WORKLOADS.iter().position(|w| w.name == name).expect("scenario workload exists");
        &self.pods[i]
    }

    /// Generates one day's records (day 0 = the first day of the range), in window order.
    pub fn day(&self, day: u32) -> Vec<FlowRecord> {
        let batch = self.batch_id(day);
        let windows_per_day = 86_400 / WINDOW_SECS;
        let mut out = Vec::new();
        for w in 0..windows_per_day {
            let ws = self.start.add_micros(
                day as i64 * Timestamp::MICROS_PER_DAY + w * WINDOW_SECS * Timestamp::MICROS_PER_SEC,
            );
            if ws >= self.spec.end.floor_hour() {
                break;
            }
            let we = ws.add_micros(WINDOW_SECS * Timestamp::MICROS_PER_SEC);
            let window_idx = (ws.micros() / 1_000_000 / WINDOW_SECS) as u64;
            for (ei, edge) in EDGES.iter().enumerate() {
                let f = shape_factor(edge.shape, ws) * self.event_factor(ei, ws);
                if f == 0.0 {
                    continue;
                }
                self.edge_window(ei, edge, f, ws, we, window_idx, &batch, &mut out);
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn edge_window(
        &self,
        ei: usize,
        edge: &Edge,
        factor: f64,
        ws: Timestamp,
        we: Timestamp,
        window_idx: u64,
        batch: &str,
        out: &mut Vec<FlowRecord>,
    ) {
        let seed = self.spec.seed;
        let clients = self.workload_pods(edge.client);
        let noise = |pair: u64, salt: u64| 0.85 + 0.3 * unit(seed, ei as u64, pair, window_idx, salt);
        let record = |local: Endpoint,
                      remote: Endpoint,
                      node: &str,
                      initiator,
                      bytes_out: u64,
                      bytes_in: u64,
                      conns: u32| {
            FlowRecord {
                window_start: ws,
                window_end: we,
                node: node.to_string(),
                ip_version: 4,
                local,
                remote,
                proto: edge.proto,
                initiator: if edge.proto == Proto::Udp { Initiator::Unknown } else { initiator },
                bytes_out,
                bytes_in,
                // IP-layer packets of ~1.4 KB on bulk paths, at least one per direction with bytes.
                packets_out: bytes_out.div_ceil(1400),
                packets_in: bytes_in.div_ceil(1400),
                connections_opened: conns,
                connections_closed: conns,
                batch_id: Some(batch.to_string()),
                source: Some(Source::Demo),
            }
        };
        for (ci, c) in clients.iter().enumerate() {
            match edge.server {
                Peer::External(ip, service) => {
                    let pair = ci as u64;
                    let b_out = (edge.out * factor * noise(pair, 1)) as u64;
                    let b_in = (edge.back * factor * noise(pair, 2)) as u64;
                    let conns = (edge.conns as f64 * factor * noise(pair, 3)).round() as u32;
                    let mut remote = Endpoint::addr(IpAddr::V4(ip), edge.port);
                    remote.service = service.map(str::to_string);
                    let (local_port, remote_port, initiator, b_out, b_in) = if ei == INGRESS_EDGE {
                        // Internet clients behind the load balancer: they open, the frontend answers.
                        (8443, 40000 + (pair as u16 % 20000), Initiator::Remote, b_out, b_in)
                    } else {
                        (
                            32768 + (mix(pair ^ ei as u64) % 28000) as u16,
                            edge.port,
                            Initiator::Local,
                            b_out,
                            b_in,
                        )
                    };
                    remote.port = remote_port;
                    out.push(record(
                        c.endpoint(local_port, true),
                        remote,
                        &c.node,
                        initiator,
                        b_out,
                        b_in,
                        conns,
                    ));
                }
                Peer::Workload(server) => {
                    let servers = self.workload_pods(server);
                    for (si, s) in servers.iter().enumerate() {
                        if server == edge.client && si == ci {
                            continue; // gossip goes to the other replicas only
                        }
                        let pair = (ci * 16 + si) as u64;
                        let share = factor / servers.len() as f64;
                        let b_out = (edge.out * share * noise(pair, 1)) as u64;
                        let b_in = (edge.back * share * noise(pair, 2)) as u64;
                        let conns = (edge.conns as f64 * share * noise(pair, 3)).round() as u32;
                        let eph = 32768 + (mix(pair ^ (ei as u64) << 8) % 28000) as u16;
                        let sport = if edge.proto == Proto::Udp { edge.port } else { eph };
                        // The client's agent sees its side...
                        out.push(record(
                            c.endpoint(sport, true),
                            s.endpoint(edge.port, false),
                            &c.node,
                            Initiator::Local,
                            b_out,
                            b_in,
                            conns,
                        ));
                        // ...and the server's agent sees the mirror image of the same bytes.
                        out.push(record(
                            s.endpoint(edge.port, true),
                            c.endpoint(sport, false),
                            &s.node,
                            Initiator::Remote,
                            b_in,
                            b_out,
                            conns,
                        ));
                    }
                }
            }
        }
    }

    pub fn batch_id(&self, day: u32) -> String {
        format!("demo-s{}-{}-d{day}", self.spec.seed, self.start.micros() / 1_000_000)
    }
}

/// Writes the scenario into the workspace, one batch per day (re-running with the same seed and end
/// changes nothing), plus the ground-truth events.
pub fn write(ws: &mut Workspace, spec: DemoSpec) -> Result<DemoReport> {
    let scenario = Scenario::new(spec);
    let mut session = ws.begin_ingest("demo")?;
    let mut records = 0u64;
    for day in 0..scenario.spec.days {
        for r in scenario.day(day) {
            session.push(&r)?;
            records += 1;
        }
    }
    let report = session.commit()?;
    ws.record_demo_events(scenario.spec.seed, &scenario.events)?;
    // The demo's network, so `egressor cost` can see its NAT gateways and peering without flags.
    // Stored only where no topology was set: a user's own file is never replaced by the demo's.
    if ws.topology()?.is_none() {
        ws.set_topology(DEMO_TOPOLOGY, "docs/examples/demo-topology.toml")?;
    }
    Ok(DemoReport {
        records,
        batches_ingested: report.batches_ingested.len(),
        batches_skipped: report.batches_skipped.len(),
        start: scenario.start,
        end: scenario.spec.end.floor_hour(),
        events: scenario.events.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(seed: u64) -> DemoSpec {
        DemoSpec { days: 14, seed, end: Timestamp::parse("2026-11-20T00:00:00Z").unwrap() }
    }

    #[test]
    fn same_seed_same_bytes() {
        let a = Scenario::new(spec(7)).day(12);
        let b = Scenario::new(spec(7)).day(12);
        assert_eq!(a, b);
        let c = Scenario::new(spec(8)).day(12);
        assert_ne!(a, c);
        assert!(a.iter().all(|r| r.validate().is_ok()));
    }

    #[test]
    fn events_shape_the_traffic() {
        let s = Scenario::new(spec(1));
        assert_eq!(s.events().len(), 4);
        let spike = s.event("spike").unwrap().clone();
        let sum_edge = |day: u32, from: Timestamp, to: Timestamp| -> u64 {
            s.day(day)
                .iter()
                .filter(|r| r.local.workload_name.as_deref() == Some("recommendations"))
                .filter(|r| r.remote.workload_name.as_deref() == Some("catalog"))
                .filter(|r| r.window_start >= from && r.window_start < to)
                .map(|r| r.bytes_out)
                .sum()
        };
        let day = 12;
        let during = sum_edge(day, spike.started_at, spike.ended_at);
        let before = sum_edge(
            day - 1,
            spike.started_at.add_micros(-Timestamp::MICROS_PER_DAY),
            spike.ended_at.add_micros(-Timestamp::MICROS_PER_DAY),
        );
        assert!(during as f64 > 5.0 * before as f64, "spike {during} vs same hours the day before {before}");
        // The new endpoint is silent before its start.
        let new_api =
            |day: u32| s.day(day).iter().filter(|r| r.remote.ip.to_string() == "192.0.2.77").count();
        assert_eq!(new_api(5), 0);
        assert!(new_api(13) > 0);
        // The leak runs at night too.
        assert!(
            s.day(13)
                .iter()
                .any(|r| r.remote.port == 8443
                    && r.window_start.to_datetime().format("%H").to_string() == "03")
        );
    }
}
