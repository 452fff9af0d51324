//! The shared vocabulary of every stage: one flow record is the bytes that moved between one local
//! endpoint and one remote endpoint, seen on one node, during one time window.
//!
//! Everything upstream (probes, agent, importers, demo) produces [`FlowRecord`]s; everything downstream
//! (workspace, engines, views) consumes them. The JSON shape of a record is the wire and file format
//! (`docs/data-model.md`); changing it means bumping [`FLOW_SCHEMA_VERSION`] and writing a migration.

pub mod fxhash;
pub mod k8s;
pub mod rng;
mod time;
mod traffic;

pub use time::{TimeBound, Timestamp, parse_time_bound, share_of_window};
pub use traffic::{HourlyTraffic, Party, TrafficRow, traffic_rows};

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

/// Version of the flow record schema (JSON fields and workspace storage); the workspace's schema
/// version after all migrations. 2: flows stored as integers with node and endpoint dictionaries.
pub const FLOW_SCHEMA_VERSION: u32 = 2;

/// Transport protocol of a flow. Anything that is neither TCP nor UDP is `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Other,
}

/// Which side opened the connection. UDP and flows seen mid-way are `unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Initiator {
    Local,
    Remote,
    Unknown,
}

/// Where a record entered the workspace from. Demo data is always labelled so it can never be
/// mistaken for measured traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Agent,
    Import,
    Demo,
}

macro_rules! str_enum {
    ($ty:ident { $($variant:ident => $s:literal),+ $(,)? }) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $s),+ }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($ty::$variant),)+ _ => None }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
str_enum!(Proto { Tcp => "tcp", Udp => "udp", Other => "other" });
str_enum!(Initiator { Local => "local", Remote => "remote", Unknown => "unknown" });
str_enum!(Source { Agent => "agent", Import => "import", Demo => "demo" });

/// One side of a flow. Only `ip` and `port` are always known; the rest is attribution that the
/// agent (cgroup, process, container, pod) or enrichment (workload, service, zone) fills in where it can.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// The pod's UID as the agent reads it from the cgroup path; enrichment maps it to `pod`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

impl Endpoint {
    /// An endpoint with nothing known but its address.
    pub fn addr(ip: IpAddr, port: u16) -> Self {
        Endpoint {
            ip,
            port,
            process: None,
            pid: None,
            cgroup: None,
            container_id: None,
            pod_uid: None,
            pod: None,
            namespace: None,
            workload_kind: None,
            workload_name: None,
            service: None,
            node: None,
            zone: None,
            region: None,
        }
    }
}

/// One window on one node between two endpoints. Bytes are IP-layer bytes (IP and transport headers
/// included, payload never read) because that is what clouds meter; see `docs/adr/0002-byte-accounting.md`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowRecord {
    pub window_start: Timestamp,
    pub window_end: Timestamp,
    pub node: String,
    pub local: Endpoint,
    pub remote: Endpoint,
    pub proto: Proto,
    pub ip_version: u8,
    pub initiator: Initiator,
    /// Bytes sent from local to remote.
    pub bytes_out: u64,
    /// Bytes received by local from remote.
    pub bytes_in: u64,
    pub packets_out: u64,
    pub packets_in: u64,
    #[serde(default)]
    pub connections_opened: u32,
    #[serde(default)]
    pub connections_closed: u32,
    /// Set by whoever produced the batch; absent in hand-written import files (the importer assigns one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

impl FlowRecord {
    /// Checks the invariants that the type system cannot: returns the offending field and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.window_end < self.window_start {
            return Err((
                "window_end",
                format!("{} is before window_start {}", self.window_end, self.window_start),
            ));
        }
        if self.ip_version != 4 && self.ip_version != 6 {
            return Err(("ip_version", format!("must be 4 or 6, got {}", self.ip_version)));
        }
        for (field, ep) in [("local.ip", &self.local), ("remote.ip", &self.remote)] {
            let v = if ep.ip.is_ipv4() { 4 } else { 6 };
            if v != self.ip_version {
                return Err((field, format!("{} is IPv{v} but ip_version is {}", ep.ip, self.ip_version)));
            }
        }
        if self.node.is_empty() {
            return Err(("node", "must not be empty".into()));
        }
        if self.batch_id.as_ref().is_some_and(|b| b.is_empty()) {
            return Err(("batch_id", "must not be empty when present".into()));
        }
        Ok(())
    }
}

/// A known event in a labelled scenario (the demo's injected spike, leak, ...): ground truth that
/// anomaly detectors are scored against.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelledEvent {
    pub event_id: String,
    /// `spike`, `slow-burn`, `new-endpoint` or `leak`.
    pub kind: &'static str,
    pub started_at: Timestamp,
    pub ended_at: Timestamp,
    /// The workload whose behaviour changed (`namespace/name`).
    pub subject: String,
    /// The remote side involved (`namespace/name` or an address).
    pub remote: Option<String>,
    pub description: String,
}

/// A byte count as people write it: `1048576`, `64KiB`, `256 MiB`, `1GiB`, `2TiB` (also KB, MB, GB,
/// TB as powers of 1000). Whole numbers only: a byte limit is compared exactly against counted bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("`{t}`: expected a size such as 256MiB"))?;
    let mul: u64 = match unit.trim_start() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => {
            return Err(format!("`{t}`: unknown unit `{other}` (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"));
        }
    };
    n.checked_mul(mul).ok_or_else(|| format!("`{t}` is too large"))
}

/// Formats a byte count the way SREs read them: binary units, three significant digits.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if v >= 100.0 {
        format!("{v:.0} {}", UNITS[unit])
    } else if v >= 10.0 {
        format!("{v:.1} {}", UNITS[unit])
    } else {
        format!("{v:.2} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_picks_binary_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.50 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.00 GiB");
        assert_eq!(human_bytes(123 * 1024 * 1024), "123 MiB");
    }

    #[test]
    fn validate_names_the_field_at_fault() {
        let mut r = FlowRecord {
            window_start: Timestamp::from_micros(10),
            window_end: Timestamp::from_micros(5),
            node: "n".into(),
            local: Endpoint::addr("10.0.0.1".parse().unwrap(), 1),
            remote: Endpoint::addr("10.0.0.2".parse().unwrap(), 2),
            proto: Proto::Tcp,
            ip_version: 4,
            initiator: Initiator::Local,
            bytes_out: 1,
            bytes_in: 0,
            packets_out: 1,
            packets_in: 0,
            connections_opened: 0,
            connections_closed: 0,
            batch_id: None,
            source: None,
        };
        assert_eq!(r.validate().unwrap_err().0, "window_end");
        r.window_end = Timestamp::from_micros(20);
        r.ip_version = 6;
        assert_eq!(r.validate().unwrap_err().0, "local.ip");
        r.ip_version = 4;
        assert!(r.validate().is_ok());
    }
}

/// One tick of a live feed: the records of `[start, end)`.
#[derive(Debug, Clone)]
pub struct FeedTick {
    pub records: Vec<FlowRecord>,
    pub start: Timestamp,
    pub end: Timestamp,
}

/// Where `egressor top` gets flow records from, one tick at a time: local capture (`agent`),
/// agents over HTTP (`transport`) or a replay of the workspace (`store`).
pub trait FlowFeed {
    /// The next tick's records; `None` when the feed has ended (a replay reached its end).
    fn tick(&mut self) -> anyhow::Result<Option<FeedTick>>;
    /// For the title line: "local capture on host", "replay 60x", ...
    fn describe(&self) -> String;
}
