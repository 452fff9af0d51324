//! Cost: traffic rows -> classified transfers -> priced legs -> meters (the bill's line items, with
//! monthly tiers and free allowances) -> cost lines grouped the way the user asked.
//!
//! Money is `Decimal` end to end and every loop runs over sorted keys, so identical inputs give
//! byte-identical output. How it works, in the order it happens:
//!
//! 1. Each row's `bytes_out` is a transfer from the local party; its `bytes_in` is one too, unless the
//!    remote party is on a node that reported the same traffic as its own `bytes_out` (in-cluster
//!    traffic is seen from both ends and must be counted once).
//! 2. The classifier gives each transfer a class and its legs (NAT processing, NAT hop, egress...).
//! 3. Each leg is priced by the price book; its payer decides who is charged: `both` charges the
//!    sender and the receiver the full rate (AWS cross-zone), but only sides that are on our bill.
//! 4. Charges of one price entry in one month and tier scope form a meter. Usage of the month before
//!    the period is laid on the tier ladder first (it moves the tier position and uses free
//!    allowance, but is not part of this bill), then the period's usage. Free units come off the
//!    start of the month's usage in their pool.
//! 5. A meter's cost is shared among its charges in proportion to their bytes; the last share takes
//!    the remainder, so lines add up to the meter exactly.

use super::classify::{Class, Classified, Classifier, Direction, Sides};
use super::pricing::{Category, HourlyKind, Payer, PriceBook, Provider, Rate, TierAccumulation, TierSlice};
use super::topology::Topology;
use crate::model::{Party, Timestamp, TrafficRow};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The JSON schema of `egressor cost --output json` (documented in `docs/cost.md`).
pub const COST_SCHEMA: &str = "egressor.cost/v1";

/// Decimal places money is kept at inside the engine: shares and meter costs are rounded here so
/// that sums of many of them stay exact (a 96-bit decimal would otherwise round long sums).
pub const MONEY_DP: u32 = 10;

/// Hours in the month used for projections: AWS's 730-hour month.
pub const HOURS_PER_MONTH: u32 = 730;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Namespace,
    Workload,
    Service,
    Edge,
    Class,
    Node,
    Zone,
}

impl GroupBy {
    pub const ALL: &'static [GroupBy] = &[
        GroupBy::Namespace,
        GroupBy::Workload,
        GroupBy::Service,
        GroupBy::Edge,
        GroupBy::Class,
        GroupBy::Node,
        GroupBy::Zone,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Namespace => "namespace",
            GroupBy::Workload => "workload",
            GroupBy::Service => "service",
            GroupBy::Edge => "edge",
            GroupBy::Class => "class",
            GroupBy::Node => "node",
            GroupBy::Zone => "zone",
        }
    }
    pub fn parse(s: &str) -> Option<GroupBy> {
        GroupBy::ALL.iter().copied().find(|g| g.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Period {
    pub since: Timestamp,
    pub until: Timestamp,
}

impl Period {
    /// Length in hours, exact.
    pub fn hours(&self) -> Decimal {
        Decimal::from(self.until.micros() - self.since.micros()) / Decimal::from(Timestamp::MICROS_PER_HOUR)
    }
}

pub struct CostInput<'a> {
    pub rows: &'a [TrafficRow],
    pub period: Period,
    pub book: &'a PriceBook,
    pub topology: Option<&'a Topology>,
    pub by: GroupBy,
    /// False for live rates (`top`): a rate "now" is marginal, without the month's free allowance.
    pub free_allowances: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Sender,
    Receiver,
    /// The owner of a gateway the bytes pass through (NAT, endpoint, transit gateway).
    Owner,
}

/// One direction of one traffic row, classified.
#[derive(Debug, Clone, Serialize)]
pub struct Transfer {
    pub month: Timestamp,
    pub in_period: bool,
    pub node: String,
    pub direction: Direction,
    pub bytes: u64,
    pub sender: String,
    pub receiver: String,
    #[serde(flatten)]
    pub classified: Classified,
    #[serde(skip)]
    local: Party,
    #[serde(skip)]
    remote: Party,
}

impl Transfer {
    pub fn local(&self) -> &Party {
        &self.local
    }
    pub fn remote(&self) -> &Party {
        &self.remote
    }
}

/// One price entry's usage in one month and tier scope: a line of the cloud bill.
#[derive(Debug, Clone, Serialize)]
pub struct Meter {
    pub id: usize,
    pub category: Category,
    pub variant: Option<String>,
    /// The region whose price applies.
    pub region: String,
    pub dest: Option<String>,
    /// `YYYY-MM`
    pub month: String,
    pub unit: String,
    pub payer: Payer,
    /// `pricing/aws.toml:166`
    pub price_origin: String,
    pub price_source: String,
    pub as_of: String,
    /// Where on the monthly tier ladder this meter's period usage started, in units.
    pub tier_position: Decimal,
    /// Units of the same month before the period (they count toward tiers, not toward this bill).
    pub units_before: Decimal,
    pub units: Decimal,
    pub bytes: u64,
    pub free_allowance: Option<String>,
    pub free_units: Decimal,
    pub free_value: Decimal,
    pub slices: Vec<TierSlice>,
    pub cost: Decimal,
}

/// A meter's cost as shared out to one group.
#[derive(Debug, Clone, Serialize)]
pub struct LinePart {
    pub meter: usize,
    pub class: Class,
    pub side: Side,
    pub bytes: u64,
    pub cost: Decimal,
}

#[derive(Debug, Clone, Serialize)]
pub struct CostLine {
    pub key: String,
    /// Bytes of the period's transfers this group sent or received.
    pub bytes: u64,
    pub cost: Decimal,
    pub classes: BTreeMap<Class, ClassTotal>,
    pub parts: Vec<LinePart>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ClassTotal {
    pub bytes: u64,
    pub cost: Decimal,
}

#[derive(Debug, Clone, Serialize)]
pub struct HourlyLine {
    pub kind: HourlyKind,
    pub resource: String,
    pub region: String,
    pub quantity: Decimal,
    pub hours: Decimal,
    pub unit_price: Decimal,
    pub cost: Decimal,
    pub price_origin: String,
    pub price_source: String,
}

/// Bytes that could not be priced, and why: an unknown class or a category without a price.
#[derive(Debug, Clone, Serialize)]
pub struct Unpriced {
    pub reason: String,
    pub bytes: u64,
    pub transfers: u64,
    pub example: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    pub bytes: u64,
    pub transfer_cost: Decimal,
    pub hourly_cost: Decimal,
    pub cost: Decimal,
    pub unpriced_bytes: u64,
    pub projected_monthly: Decimal,
}

#[derive(Debug, Clone, Serialize)]
pub struct CostReport {
    pub schema: &'static str,
    pub provider: Provider,
    pub currency: String,
    pub tier_accumulation: TierAccumulation,
    pub topology: Option<String>,
    pub since: Timestamp,
    pub until: Timestamp,
    pub hours: Decimal,
    pub by: GroupBy,
    pub lines: Vec<CostLine>,
    pub by_class: BTreeMap<Class, ClassTotal>,
    pub hourly: Vec<HourlyLine>,
    pub unpriced: Vec<Unpriced>,
    pub meters: Vec<Meter>,
    pub totals: Totals,
    #[serde(skip)]
    pub transfers: Vec<Transfer>,
    /// Cost of each transfer (same index as `transfers`) by category of leg.
    #[serde(skip)]
    pub transfer_costs: Vec<BTreeMap<Category, Decimal>>,
}

impl CostReport {
    /// Scales a period amount to a 730-hour month.
    pub fn monthly(&self, amount: Decimal) -> Decimal {
        if self.hours.is_zero() {
            Decimal::ZERO
        } else {
            amount * Decimal::from(HOURS_PER_MONTH) / self.hours
        }
    }
}

/// A charge: some bytes of one transfer on one meter, charged to one party.
struct Charge {
    transfer: usize,
    sub: usize,
    side: Side,
    key: String,
    bytes: u64,
}

/// Usage of one rate entry in one region/destination within a ladder.
struct SubMeter {
    rate: Rate,
    region: String,
    dest: Option<String>,
    bytes_before: u64,
    bytes_in: u64,
    charges: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct LadderKey {
    month: Timestamp,
    category: Category,
    variant: Option<String>,
    /// The source region, or `*` when tiers accumulate globally.
    scope: String,
    /// The rate entry: different entries never share a tier ladder position computation by accident.
    origin: String,
}

fn origin_of(r: &Rate) -> String {
    format!("{}:{}", r.origin.file, r.origin.line)
}

fn month_label(t: Timestamp) -> String {
    t.to_datetime().format("%Y-%m").to_string()
}

fn party_key(by: GroupBy, p: &Party, node: &str, zone: Option<&str>) -> String {
    match by {
        GroupBy::Namespace => p.namespace.clone().unwrap_or_else(|| "(no namespace)".into()),
        GroupBy::Workload => p.workload_label(),
        GroupBy::Service => match (&p.namespace, &p.service) {
            (Some(ns), Some(s)) => format!("{ns}/{s}"),
            (None, Some(s)) => s.clone(),
            _ => "(no service)".into(),
        },
        GroupBy::Node => node.to_string(),
        GroupBy::Zone => zone.map(str::to_string).unwrap_or_else(|| "(unknown zone)".into()),
        GroupBy::Edge | GroupBy::Class => unreachable!("not a party key"),
    }
}

pub fn compute(input: &CostInput<'_>) -> anyhow::Result<CostReport> {
    let ranges = super::cloud_ranges::CloudRanges::shipped()?;
    let mut classifier = Classifier::new(input.topology, ranges);
    let provider = classifier.provider();
    let book = input.book;
    let accumulation = book.tier_accumulation(provider).unwrap_or(TierAccumulation::PerSourceRegion);
    let currency = book.currency(provider).unwrap_or("USD").to_string();
    let by = input.by;

    // 1. Transfers. A remote on a reporting node saw these bytes itself.
    let observed: BTreeSet<&str> = input.rows.iter().map(|r| r.node.as_str()).collect();
    let mut transfers = Vec::new();
    for row in input.rows {
        let remote_observed = row.remote.node.as_deref().is_some_and(|n| observed.contains(n));
        for (dir, bytes) in [(Direction::Out, row.bytes_out), (Direction::In, row.bytes_in)] {
            if bytes == 0 || (dir == Direction::In && remote_observed) {
                continue;
            }
            let classified = classifier.classify(&row.node, &row.local, &row.remote, dir);
            let local = row.local.workload_label();
            let (sender, receiver) = match dir {
                Direction::Out => (local, classified.remote_label.clone()),
                Direction::In => (classified.remote_label.clone(), local),
            };
            transfers.push(Transfer {
                month: row.month,
                in_period: row.in_period,
                node: row.node.clone(),
                direction: dir,
                bytes,
                sender,
                receiver,
                classified,
                local: row.local.clone(),
                remote: row.remote.clone(),
            });
        }
    }

    // 2-3. Charges on sub-meters, grouped into ladders.
    let mut ladders: BTreeMap<LadderKey, Vec<SubMeter>> = BTreeMap::new();
    let mut sub_index: HashMap<(LadderKey, String, Option<String>), usize> = HashMap::new();
    let mut sub_list: Vec<(LadderKey, usize)> = Vec::new();
    let mut charges: Vec<Charge> = Vec::new();
    let mut unpriced: BTreeMap<String, Unpriced> = BTreeMap::new();
    let mut lines: BTreeMap<String, CostLine> = BTreeMap::new();
    let mut by_class: BTreeMap<Class, ClassTotal> = BTreeMap::new();
    let mut total_bytes = 0u64;
    let mut unpriced_bytes = 0u64;

    let new_line = |key: &str| CostLine {
        key: key.to_string(),
        bytes: 0,
        cost: Decimal::ZERO,
        classes: BTreeMap::new(),
        parts: Vec::new(),
    };
    for (ti, t) in transfers.iter().enumerate() {
        let c = &t.classified;
        let local_zone = t.local.zone.as_deref();
        let local_key = |by| party_key(by, &t.local, &t.node, local_zone);
        let remote_node = t.remote.node.clone().unwrap_or_else(|| "(unknown node)".into());
        let remote_key = |by| party_key(by, &t.remote, &remote_node, t.remote.zone.as_deref());
        let (sender_is_local, receiver_is_local) =
            (t.direction == Direction::Out, t.direction == Direction::In);
        let key_for = |side: Side, sides: Sides| -> String {
            match by {
                GroupBy::Edge => format!("{} -> {}", t.sender, t.receiver),
                GroupBy::Class => c.class.as_str().to_string(),
                _ => {
                    let local = match side {
                        Side::Owner => true,
                        _ if sides == Sides::LocalAndGateway => true,
                        Side::Sender => sender_is_local,
                        Side::Receiver => receiver_is_local,
                    };
                    if local { local_key(by) } else { remote_key(by) }
                }
            }
        };
        let mut keys_touched = BTreeSet::new();
        keys_touched.insert(key_for(Side::Owner, Sides::LocalAndGateway));
        if t.in_period {
            total_bytes += t.bytes;
            by_class.entry(c.class).or_default().bytes += t.bytes;
        }
        let mut note_unpriced = |reason: String, example: String| {
            if !t.in_period {
                return;
            }
            let u = unpriced.entry(reason.clone()).or_insert(Unpriced {
                reason,
                bytes: 0,
                transfers: 0,
                example,
            });
            u.bytes += t.bytes;
            u.transfers += 1;
        };
        if c.class == Class::Unknown {
            if t.in_period {
                unpriced_bytes += t.bytes;
            }
            note_unpriced(
                "unknown class: one end could not be placed".into(),
                format!("{} -> {}: {}", t.sender, t.receiver, c.reason),
            );
        }
        // A user CIDR rule replaces the classifier's price for traffic to that range.
        let cidr = match (t.direction, t.remote.ip) {
            (Direction::Out, Some(ip)) => book.cidr_rule(provider, ip),
            _ => None,
        };
        let legs: Vec<(Rate, Option<String>, String, Sides)> = if let Some(rule) = cidr {
            let rate = Rate {
                provider,
                category: c.legs.last().map(|l| l.category).unwrap_or(Category::InternetEgress),
                variant: Some(format!("cidr {}", rule.net)),
                tiers: vec![super::pricing::Tier {
                    from_units: Decimal::ZERO,
                    to_units: None,
                    price: rule.price,
                }],
                payer: rule.payer,
                unit: rule.unit,
                currency: rule.currency.clone(),
                free: None,
                source: format!("{} ({})", rule.source, rule.reason),
                as_of: rule.as_of.clone(),
                origin: rule.origin.clone(),
            };
            let region = c.legs.first().map(|l| l.region.clone()).unwrap_or_default();
            vec![(rate, None, region, Sides::Parties)]
        } else {
            let mut v = Vec::new();
            for leg in &c.legs {
                match book.rate_variant(provider, &leg.region, leg.category, leg.variant, leg.dest.as_deref())
                {
                    Some(rate) => v.push((rate.clone(), leg.dest.clone(), leg.region.clone(), leg.sides)),
                    None => {
                        if t.in_period {
                            unpriced_bytes += t.bytes;
                        }
                        note_unpriced(
                            format!(
                                "no {provider} price for {} from {}{}",
                                leg.category,
                                leg.region,
                                leg.dest.as_ref().map(|d| format!(" to {d}")).unwrap_or_default()
                            ),
                            format!("{} -> {}", t.sender, t.receiver),
                        );
                    }
                }
            }
            v
        };
        for (rate, dest, region, sides) in legs {
            let remote_ours = c.remote_ours;
            let local_is_sender = t.direction == Direction::Out;
            let on_bill = |side: Side| -> bool {
                sides == Sides::LocalAndGateway
                    || side == Side::Owner
                    || match side {
                        Side::Sender => local_is_sender || remote_ours,
                        Side::Receiver => !local_is_sender || remote_ours,
                        Side::Owner => true,
                    }
            };
            let sides_charged: Vec<Side> = match rate.payer {
                Payer::Source => vec![Side::Sender],
                Payer::Destination => vec![Side::Receiver],
                Payer::Both => vec![Side::Sender, Side::Receiver],
                Payer::Owner => vec![Side::Owner],
            }
            .into_iter()
            .filter(|s| on_bill(*s))
            .collect();
            let scope = match accumulation {
                TierAccumulation::PerSourceRegion => region.clone(),
                TierAccumulation::Global => "*".into(),
            };
            let lk = LadderKey {
                month: t.month,
                category: rate.category,
                variant: rate.variant.clone(),
                scope,
                origin: origin_of(&rate),
            };
            let sk = (lk.clone(), region.clone(), dest.clone());
            let sub = *sub_index.entry(sk).or_insert_with(|| {
                let subs = ladders.entry(lk.clone()).or_default();
                subs.push(SubMeter {
                    rate: rate.clone(),
                    region: region.clone(),
                    dest: dest.clone(),
                    bytes_before: 0,
                    bytes_in: 0,
                    charges: Vec::new(),
                });
                sub_list.push((lk.clone(), subs.len() - 1));
                sub_list.len() - 1
            });
            let (lk, idx) = &sub_list[sub];
            let sm = &mut ladders.get_mut(lk).expect("ladder exists")[*idx];
            for side in sides_charged {
                if t.in_period {
                    sm.bytes_in += t.bytes;
                    let key = key_for(side, sides);
                    keys_touched.insert(key.clone());
                    sm.charges.push(charges.len());
                    charges.push(Charge { transfer: ti, sub, side, key, bytes: t.bytes });
                } else {
                    sm.bytes_before += t.bytes;
                }
            }
        }
        if t.in_period {
            for k in keys_touched {
                let line = lines.entry(k.clone()).or_insert_with(|| new_line(&k));
                line.bytes += t.bytes;
                line.classes.entry(c.class).or_default().bytes += t.bytes;
            }
        }
    }

    // 4. Lay usage on the ladders: all earlier usage first (it consumes free allowance first), then
    // the period's, in key order.
    let mut pools: BTreeMap<(Timestamp, String, String), Decimal> = BTreeMap::new();
    let pool_key = |month: Timestamp, rate: &Rate, region: &str| {
        rate.free.as_ref().filter(|_| input.free_allowances).map(|f| {
            let scope = match f.scope {
                super::pricing::AllowanceScope::Global => "*".to_string(),
                super::pricing::AllowanceScope::PerSourceRegion => region.to_string(),
            };
            ((month, f.name.clone(), scope), f.units)
        })
    };
    let mut position: BTreeMap<LadderKey, Decimal> = BTreeMap::new();
    for (lk, subs) in &ladders {
        for sm in subs {
            let units = sm.rate.units_for_bytes(sm.bytes_before);
            *position.entry(lk.clone()).or_default() += units;
            if let Some((pk, allowance)) = pool_key(lk.month, &sm.rate, &sm.region) {
                let left = pools.entry(pk).or_insert(allowance);
                *left -= units.min(*left);
            }
        }
    }
    let mut meters = Vec::new();
    let mut charge_cost = vec![Decimal::ZERO; charges.len()];
    let mut sub_meter_id = HashMap::new();
    for (lk, subs) in &ladders {
        let mut pos = position.get(lk).copied().unwrap_or_default();
        for (si, sm) in subs.iter().enumerate() {
            if sm.bytes_in == 0 {
                continue;
            }
            let units = sm.rate.units_for_bytes(sm.bytes_in);
            let slices = sm.rate.tier_slices(pos, units);
            let mut cost: Decimal = slices.iter().map(|s| s.cost).sum();
            let (mut free_units, mut free_value, mut free_name) = (Decimal::ZERO, Decimal::ZERO, None);
            if let Some((pk, allowance)) = pool_key(lk.month, &sm.rate, &sm.region) {
                free_name = Some(pk.1.clone());
                let left = pools.entry(pk).or_insert(allowance);
                free_units = units.min(*left);
                *left -= free_units;
                free_value = sm.rate.tier_slices(pos, free_units).iter().map(|s| s.cost).sum();
                cost -= free_value;
            }
            let cost = cost.round_dp(MONEY_DP);
            let id = meters.len();
            let units_before = sm.rate.units_for_bytes(sm.bytes_before);
            meters.push(Meter {
                id,
                category: lk.category,
                variant: lk.variant.clone(),
                region: sm.region.clone(),
                dest: sm.dest.clone(),
                month: month_label(lk.month),
                unit: sm.rate.unit.to_string(),
                payer: sm.rate.payer,
                price_origin: origin_of(&sm.rate),
                price_source: sm.rate.source.clone(),
                as_of: sm.rate.as_of.clone(),
                tier_position: pos,
                units_before,
                units,
                bytes: sm.bytes_in,
                free_allowance: free_name,
                free_units,
                free_value,
                slices,
                cost,
            });
            sub_meter_id.insert((lk.clone(), si), id);
            pos += units;
            // 5. Share the meter's cost by bytes; the last charge takes the remainder.
            let mut given = Decimal::ZERO;
            let n = sm.charges.len();
            for (i, &ci) in sm.charges.iter().enumerate() {
                let share = if i + 1 == n {
                    cost - given
                } else {
                    (cost * Decimal::from(charges[ci].bytes) / Decimal::from(sm.bytes_in)).round_dp(MONEY_DP)
                };
                given += share;
                charge_cost[ci] = share;
            }
        }
    }

    let mut transfer_costs: Vec<BTreeMap<Category, Decimal>> = vec![BTreeMap::new(); transfers.len()];
    for (ci, ch) in charges.iter().enumerate() {
        let (lk, idx) = &sub_list[ch.sub];
        let Some(&meter) = sub_meter_id.get(&(lk.clone(), *idx)) else { continue };
        let cost = charge_cost[ci];
        let class = transfers[ch.transfer].classified.class;
        let line = lines.entry(ch.key.clone()).or_insert_with(|| new_line(&ch.key));
        line.cost += cost;
        line.classes.entry(class).or_default().cost += cost;
        match line.parts.iter_mut().find(|p| p.meter == meter && p.class == class && p.side == ch.side) {
            Some(p) => {
                p.bytes += ch.bytes;
                p.cost += cost;
            }
            None => line.parts.push(LinePart { meter, class, side: ch.side, bytes: ch.bytes, cost }),
        }
        by_class.entry(class).or_default().cost += cost;
        *transfer_costs[ch.transfer].entry(lk.category).or_default() += cost;
    }

    let hours = input.period.hours();
    let hourly = hourly_charges(book, provider, input.topology, hours);
    let transfer_cost: Decimal = meters.iter().map(|m| m.cost).sum();
    let hourly_cost: Decimal = hourly.iter().map(|h| h.cost).sum();
    let mut lines: Vec<CostLine> = lines.into_values().collect();
    lines.sort_by(|a, b| b.cost.cmp(&a.cost).then(b.bytes.cmp(&a.bytes)).then(a.key.cmp(&b.key)));
    let mut report = CostReport {
        schema: COST_SCHEMA,
        provider,
        currency,
        tier_accumulation: accumulation,
        topology: input.topology.map(|t| t.origin.clone()),
        since: input.period.since,
        until: input.period.until,
        hours,
        by,
        lines,
        by_class,
        hourly,
        unpriced: unpriced.into_values().collect(),
        meters,
        totals: Totals {
            bytes: total_bytes,
            transfer_cost,
            hourly_cost,
            cost: transfer_cost + hourly_cost,
            unpriced_bytes,
            projected_monthly: Decimal::ZERO,
        },
        transfers,
        transfer_costs,
    };
    report.totals.projected_monthly = report.monthly(report.totals.cost);
    Ok(report)
}

/// Charges per hour a resource exists (NAT gateways, transit gateway attachments, interface
/// endpoints per zone), from the topology. Shown apart from transfer: no workload causes them.
fn hourly_charges(
    book: &PriceBook,
    provider: Provider,
    topo: Option<&Topology>,
    hours: Decimal,
) -> Vec<HourlyLine> {
    let Some(t) = topo else { return Vec::new() };
    let mut out = Vec::new();
    let mut push = |kind, resource: String, region: &str, quantity: Decimal| {
        if let Some(h) = book.hourly(provider, region, kind) {
            let q = h.max_quantity.map_or(quantity, |m| quantity.min(m));
            out.push(HourlyLine {
                kind,
                resource,
                region: region.to_string(),
                quantity: q,
                hours,
                unit_price: h.price,
                cost: (h.price * q * hours).round_dp(MONEY_DP),
                price_origin: format!("{}:{}", h.origin.file, h.origin.line),
                price_source: h.source.clone(),
            });
        }
    };
    for n in &t.nat_gateways {
        if let Some(v) = t.vpc(&n.vpc).filter(|v| v.owned) {
            push(HourlyKind::NatGatewayHour, format!("nat gateway {}", n.id), &v.region, Decimal::ONE);
        }
    }
    for g in &t.transit_gateways {
        let owned = g.attachments.iter().filter(|a| t.vpc(a).is_some_and(|v| v.owned)).count();
        push(
            HourlyKind::TransitGatewayAttachmentHour,
            format!("transit gateway {} ({owned} attachments)", g.id),
            &g.region,
            Decimal::from(owned),
        );
    }
    for e in t.endpoints.iter().filter(|e| e.kind == super::topology::EndpointKind::Interface) {
        if let Some(v) = t.vpc(&e.vpc) {
            let zones = e.zones.len().max(1);
            push(
                HourlyKind::EndpointHour,
                format!("endpoint {} ({zones} zones)", e.id),
                &v.region,
                Decimal::from(zones),
            );
        }
    }
    out
}

#[cfg(test)]
#[path = "cost/tests.rs"]
mod tests;
