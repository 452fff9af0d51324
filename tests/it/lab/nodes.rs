//! The lab's nodes and pods, real apart from the API server: each node is a network namespace
//! joined by a veth to a bridge, with its own cgroup subtree; each pod is a process in a
//! kubelet-shaped cgroup (systemd or cgroupfs driver layout) inside its node's namespace, with its
//! own IP (a secondary address of the node's interface), sending real traffic to other nodes.
//! A ClusterIP is a DNAT rule in the sending node's namespace, as kube-proxy writes it.

use crate::capture::ClientProc;
use std::io::BufReader;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// How kubelet lays out pod cgroups.
#[derive(Debug, Clone, Copy)]
pub enum Layout {
    Systemd,
    Cgroupfs,
}

pub struct Node {
    pub name: String,
    pub zone: String,
    pub netns: String,
    pub ip: Ipv4Addr,
    /// The node's cgroup subtree: what its agent captures.
    pub cgroup: PathBuf,
    pub dir: PathBuf,
}

pub struct Nodes {
    pub nodes: Vec<Node>,
    pub bridge: String,
    pub bridge_ip: Ipv4Addr,
    subnet: u8,
    next_host: AtomicU32,
    root_cgroup: PathBuf,
    _dir: tempfile::TempDir,
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("run a lab command");
    assert!(out.status.success(), "lab: {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn in_ns(ns: &str, args: &[&str]) {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    sh(&all);
}

impl Nodes {
    /// Nodes named and zoned as given, on a fresh bridge and /24.
    pub fn new(spec: &[(&str, &str)]) -> Nodes {
        crate::capture::require_root();
        let n = NEXT_LAB.fetch_add(1, Ordering::SeqCst);
        let tag = format!("{}{n}", std::process::id() % 10_000);
        let subnet = ((std::process::id() * 7 + n * 13) % 200 + 20) as u8;
        let bridge = format!("eglab{tag}");
        let bridge_ip = Ipv4Addr::new(10, 213, subnet, 1);
        sh(&["ip", "link", "add", &bridge, "type", "bridge"]);
        sh(&["ip", "addr", "add", &format!("{bridge_ip}/24"), "dev", &bridge]);
        sh(&["ip", "link", "set", &bridge, "up"]);
        let root = egressor::capture::cgroup2_root().unwrap().join(format!("egressor-lab-{tag}"));
        std::fs::create_dir_all(&root).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut lab = Nodes {
            nodes: Vec::new(),
            bridge,
            bridge_ip,
            subnet,
            next_host: AtomicU32::new(100),
            root_cgroup: root,
            _dir: dir,
        };
        for (i, (name, zone)) in spec.iter().enumerate() {
            let node = lab.add_node(&tag, i as u8, name, zone);
            lab.nodes.push(node);
        }
        lab
    }

    fn add_node(&self, tag: &str, i: u8, name: &str, zone: &str) -> Node {
        let netns = format!("eglab{tag}n{i}");
        let (host_if, ns_if) = (format!("egl{tag}h{i}"), format!("egl{tag}p{i}"));
        let ip = Ipv4Addr::new(10, 213, self.subnet, 10 + i);
        sh(&["ip", "netns", "add", &netns]);
        sh(&["ip", "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if, "netns", &netns]);
        sh(&["ip", "link", "set", &host_if, "master", &self.bridge]);
        sh(&["ip", "link", "set", &host_if, "up"]);
        in_ns(&netns, &["ip", "link", "set", "lo", "up"]);
        in_ns(&netns, &["ip", "link", "set", &ns_if, "name", "eth0"]);
        in_ns(&netns, &["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
        in_ns(&netns, &["ip", "link", "set", "eth0", "up"]);
        in_ns(&netns, &["ip", "route", "add", "default", "via", &self.bridge_ip.to_string()]);
        let cgroup = self.root_cgroup.join(name);
        std::fs::create_dir_all(&cgroup).unwrap();
        let dir = self._dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        Node { name: name.into(), zone: zone.into(), netns, ip, cgroup, dir }
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes.iter().find(|n| n.name == name).unwrap_or_else(|| panic!("no lab node {name}"))
    }

    /// A new pod IP on `node` (a secondary address of its interface).
    pub fn pod_ip(&self, node: &str) -> Ipv4Addr {
        let host = self.next_host.fetch_add(1, Ordering::SeqCst);
        assert!(host < 250, "lab subnet full");
        let ip = Ipv4Addr::new(10, 213, self.subnet, host as u8);
        in_ns(&self.node(node).netns, &["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
        ip
    }

    /// The cgroup kubelet would give a container of pod `uid` on `node`, created.
    pub fn pod_cgroup(&self, node: &str, uid: &str, layout: Layout) -> PathBuf {
        let cid = format!("{:0>64}", uid.replace('-', ""));
        let rel = match layout {
            Layout::Systemd => {
                let u = uid.replace('-', "_");
                format!(
                    "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/cri-containerd-{cid}.scope"
                )
            }
            Layout::Cgroupfs => format!("kubepods/burstable/pod{uid}/{cid}"),
        };
        let path = self.node(node).cgroup.join(rel);
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    /// The test binary's traffic client (`capture::client_main`) as a process of a pod: in the
    /// node's namespace and the pod's cgroup.
    pub fn spawn_in_pod(&self, node: &str, cgroup: &Path, spec: &str) -> ClientProc {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.node(node).netns])
            .arg(std::env::current_exe().unwrap())
            .args(["capture::client_main", "--nocapture", "--test-threads=1", "-q"])
            .env("EGR_CLIENT", spec)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn a pod process");
        std::fs::write(cgroup.join("cgroup.procs"), child.id().to_string())
            .expect("move into the pod cgroup");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut c = ClientProc::new(child, stdout);
        c.send_line("go");
        c
    }

    /// A service on this host's loopback made reachable from the nodes, as the `kubernetes` Service
    /// makes the API server reachable from pods: a TCP forwarder on the bridge's address.
    pub fn expose(&self, target: std::net::SocketAddr) -> std::net::SocketAddr {
        let listener = std::net::TcpListener::bind((self.bridge_ip, 0)).expect("bind on the lab bridge");
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let Ok(upstream) = std::net::TcpStream::connect(target) else { continue };
                let (mut a, mut b) = (conn.try_clone().unwrap(), upstream.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut a, &mut b);
                    let _ = b.shutdown(std::net::Shutdown::Write);
                });
                let (mut a, mut b) = (upstream, conn);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut a, &mut b);
                    let _ = b.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        addr
    }

    /// kube-proxy's rule for a ClusterIP on `node`: connections to `vip:port` go to `to`.
    pub fn cluster_ip(&self, node: &str, vip: Ipv4Addr, port: u16, to: std::net::SocketAddr) {
        in_ns(
            &self.node(node).netns,
            &[
                "iptables",
                "-t",
                "nat",
                "-A",
                "OUTPUT",
                "-d",
                &vip.to_string(),
                "-p",
                "tcp",
                "--dport",
                &port.to_string(),
                "-j",
                "DNAT",
                "--to-destination",
                &to.to_string(),
            ],
        );
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for n in &self.nodes {
            let _ = Command::new("ip").args(["netns", "del", &n.netns]).status();
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).status();
        remove_cgroups(&self.root_cgroup);
    }
}

/// Removes a cgroup tree, deepest first (processes have exited by now or are killed first).
fn remove_cgroups(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroups(&e.path());
            }
        }
    }
    if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
            // SAFETY: sending a signal to a process id.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    for _ in 0..50 {
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
