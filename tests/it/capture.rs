//! Kernel capture against real traffic. Needs root (loads eBPF, creates cgroups and
//! network namespaces): every test here fails loudly when not run as root.
//!
//! Each test creates its own cgroup `<cgroup2 root>/egressor-test-<pid>-<name>`, attaches
//! a `KernelCapture` to it alone, and runs the traffic generator as a child process moved
//! into that cgroup, so concurrent tests never see each other's traffic. The child is this
//! same test binary re-executed on the `capture::client_main` entry point, driven by the
//! `EGR_CLIENT` environment variable: no external client tools are needed.
//!
//! Byte bounds. The probes count IP-layer bytes: every packet the cgroup hook sees adds
//! its IP header + TCP header (20..=60 bytes for IPv4, 40 for IPv6 without extension
//! headers; TCP 20..=60 with options) + payload. Payload sums to exactly N when nothing is
//! retransmitted, and SYN, pure ACKs and FIN carry no payload, so for p = packets_out:
//!     N + p * (ip_min + 20)  <=  bytes_out  <=  N + p * (ip_max + 60)
//! With GSO/TSO the hook sees super-packets (one skb of up to 64 KiB with one set of
//! headers, split into MSS-sized segments later by the device or the loopback GSO path),
//! so p counts skbs, not wire segments, and the same bound holds per skb seen.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use egressor::capture::{
    CaptureConfig, Drain, EventSource, Initiator, KernelCapture, Proto, ReplaySource, SocketSample,
    cgroup_path_for_id, cgroup2_root,
};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;
pub(crate) const CLIENT_COMM: &str = "egr-client";

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[test]
fn tcp_ipv4_loopback_counts_exact_payload_1k() {
    tcp_send_case("tcp4-1k", "127.0.0.1:0", KIB);
}

#[test]
fn tcp_ipv4_loopback_counts_exact_payload_10m() {
    tcp_send_case("tcp4-10m", "127.0.0.1:0", 10 * MIB);
}

#[test]
fn tcp_ipv4_loopback_counts_exact_payload_200m() {
    tcp_send_case("tcp4-200m", "127.0.0.1:0", 200 * MIB);
}

#[test]
fn tcp_ipv6_loopback_counts_exact_payload_10m() {
    tcp_send_case("tcp6-10m", "[::1]:0", 10 * MIB);
}

#[test]
fn tcp_passive_side_counts_ingress_and_marks_remote_initiator() {
    let env = TestEnv::new("tcp-passive");
    let mut cap = env.capture(CaptureConfig::default());
    const REQUEST: u64 = 3 * MIB + 7;
    const REPLY: u64 = 5 * MIB + 3;
    // The server is the child (inside the cgroup); this test process is the client.
    let mut child = env.spawn_client(&format!("tcp-serve 127.0.0.1:0 {REPLY}"));
    let port: u16 = child.expect_line("PORT").parse().unwrap();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let client_local = stream.local_addr().unwrap();
    write_zeros(&mut stream, REQUEST);
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    assert_eq!(got, REPLY);
    let request_retrans = tcp_bytes_retrans(&stream);
    drop(stream);
    assert_eq!(child.expect_line("RECEIVED").parse::<u64>().unwrap(), REQUEST);
    let reply_retrans: u64 = child.expect_line("RETRANS").parse().unwrap();
    child.wait_ok();

    let samples = drain_until(&mut cap, |s| s.iter().any(|x| x.remote == client_local && x.closed));
    let s = one(&samples, |x| x.remote == client_local);
    eprintln!("passive: {s:?}");
    assert_eq!(s.proto, Proto::Tcp);
    assert_eq!(s.initiator, Initiator::Remote);
    assert!(s.opened && s.closed);
    assert_eq!(s.cgroup_id, env.cgroup_id());
    assert_tcp_bounds_retrans("passive in", s.bytes_in, s.packets_in, REQUEST, 4, request_retrans);
    assert_tcp_bounds_retrans("passive out", s.bytes_out, s.packets_out, REPLY, 4, reply_retrans);
    // Accepted sockets have no connect(): no pid from the probes.
    assert_eq!(s.pid, None);
    assert_eq!(s.requested_remote, None);
    // The listener's bind() recorded its owner, which the agent gives the accepted socket.
    let listener =
        samples.iter().find(|x| x.listener && x.local.port() == port).expect("the listener's sample");
    assert_eq!(listener.comm.as_deref(), Some(CLIENT_COMM), "{listener:?}");
    assert_eq!(listener.pid, Some(child.pid()), "{listener:?}");
}

#[test]
fn udp_ipv4_datagrams_of_several_sizes_are_counted_exactly() {
    udp_case("udp4", "127.0.0.1:0", 28);
}

#[test]
fn udp_ipv6_datagrams_of_several_sizes_are_counted_exactly() {
    udp_case("udp6", "[::1]:0", 48);
}

#[test]
fn burst_of_2000_short_tcp_connections_all_reported_with_bytes() {
    const CONNS: usize = 2000;
    let env = TestEnv::new("burst");
    // A socket map smaller than the number of connections: the close events, not the
    // map, carry the short connections.
    let mut cap = env.capture(CaptureConfig { max_sockets: 1024, ..CaptureConfig::default() });
    let server = Server::start("127.0.0.1:0");
    let mut child = env.spawn_client(&format!("tcp-burst {} {CONNS} {}", server.addr, KIB));
    child.expect_line("DONE");
    let pid = child.pid();
    child.wait_ok();
    assert_eq!(server.wait_connections(CONNS as u64), CONNS as u64 * KIB);

    let mut closed = Vec::new();
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = Drain::default();
    while closed.len() < CONNS && Instant::now() < deadline {
        last = cap.drain().unwrap();
        for s in &last.sockets {
            if s.remote == server.addr && s.closed {
                assert!(seen.insert(s.cookie), "cookie {} reported closed twice", s.cookie);
                closed.push(s.clone());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let total: u64 = closed.iter().map(|s| s.bytes_out).sum();
    eprintln!(
        "burst: {} closed samples, bytes_out total {total} for payload {} (overhead {}), drops {}, evicted {}, ring_full {}",
        closed.len(),
        CONNS as u64 * KIB,
        total - CONNS as u64 * KIB,
        last.drops,
        last.evicted,
        last.ring_full
    );
    assert_eq!(closed.len(), CONNS, "every short connection reported by its close event");
    for s in &closed {
        assert_eq!(s.proto, Proto::Tcp);
        assert_eq!(s.initiator, Initiator::Local);
        assert!(s.opened);
        assert_eq!(s.pid, Some(pid));
        assert_eq!(s.comm.as_deref(), Some(CLIENT_COMM));
        assert_tcp_bounds("burst conn", s.bytes_out, s.packets_out, KIB, 4);
    }
    assert_eq!(last.drops, 0);
}

#[test]
fn connect_through_dnat_reports_requested_destination() {
    let env = TestEnv::new("dnat");
    let iptables = which("iptables").expect(
        "this test needs iptables to DNAT a service address inside a network namespace: \
         apt-get install iptables",
    );
    let ns = NetNs::new("egr-dnat");
    ns.exec(&["ip", "link", "set", "lo", "up"]);
    // A "Service VIP" that exists only as a DNAT rule, as kube-proxy does it.
    ns.exec(&["ip", "route", "add", "local", "198.51.100.0/24", "dev", "lo"]);
    let mut server = env.spawn_in_ns(&ns, "tcp-serve 127.0.0.1:0 0", false);
    let port = server.expect_line("PORT");
    ns.exec(&[
        iptables.to_str().unwrap(),
        "-t",
        "nat",
        "-A",
        "OUTPUT",
        "-p",
        "tcp",
        "-d",
        "198.51.100.7",
        "--dport",
        "80",
        "-j",
        "DNAT",
        "--to-destination",
        &format!("127.0.0.1:{port}"),
    ]);
    let mut cap = env.capture(CaptureConfig::default());
    let mut client = env.spawn_in_ns(&ns, &format!("tcp-send 198.51.100.7:80 {}", 64 * KIB), true);
    let local: SocketAddr = client.expect_line("LOCAL").parse().unwrap();
    let retrans: u64 = client.expect_line("RETRANS").parse().unwrap();
    client.wait_ok();
    server.wait_ok();
    let samples = drain_until(&mut cap, |s| s.iter().any(|x| x.local == local && x.closed));
    let s = one(&samples, |x| x.local == local);
    eprintln!("dnat: {s:?}");
    assert_eq!(s.remote, format!("127.0.0.1:{port}").parse().unwrap());
    assert_eq!(s.requested_remote, Some("198.51.100.7:80".parse().unwrap()));
    assert_eq!(s.pid, Some(client.pid()));
    assert_eq!(s.initiator, Initiator::Local);
    assert_tcp_bounds_retrans("dnat", s.bytes_out, s.packets_out, 64 * KIB, 4, retrans);
}

#[test]
fn tcp_over_veth_between_network_namespaces() {
    let env = TestEnv::new("veth");
    let a = NetNs::new("egr-va");
    let b = NetNs::new("egr-vb");
    let veth_a = format!("egra{}", std::process::id() % 100_000);
    let veth_b = format!("egrb{}", std::process::id() % 100_000);
    // Addresses of test hosts that exist only in these namespaces (RFC 2544 range).
    run(&[
        "ip", "link", "add", &veth_a, "netns", &a.name, "type", "veth", "peer", "name", &veth_b, "netns",
        &b.name,
    ]);
    a.exec(&["ip", "addr", "add", "198.18.0.1/24", "dev", &veth_a]);
    b.exec(&["ip", "addr", "add", "198.18.0.2/24", "dev", &veth_b]);
    for (ns, dev) in [(&a, &veth_a), (&b, &veth_b)] {
        ns.exec(&["ip", "link", "set", dev, "up"]);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
    }
    let mut server = env.spawn_in_ns(&b, "tcp-serve 198.18.0.2:0 0", false);
    let port = server.expect_line("PORT");
    let mut cap = env.capture(CaptureConfig::default());
    const N: u64 = 20 * MIB;
    let mut client = env.spawn_in_ns(&a, &format!("tcp-send 198.18.0.2:{port} {N}"), true);
    let local: SocketAddr = client.expect_line("LOCAL").parse().unwrap();
    let retrans: u64 = client.expect_line("RETRANS").parse().unwrap();
    client.wait_ok();
    assert_eq!(server.expect_line("RECEIVED").parse::<u64>().unwrap(), N);
    server.wait_ok();
    let samples = drain_until(&mut cap, |s| s.iter().any(|x| x.local == local && x.closed));
    let s = one(&samples, |x| x.local == local);
    eprintln!(
        "veth: N={N} bytes_out={} packets_out={} overhead={} bytes_in={} packets_in={} retransmitted={retrans}",
        s.bytes_out,
        s.packets_out,
        s.bytes_out - N,
        s.bytes_in,
        s.packets_in
    );
    assert_eq!(s.remote, format!("198.18.0.2:{port}").parse().unwrap());
    assert_tcp_bounds_retrans("veth", s.bytes_out, s.packets_out, N, 4, retrans);
    assert_eq!(s.cgroup_id, env.cgroup_id());
}

#[test]
fn lru_overflow_is_counted_not_silent() {
    let env = TestEnv::new("overflow");
    let mut cap = env.capture(CaptureConfig { max_sockets: 64, ..CaptureConfig::default() });
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    // 300 live UDP sockets, each sends one datagram, waits, then sends another.
    let mut child = env.spawn_client(&format!("udp-many {addr} 300"));
    child.expect_line("SENT1");
    let first = cap.drain().unwrap();
    assert!(first.map_entries <= first.map_capacity, "{} > {}", first.map_entries, first.map_capacity);
    assert_eq!(first.map_capacity, 64);
    child.send_line("again");
    child.expect_line("SENT2");
    let second = cap.drain().unwrap();
    eprintln!(
        "overflow: first drain {} entries; second drain {} entries, evicted {}, drops {}",
        first.map_entries, second.map_entries, second.evicted, second.drops
    );
    assert!(second.evicted > 0, "evictions of sockets seen in the first drain are counted");
    child.send_line("exit");
    child.wait_ok();
    drop(server);
}

/// 100,000 concurrent flows (UDP sockets, each with one datagram in flight, all open at the drain):
/// with the default map of 65,536 sockets every flow is either reported with its exact bytes or
/// counted as evicted, none silently; with a map of 131,072 they all fit.
#[test]
fn hundred_thousand_concurrent_flows_fit_or_the_overflow_is_counted() {
    const FLOWS: usize = 100_000;
    const PAYLOAD: u64 = 100;
    for capacity in [CaptureConfig::default().max_sockets, 131_072] {
        let env = TestEnv::new(&format!("flows-{capacity}"));
        let mut cap = env.capture(CaptureConfig { max_sockets: capacity, ..CaptureConfig::default() });
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        // 10,000 sockets per process (a container's hard limit on descriptors is often 20,000).
        let mut children: Vec<ClientProc> = (0..FLOWS / 10_000)
            .map(|k| env.spawn_client(&format!("udp-flows {addr} {} 10000 {PAYLOAD}", k * 10_000)))
            .collect();
        for c in &mut children {
            c.expect_line("SENT");
        }
        let d = cap.drain().unwrap();
        let reported = d.sockets.iter().filter(|s| s.cgroup_id == env.cgroup_id()).count();
        eprintln!(
            "{FLOWS} flows, map of {capacity}: {reported} reported, {} evicted, {} drops, {} entries",
            d.evicted, d.drops, d.map_entries
        );
        for s in d.sockets.iter().filter(|s| s.cgroup_id == env.cgroup_id()) {
            assert_eq!((s.bytes_out, s.packets_out), (PAYLOAD + 28, 1), "{s:?}");
        }
        if capacity as usize >= FLOWS {
            assert_eq!((reported, d.evicted, d.drops), (FLOWS, 0, 0), "all fit");
        } else {
            // A full LRU map evicts to make room; under contention it can also fail an insert
            // (counted in drops, with the metadata map's failures, which lose no bytes).
            assert!(reported as u64 + d.evicted <= FLOWS as u64, "no flow counted twice");
            assert!(
                reported as u64 + d.evicted + d.drops >= FLOWS as u64,
                "every flow reported or counted as evicted or as a failed insert"
            );
            assert!(d.evicted + d.drops >= (FLOWS - capacity as usize) as u64);
        }
        for mut c in children {
            c.send_line("exit");
            c.wait_ok();
        }
    }
}

#[test]
fn capture_detaches_on_drop() {
    let env = TestEnv::new("detach");
    let cap = env.capture(CaptureConfig::default());
    assert_eq!(cap.cgroup_path(), env.path.as_path());
    let attached = bpftool_cgroup_progs(&env.path);
    assert!(attached >= 8, "8 programs attached, bpftool shows {attached}");
    drop(cap);
    assert_eq!(bpftool_cgroup_progs(&env.path), 0, "all programs detached on drop");
}

#[test]
fn cgroup_helpers_resolve_the_test_cgroup() {
    require_root();
    let root = cgroup2_root().unwrap();
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        mounts.lines().any(|l| l.split_whitespace().nth(1) == root.to_str()
            && l.split_whitespace().nth(2) == Some("cgroup2"))
    );
    let env = TestEnv::new("resolve");
    assert_eq!(cgroup_path_for_id(&root, env.cgroup_id()), Some(env.path.clone()));
    assert_eq!(cgroup_path_for_id(&root, u64::MAX), None);
}

#[test]
fn replay_source_feeds_prepared_drains() {
    let d1 = Drain { drops: 1, map_capacity: 8, ..Drain::default() };
    let d2 = Drain { drops: 2, map_capacity: 8, ..Drain::default() };
    let mut src = ReplaySource::new(vec![d1.clone(), d2.clone()]);
    let source: &mut dyn EventSource = &mut src;
    assert_eq!(source.drain().unwrap(), d1);
    assert_eq!(source.drain().unwrap(), d2);
    let empty = source.drain().unwrap();
    assert!(empty.sockets.is_empty());
    assert_eq!(empty.map_capacity, 8);
    assert!(src.is_exhausted());
}

// ---------------------------------------------------------------------------------------
// Shared cases
// ---------------------------------------------------------------------------------------

fn tcp_send_case(name: &str, bind: &str, n: u64) {
    let env = TestEnv::new(name);
    let mut cap = env.capture(CaptureConfig::default());
    let server = Server::start(bind);
    let mut child = env.spawn_client(&format!("tcp-send {} {n}", server.addr));
    let local: SocketAddr = child.expect_line("LOCAL").parse().unwrap();
    let pid = child.pid();
    let retrans: u64 = child.expect_line("RETRANS").parse().unwrap();
    child.wait_ok();
    assert_eq!(server.wait_connections(1), n);

    let samples = drain_until(&mut cap, |s| s.iter().any(|x| x.local == local && x.closed));
    let s = one(&samples, |x| x.local == local);
    let v = if server.addr.is_ipv4() { 4 } else { 6 };
    eprintln!(
        "{name}: N={n} bytes_out={} packets_out={} overhead={} ({:.1} B/pkt) bytes_in={} packets_in={} \
         retransmitted={retrans}",
        s.bytes_out,
        s.packets_out,
        s.bytes_out - n,
        (s.bytes_out - n) as f64 / s.packets_out as f64,
        s.bytes_in,
        s.packets_in
    );
    assert_eq!(s.proto, Proto::Tcp);
    assert_eq!(s.ip_version, v);
    assert_eq!(s.remote, server.addr);
    assert_eq!(s.requested_remote, None, "plain connect: requested == remote");
    assert_eq!(s.initiator, Initiator::Local);
    assert!(s.opened && s.closed);
    assert_eq!(s.pid, Some(pid));
    assert_eq!(s.comm.as_deref(), Some(CLIENT_COMM));
    assert_eq!(s.cgroup_id, env.cgroup_id());
    assert_tcp_bounds_retrans(name, s.bytes_out, s.packets_out, n, v, retrans);
    // Inbound: only ACKs and the server's FIN, no payload.
    assert_tcp_bounds(name, s.bytes_in, s.packets_in, 0, v);
    // The closed socket is gone from the map: it is not reported again.
    let again = cap.drain().unwrap();
    assert!(again.sockets.iter().all(|x| x.cookie != s.cookie));
}

fn udp_case(name: &str, bind: &str, header: u64) {
    const SIZES: [u64; 6] = [1, 100, 512, 1472, 8000, 60_000];
    let env = TestEnv::new(name);
    let mut cap = env.capture(CaptureConfig::default());
    let server = UdpSocket::bind(bind).unwrap();
    let addr = server.local_addr().unwrap();
    let sizes = SIZES.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let mut child = env.spawn_client(&format!("udp-send {addr} {sizes}"));
    let local: SocketAddr = child.expect_line("LOCAL").parse().unwrap();
    let pid = child.pid();
    // Receive all datagrams before the child exits (its socket release ends the sample).
    server.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = vec![0u8; 65536];
    let mut got = Vec::new();
    for _ in SIZES {
        let (n, from) = server.recv_from(&mut buf).unwrap();
        assert_eq!(from, local);
        got.push(n as u64);
    }
    assert_eq!(got, SIZES);
    child.send_line("exit");
    child.wait_ok();

    let samples = drain_until(&mut cap, |s| s.iter().any(|x| x.local == local && x.closed));
    let s = one(&samples, |x| x.local == local);
    let expected: u64 = SIZES.iter().map(|n| n + header).sum();
    eprintln!(
        "{name}: payload={} bytes_out={} (expected {expected}) packets_out={}",
        SIZES.iter().sum::<u64>(),
        s.bytes_out,
        s.packets_out
    );
    assert_eq!(s.proto, Proto::Udp);
    assert_eq!(s.remote, addr);
    assert_eq!(s.bytes_out, expected, "IP + UDP header ({header} B) + payload per datagram");
    assert_eq!(s.packets_out, SIZES.len() as u64);
    assert_eq!(s.bytes_in, 0);
    assert!(s.closed, "released UDP socket reported closed");
    assert!(!s.opened);
    assert!(!s.multi_remote);
    assert_eq!(s.pid, Some(pid), "sendmsg hook records the sender");
    assert_eq!(s.comm.as_deref(), Some(CLIENT_COMM));
    assert_eq!(s.requested_remote, None);
    assert_eq!(s.cgroup_id, env.cgroup_id());
}

/// N + p*(ip_min+20) <= bytes <= N + p*(ip_max+60); see the module docs.
pub(crate) fn assert_tcp_bounds(what: &str, bytes: u64, packets: u64, payload: u64, ip_version: u8) {
    assert_tcp_bounds_retrans(what, bytes, packets, payload, ip_version, 0);
}

/// The bound above when the sender retransmitted `retrans` payload bytes (read from its socket's
/// TCP_INFO): retransmitted segments are real packets on the wire, which the probe counts and a
/// cloud bills, so they widen the upper bound by exactly that much. Loopback drops (a full backlog
/// while tests run in parallel) make this happen now and then.
pub(crate) fn assert_tcp_bounds_retrans(
    what: &str,
    bytes: u64,
    packets: u64,
    payload: u64,
    ip_version: u8,
    retrans: u64,
) {
    let (ip_min, ip_max) = if ip_version == 4 { (20, 60) } else { (40, 40) };
    let lo = payload + packets * (ip_min + 20);
    let hi = payload + retrans + packets * (ip_max + 60);
    assert!(packets > 0, "{what}: no packets counted");
    assert!(
        (lo..=hi).contains(&bytes),
        "{what}: {bytes} bytes in {packets} packets outside [{lo}, {hi}] for payload {payload} \
         (+{retrans} retransmitted)"
    );
}

/// `tcpi_bytes_retrans` of a connected TCP socket (struct tcp_info, offset 208, Linux >= 4.19).
pub(crate) fn tcp_bytes_retrans(s: &TcpStream) -> u64 {
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; 256];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: buf is valid for len bytes; the kernel writes at most len bytes and updates len.
    let rc = unsafe {
        libc::getsockopt(s.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, buf.as_mut_ptr().cast(), &mut len)
    };
    assert_eq!(rc, 0, "getsockopt(TCP_INFO): {}", std::io::Error::last_os_error());
    assert!(len >= 216, "tcp_info of {len} bytes has no tcpi_bytes_retrans (kernel < 4.19)");
    u64::from_ne_bytes(buf[208..216].try_into().unwrap())
}

// ---------------------------------------------------------------------------------------
// Child process: the traffic generator
// ---------------------------------------------------------------------------------------

/// Entry point of the re-executed test binary. Does nothing in a normal test run.
#[test]
fn client_main() {
    let Ok(spec) = std::env::var("EGR_CLIENT") else {
        return;
    };
    // Wait until the parent has moved us into the test cgroup: sockets take the cgroup of
    // the process that creates them.
    let mut stdin = std::io::stdin().lock();
    let mut line = String::new();
    stdin.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "go");
    std::fs::write("/proc/thread-self/comm", CLIENT_COMM).unwrap();
    let args: Vec<&str> = spec.split_whitespace().collect();
    let say = |key: &str, value: &dyn std::fmt::Display| {
        println!("EGR {key} {value}");
        std::io::stdout().flush().unwrap();
    };
    match args.as_slice() {
        ["tcp-send", addr, n] => {
            let s = TcpStream::connect(addr.parse::<SocketAddr>().unwrap()).unwrap();
            send_all_and_wait(s, n.parse().unwrap(), &say);
        }
        ["tcp-send-from", bind, addr, n] => {
            // A pod's process: its connections leave from the pod's own IP.
            let sock = socket_bound_to(bind.parse().unwrap());
            let s = sock.connect(addr.parse::<SocketAddr>().unwrap()).unwrap();
            send_all_and_wait(s, n.parse().unwrap(), &say);
        }
        ["tcp-burst", addr, count, size] => {
            let addr: SocketAddr = addr.parse().unwrap();
            let size: u64 = size.parse().unwrap();
            for _ in 0..count.parse::<usize>().unwrap() {
                let mut s = TcpStream::connect(addr).unwrap();
                write_zeros(&mut s, size);
                s.shutdown(std::net::Shutdown::Write).unwrap();
                let mut rest = Vec::new();
                s.read_to_end(&mut rest).unwrap();
            }
            say("DONE", &count);
        }
        ["tcp-serve", bind, reply] => {
            let l = TcpListener::bind(bind.parse::<SocketAddr>().unwrap()).unwrap();
            say("PORT", &l.local_addr().unwrap().port());
            let (mut s, _) = l.accept().unwrap();
            let mut got = 0u64;
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got += n as u64;
            }
            write_zeros(&mut s, reply.parse().unwrap());
            s.shutdown(std::net::Shutdown::Write).unwrap();
            // The client closes after reading the whole reply: then every byte was acknowledged.
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).unwrap();
            say("RECEIVED", &got);
            say("RETRANS", &tcp_bytes_retrans(&s));
        }
        ["udp-send", addr, sizes] => {
            let addr: SocketAddr = addr.parse().unwrap();
            let bind = if addr.is_ipv4() { "127.0.0.1:0" } else { "[::1]:0" };
            let s = UdpSocket::bind(bind).unwrap();
            say("LOCAL", &s.local_addr().unwrap());
            for size in sizes.split(',') {
                let buf = vec![0u8; size.parse().unwrap()];
                assert_eq!(s.send_to(&buf, addr).unwrap(), buf.len());
            }
            line.clear();
            stdin.read_line(&mut line).unwrap(); // "exit"
        }
        ["udp-many", addr, count] => {
            let addr: SocketAddr = addr.parse().unwrap();
            let socks: Vec<UdpSocket> = (0..count.parse::<usize>().unwrap())
                .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
                .collect();
            for s in &socks {
                s.send_to(b"one", addr).unwrap();
            }
            say("SENT1", &socks.len());
            line.clear();
            stdin.read_line(&mut line).unwrap(); // "again"
            for s in &socks {
                s.send_to(b"two", addr).unwrap();
            }
            say("SENT2", &socks.len());
            line.clear();
            stdin.read_line(&mut line).unwrap(); // "exit"
        }
        ["udp-flows", addr, first, count, size] => {
            let addr: SocketAddr = addr.parse().unwrap();
            let (first, count): (usize, usize) = (first.parse().unwrap(), count.parse().unwrap());
            let buf = vec![0u8; size.parse().unwrap()];
            // One descriptor per flow: the soft limit up to the hard one (containers often cap the
            // hard limit at ~20,000, hence several processes).
            let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            // SAFETY: valid rlimit structs.
            unsafe {
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
                lim.rlim_cur = lim.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
            assert!(lim.rlim_cur as usize > count + 64, "RLIMIT_NOFILE {} < {count} sockets", lim.rlim_cur);
            // Ephemeral ports run out at ~28,000 per address: spread the sockets over
            // 127.100.0.1 .. (all of 127/8 is loopback).
            let socks: Vec<UdpSocket> = (first..first + count)
                .map(|i| {
                    let ip = std::net::Ipv4Addr::new(
                        127,
                        100 + (i / 50_000) as u8,
                        (i % 50_000 / 200) as u8,
                        (i % 200) as u8 + 1,
                    );
                    let s = UdpSocket::bind((ip, 0)).unwrap();
                    s.send_to(&buf, addr).unwrap();
                    s
                })
                .collect();
            say("SENT", &socks.len());
            line.clear();
            stdin.read_line(&mut line).unwrap(); // "exit"
        }
        other => panic!("unknown client command {other:?}"),
    }
}

/// Sends `n` zero bytes, then waits for the server's close: every byte was received and
/// acknowledged. Says LOCAL (the socket's address) and RETRANS (bytes retransmitted).
fn send_all_and_wait(mut s: TcpStream, n: u64, say: &dyn Fn(&str, &dyn std::fmt::Display)) {
    say("LOCAL", &s.local_addr().unwrap());
    write_zeros(&mut s, n);
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    say("RETRANS", &tcp_bytes_retrans(&s));
}

/// A TCP socket bound to `ip` (any port), ready to connect.
fn socket_bound_to(ip: std::net::IpAddr) -> BoundSocket {
    let addr = SocketAddr::new(ip, 0);
    // std has no bind-before-connect; a listener-less bind through libc keeps this dependency-free.
    // SAFETY: plain socket syscalls on a descriptor this function owns.
    unsafe {
        let fam = if ip.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
        let fd = libc::socket(fam, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let (sa, len) = sockaddr_of(&addr);
        assert_eq!(
            libc::bind(fd, &sa as *const _ as *const libc::sockaddr, len),
            0,
            "bind {addr}: {}",
            std::io::Error::last_os_error()
        );
        BoundSocket(fd)
    }
}

struct BoundSocket(i32);

impl BoundSocket {
    fn connect(self, to: SocketAddr) -> std::io::Result<TcpStream> {
        use std::os::fd::FromRawFd;
        let (sa, len) = sockaddr_of(&to);
        // SAFETY: connecting the descriptor this value owns; ownership moves to the TcpStream.
        unsafe {
            if libc::connect(self.0, &sa as *const _ as *const libc::sockaddr, len) != 0 {
                let e = std::io::Error::last_os_error();
                libc::close(self.0);
                return Err(e);
            }
            Ok(TcpStream::from_raw_fd(self.0))
        }
    }
}

fn sockaddr_of(a: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is valid; the family-specific view is written in place.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match a {
        SocketAddr::V4(v4) => {
            let sin = &mut ss as *mut _ as *mut libc::sockaddr_in;
            unsafe {
                (*sin).sin_family = libc::AF_INET as libc::sa_family_t;
                (*sin).sin_port = v4.port().to_be();
                (*sin).sin_addr = libc::in_addr { s_addr: u32::from(*v4.ip()).to_be() };
            }
            (ss, std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t)
        }
        SocketAddr::V6(v6) => {
            let sin6 = &mut ss as *mut _ as *mut libc::sockaddr_in6;
            unsafe {
                (*sin6).sin6_family = libc::AF_INET6 as libc::sa_family_t;
                (*sin6).sin6_port = v6.port().to_be();
                (*sin6).sin6_addr = libc::in6_addr { s6_addr: v6.ip().octets() };
            }
            (ss, std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        }
    }
}

fn write_zeros(w: &mut impl Write, mut n: u64) {
    let buf = vec![0u8; 256 * 1024];
    while n > 0 {
        let k = n.min(buf.len() as u64) as usize;
        w.write_all(&buf[..k]).unwrap();
        n -= k as u64;
    }
}

// ---------------------------------------------------------------------------------------
// Test environment helpers
// ---------------------------------------------------------------------------------------

pub(crate) fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("Uid line in /proc/self/status");
    assert_eq!(
        euid, "0",
        "the capture tests load eBPF programs and create cgroups and network namespaces: \
         run them as root (e.g. `sudo -E cargo test --test it capture::`)"
    );
}

/// A fresh cgroup for one test, removed at the end.
pub(crate) struct TestEnv {
    pub(crate) path: PathBuf,
}

impl TestEnv {
    pub(crate) fn new(name: &str) -> Self {
        require_root();
        let root = cgroup2_root().expect("a cgroup v2 hierarchy (see /proc/mounts)");
        let path = root.join(format!("egressor-test-{}-{name}", std::process::id()));
        if path.exists() {
            let _ = std::fs::remove_dir(&path);
        }
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("cannot create cgroup {}: {e}", path.display()));
        TestEnv { path }
    }

    fn capture(&self, mut cfg: CaptureConfig) -> KernelCapture {
        cfg.cgroup_path = Some(self.path.clone());
        KernelCapture::start(&cfg).unwrap_or_else(|e| panic!("capture start: {e}"))
    }

    fn cgroup_id(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&self.path).unwrap().ino()
    }

    /// The client, in this test's cgroup.
    pub(crate) fn spawn_client(&self, spec: &str) -> ClientProc {
        self.spawn(Command::new(std::env::current_exe().unwrap()), spec, true)
    }

    /// The client, in a cgroup below this test's (created by the caller).
    pub(crate) fn spawn_client_in(&self, cgroup: &Path, spec: &str) -> ClientProc {
        self.spawn_at(Command::new(std::env::current_exe().unwrap()), spec, Some(cgroup))
    }

    /// The client in a network namespace, in this test's cgroup or not.
    fn spawn_in_ns(&self, ns: &NetNs, spec: &str, in_cgroup: bool) -> ClientProc {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns.name]).arg(std::env::current_exe().unwrap());
        self.spawn(cmd, spec, in_cgroup)
    }

    fn spawn(&self, cmd: Command, spec: &str, in_cgroup: bool) -> ClientProc {
        self.spawn_at(cmd, spec, in_cgroup.then_some(self.path.as_path()))
    }

    fn spawn_at(&self, mut cmd: Command, spec: &str, cgroup: Option<&Path>) -> ClientProc {
        cmd.args(["capture::client_main", "--nocapture", "--test-threads=1", "-q"])
            .env("EGR_CLIENT", spec)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn client");
        // `ip netns exec` execs the program in place, so the pid is the client's.
        if let Some(cg) = cgroup {
            std::fs::write(cg.join("cgroup.procs"), child.id().to_string())
                .expect("move the client into the test cgroup");
        }
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut c = ClientProc { child, stdout };
        c.send_line("go");
        c
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // Children have exited (or are killed by ClientProc's drop before this).
        for _ in 0..50 {
            if std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("warning: could not remove {}", self.path.display());
    }
}

pub(crate) struct ClientProc {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl ClientProc {
    pub(crate) fn new(child: Child, stdout: BufReader<ChildStdout>) -> Self {
        ClientProc { child, stdout }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn send_line(&mut self, s: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{s}").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for "EGR KEY value" from the child and returns the value.
    pub(crate) fn expect_line(&mut self, key: &str) -> String {
        let prefix = format!("EGR {key} ");
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "client exited before printing {key}");
            if let Some(v) = line.trim_end().strip_prefix(&prefix) {
                return v.to_owned();
            }
        }
    }

    pub(crate) fn wait_ok(&mut self) {
        drop(self.child.stdin.take());
        let mut rest = String::new();
        let _ = self.stdout.read_to_string(&mut rest);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "client failed: {status}\n{rest}");
    }
}

impl Drop for ClientProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A TCP server in this (uncaptured) process: accepts, reads to EOF, closes.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    bytes: std::sync::Arc<AtomicU64>,
    conns: std::sync::Arc<AtomicU64>,
}

impl Server {
    pub(crate) fn start(bind: &str) -> Server {
        let l = TcpListener::bind(bind).unwrap();
        let addr = l.local_addr().unwrap();
        let bytes = std::sync::Arc::new(AtomicU64::new(0));
        let conns = std::sync::Arc::new(AtomicU64::new(0));
        let (b, c) = (bytes.clone(), conns.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 256 * 1024];
            for s in l.incoming() {
                let Ok(mut s) = s else { break };
                let mut got = 0u64;
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    got += n as u64;
                }
                drop(s);
                b.fetch_add(got, Ordering::SeqCst);
                c.fetch_add(1, Ordering::SeqCst);
            }
        });
        Server { addr, bytes, conns }
    }

    /// Waits for `n` finished connections; returns the bytes received.
    pub(crate) fn wait_connections(&self, n: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.conns.load(Ordering::SeqCst) < n {
            assert!(
                Instant::now() < deadline,
                "server saw {} of {n} connections",
                self.conns.load(Ordering::SeqCst)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        self.bytes.load(Ordering::SeqCst)
    }
}

/// A network namespace, deleted at the end.
struct NetNs {
    name: String,
}

impl NetNs {
    fn new(prefix: &str) -> NetNs {
        let name = format!("{prefix}-{}", std::process::id());
        // A leftover from a killed run of this pid would make `add` fail.
        let _ = Command::new("ip").args(["netns", "del", &name]).stderr(Stdio::null()).status();
        run(&["ip", "netns", "add", &name]);
        NetNs { name }
    }

    fn exec(&self, args: &[&str]) {
        let mut all = vec!["ip", "netns", "exec", &self.name];
        all.extend_from_slice(args);
        run(&all);
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e} (is iproute2 installed?)"));
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

/// Number of programs attached to exactly this cgroup, from bpftool.
fn bpftool_cgroup_progs(path: &Path) -> usize {
    let out = Command::new("bpftool")
        .args(["cgroup", "show"])
        .arg(path)
        .output()
        .expect("bpftool (apt-get install bpftool)");
    assert!(out.status.success(), "bpftool: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_start().chars().next().is_some_and(|c| c.is_ascii_digit()))
        .count()
}

/// Drains until `done` holds for the sockets seen so far (close events can trail the
/// process exit by a moment); returns all samples seen, later ones last.
fn drain_until(cap: &mut KernelCapture, done: impl Fn(&[SocketSample]) -> bool) -> Vec<SocketSample> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut all = Vec::new();
    loop {
        let d = cap.drain().unwrap();
        assert_eq!(d.drops, 0, "no map insert failures expected");
        all.extend(d.sockets);
        if done(&all) {
            return all;
        }
        assert!(Instant::now() < deadline, "timed out; samples so far: {all:#?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The final sample of the one socket matching `f` (closed wins over live samples).
fn one(samples: &[SocketSample], f: impl Fn(&SocketSample) -> bool) -> &SocketSample {
    let matching: Vec<&SocketSample> = samples.iter().filter(|s| f(s)).collect();
    let cookies: HashSet<u64> = matching.iter().map(|s| s.cookie).collect();
    assert_eq!(cookies.len(), 1, "exactly one socket expected: {matching:#?}");
    let closed: Vec<_> = matching.iter().filter(|s| s.closed).collect();
    assert_eq!(closed.len(), 1, "exactly one closed sample: {matching:#?}");
    closed[0]
}
