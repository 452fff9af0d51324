//! Cost: traffic rows -> classified transfers -> priced legs -> meters (the bill's line items, with
//! monthly tiers and free allowances) -> cost lines grouped the way the user asked.
//!
//! Money is `Decimal` end to end and every loop runs over sorted keys, so identical inputs give
//! byte-identical output. How it works, in the order it happens:
//!
//! 1. Each row's `bytes_out` is a transfer from the local party, and its `bytes_in` one to it; when
//!    both ends of a transfer were observed (two agents, two ENIs' flow logs, both ends of loopback)
//!    one observation is billed and the other is not (`engines::observations`).
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
use super::observations::{self, SeenTwice};
use super::pricing::{
    AllowancePosition, AllowanceScope, Category, CidrRule, FreeAllowance, HourlyKind, Payer, PriceBook,
    Provider, Rate, TierAccumulation, TierSlice,
};
use super::topology::Topology;
use crate::model::{Party, Timestamp, TrafficRow};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The version of `egressor cost --output json` (docs/schemas/cost.v1.json, docs/cost.md).
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
    /// The index of the input row this transfer is a direction of.
    #[serde(skip)]
    pub row: usize,
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
    /// [`COST_SCHEMA`].
    pub schema_version: &'static str,
    /// The same, under the key v1 first printed it as (kept until v2).
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
    /// Transfers reported by both ends, and whose report was billed.
    pub seen_twice: Vec<SeenTwice>,
    /// Zone labels in the flows that the topology neither names nor maps, with the fix.
    pub zone_problems: Vec<String>,
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

/// What the bill is computed under: every step reads it, none changes it.
struct Terms<'a> {
    book: &'a PriceBook,
    provider: Provider,
    accumulation: TierAccumulation,
    by: GroupBy,
}

impl<'a> Terms<'a> {
    fn new(input: &CostInput<'a>, provider: Provider) -> Self {
        let accumulation =
            input.book.tier_accumulation(provider).unwrap_or(TierAccumulation::PerSourceRegion);
        Terms { book: input.book, provider, accumulation, by: input.by }
    }
}

pub fn compute(input: &CostInput<'_>) -> anyhow::Result<CostReport> {
    compute_with(input, true)
}

/// [`compute`] with every observation priced as given, except receiving directions whose remote
/// node reports them: the live view decides which observation counts per record itself, and
/// learns each direction it may meet.
pub fn compute_each_observation(input: &CostInput<'_>) -> anyhow::Result<CostReport> {
    compute_with(input, false)
}

fn compute_with(input: &CostInput<'_>, match_addresses: bool) -> anyhow::Result<CostReport> {
    let ranges = super::cloud_ranges::CloudRanges::shipped()?;
    let mut classifier = Classifier::new(input.topology, ranges);
    let terms = Terms::new(input, classifier.provider());
    let (transfers, seen_twice) = gather_transfers(input.rows, &mut classifier, match_addresses);
    let mut ledger = Ledger::default();
    for (ti, t) in transfers.iter().enumerate() {
        ledger.add_transfer(&terms, ti, t);
    }
    let mut allowances = Allowances { enabled: input.free_allowances, left: BTreeMap::new() };
    let position = lay_earlier_usage(&ledger.ladders, &mut allowances);
    let billed = bill_ladders(&ledger, &position, &mut allowances);
    let transfer_costs = ledger.share_to_lines(&billed, &transfers);
    let hourly = hourly_charges(terms.book, terms.provider, input.topology, input.period.hours());
    let mut report = build_report(input, &terms, ledger, billed.meters, hourly, transfers, transfer_costs);
    report.seen_twice = seen_twice;
    report.zone_problems = classifier.zone_problems();
    Ok(report)
}

/// Step 1. Which observations are billed (`engines::observations`): bytes seen at both ends are
/// one transfer, and the billed observation learns what the other end said of itself.
fn gather_transfers(
    rows: &[TrafficRow],
    classifier: &mut Classifier<'_>,
    match_addresses: bool,
) -> (Vec<Transfer>, Vec<SeenTwice>) {
    // The live view decides per record itself: no matching here (its first tick learns many rows).
    let decided = if match_addresses {
        observations::decide(rows)
    } else {
        observations::Observations { rows: vec![Default::default(); rows.len()], seen_twice: Vec::new() }
    };
    let observed: BTreeSet<&str> = rows.iter().map(|r| r.node.as_str()).collect();
    let mut transfers = Vec::new();
    for (ri, (row, verdict)) in rows.iter().zip(&decided.rows).enumerate() {
        let (bill_out, bill_in) = if match_addresses {
            (verdict.bill_out, verdict.bill_in)
        } else {
            let remote_observed = row.remote.node.as_deref().is_some_and(|n| observed.contains(n));
            (row.bytes_out > 0, row.bytes_in > 0 && !remote_observed)
        };
        let learned;
        let row = match (&verdict.remote, match_addresses) {
            (Some(remote), true) => {
                learned = TrafficRow { remote: remote.clone(), ..row.clone() };
                &learned
            }
            _ => row,
        };
        for (dir, bytes, billed) in
            [(Direction::Out, row.bytes_out, bill_out), (Direction::In, row.bytes_in, bill_in)]
        {
            if bytes == 0 || !billed {
                continue;
            }
            let classified = classifier.classify(&row.node, &row.local, &row.remote, dir);
            transfers.push(Transfer::new(ri, row, dir, bytes, classified));
        }
    }
    let seen_twice = if match_addresses { decided.seen_twice } else { Vec::new() };
    (transfers, seen_twice)
}

/// Steps 2-3 as they accumulate over the transfers: charges on sub-meters grouped into ladders,
/// and all the lines and totals can know before a meter is priced (bytes, what has no price).
#[derive(Default)]
struct Ledger {
    ladders: BTreeMap<LadderKey, Vec<SubMeter>>,
    /// Sub-meter by ladder, region and destination, as an index into `sub_list`.
    sub_index: HashMap<(LadderKey, String, Option<String>), usize>,
    /// Each sub-meter's ladder and place in it: charges name their sub-meter by this index, which
    /// stays valid while ladders grow.
    sub_list: Vec<(LadderKey, usize)>,
    charges: Vec<Charge>,
    unpriced: BTreeMap<String, Unpriced>,
    lines: BTreeMap<String, CostLine>,
    by_class: BTreeMap<Class, ClassTotal>,
    total_bytes: u64,
    unpriced_bytes: u64,
}

/// A leg of a transfer with the rate that prices it.
struct PricedLeg {
    rate: Rate,
    dest: Option<String>,
    region: String,
    sides: Sides,
}

impl Ledger {
    /// Steps 2-3 for one transfer.
    fn add_transfer(&mut self, terms: &Terms<'_>, ti: usize, t: &Transfer) {
        let c = &t.classified;
        // The local party's line shows the transfer's bytes even when none of its cost lands there.
        let mut keys_touched = BTreeSet::new();
        keys_touched.insert(line_key(terms.by, t, Side::Owner, Sides::LocalAndGateway));
        if t.in_period {
            self.total_bytes += t.bytes;
            self.by_class.entry(c.class).or_default().bytes += t.bytes;
        }
        if c.class == Class::Unknown {
            self.note_unpriced(
                t,
                "unknown class: one end could not be placed".into(),
                format!("{} -> {}: {}", t.sender, t.receiver, c.reason),
            );
        }
        for leg in self.priced_legs(terms, t) {
            self.charge_leg(terms, ti, t, &leg, &mut keys_touched);
        }
        if t.in_period {
            self.count_line_bytes(t, keys_touched);
        }
    }

    /// A user CIDR rule replaces the classifier's prices for traffic to its range. A leg the book
    /// has no price for is reported rather than charged as free.
    fn priced_legs(&mut self, terms: &Terms<'_>, t: &Transfer) -> Vec<PricedLeg> {
        let provider = terms.provider;
        let cidr = match (t.direction, t.remote.ip) {
            (Direction::Out, Some(ip)) => terms.book.cidr_rule(provider, ip),
            _ => None,
        };
        if let Some(rule) = cidr {
            return vec![cidr_leg(provider, rule, &t.classified)];
        }
        let mut priced = Vec::new();
        for leg in &t.classified.legs {
            match terms.book.rate_variant(
                provider,
                &leg.region,
                leg.category,
                leg.variant,
                leg.dest.as_deref(),
            ) {
                Some(rate) => priced.push(PricedLeg {
                    rate: rate.clone(),
                    dest: leg.dest.clone(),
                    region: leg.region.clone(),
                    sides: leg.sides,
                }),
                None => self.note_unpriced(
                    t,
                    format!(
                        "no {provider} price for {} from {}{}",
                        leg.category,
                        leg.region,
                        leg.dest.as_ref().map(|d| format!(" to {d}")).unwrap_or_default()
                    ),
                    format!("{} -> {}", t.sender, t.receiver),
                ),
            }
        }
        priced
    }

    /// Bytes before the period only move the tier position; in the period they are a charge to each
    /// side on our bill. Runs for every leg of every transfer: the sub-meter is looked up once per
    /// leg, and the loop over its sides stays here with it.
    fn charge_leg(
        &mut self,
        terms: &Terms<'_>,
        ti: usize,
        t: &Transfer,
        leg: &PricedLeg,
        keys_touched: &mut BTreeSet<String>,
    ) {
        let sides_charged = sides_charged(leg, t);
        let sub = self.sub_meter(terms.accumulation, t.month, leg);
        let (lk, idx) = &self.sub_list[sub];
        let sm = &mut self.ladders.get_mut(lk).expect("ladder exists")[*idx];
        for side in sides_charged {
            if t.in_period {
                sm.bytes_in += t.bytes;
                let key = line_key(terms.by, t, side, leg.sides);
                keys_touched.insert(key.clone());
                sm.charges.push(self.charges.len());
                self.charges.push(Charge { transfer: ti, sub, side, key, bytes: t.bytes });
            } else {
                sm.bytes_before += t.bytes;
            }
        }
    }

    /// The sub-meter of a leg's rate, region and destination in its month's ladder, made on first
    /// use; returns its index into `sub_list`.
    fn sub_meter(&mut self, accumulation: TierAccumulation, month: Timestamp, leg: &PricedLeg) -> usize {
        let scope = match accumulation {
            TierAccumulation::PerSourceRegion => leg.region.clone(),
            TierAccumulation::Global => "*".into(),
        };
        let lk = LadderKey {
            month,
            category: leg.rate.category,
            variant: leg.rate.variant.clone(),
            scope,
            origin: origin_of(&leg.rate),
        };
        let sk = (lk.clone(), leg.region.clone(), leg.dest.clone());
        *self.sub_index.entry(sk).or_insert_with(|| {
            let subs = self.ladders.entry(lk.clone()).or_default();
            subs.push(SubMeter {
                rate: leg.rate.clone(),
                region: leg.region.clone(),
                dest: leg.dest.clone(),
                bytes_before: 0,
                bytes_in: 0,
                charges: Vec::new(),
            });
            self.sub_list.push((lk, subs.len() - 1));
            self.sub_list.len() - 1
        })
    }

    fn count_line_bytes(&mut self, t: &Transfer, keys_touched: BTreeSet<String>) {
        for k in keys_touched {
            let line = self.lines.entry(k.clone()).or_insert_with(|| new_line(&k));
            line.bytes += t.bytes;
            line.classes.entry(t.classified.class).or_default().bytes += t.bytes;
        }
    }

    /// Only the period's bytes are reported: earlier ones are not on this bill.
    fn note_unpriced(&mut self, t: &Transfer, reason: String, example: String) {
        if !t.in_period {
            return;
        }
        self.unpriced_bytes += t.bytes;
        let u = self.unpriced.entry(reason.clone()).or_insert(Unpriced {
            reason,
            bytes: 0,
            transfers: 0,
            example,
        });
        u.bytes += t.bytes;
        u.transfers += 1;
    }

    /// Step 5, once the meters are priced: each charge's share onto its line, its class and its
    /// transfer. Returns each transfer's cost by category of leg.
    fn share_to_lines(
        &mut self,
        billed: &Billed,
        transfers: &[Transfer],
    ) -> Vec<BTreeMap<Category, Decimal>> {
        let mut transfer_costs: Vec<BTreeMap<Category, Decimal>> = vec![BTreeMap::new(); transfers.len()];
        for (ci, ch) in self.charges.iter().enumerate() {
            let (lk, idx) = &self.sub_list[ch.sub];
            let Some(&meter) = billed.sub_meter_id.get(&(lk.clone(), *idx)) else { continue };
            let cost = billed.charge_cost[ci];
            let class = transfers[ch.transfer].classified.class;
            let line = self.lines.entry(ch.key.clone()).or_insert_with(|| new_line(&ch.key));
            line.cost += cost;
            line.classes.entry(class).or_default().cost += cost;
            add_part(&mut line.parts, LinePart { meter, class, side: ch.side, bytes: ch.bytes, cost });
            self.by_class.entry(class).or_default().cost += cost;
            *transfer_costs[ch.transfer].entry(lk.category).or_default() += cost;
        }
        transfer_costs
    }
}

impl Transfer {
    fn new(
        ri: usize,
        row: &TrafficRow,
        direction: Direction,
        bytes: u64,
        classified: Classified,
    ) -> Transfer {
        let local = row.local.workload_label();
        let (sender, receiver) = match direction {
            Direction::Out => (local, classified.remote_label.clone()),
            Direction::In => (classified.remote_label.clone(), local),
        };
        Transfer {
            month: row.month,
            in_period: row.in_period,
            node: row.node.clone(),
            direction,
            bytes,
            sender,
            receiver,
            classified,
            row: ri,
            local: row.local.clone(),
            remote: row.remote.clone(),
        }
    }
}

fn new_line(key: &str) -> CostLine {
    CostLine {
        key: key.to_string(),
        bytes: 0,
        cost: Decimal::ZERO,
        classes: BTreeMap::new(),
        parts: Vec::new(),
    }
}

/// A line has one part per meter, class and side, however many charges make it up.
fn add_part(parts: &mut Vec<LinePart>, part: LinePart) {
    match parts.iter_mut().find(|p| p.meter == part.meter && p.class == part.class && p.side == part.side) {
        Some(p) => {
            p.bytes += part.bytes;
            p.cost += part.cost;
        }
        None => parts.push(part),
    }
}

/// Which line a side of a transfer is charged to. A gateway leg (the NAT hop) and a gateway's
/// owner are on the local end's path, so their charges fall on the local party.
fn line_key(by: GroupBy, t: &Transfer, side: Side, sides: Sides) -> String {
    match by {
        GroupBy::Edge => format!("{} -> {}", t.sender, t.receiver),
        GroupBy::Class => t.classified.class.as_str().to_string(),
        _ => {
            let local = match side {
                Side::Owner => true,
                _ if sides == Sides::LocalAndGateway => true,
                Side::Sender => t.direction == Direction::Out,
                Side::Receiver => t.direction == Direction::In,
            };
            if local {
                party_key(by, &t.local, &t.node, t.local.zone.as_deref())
            } else {
                let node = t.remote.node.as_deref().unwrap_or("(unknown node)");
                party_key(by, &t.remote, node, t.remote.zone.as_deref())
            }
        }
    }
}

/// The sides the leg's payer charges that are on our bill: a party outside our networks pays its
/// side of a `both` charge on a bill that is not ours.
fn sides_charged(leg: &PricedLeg, t: &Transfer) -> Vec<Side> {
    let remote_ours = t.classified.remote_ours;
    let local_is_sender = t.direction == Direction::Out;
    let on_bill = |side: Side| -> bool {
        leg.sides == Sides::LocalAndGateway
            || side == Side::Owner
            || match side {
                Side::Sender => local_is_sender || remote_ours,
                Side::Receiver => !local_is_sender || remote_ours,
                Side::Owner => true,
            }
    };
    match leg.rate.payer {
        Payer::Source => vec![Side::Sender],
        Payer::Destination => vec![Side::Receiver],
        Payer::Both => vec![Side::Sender, Side::Receiver],
        Payer::Owner => vec![Side::Owner],
    }
    .into_iter()
    .filter(|s| on_bill(*s))
    .collect()
}

/// A CIDR rule as a one-tier rate, in the category of the classifier's last leg (the one that
/// leaves for the rule's range).
fn cidr_leg(provider: Provider, rule: &CidrRule, c: &Classified) -> PricedLeg {
    let rate = Rate {
        provider,
        category: c.legs.last().map(|l| l.category).unwrap_or(Category::InternetEgress),
        variant: Some(format!("cidr {}", rule.net)),
        tiers: vec![super::pricing::Tier { from_units: Decimal::ZERO, to_units: None, price: rule.price }],
        payer: rule.payer,
        unit: rule.unit,
        currency: rule.currency.clone(),
        free: None,
        source: format!("{} ({})", rule.source, rule.reason),
        as_of: rule.as_of.clone(),
        origin: rule.origin.clone(),
    };
    let region = c.legs.first().map(|l| l.region.clone()).unwrap_or_default();
    PricedLeg { rate, dest: None, region, sides: Sides::Parties }
}

/// Free allowance left in each pool, by month, allowance name and scope. A pool outlives a meter:
/// one allowance can be attached to many rates and regions.
struct Allowances {
    /// Off for live rates (see `CostInput::free_allowances`).
    enabled: bool,
    left: BTreeMap<(Timestamp, String, String), Decimal>,
}

impl Allowances {
    /// Takes up to `units` from the pool the rate draws on: the allowance and the units it gave, or
    /// `None` when the rate draws on none.
    fn take<'r>(
        &mut self,
        month: Timestamp,
        rate: &'r Rate,
        region: &str,
        units: Decimal,
    ) -> Option<(&'r FreeAllowance, Decimal)> {
        let f = rate.free.as_ref().filter(|_| self.enabled)?;
        let scope = match f.scope {
            AllowanceScope::Global => "*".to_string(),
            AllowanceScope::PerSourceRegion => region.to_string(),
        };
        let left = self.left.entry((month, f.name.clone(), scope)).or_insert(f.units);
        let taken = units.min(*left);
        *left -= taken;
        Some((f, taken))
    }
}

/// Step 4, first half. Earlier usage of the month is not on this bill but moves the tier position
/// and uses free allowance first, so all of it (every ladder's, as pools span ladders) goes on
/// before any of the period's. Returns where each ladder's period usage starts.
fn lay_earlier_usage(
    ladders: &BTreeMap<LadderKey, Vec<SubMeter>>,
    allowances: &mut Allowances,
) -> BTreeMap<LadderKey, Decimal> {
    let mut position: BTreeMap<LadderKey, Decimal> = BTreeMap::new();
    for (lk, subs) in ladders {
        for sm in subs {
            let units = sm.rate.units_for_bytes(sm.bytes_before);
            let free = allowances.take(lk.month, &sm.rate, &sm.region, units);
            *position.entry(lk.clone()).or_default() += on_ladder(units, free);
        }
    }
    position
}

/// The priced meters and each charge's share of its meter (same index as `Ledger::charges`).
struct Billed {
    meters: Vec<Meter>,
    charge_cost: Vec<Decimal>,
    /// Meter id by ladder and place in it; a sub-meter without usage in the period has no meter.
    sub_meter_id: HashMap<(LadderKey, usize), usize>,
}

/// Step 4, second half, then 5: the period's usage on each ladder, in key order, from where the
/// earlier usage left it; each meter's cost shared among its charges.
fn bill_ladders(
    ledger: &Ledger,
    position: &BTreeMap<LadderKey, Decimal>,
    allowances: &mut Allowances,
) -> Billed {
    let mut billed = Billed {
        meters: Vec::new(),
        charge_cost: vec![Decimal::ZERO; ledger.charges.len()],
        sub_meter_id: HashMap::new(),
    };
    for (lk, subs) in &ledger.ladders {
        let mut pos = position.get(lk).copied().unwrap_or_default();
        for (si, sm) in subs.iter().enumerate() {
            if sm.bytes_in == 0 {
                continue;
            }
            let (meter, laid) = price_meter(billed.meters.len(), lk, sm, pos, allowances);
            pos += laid;
            share_cost(meter.cost, sm, &ledger.charges, &mut billed.charge_cost);
            billed.sub_meter_id.insert((lk.clone(), si), meter.id);
            billed.meters.push(meter);
        }
    }
    billed
}

/// Units that occupy the tier ladder: all of them, less the free ones when the allowance sits
/// before the tiers (the first tier then counts paid units only, as AWS's bill reads).
fn on_ladder(units: Decimal, free: Option<(&FreeAllowance, Decimal)>) -> Decimal {
    match free {
        Some((f, taken)) if f.position == AllowancePosition::BeforeTiers => units - taken,
        _ => units,
    }
}

/// A sub-meter's period usage priced on its ladder from `pos`; returns the meter and the units it
/// laid on the ladder. Free units come off the start of the usage. Within the tiers they are worth
/// the tier prices where they sit; before the tiers they are worth the first price the paid units
/// meet, and the paid units alone are laid on the ladder.
fn price_meter(
    id: usize,
    lk: &LadderKey,
    sm: &SubMeter,
    pos: Decimal,
    allowances: &mut Allowances,
) -> (Meter, Decimal) {
    let units = sm.rate.units_for_bytes(sm.bytes_in);
    let free = allowances.take(lk.month, &sm.rate, &sm.region, units);
    let laid = on_ladder(units, free);
    let (mut free_units, mut free_value, mut free_name) = (Decimal::ZERO, Decimal::ZERO, None);
    let (slices, cost) = match free {
        Some((f, taken)) if f.position == AllowancePosition::BeforeTiers => {
            free_name = Some(f.name.clone());
            free_units = taken;
            let price =
                sm.rate.tier_slices(pos, Decimal::ONE).first().map_or(Decimal::ZERO, |s| s.unit_price);
            free_value = taken * price;
            let slices = sm.rate.tier_slices(pos, laid);
            let cost: Decimal = slices.iter().map(|s| s.cost).sum();
            (slices, cost)
        }
        Some((f, taken)) => {
            free_name = Some(f.name.clone());
            free_units = taken;
            free_value = sm.rate.tier_slices(pos, taken).iter().map(|s| s.cost).sum();
            let slices = sm.rate.tier_slices(pos, units);
            let cost: Decimal = slices.iter().map(|s| s.cost).sum::<Decimal>() - free_value;
            (slices, cost)
        }
        None => {
            let slices = sm.rate.tier_slices(pos, units);
            let cost = slices.iter().map(|s| s.cost).sum();
            (slices, cost)
        }
    };
    let meter = Meter {
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
        units_before: sm.rate.units_for_bytes(sm.bytes_before),
        units,
        bytes: sm.bytes_in,
        free_allowance: free_name,
        free_units,
        free_value,
        slices,
        cost: cost.round_dp(MONEY_DP),
    };
    (meter, laid)
}

/// Shares are rounded to `MONEY_DP`; the last charge takes the remainder so that the shares add up
/// to the meter exactly.
fn share_cost(cost: Decimal, sm: &SubMeter, charges: &[Charge], charge_cost: &mut [Decimal]) {
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

fn build_report(
    input: &CostInput<'_>,
    terms: &Terms<'_>,
    ledger: Ledger,
    meters: Vec<Meter>,
    hourly: Vec<HourlyLine>,
    transfers: Vec<Transfer>,
    transfer_costs: Vec<BTreeMap<Category, Decimal>>,
) -> CostReport {
    let transfer_cost: Decimal = meters.iter().map(|m| m.cost).sum();
    let hourly_cost: Decimal = hourly.iter().map(|h| h.cost).sum();
    let mut report = CostReport {
        schema_version: COST_SCHEMA,
        schema: COST_SCHEMA,
        provider: terms.provider,
        currency: terms.book.currency(terms.provider).unwrap_or("USD").to_string(),
        tier_accumulation: terms.accumulation,
        topology: input.topology.map(|t| t.origin.clone()),
        since: input.period.since,
        until: input.period.until,
        hours: input.period.hours(),
        by: terms.by,
        lines: sorted_lines(ledger.lines),
        by_class: ledger.by_class,
        hourly,
        unpriced: ledger.unpriced.into_values().collect(),
        meters,
        totals: Totals {
            bytes: ledger.total_bytes,
            transfer_cost,
            hourly_cost,
            cost: transfer_cost + hourly_cost,
            unpriced_bytes: ledger.unpriced_bytes,
            projected_monthly: Decimal::ZERO,
        },
        seen_twice: Vec::new(),
        zone_problems: Vec::new(),
        transfers,
        transfer_costs,
    };
    report.totals.projected_monthly = report.monthly(report.totals.cost);
    report
}

/// Costliest first; then by bytes, then by key, so that equal lines keep one order.
fn sorted_lines(lines: BTreeMap<String, CostLine>) -> Vec<CostLine> {
    let mut lines: Vec<CostLine> = lines.into_values().collect();
    lines.sort_by(|a, b| b.cost.cmp(&a.cost).then(b.bytes.cmp(&a.bytes)).then(a.key.cmp(&b.key)));
    lines
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
