//! The four detectors, each a scan over one hourly series from its first hour, so that where a
//! finding starts never depends on when the command ran or what `--since` it was given (the id is
//! built from the start: the same finding has the same id on every run).
//!
//! Each returns [`Raw`] findings in hour indices; `super` turns them into findings with ids,
//! evidence and prices.

use super::baseline::{Expectation, HOURS_PER_DAY, MAD_TO_SIGMA, median_in_place, median_sorted};
use super::{Kind, Thresholds};

/// A detection in hour indices of its series.
#[derive(Debug, Clone)]
pub struct Raw {
    pub kind: Kind,
    pub start: usize,
    /// Exclusive; `None` while it is still going on at the last hour.
    pub end: Option<usize>,
    /// The hour index by whose end the detector had enough evidence (for time to detect).
    pub detected: usize,
    /// Bytes per day the subject was expected to carry, and carried, over the finding.
    pub expected_per_day: f64,
    pub observed_per_day: f64,
    /// Robust z-score (spike), Mann-Kendall z (slow burn), isolation score (outlier).
    pub score: f64,
    /// Slow burn: growth per day (0.12 = 12%/day), its one-sided p-value, and the Theil-Sen slope of
    /// daily bytes (bytes per day, per day) the monthly projection extends.
    pub growth: Option<f64>,
    pub p_value: Option<f64>,
    pub slope_bytes: Option<f64>,
}

impl Raw {
    fn new(kind: Kind, start: usize) -> Raw {
        Raw {
            kind,
            start,
            end: None,
            detected: start + 1,
            expected_per_day: 0.0,
            observed_per_day: 0.0,
            score: 0.0,
            growth: None,
            p_value: None,
            slope_bytes: None,
        }
    }
}

/// Runs of flagged hours: consecutive flags, bridged over one unflagged or missing hour.
struct Runs {
    open: Option<(usize, usize)>,
    done: Vec<(usize, usize)>,
}

impl Runs {
    fn new() -> Runs {
        Runs { open: None, done: Vec::new() }
    }
    fn flag(&mut self, t: usize) {
        match &mut self.open {
            Some((_, last)) if t <= *last + 2 => *last = t,
            _ => {
                if let Some(r) = self.open.take() {
                    self.done.push(r);
                }
                self.open = Some((t, t));
            }
        }
    }
    fn finish(mut self) -> Vec<(usize, usize)> {
        self.done.extend(self.open.take());
        self.done
    }
}

/// Hours far above the seasonal expectation: observed >= ratio x expected and a robust z-score of
/// log bytes (against the spread of the last week's log residuals) >= the threshold; runs of them are one spike
/// with a start and an end. `flag_score` decides the hours (the spike rule, or the forest's).
pub fn spikes(x: &[f64], exp: &mut Expectation<'_>, th: &Thresholds) -> Vec<Raw> {
    let mut runs = Runs::new();
    let mut score = vec![0.0f64; 0];
    let mut sigma_day = (usize::MAX, f64::NAN);
    // The smallest hourly excess that could belong to a spike worth reporting (a two-day spike).
    let floor = th.min_bytes / 48.0;
    let first = x.iter().position(|v| *v > 0.0).unwrap_or(x.len());
    for (t, &v) in x.iter().enumerate() {
        // A spike is judged against a week of the subject's own history (its weekly rhythm is not
        // known before); a subject's first days are the new-endpoint detector's.
        if v.is_nan() || v < floor || first + 7 * HOURS_PER_DAY > t {
            continue;
        }
        // Cheap bound first: below ratio x a floor of the expectation, it is no spike.
        if exp.floor(t).is_some_and(|f| v < th.spike_ratio * f) {
            continue;
        }
        let e = exp.at(t);
        if e.is_nan() || v < th.spike_ratio * e || v - e < floor {
            continue;
        }
        let day = t / HOURS_PER_DAY;
        if sigma_day.0 != day {
            sigma_day = (day, exp.sigma(x, day * HOURS_PER_DAY));
        }
        // On the log scale, against the last week's residual spread; until a week of residuals
        // exists the spread is taken as 0.25 (about +-28%), and never below 0.05 (+-5%): a
        // perfectly steady series must not turn any wobble into a huge z.
        let sigma = if sigma_day.1.is_nan() { 0.25 } else { sigma_day.1 }.max(0.05);
        let z = (v.ln_1p() - e.ln_1p()) / sigma;
        if z >= th.spike_z {
            if score.len() < x.len() {
                score.resize(x.len(), 0.0);
            }
            score[t] = z;
            runs.flag(t);
        }
    }
    runs.finish()
        .into_iter()
        .filter_map(|(a, b)| excursion(Kind::Spike, x, exp.upto(a, b + 1), a, b, &score, th))
        .collect()
}

/// A run of flagged hours [a, b] as a finding, if it adds enough bytes.
pub fn excursion(
    kind: Kind,
    x: &[f64],
    expected: &[f64],
    a: usize,
    b: usize,
    score: &[f64],
    th: &Thresholds,
) -> Option<Raw> {
    let (mut obs, mut exp) = (0.0, 0.0);
    for t in a..=b {
        if !x[t].is_nan() && !expected[t].is_nan() {
            obs += x[t];
            exp += expected[t];
        }
    }
    let days = ((b + 1 - a) as f64 / HOURS_PER_DAY as f64).ceil();
    if (obs - exp) / days < th.min_bytes {
        return None;
    }
    let mut r = Raw::new(kind, a);
    r.end = (b + 1 < x.len()).then_some(b + 1);
    r.detected = a + 1;
    r.observed_per_day = obs / days;
    r.expected_per_day = exp / days;
    r.score = score[a..=b].iter().copied().fold(0.0, f64::max);
    Some(r)
}

/// Daily totals over UTC days: `offset` is the index of the first hour of the first whole day.
/// A day with at most 4 missing hours is scaled up to 24; with more it is missing.
pub fn daily_totals(x: &[f64], offset: usize) -> Vec<f64> {
    let days = x.len().saturating_sub(offset) / HOURS_PER_DAY;
    (0..days)
        .map(|d| {
            let h = &x[offset + d * HOURS_PER_DAY..offset + (d + 1) * HOURS_PER_DAY];
            let (present, sum) =
                h.iter().filter(|v| !v.is_nan()).fold((0usize, 0.0), |(n, s), v| (n + 1, s + v));
            if present >= 20 { sum * HOURS_PER_DAY as f64 / present as f64 } else { f64::NAN }
        })
        .collect()
}

/// Mann-Kendall trend test: the z statistic (continuity-corrected) over the values present.
pub fn mann_kendall(y: &[f64]) -> (f64, usize) {
    let p: Vec<f64> = y.iter().copied().filter(|v| v.is_finite()).collect();
    let n = p.len();
    if n < 3 {
        return (0.0, n);
    }
    let mut s = 0i64;
    for i in 0..n {
        for j in i + 1..n {
            s += (p[j] - p[i]).partial_cmp(&0.0).map_or(0, |o| o as i64);
        }
    }
    let nf = n as f64;
    let var = nf * (nf - 1.0) * (2.0 * nf + 5.0) / 18.0;
    let sc = s as f64 - (s.signum() as f64);
    (sc / var.sqrt(), n)
}

/// Theil-Sen slope: the median of the slopes between every pair of present points.
pub fn theil_sen(y: &[f64]) -> f64 {
    let mut slopes = Vec::with_capacity(y.len() * y.len() / 2);
    for i in 0..y.len() {
        for j in i + 1..y.len() {
            if y[i].is_finite() && y[j].is_finite() {
                slopes.push((y[j] - y[i]) / (j - i) as f64);
            }
        }
    }
    median_in_place(&mut slopes)
}

/// One-sided p-value of a standard normal z (Abramowitz-Stegun 26.2.17, |error| < 7.5e-8).
pub fn p_one_sided(z: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.231_641_9 * z.abs());
    let d = 0.398_942_3 * (-z * z / 2.0).exp();
    let q = d * t * (0.319_381_5 + t * (-0.356_563_8 + t * (1.781_478 + t * (-1.821_256 + t * 1.330_274))));
    if z >= 0.0 { q } else { 1.0 - q }
}

/// The weekend's level against the weekdays' over the days up to `d` (at most 28): the factor that
/// takes a weekly rhythm out of daily totals, for every day `d` of `totals`. 1 until two weekend
/// days and four weekdays have been seen before the last three days; never above 1: a rising series makes its later weekend days look
/// like a busier weekend, and dividing that out would hide the rise (a weekend busier than the week
/// is not monotonic, so the trend test does not take it for a burn anyway).
///
/// The 28 days are slid one day at a time through two sorted windows (weekend days, weekdays): a
/// day in, the day 28 before out, instead of two medians of up to 28 days taken for every day.
fn weekend_factors(totals: &[f64], weekday0: usize) -> Vec<f64> {
    let usable = |v: f64| v.is_finite() && v > 0.0;
    let is_weekend = |i: usize| (weekday0 + i) % 7 >= 5;
    let (mut we, mut wd) = (SortedWindow::default(), SortedWindow::default());
    // Usable weekend days and weekdays among days d-27 ..= d-3, slid along with the windows.
    let (mut we_seen, mut wd_seen) = (0usize, 0usize);
    (0..totals.len())
        .map(|d| {
            if usable(totals[d]) {
                if is_weekend(d) { we.insert(totals[d]) } else { wd.insert(totals[d]) }
            }
            if let Some(gone) = d.checked_sub(28)
                && usable(totals[gone])
            {
                if is_weekend(gone) { we.remove(totals[gone]) } else { wd.remove(totals[gone]) }
            }
            // Known once seen on two weekend days and four weekdays before the last three: on
            // a short history the newest days, a burn's first among them, would be most of it.
            if let Some(old) = d.checked_sub(3)
                && usable(totals[old])
            {
                if is_weekend(old) { we_seen += 1 } else { wd_seen += 1 }
            }
            if let Some(gone) = d.checked_sub(28)
                && usable(totals[gone])
            {
                if is_weekend(gone) { we_seen -= 1 } else { wd_seen -= 1 }
            }
            if we_seen < 2 || wd_seen < 4 {
                return 1.0;
            }
            (we.median() / wd.median()).clamp(0.05, 1.0)
        })
        .collect()
}

/// Values kept sorted (by `f64::total_cmp`) as they come and go: a sliding window's median.
#[derive(Default)]
struct SortedWindow(Vec<f64>);

impl SortedWindow {
    fn insert(&mut self, v: f64) {
        let at = self.0.partition_point(|x| x.total_cmp(&v).is_lt());
        self.0.insert(at, v);
    }
    /// Removes one value equal to `v` (one that was inserted).
    fn remove(&mut self, v: f64) {
        let at = self.0.partition_point(|x| x.total_cmp(&v).is_lt());
        debug_assert!(self.0[at].total_cmp(&v).is_eq(), "{v} was never inserted");
        self.0.remove(at);
    }
    fn median(&self) -> f64 {
        median_sorted(&self.0)
    }
}

/// Up to N values on the stack: the slow-burn scan takes medians of a few to 28 days for every
/// day of every series, and allocating each one cost more than the medians.
struct Few<const N: usize> {
    v: [f64; N],
    n: usize,
}

impl<const N: usize> Few<N> {
    fn new() -> Self {
        Few { v: [0.0; N], n: 0 }
    }
    /// The values of an iterator that yields at most N (its range is bounded by the caller).
    fn of(values: impl Iterator<Item = f64>) -> Self {
        let mut f = Few::new();
        values.for_each(|v| f.push(v));
        f
    }
    fn push(&mut self, v: f64) {
        self.v[self.n] = v;
        self.n += 1;
    }
    fn len(&self) -> usize {
        self.n
    }
    fn values(&mut self) -> &mut [f64] {
        &mut self.v[..self.n]
    }
    /// The median; leaves the values in no particular order.
    fn median(&mut self) -> f64 {
        median_in_place(self.values())
    }
}

/// (window in days, Mann-Kendall z it needs): a short window finds a fast burn within days (at most
/// one of its ten pairs of days out of order, and its last three days rising, see `burn_on`), the
/// longer ones a slow one that the daily noise hides from five points.
const BURN_WINDOWS: [(usize, f64); 3] = [(5, 1.7), (10, 2.33), (15, 2.33)];

/// How far (in standard errors of a three-day mean of daily noise) the last three days must stand
/// above the level before for the five-day window to fire without a clean rise (see `burn_on`).
const EARLY_SHIFT_Z: f64 = 8.0;

/// A sustained rise of daily totals (weekly rhythm taken out): Theil-Sen slope of log totals >=
/// the minimum growth, Mann-Kendall significant, and the last day above the level before the window.
/// Days that keep firing (with gaps of up to 3 days) are one slow burn.
pub fn slow_burns(x: &[f64], first_hour_of_week: usize, th: &Thresholds) -> Vec<Raw> {
    let offset = (HOURS_PER_DAY - first_hour_of_week % HOURS_PER_DAY) % HOURS_PER_DAY;
    let weekday0 = ((first_hour_of_week + offset) / HOURS_PER_DAY) % 7;
    let totals = daily_totals(x, offset);
    let factors = weekend_factors(&totals, weekday0);
    let mut out: Vec<Raw> = Vec::new();
    let mut last_fire: Option<usize> = None;
    for (d, &factor) in factors.iter().enumerate() {
        let Some(hit) = burn_on(&totals, weekday0, factor, d, th) else {
            // An open burn goes on while its last week still rises at the minimum growth, even
            // once the rise no longer stands out of a history that now holds the burn itself.
            if last_fire.is_some_and(|l| d <= l + 3) && still_rising(&totals, d, th) {
                last_fire = Some(d);
            }
            continue;
        };
        let detected = offset + (d + 1) * HOURS_PER_DAY;
        match (out.last_mut(), last_fire) {
            (Some(r), Some(l)) if d <= l + 3 => {
                r.detected = r.detected.min(detected);
                r.observed_per_day = hit.observed;
                r.growth = Some(hit.growth);
                r.slope_bytes = Some(hit.slope_bytes);
                r.score = r.score.max(hit.z);
                r.p_value = Some(p_one_sided(r.score));
            }
            (prev, l) => {
                if let (Some(p), Some(l)) = (prev, l) {
                    p.end = Some(offset + (l + 1) * HOURS_PER_DAY);
                }
                let mut r = Raw::new(Kind::SlowBurn, offset + hit.start_day * HOURS_PER_DAY);
                r.detected = detected;
                r.expected_per_day = hit.expected;
                r.observed_per_day = hit.observed;
                r.score = hit.z;
                r.growth = Some(hit.growth);
                r.p_value = Some(p_one_sided(hit.z));
                r.slope_bytes = Some(hit.slope_bytes);
                out.push(r);
            }
        }
        last_fire = Some(d);
    }
    // A burn that stopped firing more than three days before the data ends has ended.
    if let (Some(r), Some(l)) = (out.last_mut(), last_fire)
        && l + 3 < totals.len()
    {
        r.end = Some(offset + (l + 1) * HOURS_PER_DAY);
    }
    out
}

/// The Theil-Sen growth of the last 7 daily totals is at least the minimum.
fn still_rising(totals: &[f64], d: usize, th: &Thresholds) -> bool {
    let logs: Vec<f64> = totals[d.saturating_sub(6)..=d]
        .iter()
        .map(|v| if v.is_finite() && *v > 0.0 { v.ln() } else { f64::NAN })
        .collect();
    logs.iter().filter(|v| v.is_finite()).count() >= 5 && theil_sen(&logs).exp() - 1.0 >= th.burn_min_growth
}

struct BurnHit {
    start_day: usize,
    z: f64,
    growth: f64,
    slope_bytes: f64,
    expected: f64,
    observed: f64,
}

/// Whether day `d` fires, `factor` the weekend factor of that day (see [`weekend_factors`]).
fn burn_on(totals: &[f64], weekday0: usize, factor: f64, d: usize, th: &Thresholds) -> Option<BurnHit> {
    let last = totals[d];
    if !last.is_finite() || last <= 0.0 {
        return None;
    }
    // Cheap test first: most series have not risen above the week before at all (a weekend day
    // is not compared raw: its rise shows only once the weekly rhythm is taken out).
    let weekday = (weekday0 + d) % 7 < 5;
    let mut week =
        Few::<7>::of((d.saturating_sub(7)..d).map(|i| totals[i]).filter(|v| v.is_finite() && *v > 0.0));
    if weekday && week.len() >= 3 && last < week.median() * (1.0 + th.burn_min_growth) {
        return None;
    }
    let deseason = |i: usize| {
        let v = totals[i];
        if (weekday0 + i) % 7 >= 5 { v / factor } else { v }
    };
    let present = |i: usize| totals[i].is_finite() && totals[i] > 0.0;
    for (w, z_needed) in BURN_WINDOWS {
        if d + 1 < w + 2 {
            continue;
        }
        // A window of `w` days with data: a day missing in it (an outage of more than 4 hours)
        // moves its start back a day, up to two, instead of leaving the test one point short.
        let mut a = d + 1 - w;
        while a > 2 && (a..=d).filter(|&i| present(i)).count() < w && d + 1 - a < w + 2 {
            a -= 1;
        }
        // The level before the window: the median of up to 7 days before it.
        let mut before =
            Few::<7>::of((a.saturating_sub(7)..a).map(deseason).filter(|v| v.is_finite() && *v > 0.0));
        if before.len() < 2 {
            continue;
        }
        let level = before.median();
        let now = deseason(d);
        // Cheap tests first: most series have not risen at all.
        if now < level * (1.0 + th.burn_min_growth).powi(2) || now - level < th.min_bytes {
            continue;
        }
        // The rise must stand out of the series' own day-to-day noise: log(now / level) at least
        // 3 robust sigmas of the daily totals of up to four weeks before the window.
        let mut history = Few::<28>::of(
            (a.saturating_sub(28)..a).map(deseason).filter(|v| v.is_finite() && *v > 0.0).map(f64::ln),
        );
        let noise = if history.len() >= 5 {
            let m = history.median();
            history.values().iter_mut().for_each(|v| *v = (*v - m).abs());
            MAD_TO_SIGMA * history.median()
        } else {
            0.1
        };
        if (now / level).ln() < 3.0 * noise.max(0.01) {
            continue;
        }
        let logs: Vec<f64> =
            (a..=d).map(&deseason).map(|v| if v > 0.0 { v.ln() } else { f64::NAN }).collect();
        let (z, n) = mann_kendall(&logs);
        if n + 1 < w {
            continue;
        }
        let clear = level * (2.0 * noise.max(0.01)).exp();
        let mut last3 = (a..=d).rev().filter(|&i| present(i)).map(deseason);
        let (v0, v1, v2) = (last3.next(), last3.next(), last3.next());
        // Five points say little: there, either the last three days rise one after the other, the
        // last two clearly above the level before, and the trend test agrees; or those three days
        // stand together far above the level (their mean log excess at least EARLY_SHIFT_Z
        // standard errors of a three-day mean) and the last is above the first. A noisy day
        // between two rising ones breaks the first and not the second, which is what lets a burn
        // be found on its third day.
        let shifted = match (v0, v1, v2) {
            (Some(v0), Some(v1), Some(v2)) if v0 > v2 && v0.min(v1).min(v2) > clear => {
                let excess = [v0, v1, v2].iter().map(|v| (v / level).ln()).sum::<f64>() / 3.0;
                excess / (noise.max(0.01) / 3f64.sqrt()) >= EARLY_SHIFT_Z
            }
            _ => false,
        };
        let rising = matches!((v0, v1, v2), (Some(v0), Some(v1), Some(v2)) if v0 > v1 && v1 > v2);
        let trend = z >= z_needed && (w > 5 || (rising && v1.is_some_and(|v1| v1 > clear)));
        if !(trend || (w == 5 && shifted)) {
            continue;
        }
        let slope = theil_sen(&logs);
        let growth = slope.exp() - 1.0;
        if growth < th.burn_min_growth {
            continue;
        }
        // Where the rise starts: walking back from today, the first of the days that all stand
        // above the level before the window by more than twice its noise.
        let above = level * (2.0 * noise.max(0.01)).exp();
        let mut start_day = d;
        while start_day > a && deseason(start_day - 1) > above {
            start_day -= 1;
        }
        let raw: Vec<f64> = (a..=d).map(deseason).collect();
        return Some(BurnHit {
            start_day,
            z,
            growth,
            slope_bytes: theil_sen(&raw).max(0.0),
            expected: level,
            observed: now,
        });
    }
    None
}

/// A subject never seen before: its first hour with bytes, once the workspace has watched for the
/// learning period (what was there when egressor started watching is not new), and once it carries
/// at least the minimum bytes per day.
pub fn new_endpoint(x: &[f64], th: &Thresholds) -> Option<Raw> {
    let min_bytes = th.min_bytes / 10.0;
    let first = x.iter().position(|v| *v > 0.0)?;
    if first < th.learn_hours {
        return None;
    }
    let mut sum = 0.0;
    let mut detected = None;
    for (t, v) in x.iter().enumerate().skip(first).take(7 * HOURS_PER_DAY) {
        if v.is_nan() {
            continue;
        }
        sum += v;
        let hours = (t + 1 - first) as f64;
        // Its rate so far reaches the minimum per day, or a day's bytes reach it.
        if sum * HOURS_PER_DAY as f64 / hours.max(1.0) >= min_bytes && sum >= min_bytes / 24.0 {
            detected = Some(t + 1);
            break;
        }
    }
    let detected = detected?;
    let day: f64 = x[first..(first + HOURS_PER_DAY).min(x.len())].iter().filter(|v| !v.is_nan()).sum();
    let last = x.iter().rposition(|v| *v > 0.0).unwrap_or(first);
    let mut r = Raw::new(Kind::NewEndpoint, first);
    r.detected = detected;
    r.end = (last + HOURS_PER_DAY < x.len()).then_some(last + 1);
    r.observed_per_day = day * HOURS_PER_DAY as f64 / (x.len() - first).min(HOURS_PER_DAY) as f64;
    Some(r)
}

/// Steady low-volume outbound at all hours: over the last 24 hours, bytes in (nearly) every hour
/// present, night hours (00-06 UTC) at least `leak_night_ratio` of the afternoon's (12-18 UTC), a
/// small spread, mostly outbound, and at most `leak_max_per_hour`. Checked every 6 hours;
/// consecutive checks that hold are one leak, starting where its unbroken presence started.
pub fn leaks(x: &[f64], out: &[f32], first_hour_of_week: usize, th: &Thresholds) -> Vec<Raw> {
    let mut found: Vec<Raw> = Vec::new();
    let mut last_fire = None;
    let n = x.len();
    let checks = (HOURS_PER_DAY..=n).filter(|t| t % 6 == 0 || *t == n);
    for t in checks {
        let Some(rate) = leak_at(x, out, first_hour_of_week, t, th) else { continue };
        match (found.last_mut(), last_fire) {
            (Some(r), Some(l)) if t <= l + 12 => r.observed_per_day = rate,
            _ => {
                let mut start = t - 1;
                while start > 0 && (x[start - 1] > 0.0 || x[start - 1].is_nan()) {
                    start -= 1;
                }
                while x[start].is_nan() {
                    start += 1;
                }
                let mut r = Raw::new(Kind::Leak, start);
                r.detected = t;
                r.observed_per_day = rate;
                found.push(r);
            }
        }
        last_fire = Some(t);
    }
    if let (Some(r), Some(l)) = (found.last_mut(), last_fire)
        && l + 12 < n
    {
        r.end = Some(l);
    }
    found
}

fn leak_at(x: &[f64], out: &[f32], how0: usize, t: usize, th: &Thresholds) -> Option<f64> {
    let w = &x[t - HOURS_PER_DAY..t];
    let present = w.iter().filter(|v| !v.is_nan()).count();
    let busy = w.iter().filter(|v| **v > 0.0).count();
    if present < 20 || (busy as f64) < 0.95 * present as f64 {
        return None;
    }
    // Cheapest tests first (each is a condition of its own, so their order changes nothing but the
    // work): most series are quiet at night, which two medians of six hours tell.
    let hour_of_day = |i: usize| (how0 + i) % HOURS_PER_DAY;
    let (mut night, mut day) = (Few::<6>::new(), Few::<6>::new());
    for (i, &v) in x.iter().enumerate().take(t).skip(t - HOURS_PER_DAY) {
        if v.is_nan() {
            continue;
        }
        match hour_of_day(i) {
            0..=5 => night.push(v),
            12..=17 => day.push(v),
            _ => {}
        }
    }
    if night.len() == 0 || day.len() == 0 {
        return None;
    }
    if night.median() < th.leak_night_ratio * day.median() {
        return None;
    }
    let (o, all): (f64, f64) = (t - HOURS_PER_DAY..t)
        .filter(|&i| !x[i].is_nan())
        .fold((0.0, 0.0), |(o, a), i| (o + out[i] as f64, a + x[i]));
    if all <= 0.0 || o / all < 0.6 {
        return None;
    }
    // Sorted: the median, and the rate summed in that order.
    let mut v = Few::<24>::of(w.iter().copied().filter(|v| !v.is_nan()));
    v.values().sort_unstable_by(f64::total_cmp);
    let median = median_sorted(v.values());
    if median > th.leak_max_per_hour || median * (HOURS_PER_DAY as f64) < th.min_bytes / 10.0 {
        return None;
    }
    let mut dev = Few::<24>::of(v.values().iter().map(|x| (x - median).abs()));
    if 1.4826 * dev.median() > th.leak_max_spread * median {
        return None;
    }
    Some(v.values().iter().sum::<f64>() * HOURS_PER_DAY as f64 / v.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn th() -> Thresholds {
        Thresholds { min_bytes: 1000.0, ..Thresholds::default() }
    }

    fn diurnal(days: usize, level: f64) -> Vec<f64> {
        (0..days * 24)
            .map(|i| {
                let h = (i % 24) as f64;
                level
                    * (0.55 + 0.45 * ((h - 15.0) / 24.0 * std::f64::consts::TAU).cos())
                    * (1.0 + 0.05 * (((i * 7919) % 13) as f64 / 13.0 - 0.5))
            })
            .collect()
    }

    #[test]
    fn a_spike_has_a_start_an_end_and_its_excess() {
        let mut x = diurnal(14, 1e6);
        for v in &mut x[12 * 24 + 14..12 * 24 + 16] {
            *v *= 8.0;
        }
        let s = spikes(&x, &mut Expectation::new(&x), &th());
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!((s[0].start, s[0].end), (12 * 24 + 14, Some(12 * 24 + 16)));
        assert!(s[0].observed_per_day > 5.0 * s[0].expected_per_day);
        let quiet = diurnal(14, 1e6);
        assert!(
            spikes(&quiet, &mut Expectation::new(&quiet), &th()).is_empty(),
            "no spike in a quiet series"
        );
    }

    #[test]
    fn a_burn_is_found_within_three_days_and_a_flat_series_is_not_a_burn() {
        // Flat for 4 days, then +12% a day.
        let x: Vec<f64> = (0..14 * 24)
            .map(|i| {
                let d = i / 24;
                let g = if d >= 4 { 1.12f64.powi(d - 3) } else { 1.0 };
                1e6 * g * (1.0 + 0.03 * (((i * 31) % 7) as f64 / 7.0 - 0.5))
            })
            .collect();
        let b = slow_burns(&x, 0, &th());
        assert_eq!(b.len(), 1, "{b:?}");
        assert!(b[0].detected <= 7 * 24, "detected at hour {}", b[0].detected);
        assert!((b[0].growth.unwrap() - 0.12).abs() < 0.03, "{:?}", b[0].growth);
        assert!(b[0].p_value.unwrap() < 0.05);
        assert!(slow_burns(&diurnal(28, 1e6), 0, &th()).is_empty());
    }

    /// Three weeks with a weekly rhythm, a day lost to an outage just before a +10%/day burn, and
    /// a dip on the burn's second day: found on its third day, all the same.
    #[test]
    fn a_burn_behind_a_missing_day_and_a_dip_is_found_on_its_third_day() {
        let day_factor = |d: usize| match d {
            _ if d % 7 >= 5 => 0.6,
            15 => 1.10,
            16 => 1.05,
            17.. => 1.10f64.powi(d as i32 - 14),
            _ => 1.0,
        };
        let x: Vec<f64> = (0..21 * 24)
            .map(|i| {
                let d = i / 24;
                if d == 14 && i % 24 < 8 {
                    return f64::NAN;
                }
                1e6 * day_factor(d) * (1.0 + 0.03 * (((i * 31) % 7) as f64 / 7.0 - 0.5))
            })
            .collect();
        let b = slow_burns(&x, 0, &th());
        assert_eq!(b.len(), 1, "{b:?}");
        assert!(b[0].detected <= 18 * 24, "72 h after the burn's start: detected at hour {}", b[0].detected);
        assert!(b[0].start >= 15 * 24, "{b:?}");
        // The same weeks without the burn: the rhythm and the missing day are not a burn.
        let quiet: Vec<f64> = x
            .iter()
            .enumerate()
            .map(|(i, v)| if i / 24 >= 15 && (i / 24) % 7 < 5 { v / day_factor(i / 24) } else { *v })
            .collect();
        assert!(slow_burns(&quiet, 0, &th()).is_empty());
    }

    #[test]
    fn new_endpoints_and_leaks() {
        let mut x = vec![0.0; 10 * 24];
        for v in &mut x[5 * 24 + 9..] {
            *v = 50_000.0;
        }
        let out: Vec<f32> = x.iter().map(|v| *v as f32 * 0.98).collect();
        let n = new_endpoint(&x, &th()).unwrap();
        assert_eq!((n.start, n.detected), (5 * 24 + 9, 5 * 24 + 10));
        let l = leaks(&x, &out, 0, &th());
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].start, 5 * 24 + 9);
        assert!(l[0].detected <= l[0].start + 30);
        // Diurnal traffic (quiet nights) is not a leak; neither is what was there from the start.
        let d = diurnal(10, 50_000.0);
        let dout: Vec<f32> = d.iter().map(|v| *v as f32).collect();
        assert!(leaks(&d, &dout, 0, &th()).is_empty());
        assert!(new_endpoint(&d, &th()).is_none());
        assert!(p_one_sided(1.645) > 0.049 && p_one_sided(1.645) < 0.051);
    }
}
