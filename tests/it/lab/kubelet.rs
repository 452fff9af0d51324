//! The lab's kubelet: runs on the lab's nodes what the API server says should run there, and
//! reports back through the same REST API (the production kube-rs client, as a kubelet would).
//!
//! - a DaemonSet's pod on every node: the real `egressor agent` from the DaemonSet's own container
//!   args, in the node's network namespace, with exactly the capabilities its securityContext
//!   adds (setpriv drops the rest), its host paths mapped to the node's (the cgroup hostPath is the
//!   node's cgroup subtree, the spool a directory of the node), the Secret volume's token written
//!   to a file, NODE_NAME from the downward API, and a kubeconfig for its service account;
//! - workload pods: created through the API (the server assigns the UID), then given a
//!   kubelet-shaped cgroup with that UID, an IP on their node and a Ready status.
//!
//! One lab-only change to the agent's arguments: `--interval 1s`, so tests wait seconds, not tens.

use super::nodes::{Layout, Nodes};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A pod the lab runs.
pub struct LabPod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: String,
    pub ip: Ipv4Addr,
    pub cgroup: PathBuf,
}

pub struct Kubelet {
    rt: tokio::runtime::Runtime,
    client: kube::Client,
    agents: Vec<Child>,
}

/// A kubeconfig for `token` at `server`, context `lab`.
pub fn write_kubeconfig(path: &Path, server: &str, token: &str) {
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: lab\nclusters:\n- name: lab\n  cluster:\n    server: {server}\n\
             users:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: lab\n  context:\n    cluster: lab\n    user: u\n"
        ),
    )
    .unwrap();
}

impl Kubelet {
    /// A kubelet acting with `kubeconfig`'s credentials.
    pub fn new(kubeconfig: &Path) -> Kubelet {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let client = rt.block_on(async {
            let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
            let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap();
            kube::Client::try_from(cfg).unwrap()
        });
        Kubelet { rt, client, agents: Vec::new() }
    }

    /// Creates pod `ns/name` on `node` through the API, then runs it: cgroup, a new IP, Ready status.
    pub fn run_pod(
        &self,
        lab: &Nodes,
        node: &str,
        ns: &str,
        name: &str,
        owner: Option<(&str, &str)>,
        layout: Layout,
    ) -> LabPod {
        let ip = lab.pod_ip(node);
        self.run_pod_at(lab, node, ns, name, owner, layout, ip)
    }

    /// [`Kubelet::run_pod`] with an IP already on the node (a deleted pod's, reused).
    #[allow(clippy::too_many_arguments)]
    pub fn run_pod_at(
        &self,
        lab: &Nodes,
        node: &str,
        ns: &str,
        name: &str,
        owner: Option<(&str, &str)>,
        layout: Layout,
        ip: Ipv4Addr,
    ) -> LabPod {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": name, "namespace": ns },
            "spec": { "nodeName": node, "containers": [{ "name": "main", "image": "lab" }] }
        }))
        .unwrap();
        if let Some((kind, owner_name)) = owner {
            let (api_version, hash) = match kind {
                "ReplicaSet" | "DaemonSet" | "StatefulSet" => ("apps/v1", owner_name.rsplit('-').next()),
                _ => ("batch/v1", None),
            };
            pod.metadata.owner_references = Some(vec![
                serde_json::from_value(serde_json::json!({
                    "apiVersion": api_version, "kind": kind, "name": owner_name,
                    "uid": format!("owner-{owner_name}"), "controller": true
                }))
                .unwrap(),
            ]);
            if kind == "ReplicaSet" {
                pod.metadata.labels = hash.map(|h| [("pod-template-hash".to_string(), h.to_string())].into());
            }
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let created = self.rt.block_on(api.create(&PostParams::default(), &pod)).unwrap();
        let uid = created.metadata.uid.clone().expect("the API server assigns a UID");
        let cgroup = lab.pod_cgroup(node, &uid, layout);
        self.set_running(ns, name, ip);
        LabPod { namespace: ns.into(), name: name.into(), uid, node: node.into(), ip, cgroup }
    }

    /// Deletes a pod through the API (its processes are the caller's to stop first).
    pub fn delete_pod(&self, p: &LabPod) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &p.namespace);
        self.rt.block_on(api.delete(&p.name, &DeleteParams::default())).unwrap();
    }

    fn set_running(&self, ns: &str, name: &str, ip: Ipv4Addr) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let status = serde_json::json!({ "status": {
            "phase": "Running", "podIP": ip.to_string(), "podIPs": [{ "ip": ip.to_string() }],
            "conditions": [{ "type": "Ready", "status": "True" }]
        }});
        self.rt.block_on(api.patch(name, &PatchParams::default(), &Patch::Merge(&status))).unwrap();
    }

    /// Runs the DaemonSet `ns/name` on the nodes named in `only`: a pod object per node, the agent
    /// process, Ready once its /healthz answers. `agent_kubeconfig` is the service account's.
    pub fn run_daemonset(
        &mut self,
        lab: &Nodes,
        ns: &str,
        name: &str,
        agent_kubeconfig: &Path,
        egressor: &Path,
        only: &[&str],
    ) -> Vec<LabPod> {
        let ds_api: Api<DaemonSet> = Api::namespaced(self.client.clone(), ns);
        let ds = self.rt.block_on(ds_api.get(name)).unwrap();
        let template = ds.spec.unwrap().template;
        let labels = template.metadata.and_then(|m| m.labels).unwrap_or_default();
        let spec = template.spec.unwrap();
        let container = spec.containers[0].clone();
        let token = self.secret_token(ns, &spec);
        let mut pods = Vec::new();
        for node in lab.nodes.iter().filter(|n| only.contains(&n.name.as_str())) {
            let pod_name = format!("{name}-{}", node.name);
            let pod =
                self.run_pod(lab, &node.name, ns, &pod_name, Some(("DaemonSet", name)), Layout::Systemd);
            // The template's labels (what `egressor pull` finds agents by); not ready until the
            // agent answers: the pod stays Pending meanwhile.
            let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
            let patch = serde_json::json!({ "metadata": { "labels": labels } });
            self.rt.block_on(api.patch(&pod_name, &PatchParams::default(), &Patch::Merge(&patch))).unwrap();
            self.set_pending(ns, &pod_name);
            std::fs::write(node.dir.join("token"), &token).unwrap();
            let args = lab_args(container.args.clone().unwrap_or_default(), &node.cgroup, &node.dir);
            let caps = container
                .security_context
                .as_ref()
                .and_then(|s| s.capabilities.as_ref())
                .and_then(|c| c.add.clone())
                .unwrap_or_default();
            let child =
                spawn_agent(&node.netns, egressor, &args, &caps, &node.name, agent_kubeconfig, &node.dir);
            self.agents.push(child);
            wait_healthy(pod.ip, &node.dir.join("agent.log"));
            self.set_running(ns, &pod_name, pod.ip);
            pods.push(pod);
        }
        pods
    }

    fn set_pending(&self, ns: &str, name: &str) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let status = serde_json::json!({ "status": { "phase": "Pending", "conditions": [{ "type": "Ready", "status": "False" }] } });
        self.rt.block_on(api.patch(name, &PatchParams::default(), &Patch::Merge(&status))).unwrap();
    }

    /// The token in the Secret the pod spec mounts.
    fn secret_token(&self, ns: &str, spec: &k8s_openapi::api::core::v1::PodSpec) -> String {
        let secret_name = spec
            .volumes
            .iter()
            .flatten()
            .find_map(|v| v.secret.as_ref()?.secret_name.clone())
            .expect("the agent mounts its token Secret");
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let s = self.rt.block_on(api.get(&secret_name)).unwrap();
        String::from_utf8(s.data.unwrap()["token"].0.clone()).unwrap()
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        for c in &mut self.agents {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The DaemonSet's container paths as this node's directories (what the runtime's bind mounts do).
fn lab_args(args: Vec<String>, cgroup: &Path, dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = args
        .into_iter()
        .map(|a| match a.as_str() {
            "/host/sys/fs/cgroup" => cgroup.display().to_string(),
            "/var/lib/egressor/spool" => dir.join("spool").display().to_string(),
            "/etc/egressor/token" => dir.join("token").display().to_string(),
            _ => a,
        })
        .collect();
    out.extend(["--interval".to_string(), "1s".to_string()]);
    out
}

/// The agent in `netns`, with only the capabilities `caps` (e.g. BPF, NET_ADMIN, PERFMON).
fn spawn_agent(
    netns: &str,
    egressor: &Path,
    args: &[String],
    caps: &[String],
    node: &str,
    kubeconfig: &Path,
    dir: &Path,
) -> Child {
    let set: Vec<String> = caps.iter().map(|c| format!("+{}", c.to_lowercase())).collect();
    let caps_arg = format!("-all,{}", set.join(","));
    let log = std::fs::File::create(dir.join("agent.log")).unwrap();
    // nsenter, not `ip netns exec`: the latter remounts /sys, which hides the cgroup2 mount the
    // agent names cgroups from (a container sees its host cgroup mount the same way: a bind mount).
    Command::new("nsenter")
        .arg(format!("--net=/run/netns/{netns}"))
        .arg("setpriv")
        .arg(format!("--inh-caps={caps_arg}"))
        .arg(format!("--ambient-caps={caps_arg}"))
        .arg(format!("--bounding-set={caps_arg}"))
        .arg(egressor)
        .args(args)
        .env("NODE_NAME", node)
        .env("KUBECONFIG", kubeconfig)
        .env("EGRESSOR_LOG", "egressor=info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start the agent")
}

fn wait_healthy(ip: Ipv4Addr, log: &Path) {
    let client =
        reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(1)).build().unwrap();
    for _ in 0..300 {
        if client.get(format!("http://{ip}:9464/healthz")).send().is_ok_and(|r| r.status().is_success()) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(log).unwrap_or_default();
    panic!("the lab agent at {ip}:9464 never became healthy; its log:\n{log}");
}
