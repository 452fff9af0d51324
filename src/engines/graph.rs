//! The transfer graph: who sends how much to whom, at a chosen level (pod, workload, service,
//! namespace, node, zone, process), with each edge's class and cost. Built from the cost engine's
//! classified transfers, so the graph and `egressor cost` always agree on bytes, classes and money.

use super::classify::{Class, Direction};
use super::cost::{CostReport, Transfer};
use crate::model::Party;
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Pod,
    Workload,
    Service,
    Namespace,
    Node,
    Zone,
    Process,
}

impl Level {
    pub const ALL: &'static [Level] = &[
        Level::Pod,
        Level::Workload,
        Level::Service,
        Level::Namespace,
        Level::Node,
        Level::Zone,
        Level::Process,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Pod => "pod",
            Level::Workload => "workload",
            Level::Service => "service",
            Level::Namespace => "namespace",
            Level::Node => "node",
            Level::Zone => "zone",
            Level::Process => "process",
        }
    }
    pub fn parse(s: &str) -> Option<Level> {
        Level::ALL.iter().copied().find(|l| l.as_str() == s)
    }
    /// The next level in the `l` key's cycle of the TUI.
    pub fn next(self) -> Level {
        let i = Level::ALL.iter().position(|l| *l == self).unwrap_or(0);
        Level::ALL[(i + 1) % Level::ALL.len()]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FocusDirection {
    Out,
    In,
    Both,
}

/// What kind of thing a graph node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeKind {
    /// Ours: a pod, workload, node, zone... at the chosen level.
    Internal,
    /// A named cloud service (`aws:S3 us-east-1`).
    CloudService,
    /// A host outside every known network.
    External,
}

#[derive(Debug, Clone, Serialize)]
pub struct GraphNode {
    pub name: String,
    pub kind: NodeKind,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub cost: Decimal,
}

#[derive(Debug, Clone, Serialize)]
pub struct Edge {
    pub src: String,
    pub dst: String,
    pub bytes: u64,
    /// Bytes per second over the period.
    pub rate: f64,
    /// The class carrying most of the edge's bytes, and all classes seen.
    pub class: Class,
    pub classes: BTreeSet<Class>,
    pub cost: Decimal,
    /// With [`GraphQuery::details`]: the pod/process pairs behind the edge and their bytes (the
    /// drill-down of `top`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub detail: BTreeMap<String, u64>,
}

/// The version of `egressor graph --output json` (docs/schemas/graph.v1.json).
pub const GRAPH_SCHEMA: &str = "egressor.graph/v1";

#[derive(Debug, Clone, Serialize)]
pub struct Graph {
    /// [`GRAPH_SCHEMA`].
    pub schema_version: &'static str,
    /// The same, under the key v1 first printed it as (kept until v2).
    pub schema: &'static str,
    pub level: Level,
    pub seconds: f64,
    pub nodes: Vec<GraphNode>,
    /// Sorted by bytes, largest first.
    pub edges: Vec<Edge>,
}

pub struct GraphQuery<'a> {
    pub level: Level,
    pub focus: Option<&'a str>,
    pub hops: usize,
    pub direction: FocusDirection,
    pub class: Option<Class>,
    pub details: bool,
}

fn party_name(p: &Party, level: Level) -> String {
    match level {
        Level::Pod => match (&p.namespace, &p.pod) {
            (Some(ns), Some(pod)) => format!("{ns}/{pod}"),
            (None, Some(pod)) => pod.clone(),
            _ => p.workload_label(),
        },
        Level::Workload => p.workload_label(),
        Level::Service => match (&p.namespace, &p.service) {
            (Some(ns), Some(s)) => format!("{ns}/svc/{s}"),
            (None, Some(s)) => format!("svc/{s}"),
            _ => p.workload_label(),
        },
        Level::Namespace => p.namespace.clone().unwrap_or_else(|| "(host)".into()),
        Level::Node => p.node.clone().unwrap_or_else(|| "(unknown node)".into()),
        Level::Zone => p.zone.clone().unwrap_or_else(|| "(unknown zone)".into()),
        Level::Process => match (&p.process, p.ip) {
            (Some(c), _) => c.clone(),
            (None, Some(ip)) => ip.to_string(),
            _ => "(unknown)".into(),
        },
    }
}

/// The remote end's name: at any level, a host outside our networks is itself (or its service).
fn remote_name(t: &Transfer, level: Level) -> (String, NodeKind) {
    let c = &t.classified;
    if c.service.is_some() {
        return (c.remote_label.clone(), NodeKind::CloudService);
    }
    let r = t.remote();
    let known = r.node.is_some() || r.zone.is_some() || r.namespace.is_some() || r.pod.is_some();
    if !known && !c.remote_ours {
        return (c.remote_label.clone(), NodeKind::External);
    }
    if !known {
        // Ours by topology (another VPC, a NAT'd host) but without metadata: its address.
        return (r.ip.map(|i| i.to_string()).unwrap_or_else(|| "(unknown)".into()), NodeKind::Internal);
    }
    (party_name(r, level), NodeKind::Internal)
}

/// The edge a transfer belongs to at `level`: (sender, receiver, kind of the remote end).
pub fn transfer_edge(t: &Transfer, level: Level) -> (String, String, NodeKind) {
    let local = party_name(t.local(), level);
    let (remote, kind) = remote_name(t, level);
    match t.direction {
        Direction::Out => (local, remote, kind),
        Direction::In => (remote, local, kind),
    }
}

/// The drill-down key of a transfer: `namespace/pod [process] -> other pod`, in the transfer's
/// direction.
pub fn transfer_detail(t: &Transfer) -> String {
    let l = t.local();
    let who = format!("{} [{}]", party_name(l, Level::Pod), l.process.as_deref().unwrap_or("-"));
    let (other, _) = remote_name(t, Level::Pod);
    match t.direction {
        Direction::Out => format!("{who} -> {other}"),
        Direction::In => format!("{other} -> {who}"),
    }
}

pub fn build(report: &CostReport, q: &GraphQuery<'_>) -> Graph {
    let seconds = (report.until.micros() - report.since.micros()).max(1) as f64 / 1e6;
    // Hash maps while folding (the live view folds ~10,000 transfers per tick); the order of the
    // output comes from the sort below, so it stays deterministic.
    type Acc = (u64, BTreeMap<Class, u64>, Decimal, HashMap<String, u64>);
    let mut edges: HashMap<(String, String), Acc> = HashMap::new();
    let mut kinds: HashMap<String, NodeKind> = HashMap::new();
    for (t, costs) in report.transfers.iter().zip(&report.transfer_costs) {
        if !t.in_period || q.class.is_some_and(|c| c != t.classified.class) {
            continue;
        }
        let (src, dst, kind) = transfer_edge(t, q.level);
        let (local, remote) = match t.direction {
            Direction::Out => (&src, &dst),
            Direction::In => (&dst, &src),
        };
        if !kinds.contains_key(local) {
            kinds.insert(local.clone(), NodeKind::Internal);
        }
        if !kinds.contains_key(remote) {
            kinds.insert(remote.clone(), kind);
        }
        let e = edges.entry((src, dst)).or_default();
        e.0 += t.bytes;
        *e.1.entry(t.classified.class).or_default() += t.bytes;
        e.2 += costs.values().copied().sum::<Decimal>();
        if q.details {
            *e.3.entry(transfer_detail(t)).or_default() += t.bytes;
        }
    }
    let mut edges: Vec<Edge> = edges
        .into_iter()
        .map(|((src, dst), (bytes, classes, cost, detail))| {
            let class = classes
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                .map(|(c, _)| *c)
                .unwrap_or(Class::Unknown);
            Edge {
                src,
                dst,
                bytes,
                rate: bytes as f64 / seconds,
                class,
                classes: classes.into_keys().collect(),
                cost,
                detail: detail.into_iter().collect(),
            }
        })
        .collect();
    if let Some(focus) = q.focus {
        edges = subgraph(edges, focus, q.hops, q.direction);
    }
    edges.sort_by(|a, b| {
        b.bytes.cmp(&a.bytes).then_with(|| a.src.cmp(&b.src)).then_with(|| a.dst.cmp(&b.dst))
    });
    let mut nodes: BTreeMap<String, GraphNode> = BTreeMap::new();
    for e in &edges {
        for (name, out) in [(&e.src, true), (&e.dst, false)] {
            let n = nodes.entry(name.clone()).or_insert_with(|| GraphNode {
                name: name.clone(),
                kind: kinds.get(name).copied().unwrap_or(NodeKind::Internal),
                bytes_out: 0,
                bytes_in: 0,
                cost: Decimal::ZERO,
            });
            if out {
                n.bytes_out += e.bytes;
                n.cost += e.cost;
            } else {
                n.bytes_in += e.bytes;
            }
        }
    }
    Graph {
        schema_version: GRAPH_SCHEMA,
        schema: GRAPH_SCHEMA,
        level: q.level,
        seconds,
        nodes: nodes.into_values().collect(),
        edges,
    }
}

/// Edges within `hops` of any node whose name contains `focus`, following edges out of, into, or
/// both ways around the focus.
fn subgraph(edges: Vec<Edge>, focus: &str, hops: usize, dir: FocusDirection) -> Vec<Edge> {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut queue: VecDeque<(String, usize)> = VecDeque::new();
    for e in &edges {
        for n in [&e.src, &e.dst] {
            if n.contains(focus) && seen.insert(n.clone()) {
                queue.push_back((n.clone(), 0));
            }
        }
    }
    let mut keep = vec![false; edges.len()];
    while let Some((n, d)) = queue.pop_front() {
        if d >= hops {
            continue;
        }
        for (i, e) in edges.iter().enumerate() {
            let next = match dir {
                FocusDirection::Out if e.src == n => Some(&e.dst),
                FocusDirection::In if e.dst == n => Some(&e.src),
                FocusDirection::Both if e.src == n => Some(&e.dst),
                FocusDirection::Both if e.dst == n => Some(&e.src),
                _ => None,
            };
            if let Some(m) = next {
                keep[i] = true;
                if seen.insert(m.clone()) {
                    queue.push_back((m.clone(), d + 1));
                }
            }
        }
    }
    edges.into_iter().zip(keep).filter(|(_, k)| *k).map(|(e, _)| e).collect()
}

impl Graph {
    /// The biggest senders and receivers (by bytes).
    pub fn top_talkers(&self, n: usize) -> (Vec<&GraphNode>, Vec<&GraphNode>) {
        let mut s: Vec<&GraphNode> = self.nodes.iter().filter(|x| x.bytes_out > 0).collect();
        s.sort_by(|a, b| b.bytes_out.cmp(&a.bytes_out).then(a.name.cmp(&b.name)));
        let mut r: Vec<&GraphNode> = self.nodes.iter().filter(|x| x.bytes_in > 0).collect();
        r.sort_by(|a, b| b.bytes_in.cmp(&a.bytes_in).then(a.name.cmp(&b.name)));
        s.truncate(n);
        r.truncate(n);
        (s, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engines::cost::{CostInput, GroupBy, Period, compute};
    use crate::engines::pricing::PriceBook;
    use crate::model::{Timestamp, TrafficRow};

    fn pod(ip: &str, ns: &str, name: &str, node: &str, zone: &str) -> Party {
        Party {
            ip: Some(ip.parse().unwrap()),
            pod: Some(format!("{name}-0")),
            namespace: Some(ns.into()),
            workload_kind: Some("Deployment".into()),
            workload_name: Some(name.into()),
            node: Some(node.into()),
            zone: Some(zone.into()),
            region: Some("us-east-1".into()),
            ..Party::default()
        }
    }

    fn graph(level: Level, focus: Option<&str>, hops: usize, class: Option<Class>) -> Graph {
        let a = pod("10.0.1.10", "shop", "web", "n-a", "us-east-1a");
        let b = pod("10.0.2.10", "shop", "api", "n-b", "us-east-1b");
        let c = pod("10.0.2.11", "data", "db", "n-b", "us-east-1b");
        let month = Timestamp::parse("2026-11-01").unwrap();
        let row = |l: &Party, r: &Party, out: u64| TrafficRow {
            month,
            in_period: true,
            node: l.node.clone().unwrap(),
            local: l.clone(),
            remote: r.clone(),
            bytes_out: out,
            bytes_in: 0,
        };
        let internet = Party { ip: Some("198.51.100.7".parse().unwrap()), ..Party::default() };
        let rows = vec![row(&a, &b, 1000), row(&b, &c, 500), row(&b, &a, 200), row(&c, &internet, 50)];
        let book = PriceBook::shipped().unwrap();
        let period = Period { since: month, until: month.add_micros(3600 * 1_000_000) };
        let r = compute(&CostInput {
            rows: &rows,
            period,
            book: &book,
            topology: None,
            by: GroupBy::Workload,
            free_allowances: true,
        })
        .unwrap();
        build(&r, &GraphQuery { level, focus, hops, direction: FocusDirection::Both, class, details: true })
    }

    #[test]
    fn edges_at_levels() {
        let g = graph(Level::Workload, None, 1, None);
        assert_eq!(g.edges.len(), 4);
        assert_eq!(g.edges[0].src, "shop/Deployment/web");
        assert_eq!(g.edges[0].bytes, 1000);
        assert_eq!(g.edges[0].class, Class::CrossZone);
        let ext = g.nodes.iter().find(|n| n.name == "internet 198.51.100.7").unwrap();
        assert_eq!(ext.kind, NodeKind::External);
        let z = graph(Level::Zone, None, 1, None);
        // a->b and b->a cross zones; b->c stays in us-east-1b.
        let pairs: Vec<_> = z.edges.iter().map(|e| (e.src.as_str(), e.dst.as_str(), e.bytes)).collect();
        assert!(pairs.contains(&("us-east-1a", "us-east-1b", 1000)), "{pairs:?}");
        assert!(pairs.contains(&("us-east-1b", "us-east-1b", 500)), "{pairs:?}");
        let ns = graph(Level::Namespace, None, 1, None);
        assert!(ns.edges.iter().any(|e| e.src == "shop" && e.dst == "data" && e.bytes == 500));
    }

    #[test]
    fn focus_hops_and_class_filter() {
        let g = graph(Level::Workload, Some("db"), 1, None);
        // db's neighbours only: api->db and db->internet.
        assert_eq!(g.edges.len(), 2, "{:?}", g.edges);
        let g2 = graph(Level::Workload, Some("db"), 2, None);
        assert_eq!(g2.edges.len(), 4);
        let cz = graph(Level::Workload, None, 1, Some(Class::CrossZone));
        assert!(cz.edges.iter().all(|e| e.class == Class::CrossZone));
        assert_eq!(cz.edges.len(), 2);
    }
}
