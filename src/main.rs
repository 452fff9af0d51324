//! parse -> logging -> dispatch -> exit code.

use anyhow::{Context, Result, bail};
use clap::Parser;
use egressor::cli::{AgentArgs, CostArgs, GraphArgs, PricingCommand, TopArgs, TopologyCommand};
use egressor::cli::{Cli, Command, ExportFormat, OutputFormat, Settings, WorkspaceCommand};
use egressor::engines::pricing::{PriceBook, PriceTable, Provider, TableKind};
use egressor::engines::topology::Topology;
use egressor::model::Timestamp;
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
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
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
            ws.tune_for_ingest()?;
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
            ws.tune_for_ingest()?;
            let summary =
                egressor::import::import_file(&mut ws, &args.file, args.format).with_context(|| {
                    format!("import of {} failed; the workspace is unchanged", args.file.display())
                })?;
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
            ws.tune_for_ingest()?;
            let token = args.token_file.as_deref().map(egressor::cli::read_token).transpose()?;
            let mut reports = Vec::new();
            for url in &args.agents {
                let target = AgentTarget { url: url.clone(), token: token.clone() };
                let bar = indicatif::ProgressBar::new_spinner();
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                let r = pull::pull(&mut ws, &target, |r| {
                    bar.set_message(format!(
                        "{url}: {} batches, {} records",
                        r.batches_fetched, r.records_ingested
                    ));
                    bar.tick();
                });
                bar.finish_and_clear();
                let r = r.with_context(|| {
                    format!("pull from {url} stopped; what was already ingested is kept, re-run to continue")
                })?;
                let l = &r.loss;
                if l.map_insert_failures + l.sockets_evicted + l.spool_dropped_batches > 0 {
                    eprintln!(
                        "warning: {url} reported loss: {} map insert failures, {} sockets evicted before close, \
                         {} batches ({} records) dropped from a full spool",
                        l.map_insert_failures,
                        l.sockets_evicted,
                        l.spool_dropped_batches,
                        l.spool_dropped_records
                    );
                }
                reports.push(r);
            }
            reports::pull_reports(&mut out, &reports, args.out.output, color)?;
        }
        Command::Cost(args) => cost(&settings, &args, &mut out)?,
        Command::Graph(args) => graph(&settings, &args, &mut out)?,
        Command::Top(args) => top(&settings, &args, &mut out)?,
        Command::Topology(cmd) => match cmd {
            TopologyCommand::Validate { file } => {
                let t = Topology::load_file(&file)?;
                writeln!(
                    out,
                    "{}: ok ({}, {} VPCs, {} subnets, {} NAT gateways, {} peerings, {} transit gateways, {} endpoints)",
                    file.display(),
                    t.cloud,
                    t.vpcs.len(),
                    t.subnets.len(),
                    t.nat_gateways.len(),
                    t.peerings.len(),
                    t.transit_gateways.len(),
                    t.endpoints.len()
                )?;
            }
            TopologyCommand::Set { file } => {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read topology file {}", file.display()))?;
                // Checked before it is stored: a broken file never replaces a good one.
                Topology::parse(&file, &text)?;
                let ws = Workspace::open(&settings.workspace)?;
                ws.set_topology(&text, &file.display().to_string())?;
                writeln!(out, "stored {} as the workspace topology", file.display())?;
            }
            TopologyCommand::Show => {
                let ws = Workspace::open(&settings.workspace)?;
                match ws.topology()? {
                    Some((text, _)) => write!(out, "{text}")?,
                    None => bail!(
                        "no topology stored in {}; use `egressor topology set FILE`",
                        settings.workspace.display()
                    ),
                }
            }
        },
        Command::Pricing(PricingCommand::Show(args)) => {
            let provider = match &args.provider {
                Some(p) => Some(
                    Provider::parse(p)
                        .with_context(|| format!("unknown provider {p:?}; known: {}", Provider::names()))?,
                ),
                None => None,
            };
            let book = load_book(&args.prices)?;
            let rows = book.describe(provider, args.region.as_deref());
            reports::price_rows(&mut out, &book, &rows, args.out.output, color)?;
        }
        Command::Pricing(PricingCommand::Validate(args)) => {
            let kind = if args.is_override { TableKind::Override } else { TableKind::Shipped };
            let table = match PriceTable::load_file(&args.file, kind) {
                Ok(t) => t,
                Err(e) => {
                    let n = e.problems().len().max(1);
                    eprintln!("{e}");
                    eprintln!("{n} problem{}", if n == 1 { "" } else { "s" });
                    return Ok(ExitCode::from(1));
                }
            };
            if args.is_override {
                // Catches a provider or currency that does not match the shipped tables.
                PriceBook::shipped()?.with_override(table.clone())?;
            }
            let c = table.counts();
            writeln!(
                out,
                "{}: ok ({}, as of {}, {} rates, {} hourly charges, {} free allowances, {} CIDR rules)",
                args.file.display(),
                table.provider(),
                table.as_of(),
                c.rates,
                c.hourly,
                c.free_allowances,
                c.cidr_rules
            )?;
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
    let cfg = CaptureConfig {
        cgroup_path: args.cgroup.clone(),
        max_sockets: args.max_sockets,
        ..CaptureConfig::default()
    };
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
        None => dirs::state_dir()
            .or_else(dirs::data_dir)
            .context("no state directory; pass --spool")?
            .join("egressor/spool"),
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

/// The shipped price tables with the user's override files layered on, in order.
fn load_book(overrides: &[std::path::PathBuf]) -> Result<PriceBook> {
    let mut book = PriceBook::shipped()?;
    for path in overrides {
        book = book.with_override(PriceTable::load_file(path, TableKind::Override)?)?;
    }
    Ok(book)
}

/// The topology to classify with: `--topology`, else the one stored in the workspace.
fn load_topology(ws: &Workspace, arg: Option<&std::path::Path>) -> Result<Option<Topology>> {
    if let Some(p) = arg {
        return Ok(Some(Topology::load_file(p)?));
    }
    let Some((text, origin)) = ws.topology()? else { return Ok(None) };
    let mut t = Topology::parse(std::path::Path::new(&origin), &text)?;
    t.origin = format!("{origin} (stored in the workspace)");
    Ok(Some(t))
}

/// Prices, topology and traffic of a period, priced: what `cost` and `graph` both stand on.
fn priced_period(
    settings: &Settings,
    since: egressor::model::TimeBound,
    until: Option<egressor::model::TimeBound>,
    topology: Option<&std::path::Path>,
    pricing: &[std::path::PathBuf],
    by: egressor::engines::cost::GroupBy,
) -> Result<(PriceBook, egressor::engines::cost::CostReport)> {
    use egressor::engines::cost::{self, CostInput, Period};
    let book = load_book(pricing)?;
    let ws = Workspace::open(&settings.workspace)?;
    let topology = load_topology(&ws, topology)?;
    let mut since = since.resolve(settings.now);
    let mut until = until.map(|u| u.resolve(settings.now)).unwrap_or(settings.now);
    if until <= since {
        bail!("--until ({until}) must be after --since ({since})");
    }
    // The period is what the data covers of what was asked: projections divide by its hours.
    if let Some((first, last)) = ws.traffic_span()? {
        since = since.floor_hour().max(first);
        until = until.min(last.add_micros(egressor::model::Timestamp::MICROS_PER_HOUR));
    }
    let rows = if until > since { ws.traffic(since, until)? } else { Vec::new() };
    let period = Period { since, until: until.max(since) };
    let report = cost::compute(&CostInput {
        rows: &rows,
        period,
        book: &book,
        topology: topology.as_ref(),
        by,
        free_allowances: true,
    })?;
    Ok((book, report))
}

fn graph(settings: &Settings, args: &GraphArgs, out: &mut dyn Write) -> Result<()> {
    use egressor::engines::graph::{self, FocusDirection, GraphQuery, Level};
    let class = match &args.class {
        Some(c) => Some(egressor::engines::classify::Class::parse(c).with_context(|| {
            format!("unknown class {c:?}; expected one of: {}", egressor::engines::classify::Class::names())
        })?),
        None => None,
    };
    let (_, report) = priced_period(
        settings,
        args.since,
        args.until,
        args.net.topology.as_deref(),
        &args.net.pricing,
        egressor::engines::cost::GroupBy::Edge,
    )?;
    let direction = match args.direction.as_str() {
        "out" => FocusDirection::Out,
        "in" => FocusDirection::In,
        _ => FocusDirection::Both,
    };
    let q = GraphQuery {
        level: Level::parse(&args.level).expect("clap checked --level"),
        focus: args.focus.as_deref(),
        hops: args.hops,
        direction,
        class,
        details: false,
    };
    let mut g = graph::build(&report, &q);
    if let Some(n) = args.top {
        g.edges.truncate(n);
        let keep: std::collections::BTreeSet<&str> =
            g.edges.iter().flat_map(|e| [e.src.as_str(), e.dst.as_str()]).collect();
        let nodes = g.nodes.iter().filter(|n| keep.contains(n.name.as_str())).cloned().collect();
        g.nodes = nodes;
    }
    egressor::views::graph::graph(out, &g, args.output, &report.currency, settings.color)
}

fn cost(settings: &Settings, args: &CostArgs, out: &mut dyn Write) -> Result<()> {
    let by = egressor::engines::cost::GroupBy::parse(&args.by).expect("clap checked --by");
    let (book, report) =
        priced_period(settings, args.since, args.until, args.net.topology.as_deref(), &args.net.pricing, by)?;
    let recs = args.recommend.then(|| egressor::engines::savings::recommend(&report));
    let prices = book
        .tables()
        .iter()
        .filter(|t| t.provider == report.provider)
        .map(|t| format!("{} (as of {})", t.path, t.as_of))
        .collect::<Vec<_>>()
        .join(", ");
    let view = egressor::views::cost::CostView {
        report: &report,
        top: args.top,
        explain: args.explain,
        recommendations: recs.as_deref(),
        prices,
    };
    egressor::views::cost::cost_report(out, &view, args.out.output, settings.color)
}

fn top(settings: &Settings, args: &TopArgs, out: &mut dyn Write) -> Result<()> {
    use egressor::engines::graph::Level;
    use egressor::engines::live::LiveModel;
    use egressor::model::FlowFeed;
    let book = load_book(&args.net.pricing)?;
    let level = Level::parse(&args.level).expect("clap checked --level");
    // The workspace is only needed for a replay and for its stored topology; live capture must not
    // fail because no workspace exists yet.
    let ws = if args.replay || args.net.topology.is_none() {
        match Workspace::open(&settings.workspace) {
            Ok(ws) => Some(ws),
            Err(e) if args.replay => return Err(e),
            Err(_) => None,
        }
    } else {
        None
    };
    let topology = match &ws {
        Some(ws) => load_topology(ws, args.net.topology.as_deref())?,
        None => args.net.topology.as_deref().map(Topology::load_file).transpose()?,
    };
    let mut feed: Box<dyn FlowFeed + '_> = if args.replay {
        let ws = ws.as_ref().expect("opened for replay");
        let since = args.since.resolve(settings.now);
        if args.once {
            Box::new(egressor::store::replay::ReplayFeed::whole(ws, since, settings.now))
        } else {
            Box::new(egressor::store::replay::ReplayFeed::new(
                ws,
                since,
                settings.now,
                args.interval.as_secs_f64(),
                args.speed,
            ))
        }
    } else if !args.agents.is_empty() {
        let token = args.token_file.as_deref().map(egressor::cli::read_token).transpose()?;
        let targets =
            args.agents.iter().map(|u| AgentTarget { url: u.clone(), token: token.clone() }).collect();
        Box::new(egressor::transport::live::AgentFeed::connect(targets, Timestamp::now())?)
    } else {
        Box::new(local_feed(args)?)
    };
    let mut model = LiveModel::new(level);
    if args.once {
        if !args.replay {
            std::thread::sleep(args.interval);
        }
        if let Some(t) = feed.tick()? {
            model.tick(&t.records, t.start, t.end, &book, topology.as_ref())?;
        }
        return egressor::views::reports::live_snapshot(out, &model, args.out.output, settings.color);
    }
    let app = egressor::views::top::App::new(model, feed.describe());
    egressor::views::top::run(app, feed.as_mut(), args.interval, &book, topology.as_ref())
}

/// In-process capture for `top` on this host, or an error that says what to do instead.
fn local_feed(args: &TopArgs) -> Result<egressor::agent::live::LocalFeed> {
    use egressor::capture::{self, CaptureConfig, KernelCapture};
    let instead = "watch agents with `egressor top --agent URL`, or play back the workspace with `egressor top --replay`";
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "live capture on this host needs root (CAP_BPF and CAP_NET_ADMIN to load eBPF probes); {instead}"
        );
    }
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        bail!("live capture needs a kernel with BTF (/sys/kernel/btf/vmlinux is missing); {instead}");
    }
    let cgroup_root =
        capture::cgroup2_root().with_context(|| format!("live capture is not possible; {instead}"))?;
    let cfg = CaptureConfig { cgroup_path: args.cgroup.clone(), ..CaptureConfig::default() };
    let kernel =
        KernelCapture::start(&cfg).with_context(|| format!("live capture is not possible; {instead}"))?;
    let node = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let windower = egressor::agent::window::Windower::new(&node, cgroup_root);
    Ok(egressor::agent::live::LocalFeed::new(Box::new(kernel), windower, &node, Timestamp::now()))
}
