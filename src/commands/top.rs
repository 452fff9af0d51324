//! `egressor top`: a live view of transfer and its cost. Ticks of flow records come from local
//! capture, agents or a workspace replay (`model::FlowFeed`); `engines::live` prices them and
//! `views::top` draws them, or prints one snapshot with `--once`.

use super::load;
use crate::cli::{self, Settings, TopArgs};
use crate::engines::graph::Level;
use crate::engines::live::LiveModel;
use crate::engines::topology::Topology;
use crate::model::{FlowFeed, Timestamp};
use crate::store::Workspace;
use crate::store::replay::ReplayFeed;
use crate::transport::link::{AgentLink, HttpLink};
use crate::views;
use anyhow::{Context, Result, bail};
use std::io::Write;
use std::process::ExitCode;

pub fn run(settings: &Settings, args: &TopArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let book = load::price_book(&args.net.prices.pricing)?;
    let level = Level::parse(&args.level).expect("clap checked --level");
    let ws = workspace_if_needed(settings, args)?;
    let topology = match &ws {
        Some(ws) => load::topology(ws, args.net.topology.as_deref())?,
        None => args.net.topology.as_deref().map(Topology::load_file).transpose()?,
    };
    let mut feed = feed(settings, args, ws.as_ref())?;
    let mut model = LiveModel::new(level);
    if args.once {
        if !args.replay {
            std::thread::sleep(args.interval);
        }
        if let Some(t) = feed.tick()? {
            model.tick(&t.records, t.start, t.end, &book, topology.as_ref())?;
        }
        views::reports::live_snapshot(out, &model, args.out.output.into(), settings.color)?;
        return Ok(ExitCode::SUCCESS);
    }
    let app = views::top::App::new(model, feed.describe());
    let anomalies = ws.as_ref().map(|ws| anomalies_in_background(ws, settings, args)).transpose()?;
    views::top::run(app, feed.as_mut(), args.interval, &book, topology.as_ref(), anomalies)?;
    Ok(ExitCode::SUCCESS)
}

/// The anomalies pane's findings, analysed on a thread of their own through a second connection:
/// on a long history the analysis takes seconds, and `top` must draw (and quit) at once.
fn anomalies_in_background(
    ws: &Workspace,
    settings: &Settings,
    args: &TopArgs,
) -> Result<views::top::PendingAnomalies> {
    let reader = ws.reader()?;
    let (now, topology, pricing) = (settings.now, args.net.topology.clone(), args.net.prices.pricing.clone());
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("top-anomalies".into())
        .spawn(move || {
            let found = open_anomalies(&reader, now, topology.as_deref(), &pricing);
            let _ = send.send(found); // `top` may have quit already
        })
        .context("starting the anomaly analysis thread")?;
    Ok(receive)
}

/// The workspace is only needed for a replay and for its stored topology; live capture must not
/// fail because no workspace exists yet.
fn workspace_if_needed(settings: &Settings, args: &TopArgs) -> Result<Option<Workspace>> {
    if !args.replay && args.net.topology.is_some() {
        return Ok(None);
    }
    match Workspace::open(&settings.workspace) {
        Ok(ws) => Ok(Some(ws)),
        Err(e) if args.replay => Err(e),
        Err(_) => Ok(None),
    }
}

/// Where the ticks come from: the workspace (`--replay`), agents (`--agent`), or this host.
fn feed<'w>(
    settings: &Settings,
    args: &TopArgs,
    ws: Option<&'w Workspace>,
) -> Result<Box<dyn FlowFeed + 'w>> {
    if args.replay {
        let ws = ws.expect("opened for replay");
        let since = args.since.resolve(settings.now);
        return Ok(if args.once {
            Box::new(ReplayFeed::whole(ws, since, settings.now))
        } else {
            Box::new(ReplayFeed::new(ws, since, settings.now, args.interval.as_secs_f64(), args.speed))
        });
    }
    if args.cluster {
        let cluster = std::sync::Arc::new(crate::cluster::connect(args.kube.context.as_deref())?);
        let found = crate::cluster::agents::discover(&cluster, &args.kube.namespace)?;
        let mut links: Vec<Box<dyn AgentLink>> = Vec::new();
        for pod in found.pods.iter().filter(|p| p.ready) {
            links.push(Box::new(crate::cluster::agents::ProxyLink::new(cluster.clone(), &found, pod)));
        }
        if links.is_empty() {
            bail!("no agent of namespace `{}` is ready yet: see `egressor status`", found.namespace);
        }
        return Ok(Box::new(crate::transport::live::AgentFeed::connect(links, Timestamp::now())?));
    }
    if !args.agents.is_empty() {
        let token = args.token_file.as_deref().map(cli::read_token).transpose()?;
        let mut links: Vec<Box<dyn AgentLink>> = Vec::new();
        for url in &args.agents {
            links.push(Box::new(HttpLink::new(url, token.clone(), std::time::Duration::from_secs(10))?));
        }
        return Ok(Box::new(crate::transport::live::AgentFeed::connect(links, Timestamp::now())?));
    }
    Ok(Box::new(local_feed(args)?))
}

/// In-process capture for `top` on this host, or an error that says what to do instead.
fn local_feed(args: &TopArgs) -> Result<crate::agent::live::LocalFeed> {
    use crate::capture::{self, CaptureConfig, KernelCapture};
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
    let node = crate::agent::host_name().unwrap_or_else(|_| "localhost".into());
    let windower = crate::agent::window::Windower::new(&node, cgroup_root);
    Ok(crate::agent::live::LocalFeed::new(Box::new(kernel), windower, &node, Timestamp::now()))
}

/// The workspace's open anomalies going on in the last 24 hours, costliest first, for the pane.
fn open_anomalies(
    ws: &Workspace,
    now: Timestamp,
    topology: Option<&std::path::Path>,
    pricing: &[std::path::PathBuf],
) -> Result<Vec<views::top::AnomalyLine>> {
    let query = load::AnalysisQuery {
        thresholds: crate::engines::anomaly::Thresholds::default(),
        topology,
        pricing,
        series_only: false,
    };
    let since = now.add_micros(-Timestamp::MICROS_PER_DAY);
    let mut found: Vec<_> = load::analyse_workspace(ws, now, &query)?
        .findings
        .into_iter()
        .filter(|f| f.state == crate::engines::anomaly::State::Open && f.end.is_none_or(|e| e > since))
        .collect();
    found.sort_by(|a, b| b.cost_per_day.cmp(&a.cost_per_day).then_with(|| a.id.cmp(&b.id)));
    Ok(found
        .into_iter()
        .map(|f| views::top::AnomalyLine {
            id: f.id,
            kind: f.kind.as_str(),
            subject: f.subject.name,
            cost_per_day: f.cost_per_day,
        })
        .collect())
}
