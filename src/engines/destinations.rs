//! One command's traffic (`egressor run`), one line per destination: who it talked to, how much each
//! way, over how many connections, in which class, and what that costs per run and per month.
//!
//! ```text
//! flow records of the job's cgroup --group by peer--> lines --cost engine--> priced lines --> JobReport
//!                                                                                  \--> policy::Usage
//! ```
//!
//! Prices come from the cost engine, as for a workspace: each line is a traffic row from this host (at
//! the runner's region and zone) to the peer. A run is priced at the start of the month's tier ladder
//! and without free allowances (those are the account's, shared with everything else it runs), so the
//! per-run figure is what one more run adds; the monthly figure is that times the runs of a month.

use super::classify::{Class, Direction};
use super::cloud_ranges::CloudService;
use super::cost::{self, CostInput, GroupBy, HOURS_PER_MONTH, Period, Unpriced};
use super::policy::{self, Destination, ScopeKey, Usage};
use super::pricing::{PriceBook, Provider};
use super::topology::Topology;
use crate::model::{FlowRecord, Initiator, Party, Proto, Timestamp, TrafficRow};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;

pub const RUN_SCHEMA: &str = "egressor.run/v1";

/// Where the command ran: what classes and prices are relative to.
#[derive(Debug, Clone, Serialize)]
pub struct Runner {
    /// This host's name (the node of its flow records).
    pub host: String,
    /// From the topology (default aws).
    pub provider: Provider,
    pub region: Option<String>,
    pub zone: Option<String>,
}

/// What pricing a job needs beyond its records.
pub struct JobPricing<'a> {
    pub book: &'a PriceBook,
    pub topology: Option<&'a Topology>,
    pub runs_per_day: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Way {
    /// The command connected out (or sent datagrams): the peer's port is the service's.
    Outbound,
    /// The peer connected in to a port the command listened on.
    Inbound,
}

/// One destination of the command.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub address: IpAddr,
    /// The peer's port for outbound traffic, the command's listening port for inbound.
    pub port: u16,
    pub proto: Proto,
    pub way: Way,
    /// The processes of the command that used it (task names).
    pub processes: Vec<String>,
    /// Connections opened (TCP), or sockets seen (UDP).
    pub connections: u32,
    /// IP-layer bytes: headers included.
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub class: Class,
    /// Why that class, in a sentence a person can check.
    pub reason: String,
    /// As a person names the peer: `internet 198.51.100.10`, `aws:S3 us-east-1`.
    pub label: String,
    /// The cloud service at the address, from the shipped IP ranges.
    pub service: Option<CloudService>,
    /// Loopback: never leaves this host.
    pub same_host: bool,
    /// In our own network (the topology says so): not an external destination for the policy.
    pub ours: bool,
    pub cost_per_run: Decimal,
    pub cost_per_month: Decimal,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub destinations: usize,
    pub connections: u32,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub cost_per_run: Decimal,
    pub cost_per_month: Decimal,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    pub runner: Runner,
    pub currency: String,
    pub runs_per_day: u32,
    pub started: Timestamp,
    pub ended: Timestamp,
    /// One line per destination, costliest first.
    #[serde(rename = "destinations")]
    pub lines: Vec<Line>,
    pub totals: Totals,
    /// Bytes no price applies to, and why (e.g. no region for the runner).
    pub unpriced: Vec<Unpriced>,
    /// Bytes by class, both directions (what byte limits read).
    #[serde(skip)]
    pub bytes_by_class: BTreeMap<Class, u64>,
    #[serde(skip)]
    pub cost_by_class: BTreeMap<Class, Decimal>,
}

/// Groups the records by peer, prices each group and totals them.
pub fn report(
    records: &[FlowRecord],
    runner: &Runner,
    pricing: &JobPricing<'_>,
    started: Timestamp,
    ended: Timestamp,
) -> anyhow::Result<JobReport> {
    let mut lines = group(records);
    let rows = traffic_rows(&lines, records, runner, started);
    let priced = cost::compute_each_observation(&CostInput {
        rows: &rows,
        period: Period { since: started, until: ended.max(started) },
        book: pricing.book,
        topology: pricing.topology,
        by: GroupBy::Class,
        free_allowances: false,
    })?;
    let month_factor =
        Decimal::from(pricing.runs_per_day) * Decimal::from(HOURS_PER_MONTH) / Decimal::from(24);
    let mut bytes_by_class = BTreeMap::new();
    let mut cost_by_class: BTreeMap<Class, Decimal> = BTreeMap::new();
    for (t, costs) in priced.transfers.iter().zip(&priced.transfer_costs) {
        let line = &mut lines[t.row];
        let cost: Decimal = costs.values().copied().sum();
        line.cost_per_run += cost;
        // A line's class is its outbound class when it sent anything (what the bill charges).
        if t.direction == Direction::Out || line.bytes_out == 0 {
            line.class = t.classified.class;
            line.reason = t.classified.reason.clone();
        }
        line.label = t.classified.remote_label.clone();
        line.service = t.classified.service.clone();
        line.ours = t.classified.remote_ours;
        *bytes_by_class.entry(t.classified.class).or_insert(0u64) += t.bytes;
        *cost_by_class.entry(t.classified.class).or_default() += cost;
    }
    for line in &mut lines {
        line.cost_per_month = line.cost_per_run * month_factor;
    }
    lines.sort_by(|a, b| {
        (b.cost_per_run, b.bytes_out + b.bytes_in)
            .cmp(&(a.cost_per_run, a.bytes_out + a.bytes_in))
            .then_with(|| (a.address, a.port).cmp(&(b.address, b.port)))
    });
    let totals = Totals {
        destinations: lines.len(),
        connections: lines.iter().map(|l| l.connections).sum(),
        bytes_out: lines.iter().map(|l| l.bytes_out).sum(),
        bytes_in: lines.iter().map(|l| l.bytes_in).sum(),
        cost_per_run: lines.iter().map(|l| l.cost_per_run).sum(),
        cost_per_month: lines.iter().map(|l| l.cost_per_month).sum(),
    };
    Ok(JobReport {
        runner: runner.clone(),
        currency: priced.currency.clone(),
        runs_per_day: pricing.runs_per_day,
        started,
        ended,
        lines,
        totals,
        unpriced: priced.unpriced,
        bytes_by_class,
        cost_by_class,
    })
}

/// Who the record's socket talked to, as a line's key: outbound traffic by the peer's address and
/// port, inbound by the peer's address and our listening port (its own port is ephemeral).
fn key(r: &FlowRecord) -> (IpAddr, u16, Proto, Way) {
    let ip = r.remote.ip.to_canonical();
    match r.initiator {
        Initiator::Remote => (ip, r.local.port, r.proto, Way::Inbound),
        Initiator::Local | Initiator::Unknown => (ip, r.remote.port, r.proto, Way::Outbound),
    }
}

fn group(records: &[FlowRecord]) -> Vec<Line> {
    let mut by_key: BTreeMap<(IpAddr, u16, Proto, Way), Line> = BTreeMap::new();
    for r in records {
        let (address, port, proto, way) = key(r);
        let line = by_key.entry((address, port, proto, way)).or_insert_with(|| Line {
            address,
            port,
            proto,
            way,
            processes: Vec::new(),
            connections: 0,
            bytes_out: 0,
            bytes_in: 0,
            class: if address.is_loopback() { Class::SameNode } else { Class::Unknown },
            reason: if address.is_loopback() {
                "loopback: never leaves this host".into()
            } else {
                "no bytes were priced".into()
            },
            label: address.to_string(),
            service: None,
            same_host: address.is_loopback(),
            ours: false,
            cost_per_run: Decimal::ZERO,
            cost_per_month: Decimal::ZERO,
        });
        line.bytes_out += r.bytes_out;
        line.bytes_in += r.bytes_in;
        // A UDP socket has no open: count it once, when first seen.
        line.connections += match r.proto {
            Proto::Tcp => r.connections_opened,
            _ => u32::from(r.connections_closed > 0 || r.connections_opened > 0),
        };
        if let Some(p) = &r.local.process
            && !line.processes.contains(p)
        {
            line.processes.push(p.clone());
        }
    }
    let mut lines: Vec<Line> = by_key.into_values().collect();
    for l in &mut lines {
        l.processes.sort();
    }
    lines
}

/// One traffic row per line, from this host at the runner's place; loopback lines are not priced
/// (never billed, and the classifier would call an unplaced private address `unknown`).
fn traffic_rows(
    lines: &[Line],
    records: &[FlowRecord],
    runner: &Runner,
    started: Timestamp,
) -> Vec<TrafficRow> {
    let local_ip = records.iter().map(|r| r.local.ip.to_canonical()).find(|ip| !ip.is_loopback());
    let local = Party {
        ip: local_ip,
        node: Some(runner.host.clone()),
        zone: runner.zone.clone(),
        region: runner.region.clone(),
        ..Party::default()
    };
    lines
        .iter()
        .map(|l| TrafficRow {
            month: started.floor_month(),
            in_period: true,
            node: runner.host.clone(),
            local: local.clone(),
            remote: Party { ip: Some(l.address), ..Party::default() },
            bytes_out: if l.same_host { 0 } else { l.bytes_out },
            bytes_in: if l.same_host { 0 } else { l.bytes_in },
        })
        .collect()
}

impl JobReport {
    /// What the policy reads: external destinations (not loopback, not our own network), the run's
    /// cost and its bytes by class.
    pub fn usage(&self) -> Usage {
        let destinations = self
            .lines
            .iter()
            .filter(|l| !l.same_host && !l.ours)
            .map(|l| Destination {
                ip: l.address,
                port: Some(l.port),
                service: l.service.clone(),
                label: format!("{} ({}:{}/{})", l.label, l.address, l.port, l.proto),
                class: l.class,
                bytes_out: l.bytes_out,
                bytes_in: l.bytes_in,
            })
            .collect();
        Usage {
            span: policy::Span::Run { runs_per_day: self.runs_per_day },
            destinations,
            cost: self.totals.cost_per_run,
            cost_by: self.cost_by_class.iter().map(|(c, v)| (ScopeKey::Class(*c), *v)).collect(),
            bytes_by_class: self.bytes_by_class.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
