//! Egressor: find, explain and cut unnecessary or expensive data transfer.
//!
//! Modules are listed in pipeline order; each depends only on the ones before it (and `model`):
//!
//! ```text
//! kernel probes (ebpf-probes/*.bpf.c)
//!   -> capture    load/attach the probes, drain per-socket counters         (the only aya user)
//!   -> agent      counters -> windowed flow records, attribution, spool, serving
//!   -> transport  the batch wire format and the pull client
//!   -> cluster    Kubernetes: deploy the agents, reach them through the API server, the cluster's
//!                 metadata that names every flow's pod and workload      (the only kube-rs user)
//!   -> import     files (JSON lines, Parquet, AWS VPC Flow Logs) -> flow records
//!   -> demo       a labelled synthetic scenario -> flow records
//!   -> store      the DuckDB workspace: batches, flows, hourly rollups       (the only duckdb user)
//!   -> engines    pure functions over model types: classify, cost, graph, anomalies
//!   -> views      tables, JSON, CSV, TUI                                    (the only comfy-table user)
//! ```
//! `cli` holds every flag (the only clap user); `commands` has one file per command, which calls
//! the stages above and hands the result to a view; `model` is the vocabulary all of them share.
//! Who may import whom is in docs/architecture.md ("The module graph") and checked by a test.

pub mod agent;
pub mod capture;
pub mod claude;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod demo;
pub mod engines;
pub mod import;
pub mod model;
pub mod store;
pub mod transport;
pub mod views;
