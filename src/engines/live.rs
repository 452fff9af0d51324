//! The live view's model: flow records arrive in ticks (from local capture, agents or a replay);
//! each tick is classified and priced by the cost engine and folded into per-edge totals, a rate
//! history for sparklines and cost rates by class. Pure: `top` and its tests drive it with records.

use super::classify::Class;
use super::cost::{CostInput, GroupBy, Period, compute};
use super::graph::{self, FocusDirection, GraphQuery, Level};
use super::pricing::PriceBook;
use super::topology::Topology;
use crate::model::{FlowRecord, Timestamp, traffic_rows};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};

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
    /// Bytes per second over the last tick.
    pub rate: f64,
    /// Cost per hour at the last tick's rate (marginal: first tier, no free allowance).
    pub cost_per_hour: Decimal,
    /// Pod/process pairs behind the edge, with bytes since the view started.
    pub detail: BTreeMap<String, u64>,
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
    /// "src\0dst" -> position in `edges`.
    #[serde(skip)]
    index: HashMap<String, usize>,
}

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
            index: HashMap::new(),
        }
    }

    /// Starts over at another level (totals then count from the switch).
    pub fn set_level(&mut self, level: Level) {
        *self = LiveModel { currency: self.currency.clone(), ..LiveModel::new(level) };
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
        let rows = traffic_rows(records, start.floor_month());
        let period = Period { since: start, until: end.max(start.add_micros(1)) };
        let report = compute(&CostInput {
            rows: &rows,
            period,
            book,
            topology,
            by: GroupBy::Class,
            free_allowances: false,
        })?;
        self.currency = report.currency.clone();
        let g = graph::build(
            &report,
            &GraphQuery {
                level: self.level,
                focus: None,
                hops: 0,
                direction: FocusDirection::Both,
                class: None,
                details: true,
            },
        );
        let hours = Decimal::from_f64_retain(secs / 3600.0).unwrap_or(Decimal::ONE);
        let mut seen = vec![false; self.edges.len()];
        let mut key = String::new();
        for e in g.edges {
            key.clear();
            key.push_str(&e.src);
            key.push('\0');
            key.push_str(&e.dst);
            let i = match self.index.get(key.as_str()) {
                Some(&i) => i,
                None => {
                    self.edges.push(LiveEdge {
                        src: e.src.clone(),
                        dst: e.dst.clone(),
                        class: e.class,
                        total_bytes: 0,
                        total_cost: Decimal::ZERO,
                        history: VecDeque::from(vec![0; (self.ticks as usize).min(HISTORY - 1)]),
                        rate: 0.0,
                        cost_per_hour: Decimal::ZERO,
                        detail: BTreeMap::new(),
                    });
                    seen.push(false);
                    self.index.insert(key.clone(), self.edges.len() - 1);
                    self.edges.len() - 1
                }
            };
            seen[i] = true;
            let le = &mut self.edges[i];
            le.class = e.class;
            le.total_bytes += e.bytes;
            le.total_cost += e.cost;
            le.rate = e.bytes as f64 / secs;
            le.cost_per_hour = (e.cost / hours).round_dp(6);
            le.history.push_back(e.bytes);
            for (k, v) in e.detail {
                match le.detail.get_mut(&k) {
                    Some(n) => *n += v,
                    None => {
                        le.detail.insert(k, v);
                    }
                }
            }
        }
        for (i, s) in seen.iter().enumerate() {
            if !s {
                let le = &mut self.edges[i];
                le.rate = 0.0;
                le.cost_per_hour = Decimal::ZERO;
                le.history.push_back(0);
            }
        }
        for le in &mut self.edges {
            while le.history.len() > HISTORY {
                le.history.pop_front();
            }
        }
        self.class_rate = report.by_class.iter().map(|(c, t)| (*c, (t.cost / hours).round_dp(6))).collect();
        self.cost_per_hour = (report.totals.transfer_cost / hours).round_dp(6);
        self.bytes_per_sec = report.totals.bytes as f64 / secs;
        self.total_bytes += report.totals.bytes;
        self.total_cost += report.totals.transfer_cost;
        self.seconds += secs;
        self.ticks += 1;
        Ok(())
    }
}
