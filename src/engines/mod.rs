//! Pure functions over model types: pricing tables, the network topology, classification, cost and
//! savings (and, as they land, graph, baselines and anomalies). Nothing here does I/O except loading
//! a user's pricing or topology file.

pub mod anomaly;
pub mod classify;
pub mod cloud_ranges;
pub mod compare;
pub mod cost;
pub mod destinations;
pub mod enrich;
pub mod explain;
pub mod graph;
pub mod honesty;
pub mod live;
pub mod observations;
pub mod policy;
pub mod pricing;
pub mod reconcile;
pub mod redact;
pub mod savings;
pub mod topology;
