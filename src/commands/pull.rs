//! `egressor pull --agent URL...`: fetch every agent's new batches into the workspace, one agent
//! after another, with a progress line each; warns when an agent reports lost records.

use super::load;
use crate::cli::{self, PullArgs, Settings};
use crate::transport::pull::{self, AgentTarget, PullReport};
use crate::views::reports;
use anyhow::{Context, Result};
use std::io::Write;
use std::process::ExitCode;

pub fn run(settings: &Settings, args: &PullArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let mut ws = load::workspace_for_ingest(settings)?;
    let token = args.token_file.as_deref().map(cli::read_token).transpose()?;
    let mut reports = Vec::new();
    for url in &args.agents {
        let target = AgentTarget { url: url.clone(), token: token.clone() };
        let report = pull_one(&mut ws, &target).with_context(|| {
            format!("pull from {url} stopped; what was already ingested is kept, re-run to continue")
        })?;
        warn_of_loss(url, &report);
        reports.push(report);
    }
    reports::pull_reports(out, &reports, args.out.output.into(), settings.color)?;
    Ok(ExitCode::SUCCESS)
}

/// One agent's pull behind a spinner on stderr (stdout stays for the report).
fn pull_one(ws: &mut crate::store::Workspace, target: &AgentTarget) -> Result<PullReport> {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    let r = pull::pull(ws, target, |r| {
        bar.set_message(format!(
            "{}: {} batches, {} records",
            target.url, r.batches_fetched, r.records_ingested
        ));
        bar.tick();
    });
    bar.finish_and_clear();
    r
}

fn warn_of_loss(url: &str, r: &PullReport) {
    let l = &r.loss;
    if l.map_insert_failures + l.sockets_evicted + l.spool_dropped_batches > 0 {
        eprintln!(
            "warning: {url} reported loss: {} map insert failures, {} sockets evicted before close, \
             {} batches ({} records) dropped from a full spool",
            l.map_insert_failures, l.sockets_evicted, l.spool_dropped_batches, l.spool_dropped_records
        );
    }
}
