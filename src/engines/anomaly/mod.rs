//! Anomalies: hourly series out of the rollups -> baselines -> four detectors (spike, slow burn,
//! new endpoint, leak) and an isolation forest as a second opinion -> findings merged to their most
//! specific subject -> priced by the cost engine (`price`) -> scored against labelled events
//! (`score`).
//!
//! Every detector scans a series from its first hour, so a finding's start, and the id made from
//! it, do not depend on when or with what `--since` the command ran (docs/adr/0010-anomalies.md).

pub mod baseline;
pub mod detectors;
pub mod forest;
pub mod price;
pub mod score;
pub mod series;

use crate::model::Timestamp;
use baseline::{Expectation, HOURS_PER_DAY, expected_series, hour_of_week, log_residual_sigma};
use detectors::Raw;
use rust_decimal::Decimal;
use serde::Serialize;

/// The JSON schema of `egressor anomalies --output json` (docs/schemas/anomalies.v1.json).
pub const ANOMALIES_SCHEMA: &str = "egressor.anomalies/v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Kind {
    #[serde(rename = "spike")]
    Spike,
    #[serde(rename = "slow-burn")]
    SlowBurn,
    #[serde(rename = "new-endpoint")]
    NewEndpoint,
    #[serde(rename = "leak")]
    Leak,
    /// The isolation forest's finding, where no rule-based detector found anything.
    #[serde(rename = "outlier")]
    Outlier,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Spike, Kind::SlowBurn, Kind::NewEndpoint, Kind::Leak, Kind::Outlier];
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Spike => "spike",
            Kind::SlowBurn => "slow-burn",
            Kind::NewEndpoint => "new-endpoint",
            Kind::Leak => "leak",
            Kind::Outlier => "outlier",
        }
    }
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectKind {
    /// Two parties, either way round: `a <-> b`.
    Edge,
    /// Everything one workload sends.
    Egress,
    /// Everything to and from one external endpoint.
    External,
    /// All bytes of one cost class.
    Class,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Edge => "edge",
            SubjectKind::Egress => "egress",
            SubjectKind::External => "external",
            SubjectKind::Class => "class",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Subject {
    pub kind: SubjectKind,
    pub name: String,
    /// The parties: an edge's two ends, the workload, the endpoint, the class.
    pub ends: Vec<String>,
    /// An end is outside our networks (internet or cloud service); `cloud`: a cloud service.
    pub external: bool,
    pub cloud: bool,
    /// The cost classes the subject's bytes were in (edges).
    pub classes: Vec<String>,
}

impl Subject {
    /// `edge:a <-> b`, `egress:shop/Deployment/checkout`: how `baseline` and ids name it.
    pub fn key(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.name)
    }
}

/// One subject's hourly bytes (NaN = no data that hour), with what sent them and connections for
/// edges and external endpoints (empty for aggregates).
#[derive(Debug, Clone)]
pub struct Series {
    pub subject: Subject,
    pub bytes: Vec<f64>,
    pub out: Vec<f32>,
    pub conns: Vec<f32>,
}

#[derive(Debug, Clone)]
pub struct SeriesSet {
    /// The first hour of every series.
    pub start: Timestamp,
    pub hours: usize,
    pub series: Vec<Series>,
}

impl SeriesSet {
    pub fn hour(&self, i: usize) -> Timestamp {
        self.start.add_micros(i as i64 * Timestamp::MICROS_PER_HOUR)
    }
    pub fn index_of(&self, t: Timestamp) -> usize {
        ((t.micros() - self.start.micros()).max(0) / Timestamp::MICROS_PER_HOUR) as usize
    }
    /// The series whose key or name is `what`, else the only one whose name contains it.
    pub fn find(&self, what: &str) -> Result<&Series, Vec<String>> {
        if let Some(s) = self.series.iter().find(|s| s.subject.key() == what || s.subject.name == what) {
            return Ok(s);
        }
        let hits: Vec<&Series> = self.series.iter().filter(|s| s.subject.key().contains(what)).collect();
        match hits.as_slice() {
            [one] => Ok(one),
            _ => Err(hits.iter().map(|s| s.subject.key()).collect()),
        }
    }
}

/// What users can set: thresholds in bytes and in dollars keep tiny series from paging anyone.
#[derive(Debug, Clone)]
pub struct Thresholds {
    /// A finding must add at least this many bytes per day; new endpoints and leaks, small by
    /// nature and a question of where data goes more than of how much, a tenth of it.
    pub min_bytes: f64,
    /// ... and cost at least this much per day (applied after pricing).
    pub min_cost: Decimal,
    /// Spike: robust z-score and ratio to the seasonal expectation an hour must reach.
    pub spike_z: f64,
    pub spike_ratio: f64,
    /// Slow burn: the smallest growth per day reported (0.03 = 3%/day).
    pub burn_min_growth: f64,
    /// Hours of watching before a subject can be "new".
    pub learn_hours: usize,
    /// Leak: at most this many bytes per hour (median), night at least this share of the afternoon,
    /// and a robust spread (1.4826 MAD / median) at most this.
    pub leak_max_per_hour: f64,
    pub leak_night_ratio: f64,
    pub leak_max_spread: f64,
    /// Isolation forest: run it, and the score from which an hour is an outlier.
    pub forest: bool,
    pub forest_threshold: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            min_bytes: 100e6,
            min_cost: Decimal::ZERO,
            spike_z: 5.0,
            spike_ratio: 3.0,
            burn_min_growth: 0.03,
            learn_hours: 72,
            leak_max_per_hour: 200e6,
            leak_night_ratio: 0.5,
            leak_max_spread: 0.3,
            forest: true,
            forest_threshold: 0.72,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Open,
    Acknowledged,
    Resolved,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Open => "open",
            State::Acknowledged => "acknowledged",
            State::Resolved => "resolved",
        }
    }
    pub fn parse(s: &str) -> Option<State> {
        [State::Open, State::Acknowledged, State::Resolved].into_iter().find(|x| x.as_str() == s)
    }
}

/// The series around a finding against its baseline band, hourly.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    pub start: Timestamp,
    pub observed: Vec<Option<f64>>,
    pub expected: Vec<Option<f64>>,
    /// expected x/÷ exp(3 sigma) of the last week's log residuals: the spike detector's band.
    pub low: Vec<Option<f64>>,
    pub high: Vec<Option<f64>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub subject: Subject,
    pub start: Timestamp,
    /// `None` while it is still going on.
    pub end: Option<Timestamp>,
    /// When the detector had enough evidence (time to detect = detected_at - start).
    pub detected_at: Timestamp,
    pub expected_bytes_per_day: u64,
    pub observed_bytes_per_day: u64,
    pub excess_bytes_per_day: u64,
    /// Robust z (spike), Mann-Kendall z (slow burn), isolation score (outlier); 0 otherwise.
    pub score: f64,
    pub growth_per_day: Option<f64>,
    pub p_value: Option<f64>,
    /// Priced by the cost engine over the finding's window (see `price`).
    pub cost_per_day: Option<Decimal>,
    pub projected_extra_per_month: Option<Decimal>,
    /// How the cost was computed, in a sentence a person can check.
    pub cost_basis: Option<String>,
    /// Findings folded into this one, as `TYPE SUBJECT-KEY` (a workload's egress, an endpoint, a
    /// class that showed the same thing), `spike ID at TIME` (spikes inside a slow burn) or
    /// `new-endpoint ID at TIME` (a leak's subject when it was new).
    pub also: Vec<String>,
    /// The isolation forest flagged the same hours.
    pub forest_agrees: bool,
    pub state: State,
    pub next_steps: Vec<String>,
    pub evidence: Evidence,
    /// Theil-Sen slope of daily bytes (slow burn), for the monthly projection.
    #[serde(skip)]
    pub slope_bytes_per_day: Option<f64>,
}

impl Finding {
    pub fn overlaps(&self, other: &Finding) -> bool {
        let end = |f: &Finding| f.end.map_or(i64::MAX, |e| e.micros());
        self.start.micros() < end(other) && other.start.micros() < end(self)
    }
}

/// An outlier hour is at least this far above its expectation: the forest is a second opinion on
/// what costs more, not on every unusual shape.
const OUTLIER_RATIO: f64 = 1.5;

/// The stable id of a finding: type, subject and start, hashed (FNV-1a, fixed across builds).
pub fn finding_id(kind: Kind, subject: &Subject, start: Timestamp) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in format!("{}|{}|{}", kind.as_str(), subject.key(), start.micros()).bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let prefix = match kind {
        Kind::Spike => "sp",
        Kind::SlowBurn => "sb",
        Kind::NewEndpoint => "ne",
        Kind::Leak => "lk",
        Kind::Outlier => "of",
    };
    format!("{prefix}-{:08x}", (h >> 32) as u32 ^ h as u32)
}

/// Runs every detector on every series (split over the machine's cores), then folds findings
/// into their most specific subject. The forest scores hours from `forest_from` on (its cost grows
/// with every hour scored; rule-based detectors always scan everything).
pub fn detect(set: &SeriesSet, th: &Thresholds, forest_from: usize) -> Vec<Finding> {
    let found: Vec<Finding> =
        par_map(&set.series, |x| detect_one(set, x, th, forest_from)).into_iter().flatten().collect();
    let mut merged = merge(found);
    merged.sort_by(|a, b| (a.start, a.kind, &a.subject.name).cmp(&(b.start, b.kind, &b.subject.name)));
    merged
}

/// `f` of each item, in the items' order, computed on the machine's cores (at most 8). Threads
/// take the next few items whenever they are done with theirs (a series with a forest to grow
/// costs many without one, so fixed halves would leave a core waiting), and the results are put
/// back in the items' order: the same output whatever the number of threads or their timing.
pub fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    /// Items a thread takes at a time: enough to make taking them cheap, few enough to balance.
    const BATCH: usize = 32;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done: Vec<(usize, Vec<R>)> = Vec::new();
        loop {
            let first = next.fetch_add(BATCH, Ordering::Relaxed);
            if first >= items.len() {
                return done;
            }
            done.push((first, items[first..(first + BATCH).min(items.len())].iter().map(&f).collect()));
        }
    };
    let mut batches: Vec<(usize, Vec<R>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(work)).collect();
        handles.into_iter().flat_map(|h| h.join().expect("worker thread")).collect()
    });
    batches.sort_unstable_by_key(|(first, _)| *first);
    batches.into_iter().flat_map(|(_, results)| results).collect()
}

fn detect_one(set: &SeriesSet, s: &Series, th: &Thresholds, forest_from: usize) -> Vec<Finding> {
    let x = &s.bytes;
    let how0 = hour_of_week(set.start);
    let lived = lived(x);
    let mut expected = Expectation::new(&lived);
    let mut raws = detectors::spikes(x, &mut expected, th);
    raws.extend(detectors::slow_burns(x, how0, th));
    let sub = &s.subject;
    if matches!(sub.kind, SubjectKind::Edge | SubjectKind::External) {
        raws.extend(detectors::new_endpoint(x, th));
        if sub.external && !sub.cloud && !s.out.is_empty() {
            raws.extend(detectors::leaks(x, &s.out, how0, th));
        }
    }
    if th.forest && sub.kind == SubjectKind::Edge && !s.out.is_empty() {
        raws.extend(outliers(s, &mut expected, how0, th, forest_from));
    }
    raws.into_iter().map(|r| finding(set, s, &mut expected, r)).collect()
}

/// The forest's outliers on an edge: hours well above the expectation that a forest trained on
/// the edge's last 28 days (the hours scored included, as isolation forests are used: outliers are
/// the few points that isolate quickly among them) scores as unusual.
fn outliers(
    s: &Series,
    expected: &mut Expectation<'_>,
    how0: usize,
    th: &Thresholds,
    from: usize,
) -> Vec<Raw> {
    let x = &s.bytes;
    let point = |t: usize| -> forest::Point {
        let out = f64::from(s.out[t]);
        [
            (1.0 + x[t]).ln(),
            (1.0 + f64::from(s.conns[t])).ln(),
            ((1.0 + out) / (1.0 + (x[t] - out).max(0.0))).ln(),
            ((how0 + t) % HOURS_PER_DAY) as f64,
        ]
    };
    let from = from.max(th.learn_hours);
    // Hours that could be outliers at all; most edges have none, and then no forest is grown.
    let floor = th.min_bytes / 48.0;
    let candidates: Vec<usize> = (from..x.len())
        .filter(|&t| {
            let v = x[t];
            if v.is_nan() || v < floor || expected.floor(t).is_some_and(|f| v < OUTLIER_RATIO * f) {
                return false;
            }
            let e = expected.at(t);
            !e.is_nan() && v >= OUTLIER_RATIO * e && v - e >= floor
        })
        .collect();
    if candidates.is_empty() {
        return Vec::new();
    }
    let train: Vec<forest::Point> = (x.len().saturating_sub(28 * HOURS_PER_DAY)..x.len())
        .filter(|&t| !x[t].is_nan())
        .map(point)
        .collect();
    if train.len() < th.learn_hours {
        return Vec::new();
    }
    let seed = s
        .subject
        .name
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let f = forest::Forest::train(&train, seed);
    let points: Vec<forest::Point> = candidates.iter().map(|&t| point(t)).collect();
    let mut score = vec![0.0; x.len()];
    let mut flagged = Vec::new();
    for (t, s) in candidates.into_iter().zip(f.scores(&points)) {
        score[t] = s;
        if s >= th.forest_threshold {
            flagged.push(t);
        }
    }
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for t in flagged {
        match runs.last_mut() {
            Some((_, b)) if t <= *b + 2 => *b = t,
            _ => runs.push((t, t)),
        }
    }
    runs.into_iter()
        .filter_map(|(a, b)| {
            detectors::excursion(Kind::Outlier, x, expected.upto(a, b + 1), a, b, &score, th)
        })
        .collect()
}

fn finding(set: &SeriesSet, s: &Series, expected: &mut Expectation<'_>, r: Raw) -> Finding {
    let kind = r.kind;
    let start = set.hour(r.start);
    let excess = (r.observed_per_day - r.expected_per_day).max(0.0);
    Finding {
        id: finding_id(kind, &s.subject, start),
        kind,
        subject: s.subject.clone(),
        start,
        end: r.end.map(|e| set.hour(e)),
        detected_at: set.hour(r.detected),
        expected_bytes_per_day: r.expected_per_day.round() as u64,
        observed_bytes_per_day: r.observed_per_day.round() as u64,
        excess_bytes_per_day: excess.round() as u64,
        score: (r.score * 1000.0).round() / 1000.0,
        growth_per_day: r.growth.map(|g| (g * 10_000.0).round() / 10_000.0),
        p_value: r.p_value.map(|p| (p * 1e6).round() / 1e6),
        cost_per_day: None,
        projected_extra_per_month: None,
        cost_basis: None,
        also: Vec::new(),
        forest_agrees: false,
        state: State::Open,
        next_steps: next_steps(kind, &s.subject, start),
        evidence: evidence(set, s, expected, r.start, r.end),
        slope_bytes_per_day: r.slope_bytes,
    }
}

/// Two days before the finding to a day after it (at most 14 days), against the band.
fn evidence(
    set: &SeriesSet,
    s: &Series,
    expected: &mut Expectation<'_>,
    start: usize,
    end: Option<usize>,
) -> Evidence {
    let a = start.saturating_sub(2 * HOURS_PER_DAY);
    let b = end.map_or(s.bytes.len(), |e| (e + HOURS_PER_DAY).min(s.bytes.len())).min(a + 14 * HOURS_PER_DAY);
    // The band's spread is the week of residuals before each day of it.
    let from = (a / HOURS_PER_DAY * HOURS_PER_DAY).saturating_sub(7 * HOURS_PER_DAY);
    band(set, s, expected.upto(from, b), a, b)
}

/// The hours `[from, len)` of a series against its expectation and band, as the detectors see
/// them (`baseline` draws it).
pub fn recent(set: &SeriesSet, s: &Series, from: usize) -> Evidence {
    let expected = expected_series(&lived(&s.bytes));
    band(set, s, &expected, from.min(s.bytes.len()), s.bytes.len())
}

/// A series with the hours before its first byte missing: the subject did not exist then, so
/// those hours are no history of it (a new endpoint's fourth day is not a spike over the zeros
/// before it was born).
fn lived(x: &[f64]) -> Vec<f64> {
    let born = x.iter().position(|v| *v > 0.0).unwrap_or(x.len());
    x.iter().enumerate().map(|(i, v)| if i < born { f64::NAN } else { *v }).collect()
}

/// Observed, expected and the band the spike detector uses, for the hours `[a, b)`: expected
/// x/÷ exp(3 sigma), sigma the last week's spread of log residuals (at least 0.05), as spikes are
/// judged on the log scale.
fn band(set: &SeriesSet, s: &Series, expected: &[f64], a: usize, b: usize) -> Evidence {
    let x = &s.bytes;
    let opt = |v: f64| (!v.is_nan()).then_some(v.round());
    let mut sigma = (usize::MAX, f64::NAN);
    let (mut low, mut high) = (Vec::new(), Vec::new());
    for t in a..b {
        let day = t / HOURS_PER_DAY;
        if sigma.0 != day {
            sigma = (day, log_residual_sigma(x, expected, day * HOURS_PER_DAY));
        }
        let e = expected[t];
        let spread = (3.0 * if sigma.1.is_nan() { 0.25 } else { sigma.1 }.max(0.05)).exp();
        low.push(opt((1.0 + e) / spread - 1.0).map(|v| v.max(0.0)));
        high.push(opt((1.0 + e) * spread - 1.0));
    }
    Evidence {
        start: set.hour(a),
        observed: x[a..b].iter().map(|v| opt(*v)).collect(),
        expected: expected[a..b].iter().map(|v| opt(*v)).collect(),
        low,
        high,
    }
}

/// What to run next to see why: the graph around the subject, its cost line explained.
fn next_steps(kind: Kind, s: &Subject, start: Timestamp) -> Vec<String> {
    let since = start.add_micros(-Timestamp::MICROS_PER_DAY);
    let focus = match s.kind {
        // The workload end: what `graph` names a node by.
        SubjectKind::Edge => {
            s.ends.iter().find(|e| e.contains('/') && !e.contains(' ')).unwrap_or(&s.ends[0]).clone()
        }
        SubjectKind::External => s.name.trim_start_matches("internet ").to_string(),
        _ => s.name.clone(),
    };
    let mut steps = Vec::new();
    match s.kind {
        SubjectKind::Class => {
            steps.push(format!("egressor graph --class {} --since {since}", s.name));
            steps.push(format!("egressor cost --by class --explain --since {since}"));
        }
        _ => {
            steps.push(format!("egressor graph --focus '{focus}' --since {since}"));
            steps.push(format!("egressor cost --by edge --explain --since {since}"));
        }
    }
    if kind == Kind::SlowBurn {
        steps.push(format!("egressor baseline '{}' --since 28d", s.key()));
    }
    steps
}

/// Folds findings into the most specific one that explains them: an aggregate (a workload's egress,
/// an external endpoint, a cost class) into an edge of the same type and time it contains; a spike
/// into a slow burn it happened in; a new endpoint into a leak on the same subject; an outlier into
/// any rule-based finding on the same subject and time.
pub fn merge(found: Vec<Finding>) -> Vec<Finding> {
    let (mut keep, rest): (Vec<Finding>, Vec<Finding>) =
        found.into_iter().partition(|f| f.subject.kind == SubjectKind::Edge && f.kind != Kind::Outlier);
    let mut later = Vec::new();
    for f in rest {
        if f.kind == Kind::Outlier {
            later.push(f);
            continue;
        }
        let contains = |e: &Finding| match f.subject.kind {
            SubjectKind::Egress | SubjectKind::External => e.subject.ends.contains(&f.subject.name),
            SubjectKind::Class => e.subject.classes.contains(&f.subject.name),
            SubjectKind::Edge => false,
        };
        // The same type first; else any edge finding it contains at that time (a workload's egress
        // that grows because it started calling a new endpoint is that new endpoint).
        let same = keep.iter().position(|e| e.kind == f.kind && e.overlaps(&f) && contains(e));
        let any = || keep.iter().position(|e| e.overlaps(&f) && contains(e));
        match same.or_else(any) {
            Some(i) => keep[i].also.push(format!("{} {}", f.kind.as_str(), f.subject.key())),
            None => keep.push(f),
        }
    }
    // Spikes inside a slow burn on the same subject: the burn explains them.
    let burns: Vec<(Subject, Timestamp, Option<Timestamp>)> = keep
        .iter()
        .filter(|f| f.kind == Kind::SlowBurn)
        .map(|f| (f.subject.clone(), f.start, f.end))
        .collect();
    let mut folded: Vec<(usize, String)> = Vec::new();
    keep.retain(|f| {
        if f.kind != Kind::Spike {
            return true;
        }
        // A burn is found days after it starts (and its start is estimated from daily totals):
        // spikes up to three days before its start are its first steps.
        let lead = 3 * Timestamp::MICROS_PER_DAY;
        let within = |a: &Timestamp, b: &Option<Timestamp>| {
            f.start.micros() >= a.micros() - lead && b.is_none_or(|b| f.start < b)
        };
        match burns.iter().position(|(s, a, b)| *s == f.subject && within(a, b)) {
            Some(i) => {
                folded.push((i, format!("spike {} at {}", f.id, f.start)));
                false
            }
            None => true,
        }
    });
    for (i, note) in folded {
        let key = &burns[i];
        if let Some(b) =
            keep.iter_mut().find(|f| f.kind == Kind::SlowBurn && f.subject == key.0 && f.start == key.1)
        {
            b.also.push(note);
        }
    }
    // New endpoints that a leak on the same subject already reports.
    let leaks: Vec<(String, Timestamp, Option<Timestamp>)> =
        keep.iter().filter(|f| f.kind == Kind::Leak).map(|f| (f.subject.key(), f.start, f.end)).collect();
    let mut into_leaks: Vec<(usize, String)> = Vec::new();
    keep.retain(|f| {
        if f.kind != Kind::NewEndpoint {
            return true;
        }
        match leaks.iter().position(|(k, _, end)| *k == f.subject.key() && end.is_none_or(|e| f.start < e)) {
            Some(i) => {
                into_leaks.push((i, format!("new-endpoint {} at {}", f.id, f.start)));
                false
            }
            None => true,
        }
    });
    for (i, note) in into_leaks {
        let (key, start, _) = &leaks[i];
        if let Some(l) =
            keep.iter_mut().find(|f| f.kind == Kind::Leak && f.subject.key() == *key && f.start == *start)
        {
            l.also.push(note);
        }
    }
    for o in later {
        match keep.iter_mut().find(|e| e.subject == o.subject && e.overlaps(&o)) {
            Some(e) => e.forest_agrees = true,
            None => keep.push(o),
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn par_map_keeps_the_items_order_whatever_each_costs() {
        let items: Vec<u64> = (0..1000).collect();
        // Uneven work, so threads finish their batches out of order.
        let got = par_map(&items, |&i| {
            let spin = if i % 97 == 0 { 200_000 } else { 10 };
            std::hint::black_box((0..spin).fold(i, |a, k| a.wrapping_add(k) ^ 1));
            i * 2
        });
        assert_eq!(got, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        assert!(par_map(&[] as &[u64], |&i| i).is_empty());
    }

    #[test]
    fn ids_are_stable_and_differ_by_type_subject_and_start() {
        let s = Subject {
            kind: SubjectKind::Edge,
            name: "a <-> b".into(),
            ends: vec!["a".into(), "b".into()],
            external: false,
            cloud: false,
            classes: vec![],
        };
        let t = Timestamp::parse("2026-11-20T10:00:00Z").unwrap();
        let id = finding_id(Kind::Spike, &s, t);
        assert_eq!(id, finding_id(Kind::Spike, &s, t));
        assert!(id.starts_with("sp-") && id.len() == 11, "{id}");
        assert_ne!(id, finding_id(Kind::Spike, &s, t.add_micros(Timestamp::MICROS_PER_HOUR)));
        assert_ne!(id[3..], finding_id(Kind::SlowBurn, &s, t)[3..]);
    }
}
