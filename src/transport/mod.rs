//! The batch wire format between agents and the CLI, and the pull client.
//!
//! An agent numbers its batches 1, 2, 3... within an *instance* (a random id created with its spool
//! directory). The client remembers, per agent URL, the instance and the last sequence number it
//! ingested, and asks for batches after it. Batch ids are `<node>-<instance>-<seq>`, so a batch
//! fetched twice (a pull killed after ingest but before it saved its cursor) is skipped by the
//! workspace's idempotent ingest: nothing is lost and nothing counts twice.

pub mod link;
pub mod live;
pub mod pull;

use crate::model::{FlowRecord, Timestamp};
use serde::{Deserialize, Serialize};

/// The header that carries an agent's token where `Authorization` cannot: through the Kubernetes
/// API server's pods/proxy, which consumes the caller's `Authorization` for its own authentication.
pub const TOKEN_HEADER: &str = "x-egressor-token";

/// Version of the wire format, sent as `schema` in every page.
pub const WIRE_SCHEMA: &str = "egressor.batches/v1";

/// What the agent knows it did not capture or could not keep. Never silent: it travels with the data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loss {
    /// Socket-map inserts the kernel refused in this window (map full): those sockets' bytes are missing.
    pub map_insert_failures: u64,
    /// Sockets evicted from the full kernel map before they closed: bytes since their last drain lost.
    #[serde(default)]
    pub sockets_evicted: u64,
    /// Batches the spool dropped (oldest first) before this one because it hit its size bound.
    pub spool_dropped_batches: u64,
    pub spool_dropped_records: u64,
}

impl Loss {
    pub fn is_zero(&self) -> bool {
        *self == Loss::default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub batch_id: String,
    pub seq: u64,
    pub node: String,
    pub created_at: Timestamp,
    pub window_start: Timestamp,
    pub window_end: Timestamp,
    #[serde(default)]
    pub loss: Loss,
    pub records: Vec<FlowRecord>,
}

/// One response of `GET /v1/batches?instance=I&after=SEQ&limit=N`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchPage {
    pub schema: String,
    pub instance: String,
    pub node: String,
    pub batches: Vec<Batch>,
    /// Pass as `after` next time.
    pub cursor: u64,
    /// More batches are waiting after this page.
    pub more: bool,
}

/// `GET /v1/info`: an agent's identity and health, what `egressor status` lists per node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// The wire format it serves ([`WIRE_SCHEMA`]).
    pub schema: String,
    /// The egressor version the agent runs.
    pub version: String,
    pub node: String,
    pub instance: String,
    pub spool_bytes: u64,
    pub spool_max_bytes: u64,
    pub spool_batches: u64,
    /// When a puller last acknowledged batches.
    pub last_ack: Option<Timestamp>,
    /// Totals since the agent started.
    pub loss: Loss,
}

/// Version of `GET /v1/pods`.
pub const PODS_SCHEMA: &str = "egressor.pods/v1";

/// `GET /v1/pods`: the pods of the agent's node its watch saw, with their lifetimes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodsPage {
    pub schema: String,
    pub node: String,
    pub pods: Vec<crate::model::k8s::PodMeta>,
}

impl AgentInfo {
    /// An agent of another version: fine while it speaks the same wire format, but said.
    pub fn version_problem(&self) -> Option<String> {
        let ours = env!("CARGO_PKG_VERSION");
        if self.schema != WIRE_SCHEMA {
            return Some(format!(
                "runs egressor {} speaking {}, this CLI ({ours}) understands {WIRE_SCHEMA}: run `egressor deploy` with this version to upgrade the agents",
                self.version, self.schema
            ));
        }
        (self.version != ours).then(|| {
            format!(
                "runs egressor {}, this CLI is {ours} (same wire format, so pulls work): `egressor deploy` upgrades it",
                self.version
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(version: &str, schema: &str) -> AgentInfo {
        AgentInfo {
            schema: schema.into(),
            version: version.into(),
            node: "n".into(),
            instance: "i".into(),
            spool_bytes: 0,
            spool_max_bytes: 1,
            spool_batches: 0,
            last_ack: None,
            loss: Default::default(),
        }
    }

    #[test]
    fn an_agent_of_another_version_is_named_with_what_to_do() {
        assert_eq!(info(env!("CARGO_PKG_VERSION"), WIRE_SCHEMA).version_problem(), None);
        let older = info("0.0.9", WIRE_SCHEMA).version_problem().unwrap();
        assert!(
            older.contains("runs egressor 0.0.9")
                && older.contains("pulls work")
                && older.contains("egressor deploy"),
            "{older}"
        );
        let other_wire = info("9.0.0", "egressor.batches/v2").version_problem().unwrap();
        assert!(other_wire.contains("egressor.batches/v2") && other_wire.contains("upgrade"), "{other_wire}");
    }
}
