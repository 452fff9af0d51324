//! One file per command. A command takes its resolved arguments and the [`Settings`] every command
//! shares, calls the store and the engines, hands the result to a view and returns an exit code;
//! the file is the one place that reads how its command works, start to finish. What several
//! commands stand on (the price book, the topology, a priced period, a workspace opened for
//! ingest) is loaded in [`load`], not copied.
//!
//! Adding a command: its flags go in `cli` (an `XArgs` struct and a `Command` variant), its work in
//! `commands/x.rs` as `pub fn run(settings, args, out) -> Result<ExitCode>`, its output in a view,
//! and one dispatch line in `main.rs`.
//!
//! [`Settings`]: crate::cli::Settings

pub mod agent;
pub mod anomalies;
pub mod ask;
pub mod baseline;
pub mod check;
pub mod completions;
pub mod cost;
pub mod demo;
pub mod deploy;
pub mod explain;
pub mod export;
pub mod flows;
pub mod graph;
pub mod import;
pub mod investigate;
pub mod load;
pub mod man;
pub mod policy;
pub mod pricing;
pub mod pull;
pub mod reconcile;
pub mod run;
pub mod status;
pub mod top;
pub mod topology;
pub mod undeploy;
pub mod workspace;
