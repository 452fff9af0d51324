//! parse -> logging -> dispatch -> exit code.

use anyhow::{Context, Result, bail};
use clap::Parser;
use egressor::cli::{Cli, Command, ExportFormat, OutputFormat, Settings, WorkspaceCommand};
use egressor::cli::AgentArgs;
use egressor::store::{FlowFilter, Workspace};
use egressor::transport::pull::{self, AgentTarget};
use egressor::views::{flows::FlowSink, reports};
use std::io::{BufWriter, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            // A closed pipe (`egressor flows | head`) is the reader's choice, not our failure.
            if err.chain().any(|e| {
                e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        (_, 2) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("EGRESSOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("egressor={level}")));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}

fn run(cli: Cli) -> Result<ExitCode> {
    let settings = Settings::resolve(&cli)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let color = settings.color;
    match cli.command {
        Command::Demo(args) => {
            let mut ws = Workspace::open(&settings.workspace)?;
            let spec = egressor::demo::DemoSpec {
                days: args.days,
                seed: args.seed,
                end: args.end.unwrap_or(settings.now),
            };
            let report = egressor::demo::write(&mut ws, spec)?;
            reports::demo_report(&mut out, &report, args.out.output, color)?;
        }
        Command::Import(args) => {
            let mut ws = Workspace::open(&settings.workspace)?;
            let summary = egressor::import::import_file(&mut ws, &args.file, args.format)
                .with_context(|| format!("import of {} failed; the workspace is unchanged", args.file.display()))?;
            reports::import_summary(&mut out, &summary, args.out.output, color)?;
        }
        Command::Export(args) => {
            let ws = Workspace::open(&settings.workspace)?;
            let (since, until) = args.range.resolve(settings.now)?;
            let filter = FlowFilter { since, until, limit: None };
            match args.format {
                ExportFormat::Parquet => {
                    let Some(file) = &args.file else {
                        bail!("Parquet is binary: give a file with --file FILE");
                    };
                    let n = ws.export_parquet(&filter, file)?;
                    eprintln!("wrote {n} flow record(s) to {}", file.display());
                }
                ExportFormat::Jsonl | ExportFormat::Csv => {
                    let mut file_out;
                    let sink_out: &mut dyn Write = match &args.file {
                        Some(path) => {
                            file_out = BufWriter::new(
                                std::fs::File::create(path)
                                    .with_context(|| format!("cannot create {}", path.display()))?,
                            );
                            &mut file_out
                        }
                        None => &mut out,
                    };
                    let mut sink = if args.format == ExportFormat::Csv {
                        FlowSink::csv(sink_out)
                    } else {
                        FlowSink::json_lines(sink_out)
                    };
                    let n = ws.for_each_flow(&filter, |r| sink.push(r))?;
                    sink.finish()?;
                    if let Some(path) = &args.file {
                        eprintln!("wrote {n} flow record(s) to {}", path.display());
                    }
                }
            }
        }
        Command::Flows(args) => {
            let ws = Workspace::open(&settings.workspace)?;
            let (since, until) = args.range.resolve(settings.now)?;
            let filter = FlowFilter { since, until, limit: Some(args.limit) };
            let mut sink = match args.out.output {
                OutputFormat::Table => FlowSink::table(&mut out, color),
                OutputFormat::Json => FlowSink::json_lines(&mut out),
                OutputFormat::Csv => FlowSink::csv(&mut out),
            };
            ws.for_each_flow(&filter, |r| sink.push(r))?;
            sink.finish()?;
        }
        Command::Agent(args) => run_agent(args)?,
        Command::Pull(args) => {
            let mut ws = Workspace::open(&settings.workspace)?;
            let token = args.token_file.as_deref().map(egressor::cli::read_token).transpose()?;
            let mut reports = Vec::new();
            for url in &args.agents {
                let target = AgentTarget { url: url.clone(), token: token.clone() };
                let bar = indicatif::ProgressBar::new_spinner();
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                let r = pull::pull(&mut ws, &target, |r| {
                    bar.set_message(format!("{url}: {} batches, {} records", r.batches_fetched, r.records_ingested));
                    bar.tick();
                });
                bar.finish_and_clear();
                let r = r.with_context(|| format!("pull from {url} stopped; what was already ingested is kept, re-run to continue"))?;
                let l = &r.loss;
                if l.map_insert_failures + l.sockets_evicted + l.spool_dropped_batches > 0 {
                    eprintln!(
                        "warning: {url} reported loss: {} map insert failures, {} sockets evicted before close, \
                         {} batches ({} records) dropped from a full spool",
                        l.map_insert_failures, l.sockets_evicted, l.spool_dropped_batches, l.spool_dropped_records
                    );
                }
                reports.push(r);
            }
            reports::pull_reports(&mut out, &reports, args.out.output, color)?;
        }
        Command::Workspace(cmd) => match cmd {
            WorkspaceCommand::Info(o) => {
                let ws = Workspace::open(&settings.workspace)?;
                ws.checkpoint()?;
                reports::workspace_info(&mut out, &ws.info()?, o.output, color)?;
            }
            WorkspaceCommand::Prune(o) => {
                let mut ws = Workspace::open(&settings.workspace)?;
                let r = ws.prune(settings.now)?;
                reports::prune_report(&mut out, &r, o.output, color)?;
            }
            WorkspaceCommand::Retention(args) => {
                let ws = Workspace::open(&settings.workspace)?;
                if args.raw_days.is_some() || args.rollup_days.is_some() {
                    ws.set_retention(args.raw_days, args.rollup_days)?;
                }
                let (raw_days, rollup_days) = ws.retention()?;
                reports::retention(&mut out, &reports::Retention { raw_days, rollup_days }, color)?;
            }
        },
    }
    out.flush()?;

    Ok(ExitCode::SUCCESS)
}

fn run_agent(args: AgentArgs) -> Result<()> {
    use egressor::capture::{self, CaptureConfig, KernelCapture};
    let token = args.token_file.as_deref().map(egressor::cli::read_token).transpose()?;
    if token.is_none() && !args.listen.ip().is_loopback() {
        eprintln!("warning: serving flow batches on {} without a token; pass --token-file", args.listen);
    }
    let cgroup_root = capture::cgroup2_root()?;
    let cfg = CaptureConfig { cgroup_path: args.cgroup.clone(), max_sockets: args.max_sockets, ..CaptureConfig::default() };
    let kernel = KernelCapture::start(&cfg)?;
    let node = match args.node {
        Some(n) => n,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .context("cannot read the hostname; pass --node")?,
    };
    let spool_dir = match args.spool {
        Some(d) => d,
        None if unsafe { libc::geteuid() } == 0 => "/var/lib/egressor/spool".into(),
        None => dirs::state_dir().or_else(dirs::data_dir).context("no state directory; pass --spool")?.join("egressor/spool"),
    };
    egressor::agent::run(
        egressor::agent::AgentConfig {
            listen: args.listen,
            token,
            interval: args.interval,
            cgroup_root,
            spool_dir,
            spool_max_bytes: args.spool_max,
            node,
        },
        Box::new(kernel),
    )
}
