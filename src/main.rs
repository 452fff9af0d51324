//! parse -> logging -> dispatch -> exit code. What each command does is in `src/commands/`.

use clap::Parser;
use egressor::cli::{Cli, Command, Settings};
use egressor::commands;
use std::io::{BufWriter, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    match run(cli) {
        Ok(code) => code,
        // A closed pipe (`egressor flows | head`) is the reader's choice, not our failure.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
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

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let s = &Settings::resolve(&cli)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let o = &mut out;
    let code = match &cli.command {
        Command::Demo(args) => commands::demo::run(s, args, o),
        Command::Import(args) => commands::import::run(s, args, o),
        Command::Export(args) => commands::export::run(s, args, o),
        Command::Flows(args) => commands::flows::run(s, args, o),
        Command::Agent(args) => commands::agent::run(args),
        Command::Pull(args) => commands::pull::run(s, args, o),
        Command::Deploy(args) => commands::deploy::run(s, args, o),
        Command::Undeploy(args) => commands::undeploy::run(s, args, o),
        Command::Status(args) => commands::status::run(s, args, o),
        Command::Cost(args) => commands::cost::run(s, args, o),
        Command::Graph(args) => commands::graph::run(s, args, o),
        Command::Top(args) => commands::top::run(s, args, o),
        Command::Anomalies(args) => commands::anomalies::run(s, args, o),
        Command::Baseline(args) => commands::baseline::run(s, args, o),
        Command::Explain(args) => commands::explain::run(s, args, o),
        Command::Ask(args) => commands::ask::run(s, args, o),
        Command::Reconcile(args) => commands::reconcile::run(s, args, o),
        Command::Pricing(cmd) => commands::pricing::run(s, cmd, o),
        Command::Topology(cmd) => commands::topology::run(s, cmd, o),
        Command::Workspace(cmd) => commands::workspace::run(s, cmd, o),
        Command::Run(args) => commands::run::run(s, args, o),
        Command::Check(args) => commands::check::run(s, args, o),
        Command::Policy(cmd) => commands::policy::run(cmd, o),
        Command::Completions(args) => commands::completions::run(args, o),
        Command::Man(args) => commands::man::run(args, o),
    }?;
    out.flush()?;
    Ok(code)
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
