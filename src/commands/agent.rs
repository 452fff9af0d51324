//! `egressor agent`: the node agent. Loads the probes, then windows, spools and serves flow
//! batches until stopped (runs as root).

use crate::capture::{self, CaptureConfig, KernelCapture};
use crate::cli::{self, AgentArgs};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;

pub fn run(args: &AgentArgs) -> Result<ExitCode> {
    let token = args.token_file.as_deref().map(cli::read_token).transpose()?;
    if token.is_none() && !args.listen.ip().is_loopback() {
        eprintln!("warning: serving flow batches on {} without a token; pass --token-file", args.listen);
    }
    // Cgroup ids are named from the hierarchy's root: the host's, mounted where --cgroup points
    // in the agent's container; this host's otherwise.
    let cgroup_root = match &args.cgroup {
        Some(dir) if capture::is_cgroup2_mount(dir) => dir.clone(),
        _ => capture::cgroup2_root()?,
    };
    let cfg = CaptureConfig {
        cgroup_path: args.cgroup.clone(),
        max_sockets: args.max_sockets,
        ..CaptureConfig::default()
    };
    let kernel = KernelCapture::start(&cfg)?;
    let node = match &args.node {
        Some(n) => n.clone(),
        None => crate::agent::host_name().context("cannot read the hostname; pass --node")?,
    };
    crate::agent::run(
        crate::agent::AgentConfig {
            listen: args.listen,
            token,
            interval: args.interval,
            cgroup_root,
            spool_dir: spool_dir(args.spool.as_ref())?,
            spool_max_bytes: args.spool_max,
            node,
        },
        Box::new(kernel),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `--spool`, else /var/lib/egressor/spool as root, else the user's state directory.
fn spool_dir(arg: Option<&PathBuf>) -> Result<PathBuf> {
    Ok(match arg {
        Some(d) => d.clone(),
        None if unsafe { libc::geteuid() } == 0 => "/var/lib/egressor/spool".into(),
        None => dirs::state_dir()
            .or_else(dirs::data_dir)
            .context("no state directory; pass --spool")?
            .join("egressor/spool"),
    })
}
