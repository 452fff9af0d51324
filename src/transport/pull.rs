//! `egressor pull`: fetch every new batch from each agent into the workspace.
//!
//! Order of effects per page: ingest (one transaction) -> save the cursor -> acknowledge to the agent.
//! A pull killed between any two steps is safe: re-fetched batches are skipped by batch id, and the
//! agent keeps unacknowledged batches. Pages overlap: page N+1 is fetched and converted while page
//! N commits, but page N's cursor is saved and acknowledged only after its commit succeeded.

use super::link::AgentLink;
use super::{AgentInfo, PODS_SCHEMA, PodsPage};
use super::{BatchPage, Loss, WIRE_SCHEMA};
use crate::engines::enrich::Enricher;
use crate::model::Source;
use crate::store::Workspace;
use crate::store::ingest::PendingIngest;
use anyhow::{Context, Result, bail};
use serde::Serialize;

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

/// `GET path` on the agent, as JSON of type `T`: a refused token, an error status or an unreadable
/// body each become one message naming the agent and what to do. `None` on 404 when
/// `missing_is_none` (an endpoint older agents do not have).
fn get_json<T: serde::de::DeserializeOwned>(
    link: &dyn AgentLink,
    path: &str,
    what: &str,
    missing_is_none: bool,
) -> Result<Option<T>> {
    let reply = link.request(false, path)?;
    let name = link.name();
    match reply.status {
        404 if missing_is_none => return Ok(None),
        401 => bail!("agent {name} refused the request (401): {}", link.unauthorized_hint()),
        s if !reply.ok() => bail!("agent {name} answered {s}: {}", reply.message()),
        _ => {}
    }
    let v = serde_json::from_slice(&reply.body)
        .with_context(|| format!("agent {name} sent {what} this egressor cannot read"))?;
    Ok(Some(v))
}

/// Refuses a document of another version of `expected`.
fn check_schema(link: &dyn AgentLink, got: &str, expected: &str) -> Result<()> {
    if got != expected {
        bail!(
            "agent {} speaks {got}, this egressor understands {expected}: upgrade one of them",
            link.name()
        );
    }
    Ok(())
}

/// One `GET /v1/batches` page: after `after` in spool `instance` (empty: from the start). Shared by
/// `pull` and the agent source of `egressor top` (which reads without acknowledging).
pub fn fetch_page(link: &dyn AgentLink, instance: &str, after: u64, limit: u32) -> Result<BatchPage> {
    let query = format!("/v1/batches?instance={}&after={after}&limit={limit}", url_escape(instance));
    let page: BatchPage = get_json(link, &query, &format!("a page that is not {WIRE_SCHEMA}"), false)?
        .expect("only a 404 gives none");
    check_schema(link, &page.schema, WIRE_SCHEMA)?;
    Ok(page)
}

/// `GET /v1/pods`: the pods the agent's watch saw; `None` from an agent that has no such endpoint
/// (an older version).
pub fn fetch_pods(link: &dyn AgentLink) -> Result<Option<PodsPage>> {
    let page: Option<PodsPage> =
        get_json(link, "/v1/pods", &format!("a pod list that is not {PODS_SCHEMA}"), true)?;
    if let Some(p) = &page {
        check_schema(link, &p.schema, PODS_SCHEMA)?;
    }
    Ok(page)
}

/// `GET /v1/info`: the agent's version, spool and losses (`egressor status`, and `pull`'s version check).
pub fn fetch_info(link: &dyn AgentLink) -> Result<AgentInfo> {
    Ok(get_json(link, "/v1/info", "an /v1/info", false)?.expect("only a 404 gives none"))
}

/// Spool instances are hex ids; anything else is escaped rather than trusted into a URL.
fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Pulls everything new from one agent. `progress` is called after each page with the batches so far.
pub fn pull(
    ws: &mut Workspace,
    link: &dyn AgentLink,
    enricher: Option<&Enricher>,
    mut progress: impl FnMut(&PullReport),
) -> Result<PullReport> {
    let base = link.cursor_key();
    let (k_instance, k_cursor) = cursor_keys(&base);
    let mut instance = ws.setting(&k_instance)?.unwrap_or_default();
    let mut cursor: u64 = ws.setting(&k_cursor)?.and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut report = PullReport { agent: link.name().to_string(), ..Default::default() };
    // The page before this one, committing in the background while this one is fetched and
    // converted; it is saved and acknowledged only once its commit is known to have succeeded.
    let mut committing: Option<PageInFlight> = None;
    loop {
        let page = match next_page(ws, link, enricher, &mut instance, cursor, &mut report) {
            Ok(p) => p,
            Err(e) => {
                // The page already committing is still saved and acknowledged (if its commit
                // succeeded), so a re-run does not fetch it again; the error is this page's, and
                // says so if that page failed too.
                if let Some(prev) = committing.take()
                    && let Err(settle_err) = settle(ws, link, prev, &mut report, &mut progress)
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
            settle(ws, link, prev, &mut report, &mut progress)?;
        }
        let more = page.more;
        committing = Some(page);
        if !more {
            break;
        }
    }
    if let Some(prev) = committing.take() {
        settle(ws, link, prev, &mut report, &mut progress)?;
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
    link: &dyn AgentLink,
    enricher: Option<&Enricher>,
    instance: &mut String,
    cursor: u64,
    report: &mut PullReport,
) -> Result<PageInFlight> {
    let page = fetch_page(link, instance, cursor, 50)?;
    let base = link.name();
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
                if let Some(e) = enricher {
                    e.enrich(&mut r);
                }
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
    link: &dyn AgentLink,
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
    let (k_instance, k_cursor) = cursor_keys(&link.cursor_key());
    ws.set_setting(&k_instance, &page.instance)?;
    ws.set_setting(&k_cursor, &page.cursor.to_string())?;
    if page.cursor > 0 {
        let ack = format!("/v1/ack?instance={}&upto={}", url_escape(&page.instance), page.cursor);
        // Not fatal: the agent keeps unacknowledged batches and we will skip them next time.
        let failed = match link.request(true, &ack) {
            Ok(r) if r.ok() => None,
            Ok(r) => Some(format!("{}: {}", r.status, r.message())),
            Err(e) => Some(format!("{e:#}")),
        };
        if let Some(why) = failed {
            tracing::warn!(
                "agent {}: acknowledgement failed ({why}); it will resend, nothing is lost",
                link.name()
            );
        }
    }
    report.instance = page.instance;
    report.cursor = page.cursor;
    progress(report);
    Ok(())
}
