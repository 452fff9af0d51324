//! One command's traffic, captured (`egressor run`): a cgroup of its own, the agent's probes attached
//! to that cgroup only, and the agent's windowing, until the command exits.
//!
//! ```text
//! JobCgroup::create --> KernelCapture on it --> spawn CMD inside --(drain every interval)--> records
//!   CMD exits --> stop what it left running --> drain until its sockets are closed --> Job
//! ```
//!
//! Children are counted because a process's sockets belong to the cgroup it was in when it created
//! them, and forked processes start in their parent's cgroup. Other processes on the host are not in
//! the cgroup, so the probes never see their packets.

use super::window::Windower;
use crate::capture::{self, CaptureConfig, JobCgroup, KernelCapture};
use crate::model::{FlowRecord, Timestamp};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

pub struct JobOptions {
    /// Where to create the job's cgroup (default: the cgroup v2 root).
    pub cgroup_parent: Option<PathBuf>,
    /// How often the kernel's counters are drained while the command runs.
    pub interval: Duration,
    /// How long to wait, after the last process is gone, for its sockets to finish closing.
    pub settle: Duration,
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions { cgroup_parent: None, interval: Duration::from_secs(1), settle: Duration::from_secs(2) }
    }
}

/// What the command did.
pub struct Job {
    pub records: Vec<FlowRecord>,
    pub status: ExitStatus,
    pub started: Timestamp,
    pub ended: Timestamp,
    /// This host's name (the node of the records).
    pub host: String,
    /// Processes the command left running when it exited (stopped, their traffic until then counted).
    pub left_running: usize,
    /// Packets the kernel could not count and sockets evicted before a drain (both 0 in a healthy run).
    pub map_insert_failures: u64,
    pub evicted: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Capture could not start: permissions, no cgroup v2, an old kernel.
    #[error("{0}")]
    Capture(#[from] capture::Error),
    /// The command could not be started (not found, not executable).
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Runs `argv` in a cgroup of its own and returns its traffic and exit status.
pub fn run(argv: &[OsString], opts: &JobOptions) -> Result<Job, JobError> {
    let root = capture::cgroup2_root()?;
    let parent = opts.cgroup_parent.clone().unwrap_or_else(|| root.clone());
    let cgroup = JobCgroup::create(&parent, &format!("egressor-run-{}", std::process::id()))?;
    let config = CaptureConfig { cgroup_path: Some(cgroup.path().to_path_buf()), ..CaptureConfig::default() };
    let mut source = KernelCapture::start(&config)?;
    let host = super::host_name().unwrap_or_else(|_| "localhost".into());
    let mut windows = Windows::new(Windower::new(&host, root));

    forward_termination_signals();
    let started = Timestamp::now();
    let mut command = Command::new(&argv[0]);
    command.args(&argv[1..]);
    let mut child = cgroup
        .spawn(&mut command)
        .map_err(|source| JobError::Spawn { program: argv[0].to_string_lossy().into_owned(), source })?;
    let status = wait_draining(&mut child, &mut source, &mut windows, opts.interval)?;
    let left_running = cgroup.stop_all(Duration::from_secs(2));
    settle(&mut source, &mut windows, opts.settle)?;
    let ended = Timestamp::now();
    Ok(Job {
        records: windows.records,
        status,
        started,
        ended,
        host,
        left_running,
        map_insert_failures: windows.map_insert_failures,
        evicted: windows.evicted,
    })
}

/// The agent's windowing, with every window's records and losses kept.
struct Windows {
    windower: Windower,
    last: Timestamp,
    records: Vec<FlowRecord>,
    map_insert_failures: u64,
    evicted: u64,
}

impl Windows {
    fn new(windower: Windower) -> Windows {
        Windows { windower, last: Timestamp::now(), records: Vec::new(), map_insert_failures: 0, evicted: 0 }
    }

    /// Drains the kernel once; returns how many of the job's sockets are still open.
    fn drain(&mut self, source: &mut KernelCapture) -> Result<usize, JobError> {
        let drain = source.drain()?;
        let open = drain.sockets.iter().filter(|s| !s.closed && !s.listener).count();
        let now = Timestamp::now();
        let out = self.windower.window(drain, self.last, now, "run");
        self.last = now;
        self.records.extend(out.records);
        self.map_insert_failures += out.map_insert_failures;
        self.evicted += out.evicted;
        Ok(open)
    }
}

fn wait_draining(
    child: &mut std::process::Child,
    source: &mut KernelCapture,
    windows: &mut Windows,
    interval: Duration,
) -> Result<ExitStatus, JobError> {
    let mut next_drain = Instant::now() + interval;
    loop {
        if let Some(status) =
            child.try_wait().map_err(|source| JobError::Io { context: "waiting for the command", source })?
        {
            return Ok(status);
        }
        let signal = PENDING_SIGNAL.swap(0, Ordering::SeqCst);
        if signal != 0 {
            // SAFETY: plain syscall to our own child.
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        }
        if Instant::now() >= next_drain {
            windows.drain(source)?;
            next_drain = Instant::now() + interval;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// After the last process: TCP connections finish closing (FIN, last ACK) in the kernel. Drains until
/// no socket of the job is open, or `limit` has passed (whatever was counted until then is kept).
fn settle(source: &mut KernelCapture, windows: &mut Windows, limit: Duration) -> Result<(), JobError> {
    let deadline = Instant::now() + limit;
    loop {
        let open = windows.drain(source)?;
        if open == 0 || Instant::now() >= deadline {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A SIGTERM or SIGINT to egressor while the command runs: recorded and passed on to the command, so
/// that egressor lives to report what it sent (a Ctrl-C in a terminal reaches both anyway).
static PENDING_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn record_signal(sig: libc::c_int) {
    PENDING_SIGNAL.store(sig, Ordering::SeqCst);
}

fn forward_termination_signals() {
    // SAFETY: the handler only stores to an atomic (async-signal-safe). Handlers are reset to the
    // default in the command by exec, so the command is not affected.
    unsafe {
        libc::signal(libc::SIGTERM, record_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, record_signal as *const () as libc::sighandler_t);
    }
}
