//! `egressor run -- CMD`, `egressor check`, `egressor policy validate`: real commands (curl, sh,
//! python3) in a cgroup of their own, talking to servers in network namespaces the tests make, with
//! other traffic on the host at the same time.

use crate::capture::require_root;
use crate::{TestContext, show};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("run a setup command");
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A network namespace joined to this host by a veth: the host end has `host_ip`, the namespace end
/// `ns_ip` (both /24) and any `extra` addresses, each reached from the host by a /32 route.
struct Peer {
    ns: String,
    host_ip: Ipv4Addr,
    ns_ip: Ipv4Addr,
    extra_routes: Vec<String>,
}

impl Peer {
    fn new(net: [u8; 3], extra: &[&str]) -> Peer {
        let tag = format!("{}{}", std::process::id() % 10_000, NEXT.fetch_add(1, Ordering::SeqCst));
        let (ns, host_if) = (format!("egrun{tag}"), format!("egrh{tag}"));
        let host_ip = Ipv4Addr::new(net[0], net[1], net[2], 1);
        let ns_ip = Ipv4Addr::new(net[0], net[1], net[2], 10);
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        sh(&["ip", "netns", "add", &ns]);
        sh(&["ip", "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
        sh(&["ip", "addr", "add", &format!("{host_ip}/24"), "dev", &host_if]);
        sh(&["ip", "link", "set", &host_if, "up"]);
        let in_ns = |args: &[&str]| {
            let mut all = vec!["ip", "netns", "exec", &ns];
            all.extend_from_slice(args);
            sh(&all);
        };
        in_ns(&["ip", "link", "set", "lo", "up"]);
        in_ns(&["ip", "addr", "add", &format!("{ns_ip}/24"), "dev", "eth0"]);
        in_ns(&["ip", "link", "set", "eth0", "up"]);
        in_ns(&["ip", "route", "add", "default", "via", &host_ip.to_string()]);
        let mut extra_routes = Vec::new();
        for ip in extra {
            in_ns(&["ip", "addr", "add", &format!("{ip}/32"), "dev", "eth0"]);
            sh(&["ip", "route", "add", &format!("{ip}/32"), "dev", &host_if]);
            extra_routes.push(format!("{ip}/32"));
        }
        Peer { ns, host_ip, ns_ip, extra_routes }
    }

    /// Runs `f` on a thread inside the namespace (setns affects the calling thread only).
    fn spawn_inside<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/run/netns/{}", self.ns);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open the namespace");
            // SAFETY: setns on a valid namespace fd, for this thread only.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns into {path}: {}", std::io::Error::last_os_error());
            f()
        })
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        for r in &self.extra_routes {
            let _ = Command::new("ip").args(["route", "del", r]).output();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// What an HTTP server saw of one connection: bytes read (request) and written (response).
#[derive(Debug, Clone)]
struct Seen {
    peer: SocketAddr,
    read: u64,
    written: u64,
}

/// An HTTP/1.1 server inside a peer's namespace: `POST /N` (or GET) answers N bytes of body, closes.
struct HttpServer {
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl HttpServer {
    fn start(peer: &Peer, bind: SocketAddr) -> HttpServer {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        peer.spawn_inside(move || {
            let listener = TcpListener::bind(bind).expect("bind in the namespace");
            ready_tx.send(()).unwrap();
            for conn in listener.incoming() {
                let Ok(conn) = conn else { break };
                let log = log.clone();
                std::thread::spawn(move || {
                    if let Some(s) = serve(conn) {
                        log.lock().unwrap().push(s);
                    }
                });
            }
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).expect("server started");
        HttpServer { seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(mut s: TcpStream) -> Option<Seen> {
    let peer = s.peer_addr().ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    let head_end = loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let path = head.split_whitespace().nth(1).unwrap_or("/0");
    let size: usize = path.trim_start_matches('/').parse().unwrap_or(0);
    let mut response =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n").into_bytes();
    response.resize(response.len() + size, b'x');
    s.write_all(&response).ok()?;
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut rest = 0u64;
    while let Ok(n) = s.read(&mut chunk) {
        if n == 0 {
            break;
        }
        rest += n as u64;
    }
    Some(Seen { peer, read: buf.len() as u64 + rest, written: response.len() as u64 })
}

/// IP-layer bytes (what egressor counts) of a TCP stream that carried `payload` bytes: at least the
/// payload, at most the payload plus headers (a 52-60 byte header per packet of >= 1000 bytes of
/// payload, the handshake and the close).
fn assert_within_headers(what: &str, counted: u64, payload: u64) {
    let max = payload + payload * 60 / 1000 + 2_000;
    assert!(
        (payload..=max).contains(&counted),
        "{what}: egressor counted {counted} bytes for {payload} bytes of payload (allowed {payload}..={max})"
    );
}

fn egressor_run(ctx: &TestContext, args: &[&str]) -> Output {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    ctx.cmd(&all)
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_STEP_SUMMARY")
        .output()
        .expect("run egressor")
}

fn report(ctx: &TestContext, file: &str) -> Value {
    let text = std::fs::read_to_string(ctx.path(file)).expect("the --report file");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file} is not JSON ({e}): {text}"))
}

fn destinations(v: &Value) -> Vec<&Value> {
    v["destinations"].as_array().expect("destinations").iter().collect()
}

#[test]
fn run_reports_a_curl_to_another_namespace_and_not_the_hosts_other_traffic() {
    require_root();
    let ctx = TestContext::new();
    let peer = Peer::new([198, 51, 100], &[]);
    let server = HttpServer::start(&peer, SocketAddr::from((peer.ns_ip, 8080)));
    let payload = ctx.path("payload");
    std::fs::write(&payload, vec![b'p'; 1 << 20]).unwrap();

    // Other traffic on the host, to the same server, for as long as the run lasts.
    let stop = Arc::new(AtomicBool::new(false));
    let other = {
        let (stop, to) = (stop.clone(), SocketAddr::from((peer.ns_ip, 8080)));
        std::thread::spawn(move || {
            let mut ports = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let mut s = TcpStream::connect(to).unwrap();
                ports.push(s.local_addr().unwrap());
                let body = vec![b'o'; 2 << 20];
                s.write_all(
                    format!("POST /10 HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(),
                )
                .unwrap();
                s.write_all(&body).unwrap();
                let _ = std::io::copy(&mut s, &mut std::io::sink());
            }
            ports
        })
    };
    let url = format!("http://{}:8080/300000", peer.ns_ip);
    let data = format!("@{}", payload.display());
    let report_file = ctx.path("r.json");
    let out = egressor_run(
        &ctx,
        &[
            "--region",
            "us-east-1",
            "--runs-per-day",
            "24",
            "--report",
            report_file.to_str().unwrap(),
            "--",
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "--limit-rate",
            "2M",
            "--data-binary",
            &data,
            &url,
        ],
    );
    stop.store(true, Ordering::SeqCst);
    let other_ports = other.join().unwrap();
    assert!(out.status.success(), "{}", show(&out));

    let r = report(&ctx, "r.json");
    assert_eq!(r["schema_version"], "egressor.run/v1");
    assert_eq!(r["exit_code"], 0);
    let d = destinations(&r);
    assert_eq!(d.len(), 1, "one destination: {r:#}");
    let d = d[0];
    assert_eq!(
        (d["address"].as_str(), d["port"].as_u64(), d["proto"].as_str()),
        (Some("198.51.100.10"), Some(8080), Some("tcp"))
    );
    assert_eq!(d["class"], "internet", "{d:#}");
    assert_eq!(d["connections"], 1);
    assert_eq!(d["processes"], serde_json::json!(["curl"]));

    let seen = server.seen();
    let curl: Vec<&Seen> = seen.iter().filter(|s| !other_ports.contains(&s.peer)).collect();
    assert_eq!(curl.len(), 1, "the server saw one connection from curl: {seen:?}");
    assert!(seen.len() > 1, "the other traffic ran at the same time: {seen:?}");
    assert_within_headers("sent", d["bytes_out"].as_u64().unwrap(), curl[0].read);
    assert_within_headers("received", d["bytes_in"].as_u64().unwrap(), curl[0].written);

    // Priced as internet egress from us-east-1 (0.09 USD per GiB); per month = 24 runs x 730/24 days.
    let per_run: f64 = d["cost_per_run"].as_str().unwrap().parse().unwrap();
    let expected = d["bytes_out"].as_f64().unwrap() / (1u64 << 30) as f64 * 0.09;
    assert!((per_run - expected).abs() < 1e-9, "{per_run} vs {expected}");
    let per_month: f64 = d["cost_per_month"].as_str().unwrap().parse().unwrap();
    assert!((per_month - per_run * 730.0).abs() < 1e-6, "{per_month} vs {per_run} x 730");
    assert!(ctx.schema_errors("run.v1.json", &r).is_empty(), "{:?}", ctx.schema_errors("run.v1.json", &r));

    // The table names the destination, its class and the cost line.
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("198.51.100.10:8080/tcp internet 198.51.100.10"), "{table}");
    assert!(table.contains("per month at 24 runs/day; from aws us-east-1"), "{table}");
}

#[test]
fn children_of_the_command_are_counted_a_forked_server_too() {
    require_root();
    let ctx = TestContext::new();
    let peer = Peer::new([203, 0, 113], &[]);
    let server = HttpServer::start(&peer, SocketAddr::from((peer.ns_ip, 8081)));
    // The command: a script that forks a one-shot server (python3), runs curl twice, waits for the
    // server's one connection. The test connects to the forked server from the namespace.
    let script = ctx.path("job.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nset -e\n\
             python3 -c 'import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind((\"0.0.0.0\", 18181)); s.listen(1)\nc,_=s.accept(); c.recv(100); c.sendall(b\"y\"*50000); c.close()' &\n\
             curl -sS -o /dev/null http://{ip}:8081/1000\n\
             curl -sS -o /dev/null http://{ip}:8081/2000\n\
             wait\n",
            ip = peer.ns_ip
        ),
    )
    .unwrap();
    let host_ip = peer.host_ip;
    let client = peer.spawn_inside(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut s) = TcpStream::connect((host_ip, 18181)) {
                s.write_all(b"hello").unwrap();
                let mut got = Vec::new();
                s.read_to_end(&mut got).unwrap();
                return got.len();
            }
            assert!(Instant::now() < deadline, "the forked server never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let out =
        egressor_run(&ctx, &["--region", "us-east-1", "-o", "json", "--", "sh", script.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(client.join().unwrap(), 50_000);
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    let d = destinations(&r);
    let line = |port: u64| {
        *d.iter().find(|x| x["port"] == port).unwrap_or_else(|| panic!("no line for port {port}: {r:#}"))
    };
    let curl = line(8081);
    assert_eq!(curl["connections"], 2, "both curls: {curl:#}");
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_within_headers(
        "curl x2 received",
        curl["bytes_in"].as_u64().unwrap(),
        seen.iter().map(|s| s.written).sum(),
    );
    let forked = line(18181);
    assert_eq!(forked["way"], "inbound");
    assert_eq!(forked["address"].as_str(), Some(peer.ns_ip.to_string().as_str()));
    assert_eq!(forked["processes"], serde_json::json!(["python3"]));
    assert_within_headers("forked server sent", forked["bytes_out"].as_u64().unwrap(), 50_000);
    assert_eq!(d.len(), 2, "nothing else: {r:#}");
}

#[test]
fn a_policy_gates_the_run_with_learned_and_denied_destinations() {
    require_root();
    let ctx = TestContext::new();
    // 52.216.8.10 is in the shipped AWS ranges as S3 us-east-1.
    let peer = Peer::new([198, 51, 101], &["52.216.8.10"]);
    let _server = HttpServer::start(&peer, SocketAddr::from(([0, 0, 0, 0], 8080)));
    let to = |ip: &str| format!("http://{ip}:8080/100");
    let curl = |ip: &str| vec!["curl".to_string(), "-sS".into(), "-o".into(), "/dev/null".into(), to(ip)];
    let run = |flags: &[&str], cmd: Vec<String>, env: &[(&str, String)]| {
        let mut all: Vec<String> = vec!["run".into(), "--region".into(), "us-east-1".into()];
        all.extend(flags.iter().map(|s| s.to_string()));
        all.push("--".into());
        all.extend(cmd);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let mut c = ctx.cmd(&refs);
        c.env_remove("GITHUB_ACTIONS").env_remove("GITHUB_STEP_SUMMARY");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let ns_ip = peer.ns_ip.to_string();

    // Audit: learn what the job talks to today.
    let allow = ctx.path("allow.toml");
    let out = run(&["--learn", allow.to_str().unwrap()], curl(&ns_ip), &[]);
    assert!(out.status.success(), "{}", show(&out));
    let learned = std::fs::read_to_string(&allow).unwrap();
    assert!(learned.contains(&format!("\"{ns_ip}:8080\",")), "{learned}");
    assert!(
        ctx.ok(&["policy", "validate", allow.to_str().unwrap()])
            .contains(": ok (enforce; 0 budgets, 1 allowed")
    );

    // Gate: the same job passes, a new destination fails with the violation code and its name.
    let out = run(&["--policy", allow.to_str().unwrap()], curl(&ns_ip), &[]);
    assert!(out.status.success(), "{}", show(&out));
    let summary = ctx.path("summary.md");
    let gh = [("GITHUB_ACTIONS", "true".to_string()), ("GITHUB_STEP_SUMMARY", summary.display().to_string())];
    let out = run(&["--policy", allow.to_str().unwrap()], curl("52.216.8.10"), &gh);
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("VIOLATION aws:S3 us-east-1 (52.216.8.10:8080/tcp) is not in the allow list"),
        "{stdout}"
    );
    let annotation = stdout.lines().find(|l| l.starts_with("::error ")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        annotation.contains(&format!("file={}", allow.display())) && annotation.contains(",line=7,"),
        "{annotation}"
    );
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.starts_with(
            "### egressor run: `curl -sS -o /dev/null http://52.216.8.10:8080/100` exited 0 — policy violated"
        ),
        "{md}"
    );
    assert!(md.contains("| `52.216.8.10:8080/tcp aws:S3 us-east-1` |"), "{md}");

    // Report-only: the same violation, exit 0.
    let out = run(&["--policy", allow.to_str().unwrap(), "--report-only"], curl("52.216.8.10"), &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("(report only): 1 violations"));

    // A deny rule names the rule broken; a failing command's own exit code wins over the violation.
    let policy = ctx.path("policy.toml");
    std::fs::write(&policy, "version = 1\n\n[destinations]\ndeny = [\"aws:S3\"]\n").unwrap();
    let mut cmd = curl("52.216.8.10");
    cmd.insert(0, "sh".into());
    let script = format!("{} ; exit 7", cmd[1..].join(" "));
    let out = run(&["--policy", policy.to_str().unwrap()], vec!["sh".into(), "-c".into(), script], &[]);
    assert_eq!(out.status.code(), Some(7), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("is denied by \"aws:S3\" ("), "{stdout}");
    assert!(stdout.contains("policy.toml:4 destinations.deny[0])"), "{stdout}");
}

/// A copy of egressor that another user can run, and the directory to give it as
/// `LD_LIBRARY_PATH`: a build with the prebuilt DuckDB (`--prebuilt-duckdb`) finds `libduckdb.so`
/// through a run-time path into root's home, which no other user may enter, so the library is
/// copied beside the binary.
fn egressor_for_other_users(ctx: &TestContext) -> (std::path::PathBuf, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = ctx.path("for-others");
    std::fs::create_dir_all(&dir).unwrap();
    for d in [ctx.dir.path(), dir.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let bin = dir.join("egressor");
    std::fs::copy(env!("CARGO_BIN_EXE_egressor"), &bin).unwrap();
    if let Some(lib) = option_env!("DUCKDB_LIB_DIR") {
        for name in ["libduckdb.so", "libduckdb_pystub.so"] {
            std::fs::copy(std::path::Path::new(lib).join(name), dir.join(name)).unwrap();
        }
    }
    (bin, dir)
}

#[test]
fn run_exit_codes_say_whose_failure_it_was() {
    require_root();
    let ctx = TestContext::new();
    let code = |args: &[&str]| egressor_run(&ctx, args).status.code();
    assert_eq!(code(&["--", "sh", "-c", "exit 7"]), Some(7), "the command's own code");
    assert_eq!(code(&["--", "sh", "-c", "kill -TERM $$"]), Some(128 + 15), "killed by a signal");
    assert_eq!(code(&["--", "/nonexistent/cmd"]), Some(127));
    let not_exec = ctx.path("not-executable");
    std::fs::write(&not_exec, "#!/bin/sh\n").unwrap();
    assert_eq!(code(&["--", not_exec.to_str().unwrap()]), Some(126));
    let bad = ctx.path("bad.toml");
    std::fs::write(&bad, "version = 1\n[budget]\nper_run = 0.5\n").unwrap();
    let out = egressor_run(&ctx, &["--policy", bad.to_str().unwrap(), "--", "true"]);
    assert_eq!(out.status.code(), Some(125), "a bad policy is egressor's failure: {}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("bad.toml:3:11: budget.per_run: amount 0.5 is a TOML float")
    );

    // Without root: what to do.
    let (bin, lib_dir) = egressor_for_other_users(&ctx);
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(["run", "--", "true"])
        .env("EGRESSOR_WORKSPACE", ctx.workspace())
        .env("LD_LIBRARY_PATH", lib_dir)
        .output()
        .expect("setpriv (util-linux)");
    assert_eq!(out.status.code(), Some(125), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("egressor run needs root")
            && err.contains("sudo -E egressor run")
            && err.contains("CAP_BPF"),
        "{err}"
    );
}

#[test]
fn a_malformed_policy_names_file_line_and_field() {
    let ctx = TestContext::new();
    let p = ctx.path("p.toml");
    std::fs::write(
        &p,
        "version = 1\n\n[[budget.limit]]\nclass = \"cross-zone\"\nper_day = \"x\"\n\n[destinations]\nallow = [\"10.0.0.0/33\"]\n",
    )
    .unwrap();
    let out = ctx.cmd(&["policy", "validate", p.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let want_prefix = format!("{}:5:11: budget.limit[0].per_day: `x` is not a decimal number", p.display());
    assert!(err.lines().next().unwrap().starts_with(&want_prefix), "{err}");
    assert!(
        err.contains(&format!(
            "{}:8:10: destinations.allow[0]: \"10.0.0.0/33\" is not a destination",
            p.display()
        )),
        "{err}"
    );
    assert!(err.trim_end().ends_with("2 problems"), "{err}");
}

#[test]
fn check_on_the_demo_fails_below_its_cost_and_passes_above() {
    let ctx = TestContext::new();
    ctx.ok(&["demo", "--end", "2026-11-20T00:00:00Z"]);
    let write = |budget: &str| {
        let p = ctx.path("budget.toml");
        std::fs::write(&p, format!("version = 1\n[budget]\nper_day = \"{budget}\"\nper_run = \"1\"\n"))
            .unwrap();
        p
    };
    let p = write("1000000");
    let r = ctx.json(&["check", "--policy", p.to_str().unwrap(), "--since", "7d", "-o", "json"]);
    assert!(
        ctx.schema_errors("check.v1.json", &r).is_empty(),
        "{:?}",
        ctx.schema_errors("check.v1.json", &r)
    );
    assert_eq!(r["policy"]["passed"], true);
    assert_eq!(r["policy"]["skipped"][0]["why"], "per_run applies to `egressor run`; `check` reads a period");
    // The same cost per day as `cost` over the same period.
    let cost = ctx.json(&["cost", "--since", "7d", "-o", "json"]);
    let total: f64 = cost["totals"]["cost"].as_str().unwrap().parse().unwrap();
    let hours: f64 = cost["hours"].as_str().unwrap().parse().unwrap();
    let per_day: f64 = r["cost_per_day"].as_str().unwrap().parse().unwrap();
    assert!((per_day - total / (hours / 24.0)).abs() < 1e-6, "{per_day} vs {total} over {hours} h");

    let below = format!("{:.2}", per_day * 0.9);
    let p = write(&below);
    let out = ctx.cmd(&["check", "--policy", p.to_str().unwrap(), "--since", "7d"]).output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("over the budget of {below} USD per day")),
        "{}",
        show(&out)
    );
    let p = write(&format!("{:.2}", per_day * 1.1));
    let out = ctx.cmd(&["check", "--policy", p.to_str().unwrap(), "--since", "7d"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = ctx.cmd(&["check", "--since", "7d"]).env_remove("EGRESSOR_POLICY").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("check needs a policy: --policy FILE"));
}

#[test]
fn completions_load_in_bash_and_zsh_and_the_man_page_renders() {
    let ctx = TestContext::new();
    let bash = ctx.path("egressor.bash");
    std::fs::write(&bash, ctx.ok(&["completions", "bash"])).unwrap();
    let out = Command::new("bash")
        .args(["-c", &format!("source {} && complete -p egressor", bash.display())])
        .output()
        .expect("bash");
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("egressor"), "{}", show(&out));

    let zsh = ctx.path("_egressor");
    std::fs::write(&zsh, ctx.ok(&["completions", "zsh"])).unwrap();
    let out = Command::new("zsh")
        .args([
            "-fc",
            &format!(
                "autoload -Uz compinit && compinit -u -D && source {} && print -r -- $_comps[egressor]",
                zsh.display()
            ),
        ])
        .output()
        .expect("zsh is not installed: run `cargo xtask deps`");
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "_egressor", "{}", show(&out));
    // The subcommands are completed.
    assert!(std::fs::read_to_string(&zsh).unwrap().contains("'run:Run a command"));

    let page = ctx.path("egressor.1");
    std::fs::write(&page, ctx.ok(&["man"])).unwrap();
    let out = Command::new("man")
        .args(["-l", page.to_str().unwrap()])
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .expect("man (man-db) is not installed: run `cargo xtask deps`");
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("egressor - Find, explain and cut unnecessary or expensive data transfer"),
        "{text}"
    );
    assert!(text.contains("4 policy violation"), "{text}");
    let dir = ctx.path("man1");
    let written = ctx.ok(&["man", "--dir", dir.to_str().unwrap()]);
    assert!(
        written.contains("egressor-run.1") && written.contains("egressor-pricing-validate.1"),
        "{written}"
    );
    let out = Command::new("man")
        .args(["-l", dir.join("egressor-run.1").to_str().unwrap()])
        .env("MANPAGER", "cat")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("--learn"), "{}", show(&out));
}
