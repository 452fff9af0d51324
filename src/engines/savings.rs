//! Savings: deterministic recommendations computed from a cost report. Each names what to change,
//! shows the evidence (bytes, who sends them, what they cost now) and the monthly saving, which is
//! the cost of exactly the legs the change removes, scaled from the period to a 730-hour month.

use super::classify::{Class, Direction};
use super::cost::CostReport;
use super::pricing::Category;
use crate::model::human_bytes;
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Serialize)]
pub struct Recommendation {
    /// `gateway-endpoint`, `topology-aware-routing`, `cross-region-replica`, `private-endpoint`
    pub kind: &'static str,
    pub title: String,
    pub action: String,
    pub evidence: Vec<String>,
    pub bytes: u64,
    pub period_saving: Decimal,
    pub monthly_saving: Decimal,
}

#[derive(Default)]
struct Group {
    bytes: u64,
    /// What all of the group's traffic costs; `saving` is the part the change removes.
    cost: Decimal,
    saving: Decimal,
    by_party: BTreeMap<String, (u64, Decimal)>,
}

impl Group {
    fn add(&mut self, party: &str, bytes: u64, saving: Decimal) {
        self.add_part(party, bytes, saving, saving);
    }
    fn add_part(&mut self, party: &str, bytes: u64, cost: Decimal, saving: Decimal) {
        self.bytes += bytes;
        self.cost += cost;
        self.saving += saving;
        let e = self.by_party.entry(party.to_string()).or_default();
        e.0 += bytes;
        e.1 += saving;
    }
    fn top(&self, currency: &str, n: usize) -> Vec<String> {
        let mut v: Vec<_> = self.by_party.iter().collect();
        v.sort_by(|a, b| b.1.1.cmp(&a.1.1).then(b.1.0.cmp(&a.1.0)).then(a.0.cmp(b.0)));
        v.into_iter()
            .take(n)
            .map(|(k, (b, c))| format!("{k}: {} costing {} {currency}", human_bytes(*b), c.round_dp(2)))
            .collect()
    }
}

pub fn recommend(report: &CostReport) -> Vec<Recommendation> {
    let cur = report.currency.as_str();
    let mut nat_to_service: BTreeMap<(String, String, String), Group> = BTreeMap::new();
    let mut cross_zone: BTreeMap<(String, String), Group> = BTreeMap::new();
    let mut cross_region: BTreeMap<(String, String, String, String), Group> = BTreeMap::new();
    let mut public_service: BTreeMap<String, Group> = BTreeMap::new();
    // Zones each workload has been seen in: routing can only keep traffic in-zone where the server
    // has endpoints in the client's zone.
    let mut zones_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for t in &report.transfers {
        if let Some(z) = &t.local().zone {
            zones_of.entry(t.local().workload_label()).or_default().insert(z.clone());
        }
    }
    for (t, costs) in report.transfers.iter().zip(&report.transfer_costs) {
        if !t.in_period {
            continue;
        }
        let c = &t.classified;
        let cost_of = |cats: &[Category]| -> Decimal { cats.iter().filter_map(|k| costs.get(k)).sum() };
        let local = t.local().workload_label();
        match c.class {
            Class::NatCloudService => {
                if let Some(svc) = c.service.as_ref().filter(|s| s.gateway_endpoint_service().is_some()) {
                    let key = (
                        c.vpc.clone().unwrap_or_else(|| "(vpc)".into()),
                        svc.label(),
                        c.nat.clone().unwrap_or_default(),
                    );
                    // The NAT processing and the hop to the NAT disappear; S3/DynamoDB transfer in-region is free.
                    let saving = cost_of(&[Category::NatProcessing, Category::CrossZone]);
                    nat_to_service.entry(key).or_default().add(&local, t.bytes, saving);
                }
            }
            Class::CrossZone => {
                let server = if t.direction == Direction::Out { &t.receiver } else { &t.sender };
                let client = if t.direction == Direction::Out { &t.sender } else { &t.receiver };
                let key = (client.clone(), server.clone());
                let (a, b) = if key.0 <= key.1 { key.clone() } else { (key.1.clone(), key.0.clone()) };
                // Routing can keep this transfer in-zone only if the other side also runs in this
                // pod's zone; the rest needs replicas or co-location, and is not claimed.
                let cost = cost_of(&[Category::CrossZone]);
                let avoidable = t
                    .local()
                    .zone
                    .as_ref()
                    .is_some_and(|z| zones_of.get(&c.remote_label).is_some_and(|zs| zs.contains(z)));
                cross_zone.entry((a, b)).or_default().add_part(
                    &t.node,
                    t.bytes,
                    cost,
                    if avoidable { cost } else { Decimal::ZERO },
                );
            }
            Class::CrossRegion => {
                if let Some((src, dst)) = &c.regions {
                    let key = (t.receiver.clone(), t.sender.clone(), dst.clone(), src.clone());
                    cross_region.entry(key).or_default().add(
                        &local,
                        t.bytes,
                        cost_of(&[Category::InterRegion, Category::VpcPeeringInterRegion]),
                    );
                }
            }
            Class::Internet | Class::NatInternet => {
                if let Some(svc) = &c.service {
                    let saving = cost_of(&[
                        Category::PublicIpSameRegion,
                        Category::InternetEgress,
                        Category::NatProcessing,
                    ]);
                    public_service.entry(svc.label()).or_default().add(&local, t.bytes, saving);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    let monthly = |d: Decimal| report.monthly(d);
    for ((vpc, svc, nat), g) in nat_to_service {
        if g.saving <= Decimal::ZERO {
            continue;
        }
        let service =
            svc.split(':').nth(1).and_then(|s| s.split(' ').next()).unwrap_or("S3").to_ascii_lowercase();
        let mut evidence = vec![format!(
            "{} to {svc} went through NAT gateway {nat}, costing {} {cur} of NAT processing and NAT hops in the period",
            human_bytes(g.bytes),
            g.saving.round_dp(2)
        )];
        evidence.extend(g.top(cur, 3));
        out.push(Recommendation {
            kind: "gateway-endpoint",
            title: format!("Add a {service} gateway endpoint to {vpc}"),
            action: format!(
                "Create a gateway VPC endpoint for {service} in {vpc} and add it to the route tables of the private subnets: {svc} traffic then bypasses the NAT gateway, and gateway endpoints are free."
            ),
            evidence,
            bytes: g.bytes,
            period_saving: g.saving,
            monthly_saving: monthly(g.saving),
        });
    }
    let mut pairs: Vec<_> = cross_zone.into_iter().filter(|(_, g)| g.cost > Decimal::ZERO).collect();
    pairs.sort_by(|a, b| b.1.saving.cmp(&a.1.saving).then(a.0.cmp(&b.0)));
    for ((a, b), g) in pairs.into_iter().take(5) {
        // Routing can keep traffic in-zone only where both sides run in the same zones.
        let za = zones_of.get(&a).cloned().unwrap_or_default();
        let zb = zones_of.get(&b).cloned().unwrap_or_default();
        let shared: Vec<String> = za.intersection(&zb).cloned().collect();
        let (action, saving) = if shared.is_empty() {
            (
                format!(
                    "{a} and {b} never share a zone: co-locate them (pod affinity) or add replicas of the server in the client's zones."
                ),
                // Routing alone saves nothing here; co-location would remove all of it.
                g.cost,
            )
        } else {
            (
                format!(
                    "Enable topology-aware routing (service.kubernetes.io/topology-mode: Auto, or trafficDistribution: PreferClose) on the service between {a} and {b}: both run in {}.",
                    shared.join(", ")
                ),
                g.saving,
            )
        };
        if saving <= Decimal::ZERO {
            continue;
        }
        out.push(Recommendation {
            kind: "topology-aware-routing",
            title: format!("Keep {a} <-> {b} in-zone"),
            action,
            evidence: vec![
                format!(
                    "{} crossed zones between {a} and {b} in the period, costing {} {cur} (charged on both sides)",
                    human_bytes(g.bytes),
                    g.cost.round_dp(2)
                ),
                format!(
                    "{} {cur} of it left a pod whose peer also runs in the pod's own zone: that is the saving claimed",
                    g.saving.round_dp(2)
                ),
            ],
            bytes: g.bytes,
            period_saving: saving,
            monthly_saving: monthly(saving),
        });
    }
    let mut reads: Vec<_> = cross_region.into_iter().filter(|(_, g)| g.saving > Decimal::ZERO).collect();
    reads.sort_by(|a, b| b.1.saving.cmp(&a.1.saving).then(a.0.cmp(&b.0)));
    for ((reader, source, reader_region, source_region), g) in reads.into_iter().take(5) {
        out.push(Recommendation {
            kind: "cross-region-replica",
            title: format!("Serve {reader}'s reads of {source} from {reader_region}"),
            action: format!(
                "{reader} in {reader_region} reads from {source} in {source_region}: a read replica or cache in {reader_region} removes the inter-region transfer."
            ),
            evidence: vec![format!(
                "{} moved {source_region} -> {reader_region} in the period, costing {} {cur}",
                human_bytes(g.bytes),
                g.saving.round_dp(2)
            )],
            bytes: g.bytes,
            period_saving: g.saving,
            monthly_saving: monthly(g.saving),
        });
    }
    for (svc, g) in public_service {
        if g.saving <= Decimal::ZERO {
            continue;
        }
        let mut evidence = vec![format!(
            "{} to {svc} left over public addresses in the period, costing {} {cur}",
            human_bytes(g.bytes),
            g.saving.round_dp(2)
        )];
        evidence.extend(g.top(cur, 3));
        out.push(Recommendation {
            kind: "private-endpoint",
            title: format!("Reach {svc} privately"),
            action: format!("Use a VPC endpoint (gateway for S3/DynamoDB, interface/PrivateLink otherwise) or private addressing for {svc} instead of its public addresses."),
            evidence,
            bytes: g.bytes,
            period_saving: g.saving,
            monthly_saving: monthly(g.saving),
        });
    }
    out.sort_by(|a, b| b.monthly_saving.cmp(&a.monthly_saving).then(a.title.cmp(&b.title)));
    out
}
