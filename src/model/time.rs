//! Time as the workspace stores it: microseconds since the Unix epoch, UTC. One integer type keeps
//! windows cheap to compare and to hand to DuckDB, and RFC 3339 text is only produced at the edges.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// The part of `amount` that `[from, to)` holds of a window `[start, end)` (microseconds), in
/// proportion to time. Shares are differences of rounded-down cumulative amounts, so the parts of
/// one window over consecutive pieces are integers that add up to `amount` exactly. The hourly
/// rollup and the replay feed both cut records this way.
pub fn share_of_window(amount: u64, (start, end): (i64, i64), (from, to): (i64, i64)) -> u64 {
    let total = (end - start) as i128;
    let upto = |at: i64| (amount as i128 * (at - start) as i128 / total) as u64;
    upto(to) - upto(from)
}

impl Timestamp {
    pub const MICROS_PER_SEC: i64 = 1_000_000;
    pub const MICROS_PER_HOUR: i64 = 3_600 * Self::MICROS_PER_SEC;
    pub const MICROS_PER_DAY: i64 = 24 * Self::MICROS_PER_HOUR;

    pub const fn from_micros(us: i64) -> Self {
        Timestamp(us)
    }
    pub const fn from_secs(s: i64) -> Self {
        Timestamp(s * Self::MICROS_PER_SEC)
    }
    pub const fn micros(self) -> i64 {
        self.0
    }
    pub fn now() -> Self {
        Timestamp(Utc::now().timestamp_micros())
    }
    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.0).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
    /// Start of the UTC hour containing this instant (rollups are keyed by it).
    pub fn floor_hour(self) -> Self {
        Timestamp(self.0.div_euclid(Self::MICROS_PER_HOUR) * Self::MICROS_PER_HOUR)
    }
    pub fn floor_day(self) -> Self {
        Timestamp(self.0.div_euclid(Self::MICROS_PER_DAY) * Self::MICROS_PER_DAY)
    }
    /// Start of the UTC calendar month containing this instant: monthly price tiers restart there.
    pub fn floor_month(self) -> Self {
        use chrono::Datelike;
        let d = self.to_datetime();
        let first = Utc.with_ymd_and_hms(d.year(), d.month(), 1, 0, 0, 0).single().expect("valid date");
        Timestamp(first.timestamp_micros())
    }
    /// Start of the next UTC calendar month.
    pub fn next_month(self) -> Self {
        Timestamp(self.floor_month().0 + 32 * Self::MICROS_PER_DAY).floor_month()
    }
    pub fn add_micros(self, us: i64) -> Self {
        Timestamp(self.0.saturating_add(us))
    }

    /// Parses RFC 3339 (`2026-11-20T10:00:00Z`, any offset), or a naive `2026-11-20T10:00:00` /
    /// `2026-11-20 10:00:00` / `2026-11-20` taken as UTC.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
            return Ok(Timestamp(dt.timestamp_micros()));
        }
        for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
            if let Ok(ndt) = NaiveDateTime::parse_from_str(s, fmt) {
                return Ok(Timestamp(Utc.from_utc_datetime(&ndt).timestamp_micros()));
            }
        }
        if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            let ndt = d.and_hms_opt(0, 0, 0).expect("midnight exists");
            return Ok(Timestamp(Utc.from_utc_datetime(&ndt).timestamp_micros()));
        }
        Err(format!("`{s}` is not a time: use RFC 3339 (2026-11-20T10:00:00Z) or a date (2026-11-20)"))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_datetime().to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A `--since`/`--until` argument before it is resolved against "now".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeBound {
    /// That long before now (`7d`, `24h`, `90m`, `30s`, `2w`).
    Ago(i64),
    At(Timestamp),
}

impl TimeBound {
    pub fn resolve(self, now: Timestamp) -> Timestamp {
        match self {
            TimeBound::Ago(us) => now.add_micros(-us),
            TimeBound::At(t) => t,
        }
    }
}

/// Parses a relative duration (`7d`, `36h`, `15m`, `30s`, `2w`), `now`, or an absolute time.
pub fn parse_time_bound(s: &str) -> Result<TimeBound, String> {
    let t = s.trim();
    if t == "now" {
        return Ok(TimeBound::Ago(0));
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if !num.is_empty() && !unit.is_empty() && unit.chars().all(|c| c.is_ascii_alphabetic()) {
        let n: i64 = num.parse().map_err(|_| format!("`{t}`: number too large"))?;
        let per = match unit {
            "s" => Timestamp::MICROS_PER_SEC,
            "m" | "min" => 60 * Timestamp::MICROS_PER_SEC,
            "h" => Timestamp::MICROS_PER_HOUR,
            "d" => Timestamp::MICROS_PER_DAY,
            "w" => 7 * Timestamp::MICROS_PER_DAY,
            _ => {
                return Err(format!("`{t}`: unknown unit `{unit}` (use s, m, h, d or w, e.g. 7d)"));
            }
        };
        return n.checked_mul(per).map(TimeBound::Ago).ok_or_else(|| format!("`{t}`: duration too large"));
    }
    Timestamp::parse(t)
        .map(TimeBound::At)
        .map_err(|e| format!("{e}, or a duration before now such as 7d, 24h, 30m"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_rfc3339() {
        let t = Timestamp::parse("2026-11-20T10:00:00Z").unwrap();
        assert_eq!(t.to_string(), "2026-11-20T10:00:00Z");
        assert_eq!(Timestamp::parse("2026-11-20").unwrap().to_string(), "2026-11-20T00:00:00Z");
        assert_eq!(
            Timestamp::parse("2026-11-20T12:00:00+02:00").unwrap().to_string(),
            "2026-11-20T10:00:00Z"
        );
        assert_eq!(Timestamp::from_micros(1_500_000).to_string(), "1970-01-01T00:00:01.500Z");
        assert!(Timestamp::parse("yesterday").is_err());
    }

    #[test]
    fn time_bounds() {
        let now = Timestamp::parse("2026-11-20T10:00:00Z").unwrap();
        let b = parse_time_bound("7d").unwrap().resolve(now);
        assert_eq!(b.to_string(), "2026-11-13T10:00:00Z");
        assert_eq!(parse_time_bound("90m").unwrap().resolve(now).to_string(), "2026-11-20T08:30:00Z");
        assert!(parse_time_bound("7y").unwrap_err().contains("unknown unit"));
        assert_eq!(parse_time_bound("now").unwrap().resolve(now), now);
        assert_eq!(now.floor_hour(), now);
        assert_eq!(now.add_micros(1).floor_day().to_string(), "2026-11-20T00:00:00Z");
    }
}
