//! Every command-line flag, defined once. Doc comments are the help text; `Settings` is what the
//! rest of the program gets: resolved and validated, so no other module parses arguments.

use crate::import::ImportFormat;
use crate::model::{TimeBound, Timestamp, parse_time_bound};
use crate::views::{Format, graph::GraphFormat};
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "egressor",
    version,
    about = "Find, explain and cut unnecessary or expensive data transfer",
    long_about = "Egressor counts every byte your workloads send and receive (eBPF, in the kernel), \
                  attributes it to processes, pods and workloads, and keeps it in a local DuckDB \
                  workspace for cost breakdowns, graphs and investigations.\n\n\
                  Exit codes: 0 success; 1 error (the message says what and where); 2 usage error; \
                  3 some agents could not be pulled (`pull`, `status`); 4 policy violation (`check`, `run`). `run` passes on its command's own exit code \
                  and fails with 125 (egressor could not run it), 126 (not executable) or 127 (not \
                  found). The table: README, \"Exit codes\"."
)]
pub struct Cli {
    /// The workspace file (a DuckDB database); created on first use.
    #[arg(long, global = true, env = "EGRESSOR_WORKSPACE", value_name = "PATH")]
    pub workspace: Option<PathBuf>,

    /// More log output (-v info, -vv debug, -vvv trace). Logs go to stderr; EGRESSOR_LOG takes a
    /// filter instead (e.g. `egressor=debug`).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// No colours (also honoured: the NO_COLOR environment variable).
    #[arg(long, global = true)]
    pub no_color: bool,

    /// Take this time (RFC 3339) as now: relative ranges like `--since 7d` then give the same
    /// answer on every run (scripts, CI, tests).
    #[arg(long, global = true, env = "EGRESSOR_NOW", value_name = "TIME", value_parser = parse_timestamp)]
    pub now: Option<Timestamp>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a labelled synthetic scenario (source = demo) into the workspace.
    Demo(DemoArgs),
    /// Import flow records from a file; all of the file or nothing.
    Import(ImportArgs),
    /// Export flow records as JSON lines, CSV or Parquet.
    Export(ExportArgs),
    /// List flow records.
    Flows(FlowsArgs),
    /// Run the node agent: count every byte in the kernel, spool flow batches, serve them.
    Agent(AgentArgs),
    /// Fetch new flow batches from agents into the workspace (safe to interrupt and re-run).
    /// Without --agent: from every agent of the current Kubernetes context.
    Pull(PullArgs),
    /// Install the agents on the current Kubernetes context (a DaemonSet; server-side apply).
    Deploy(DeployArgs),
    /// Remove exactly what `deploy` created.
    Undeploy(UndeployArgs),
    /// The agents of the current Kubernetes context: ready, version, spool, last pull, loss.
    Status(StatusArgs),
    /// What the traffic costs: classified, priced with tiers and free allowances, explained.
    Cost(CostArgs),
    /// The transfer graph: who sends how much to whom, with classes and cost.
    Graph(GraphArgs),
    /// Live full-screen view of transfer and its cost (local capture, agents, or a replay).
    Top(TopArgs),
    /// What changed: spikes, slow burns, new endpoints and leaks, each with its cost and evidence.
    /// `anomalies show ID` draws one against its baseline; `ack`, `resolve` and `reopen` set its state.
    Anomalies(AnomaliesArgs),
    /// One hourly series' baseline: statistics over 24h, 7d and 28d, its weekday x hour profile.
    Baseline(BaselineArgs),
    /// What changed in a period against the one before, the anomalies in it and what to do:
    /// deterministic, no network.
    Explain(ExplainArgs),
    /// Ask Claude about the workspace in plain language; it investigates with read-only tools that
    /// run here, sees summaries only (addresses redacted), and every figure of its answer is checked.
    Ask(AskArgs),
    /// Compare a month of egressor's figures with the AWS bill (a Cost and Usage Report extract).
    Reconcile(ReconcileArgs),
    /// Show the price tables in use, or check a price file.
    #[command(subcommand)]
    Pricing(PricingCommand),
    /// Check a topology file, or store one in the workspace as the default for `cost`.
    #[command(subcommand)]
    Topology(TopologyCommand),
    /// Inspect and maintain the workspace.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// Run a command (a CI step) in a cgroup of its own and report every destination it talked to,
    /// with bytes, class and cost per run and per month; check it against a policy.
    Run(RunArgs),
    /// Check the workspace's traffic of a period against a policy (budgets, destinations, limits).
    Check(CheckArgs),
    /// Check a policy file; every problem is reported as file:line:col: field.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    Completions(CompletionsArgs),
    /// Print the man page (roff), or write one page per command into a directory.
    Man(ManArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Csv,
}

impl From<OutputFormat> for Format {
    fn from(f: OutputFormat) -> Format {
        match f {
            OutputFormat::Table => Format::Table,
            OutputFormat::Json => Format::Json,
            OutputFormat::Csv => Format::Csv,
        }
    }
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// How to print: a table for people, JSON or CSV for scripts (JSON schemas in docs/schemas/).
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct RangeArgs {
    /// Start of the range: a duration before now (7d, 24h, 30m) or a time (2026-11-20T10:00:00Z).
    #[arg(long, value_parser = parse_time_bound)]
    pub since: Option<TimeBound>,
    /// End of the range (exclusive), same forms as --since.
    #[arg(long, value_parser = parse_time_bound)]
    pub until: Option<TimeBound>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Days of traffic to generate, ending at --end.
    #[arg(long, default_value_t = 14, value_parser = clap::value_parser!(u32).range(1..=400))]
    pub days: u32,
    /// Seed of the generator: the same seed and end give the same bytes.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// End of the generated range (rounded down to the hour); default: the current hour.
    #[arg(long, value_parser = parse_timestamp)]
    pub end: Option<Timestamp>,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportFileFormat {
    /// Flow records as JSON lines (docs/data-model.md).
    Jsonl,
    /// Parquet with the columns `egressor export --format parquet` writes.
    Parquet,
    /// AWS VPC Flow Logs: the default v2 text format, or custom formats v3-v5 with a header line.
    VpcFlowLogs,
}

impl From<ImportFileFormat> for ImportFormat {
    fn from(f: ImportFileFormat) -> ImportFormat {
        match f {
            ImportFileFormat::Jsonl => ImportFormat::Jsonl,
            ImportFileFormat::Parquet => ImportFormat::Parquet,
            ImportFileFormat::VpcFlowLogs => ImportFormat::VpcFlowLogs,
        }
    }
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The file to import (`.gz` is decompressed for text formats).
    pub file: PathBuf,
    #[arg(long, value_enum)]
    pub format: ImportFileFormat,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
    Parquet,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    #[command(flatten)]
    pub range: RangeArgs,
    /// Write here instead of standard output (required for Parquet).
    #[arg(short = 'f', long = "file", value_name = "FILE", alias = "out")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct FlowsArgs {
    #[command(flatten)]
    pub range: RangeArgs,
    /// At most this many records (oldest first).
    #[arg(long, default_value_t = 100)]
    pub limit: u64,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// Price override files: one flag for every command that prices.
#[derive(Debug, Args)]
pub struct PricingArgs {
    /// Price override files (negotiated rates, per-CIDR rules; repeatable, later files win).
    #[arg(
        long = "pricing",
        alias = "prices",
        value_name = "FILE",
        env = "EGRESSOR_PRICING",
        value_delimiter = ','
    )]
    pub pricing: Vec<PathBuf>,
}

/// What classifies and prices traffic: shared by `cost`, `graph` and `top`.
#[derive(Debug, Args)]
pub struct NetworkArgs {
    /// Topology file (VPCs, subnets, NAT gateways, peerings, endpoints); default: the one stored
    /// in the workspace (`egressor topology set`), if any.
    #[arg(long, env = "EGRESSOR_TOPOLOGY")]
    pub topology: Option<PathBuf>,
    #[command(flatten)]
    pub prices: PricingArgs,
}

#[derive(Debug, Args)]
pub struct CostArgs {
    /// Start of the period (default 30d); tiers still count the month's earlier traffic.
    #[arg(long, value_parser = parse_time_bound, default_value = "30d")]
    pub since: TimeBound,
    /// End of the period (exclusive; default now).
    #[arg(long, value_parser = parse_time_bound)]
    pub until: Option<TimeBound>,
    /// How to group cost lines.
    #[arg(long, value_parser = ["namespace", "workload", "service", "edge", "class", "node", "zone"], default_value = "workload")]
    pub by: String,
    /// Only the N most expensive lines (the totals still cover everything).
    #[arg(long)]
    pub top: Option<usize>,
    /// Print the arithmetic of every line and of every meter it draws on.
    #[arg(long)]
    pub explain: bool,
    /// Add savings recommendations, each with its evidence and computed monthly saving.
    #[arg(long)]
    pub recommend: bool,
    #[command(flatten)]
    pub net: NetworkArgs,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    /// Start of the period (default 24h).
    #[arg(long, value_parser = parse_time_bound, default_value = "24h")]
    pub since: TimeBound,
    /// End of the period (exclusive; default now).
    #[arg(long, value_parser = parse_time_bound)]
    pub until: Option<TimeBound>,
    /// What a node of the graph is.
    #[arg(long, value_parser = ["pod", "workload", "service", "namespace", "node", "zone", "process"], default_value = "workload")]
    pub level: String,
    /// Only the part of the graph around nodes whose name contains this.
    #[arg(long)]
    pub focus: Option<String>,
    /// How many edges away from the focus to go.
    #[arg(long, default_value_t = 1)]
    pub hops: usize,
    /// Follow edges out of the focus, into it, or both.
    #[arg(long, value_parser = ["out", "in", "both"], default_value = "both")]
    pub direction: String,
    /// Only edges of this class (cross-zone, internet, ...).
    #[arg(long)]
    pub class: Option<String>,
    /// At most this many edges (largest first).
    #[arg(long)]
    pub top: Option<usize>,
    #[command(flatten)]
    pub net: NetworkArgs,
    /// table, json, dot (Graphviz) or mermaid.
    #[arg(long, short = 'o', value_enum, default_value_t = GraphOutputFormat::Table)]
    pub output: GraphOutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphOutputFormat {
    Table,
    Json,
    Dot,
    Mermaid,
}

impl From<GraphOutputFormat> for GraphFormat {
    fn from(f: GraphOutputFormat) -> GraphFormat {
        match f {
            GraphOutputFormat::Table => GraphFormat::Table,
            GraphOutputFormat::Json => GraphFormat::Json,
            GraphOutputFormat::Dot => GraphFormat::Dot,
            GraphOutputFormat::Mermaid => GraphFormat::Mermaid,
        }
    }
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AnomaliesArgs {
    #[command(subcommand)]
    pub action: Option<AnomalyAction>,
    /// Findings going on since then (default 24h).
    #[arg(long, value_parser = parse_time_bound, default_value = "24h")]
    pub since: TimeBound,
    /// Only this type.
    #[arg(long = "type", value_parser = ["spike", "slow-burn", "new-endpoint", "leak", "outlier"])]
    pub kind: Option<String>,
    /// Include resolved findings (hidden by default).
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub detect: DetectArgs,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// What the detectors report: thresholds in bytes and in dollars, so tiny series page nobody.
#[derive(Debug, Args)]
pub struct DetectArgs {
    /// Only findings costing at least this many USD a day.
    #[arg(long, default_value = "0")]
    pub min_cost: rust_decimal::Decimal,
    /// Only findings adding at least this many bytes a day (new endpoints and leaks: a tenth).
    #[arg(long, default_value_t = 100_000_000)]
    pub min_bytes: u64,
    /// Spike: robust z-score of log bytes an hour must reach against the last week's residuals.
    #[arg(long, default_value_t = 5.0)]
    pub spike_z: f64,
    /// Spike: times the seasonal expectation an hour must reach.
    #[arg(long, default_value_t = 3.0)]
    pub spike_ratio: f64,
    /// Slow burn: the smallest growth reported, in percent per day.
    #[arg(long, default_value_t = 3.0)]
    pub burn_min_growth: f64,
    /// Leave out the isolation forest's second opinion.
    #[arg(long)]
    pub no_forest: bool,
    #[command(flatten)]
    pub net: NetworkArgs,
}

#[derive(Debug, Subcommand)]
pub enum AnomalyAction {
    /// One finding: its numbers, its cost's arithmetic, its series against the baseline band.
    Show {
        id: String,
        #[command(flatten)]
        detect: DetectArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Mark a finding acknowledged (known, being handled). Give the thresholds of the list that
    /// showed it, if they were not the defaults.
    Ack {
        id: String,
        #[command(flatten)]
        detect: DetectArgs,
    },
    /// Mark a finding resolved (hidden from the list unless --all).
    Resolve {
        id: String,
        #[command(flatten)]
        detect: DetectArgs,
    },
    /// Mark a finding open again.
    Reopen {
        id: String,
        #[command(flatten)]
        detect: DetectArgs,
    },
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Start of the period explained (default 24h).
    #[arg(long, value_parser = parse_time_bound, default_value = "24h")]
    pub since: TimeBound,
    /// End of the period (exclusive; default now).
    #[arg(long, value_parser = parse_time_bound)]
    pub until: Option<TimeBound>,
    /// The period compared with: `previous` (the same length just before) or a duration (7d: the
    /// same hours that long before).
    #[arg(long, default_value = "previous")]
    pub compare: String,
    #[command(flatten)]
    pub net: NetworkArgs,
    /// How to print: text for people or JSON (schema docs/schemas/explain.v1.json).
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct AskArgs {
    /// The question, e.g. "why did egress spike yesterday?"
    pub question: String,
    /// The Claude model (default: EGRESSOR_MODEL, else the client's default).
    #[arg(long, env = "EGRESSOR_MODEL")]
    pub model: Option<String>,
    /// The period the opening summary covers (Claude's tools may look further).
    #[arg(long, value_parser = parse_time_bound, default_value = "7d")]
    pub since: TimeBound,
    /// Send addresses as they are (by default they become pseudonyms such as ext-3).
    #[arg(long, conflicts_with = "redact_names")]
    pub no_redact: bool,
    /// Also replace pod, workload, namespace, service and node names with pseudonyms.
    #[arg(long)]
    pub redact_names: bool,
    /// Print exactly what would be sent (system prompt, tools, first message) and send nothing.
    #[arg(long)]
    pub show_context: bool,
    /// Rounds of tool calls before egressor stops waiting for an answer.
    #[arg(long, default_value_t = 8)]
    pub max_rounds: u32,
    #[command(flatten)]
    pub net: NetworkArgs,
    /// How to print: the answer as it streams (table) or JSON with the tool calls and the check.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct BaselineArgs {
    /// The series: `edge:A <-> B`, `egress:WORKLOAD`, `external:ENDPOINT`, `class:CLASS`, or any
    /// part of one name that only one series has.
    pub subject: String,
    /// The hours drawn against the band (default 7d); statistics are over the 24h, 7d and 28d
    /// before the end of the data.
    #[arg(long, value_parser = parse_time_bound, default_value = "7d")]
    pub since: TimeBound,
    #[command(flatten)]
    pub net: NetworkArgs,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Watch these agents instead of capturing locally (repeatable).
    #[arg(long = "agent", value_name = "URL")]
    pub agents: Vec<String>,
    /// Watch every agent of the Kubernetes context (through its API server) instead of this host.
    #[arg(long, conflicts_with = "agents")]
    pub cluster: bool,
    #[command(flatten)]
    pub kube: ClusterArgs,
    /// Bearer token for the agents.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Play back the workspace instead of live traffic.
    #[arg(long)]
    pub replay: bool,
    /// With --replay: where to start (default 1h ago).
    #[arg(long, value_parser = parse_time_bound, default_value = "1h")]
    pub since: TimeBound,
    /// With --replay: recorded seconds per second.
    #[arg(long, default_value_t = 60.0)]
    pub speed: f64,
    /// Refresh interval (default 250ms: 4 Hz).
    #[arg(long, value_parser = parse_duration, default_value = "250ms")]
    pub interval: std::time::Duration,
    /// Starting level: pod, workload, service, namespace, node, zone, process.
    #[arg(long, value_parser = ["pod", "workload", "service", "namespace", "node", "zone", "process"], default_value = "workload")]
    pub level: String,
    /// Live capture: only this cgroup v2 subtree.
    #[arg(long)]
    pub cgroup: Option<PathBuf>,
    /// Print one snapshot and exit (for scripts): the whole --replay range, or one --interval of
    /// live traffic (use e.g. --interval 5s).
    #[arg(long)]
    pub once: bool,
    #[command(flatten)]
    pub net: NetworkArgs,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// The Cost and Usage Report extract: CSV (optionally .gz) or Parquet, CUR 2.0 or legacy
    /// column names.
    #[arg(long, value_name = "FILE")]
    pub cur: PathBuf,
    /// The month to compare (YYYY-MM); default: the latest month in the extract.
    #[arg(long, value_parser = parse_month)]
    pub month: Option<String>,
    #[command(flatten)]
    pub net: NetworkArgs,
    #[command(flatten)]
    pub out: OutputArgs,
}

fn parse_month(s: &str) -> Result<String, String> {
    let ok = s.len() == 7
        && s.as_bytes()[4] == b'-'
        && s[..4].bytes().all(|b| b.is_ascii_digit())
        && matches!(s[5..].parse::<u32>(), Ok(1..=12));
    if ok { Ok(s.to_string()) } else { Err(format!("`{s}`: expected a month such as 2026-11")) }
}

/// How `run` and `check` print: a table, JSON, or Markdown (a CI job summary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
    Markdown,
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Policy file: budgets, allowed and denied destinations, byte limits (docs/policy.md).
    #[arg(long, env = "EGRESSOR_POLICY")]
    pub policy: Option<PathBuf>,
    /// Report violations but exit as if there were none (also `mode = "report"` in the policy).
    #[arg(long)]
    pub report_only: bool,
    /// Also write the report to this file: JSON if it ends in .json, Markdown if .md, else a table.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// How to print the report on standard output.
    #[arg(long, short = 'o', value_enum, default_value_t = ReportFormat::Table)]
    pub output: ReportFormat,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  sudo egressor run --region us-east-1 -- make integration-test\n  \
                  sudo egressor run --learn egressor-allow.toml -- ./deploy.sh\n  \
                  sudo egressor run --policy egressor-policy.toml --runs-per-day 48 -- ./sync.sh")]
pub struct RunArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// How many times a day the command runs: the monthly cost is per run x this x 730/24 (default:
    /// the policy's runner.runs_per_day, else 1).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs_per_day: Option<u32>,
    /// Write (or widen) FILE with an allow list of every destination the command talked to: a policy
    /// file to gate later runs with (`--policy FILE`, or `allow_from` in another policy).
    #[arg(long, value_name = "FILE")]
    pub learn: Option<PathBuf>,
    /// Region this machine runs in (default: the policy's runner.region); without one nothing is priced.
    #[arg(long)]
    pub region: Option<String>,
    /// Zone this machine runs in (default: the policy's runner.zone).
    #[arg(long)]
    pub zone: Option<String>,
    #[command(flatten)]
    pub net: NetworkArgs,
    /// Create the command's cgroup under this cgroup v2 directory (default: the root of the hierarchy).
    #[arg(long, value_name = "DIR")]
    pub cgroup_parent: Option<PathBuf>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<std::ffi::OsString>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Start of the period (default 24h).
    #[arg(long, value_parser = parse_time_bound, default_value = "24h")]
    pub since: TimeBound,
    /// End of the period (exclusive; default now).
    #[arg(long, value_parser = parse_time_bound)]
    pub until: Option<TimeBound>,
    #[command(flatten)]
    pub net: NetworkArgs,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check a policy file (and the allow lists it names); every problem as file:line:col: field.
    Validate { file: PathBuf },
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write egressor.1 and one page per command (egressor-run.1, ...) into this directory instead
    /// of printing the main page.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TopologyCommand {
    /// Check a topology file; every problem is reported as file:line:col.
    Validate { file: PathBuf },
    /// Check a topology file and store it in the workspace as the default for `cost`.
    Set { file: PathBuf },
    /// Print the topology stored in the workspace.
    Show,
}

#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// Path, schema version, row counts, time range and size on disk.
    Info(OutputArgs),
    /// Delete raw flows and rollups past their retention and compact the rollups.
    Prune(OutputArgs),
    /// Show or change retention (days of raw flows, days of hourly rollups).
    Retention(RetentionArgs),
}

#[derive(Debug, Subcommand)]
pub enum PricingCommand {
    /// Print every price (tiers, payer, free allowance, source) after overrides.
    Show(PricingShowArgs),
    /// Check a price file; every problem is reported as file:line:col.
    Validate(PricingValidateArgs),
}

#[derive(Debug, Args)]
pub struct PricingShowArgs {
    /// Only this provider (aws, gcp, azure).
    #[arg(long)]
    pub provider: Option<String>,
    /// Only what traffic sent from this region pays (e.g. us-east-1).
    #[arg(long)]
    pub region: Option<String>,
    #[command(flatten)]
    pub prices: PricingArgs,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Debug, Args)]
pub struct PricingValidateArgs {
    pub file: PathBuf,
    /// Check it as a partial override file (sources optional, CIDR rules allowed).
    #[arg(long = "override")]
    pub is_override: bool,
}

#[derive(Debug, Args)]
pub struct RetentionArgs {
    /// Days of raw flow records to keep (default 30).
    #[arg(long)]
    pub raw_days: Option<u32>,
    /// Days of hourly rollups to keep (default 400).
    #[arg(long)]
    pub rollup_days: Option<u32>,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Address to serve the batch API, /healthz and /metrics on.
    #[arg(long, default_value = "127.0.0.1:9464", env = "EGRESSOR_AGENT_LISTEN")]
    pub listen: std::net::SocketAddr,
    /// File holding the bearer token pullers must present (recommended whenever --listen is not loopback).
    #[arg(long, env = "EGRESSOR_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Window length: how often kernel counters are drained into flow records (e.g. 10s, 500ms, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub interval: std::time::Duration,
    /// cgroup v2 directory to capture (its subtree); default: the cgroup v2 root from /proc/mounts.
    #[arg(long)]
    pub cgroup: Option<PathBuf>,
    /// Spool directory for batches not yet pulled (default /var/lib/egressor/spool as root).
    #[arg(long, env = "EGRESSOR_SPOOL")]
    pub spool: Option<PathBuf>,
    /// Upper bound of the spool; the oldest batches are dropped first, counted and reported.
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    pub spool_max: u64,
    /// Capacity of the kernel socket maps (about 200 bytes of kernel memory each).
    #[arg(long, default_value_t = 65536)]
    pub max_sockets: u32,
    /// Node name to stamp on records (default: NODE_NAME from the downward API, else the hostname).
    #[arg(long, env = "NODE_NAME")]
    pub node: Option<String>,
}

/// Which cluster and namespace: shared by deploy, undeploy, status, pull and top.
#[derive(Debug, Args, Clone)]
pub struct ClusterArgs {
    /// Kubeconfig context (default: the current context of KUBECONFIG or ~/.kube/config).
    #[arg(long)]
    pub context: Option<String>,
    /// Namespace of the agents.
    #[arg(long, short = 'n', default_value = "egressor")]
    pub namespace: String,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Agent image (default: the egressor image of this version).
    #[arg(long)]
    pub image: Option<String>,
    /// Run agents only on nodes with this label (repeatable): KEY=VALUE.
    #[arg(long = "node-selector", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub node_selector: Vec<(String, String)>,
    /// Print the objects as YAML and apply nothing (no cluster needed).
    #[arg(long)]
    pub dry_run: bool,
    /// Take back fields someone else changed on egressor's objects (server-side apply conflicts).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Debug, Args)]
pub struct UndeployArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// `KEY=VALUE`.
fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}`: expected KEY=VALUE, e.g. kubernetes.io/os=linux")),
    }
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Agent base URL (repeatable), e.g. http://10.0.1.10:9464. Without it: every agent of the
    /// Kubernetes context, reached through its API server.
    #[arg(long = "agent", value_name = "URL")]
    pub agents: Vec<String>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// File holding the agents' bearer token.
    #[arg(long, env = "EGRESSOR_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// `10s`, `500ms`, `2m`, `1h`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("`{t}`: expected a number and a unit, e.g. 10s"))?;
    let d = match unit {
        "ms" => std::time::Duration::from_millis(n),
        "s" => std::time::Duration::from_secs(n),
        "m" => std::time::Duration::from_secs(n * 60),
        "h" => std::time::Duration::from_secs(n * 3600),
        _ => return Err(format!("`{t}`: unknown unit `{unit}` (ms, s, m, h)")),
    };
    if d.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(d)
}

pub use crate::model::parse_size;

/// The completion script for `shell`, from the flags defined here.
pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut cmd, "egressor", out);
}

/// The main man page (every command listed, the exit codes in its description).
pub fn write_man_page(out: &mut dyn std::io::Write) -> Result<()> {
    let cmd = <Cli as clap::CommandFactory>::command();
    clap_mangen::Man::new(cmd).render(out)?;
    Ok(())
}

/// `egressor` and one page per command (`egressor-run`, `egressor-pricing-show`, ...), as (name, roff).
pub fn man_pages() -> Result<Vec<(String, Vec<u8>)>> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    // Building names each subcommand for its page (`egressor-pricing-show`) and synopsis.
    cmd.build();
    let mut pages = Vec::new();
    add_pages(&cmd, &mut pages)?;
    Ok(pages)
}

fn add_pages(cmd: &clap::Command, pages: &mut Vec<(String, Vec<u8>)>) -> Result<()> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut buf)?;
    pages.push((cmd.get_display_name().unwrap_or(cmd.get_name()).to_string(), buf));
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        add_pages(sub, pages)?;
    }
    Ok(())
}

/// Reads a token file: the first line, trimmed; an empty file is an error.
pub fn read_token(path: &std::path::Path) -> Result<String> {
    let s = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read token file {}", path.display()))?;
    let t = s.lines().next().unwrap_or("").trim().to_string();
    anyhow::ensure!(!t.is_empty(), "token file {} is empty", path.display());
    Ok(t)
}

fn parse_timestamp(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse(s)
}

/// What every command needs besides its own arguments.
#[derive(Debug, Clone)]
pub struct Settings {
    pub workspace: PathBuf,
    pub now: Timestamp,
    pub color: bool,
}

impl Settings {
    pub fn resolve(cli: &Cli) -> Result<Self> {
        let workspace = match &cli.workspace {
            Some(p) => p.clone(),
            None => default_workspace()?,
        };
        let no_color_env = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        // One name for price overrides everywhere (`--pricing`, EGRESSOR_PRICING): the old
        // variable is refused rather than silently ignored.
        if std::env::var_os("EGRESSOR_PRICES").is_some() && std::env::var_os("EGRESSOR_PRICING").is_none() {
            anyhow::bail!(
                "EGRESSOR_PRICES was renamed EGRESSOR_PRICING (the flag is --pricing FILE); set that instead"
            );
        }
        Ok(Settings {
            workspace,
            now: cli.now.unwrap_or_else(Timestamp::now),
            color: !cli.no_color && !no_color_env,
        })
    }
}

/// `$XDG_DATA_HOME/egressor/workspace.duckdb` (`~/.local/share/...` when unset).
pub fn default_workspace() -> Result<PathBuf> {
    let base = dirs::data_dir().context(
        "cannot find a data directory for the default workspace (set --workspace or EGRESSOR_WORKSPACE)",
    )?;
    Ok(base.join("egressor").join("workspace.duckdb"))
}

impl RangeArgs {
    pub fn resolve(&self, now: Timestamp) -> Result<(Option<Timestamp>, Option<Timestamp>)> {
        let since = self.since.map(|b| b.resolve(now));
        let until = self.until.map(|b| b.resolve(now));
        if let (Some(s), Some(u)) = (since, until) {
            anyhow::ensure!(s < u, "--since ({s}) must be before --until ({u})");
        }
        Ok((since, until))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("10s").unwrap(), std::time::Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), std::time::Duration::from_millis(250));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("10x").unwrap_err().contains("unknown unit"));
        assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert_eq!(parse_size("1 TB").unwrap(), 1_000_000_000_000);
        assert!(parse_size("1XB").is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
