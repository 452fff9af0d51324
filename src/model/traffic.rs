//! Traffic summed over a month of hourly rollups: what the cost engine and the graph engine read.
//! One row is one (local party, remote party) pair on one node in one calendar month, split into the
//! part before the requested period (it still counts toward monthly tiers) and the part inside it.

use super::Timestamp;
use serde::Serialize;
use std::net::IpAddr;

/// One side of a traffic row: what is known of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Party {
    pub ip: Option<IpAddr>,
    pub process: Option<String>,
    pub pod: Option<String>,
    pub namespace: Option<String>,
    pub workload_kind: Option<String>,
    pub workload_name: Option<String>,
    pub service: Option<String>,
    pub node: Option<String>,
    pub zone: Option<String>,
    pub region: Option<String>,
}

impl Party {
    /// `namespace/Kind/name`, else the pod, the process or the address: the name a person would use.
    pub fn workload_label(&self) -> String {
        match (&self.namespace, &self.workload_kind, &self.workload_name) {
            (Some(ns), Some(k), Some(n)) => format!("{ns}/{k}/{n}"),
            (Some(ns), None, Some(n)) => format!("{ns}/{n}"),
            _ => match (&self.pod, &self.process, self.ip) {
                (Some(p), _, _) => match &self.namespace {
                    Some(ns) => format!("{ns}/pod/{p}"),
                    None => p.clone(),
                },
                (None, Some(c), _) => format!("process/{c}"),
                (None, None, Some(ip)) => ip.to_string(),
                _ => "(unknown)".into(),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrafficRow {
    /// First microsecond of the calendar month (UTC) this traffic falls in.
    pub month: Timestamp,
    /// True for traffic inside the requested period, false for earlier traffic of the same month.
    pub in_period: bool,
    /// The node that observed it.
    pub node: String,
    pub local: Party,
    pub remote: Party,
    /// local -> remote
    pub bytes_out: u64,
    /// remote -> local
    pub bytes_in: u64,
}

impl Party {
    /// What a flow record's endpoint says about its party.
    pub fn from_endpoint(e: &super::Endpoint) -> Party {
        Party {
            // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d; they are IPv4 addresses.
            ip: Some(e.ip.to_canonical()),
            process: e.process.clone(),
            pod: e.pod.clone(),
            namespace: e.namespace.clone(),
            workload_kind: e.workload_kind.clone(),
            workload_name: e.workload_name.clone(),
            service: e.service.clone(),
            node: e.node.clone(),
            zone: e.zone.clone(),
            region: e.region.clone(),
        }
    }
}

/// Sums flow records into traffic rows (one per node and party pair), all inside the period: the
/// live view's input, where records arrive without going through the workspace.
pub fn traffic_rows(records: &[super::FlowRecord], month: Timestamp) -> Vec<TrafficRow> {
    let mut acc: std::collections::BTreeMap<(String, Party, Party), (u64, u64)> = Default::default();
    for r in records {
        let mut local = Party::from_endpoint(&r.local);
        local.node = Some(r.node.clone());
        let e = acc.entry((r.node.clone(), local, Party::from_endpoint(&r.remote))).or_default();
        e.0 += r.bytes_out;
        e.1 += r.bytes_in;
    }
    acc.into_iter()
        .map(|((node, local, remote), (bytes_out, bytes_in))| TrafficRow {
            month,
            in_period: true,
            node,
            local,
            remote,
            bytes_out,
            bytes_in,
        })
        .collect()
}

/// Traffic of one (node, local party, remote party) in one hour of the rollups: what the anomaly
/// series are built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HourlyTraffic {
    pub hour: Timestamp,
    pub node: String,
    pub local: Party,
    pub remote: Party,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub connections: u64,
}
