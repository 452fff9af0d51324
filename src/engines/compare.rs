//! Period comparison: two cost reports of the same grouping (a period and the one it is compared
//! with) -> what grew and what shrank, by line (edge, workload, ...) and by class, in bytes and in
//! money. `explain` and `ask`'s `compare_periods` tool both read it: "what changed" is answered
//! with the cost engine's own figures, never with a rate of thumb.

use super::classify::Class;
use super::cost::CostReport;
use crate::model::Timestamp;
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;

/// One period's figures, as compared.
#[derive(Debug, Clone, Serialize)]
pub struct PeriodTotals {
    pub since: Timestamp,
    pub until: Timestamp,
    pub bytes: u64,
    pub transfer_cost: Decimal,
}

/// How one key (a line of the grouping, or a class) moved from the earlier period to this one.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub key: String,
    pub bytes_before: u64,
    pub bytes_now: u64,
    pub cost_before: Decimal,
    pub cost_now: Decimal,
    /// cost_now - cost_before.
    pub cost_change: Decimal,
    /// bytes_now / bytes_before - 1 (0.5 = +50%); `None` when it carried nothing before (new).
    pub growth: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub currency: String,
    pub grouped_by: &'static str,
    pub now: PeriodTotals,
    pub before: PeriodTotals,
    pub cost_change: Decimal,
    /// Lines by how much their cost grew (largest first); ties by bytes, then key.
    pub lines: Vec<Change>,
    pub classes: Vec<Change>,
}

impl Comparison {
    /// Lines whose cost or bytes grew, most first.
    pub fn grew(&self, n: usize) -> impl Iterator<Item = &Change> {
        self.lines.iter().filter(|c| c.cost_change > Decimal::ZERO || c.bytes_now > c.bytes_before).take(n)
    }
}

/// Compares `now` with `before` (both computed with the same grouping).
pub fn compare(now: &CostReport, before: &CostReport) -> Comparison {
    let lines = changes(
        now.lines.iter().map(|l| (l.key.clone(), l.bytes, l.cost)),
        before.lines.iter().map(|l| (l.key.clone(), l.bytes, l.cost)),
    );
    let class_rows = |r: &CostReport| -> Vec<(String, u64, Decimal)> {
        r.by_class.iter().map(|(c, t): (&Class, _)| (c.as_str().to_string(), t.bytes, t.cost)).collect()
    };
    let classes = changes(class_rows(now).into_iter(), class_rows(before).into_iter());
    Comparison {
        currency: now.currency.clone(),
        grouped_by: now.by.as_str(),
        now: totals(now),
        before: totals(before),
        cost_change: now.totals.transfer_cost - before.totals.transfer_cost,
        lines,
        classes,
    }
}

fn totals(r: &CostReport) -> PeriodTotals {
    PeriodTotals {
        since: r.since,
        until: r.until,
        bytes: r.totals.bytes,
        transfer_cost: r.totals.transfer_cost,
    }
}

/// Joins the keys of both periods (a key in one only is 0 in the other) and orders them by cost
/// change, then byte change, then key, so the same data lists in the same order on every run.
fn changes(
    now: impl Iterator<Item = (String, u64, Decimal)>,
    before: impl Iterator<Item = (String, u64, Decimal)>,
) -> Vec<Change> {
    let mut joined: BTreeMap<String, [(u64, Decimal); 2]> = BTreeMap::new();
    for (key, bytes, cost) in now {
        let e = joined.entry(key).or_default();
        e[1] = (e[1].0 + bytes, e[1].1 + cost);
    }
    for (key, bytes, cost) in before {
        let e = joined.entry(key).or_default();
        e[0] = (e[0].0 + bytes, e[0].1 + cost);
    }
    let mut out: Vec<Change> = joined
        .into_iter()
        .map(|(key, [(bytes_before, cost_before), (bytes_now, cost_now)])| Change {
            key,
            bytes_before,
            bytes_now,
            cost_before,
            cost_now,
            cost_change: cost_now - cost_before,
            growth: (bytes_before > 0).then(|| bytes_now as f64 / bytes_before as f64 - 1.0),
        })
        .collect();
    let byte_change = |c: &Change| c.bytes_now as i128 - c.bytes_before as i128;
    out.sort_by(|a, b| {
        b.cost_change.cmp(&a.cost_change).then(byte_change(b).cmp(&byte_change(a))).then(a.key.cmp(&b.key))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_either_period_are_joined_and_ordered_by_cost_change() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        let now = vec![("a".to_string(), 300, d("3")), ("new".to_string(), 50, d("1.5"))];
        let before = vec![("a".to_string(), 100, d("1")), ("gone".to_string(), 70, d("0.7"))];
        let c = changes(now.into_iter(), before.into_iter());
        let keys: Vec<&str> = c.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["a", "new", "gone"]);
        assert_eq!(c[0].cost_change, d("2"));
        assert_eq!(c[0].growth, Some(2.0));
        assert_eq!(c[1].growth, None, "new: no growth ratio");
        assert_eq!((c[2].bytes_now, c[2].cost_change), (0, d("-0.7")));
    }
}
