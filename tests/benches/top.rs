//! `egressor top` benchmark: 10,000 edges refreshing at 4 Hz, and the time from a key press to the
//! redrawn frame.
//!
//! Run: `cargo xtask bench top`. Each tick feeds 10,000 flow records (10,000 distinct workload
//! pairs, a third cross-zone, some to the internet) through the same path as the live view: cost
//! engine -> graph -> live model -> ratatui draw into a 200x50 TestBackend (terminal I/O excluded).
//! CPU share at 4 Hz = 4 x median tick time (the first tick, where every pair is new and goes
//! through the whole cost engine, is printed apart). Key latency = median of `on_key` + draw.

use egressor::engines::graph::Level;
use egressor::engines::live::LiveModel;
use egressor::engines::pricing::PriceBook;
use egressor::model::{Endpoint, FlowRecord, Initiator, Proto, Timestamp};
use egressor::views::top::{App, draw};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

fn ep(i: u32, zone: usize) -> Endpoint {
    let mut e = Endpoint::addr(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), 8080);
    e.namespace = Some(format!("team-{}", i % 20));
    e.workload_kind = Some("Deployment".into());
    e.workload_name = Some(format!("svc-{i}"));
    e.pod = Some(format!("svc-{i}-0"));
    e.node = Some(format!("node-{}", i % 50));
    e.zone = Some(["us-east-1a", "us-east-1b", "us-east-1c"][zone].into());
    e.region = Some("us-east-1".into());
    e
}

fn records(tick: i64) -> Vec<FlowRecord> {
    (0..10_000u32)
        .map(|i| {
            let local = ep(i, (i % 3) as usize);
            let remote = if i % 10 == 0 {
                Endpoint::addr(IpAddr::V4(Ipv4Addr::new(198, 51, 100, (i % 250) as u8)), 443)
            } else {
                ep(100_000 + i, (i % 9 / 3) as usize)
            };
            FlowRecord {
                window_start: Timestamp::from_secs(1_795_000_000 + tick),
                window_end: Timestamp::from_secs(1_795_000_001 + tick),
                node: local.node.clone().unwrap(),
                local,
                remote,
                proto: Proto::Tcp,
                ip_version: 4,
                initiator: Initiator::Local,
                bytes_out: 1000 + (i as u64 * 7919 + tick as u64 * 104_729) % 1_000_000,
                bytes_in: 500,
                packets_out: 10,
                packets_in: 5,
                connections_opened: 0,
                connections_closed: 0,
                batch_id: None,
                source: None,
            }
        })
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let book = PriceBook::shipped().expect("prices");
    let mut app = App::new(LiveModel::new(Level::Workload), "bench");
    let mut term = Terminal::new(TestBackend::new(200, 50)).expect("terminal");
    let mut ticks = Vec::new();
    let mut draws = Vec::new();
    for t in 0..21 {
        let recs = records(t);
        let t0 = Instant::now();
        app.model
            .tick(
                &recs,
                Timestamp::from_secs(1_795_000_000 + t),
                Timestamp::from_secs(1_795_000_001 + t),
                &book,
                None,
            )
            .expect("tick");
        let t1 = Instant::now();
        term.draw(|f| draw(f, &app)).expect("draw");
        draws.push(t1.elapsed());
        ticks.push(t0.elapsed());
    }
    assert!(app.model.edges.len() >= 10_000, "{} edges", app.model.edges.len());
    let mut keys = Vec::new();
    for i in 0..50 {
        let k = if i % 5 == 4 { KeyCode::Char('s') } else { KeyCode::Down };
        let t0 = Instant::now();
        app.on_key(KeyEvent::new(k, KeyModifiers::NONE));
        term.draw(|f| draw(f, &app)).expect("draw");
        keys.push(t0.elapsed());
    }
    let tick = median(ticks[1..].to_vec());
    println!("edges                 {}", app.model.edges.len());
    println!("first tick (learning) {:.1} ms", ticks[0].as_secs_f64() * 1e3);
    println!("tick (update + draw)  {:.1} ms median", tick.as_secs_f64() * 1e3);
    println!("  of which draw       {:.1} ms median", median(draws[1..].to_vec()).as_secs_f64() * 1e3);
    println!("CPU at 4 Hz           {:.1}% of one core", tick.as_secs_f64() * 4.0 * 100.0);
    println!("key press -> frame    {:.2} ms median", median(keys).as_secs_f64() * 1e3);
}
