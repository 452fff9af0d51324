//! `egressor agent`: kernel counters -> windowed flow records -> durable spool -> served to pullers.
//!
//! One loop drains the capture every interval and appends a batch to the spool; an HTTP server
//! (axum) serves the spool through a cursor API, `/healthz` and Prometheus `/metrics`. On SIGTERM or
//! Ctrl-C the window in flight is drained and spooled before exit, so a clean stop loses nothing; a
//! SIGKILL loses at most the window in flight (counters since the last drain).

pub mod attribution;
pub mod job;
pub mod live;
mod server;
pub mod spool;
pub mod window;

pub use window::Windower;

use crate::capture::EventSource;
use crate::cluster::watch::{self as pod_watch, PodLog};
use crate::model::Timestamp;
use crate::transport::{Batch, Loss};
use anyhow::{Context, Result};
use spool::Spool;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// This host's name, the node its flow records carry (the agent's default `--node`; `run` and a
/// local `top` name their records with it too).
pub fn host_name() -> std::io::Result<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string())
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub listen: SocketAddr,
    pub token: Option<String>,
    pub interval: Duration,
    pub cgroup_root: PathBuf,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    pub node: String,
}

/// Counters about the agent itself, for /metrics.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    pub drains: u64,
    pub records: u64,
    pub batches: u64,
    pub map_entries: u32,
    pub map_capacity: u32,
    pub map_insert_failures: u64,
    pub sockets_evicted: u64,
    pub last_drain_seconds: f64,
    pub tracked_sockets: usize,
}

pub struct Shared {
    pub spool: Spool,
    pub metrics: Metrics,
    pub node: String,
    pub token: Option<String>,
    /// When a puller last acknowledged batches (`egressor status` shows it as the last pull).
    pub last_ack: Option<Timestamp>,
    /// The node's pods as its watch saw them (empty outside Kubernetes), served at `/v1/pods`.
    pub pods: Arc<Mutex<PodLog>>,
}

pub type State = Arc<Mutex<Shared>>;

/// Drains `source` once into a batch and spools it (no batch when nothing moved and nothing was lost).
pub fn drain_once(
    source: &mut dyn EventSource,
    windower: &mut Windower,
    state: &State,
    start: Timestamp,
    end: Timestamp,
) -> Result<Option<Batch>> {
    let t0 = Instant::now();
    let drain = source.drain().context("draining kernel counters")?;
    let out = windower.window(drain, start, end, "pending");
    let elapsed = t0.elapsed().as_secs_f64();
    let mut shared = state.lock().expect("agent state lock");
    let node = shared.node.clone();
    let m = &mut shared.metrics;
    m.drains += 1;
    m.last_drain_seconds = elapsed;
    m.map_entries = out.map_entries;
    m.map_capacity = out.map_capacity;
    m.map_insert_failures += out.map_insert_failures;
    m.sockets_evicted += out.evicted;
    m.tracked_sockets = windower.tracked_sockets();
    if out.records.is_empty() && out.map_insert_failures == 0 && out.evicted == 0 {
        return Ok(None);
    }
    m.records += out.records.len() as u64;
    m.batches += 1;
    let batch = Batch {
        batch_id: String::new(),
        seq: 0,
        node,
        created_at: Timestamp::now(),
        window_start: start,
        window_end: end,
        loss: Loss {
            map_insert_failures: out.map_insert_failures,
            sockets_evicted: out.evicted,
            ..Loss::default()
        },
        records: out.records,
    };
    let stored = shared.spool.append(batch)?;
    Ok(Some(stored))
}

/// Runs the agent until SIGTERM/SIGINT.
pub fn run(cfg: AgentConfig, mut source: Box<dyn EventSource + Send>) -> Result<()> {
    let spool = Spool::open(&cfg.spool_dir, cfg.spool_max_bytes)?;
    tracing::info!(
        instance = spool.instance(),
        next_seq = spool.next_seq(),
        "spool ready at {}",
        cfg.spool_dir.display()
    );
    let pods_file = cfg.spool_dir.join("pods.json");
    let pods = Arc::new(Mutex::new(load_pod_log(&pods_file)));
    let state: State = Arc::new(Mutex::new(Shared {
        spool,
        metrics: Metrics::default(),
        node: cfg.node.clone(),
        token: cfg.token.clone(),
        last_ack: None,
        pods: pods.clone(),
    }));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("cannot listen on {}", cfg.listen))?;
        eprintln!("egressor agent: serving on http://{} (node {})", listener.local_addr()?, cfg.node);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(server::serve(listener, state.clone(), stop_rx));
        let watch = match pod_watch::agent_client().await {
            Some(client) => {
                eprintln!("egressor agent: watching the pods of node {}", cfg.node);
                Some(tokio::spawn(pod_watch::watch_node_pods(client, cfg.node.clone(), pods.clone())))
            }
            None => None,
        };
        let mut windower = Windower::new(&cfg.node, cfg.cgroup_root.clone());
        let mut ticker = tokio::time::interval(cfg.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let mut start = Timestamp::now();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            let stopping = tokio::select! {
                _ = ticker.tick() => false,
                _ = term.recv() => true,
                _ = tokio::signal::ctrl_c() => true,
            };
            let end = Timestamp::now();
            // Draining is a few map reads; doing it on this thread keeps windows strictly ordered.
            if let Err(e) = drain_once(source.as_mut(), &mut windower, &state, start, end) {
                tracing::error!("{e:#}");
            }
            save_pod_log(&pods, &pods_file, end);
            start = end;
            if stopping {
                eprintln!("egressor agent: stopping; the last window is spooled");
                break;
            }
        }
        if let Some(w) = watch {
            w.abort();
        }
        let _ = stop_tx.send(true);
        let _ = server.await;
        Ok(())
    })
}

/// The pod log the previous run saved next to the spool (its pods' names outlive a restart).
fn load_pod_log(file: &std::path::Path) -> PodLog {
    match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!("{} is unreadable ({e}); starting an empty pod log", file.display());
            PodLog::default()
        }),
        Err(_) => PodLog::default(),
    }
}

/// Writes the pod log when it changed (atomically: a crash leaves the old or the new file).
fn save_pod_log(pods: &Mutex<PodLog>, file: &std::path::Path, now: Timestamp) {
    let mut log = pods.lock().expect("pod log");
    log.prune(now);
    if !log.dirty {
        return;
    }
    let tmp = file.with_extension("json.tmp");
    let written = serde_json::to_vec(&*log)
        .map_err(anyhow::Error::from)
        .and_then(|b| std::fs::write(&tmp, b).map_err(Into::into))
        .and_then(|()| std::fs::rename(&tmp, file).map_err(Into::into));
    match written {
        Ok(()) => log.dirty = false,
        Err(e) => tracing::warn!("cannot save the pod log to {}: {e:#}", file.display()),
    }
}
