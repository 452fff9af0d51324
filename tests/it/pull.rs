//! `egressor pull` killed at every kind of moment, then re-run: the workspace ends with every byte
//! exactly once. The agent here is a scripted HTTP server speaking the real wire format
//! (`egressor.batches/v1`), so the test can stop the pull at a chosen point: half-way through a page
//! body, after a page is ingested but before it is acknowledged, and at assorted times while pages
//! are being ingested. No root needed (the real agent's own SIGKILL test is in `agent.rs`).

use crate::TestContext;
use egressor::model::{Endpoint, FlowRecord, Initiator, Proto, Timestamp};
use egressor::transport::{Batch, BatchPage, Loss, WIRE_SCHEMA};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const INSTANCE: &str = "3f2a9c";
const NODE: &str = "ip-10-0-1-17";

/// Where the scripted agent stops answering, so the test can kill the pull at that moment.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Plan {
    Normal,
    /// The n-th `GET /v1/batches` (from 1) gets its headers and half its body, then nothing.
    TruncatePage(u64),
    /// The n-th `POST /v1/ack` is never answered.
    HoldAck(u64),
    /// Every page is answered after this many milliseconds.
    Slow(u64),
    /// Pages after this cursor carry a record whose window ends before it starts.
    BadAfter(u64),
}

struct FakeAgent {
    url: String,
    plan: Arc<Mutex<Plan>>,
    gets: Arc<AtomicU64>,
    acks: Arc<AtomicU64>,
    held: Receiver<String>,
    acked_upto: Arc<AtomicU64>,
}

impl FakeAgent {
    fn start(batches: Vec<Batch>) -> FakeAgent {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let plan = Arc::new(Mutex::new(Plan::Normal));
        let gets = Arc::new(AtomicU64::new(0));
        let acks = Arc::new(AtomicU64::new(0));
        let acked_upto = Arc::new(AtomicU64::new(0));
        let (tx, held) = channel();
        let batches = Arc::new(batches);
        let (p, g, a, u) = (plan.clone(), gets.clone(), acks.clone(), acked_upto.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { break };
                let (p, g, a, u, b, tx) =
                    (p.clone(), g.clone(), a.clone(), u.clone(), batches.clone(), tx.clone());
                std::thread::spawn(move || serve(s, &p, &g, &a, &u, &b, &tx));
            }
        });
        FakeAgent { url, plan, gets, acks, held, acked_upto }
    }

    fn set_plan(&self, plan: Plan) {
        self.gets.store(0, Ordering::SeqCst);
        self.acks.store(0, Ordering::SeqCst);
        *self.plan.lock().unwrap() = plan;
    }

    fn wait_held(&self) -> String {
        self.held.recv_timeout(Duration::from_secs(60)).expect("the pull reached the planned point")
    }
}

fn serve(
    stream: TcpStream,
    plan: &Mutex<Plan>,
    gets: &AtomicU64,
    acks: &AtomicU64,
    acked_upto: &AtomicU64,
    batches: &[Batch],
    held: &Sender<String>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut w = stream;
    // One request per connection (answered with `Connection: close`).
    let mut request = String::new();
    if reader.read_line(&mut request).unwrap_or(0) == 0 {
        return;
    }
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
    }
    let target = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let q: HashMap<&str, &str> = query.split('&').filter_map(|kv| kv.split_once('=')).collect();
    let plan = *plan.lock().unwrap();
    let hold = |what: String| {
        held.send(what).unwrap();
        // The test kills the pull now; this connection dies with it.
        std::thread::sleep(Duration::from_secs(30));
    };
    match path {
        "/v1/batches" => {
            let n = gets.fetch_add(1, Ordering::SeqCst) + 1;
            let after: u64 =
                if q.get("instance") == Some(&INSTANCE) { q["after"].parse().unwrap() } else { 0 };
            let limit: usize = q["limit"].parse().unwrap();
            let mut page: Vec<Batch> =
                batches.iter().filter(|b| b.seq > after).take(limit).cloned().collect();
            if let (Plan::BadAfter(c), Some(b)) = (plan, page.last_mut())
                && after >= c
            {
                b.records[0].window_end = b.records[0].window_start.add_micros(-1);
            }
            let cursor = page.last().map(|b| b.seq).unwrap_or(after);
            let more = batches.iter().any(|b| b.seq > cursor);
            let body = serde_json::to_vec(&BatchPage {
                schema: WIRE_SCHEMA.into(),
                instance: INSTANCE.into(),
                node: NODE.into(),
                batches: page,
                cursor,
                more,
            })
            .unwrap();
            if let Plan::Slow(ms) = plan {
                std::thread::sleep(Duration::from_millis(ms));
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = w.write_all(head.as_bytes());
            if plan == Plan::TruncatePage(n) {
                let _ = w.write_all(&body[..body.len() / 2]);
                let _ = w.flush();
                return hold(format!("page {n} half sent (after {after})"));
            }
            let _ = w.write_all(&body);
        }
        "/v1/ack" => {
            let n = acks.fetch_add(1, Ordering::SeqCst) + 1;
            if plan == Plan::HoldAck(n) {
                return hold(format!("ack {n} upto {}", q["upto"]));
            }
            acked_upto.fetch_max(q["upto"].parse().unwrap(), Ordering::SeqCst);
            let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
        _ => {
            let _ = w.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    }
}

/// `n` batches of `per` records, each record's bytes distinct so a double count shows in the sum.
pub(crate) fn batches(n: u64, per: u64) -> Vec<Batch> {
    (1..=n)
        .map(|seq| {
            let ws = Timestamp::from_secs(1_795_000_000 + seq as i64 * 10);
            let we = ws.add_micros(10 * Timestamp::MICROS_PER_SEC);
            let records = (0..per)
                .map(|i| {
                    let mut local =
                        Endpoint::addr(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 17)), 40_000 + i as u16);
                    local.process = Some("java".into());
                    local.namespace = Some("shop".into());
                    FlowRecord {
                        window_start: ws,
                        window_end: we,
                        node: NODE.into(),
                        local,
                        remote: Endpoint::addr(
                            IpAddr::V4(Ipv4Addr::new(10, 0, 2, (i % 200) as u8 + 1)),
                            5432,
                        ),
                        proto: Proto::Tcp,
                        ip_version: 4,
                        initiator: Initiator::Local,
                        bytes_out: seq * 1_000_003 + i * 17,
                        bytes_in: seq * 7 + i,
                        packets_out: 10 + i,
                        packets_in: 5,
                        connections_opened: 0,
                        connections_closed: 0,
                        batch_id: None,
                        source: None,
                    }
                })
                .collect();
            Batch {
                batch_id: format!("{NODE}-{INSTANCE}-{seq}"),
                seq,
                node: NODE.into(),
                created_at: we,
                window_start: ws,
                window_end: we,
                loss: Loss::default(),
                records,
            }
        })
        .collect()
}

/// (records, sum of bytes_out, sum of bytes_in) in the workspace, from the export.
fn totals(t: &TestContext) -> (u64, u64, u64) {
    let out = t.ok(&["export", "--format", "jsonl"]);
    let mut n = (0, 0, 0);
    for l in out.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        n.0 += 1;
        n.1 += v["bytes_out"].as_u64().unwrap();
        n.2 += v["bytes_in"].as_u64().unwrap();
    }
    n
}

fn kill_pull_when_held(t: &TestContext, agent: &FakeAgent) -> String {
    let mut child =
        t.cmd(&["pull", "--agent", &agent.url]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let at = agent.wait_held();
    child.kill().unwrap();
    child.wait().unwrap();
    at
}

#[test]
fn pull_killed_anywhere_and_rerun_counts_every_byte_once() {
    const BATCHES: u64 = 400;
    const PER: u64 = 10;
    let data = batches(BATCHES, PER);
    let expected = (
        BATCHES * PER,
        data.iter().flat_map(|b| &b.records).map(|r| r.bytes_out).sum::<u64>(),
        data.iter().flat_map(|b| &b.records).map(|r| r.bytes_in).sum::<u64>(),
    );
    let agent = FakeAgent::start(data);
    let t = TestContext::new();

    // 1. Killed while the third page (pages hold 50 batches) is half received: page 1 is in (it was
    //    settled before page 3 was asked for); page 2 was committing in the background meanwhile, so
    //    it is in whole or not at all.
    let page = 50 * PER;
    agent.set_plan(Plan::TruncatePage(3));
    let at = kill_pull_when_held(&t, &agent);
    let n = totals(&t).0;
    assert!(n == page || n == 2 * page, "killed at {at}: {n} records");

    // 2. Killed after page 2 of this run was ingested and its cursor saved, before the agent heard
    //    the acknowledgement: the agent still has those batches and may send them again. This run
    //    started after page 1; its page 3 was committing in the background (whole or not at all).
    agent.set_plan(Plan::HoldAck(2));
    let at = kill_pull_when_held(&t, &agent);
    let n = totals(&t).0;
    assert!(n == 3 * page || n == 4 * page, "killed at {at}: {n} records");

    // 3. Killed at assorted moments while pages are fetched and ingested (inside a transaction,
    //    between commit and cursor, between cursor and acknowledgement...).
    agent.set_plan(Plan::Slow(5));
    for ms in [10, 40, 90, 160, 250, 400] {
        let mut child = t
            .cmd(&["pull", "--agent", &agent.url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        child.kill().unwrap();
        child.wait().unwrap();
        let (records, bytes_out, _) = totals(&t);
        assert_eq!(records % PER, 0, "a batch is in whole or not at all (killed after {ms} ms)");
        assert!(records <= BATCHES * PER && bytes_out <= expected.1, "nothing counted twice");
    }

    // 4. Re-run to the end: every batch exactly once, and the agent was told so.
    agent.set_plan(Plan::Normal);
    let report = t.json(&["pull", "--agent", &agent.url, "--output", "json"]);
    assert_eq!(totals(&t), expected, "{report}");
    assert_eq!(agent.acked_upto.load(Ordering::SeqCst), BATCHES);
    let again = t.json(&["pull", "--agent", &agent.url, "--output", "json"]);
    assert_eq!(again["agents"][0]["records_ingested"].as_u64(), Some(0), "{again}");
    assert_eq!(totals(&t), expected);

    // 5. The same rows as one uninterrupted pull into a fresh workspace.
    let clean = TestContext::new();
    agent.set_plan(Plan::Normal);
    clean.ok(&["pull", "--agent", &agent.url]);
    let sorted = |t: &TestContext| {
        let mut v: Vec<String> = t.ok(&["export", "--format", "jsonl"]).lines().map(str::to_owned).collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&t), sorted(&clean));
}

/// A page the workspace refuses (an invalid record) stops the pull with the batch and field at
/// fault; the page before it, committing in the background meanwhile, is still stored, saved and
/// acknowledged; nothing of the bad page is stored; once the agent sends good data the pull ends
/// with every batch exactly once.
#[test]
fn a_bad_page_stops_the_pull_after_storing_the_pages_before_it() {
    const PER: u64 = 10;
    let data = batches(200, PER);
    let expected = (
        200 * PER,
        data.iter().flat_map(|b| &b.records).map(|r| r.bytes_out).sum::<u64>(),
        data.iter().flat_map(|b| &b.records).map(|r| r.bytes_in).sum::<u64>(),
    );
    let agent = FakeAgent::start(data);
    let t = TestContext::new();
    agent.set_plan(Plan::BadAfter(100)); // pages 1 and 2 (batches 1-100) are good, page 3 is not
    let err = t.fails(&["pull", "--agent", &agent.url]);
    assert!(
        err.contains("batch ip-10-0-1-17-")
            && err.contains("window_end")
            && err.contains("is before window_start"),
        "{err}"
    );
    assert_eq!(totals(&t).0, 100 * PER, "pages 1-2 in, nothing of page 3");
    assert_eq!(agent.acked_upto.load(Ordering::SeqCst), 100, "page 2 acknowledged although page 3 failed");
    agent.set_plan(Plan::Normal);
    let report = t.json(&["pull", "--agent", &agent.url, "--output", "json"]);
    assert_eq!(report["agents"][0]["batches_already_present"].as_u64(), Some(0), "{report}");
    assert_eq!(totals(&t), expected);
    assert_eq!(agent.acked_upto.load(Ordering::SeqCst), 200);
}
