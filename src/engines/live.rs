//! The live view's model: flow records arrive in ticks (from local capture, agents or a replay);
//! each tick is classified and priced by the cost engine and folded into per-edge totals, a rate
//! history for sparklines and cost rates by class. Pure: `top` and its tests drive it with records.
//!
//! Why a learned cache: the same socket pairs come back tick after tick (10,000 of them at 4 Hz in
//! the benchmark), and running classification, pricing and naming for each of them every 250 ms
//! cost a third of a core. A pair (node, local party, remote party) is run through the cost engine
//! and the graph naming once, the first time a direction of it carries bytes; what that produced
//! per direction (edge, class, drill-down key, cost per byte at the first-tier price the live view
//! shows) is kept, and later ticks only add bytes. Pricing is linear within a tick (no free
//! allowance, first tier), so this is the engine's own arithmetic, not a second model of it: the
//! test `cached_ticks_equal_the_cost_engine` holds the two together.

use super::classify::Class;
use super::classify::Direction;
use super::cost::{CostInput, GroupBy, Period, compute_each_observation};
use super::graph::{self, Level};
use super::observations::host_local;
use super::pricing::PriceBook;
use super::topology::Topology;
use crate::model::fxhash::{FxBuild, FxHasher};
use crate::model::{Endpoint, FlowRecord, Party, Timestamp, traffic_rows};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

/// Ticks of history kept per edge (sparklines).
pub const HISTORY: usize = 60;

#[derive(Debug, Clone, Serialize)]
pub struct LiveEdge {
    pub src: String,
    pub dst: String,
    pub class: Class,
    pub total_bytes: u64,
    pub total_cost: Decimal,
    /// Bytes per tick, oldest first, at most [`HISTORY`].
    #[serde(skip)]
    pub history: VecDeque<u64>,
    /// Bytes per second now: each record's bytes over its own window (at least a tick).
    pub rate: f64,
    /// Cost per hour at that rate (marginal: first tier, no free allowance).
    pub cost_per_hour: Decimal,
    /// Rates of records still inside their window (see [`Span`]).
    #[serde(skip)]
    spans: VecDeque<Span>,
    /// Pod/process pairs behind the edge, with bytes since the view started.
    pub detail: BTreeMap<String, u64>,
}

/// A rate that lasts as long as the window it was measured over. An agent reports a 10-second
/// window's bytes at once; shown as that tick's rate they would read as a burst followed by
/// silence, so each record's bytes count as `bytes / window` for the length of its window (at least
/// one tick) from the tick it arrived in. Records of local capture and of a replay are cut to the
/// tick, so for them this is the tick's own rate.
#[derive(Debug, Clone, Default)]
struct Span {
    /// Model seconds at which it stops counting.
    until: f64,
    bytes_per_sec: f64,
    cost_per_hour: Decimal,
}

fn hours(secs: f64) -> Decimal {
    Decimal::from_f64_retain(secs / 3600.0).unwrap_or(Decimal::ONE)
}

/// What one direction of a known pair contributes, per byte.
#[derive(Debug, Clone)]
struct Slot {
    edge: usize,
    class: Class,
    /// Cost of one byte (the engine's cost of the learned transfer divided by its bytes).
    unit_cost: Decimal,
    detail: String,
}

/// A (node, local party, remote party) pair seen before.
#[derive(Debug, Clone)]
struct Pair {
    node: String,
    local: Party,
    remote: Party,
    out: Option<Slot>,
    inb: Option<Slot>,
    /// Its sending direction is in `LiveModel::senders` (the set only grows).
    out_registered: bool,
    /// Whether a sender has reported its receiving direction, as of the senders set's size then:
    /// a set that has not grown gives the same answer without hashing again.
    in_sender_seen: (usize, bool),
}

#[derive(Debug, Clone, Serialize)]
pub struct LiveModel {
    pub level: Level,
    pub ticks: u64,
    /// Seconds covered since the view started (or the level changed).
    pub seconds: f64,
    pub edges: Vec<LiveEdge>,
    /// $/hour by class at the last tick.
    pub class_rate: BTreeMap<Class, Decimal>,
    pub cost_per_hour: Decimal,
    pub bytes_per_sec: f64,
    pub total_bytes: u64,
    pub total_cost: Decimal,
    pub currency: String,
    /// Rates by class still inside their window, for `class_rate`.
    #[serde(skip)]
    class_spans: VecDeque<(Class, Span)>,
    /// "src\0dst" -> position in `edges`.
    #[serde(skip)]
    index: HashMap<String, usize>,
    #[serde(skip)]
    pairs: Vec<Pair>,
    /// Hash of (node, local party, remote party) -> positions in `pairs`.
    #[serde(skip)]
    pair_index: HashMap<u64, Vec<usize>, FxBuild>,
    /// Directed transfers whose sender has reported them (see [`transfer_key`]).
    #[serde(skip)]
    senders: HashSet<TransferKey, FxBuild>,
}

/// `src -> dst`, scoped to the node when an address means "this host" (loopback, link-local).
type TransferKey = (IpAddr, IpAddr, u64);

fn transfer_key(src: IpAddr, dst: IpAddr, node: &str) -> TransferKey {
    let (src, dst) = (src.to_canonical(), dst.to_canonical());
    let scope = if host_local(src) || host_local(dst) {
        let mut h = FxHasher::default();
        node.hash(&mut h);
        h.finish()
    } else {
        0
    };
    (src, dst, scope)
}

/// Hashes what [`Party::from_endpoint`] keeps of an endpoint (the local party's node is the
/// record's node), without building the party.
fn hash_side(h: &mut impl Hasher, e: &Endpoint, node: Option<&str>) {
    e.ip.to_canonical().hash(h);
    e.process.hash(h);
    e.pod.hash(h);
    e.namespace.hash(h);
    e.workload_kind.hash(h);
    e.workload_name.hash(h);
    e.service.hash(h);
    node.hash(h);
    e.zone.hash(h);
    e.region.hash(h);
}

fn pair_hash_of_record(r: &FlowRecord) -> u64 {
    let mut h = FxHasher::default();
    r.node.hash(&mut h);
    hash_side(&mut h, &r.local, Some(&r.node));
    hash_side(&mut h, &r.remote, r.remote.node.as_deref());
    h.finish()
}

fn side_matches(p: &Party, e: &Endpoint, node: Option<&str>) -> bool {
    p.ip == Some(e.ip.to_canonical())
        && p.process == e.process
        && p.pod == e.pod
        && p.namespace == e.namespace
        && p.workload_kind == e.workload_kind
        && p.workload_name == e.workload_name
        && p.service == e.service
        && p.node.as_deref() == node
        && p.zone == e.zone
        && p.region == e.region
}

impl Pair {
    fn matches(&self, r: &FlowRecord) -> bool {
        self.node == r.node
            && side_matches(&self.local, &r.local, Some(&r.node))
            && side_matches(&self.remote, &r.remote, r.remote.node.as_deref())
    }
}

/// This tick's accumulation for one edge.
#[derive(Default, Clone)]
struct EdgeTick {
    bytes: u64,
    cost: Decimal,
    /// Its rates and how long they last (the longest window among its records).
    span: Span,
    /// Bytes by class, indexed like [`Class::ALL`].
    classes: [u64; CLASSES],
}

const CLASSES: usize = Class::ALL.len();

impl LiveModel {
    pub fn new(level: Level) -> Self {
        LiveModel {
            level,
            ticks: 0,
            seconds: 0.0,
            edges: Vec::new(),
            class_rate: BTreeMap::new(),
            cost_per_hour: Decimal::ZERO,
            bytes_per_sec: 0.0,
            total_bytes: 0,
            total_cost: Decimal::ZERO,
            currency: "USD".into(),
            class_spans: VecDeque::new(),
            index: HashMap::new(),
            pairs: Vec::new(),
            pair_index: HashMap::default(),
            senders: HashSet::default(),
        }
    }

    /// Starts over at another level (totals then count from the switch).
    pub fn set_level(&mut self, level: Level) {
        *self = LiveModel { currency: self.currency.clone(), ..LiveModel::new(level) };
    }

    fn find_pair(&self, r: &FlowRecord) -> Option<usize> {
        self.pair_index.get(&pair_hash_of_record(r))?.iter().copied().find(|&i| self.pairs[i].matches(r))
    }

    fn edge_index(&mut self, src: String, dst: String) -> usize {
        let key = format!("{src}\0{dst}");
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        self.edges.push(LiveEdge {
            src,
            dst,
            class: Class::Unknown,
            total_bytes: 0,
            total_cost: Decimal::ZERO,
            history: VecDeque::from(vec![0; (self.ticks as usize).min(HISTORY - 1)]),
            rate: 0.0,
            cost_per_hour: Decimal::ZERO,
            spans: VecDeque::new(),
            detail: BTreeMap::new(),
        });
        self.index.insert(key, self.edges.len() - 1);
        self.edges.len() - 1
    }

    /// Runs `records` (pairs not seen before, or with a direction not seen before) through the cost
    /// engine and the graph naming, and keeps what each transfer produced.
    fn learn(
        &mut self,
        records: &[FlowRecord],
        observed: &HashSet<&str, FxBuild>,
        start: Timestamp,
        end: Timestamp,
        book: &PriceBook,
        topology: Option<&Topology>,
    ) -> anyhow::Result<()> {
        let rows = traffic_rows(records, start.floor_month());
        let period = Period { since: start, until: end.max(start.add_micros(1)) };
        let report = compute_each_observation(&CostInput {
            rows: &rows,
            period,
            book,
            topology,
            by: GroupBy::Class,
            free_allowances: false,
        })?;
        self.currency = report.currency.clone();
        // The pairs of these records, found or created from the records themselves (so they are
        // indexed by the same hash the hot path computes), keyed as the engine's transfers name them.
        let mut by_parties: HashMap<(String, Party, Party), usize> = HashMap::new();
        for r in records {
            let i = match self.find_pair(r) {
                Some(i) => i,
                None => {
                    let mut local = Party::from_endpoint(&r.local);
                    local.node = Some(r.node.clone());
                    self.pairs.push(Pair {
                        node: r.node.clone(),
                        local,
                        remote: Party::from_endpoint(&r.remote),
                        out: None,
                        inb: None,
                        out_registered: false,
                        in_sender_seen: (usize::MAX, false),
                    });
                    self.pair_index.entry(pair_hash_of_record(r)).or_default().push(self.pairs.len() - 1);
                    self.pairs.len() - 1
                }
            };
            let p = &self.pairs[i];
            by_parties.insert((p.node.clone(), p.local.clone(), p.remote.clone()), i);
        }
        for (t, costs) in report.transfers.iter().zip(&report.transfer_costs) {
            // The engine saw only these records; the tick sees more nodes. A receiving direction
            // whose remote node reports in this tick is not counted (its sender's bytes_out are):
            // learning it now would only add an edge that never carries bytes.
            let remote_observed = t.remote().node.as_deref().is_some_and(|n| observed.contains(n));
            if t.bytes == 0 || (t.direction == Direction::In && remote_observed) {
                continue;
            }
            let key = (t.node.clone(), t.local().clone(), t.remote().clone());
            let Some(&i) = by_parties.get(&key) else {
                anyhow::bail!(
                    "live view: the cost engine returned a transfer of {} that none of the tick's flows has",
                    t.node
                )
            };
            let (src, dst, _) = graph::transfer_edge(t, self.level);
            let edge = self.edge_index(src, dst);
            let cost: Decimal = costs.values().copied().sum();
            let slot = Slot {
                edge,
                class: t.classified.class,
                unit_cost: cost / Decimal::from(t.bytes),
                detail: graph::transfer_detail(t),
            };
            match t.direction {
                Direction::Out => self.pairs[i].out = Some(slot),
                Direction::In => self.pairs[i].inb = Some(slot),
            }
        }
        Ok(())
    }

    /// Registers the tick's sending directions, then says for each record whether its receiving
    /// direction is counted: not when the remote's node reports in this tick, nor when a sender
    /// has reported the same transfer. Known pairs remember both answers, so a steady tick hashes
    /// no addresses.
    fn receiving_to_count(
        &mut self,
        records: &[FlowRecord],
        found: &[Option<usize>],
        observed: &HashSet<&str, FxBuild>,
    ) -> Vec<bool> {
        for (r, p) in records.iter().zip(found) {
            if r.bytes_out == 0 || p.is_some_and(|i| self.pairs[i].out_registered) {
                continue;
            }
            self.senders.insert(transfer_key(r.local.ip, r.remote.ip, &r.node));
            if let Some(i) = *p {
                self.pairs[i].out_registered = true;
            }
        }
        let (senders, pairs) = (&self.senders, &mut self.pairs);
        let n = senders.len();
        records
            .iter()
            .zip(found)
            .map(|(r, p)| {
                if r.bytes_in == 0 || r.remote.node.as_deref().is_some_and(|n| observed.contains(n)) {
                    return false;
                }
                let sent = || senders.contains(&transfer_key(r.remote.ip, r.local.ip, &r.node));
                let seen = match *p {
                    Some(i) => {
                        let pair = &mut pairs[i];
                        if pair.in_sender_seen.0 != n {
                            pair.in_sender_seen = (n, sent());
                        }
                        pair.in_sender_seen.1
                    }
                    None => sent(),
                };
                !seen
            })
            .collect()
    }

    /// Folds one tick of records, covering `[start, end)`, into the model.
    pub fn tick(
        &mut self,
        records: &[FlowRecord],
        start: Timestamp,
        end: Timestamp,
        book: &PriceBook,
        topology: Option<&Topology>,
    ) -> anyhow::Result<()> {
        let secs = ((end.micros() - start.micros()) as f64 / 1e6).max(1e-3);
        // As the cost engine does (`engines::observations`): bytes a remote on a reporting node
        // received are that node's own bytes_out, and so are bytes whose sender's address has been
        // seen sending them (loopback and same-node containers included). Live, the sender's report
        // is the one counted: which report is larger is only known once both are in.
        let observed: HashSet<&str, FxBuild> = records.iter().map(|r| r.node.as_str()).collect();
        let mut found: Vec<Option<usize>> = records.iter().map(|r| self.find_pair(r)).collect();
        let needs_in = self.receiving_to_count(records, &found, &observed);
        // 1. Learn what is new. A record with nothing to count this tick (no bytes out, and its
        //    bytes in are another report's bytes out) produces no transfer: skip it.
        let mut unknown: Vec<FlowRecord> = Vec::new();
        for ((r, &needs_in), p) in records.iter().zip(&needs_in).zip(found.iter_mut()) {
            if r.bytes_out == 0 && !needs_in {
                *p = None;
                continue;
            }
            let p = *p;
            let known = p.is_some_and(|i| {
                let pair = &self.pairs[i];
                (r.bytes_out == 0 || pair.out.is_some()) && (!needs_in || pair.inb.is_some())
            });
            if !known {
                unknown.push(r.clone());
            }
        }
        if !unknown.is_empty() {
            self.learn(&unknown, &observed, start, end, book, topology)?;
            for ((f, r), &needs_in) in found.iter_mut().zip(records).zip(&needs_in) {
                if f.is_none() && (r.bytes_out > 0 || needs_in) {
                    *f = self.find_pair(r);
                }
            }
        }
        // 2. Add every record's bytes through what was learned.
        let mut per_edge: Vec<EdgeTick> = vec![EdgeTick::default(); self.edges.len()];
        // Per class: cost, and the longest window behind it.
        let mut class_cost: BTreeMap<Class, (Decimal, f64)> = BTreeMap::new();
        let (mut tick_bytes, mut tick_cost) = (0u64, Decimal::ZERO);
        for ((r, p), &needs_in) in records.iter().zip(&found).zip(&needs_in) {
            if r.bytes_out == 0 && !needs_in {
                continue;
            }
            let Some(i) = *p else {
                anyhow::bail!("live view: a flow of {} was learned but its pair is missing", r.node)
            };
            let inb = if needs_in { r.bytes_in } else { 0 };
            let window = ((r.window_end.micros() - r.window_start.micros()) as f64 / 1e6).max(secs);
            for (slot, bytes) in [(&self.pairs[i].out, r.bytes_out), (&self.pairs[i].inb, inb)] {
                if bytes == 0 {
                    continue;
                }
                let Some(slot) = slot else {
                    anyhow::bail!("live view: no transfer learned for a direction of a flow of {}", r.node)
                };
                let cost = slot.unit_cost * Decimal::from(bytes);
                let e = &mut per_edge[slot.edge];
                e.bytes += bytes;
                e.cost += cost;
                e.classes[slot.class as usize] += bytes;
                // Decimal division stays out of this loop (one per edge and class below): the
                // cost rate uses the longest window of the tick's records, which for one source
                // of records is the window they all have.
                e.span.until = e.span.until.max(window);
                e.span.bytes_per_sec += bytes as f64 / window;
                let c = class_cost.entry(slot.class).or_default();
                c.0 += cost;
                c.1 = c.1.max(window);
                let detail = &mut self.edges[slot.edge].detail;
                match detail.get_mut(slot.detail.as_str()) {
                    Some(n) => *n += bytes,
                    None => {
                        detail.insert(slot.detail.clone(), bytes);
                    }
                }
                tick_bytes += bytes;
                tick_cost += cost;
            }
        }
        // 3. Fold into the edges: totals, rates, history. Rates sum the spans still open at this
        //    tick's start; a span opened now lasts its window from here.
        let now = self.seconds;
        let (mut bytes_per_sec, mut cost_per_hour) = (0.0, Decimal::ZERO);
        // Windows repeat (every record of one source has the tick's or the agent's): one
        // conversion to hours each.
        let mut window_hours: Vec<(f64, Decimal)> = Vec::new();
        for (i, le) in self.edges.iter_mut().enumerate() {
            let new = per_edge.get(i).filter(|t| t.bytes > 0);
            if le.spans.is_empty() && new.is_none() {
                (le.rate, le.cost_per_hour) = (0.0, Decimal::ZERO);
                le.history.push_back(0);
                while le.history.len() > HISTORY {
                    le.history.pop_front();
                }
                continue;
            }
            le.spans.retain(|s| s.until > now + 1e-9);
            if let Some(t) = new {
                let w = t.span.until;
                let h = match window_hours.iter().find(|(x, _)| *x == w) {
                    Some((_, h)) => *h,
                    None => {
                        window_hours.push((w, hours(w)));
                        hours(w)
                    }
                };
                le.spans.push_back(Span {
                    until: now + w,
                    bytes_per_sec: t.span.bytes_per_sec,
                    cost_per_hour: t.cost.round_dp(super::cost::MONEY_DP) / h,
                });
            }
            if le.spans.len() == 1 {
                let only = &le.spans[0];
                (le.rate, le.cost_per_hour) = (only.bytes_per_sec, only.cost_per_hour.round_dp(6));
            } else {
                le.rate = le.spans.iter().map(|s| s.bytes_per_sec).sum();
                le.cost_per_hour = le.spans.iter().map(|s| s.cost_per_hour).sum::<Decimal>().round_dp(6);
            }
            bytes_per_sec += le.rate;
            cost_per_hour += le.cost_per_hour;
            match per_edge.get(i).filter(|t| t.bytes > 0) {
                Some(t) => {
                    // The class with the most bytes; on a tie the first in Class order (as the graph).
                    le.class = Class::ALL
                        .iter()
                        .zip(t.classes)
                        .filter(|(_, b)| *b > 0)
                        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
                        .map(|(c, _)| *c)
                        .unwrap_or(Class::Unknown);
                    let cost = t.cost.round_dp(super::cost::MONEY_DP);
                    le.total_bytes += t.bytes;
                    le.total_cost += cost;
                    le.history.push_back(t.bytes);
                }
                None => le.history.push_back(0),
            }
            while le.history.len() > HISTORY {
                le.history.pop_front();
            }
        }
        let tick_cost = tick_cost.round_dp(super::cost::MONEY_DP);
        self.class_spans.retain(|(_, s)| s.until > now + 1e-9);
        for (class, (cost, window)) in class_cost {
            let per_hour = cost.round_dp(super::cost::MONEY_DP) / hours(window);
            let span = Span { until: now + window, bytes_per_sec: 0.0, cost_per_hour: per_hour };
            self.class_spans.push_back((class, span));
        }
        let mut class_rate: BTreeMap<Class, Decimal> = BTreeMap::new();
        for (class, s) in &self.class_spans {
            *class_rate.entry(*class).or_default() += s.cost_per_hour;
        }
        self.class_rate = class_rate.into_iter().map(|(c, v)| (c, v.round_dp(6))).collect();
        self.cost_per_hour = cost_per_hour.round_dp(6);
        self.bytes_per_sec = bytes_per_sec;
        self.total_bytes += tick_bytes;
        self.total_cost += tick_cost;
        self.seconds += secs;
        self.ticks += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engines::cost::compute;
    use crate::engines::graph::{FocusDirection, GraphQuery};
    use crate::model::{Initiator, Proto};
    use std::net::IpAddr;

    fn ep(ip: &str, name: &str, node: &str, zone: &str) -> Endpoint {
        let mut e = Endpoint::addr(ip.parse::<IpAddr>().unwrap(), 443);
        if !name.is_empty() {
            e.namespace = Some("shop".into());
            e.workload_kind = Some("Deployment".into());
            e.workload_name = Some(name.into());
            e.pod = Some(format!("{name}-0"));
            e.node = Some(node.into());
            e.zone = Some(zone.into());
            e.region = Some("us-east-1".into());
            e.process = Some("java".into());
        }
        e
    }

    fn rec(local: Endpoint, remote: Endpoint, out: u64, inb: u64) -> FlowRecord {
        FlowRecord {
            window_start: Timestamp::from_secs(1_795_000_000),
            window_end: Timestamp::from_secs(1_795_000_001),
            node: local.node.clone().unwrap(),
            ip_version: 4,
            local,
            remote,
            proto: Proto::Tcp,
            initiator: Initiator::Local,
            bytes_out: out,
            bytes_in: inb,
            packets_out: 1,
            packets_in: 1,
            connections_opened: 0,
            connections_closed: 0,
            batch_id: None,
            source: None,
        }
    }

    /// Regression (issue "Truth"): `top` during `iperf3 -c 127.0.0.1` showed 402.8 Mbit/s as two
    /// edges, the client's sending and the server's receiving of the same bytes.
    #[test]
    fn both_ends_of_loopback_traffic_count_once() {
        let book = PriceBook::shipped().unwrap();
        let end = |port: u16| {
            let mut e = Endpoint::addr("127.0.0.1".parse().unwrap(), port);
            e.process = Some("iperf3".into());
            e.node = Some("host".into());
            e
        };
        let mut client = rec(end(40000), end(5201), 25_000_000, 100_000);
        let mut server = rec(end(5201), end(40000), 100_000, 25_000_000);
        // As the agent reports them: the remote end is an address.
        (client.remote.node, client.remote.process) = (None, None);
        (server.remote.node, server.remote.process) = (None, None);
        let mut m = LiveModel::new(Level::Workload);
        let (start, stop) = (Timestamp::from_secs(1_795_000_000), Timestamp::from_secs(1_795_000_001));
        m.tick(&[client, server], start, stop, &book, None).unwrap();
        assert_eq!(m.total_bytes, 25_100_000);
        assert!((m.bytes_per_sec - 25_100_000.0).abs() < 1.0, "{}", m.bytes_per_sec);
        let carrying: Vec<_> = m.edges.iter().filter(|e| e.total_bytes > 0).collect();
        assert_eq!(carrying.len(), 1, "{:?}", m.edges);
        assert_eq!((carrying[0].src.as_str(), carrying[0].dst.as_str()), ("process/iperf3", "127.0.0.1"));
    }

    /// Regression (issue "Truth", periods): an agent's 10-second window arriving in one 250 ms tick
    /// read as a burst and then 0 b/s; its rate lasts its window.
    #[test]
    fn a_records_rate_lasts_its_window() {
        let book = PriceBook::shipped().unwrap();
        let fe = ep("10.0.1.10", "frontend", "node-a", "us-east-1a");
        let co = ep("10.0.2.20", "checkout", "node-b", "us-east-1b");
        let mut r = rec(fe, co, 10_000_000, 0);
        r.window_end = r.window_start.add_micros(10_000_000);
        let mut m = LiveModel::new(Level::Workload);
        let t0 = Timestamp::from_secs(1_795_000_100);
        let tick = |i: i64| (t0.add_micros(i * 250_000), t0.add_micros((i + 1) * 250_000));
        let (a, b) = tick(0);
        m.tick(std::slice::from_ref(&r), a, b, &book, None).unwrap();
        assert!((m.bytes_per_sec - 1_000_000.0).abs() < 1.0, "{}", m.bytes_per_sec);
        for i in 1..40 {
            let (a, b) = tick(i);
            m.tick(&[], a, b, &book, None).unwrap();
            assert!((m.bytes_per_sec - 1_000_000.0).abs() < 1.0, "tick {i}: {}", m.bytes_per_sec);
            assert!(m.cost_per_hour > Decimal::ZERO && m.edges[0].cost_per_hour > Decimal::ZERO);
        }
        let (a, b) = tick(40);
        m.tick(&[], a, b, &book, None).unwrap();
        assert_eq!(m.bytes_per_sec, 0.0, "the window is over");
    }

    /// Tick `k` of a small cluster: cross-zone pairs, a remote on an unobserved node (its receiving
    /// direction counts) and on an observed one (it does not), S3, the internet, same node; the
    /// byte counts change every tick, a direction appears only in tick 2, a pair only in tick 3.
    fn tick_records(k: u64) -> Vec<FlowRecord> {
        let fe = ep("10.0.1.10", "frontend", "node-a", "us-east-1a");
        let co = ep("10.0.2.20", "checkout", "node-b", "us-east-1b");
        let db = ep("10.0.3.30", "db", "node-c", "us-east-1c");
        let mut v = vec![
            rec(fe.clone(), co.clone(), 7_000_003 * k, if k >= 2 { 1_000 * k } else { 0 }),
            rec(co.clone(), fe.clone(), 3_000_001 * k, 0),
            rec(co.clone(), db.clone(), 5_000_000 + k, 2_000_000 * k),
            rec(co.clone(), ep("52.216.8.20", "", "", ""), 900_000_000 * k, 12_345),
            rec(fe.clone(), ep("198.51.100.7", "", "", ""), 123_456_789 * k, 999),
            rec(fe.clone(), ep("10.0.1.11", "frontend", "node-a", "us-east-1a"), 42 * k, 0),
        ];
        if k == 3 {
            v.push(rec(db.clone(), ep("10.0.1.10", "frontend", "node-a", "us-east-1a"), 77_777, 0));
        }
        // Nothing to count: an idle socket, and bytes in that the (observed) sender already reports.
        v.push(rec(db, ep("198.51.100.9", "", "", ""), 0, 0));
        v.push(rec(fe, co, 0, 5_000));
        v
    }

    #[test]
    fn cached_ticks_equal_the_cost_engine() {
        let book = PriceBook::shipped().unwrap();
        let mut m = LiveModel::new(Level::Workload);
        type Expected = (u64, Decimal, BTreeMap<String, u64>);
        let mut expect: BTreeMap<(String, String), Expected> = BTreeMap::new();
        let mut expect_total = Decimal::ZERO;
        for k in 1..=3 {
            let recs = tick_records(k);
            let (start, end) = (Timestamp::from_secs(1_795_000_000), Timestamp::from_secs(1_795_000_001));
            m.tick(&recs, start, end, &book, None).unwrap();
            // The engine from scratch on the same tick.
            let rows = traffic_rows(&recs, start.floor_month());
            let report = compute(&CostInput {
                rows: &rows,
                period: Period { since: start, until: end },
                book: &book,
                topology: None,
                by: GroupBy::Class,
                free_allowances: false,
            })
            .unwrap();
            expect_total += report.totals.transfer_cost;
            let g = graph::build(
                &report,
                &GraphQuery {
                    level: Level::Workload,
                    focus: None,
                    hops: 0,
                    direction: FocusDirection::Both,
                    class: None,
                    details: true,
                },
            );
            for e in g.edges {
                let x = expect.entry((e.src.clone(), e.dst.clone())).or_default();
                x.0 += e.bytes;
                x.1 += e.cost;
                for (d, b) in e.detail {
                    *x.2.entry(d).or_default() += b;
                }
                let le =
                    m.edges.iter().find(|l| l.src == e.src && l.dst == e.dst).expect("edge in live model");
                assert_eq!(le.class, e.class, "{} -> {}", e.src, e.dst);
                assert_eq!(*le.history.back().unwrap(), e.bytes, "tick {k} bytes of {} -> {}", e.src, e.dst);
            }
            assert_eq!(m.total_bytes, expect.values().map(|x| x.0).sum::<u64>(), "tick {k}");
            let diff = (m.total_cost - expect_total).abs();
            assert!(diff <= Decimal::new(1, 9), "tick {k}: live {} vs engine {expect_total}", m.total_cost);
        }
        assert!(expect_total > Decimal::ZERO);
        let names = |v: Vec<(&String, &String)>| {
            v.into_iter().map(|(a, b)| format!("{a} -> {b}")).collect::<Vec<_>>()
        };
        assert_eq!(
            m.edges.len(),
            expect.len(),
            "live {:?}\nengine {:?}",
            names(m.edges.iter().map(|e| (&e.src, &e.dst)).collect()),
            names(expect.keys().map(|(a, b)| (a, b)).collect())
        );
        for le in &m.edges {
            let x = &expect[&(le.src.clone(), le.dst.clone())];
            assert_eq!(le.total_bytes, x.0);
            assert!((le.total_cost - x.1).abs() <= Decimal::new(1, 9), "{} vs {}", le.total_cost, x.1);
            assert_eq!(le.detail, x.2);
        }
    }
}
