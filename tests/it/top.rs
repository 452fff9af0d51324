//! `egressor top`: screens rendered with ratatui's TestBackend and compared to insta snapshots,
//! driven by injected ticks and key events (no sleeps); and a real terminal under tmux on live
//! local traffic.

use egressor::engines::graph::Level;
use egressor::engines::live::LiveModel;
use egressor::engines::pricing::PriceBook;
use egressor::model::{Endpoint, FlowRecord, Initiator, Proto, Timestamp};
use egressor::views::top::{Action, App, draw};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::net::IpAddr;

fn ep(ip: &str, port: u16, name: &str, zone: &str, process: &str) -> Endpoint {
    let mut e = Endpoint::addr(ip.parse::<IpAddr>().unwrap(), port);
    if !name.is_empty() {
        e.namespace = Some("shop".into());
        e.workload_kind = Some("Deployment".into());
        e.workload_name = Some(name.into());
        e.pod = Some(format!("{name}-5d8f7-abcde"));
        e.node = Some(format!("node-{zone}"));
        e.zone = Some(zone.into());
        e.region = Some("us-east-1".into());
    }
    e.process = (!process.is_empty()).then(|| process.to_string());
    e
}

fn rec(local: Endpoint, remote: Endpoint, out: u64, inb: u64, t: i64) -> FlowRecord {
    FlowRecord {
        window_start: Timestamp::from_secs(t),
        window_end: Timestamp::from_secs(t + 1),
        node: local.node.clone().unwrap_or_else(|| "host".into()),
        ip_version: 4,
        local,
        remote,
        proto: Proto::Tcp,
        initiator: Initiator::Local,
        bytes_out: out,
        bytes_in: inb,
        packets_out: 1,
        packets_in: 1,
        connections_opened: 0,
        connections_closed: 0,
        batch_id: None,
        source: None,
    }
}

/// Three ticks of a small shop: frontend -> checkout cross-zone, checkout -> S3 and an external API.
fn app() -> App {
    let book = PriceBook::shipped().unwrap();
    let mut m = LiveModel::new(Level::Workload);
    let t0 = 1_795_000_000;
    for i in 0..3i64 {
        let f = (i as u64 + 1) * 1_000_000;
        let records = vec![
            rec(
                ep("10.0.1.10", 40000, "frontend", "us-east-1a", "node"),
                ep("10.0.2.20", 8080, "checkout", "us-east-1b", ""),
                4 * f,
                f,
                t0 + i,
            ),
            rec(
                ep("10.0.2.20", 41000, "checkout", "us-east-1b", "java"),
                ep("52.216.8.20", 443, "", "", ""),
                2 * f,
                0,
                t0 + i,
            ),
            rec(
                ep("10.0.2.20", 41001, "checkout", "us-east-1b", "java"),
                ep("203.0.113.10", 443, "", "", ""),
                f / 2,
                f / 4,
                t0 + i,
            ),
            rec(
                ep("10.0.1.11", 40001, "frontend", "us-east-1a", "node"),
                ep("10.0.1.30", 6379, "cache", "us-east-1a", ""),
                f,
                f,
                t0 + i,
            ),
        ];
        m.tick(&records, Timestamp::from_secs(t0 + i), Timestamp::from_secs(t0 + i + 1), &book, None)
            .unwrap();
    }
    App::new(m, "replay 1x")
}

fn screen(app: &App, w: u16, h: u16) -> String {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| draw(f, app)).unwrap();
    let buf = term.backend().buffer().clone();
    let mut s = String::new();
    for y in 0..h {
        for x in 0..w {
            s.push_str(buf[(x, y)].symbol());
        }
        s.push('\n');
    }
    s
}

fn key(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

#[test]
fn main_screen_80x24() {
    let app = app();
    insta::assert_snapshot!("top_80x24", screen(&app, 80, 24));
}

#[test]
fn main_screen_wide() {
    let app = app();
    insta::assert_snapshot!("top_140x30", screen(&app, 140, 30));
}

#[test]
fn the_anomalies_pane_shows_open_findings_with_their_cost() {
    let mut app = app();
    assert!(!screen(&app, 140, 30).contains(" anomalies "), "no pane without anomalies");
    app.anomalies = vec![egressor::views::top::AnomalyLine {
        id: "sp-444848e2".into(),
        kind: "spike",
        subject: "shop/Deployment/catalog <-> shop/Deployment/recommendations".into(),
        cost_per_day: Some(rust_decimal::Decimal::new(65, 2)),
    }];
    let s = screen(&app, 140, 30);
    assert!(s.contains(" anomalies "), "{s}");
    assert!(s.contains("spike 0.65 USD/day sp-444848e2"), "{s}");
    assert!(s.contains("shop/Deployment/catalog"), "{s}");
    for (w, h) in [(80, 24), (40, 10), (20, 5)] {
        screen(&app, w, h);
    }
}

#[test]
fn keys_sort_filter_drill_help_pause_level_quit() {
    let mut a = app();
    let first = |a: &App| a.visible()[0].src.clone() + " -> " + &a.visible()[0].dst;
    assert_eq!(first(&a), "shop/Deployment/frontend -> shop/Deployment/checkout");
    a.on_key(key(KeyCode::Char('s')));
    a.on_key(key(KeyCode::Char('s')));
    // Sorted by cost: the cross-zone edge costs most.
    insta::assert_snapshot!("top_sorted_by_cost", screen(&a, 80, 24));
    for c in "/s3".chars() {
        a.on_key(key(KeyCode::Char(c)));
    }
    insta::assert_snapshot!("top_typing_filter", screen(&a, 80, 24));
    a.on_key(key(KeyCode::Enter));
    assert_eq!(a.visible().len(), 1);
    a.on_key(key(KeyCode::Enter));
    insta::assert_snapshot!("top_drill", screen(&a, 80, 24));
    a.on_key(key(KeyCode::Esc));
    a.on_key(key(KeyCode::Char('?')));
    insta::assert_snapshot!("top_help", screen(&a, 80, 24));
    a.on_key(key(KeyCode::Esc));
    a.on_key(key(KeyCode::Char('p')));
    assert!(a.paused);
    assert!(screen(&a, 80, 24).contains("PAUSED"));
    assert_eq!(a.on_key(key(KeyCode::Char('l'))), Action::LevelChanged);
    assert_eq!(a.model.level, Level::Service);
    assert_eq!(a.on_key(key(KeyCode::Char('q'))), Action::Quit);
    let mut b = app();
    assert_eq!(b.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)), Action::Quit);
}

#[test]
fn resizes_down_to_small_terminals_without_panicking() {
    let a = app();
    for (w, h) in [(80, 24), (60, 15), (40, 10), (20, 5), (200, 60)] {
        let s = screen(&a, w, h);
        assert_eq!(s.lines().count(), h as usize);
    }
}

/// A detached tmux session running `cmd`, killed on drop: the real-terminal tests' screen.
struct TmuxSession(String);

impl TmuxSession {
    fn start(name: &str, width: u16, height: u16, cmd: &str) -> TmuxSession {
        let found = std::process::Command::new("sh").args(["-c", "command -v tmux"]).output().unwrap();
        assert!(found.status.success(), "tmux is required (cargo xtask deps installs it)");
        let session = format!("egressor-{name}-{}", std::process::id());
        let (w, h) = (width.to_string(), height.to_string());
        let st = Self::tmux(&["new-session", "-d", "-s", &session, "-x", &w, "-y", &h, cmd]);
        assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
        TmuxSession(session)
    }

    fn tmux(args: &[&str]) -> std::process::Output {
        std::process::Command::new("tmux").args(args).output().expect("tmux")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&Self::tmux(&["capture-pane", "-p", "-t", &self.0]).stdout).to_string()
    }

    fn send(&self, key: &str) {
        Self::tmux(&["send-keys", "-t", &self.0, key]);
    }

    fn alive(&self) -> bool {
        Self::tmux(&["has-session", "-t", &self.0]).status.success()
    }

    /// The screen once `egressor top` has drawn its first frame (or after 10 s).
    fn first_frame(&self) -> String {
        let mut screen = String::new();
        for _ in 0..100 {
            screen = self.screen();
            if screen.contains("egressor top") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        screen
    }
}

impl Drop for TmuxSession {
    fn drop(&mut self) {
        let _ = Self::tmux(&["kill-session", "-t", &self.0]);
    }
}

/// A real terminal: `egressor top` under tmux on live loopback traffic of a known size.
#[test]
fn live_top_under_tmux_shows_the_traffic_with_its_process() {
    crate::capture::require_root();
    let found = std::process::Command::new("sh").args(["-c", "command -v python3"]).output().unwrap();
    assert!(found.status.success(), "python3 is required");
    let t = crate::TestContext::new();
    let bin = env!("CARGO_BIN_EXE_egressor");
    let ws = t.workspace();
    let cmd = format!("EGRESSOR_WORKSPACE={} {bin} top --interval 500ms --level process", ws.display());
    let term = TmuxSession::start("top", 120, 30, &cmd);
    // Wait for the first frame (probes loaded).
    let screen = term.first_frame();
    assert!(screen.contains("local capture on"), "{screen}");
    // A sender of exactly 100 MiB whose receiver reads everything before closing (iperf3 -n resets
    // the connection with data still unsent, so its payload count is not what crosses the wire).
    let port = 15201 + (std::process::id() % 1000) as u16;
    let server = format!(
        "import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('127.0.0.1',{port})); s.listen(1); c,_=s.accept(); n=0\n\
         while True:\n    b=c.recv(1<<20)\n    if not b: break\n    n+=len(b)\nc.close(); print(n)"
    );
    let client = format!(
        "import socket\nc=socket.create_connection(('127.0.0.1',{port})); buf=b'x'*(1<<20)\n\
         for _ in range(100): c.sendall(buf)\nc.shutdown(socket.SHUT_WR); c.recv(1); c.close()"
    );
    let srv = std::process::Command::new("python3")
        .args(["-c", &server])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let st = std::process::Command::new("python3").args(["-c", &client]).status().unwrap();
    assert!(st.success());
    let got = srv.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), (100u64 << 20).to_string());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    for c in ["/", "p", "y", "t", "h", "o", "n"] {
        term.send(c);
    }
    term.send("Enter");
    std::thread::sleep(std::time::Duration::from_millis(800));
    let screen = term.screen();
    assert!(screen.contains("matching \"python\""), "{screen}");
    // The sender's edge: python3 -> 127.0.0.1, at least the 100 MiB sent and at most 5% more (IP and
    // TCP headers: loopback segments are up to 64 KiB, so headers are well under 1%).
    let line = screen
        .lines()
        .find(|l| l.contains("python3") && l.contains("127.0.0.1") && l.contains("MiB"))
        .unwrap_or_else(|| panic!("no python3 edge with MiB on screen:\n{screen}"));
    let mib: f64 = line
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[1] == "MiB")
        .filter_map(|w| w[0].parse().ok())
        .fold(0.0, f64::max);
    assert!(
        (100.0..=105.0).contains(&mib),
        "expected 100-105 MiB for the python3 edge, got {mib}:\n{screen}"
    );
    term.send("q");
    let mut gone = false;
    for _ in 0..50 {
        if !term.alive() {
            gone = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(gone, "q did not end egressor top");
}

/// SIGTERM (what `kill`, systemd and CI runners send) ends `egressor top` promptly and leaves the
/// terminal usable: the alternate screen is gone and the line discipline is back in canonical mode.
#[test]
fn sigterm_ends_top_and_restores_the_terminal() {
    let t = crate::TestContext::new();
    t.ok(&["demo", "--days", "1"]);
    let bin = env!("CARGO_BIN_EXE_egressor");
    let ws = t.workspace();
    let cmd = format!(
        "{bin} --workspace {} top --replay --speed 60; echo \"EXIT=$?\"; stty -a | tr ' ' '\\n' | grep -x -- '-\\?icanon'; sleep 60",
        ws.display()
    );
    let term = TmuxSession::start("sigterm", 100, 30, &cmd);
    let mut screen = term.first_frame();
    assert!(screen.contains("egressor top"), "no first frame:\n{screen}");
    let pid = std::process::Command::new("pgrep")
        .args(["-f", &format!("{} top --replay", ws.display())])
        .output()
        .unwrap();
    // The wrapping shells match too: keep the egressor process itself.
    let pids: Vec<String> = String::from_utf8_lossy(&pid.stdout)
        .lines()
        .filter(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "egressor"))
        .map(str::to_owned)
        .collect();
    assert_eq!(pids.len(), 1, "one egressor top process, got {pids:?}");
    let pid = pids[0].clone();
    let sent = std::time::Instant::now();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    loop {
        screen = term.screen();
        if screen.contains("EXIT=") && screen.contains("icanon") {
            break;
        }
        assert!(sent.elapsed() < std::time::Duration::from_secs(3), "not ended 3 s after SIGTERM:\n{screen}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    eprintln!("ended {:?} after SIGTERM:\n{screen}", sent.elapsed());
    assert!(!screen.contains("egressor top"), "the alternate screen is still shown:\n{screen}");
    assert!(screen.lines().any(|l| l.trim() == "icanon"), "terminal left in raw mode:\n{screen}");
}

/// The anomalies pane of a replay: `top` draws at once and the pane fills in when the analysis,
/// on a thread of its own, is done (demo events still going on in the last 24 hours).
#[test]
fn replay_fills_the_anomalies_pane_once_analysed() {
    let t = crate::TestContext::new();
    t.ok(&["demo"]);
    let cmd = format!(
        "EGRESSOR_NOW=2026-11-20T12:00:00Z {} --workspace {} top --replay --speed 60; sleep 60",
        env!("CARGO_BIN_EXE_egressor"),
        t.workspace().display()
    );
    let term = TmuxSession::start("pane", 160, 40, &cmd);
    let first = term.first_frame();
    assert!(first.contains("egressor top"), "no first frame:\n{first}");
    let mut screen = first;
    for _ in 0..300 {
        if screen.contains(" anomalies ") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        screen = term.screen();
    }
    assert!(screen.contains(" anomalies "), "no anomalies pane after 30 s:\n{screen}");
    for kind in ["leak", "new-endpoint", "slow-burn"] {
        assert!(screen.contains(kind), "{kind} missing from the pane:\n{screen}");
    }
    term.send("q");
}
