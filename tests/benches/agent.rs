//! Agent overhead benchmark, side by side in one run: iperf3 over loopback and over a veth pair
//! between two network namespaces, alone, with `egressor agent`, with bandwhich and with nethogs;
//! then 10,000 new TCP connections per second with the agent.
//!
//! Run (root; iperf3, bandwhich, nethogs on PATH): `cargo xtask bench agent`.
//! `EGRESSOR_BENCH_SECONDS` (default 10) per run, `EGRESSOR_BENCH_ROUNDS` (default 3),
//! `EGRESSOR_BENCH_LINKS` (default `loopback,veth`); the modes
//! are interleaved round by round so machine noise hits them alike, and medians are printed.
//!
//! What is measured:
//! - the traffic's own CPU: user+sys of the iperf3 client and server (from wait4's rusage, whole
//!   life), per GB moved. The probes run in the kernel on the sending/receiving threads, so their
//!   cost shows up here, not in the agent;
//! - the observer's CPU: user+sys of the agent / bandwhich / nethogs process from /proc/PID/stat,
//!   over the traffic's run only (start-up excluded), in cores;
//! - the observer's peak RSS (VmHWM);
//! - in a separate mode, "agent+bpf_stats", the probes' own run time from the kernel
//!   (`kernel.bpf_stats_enabled`), as a share of the iperf3 CPU. The kernel's timing reads the
//!   clock twice per probe run, which itself costs the traffic CPU, so it is switched on only in
//!   that mode: "egressor agent" is the agent exactly as deployed, and the per-byte comparison
//!   against "none" uses it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const AGENT: &str = "egressor agent";
/// The agent again, with the kernel timing its probes (for their run time only).
const AGENT_STATS: &str = "agent+bpf_stats";
const MODES: [&str; 5] = ["none", AGENT, AGENT_STATS, "bandwhich", "nethogs"];

fn main() {
    let secs: u64 = env_or("EGRESSOR_BENCH_SECONDS", 10);
    let rounds: usize = env_or("EGRESSOR_BENCH_ROUNDS", 3);
    let peers = env_or("EGRESSOR_BENCH_PEERS", 1) != 0;
    preflight(peers);
    set_bpf_stats(false);
    let ns = VethPair::new();
    let ticks = clock_ticks();
    println!("{secs} s per run, {rounds} rounds, medians; CPU from rusage and /proc/PID/stat");
    println!("machine: {} CPUs, kernel {}", num_cpus(), kernel());
    // EGRESSOR_BENCH_PEERS=0: only "none" and the agent (more rounds in the same time, for the
    // per-byte comparison); EGRESSOR_BENCH_CHURN=0 skips the connection-rate part.
    let modes: &[&str] = if peers { &MODES } else { &MODES[..3] };
    // EGRESSOR_BENCH_LINKS=veth (or loopback) measures one link only.
    let links = std::env::var("EGRESSOR_BENCH_LINKS").unwrap_or_else(|_| "loopback,veth".into());
    let links: Vec<&str> = links.split(',').map(str::trim).collect();
    if let Some(bad) = links.iter().find(|l| !["loopback", "veth"].contains(l)) {
        panic!("EGRESSOR_BENCH_LINKS: unknown link {bad:?} (expected loopback and/or veth, comma-separated)");
    }
    for link in ["loopback", "veth"].into_iter().filter(|l| links.contains(l)) {
        let mut results: Vec<Vec<Run>> = vec![Vec::new(); modes.len()];
        for round in 0..rounds {
            for (m, mode) in modes.iter().enumerate() {
                let r = iperf_run(link, mode, secs, &ns, ticks);
                eprintln!("  round {round} {link:8} {mode:15} {r:?}");
                results[m].push(r);
            }
        }
        print_table(link, modes, &results);
    }
    if env_or("EGRESSOR_BENCH_CHURN", 1) != 0 {
        churn(secs, rounds, ticks);
    }
    set_bpf_stats(false);
}

/// The kernel times every BPF program run while this is on (two clock reads per run).
fn set_bpf_stats(on: bool) {
    std::fs::write("/proc/sys/kernel/bpf_stats_enabled", if on { "1" } else { "0" })
        .expect("kernel.bpf_stats_enabled");
}

#[derive(Clone, Debug, Default)]
struct Run {
    gbit_s: f64,
    /// iperf3 client + server CPU seconds per GB moved.
    cpu_s_per_gb: f64,
    /// Observer CPU in cores over the traffic run.
    observer_cores: f64,
    /// With the agent: the probes' own run time (kernel bpf_stats) as a share of the iperf3 CPU.
    probe_share: f64,
    /// With the agent: probe runs per GB and mean ns per run.
    probe_ns_per_run: f64,
    observer_rss_mib: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn print_table(link: &str, modes: &[&str], results: &[Vec<Run>]) {
    let base = median(results[0].iter().map(|r| r.cpu_s_per_gb).collect());
    println!("\niperf3 over {link}:");
    println!(
        "{:<16} {:>10} {:>16} {:>12} {:>14} {:>15} {:>10} {:>12} {:>10}",
        "observer",
        "Gbit/s",
        "iperf3 CPU s/GB",
        "vs none",
        "paired",
        "observer cores",
        "RSS MiB",
        "probes/CPU",
        "ns/run"
    );
    for (mode, runs) in modes.iter().zip(results) {
        let cpu = median(runs.iter().map(|r| r.cpu_s_per_gb).collect());
        let (cores, rss) = if *mode == "none" {
            ("-".to_string(), "-".to_string())
        } else {
            (
                format!("{:.4}", median(runs.iter().map(|r| r.observer_cores).collect())),
                format!("{:.1}", median(runs.iter().map(|r| r.observer_rss_mib).collect())),
            )
        };
        let (share, ns) = if *mode == AGENT_STATS {
            (
                format!("{:.2}%", median(runs.iter().map(|r| r.probe_share * 100.0).collect())),
                format!("{:.0}", median(runs.iter().map(|r| r.probe_ns_per_run).collect())),
            )
        } else {
            ("-".to_string(), "-".to_string())
        };
        // Paired: each round's run against the "none" run of the same round (machine noise
        // drifts over minutes; neighbours in time share it), median over rounds.
        let paired = median(
            runs.iter()
                .zip(&results[0])
                .map(|(r, n)| (r.cpu_s_per_gb / n.cpu_s_per_gb - 1.0) * 100.0)
                .collect(),
        );
        println!(
            "{:<16} {:>10.1} {:>16.4} {:>+11.1}% {:>+13.1}% {:>15} {:>10} {:>12} {:>10}",
            mode,
            median(runs.iter().map(|r| r.gbit_s).collect()),
            cpu,
            (cpu / base - 1.0) * 100.0,
            paired,
            cores,
            rss,
            share,
            ns
        );
    }
}

/// One iperf3 transfer of `secs` seconds with `mode` observing.
// The iperf3 processes are reaped by `wait_rusage` (wait4), which also returns their CPU time.
#[allow(clippy::zombie_processes)]
fn iperf_run(link: &str, mode: &str, secs: u64, ns: &VethPair, ticks: f64) -> Run {
    let (server_ns, client_ns, server_ip, dev) = match link {
        "loopback" => (None, None, "127.0.0.1", "lo"),
        _ => (Some(ns.b.as_str()), Some(ns.a.as_str()), "198.19.0.2", ns.dev_a.as_str()),
    };
    let port = 5201 + (std::process::id() % 1000) as u16;
    let mut server = in_ns(server_ns, "iperf3", &["-s", "-1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .expect("iperf3 server");
    std::thread::sleep(Duration::from_millis(300));
    let tmp = tempfile::tempdir().unwrap();
    let mut observer: Option<Child> = match mode {
        "none" => None,
        AGENT | AGENT_STATS => Some(start_agent(tmp.path(), port + 1000)),
        // The peers capture on the interface the traffic crosses, in its namespace.
        "bandwhich" => Some(
            in_ns(client_ns, "bandwhich", &["--interface", dev, "--raw"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("bandwhich"),
        ),
        "nethogs" => Some(
            in_ns(client_ns, "nethogs", &["-a", "-t", "-d", "1", dev])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nethogs"),
        ),
        _ => unreachable!(),
    };
    if observer.is_some() && mode != AGENT && mode != AGENT_STATS {
        std::thread::sleep(Duration::from_secs(1)); // let it open its capture
    }
    let obs_pid = observer.as_ref().map(Child::id);
    if mode == AGENT_STATS {
        set_bpf_stats(true);
    }
    let probes0 = (mode == AGENT_STATS).then(probe_stats);
    let cpu0 = obs_pid.map(|p| proc_cpu_s(p, ticks));
    let client = in_ns(
        client_ns,
        "iperf3",
        &["-c", server_ip, "-p", &port.to_string(), "-t", &secs.to_string(), "-J"],
    )
    .stdout(Stdio::piped())
    .spawn()
    .expect("iperf3 client");
    let client_pid = client.id();
    let mut out = String::new();
    let mut stdout = client.stdout.unwrap();
    stdout.read_to_string(&mut out).unwrap();
    let client_cpu = wait_rusage(client_pid);
    let cpu1 = obs_pid.map(|p| proc_cpu_s(p, ticks));
    let probes1 = (mode == AGENT_STATS).then(probe_stats);
    set_bpf_stats(false);
    let rss = obs_pid.map(vm_hwm_mib).unwrap_or(0.0);
    if let Some(c) = observer.as_mut() {
        assert!(c.try_wait().unwrap().is_none(), "{mode} exited during the run: its numbers would be void");
    }
    let server_cpu = wait_rusage(server.id());
    let _ = server.try_wait();
    if let Some(c) = observer.as_mut() {
        // SIGTERM: the agent flushes its window; the peers just exit.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let _ = c.wait();
    }
    let v: serde_json::Value = serde_json::from_str(&out).expect("iperf3 -J output");
    let bytes = v["end"]["sum_received"]["bytes"].as_f64().expect("bytes received");
    let seconds = v["end"]["sum_received"]["seconds"].as_f64().unwrap();
    let (probe_ns, probe_runs) = match (probes0, probes1) {
        (Some(a), Some(b)) => ((b.0 - a.0) as f64, (b.1 - a.1) as f64),
        _ => (0.0, 0.0),
    };
    Run {
        probe_share: probe_ns / 1e9 / (client_cpu + server_cpu),
        probe_ns_per_run: if probe_runs > 0.0 { probe_ns / probe_runs } else { 0.0 },
        gbit_s: bytes * 8.0 / seconds / 1e9,
        cpu_s_per_gb: (client_cpu + server_cpu) / (bytes / 1e9),
        observer_cores: match (cpu0, cpu1) {
            (Some(a), Some(b)) => (b - a) / seconds,
            _ => 0.0,
        },
        observer_rss_mib: rss,
    }
}

/// 10,000 new TCP connections per second (100 bytes each, closed with RST so no TIME_WAIT
/// piles up) against a local server, with the agent attached to the root cgroup.
fn churn(secs: u64, rounds: usize, ticks: f64) {
    println!("\n10,000 new TCP connections/s over loopback, with egressor agent:");
    println!("{:>8} {:>12} {:>15} {:>10}", "round", "conns/s", "agent cores", "RSS MiB");
    let mut cores = Vec::new();
    let mut rates = Vec::new();
    let mut rsss = Vec::new();
    for round in 0..rounds {
        let tmp = tempfile::tempdir().unwrap();
        let mut agent = start_agent(tmp.path(), 7300 + (std::process::id() % 1000) as u16);
        let cpu0 = proc_cpu_s(agent.id(), ticks);
        let t0 = Instant::now();
        let made = connect_at(10_000, Duration::from_secs(secs));
        let elapsed = t0.elapsed().as_secs_f64();
        let cpu1 = proc_cpu_s(agent.id(), ticks);
        let rss = vm_hwm_mib(agent.id());
        unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
        let _ = agent.wait();
        let c = (cpu1 - cpu0) / elapsed;
        println!("{round:>8} {:>12.0} {c:>15.4} {rss:>10.1}", made as f64 / elapsed);
        cores.push(c);
        rates.push(made as f64 / elapsed);
        rsss.push(rss);
    }
    println!("{:>8} {:>12.0} {:>15.4} {:>10.1}", "median", median(rates), median(cores), median(rsss));
}

/// Opens `rate` connections per second for `dur` from one thread to a server thread; returns
/// the number made.
fn connect_at(rate: u64, dur: Duration) -> u64 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let (s2, n2) = (stop.clone(), served.clone());
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        for c in l.incoming() {
            if s2.load(Ordering::Relaxed) {
                break;
            }
            let Ok(mut c) = c else { continue };
            let _ = c.read(&mut buf);
            n2.fetch_add(1, Ordering::Relaxed);
        }
    });
    let t0 = Instant::now();
    let mut made = 0u64;
    let payload = [7u8; 100];
    while t0.elapsed() < dur {
        // Pace: connection k is due at k / rate seconds.
        let due = Duration::from_secs_f64(made as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(t0.elapsed()) {
            std::thread::sleep(wait);
        }
        let mut s = TcpStream::connect(addr).expect("connect");
        s.write_all(&payload).unwrap();
        let linger = libc::linger { l_onoff: 1, l_linger: 0 };
        // SAFETY: valid fd and option struct.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        drop(s);
        made += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = TcpStream::connect(addr); // wake the server so it sees `stop`
    made
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// (run_time_ns, run_cnt) summed over the counting probes (egr_egress, egr_ingress) loaded now,
/// from the kernel's own accounting (`kernel.bpf_stats_enabled`, switched on by `main`).
fn probe_stats() -> (u64, u64) {
    let out = Command::new("bpftool").args(["prog", "show", "--json"]).output().expect("bpftool");
    let progs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bpftool --json output");
    let mut sum = (0, 0);
    for p in progs.as_array().expect("array of programs") {
        if matches!(p["name"].as_str(), Some("egr_egress" | "egr_ingress")) {
            sum.0 += p["run_time_ns"].as_u64().unwrap_or(0);
            sum.1 += p["run_cnt"].as_u64().unwrap_or(0);
        }
    }
    sum
}

fn env_or<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

/// `peers`: bandwhich and nethogs are needed too.
fn preflight(peers: bool) {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "the agent benchmark loads eBPF programs: run it as root");
    let tools: &[&str] = if peers {
        &["iperf3", "ip", "bpftool", "bandwhich", "nethogs"]
    } else {
        &["iperf3", "ip", "bpftool"]
    };
    for tool in tools {
        let found = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().unwrap();
        assert!(
            found.status.success(),
            "{tool} is not on PATH: apt-get install iperf3 nethogs iproute2; cargo install bandwhich"
        );
    }
}

fn in_ns(ns: Option<&str>, prog: &str, args: &[&str]) -> Command {
    match ns {
        None => {
            let mut c = Command::new(prog);
            c.args(args);
            c
        }
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, prog]).args(args);
            c
        }
    }
}

/// `egressor agent` with its defaults (root cgroup, 10 s windows), spool and workspace in `dir`,
/// once it listens on `port`.
fn start_agent(dir: &std::path::Path, port: u16) -> Child {
    let listen = format!("127.0.0.1:{port}");
    let c = Command::new(env!("CARGO_BIN_EXE_egressor"))
        .args(["agent", "--listen", &listen, "--interval", "10s", "--node", "bench"])
        .arg("--spool")
        .arg(dir.join("spool"))
        .env("EGRESSOR_WORKSPACE", dir.join("ws.duckdb"))
        .stdout(Stdio::null())
        .spawn()
        .expect("egressor agent");
    wait_listening(&listen);
    c
}

fn wait_listening(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "agent did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

/// utime + stime of a whole process (all its threads, live and exited), in seconds.
fn proc_cpu_s(pid: u32, ticks: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the parenthesised comm: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / ticks
}

fn vm_hwm_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Waits for a child and returns its user+sys CPU seconds (all threads) from wait4.
fn wait_rusage(pid: u32) -> f64 {
    let mut status = 0;
    // SAFETY: zeroed rusage is valid; wait4 fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut ru) };
    assert_eq!(r, pid as i32, "wait4: {}", std::io::Error::last_os_error());
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string()
}

/// Two network namespaces joined by a veth pair (198.19.0.1 <-> 198.19.0.2), removed on drop.
struct VethPair {
    a: String,
    b: String,
    dev_a: String,
}

impl VethPair {
    fn new() -> VethPair {
        let id = std::process::id();
        let (a, b) = (format!("egr-bench-a-{id}"), format!("egr-bench-b-{id}"));
        let (dev_a, dev_b) = (format!("egrba{}", id % 100_000), format!("egrbb{}", id % 100_000));
        let sh = |args: &[&str]| {
            let s = Command::new(args[0]).args(&args[1..]).status().unwrap();
            assert!(s.success(), "{args:?} failed");
        };
        sh(&["ip", "netns", "add", &a]);
        sh(&["ip", "netns", "add", &b]);
        sh(&["ip", "link", "add", &dev_a, "netns", &a, "type", "veth", "peer", "name", &dev_b, "netns", &b]);
        sh(&["ip", "-n", &a, "addr", "add", "198.19.0.1/24", "dev", &dev_a]);
        sh(&["ip", "-n", &b, "addr", "add", "198.19.0.2/24", "dev", &dev_b]);
        for (ns, dev) in [(&a, &dev_a), (&b, &dev_b)] {
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        VethPair { a, b, dev_a }
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
