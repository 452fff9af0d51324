//! Reconciliation: egressor's bill for a month against the cloud's own (an AWS Cost and Usage
//! Report extract), per usage type and, where the report has resource ids, per resource.
//!
//! Each meter of the cost engine is one usage type of the bill (`USE1-DataTransfer-Regional-Bytes`
//! is cross-zone transfer charged in us-east-1, `USE1-USW2-AWS-Out-Bytes` inter-region transfer
//! from us-east-1 to us-west-2...). The share of the bill egressor explains is, summed over usage
//! types, the smaller of the two costs, over what was billed. Differences beyond the tolerance
//! are listed with their likely cause: a resource billed with no flows observed at it (an ENI
//! without flow logs, a node without an agent), a region without traffic, or the same usage at a
//! different price (a price table out of date, or a negotiated rate).

use super::cost::{CostReport, HourlyLine, Meter};
use super::pricing::{Category, HourlyKind};
use crate::model::human_bytes;
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// The version of `egressor reconcile --output json` (docs/schemas/reconcile.v1.json).
pub const RECONCILE_SCHEMA: &str = "egressor.reconcile/v1";

/// AWS's usage-type region codes (the prefix of `USE1-DataTransfer-Out-Bytes`), from the usage
/// types AWS publishes in its price list API (`usagetype` attribute) and in Cost Explorer.
const REGION_CODES: &[(&str, &str)] = &[
    ("us-east-1", "USE1"),
    ("us-east-2", "USE2"),
    ("us-west-1", "USW1"),
    ("us-west-2", "USW2"),
    ("ca-central-1", "CAN1"),
    ("eu-west-1", "EU"),
    ("eu-west-2", "EUW2"),
    ("eu-west-3", "EUW3"),
    ("eu-central-1", "EUC1"),
    ("eu-north-1", "EUN1"),
    ("eu-south-1", "EUS1"),
    ("ap-northeast-1", "APN1"),
    ("ap-northeast-2", "APN2"),
    ("ap-northeast-3", "APN3"),
    ("ap-southeast-1", "APS1"),
    ("ap-southeast-2", "APS2"),
    ("ap-south-1", "APS3"),
    ("ap-east-1", "APE1"),
    ("sa-east-1", "SAE1"),
    ("me-south-1", "MES1"),
    ("af-south-1", "AFS1"),
];

pub fn region_code(region: &str) -> Option<&'static str> {
    REGION_CODES.iter().find(|(r, _)| *r == region).map(|(_, c)| *c)
}

/// The usage type a meter's charges appear under on the AWS bill; `None` for free categories,
/// which have no line.
pub fn meter_usage_type(m: &Meter) -> Option<String> {
    let r = region_code(&m.region)?;
    Some(match m.category {
        Category::CrossZone
        | Category::VpcPeeringCrossZone
        | Category::PublicIpSameRegion
        | Category::LoadBalancerCrossZone => format!("{r}-DataTransfer-Regional-Bytes"),
        Category::InterRegion | Category::VpcPeeringInterRegion => {
            format!("{r}-{}-AWS-Out-Bytes", region_code(m.dest.as_deref()?)?)
        }
        Category::InternetEgress => format!("{r}-DataTransfer-Out-Bytes"),
        Category::NatProcessing => format!("{r}-NatGateway-Bytes"),
        Category::TransitGateway => format!("{r}-TransitGateway-Bytes"),
        Category::Privatelink => format!("{r}-VpcEndpoint-Bytes"),
        Category::GwlbEndpoint => format!("{r}-GWLBE-Bytes"),
        Category::SameZone | Category::VpcPeeringSameZone | Category::GatewayEndpoint | Category::Ingress => {
            return None;
        }
    })
}

pub fn hourly_usage_type(h: &HourlyLine) -> Option<String> {
    let r = region_code(&h.region)?;
    Some(match h.kind {
        HourlyKind::NatGatewayHour => format!("{r}-NatGateway-Hours"),
        HourlyKind::TransitGatewayAttachmentHour => format!("{r}-TransitGateway-Hours"),
        HourlyKind::EndpointHour => format!("{r}-VpcEndpoint-Hours"),
        HourlyKind::PublicIpv4Hour => format!("{r}-PublicIPv4:InUseAddress"),
        HourlyKind::NatVmHour => return None,
    })
}

/// Bill usage types egressor models: data transfer by the byte, and the hourly charges of the
/// gateways and endpoints it prices. A legacy us-east-1 type without a region prefix
/// (`DataTransfer-Out-Bytes`) is read as `USE1-...`.
pub fn normalise_usage_type(t: &str) -> Option<String> {
    let t = if t.starts_with("DataTransfer-") { format!("USE1-{t}") } else { t.to_string() };
    let modelled = t.ends_with("-Bytes")
        || t.ends_with("-NatGateway-Hours")
        || t.ends_with("-TransitGateway-Hours")
        || t.ends_with("-VpcEndpoint-Hours")
        || t.ends_with("-PublicIPv4:InUseAddress");
    modelled.then_some(t)
}

/// `arn:aws:ec2:us-east-1:111122223333:natgateway/nat-0abc` -> `nat-0abc`; ids pass unchanged.
pub fn resource_name(id: &str) -> &str {
    if id.starts_with("arn:") { id.rsplit(['/', ':']).next().unwrap_or(id) } else { id }
}

/// One line item of the bill, as reconcile needs it.
#[derive(Debug, Clone)]
pub struct Billed {
    pub usage_type: String,
    pub amount: Decimal,
    pub cost: Decimal,
    pub resource: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Match,
    /// The bill is higher than egressor's figure.
    Under,
    /// Egressor's figure is higher than the bill.
    Over,
}

#[derive(Debug, Clone, Serialize)]
pub struct UsageRow {
    pub usage_type: String,
    pub billed_amount: Decimal,
    pub billed_cost: Decimal,
    pub egressor_amount: Decimal,
    pub egressor_cost: Decimal,
    pub explained_cost: Decimal,
    pub status: Status,
    pub cause: Option<String>,
}

/// A billed resource with no traffic observed at it.
#[derive(Debug, Clone, Serialize)]
pub struct Gap {
    pub resource: String,
    pub usage_type: String,
    pub billed_amount: Decimal,
    pub billed_cost: Decimal,
    pub cause: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Reconciliation {
    /// [`RECONCILE_SCHEMA`].
    pub schema_version: &'static str,
    /// The same, under the key v1 first printed it as (kept until v2).
    pub schema: &'static str,
    pub month: String,
    pub rows: Vec<UsageRow>,
    pub gaps: Vec<Gap>,
    pub billed_cost: Decimal,
    pub egressor_cost: Decimal,
    pub explained_cost: Decimal,
    /// Explained over billed, in percent (100 when nothing was billed).
    pub explained_percent: Decimal,
    /// Bill lines that are not data transfer (instances, storage...): left out.
    pub other_lines: u64,
}

/// What egressor says one usage type adds up to.
#[derive(Default)]
struct Ours {
    amount: Decimal,
    cost: Decimal,
    /// Unit prices of the meters behind it, for the price-mismatch cause.
    prices: BTreeSet<String>,
}

/// `report` is the month's bill from the cost engine grouped by node, so that its lines name the
/// observers (nodes, instances, ENIs) that saw traffic.
pub fn reconcile(month: &str, bill: &[Billed], other_lines: u64, report: &CostReport) -> Reconciliation {
    let ours = egressor_side(report);
    let observers: BTreeSet<&str> = report.lines.iter().map(|l| l.key.as_str()).collect();
    // Hourly lines name their resource as "nat gateway nat-0abc" or "endpoint vpce-1 (2 zones)":
    // any word of them may be the id the bill uses.
    let gateways: BTreeSet<String> = report
        .hourly
        .iter()
        .flat_map(|h| h.resource.split_whitespace().map(|w| w.trim_matches(['(', ')']).to_string()))
        .collect();
    let mut billed: BTreeMap<&str, (Decimal, Decimal)> = BTreeMap::new();
    for b in bill {
        let e = billed.entry(b.usage_type.as_str()).or_default();
        e.0 += b.amount;
        e.1 += b.cost;
    }
    let types: BTreeSet<&str> = billed.keys().copied().chain(ours.keys().map(String::as_str)).collect();
    let mut rows = Vec::new();
    for t in types {
        let (b_amount, b_cost) = billed.get(t).copied().unwrap_or_default();
        let o = ours.get(t);
        let (o_amount, o_cost) = o.map(|o| (o.amount, o.cost)).unwrap_or_default();
        let diff = b_cost - o_cost;
        let status = if diff.abs() <= tolerance(b_cost) {
            Status::Match
        } else if diff > Decimal::ZERO {
            Status::Under
        } else {
            Status::Over
        };
        let cause = (status != Status::Match).then(|| cause(status, b_amount, b_cost, o_amount, o));
        rows.push(UsageRow {
            usage_type: t.to_string(),
            billed_amount: b_amount,
            billed_cost: b_cost,
            egressor_amount: o_amount.round_dp(6),
            egressor_cost: o_cost.round_dp(6),
            explained_cost: b_cost.min(o_cost).max(Decimal::ZERO),
            status,
            cause,
        });
    }
    let gaps = unobserved_resources(bill, &observers, &gateways);
    let billed_cost: Decimal = rows.iter().map(|r| r.billed_cost).sum();
    let explained_cost: Decimal = rows.iter().map(|r| r.explained_cost).sum();
    Reconciliation {
        schema_version: RECONCILE_SCHEMA,
        schema: RECONCILE_SCHEMA,
        month: month.to_string(),
        egressor_cost: rows.iter().map(|r| r.egressor_cost).sum(),
        explained_percent: if billed_cost.is_zero() {
            Decimal::from(100)
        } else {
            (explained_cost * Decimal::from(100) / billed_cost).round_dp(1)
        },
        rows,
        gaps,
        billed_cost,
        explained_cost,
        other_lines,
    }
}

/// A cent, or 0.1% of the line: rounding in the bill's own usage amounts stays inside it.
fn tolerance(billed: Decimal) -> Decimal {
    (billed.abs() * Decimal::new(1, 3)).max(Decimal::new(1, 2))
}

fn egressor_side(report: &CostReport) -> BTreeMap<String, Ours> {
    let mut ours: BTreeMap<String, Ours> = BTreeMap::new();
    for m in &report.meters {
        if let Some(t) = meter_usage_type(m) {
            let o = ours.entry(t).or_default();
            o.amount += m.units;
            o.cost += m.cost;
            for s in &m.slices {
                o.prices.insert(format!("{} ({}, as of {})", s.unit_price, m.price_origin, m.as_of));
            }
        }
    }
    for h in &report.hourly {
        if let Some(t) = hourly_usage_type(h) {
            let o = ours.entry(t).or_default();
            o.amount += h.quantity * h.hours;
            o.cost += h.cost;
            o.prices.insert(format!("{}/h ({})", h.unit_price, h.price_origin));
        }
    }
    ours
}

fn cause(status: Status, b_amount: Decimal, b_cost: Decimal, o_amount: Decimal, o: Option<&Ours>) -> String {
    let same_usage = !b_amount.is_zero() && ((b_amount - o_amount).abs() / b_amount) < Decimal::new(1, 2);
    if same_usage {
        let billed_price = (b_cost / b_amount).round_dp(6);
        let prices = o.map(|o| o.prices.iter().cloned().collect::<Vec<_>>().join(", ")).unwrap_or_default();
        return format!(
            "same usage at a different price: billed {billed_price} per unit, egressor used {prices}; \
             the price table may be out of date, or the account has a negotiated rate (add an override \
             with `--pricing FILE`)"
        );
    }
    match status {
        Status::Under if o_amount.is_zero() => {
            "egressor saw none of this traffic: no flows from this region \
            or of this kind in the workspace (no agent or flow logs there, or no topology for its VPC)"
                .into()
        }
        Status::Under => format!(
            "egressor saw {} of the {} billed: some senders were not observed (a node without an agent, an \
             ENI without flow logs), or the topology does not place some addresses",
            o_amount.round_dp(3),
            b_amount.round_dp(3)
        ),
        _ => "egressor counts more than was billed: flows in the workspace from another account or \
              period, or transfer the topology classifies as costlier than it is"
            .into(),
    }
}

/// Resources the bill charges data transfer to that no flow was observed at.
fn unobserved_resources(
    bill: &[Billed],
    observers: &BTreeSet<&str>,
    gateways: &BTreeSet<String>,
) -> Vec<Gap> {
    let mut by: BTreeMap<(String, String), (Decimal, Decimal)> = BTreeMap::new();
    for b in bill {
        let Some(r) = &b.resource else { continue };
        let name = resource_name(r);
        if observers.contains(name) || gateways.contains(name) || b.cost.is_zero() {
            continue;
        }
        let e = by.entry((name.to_string(), b.usage_type.clone())).or_default();
        e.0 += b.amount;
        e.1 += b.cost;
    }
    by.into_iter()
        .map(|((resource, usage_type), (amount, cost))| Gap {
            cause: format!(
                "no flows observed at {resource}: {} of {usage_type} billed to it is outside what egressor \
                 saw (enable flow logs on this interface, or run an agent on this node)",
                human_bytes((amount * Decimal::from(1u64 << 30)).round().try_into().unwrap_or(u64::MAX))
            ),
            resource,
            usage_type,
            billed_amount: amount,
            billed_cost: cost,
        })
        .collect()
}
