//! `egressor pull`: fetch every agent's new batches into the workspace, one agent after another,
//! with a progress line each; warns when an agent reports lost records.
//!
//! Agents are the `--agent` URLs, or without them the agents of the Kubernetes context, found
//! through its API server and reached through it (pods/proxy). One agent that cannot be pulled
//! does not stop the others: the report names it and why, and the command exits
//! [`EXIT_SOME_AGENTS_FAILED`]; when none could be pulled, it fails with their errors.

use super::load;
use crate::cli::{self, PullArgs, Settings};
use crate::cluster::{self, agents};
use crate::engines::enrich::Enricher;
use crate::model::Timestamp;
use crate::model::k8s::ClusterMeta;
use crate::store::Workspace;
use crate::transport::link::{AgentLink, HttpLink};
use crate::transport::pull::{self, PullReport};
use crate::views::reports::{self, AgentFailure};
use anyhow::{Result, bail};
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Exit code when some agents were pulled and others could not be (see README "Exit codes").
pub const EXIT_SOME_AGENTS_FAILED: u8 = 3;

pub fn run(settings: &Settings, args: &PullArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let mut ws = load::workspace_for_ingest(settings)?;
    // The API's objects are stamped with when they were really seen (not a `--now` override).
    let seen = Timestamp::now();
    let (links, mut failed) =
        if args.agents.is_empty() { cluster_links(&mut ws, args, seen)? } else { url_links(args)? };
    collect_agent_pods(&mut ws, &links, seen);
    let meta = ws.cluster_meta()?;
    let enricher = (!meta.is_empty()).then(|| Enricher::new(&meta));
    let mut reports = Vec::new();
    for link in &links {
        match pull_one(&mut ws, link.as_ref(), enricher.as_ref()) {
            Ok(report) => {
                warn_of_loss(link.name(), &report);
                reports.push(report);
            }
            Err(e) => failed.push(AgentFailure {
                agent: link.name().to_string(),
                error: format!("{e:#}; what was already ingested is kept, re-run to continue"),
            }),
        }
    }
    if reports.is_empty() && !failed.is_empty() {
        let all: Vec<String> = failed.iter().map(|f| format!("pull from {}: {}", f.agent, f.error)).collect();
        bail!("{}", all.join("\n"));
    }
    reports::pull_reports(out, &reports, &failed, args.out.output.into(), settings.color)?;
    for f in &failed {
        eprintln!("error: pull from {} failed: {}", f.agent, f.error);
    }
    Ok(if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_SOME_AGENTS_FAILED) })
}

type Links = (Vec<Box<dyn AgentLink>>, Vec<AgentFailure>);

fn url_links(args: &PullArgs) -> Result<Links> {
    let token = args.token_file.as_deref().map(cli::read_token).transpose()?;
    let mut links: Vec<Box<dyn AgentLink>> = Vec::new();
    for url in &args.agents {
        links.push(Box::new(HttpLink::new(url, token.clone(), Duration::from_secs(60))?));
    }
    Ok((links, Vec::new()))
}

/// The ready agents of the context; those not ready are failures named with their pod's state.
/// Lists the cluster's metadata into the workspace first (flows are named at ingest, ADR 0009).
fn cluster_links(ws: &mut Workspace, args: &PullArgs, now: Timestamp) -> Result<Links> {
    let cluster = Arc::new(cluster::connect(args.cluster.context.as_deref())?);
    let found = agents::discover(&cluster, &args.cluster.namespace)?;
    match cluster::metadata::list(&cluster, now) {
        Ok(meta) => ws.save_cluster_meta(&meta, now)?,
        // Flows still count without names; say what is missing and why.
        Err(e) => eprintln!("warning: flows are pulled without the cluster's names: {e:#}"),
    }
    if found.pods.is_empty() {
        bail!(
            "no agent pods in namespace `{}` of context `{}` yet (the DaemonSet wants {}): wait, or see \
             `kubectl -n {} describe daemonset egressor-agent`",
            found.namespace,
            cluster.context,
            found.desired,
            found.namespace
        );
    }
    let mut links: Vec<Box<dyn AgentLink>> = Vec::new();
    let mut failed = Vec::new();
    for pod in &found.pods {
        let link = agents::ProxyLink::new(cluster.clone(), &found, pod);
        if !pod.ready {
            failed.push(AgentFailure {
                agent: link.name().to_string(),
                error: format!(
                    "not ready yet ({}); its batches wait in its spool, pull again later",
                    pod.state
                ),
            });
            continue;
        }
        if let Ok(info) = pull::fetch_info(&link)
            && let Some(problem) = info.version_problem()
        {
            eprintln!("warning: the agent on {} {problem}", link.name());
        }
        links.push(Box::new(link));
    }
    Ok((links, failed))
}

/// Every agent's pod log (pods that lived and went between pulls) into the workspace, before any
/// flow is ingested, so a flow to a pod on another node finds it. An agent that cannot say is
/// pulled anyway (its error shows when its flows are fetched).
fn collect_agent_pods(ws: &mut Workspace, links: &[Box<dyn AgentLink>], now: Timestamp) {
    for link in links {
        match pull::fetch_pods(link.as_ref()) {
            Ok(Some(page)) if !page.pods.is_empty() => {
                let meta = ClusterMeta { pods: page.pods, ..Default::default() };
                if let Err(e) = ws.save_cluster_meta(&meta, now) {
                    eprintln!("warning: the pods of {} were not stored: {e:#}", link.name());
                }
            }
            Ok(_) => {}
            Err(e) => tracing::info!("no pod log from {}: {e:#}", link.name()),
        }
    }
}

/// One agent's pull behind a spinner on stderr (stdout stays for the report).
fn pull_one(ws: &mut Workspace, link: &dyn AgentLink, enricher: Option<&Enricher>) -> Result<PullReport> {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    let r = pull::pull(ws, link, enricher, |r| {
        bar.set_message(format!(
            "{}: {} batches, {} records",
            link.name(),
            r.batches_fetched,
            r.records_ingested
        ));
        bar.tick();
    });
    bar.finish_and_clear();
    r
}

fn warn_of_loss(name: &str, r: &PullReport) {
    let l = &r.loss;
    if l.map_insert_failures + l.sockets_evicted + l.spool_dropped_batches > 0 {
        eprintln!(
            "warning: {name} reported loss: {} map insert failures, {} sockets evicted before close, \
             {} batches ({} records) dropped from a full spool",
            l.map_insert_failures, l.sockets_evicted, l.spool_dropped_batches, l.spool_dropped_records
        );
    }
}
