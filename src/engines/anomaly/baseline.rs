//! Baselines of one hourly series: robust and classical statistics over the 24 h, 7 d and 28 d
//! before a time, the hour-of-day x weekday profile, and the seasonal expectation every detector
//! compares an hour against.
//!
//! Missing hours (no agent reported anything) are NaN and are skipped everywhere: an agent that was
//! down is not a quiet hour.

use crate::model::Timestamp;
use serde::Serialize;

pub const HOURS_PER_DAY: usize = 24;
pub const HOURS_PER_WEEK: usize = 168;

/// Windows a baseline is reported over, in hours.
pub const WINDOWS: [(&str, usize); 3] = [("24h", 24), ("7d", 168), ("28d", 672)];

/// MAD -> standard deviation of a normal distribution.
pub const MAD_TO_SIGMA: f64 = 1.4826;

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Stats {
    /// Hours with data (missing hours are not counted).
    pub hours: usize,
    pub mean: f64,
    pub stddev: f64,
    pub median: f64,
    /// Median absolute deviation from the median.
    pub mad: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

/// Statistics of the values present (NaN skipped); all zero when none are.
pub fn stats(values: &[f64]) -> Stats {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    v.sort_unstable_by(f64::total_cmp);
    stats_sorted(&v)
}

/// [`stats`] of values already sorted (by `f64::total_cmp`, no NaN). The mean and variance are
/// summed in that order, so any way of getting the same sorted values gives the same statistics.
pub fn stats_sorted(v: &[f64]) -> Stats {
    if v.is_empty() {
        return Stats::default();
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    let median = quantile_sorted(v, 0.5);
    Stats {
        hours: v.len(),
        mean,
        stddev: var.sqrt(),
        median,
        mad: mad_sorted(v, median),
        p50: median,
        p95: quantile_sorted(v, 0.95),
        p99: quantile_sorted(v, 0.99),
    }
}

/// The median absolute deviation of sorted values from their median `m` (as [`quantile_sorted`]
/// of the sorted deviations would give it), without sorting the deviations: below the median they
/// shrink as the values grow, from it on they grow, so in order they are a merge of those two
/// sorted runs, walked only to its middle.
fn mad_sorted(v: &[f64], m: f64) -> f64 {
    let pos = 0.5 * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let dev = |x: f64| (x - m).abs();
    let split = v.partition_point(|x| *x < m);
    // `below` walks down from the median, `above` up from it; each yields growing deviations.
    let (mut below, mut above) = (v[..split].iter().rev().peekable(), v[split..].iter().peekable());
    let (mut at_lo, mut at_hi) = (f64::NAN, f64::NAN);
    for k in 0..=hi {
        let next = match (below.peek(), above.peek()) {
            (Some(b), Some(a)) if dev(**b) < dev(**a) => dev(*below.next().expect("peeked")),
            (Some(_), None) => dev(*below.next().expect("peeked")),
            _ => dev(*above.next().expect("hi < len")),
        };
        if k == lo {
            at_lo = next;
        }
        at_hi = next;
    }
    at_lo + (at_hi - at_lo) * (pos - lo as f64)
}

/// Two runs sorted by `f64::total_cmp`, merged into one.
fn merge_sorted(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].total_cmp(&b[j]).is_le() {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// Linear-interpolated quantile of sorted values (the "R-7" definition spreadsheets use).
pub fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// Median of values (NaN must already be filtered out), in place; leaves them in no particular
/// order. A selection, not a sort: only the middle one or two values matter, and the detectors
/// take medians of a week of hourly residuals for every day that has a candidate spike.
pub fn median_in_place(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    let (below, mid, _) = v.select_nth_unstable_by(n / 2, f64::total_cmp);
    if n % 2 == 1 {
        return *mid;
    }
    // The other middle value of an even count is the largest of those below.
    let lower = below.iter().copied().max_by(f64::total_cmp).expect("n >= 2");
    (lower + *mid) / 2.0
}

/// Median of values sorted by `f64::total_cmp` (no NaN).
pub fn median_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Median of at most 7 values (no NaN), by insertion sort: the expectation takes two of these
/// per hour of every series, and the general sort's dispatch costs more than the sorting.
fn median_small(buf: &mut [f64; 7], n: usize) -> f64 {
    for i in 1..n {
        let v = buf[i];
        let mut j = i;
        while j > 0 && buf[j - 1] > v {
            buf[j] = buf[j - 1];
            j -= 1;
        }
        buf[j] = v;
    }
    if n % 2 == 1 { buf[n / 2] } else { (buf[n / 2 - 1] + buf[n / 2]) / 2.0 }
}

/// Hour of the week (Monday 00:00 UTC = 0) of the first hour of a series.
pub fn hour_of_week(t: Timestamp) -> usize {
    let dt = t.to_datetime();
    let wd = chrono::Datelike::weekday(&dt).num_days_from_monday() as usize;
    wd * HOURS_PER_DAY + chrono::Timelike::hour(&dt) as usize
}

/// What an hour is expected to be from the series' own history before it: the larger of
/// - the median of the same hour of the week over the 4 weeks before (at least 2 of them present),
/// - the median of the same hour of the day over the 7 days before (at least 3 present).
///
/// The weekly term carries a weekday rhythm; the daily term follows a level that moved in the last
/// days (a finished launch, a trend), so neither a quiet Sunday nor last week's lower level makes an
/// ordinary hour look like a spike. `None` while the series has too little history (learning).
pub fn expected_at(x: &[f64], t: usize) -> Option<f64> {
    let weekly = lagged_median(x, t, HOURS_PER_WEEK, 4, 2);
    let daily = lagged_median(x, t, HOURS_PER_DAY, 7, 3);
    match (weekly, daily) {
        (Some(w), Some(d)) => Some(w.max(d)),
        (a, b) => a.or(b),
    }
}

/// The median of the values `step`, 2 `step`, ... `count` `step` hours before `t` (at most 7),
/// if at least `min` of them are present.
fn lagged_median(x: &[f64], t: usize, step: usize, count: usize, min: usize) -> Option<f64> {
    let mut buf = [0.0f64; 7];
    let mut n = 0;
    for k in 1..=count {
        if let Some(i) = t.checked_sub(k * step)
            && !x[i].is_nan()
        {
            buf[n] = x[i];
            n += 1;
        }
    }
    (n >= min).then(|| median_small(&mut buf, n))
}

/// The expectation of a series' hours, computed when asked: most hours need none (a cheap bound,
/// [`Expectation::floor`], rules a spike out), and the expectation is most of the detectors' work.
pub struct Expectation<'a> {
    x: &'a [f64],
    v: Vec<f64>,
    known: Vec<bool>,
    /// Each hour's log residual once computed (NaN: not yet), for [`Expectation::sigma`]; empty
    /// until first asked, as most series never are.
    residuals: Vec<f64>,
    /// The week of residuals [`Expectation::sigma`] takes medians of, kept between calls.
    week: Vec<f64>,
}

impl<'a> Expectation<'a> {
    pub fn new(x: &'a [f64]) -> Self {
        Expectation {
            x,
            v: vec![f64::NAN; x.len()],
            known: vec![false; x.len()],
            residuals: Vec::new(),
            week: Vec::new(),
        }
    }

    /// [`expected_at`] of hour `t` (NaN while learning).
    pub fn at(&mut self, t: usize) -> f64 {
        if !self.known[t] {
            self.v[t] = expected_at(self.x, t).unwrap_or(f64::NAN);
            self.known[t] = true;
        }
        self.v[t]
    }

    /// Computes the hours `[a, b)` and returns every hour's value (valid where computed).
    pub fn upto(&mut self, a: usize, b: usize) -> &[f64] {
        for t in a..b.min(self.x.len()) {
            self.at(t);
        }
        &self.v
    }

    /// [`log_residual_sigma`] of the observed series `x` (the one this expectation is of, with
    /// or without the hours before its first byte: those have no expectation) at `t`. Consecutive
    /// days' weeks share six days, so each hour's residual (two logarithms) is computed once.
    pub fn sigma(&mut self, x: &[f64], t: usize) -> f64 {
        if self.residuals.is_empty() {
            self.residuals = vec![f64::NAN; self.x.len()];
        }
        self.week.clear();
        for (i, &observed) in x.iter().enumerate().take(t).skip(t.saturating_sub(HOURS_PER_WEEK)) {
            let e = self.at(i);
            if observed.is_nan() || e.is_nan() {
                continue;
            }
            if self.residuals[i].is_nan() {
                self.residuals[i] = log_residual(observed, e);
            }
            self.week.push(self.residuals[i]);
        }
        robust_sigma(&mut self.week)
    }

    /// A value the expectation of hour `t` is never below, cheap to know: the smallest of the same
    /// hours of the last 7 days when at least 3 are present (their median, and so the expectation,
    /// is at least that). `None` when there is no such bound.
    pub fn floor(&self, t: usize) -> Option<f64> {
        let (mut n, mut min) = (0, f64::INFINITY);
        for k in 1..=7 {
            if let Some(i) = t.checked_sub(k * HOURS_PER_DAY)
                && !self.x[i].is_nan()
            {
                n += 1;
                min = min.min(self.x[i]);
            }
        }
        (n >= 3).then_some(min)
    }
}

/// The expectation for every hour of a series (NaN while learning).
pub fn expected_series(x: &[f64]) -> Vec<f64> {
    (0..x.len()).map(|t| expected_at(x, t).unwrap_or(f64::NAN)).collect()
}

/// Robust spread (1.4826 x MAD: a standard deviation one bad hour does not inflate) of the log
/// residuals, log(1 + observed) - log(1 + expected), over the week before `t`. Traffic noise is
/// multiplicative (a series that swings 2x hour to hour is not unusual at 2x), so spikes and
/// their band are judged on the log scale. NaN with less than a day of residuals.
pub fn log_residual_sigma(x: &[f64], expected: &[f64], t: usize) -> f64 {
    let from = t.saturating_sub(HOURS_PER_WEEK);
    let mut r: Vec<f64> = (from..t)
        .filter(|&i| !x[i].is_nan() && !expected[i].is_nan())
        .map(|i| log_residual(x[i], expected[i]))
        .collect();
    robust_sigma(&mut r)
}

/// An hour's residual on the log scale.
fn log_residual(observed: f64, expected: f64) -> f64 {
    observed.ln_1p() - expected.ln_1p()
}

/// 1.4826 x MAD of residuals (reordered in place); NaN with less than a day of them.
fn robust_sigma(r: &mut [f64]) -> f64 {
    if r.len() < HOURS_PER_DAY {
        return f64::NAN;
    }
    let med = median_in_place(r);
    for v in r.iter_mut() {
        *v = (*v - med).abs();
    }
    MAD_TO_SIGMA * median_in_place(r)
}

/// A series' baseline as `egressor baseline` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Baseline {
    /// The baseline describes the hours before this time.
    pub at: Timestamp,
    pub windows: Vec<(String, Stats)>,
    /// Median bytes per hour by weekday (Monday first) and hour of day (UTC), over the 28 days
    /// before `at`; `None` where no hour of that slot had data.
    pub profile: Vec<Vec<Option<f64>>>,
}

/// The baseline of the hours before index `at` of a series whose first hour is `start`.
pub fn baseline(x: &[f64], start: Timestamp, at: usize) -> Baseline {
    let at = at.min(x.len());
    // The windows all end at `at`, each holding the one before: each window's values, sorted, are
    // the previous window's merged with its own older hours sorted (cheaper than sorting every
    // window whole; the same sorted values, so the same statistics).
    let mut windows = Vec::with_capacity(WINDOWS.len());
    let (mut sorted, mut newest_older) = (Vec::new(), at);
    for (name, hours) in WINDOWS {
        let from = at.saturating_sub(hours);
        let mut older: Vec<f64> = x[from..newest_older].iter().copied().filter(|v| !v.is_nan()).collect();
        older.sort_unstable_by(f64::total_cmp);
        sorted = merge_sorted(&older, &sorted);
        newest_older = from;
        windows.push((name.to_string(), stats_sorted(&sorted)));
    }
    let first = at.saturating_sub(672);
    let how0 = hour_of_week(start);
    // 28 days hold each hour of the week 4 times: one fixed row of 4 per slot, no allocation.
    let mut slots = [[0.0f64; 4]; HOURS_PER_WEEK];
    let mut filled = [0usize; HOURS_PER_WEEK];
    for (i, v) in x.iter().enumerate().take(at).skip(first) {
        if !v.is_nan() {
            let slot = (how0 + i) % HOURS_PER_WEEK;
            slots[slot][filled[slot]] = *v;
            filled[slot] += 1;
        }
    }
    let profile = (0..7)
        .map(|d| {
            (0..HOURS_PER_DAY)
                .map(|h| {
                    let slot = d * HOURS_PER_DAY + h;
                    (filled[slot] > 0).then(|| median_in_place(&mut slots[slot][..filled[slot]]))
                })
                .collect()
        })
        .collect();
    Baseline { at: start.add_micros(at as i64 * Timestamp::MICROS_PER_HOUR), windows, profile }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shortcuts (selection medians, the MAD read off two sorted runs, windows merged from the
    /// shorter one) against the plain definitions, over random lengths, ties and missing hours.
    #[test]
    fn fast_statistics_equal_the_plain_definitions() {
        let mut rng = crate::model::rng::SplitMix64(7);
        let plain_median = |v: &[f64]| {
            let mut s = v.to_vec();
            s.sort_unstable_by(f64::total_cmp);
            quantile_sorted(&s, 0.5)
        };
        for round in 0..300 {
            let n = 1 + rng.below(60);
            // Few distinct values in some rounds, so ties around the median are common.
            let distinct = if round % 3 == 0 { 3 } else { 1000 };
            let v: Vec<f64> = (0..n).map(|_| rng.below(distinct) as f64 * 1.5).collect();
            let median = plain_median(&v);
            assert_eq!(median_in_place(&mut v.clone()), median, "{v:?}");
            let dev: Vec<f64> = v.iter().map(|x| (x - median).abs()).collect();
            let mut sorted = v.clone();
            sorted.sort_unstable_by(f64::total_cmp);
            assert_eq!(median_sorted(&sorted), median);
            assert_eq!(stats_sorted(&sorted).mad, plain_median(&dev), "{v:?}");
        }
        let x: Vec<f64> =
            (0..2000).map(|i| if i % 17 == 0 { f64::NAN } else { rng.below(500) as f64 }).collect();
        let start = Timestamp::parse("2026-11-02T00:00:00Z").unwrap();
        let b = baseline(&x, start, 1900);
        for ((name, hours), (got_name, got)) in WINDOWS.iter().zip(&b.windows) {
            assert_eq!(name, got_name);
            let want = stats(&x[1900 - hours..1900]);
            assert_eq!(
                (got.hours, got.median, got.mad, got.p95),
                (want.hours, want.median, want.mad, want.p95)
            );
            assert_eq!((got.mean, got.stddev), (want.mean, want.stddev), "{name}");
        }
    }

    #[test]
    fn robust_statistics_ignore_missing_hours_and_one_outlier() {
        let mut v = vec![10.0, 11.0, 9.0, 10.0, f64::NAN, 10.0, 1000.0];
        let s = stats(&v);
        assert_eq!(s.hours, 6);
        assert_eq!(s.median, 10.0);
        assert_eq!(s.mad, 0.5);
        assert!(s.mean > 100.0, "the mean is pulled by the outlier, the median is not");
        v.retain(|x| !x.is_nan());
        assert_eq!(median_in_place(&mut v), 10.0);
        assert_eq!(quantile_sorted(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.95), 4.8);
    }

    #[test]
    fn the_expectation_follows_the_weekly_rhythm_and_waits_for_history() {
        // Weekdays 100, weekends 40, four weeks; series starts on a Monday.
        let x: Vec<f64> =
            (0..4 * HOURS_PER_WEEK).map(|i| if (i / 24) % 7 >= 5 { 40.0 } else { 100.0 }).collect();
        assert_eq!(expected_at(&x, 10), None, "no history yet");
        assert_eq!(expected_at(&x, 3 * 24 + 5), Some(100.0));
        // A Saturday in week 3: the weekly term says 40, the daily term's median (5 weekdays) 100;
        // the larger is taken, so a quiet Saturday never lowers what an ordinary hour is compared to.
        let sat = 2 * HOURS_PER_WEEK + 5 * 24 + 3;
        assert_eq!(expected_at(&x, sat), Some(100.0));
        let sigma = log_residual_sigma(&x, &expected_series(&x), 3 * HOURS_PER_WEEK);
        assert!(sigma.is_finite());
    }

    #[test]
    fn the_profile_is_by_weekday_and_hour() {
        let start = Timestamp::parse("2026-11-02T00:00:00Z").unwrap(); // a Monday
        let x: Vec<f64> = (0..HOURS_PER_WEEK * 2).map(|i| (i % 24) as f64).collect();
        let b = baseline(&x, start, x.len());
        assert_eq!(b.profile[0][5], Some(5.0));
        assert_eq!(b.profile[6][23], Some(23.0));
        assert_eq!(b.windows[0].1.hours, 24);
        assert_eq!(hour_of_week(start), 0);
    }
}
