//! `cargo xtask <task>`: the project's own commands, so the README and CI need only two lines.
//!
//! - `setup`: install the system packages egressor needs (Debian), build it, and run the main job on
//!   demo data so a newcomer sees real output.
//! - `test`: formatting, clippy and every test (unit and integration; probe tests need root).
//! - `bench`: the benchmarks behind docs/benchmarks.md.
//!
//! Every nested cargo call shares one persistent target directory outside the work tree
//! (`$CARGO_TARGET_DIR`, default `~/.cache/egressor/target`): the bundled DuckDB takes ~30 minutes to
//! compile from scratch and must be built once per machine, not once per clone.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;

/// Debian packages: clang/llvm/libbpf-dev build the probes, bpftool inspects them, iperf3 and tmux are
/// used by tests and benchmarks, nethogs is the agent benchmark's peer (bandwhich, the other, comes
/// from crates.io: `cargo install bandwhich`), graphviz renders `egressor graph --output dot`, time
/// (`/usr/bin/time`) measures iperf3 in `docs/experiments/veth-hook-floor.py`; python3, util-linux
/// (setpriv), zsh and man-db are used by the `run`, completion and man page tests.
const APT_PACKAGES: &[&str] = &[
    "clang",
    "llvm",
    "libbpf-dev",
    "linux-libc-dev",
    "bpftool",
    "iproute2",
    "iptables",
    "iperf3",
    "nethogs",
    "tmux",
    "graphviz",
    "curl",
    "time",
    // `egressor run` tests: python3 is a forked server, setpriv runs egressor without root, zsh and
    // man-db load the completion script and render the man page.
    "python3",
    "util-linux",
    "zsh",
    "man-db",
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo run` sets CARGO_MANIFEST_DIR for the process: the clone this runs in. The compile-time
    // value names the clone that built the binary, which a shared target directory can reuse.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let root = manifest.parent().expect("xtask is in the workspace").to_path_buf();
    std::env::set_current_dir(&root)?;
    if std::env::var_os("CARGO_TARGET_DIR").is_none() {
        let home = std::env::var_os("HOME").context("HOME is not set; set CARGO_TARGET_DIR")?;
        let dir = PathBuf::from(home).join(".cache/egressor/target");
        // SAFETY: single-threaded at this point; every child process inherits it.
        unsafe { std::env::set_var("CARGO_TARGET_DIR", &dir) };
    }
    match args.first().map(String::as_str) {
        Some("setup") => setup(),
        Some("deps") => install_packages(),
        Some("test") => test(&args[1..]),
        Some("bench") => bench(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask setup | deps | test [-- cargo test args] | bench [ingest|cost|top|agent|cluster|anomalies]"
            );
            bail!("unknown task {:?}", args.first());
        }
    }
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("$ {cmd:?}");
    let status = cmd.status().with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// A cargo command with the environment `cargo run` gave xtask removed. Build scripts such as
/// ring's declare `rerun-if-env-changed=CARGO_PKG_NAME` / `CARGO_MANIFEST_DIR`: inheriting xtask's
/// values would make them rerun, rebuild every crate above them and recompile the bundled DuckDB
/// (~30 minutes) whenever cargo is run both directly and through xtask, or from another clone.
fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_MANIFEST_")
            || matches!(
                k.as_ref(),
                "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE" | "OUT_DIR"
            )
        {
            c.env_remove(k.as_ref());
        }
    }
    c
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false)
}

fn setup() -> Result<()> {
    install_packages()?;
    // The dev profile compiles every dependency (DuckDB included) with optimisation, and it is the
    // profile the tests use: one DuckDB build serves both.
    run(cargo().args(["build", "--bin", "egressor"]))?;
    let bin = PathBuf::from(std::env::var_os("CARGO_TARGET_DIR").unwrap()).join("debug/egressor");
    eprintln!("\negressor is built: {}\nThe main job on demo data:\n", bin.display());
    run(Command::new(&bin).args(["demo", "--days", "14"]))?;
    run(Command::new(&bin).args(["workspace", "info"]))?;
    run(Command::new(&bin).args(["flows", "--since", "1h", "--limit", "10"]))?;
    Ok(())
}

/// Installs the Debian packages that are missing (nothing to do, and no network, when all are there).
fn install_packages() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg").args(["-s", p]).output().map(|o| o.status.success()).unwrap_or(false)
        })
        .collect();
    if !missing.is_empty() {
        let sudo: &[&str] = if is_root() { &[] } else { &["sudo"] };
        let mut update = Command::new(sudo.first().copied().unwrap_or("apt-get"));
        if !sudo.is_empty() {
            update.arg("apt-get");
        }
        run(update.arg("update"))?;
        let mut install = Command::new(sudo.first().copied().unwrap_or("apt-get"));
        if !sudo.is_empty() {
            install.arg("apt-get");
        }
        run(install.args(["install", "-y"]).args(&missing).env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    install_python_tools()
}

/// The official Kubernetes JSON schemas, which the cluster tests validate every applied object and
/// `deploy --dry-run` against (PyPI `kubernetes-validate`; 1.37.0 carries Kubernetes 1.32-1.37).
fn install_python_tools() -> Result<()> {
    let have =
        Command::new("kubernetes-validate").arg("--version").output().is_ok_and(|o| o.status.success());
    if !have {
        run(Command::new("python3").args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "kubernetes-validate==1.37.0",
        ]))?;
    }
    Ok(())
}

fn test(extra: &[String]) -> Result<()> {
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    run(cargo().args(["test", "--workspace"]).args(extra))?;
    Ok(())
}

fn bench(which: &[String]) -> Result<()> {
    let names: Vec<&str> = if which.is_empty() {
        vec!["ingest", "cost", "top", "agent", "cluster", "anomalies"]
    } else {
        which.iter().map(String::as_str).collect()
    };
    // The dev profile compiles DuckDB with -O3 (see Cargo.toml) and shares its build with the tests;
    // a release build would compile DuckDB a second time for ~30 minutes. Benchmarks say which
    // profile produced their numbers.
    for name in names {
        run(cargo().args(["bench", "--profile", "dev", "--bench", name]))?;
    }
    Ok(())
}
