//! `egressor pull`: fetch every new batch from each agent into the workspace.
//!
//! Order of effects per page: ingest (one transaction) -> save the cursor -> acknowledge to the agent.
//! A pull killed between any two steps is safe: re-fetched batches are skipped by batch id, and the
//! agent keeps unacknowledged batches. Pages overlap: page N+1 is fetched and converted while page
//! N commits, but page N's cursor is saved and acknowledged only after its commit succeeded.

use super::{BatchPage, Loss, WIRE_SCHEMA};
use crate::model::Source;
use crate::store::Workspace;
use crate::store::ingest::PendingIngest;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct AgentTarget {
    pub url: String,
    pub token: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct PullReport {
    pub agent: String,
    pub instance: String,
    pub batches_fetched: u64,
    pub batches_ingested: u64,
    pub batches_already_present: u64,
    pub records_ingested: u64,
    pub cursor: u64,
    pub loss: Loss,
}

fn cursor_keys(url: &str) -> (String, String) {
    (format!("pull.{url}.instance"), format!("pull.{url}.cursor"))
}

/// Pulls everything new from one agent. `progress` is called after each page with the batches so far.
/// One `GET /v1/batches` page: after `after` in spool `instance` (empty: from the start). Shared by
/// `pull` and the agent source of `egressor top` (which reads without acknowledging).
pub fn fetch_page(
    client: &reqwest::blocking::Client,
    base: &str,
    token: Option<&str>,
    instance: &str,
    after: u64,
    limit: u32,
) -> Result<BatchPage> {
    let mut req = client.get(format!("{base}/v1/batches")).query(&[
        ("instance", instance),
        ("after", &after.to_string()),
        ("limit", &limit.to_string()),
    ]);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().with_context(|| format!("cannot reach agent {base}"))?;
    let status = resp.status();
    if status == reqwest::StatusCode::UNAUTHORIZED {
        bail!("agent {base} refused the request (401): give the agent's token with --token-file");
    }
    if !status.is_success() {
        let body = resp.text().unwrap_or_default();
        bail!("agent {base} answered {status}: {body}");
    }
    let page: BatchPage =
        resp.json().with_context(|| format!("agent {base} sent a page that is not {WIRE_SCHEMA}"))?;
    if page.schema != WIRE_SCHEMA {
        bail!(
            "agent {base} speaks {}, this egressor understands {WIRE_SCHEMA}: upgrade one of them",
            page.schema
        );
    }
    Ok(page)
}

pub fn pull(
    ws: &mut Workspace,
    target: &AgentTarget,
    mut progress: impl FnMut(&PullReport),
) -> Result<PullReport> {
    let base = target.url.trim_end_matches('/').to_string();
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let (k_instance, k_cursor) = cursor_keys(&base);
    let mut instance = ws.setting(&k_instance)?.unwrap_or_default();
    let mut cursor: u64 = ws.setting(&k_cursor)?.and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut report = PullReport { agent: base.clone(), ..Default::default() };
    // The page before this one, committing in the background while this one is fetched and
    // converted; it is saved and acknowledged only once its commit is known to have succeeded.
    let mut committing: Option<PageInFlight> = None;
    loop {
        let page = match next_page(ws, &client, target, &base, &mut instance, cursor, &mut report) {
            Ok(p) => p,
            Err(e) => {
                // The page already committing is still saved and acknowledged (if its commit
                // succeeded), so a re-run does not fetch it again; the error is this page's, and
                // says so if that page failed too.
                if let Some(prev) = committing.take()
                    && let Err(settle_err) =
                        settle(ws, &client, target, &base, prev, &mut report, &mut progress)
                {
                    return Err(
                        e.context(format!("the page before it was not stored either: {settle_err:#}"))
                    );
                }
                return Err(e);
            }
        };
        cursor = page.cursor;
        if let Some(prev) = committing.take() {
            settle(ws, &client, target, &base, prev, &mut report, &mut progress)?;
        }
        let more = page.more;
        committing = Some(page);
        if !more {
            break;
        }
    }
    if let Some(prev) = committing.take() {
        settle(ws, &client, target, &base, prev, &mut report, &mut progress)?;
    }
    Ok(report)
}

/// A fetched page whose records are committing.
struct PageInFlight {
    pending: Option<PendingIngest>,
    instance: String,
    cursor: u64,
    more: bool,
}

/// Fetches the page after `cursor`, checks its records and sends them to commit in the background.
fn next_page(
    ws: &mut Workspace,
    client: &reqwest::blocking::Client,
    target: &AgentTarget,
    base: &str,
    instance: &mut String,
    cursor: u64,
    report: &mut PullReport,
) -> Result<PageInFlight> {
    let page = fetch_page(client, base, target.token.as_deref(), instance, cursor, 50)?;
    if page.instance != *instance {
        if !instance.is_empty() {
            tracing::warn!(
                "agent {base} has a new spool instance ({} -> {}); reading it from the start",
                instance,
                page.instance
            );
        }
        *instance = page.instance.clone();
    }
    report.batches_fetched += page.batches.len() as u64;
    let pending = if page.batches.is_empty() {
        None
    } else {
        let mut session = ws.begin_ingest(&format!("agent:{base}"))?;
        // Taken by value: records are only stamped with their batch and source, not copied.
        for b in page.batches {
            report.loss.map_insert_failures += b.loss.map_insert_failures;
            report.loss.sockets_evicted += b.loss.sockets_evicted;
            report.loss.spool_dropped_batches += b.loss.spool_dropped_batches;
            report.loss.spool_dropped_records += b.loss.spool_dropped_records;
            for mut r in b.records {
                r.batch_id = Some(b.batch_id.clone());
                r.source = Some(Source::Agent);
                if let Err((field, msg)) = r.validate() {
                    bail!("agent {base} batch {} has an invalid record: {field}: {msg}", b.batch_id);
                }
                session.push(&r)?;
            }
        }
        Some(session.commit_in_background()?)
    };
    Ok(PageInFlight { pending, instance: instance.clone(), cursor: page.cursor, more: page.more })
}

/// Waits for a page's commit, then saves the cursor and acknowledges the page to the agent.
fn settle(
    ws: &mut Workspace,
    client: &reqwest::blocking::Client,
    target: &AgentTarget,
    base: &str,
    page: PageInFlight,
    report: &mut PullReport,
    progress: &mut impl FnMut(&PullReport),
) -> Result<()> {
    if let Some(pending) = page.pending {
        let ingested = ws.wait_ingest(pending)?;
        report.batches_ingested += ingested.batches_ingested.len() as u64;
        report.batches_already_present += ingested.batches_skipped.len() as u64;
        report.records_ingested += ingested.records_ingested;
    }
    let (k_instance, k_cursor) = cursor_keys(base);
    ws.set_setting(&k_instance, &page.instance)?;
    ws.set_setting(&k_cursor, &page.cursor.to_string())?;
    if page.cursor > 0 {
        let mut ack = client
            .post(format!("{base}/v1/ack"))
            .query(&[("instance", page.instance.as_str()), ("upto", &page.cursor.to_string())]);
        if let Some(t) = &target.token {
            ack = ack.bearer_auth(t);
        }
        // Not fatal: the agent keeps unacknowledged batches and we will skip them next time.
        if let Err(e) = ack.send().and_then(|r| r.error_for_status()) {
            tracing::warn!("agent {base}: acknowledgement failed ({e}); it will resend, nothing is lost");
        }
    }
    report.instance = page.instance;
    report.cursor = page.cursor;
    progress(report);
    Ok(())
}
