//! Kubernetes: `deploy`, `undeploy`, `status`, a discovered `pull` and enrichment, through the
//! production kube-rs client and an ordinary kubeconfig, against the lab (tests/it/lab): a test API
//! server speaking the Kubernetes REST API, nodes that are network namespaces running real agents,
//! pods that are processes in kubelet-shaped cgroups. Every object `deploy` applies, and its
//! `--dry-run` output, is validated against the official schemas (`kubernetes-validate`).

use crate::TestContext;
use std::path::Path;
use std::process::Output;

/// The Kubernetes versions the README says egressor supports.
pub const SUPPORTED: &[&str] = &["1.33.0", "1.34.0", "1.35.0", "1.36.0", "1.37.0"];

/// Validates a YAML/JSON stream with the official schemas of `version`, strictly (unknown fields
/// are errors). Fails loudly when the validator is missing: `cargo xtask deps` installs it.
pub fn kubernetes_validate(file: &Path, version: &str) {
    let out = std::process::Command::new("kubernetes-validate")
        .args(["--strict", "--kubernetes-version", version])
        .arg(file)
        .output()
        .expect("kubernetes-validate is not installed: run `cargo xtask deps` (pip kubernetes-validate)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "kubernetes-validate {version} rejected {}:\n{text}", file.display());
    assert!(!text.contains("ERROR") && !text.contains("WARN"), "kubernetes-validate {version}:\n{text}");
}

/// `egressor ARGS` with `KUBECONFIG`.
pub fn kube(t: &TestContext, kubeconfig: &Path, args: &[&str]) -> Output {
    t.cmd(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("run egressor")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn deploy_dry_run_is_valid_for_every_supported_kubernetes_version() {
    let t = TestContext::new();
    for extra in [
        &[][..],
        &[
            "--image",
            "registry.example/egressor:dev",
            "--node-selector",
            "kubernetes.io/os=linux",
            "--namespace",
            "observability",
        ][..],
    ] {
        let mut args = vec!["deploy", "--dry-run"];
        args.extend_from_slice(extra);
        // No kubeconfig at all: a dry run needs no cluster.
        let out = kube(&t, &t.path("no-such-kubeconfig"), &args);
        assert!(out.status.success(), "{}", crate::show(&out));
        let yaml = String::from_utf8(out.stdout).unwrap();
        for kind in
            ["Namespace", "ServiceAccount", "Secret", "ClusterRole", "ClusterRoleBinding", "DaemonSet"]
        {
            assert!(yaml.contains(&format!("kind: {kind}\n")), "{kind} missing:\n{yaml}");
        }
        assert!(!yaml.contains("privileged: true"), "{yaml}");
        let file = t.path("dry-run.yaml");
        std::fs::write(&file, &yaml).unwrap();
        for v in SUPPORTED {
            kubernetes_validate(&file, v);
        }
    }
}

#[test]
fn kubeconfig_problems_are_one_clear_message_each() {
    let t = TestContext::new();
    let out = kube(&t, &t.path("missing"), &["status"]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(e.contains("no kubeconfig") && e.contains("KUBECONFIG") && e.contains("missing"), "{e}");

    // A kubeconfig whose server refuses connections (a port nothing listens on).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let kc = t.path("kubeconfig");
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: lab\nclusters:\n- name: lab\n  cluster:\n    server: http://127.0.0.1:{port}\n\
             users:\n- name: u\n  user:\n    token: x\ncontexts:\n- name: lab\n  context:\n    cluster: lab\n    user: u\n"
        ),
    )
    .unwrap();
    let out = kube(&t, &kc, &["status", "--context", "prod"]);
    let e = stderr(&out);
    assert!(e.contains("context `prod` is not in the kubeconfig") && e.contains("it has: lab"), "{e}");
    let out = kube(&t, &kc, &["pull"]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.contains("cannot reach the Kubernetes API at http://127.0.0.1:") && e.contains("kubectl get nodes"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// deploy / undeploy / errors against the lab API server
// ---------------------------------------------------------------------------------------------

use crate::lab::api::{ADMIN_TOKEN, ApiServer};
use serde_json::Value;

/// The kinds `deploy` writes, as (group, resource).
const DEPLOYED: &[(&str, &str)] = &[
    ("", "namespaces"),
    ("", "serviceaccounts"),
    ("", "secrets"),
    ("rbac.authorization.k8s.io", "clusterroles"),
    ("rbac.authorization.k8s.io", "clusterrolebindings"),
    ("apps", "daemonsets"),
];

fn ours(o: &Value) -> bool {
    o["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "egressor"
}

fn json_of(out: &Output) -> Value {
    assert!(out.status.success(), "{}", crate::show(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn changes(report: &Value) -> Vec<String> {
    report["objects"].as_array().unwrap().iter().map(|o| o["change"].as_str().unwrap().to_string()).collect()
}

/// Validates every body `deploy` sent with server-side apply, for every supported version.
fn validate_applied(api: &ApiServer, dir: &Path) {
    let applied: Vec<String> = api
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.content_type.as_deref() == Some("application/apply-patch+yaml"))
        .map(|r| r.body)
        .collect();
    assert_eq!(applied.len(), 6, "one apply per object");
    let file = dir.join("applied.yaml");
    std::fs::write(&file, applied.join("\n---\n")).unwrap();
    for v in SUPPORTED {
        kubernetes_validate(&file, v);
    }
}

#[test]
fn deploy_applies_valid_objects_is_idempotent_and_undeploy_removes_exactly_them() {
    let api = ApiServer::start();
    let t = TestContext::new();
    let kc = t.path("kubeconfig");
    api.write_kubeconfig(&kc, ADMIN_TOKEN, "lab");

    let first = json_of(&kube(&t, &kc, &["deploy", "--output", "json"]));
    assert_eq!(changes(&first), ["created"; 6], "{first}");
    validate_applied(&api, t.dir.path());
    for (group, resource) in DEPLOYED {
        let objs: Vec<Value> = api.objects(group, resource).into_iter().filter(ours).collect();
        assert_eq!(objs.len(), 1, "{resource}: {objs:?}");
        let managers = objs[0]["metadata"]["managedFields"].to_string();
        assert!(managers.contains("\"egressor\""), "{resource} managed by egressor: {managers}");
    }
    let secret = api.get("", "secrets", "egressor", "egressor-agent-token").unwrap();
    let token = secret["data"]["token"].as_str().unwrap().to_string();

    // Deploying again changes nothing: same objects, same resourceVersion, same token.
    let rv = api.resource_version();
    let second = json_of(&kube(&t, &kc, &["deploy", "--output", "json"]));
    assert_eq!(changes(&second), ["unchanged"; 6], "{second}");
    assert_eq!(api.resource_version(), rv, "a second deploy wrote nothing");
    assert_eq!(
        api.get("", "secrets", "egressor", "egressor-agent-token").unwrap()["data"]["token"],
        token.as_str()
    );

    // Someone changes the image by hand: deploy says so instead of overwriting; --force takes it back.
    let mut ds = api.get("apps", "daemonsets", "egressor", "egressor-agent").unwrap();
    ds["spec"]["template"]["spec"]["containers"][0]["image"] = "hand-edited:1".into();
    ds["metadata"]["managedFields"].as_array_mut().unwrap().push(serde_json::json!({
        "manager": "kubectl-edit", "operation": "Update", "apiVersion": "apps/v1", "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {}}}}}
    }));
    api.put(&ds);
    let out = kube(&t, &kc, &["deploy"]);
    let e = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a hand edit of a managed field is a conflict: {}",
        crate::show(&out)
    );
    assert!(e.contains("409") && e.contains("--force"), "{e}");
    let forced = json_of(&kube(&t, &kc, &["deploy", "--force", "--output", "json"]));
    assert_eq!(changes(&forced)[5], "configured", "{forced}");
    let image = api.get("apps", "daemonsets", "egressor", "egressor-agent").unwrap()["spec"]["template"]["spec"]
        ["containers"][0]["image"]
        .clone();
    assert_ne!(image, "hand-edited:1", "--force took the image back");

    let removed = json_of(&kube(&t, &kc, &["undeploy", "--output", "json"]));
    assert_eq!(changes(&removed), ["deleted"; 6], "{removed}");
    for (group, resource) in DEPLOYED {
        let left: Vec<Value> = api.objects(group, resource).into_iter().filter(ours).collect();
        assert!(left.is_empty(), "undeploy left {resource}: {left:?}");
    }
    let again = json_of(&kube(&t, &kc, &["undeploy", "--output", "json"]));
    assert_eq!(changes(&again), ["absent"; 6], "{again}");
}

#[test]
fn a_namespace_egressor_did_not_create_is_used_but_never_labelled_or_removed() {
    let api = ApiServer::start();
    let t = TestContext::new();
    let kc = t.path("kubeconfig");
    api.write_kubeconfig(&kc, ADMIN_TOKEN, "lab");
    api.put(
        &serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "observability"}}),
    );
    let report = json_of(&kube(&t, &kc, &["deploy", "-n", "observability", "--output", "json"]));
    assert_eq!(changes(&report)[0], "adopted", "{report}");
    let removed = json_of(&kube(&t, &kc, &["undeploy", "-n", "observability", "--output", "json"]));
    assert_eq!(changes(&removed)[5], "notours", "{removed}");
    assert!(api.get("", "namespaces", "", "observability").is_some(), "the user's namespace stays");
    assert!(api.get("apps", "daemonsets", "observability", "egressor-agent").is_none());
}

#[test]
fn refusals_by_the_api_server_say_what_to_do() {
    let api = ApiServer::start();
    let t = TestContext::new();
    // 401: a token the server does not know.
    let bad = t.path("bad");
    api.write_kubeconfig(&bad, "expired-token", "lab");
    let e = stderr(&kube(&t, &bad, &["deploy"]));
    assert!(e.contains("refused the credentials (401") && e.contains("kubectl get nodes"), "{e}");

    // 403: alice may read namespaces and secrets, and nothing else.
    api.add_user("alice-token", "alice");
    api.allow("alice", "get", "", "namespaces");
    api.allow("alice", "get", "", "secrets");
    let alice = t.path("alice");
    api.write_kubeconfig(&alice, "alice-token", "lab");
    let out = kube(&t, &alice, &["deploy"]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(e.contains("refused by RBAC: user alice cannot patch namespaces in namespace egressor"), "{e}");
    assert!(
        e.contains("kind: ClusterRole") && e.contains("resources: [\"daemonsets\"]"),
        "the whole role: {e}"
    );
    assert!(e.contains("kubectl create clusterrolebinding egressor-deploy-alice --clusterrole=egressor-deploy --user=alice"), "{e}");

    // Nothing deployed: pull and status say to deploy.
    let kc = t.path("kubeconfig");
    api.write_kubeconfig(&kc, ADMIN_TOKEN, "lab");
    for cmd in ["pull", "status"] {
        let e = stderr(&kube(&t, &kc, &[cmd]));
        assert!(
            e.contains(
                "egressor is not deployed in namespace `egressor` of context `lab`: run `egressor deploy`"
            ),
            "{cmd}: {e}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The whole path: deploy -> agents on netns nodes -> real traffic -> discovered pull -> cost
// ---------------------------------------------------------------------------------------------

use crate::lab::kubelet::{Kubelet, LabPod, write_kubeconfig};
use crate::lab::nodes::{Layout, Nodes};
use std::net::{Ipv4Addr, SocketAddr};

const AGENT_USER: &str = "system:serviceaccount:egressor:egressor-agent";
const AGENT_TOKEN: &str = "agent-sa-token";

/// A cluster in the lab: API server, two nodes in two zones, egressor deployed and its agents
/// running (on the nodes in `agents_on`), and the shop's objects: Deployments checkout and
/// payments with their ReplicaSets, Service payments with a ClusterIP.
struct Shop {
    api: ApiServer,
    lab: Nodes,
    kubelet: Kubelet,
    t: TestContext,
    kubeconfig: std::path::PathBuf,
}

const PAYMENTS_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 20);

impl Shop {
    fn start(agents_on: &[&str]) -> Shop {
        let api = ApiServer::start();
        let t = TestContext::new();
        let kubeconfig = t.path("kubeconfig");
        api.write_kubeconfig(&kubeconfig, ADMIN_TOKEN, "lab");
        let lab = Nodes::new(&[("node-1", "us-east-1a"), ("node-2", "us-east-1b")]);
        for n in &lab.nodes {
            api.put(&serde_json::json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": n.name, "labels": {
                    "topology.kubernetes.io/zone": n.zone, "topology.kubernetes.io/region": "us-east-1"}},
                "status": {"addresses": [{"type": "InternalIP", "address": n.ip.to_string()}]}
            }));
        }
        api.put(&serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}));
        for (deploy, hash) in [("checkout", "5d8f9c"), ("payments", "7c6b4d")] {
            api.put(&serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": deploy, "namespace": "shop"},
                "spec": {"selector": {"matchLabels": {"app": deploy}}, "template": {"metadata": {"labels": {"app": deploy}}, "spec": {"containers": [{"name": "main", "image": "shop"}]}}}}));
            api.put(&serde_json::json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": format!("{deploy}-{hash}"), "namespace": "shop",
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": deploy, "uid": format!("uid-{deploy}"), "controller": true}]},
                "spec": {"selector": {"matchLabels": {"app": deploy}}}}));
        }
        // deploy, as a user would; then the lab's kubelet runs the DaemonSet with the agent's RBAC.
        let out = kube(&t, &kubeconfig, &["deploy"]);
        assert!(out.status.success(), "{}", crate::show(&out));
        grant_cluster_role(&api, "egressor-agent", AGENT_USER);
        api.add_user(AGENT_TOKEN, AGENT_USER);
        // Agents reach the API server from their nodes' namespaces, through the lab's `kubernetes` Service.
        let api_addr: SocketAddr = api.url().trim_start_matches("http://").parse().unwrap();
        let agent_kc = t.path("agent-kubeconfig");
        write_kubeconfig(&agent_kc, &format!("http://{}", lab.expose(api_addr)), AGENT_TOKEN);
        let mut kubelet = Kubelet::new(&kubeconfig);
        let egressor = std::path::PathBuf::from(env!("CARGO_BIN_EXE_egressor"));
        kubelet.run_daemonset(&lab, "egressor", "egressor-agent", &agent_kc, &egressor, agents_on);
        Shop { api, lab, kubelet, t, kubeconfig }
    }

    fn payments_pod(&self, name: &str, layout: Layout) -> LabPod {
        let p = self.kubelet.run_pod(
            &self.lab,
            "node-2",
            "shop",
            name,
            Some(("ReplicaSet", "payments-7c6b4d")),
            layout,
        );
        self.api.put(&serde_json::json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "payments", "namespace": "shop"},
            "spec": {"clusterIP": PAYMENTS_VIP.to_string(), "clusterIPs": [PAYMENTS_VIP.to_string()], "ports": [{"port": 80, "targetPort": 8080}]}}));
        self.api.put(&serde_json::json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "payments-abcde", "namespace": "shop", "labels": {"kubernetes.io/service-name": "payments"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [p.ip.to_string()], "nodeName": "node-2",
                "targetRef": {"kind": "Pod", "namespace": "shop", "name": name, "uid": p.uid}}],
            "ports": [{"port": 8080, "protocol": "TCP"}]}));
        // kube-proxy on node 1: the ClusterIP leads to the endpoint.
        self.lab.cluster_ip("node-1", PAYMENTS_VIP, 80, SocketAddr::new(p.ip.into(), 8080));
        p
    }

    /// `from` sends `n` bytes to payments through its ClusterIP; returns the bytes the server
    /// received and the TCP retransmissions of the sender.
    fn send(&self, from: &LabPod, to: &LabPod, n: u64) -> (u64, u64) {
        self.send_to(from, to, SocketAddr::new(PAYMENTS_VIP.into(), 80), n)
    }

    /// `from` sends `n` bytes to `to`'s server (port 8080) at `addr` (its pod IP or a ClusterIP).
    fn send_to(&self, from: &LabPod, to: &LabPod, addr: SocketAddr, n: u64) -> (u64, u64) {
        let mut server = self.lab.spawn_in_pod(&to.node, &to.cgroup, &format!("tcp-serve {}:8080 0", to.ip));
        server.expect_line("PORT");
        let mut client =
            self.lab.spawn_in_pod(&from.node, &from.cgroup, &format!("tcp-send-from {} {addr} {n}", from.ip));
        client.expect_line("LOCAL");
        let retrans: u64 = client.expect_line("RETRANS").parse().unwrap();
        client.wait_ok();
        let got: u64 = server.expect_line("RECEIVED").parse().unwrap();
        server.wait_ok();
        (got, retrans)
    }

    fn egressor(&self, args: &[&str]) -> Output {
        let now = egressor::model::Timestamp::now().to_string();
        self.t.cmd(args).env("KUBECONFIG", &self.kubeconfig).env("EGRESSOR_NOW", now).output().unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        json_of(&self.egressor(args))
    }

    /// The agents' logs, for failure messages.
    fn agent_logs(&self) -> String {
        self.lab
            .nodes
            .iter()
            .map(|n| {
                format!(
                    "--- {}:\n{}",
                    n.name,
                    std::fs::read_to_string(n.dir.join("agent.log")).unwrap_or_default()
                )
            })
            .collect()
    }
}

/// The lab's RBAC: what a ClusterRole `deploy` applied allows, granted to `user`.
fn grant_cluster_role(api: &ApiServer, role: &str, user: &str) {
    let role = api
        .get("rbac.authorization.k8s.io", "clusterroles", "", role)
        .expect("deploy applied the agent's ClusterRole");
    for rule in role["rules"].as_array().unwrap() {
        for group in rule["apiGroups"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                for verb in rule["verbs"].as_array().unwrap() {
                    api.allow(
                        user,
                        verb.as_str().unwrap(),
                        group.as_str().unwrap(),
                        resource.as_str().unwrap(),
                    );
                }
            }
        }
    }
}

/// Waits until the agents have closed the windows holding the transfer, then pulls.
fn pull_after_windows(shop: &Shop) -> Value {
    std::thread::sleep(std::time::Duration::from_secs(3));
    shop.json(&["pull", "--output", "json"])
}

fn line<'a>(cost: &'a Value, key: &str) -> &'a Value {
    cost["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["key"] == key)
        .unwrap_or_else(|| panic!("no cost line {key} in {cost:#}"))
}

#[test]
fn checkout_to_payments_is_named_cross_zone_and_billed_once_with_agents_on_both_nodes() {
    checkout_to_payments(&["node-1", "node-2"]);
}

#[test]
fn checkout_to_payments_is_named_and_billed_with_one_agent() {
    checkout_to_payments(&["node-1"]);
}

fn checkout_to_payments(agents_on: &[&str]) {
    let shop = Shop::start(agents_on);
    let checkout = shop.kubelet.run_pod(
        &shop.lab,
        "node-1",
        "shop",
        "checkout-5d8f9c-x7k2p",
        Some(("ReplicaSet", "checkout-5d8f9c")),
        Layout::Systemd,
    );
    let payments = shop.payments_pod("payments-7c6b4d-q9z4m", Layout::Cgroupfs);
    let n: u64 = 4_000_000;
    let (got, retrans) = shop.send(&checkout, &payments, n);
    assert_eq!(got, n);

    let pulled = pull_after_windows(&shop);
    assert_eq!(pulled["agents"].as_array().unwrap().len(), agents_on.len(), "{pulled}");
    assert!(pulled["failed"].as_array().unwrap().is_empty(), "{pulled}");

    // status: every agent ready, of this version, pulled just now, nothing lost.
    let status = shop.json(&["status", "--output", "json"]);
    let agents = status["agents"].as_array().unwrap();
    assert_eq!(agents.len(), agents_on.len(), "{status:#}");
    for a in agents {
        assert_eq!(a["ready"], true, "{a}");
        assert_eq!(a["info"]["version"], env!("CARGO_PKG_VERSION"), "{a}");
        assert!(a["info"]["last_ack"].is_string(), "the pull acknowledged: {a}");
        assert_eq!(a["info"]["loss"]["sockets_evicted"], 0, "{a}");
        assert!(a["problem"].is_null(), "{a}");
    }

    let cost = shop.json(&["cost", "--since", "1h", "--by", "workload", "--output", "json"]);
    eprintln!("{cost:#}");
    // N bytes of payload, plus IP/TCP headers both ways (< 8%) and any retransmission; counted once
    // although both agents saw the connection.
    let within = |b: u64| b >= n && b <= n + n / 12 + retrans;
    let line = line(&cost, "shop/Deployment/checkout");
    let cross = &line["classes"]["cross-zone"];
    assert!(within(cross["bytes"].as_u64().unwrap()), "cross-zone bytes of checkout: {line:#}");
    assert!(cross["cost"].as_str().unwrap().parse::<f64>().unwrap() > 0.0, "{line:#}");
    let total = cost["totals"]["bytes"].as_u64().unwrap();
    assert!(within(total), "every byte once in the bill: {total} for {n}\n{cost:#}");

    // The API-server load the agents add: one list and one watch of their own node's pods each.
    let agent_requests: Vec<_> =
        shop.api.requests().into_iter().filter(|r| r.user.as_deref() == Some(AGENT_USER)).collect();
    for r in &agent_requests {
        assert_eq!(r.path, "/api/v1/pods", "agents read nothing but pods: {r:?}");
        let selector = r.param("fieldSelector").unwrap_or_default();
        assert!(selector.starts_with("spec.nodeName=node-"), "only their own node's pods: {r:?}");
    }
    let (lists, watches) = (
        agent_requests.iter().filter(|r| !r.is_watch()).count(),
        agent_requests.iter().filter(|r| r.is_watch()).count(),
    );
    eprintln!("API-server load of {} agent(s): {lists} lists, {watches} watches", agents_on.len());
    assert!(
        lists >= agents_on.len() && watches >= agents_on.len(),
        "every agent watches its pods:\n{}",
        shop.agent_logs()
    );
    assert!(
        lists <= 2 * agents_on.len() && watches <= 3 * agents_on.len(),
        "{lists} lists, {watches} watches"
    );

    let graph = shop.json(&["graph", "--since", "1h", "--level", "service", "--output", "json"]);
    let edges = graph["edges"].to_string();
    assert!(edges.contains("checkout") && edges.contains("payments"), "{graph:#}");
}

/// Flow records of the workspace.
fn flows(shop: &Shop) -> Vec<Value> {
    let out = shop.egressor(&["flows", "--since", "1h", "--limit", "100000", "--output", "json"]);
    assert!(out.status.success(), "{}", crate::show(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["records"].as_array().unwrap().clone()
}

/// Bytes sent by records whose local end matches `local` and remote end matches `remote`.
fn sent(flows: &[Value], local: impl Fn(&Value) -> bool, remote: impl Fn(&Value) -> bool) -> u64 {
    flows
        .iter()
        .filter(|f| local(&f["local"]) && remote(&f["remote"]))
        .map(|f| f["bytes_out"].as_u64().unwrap())
        .sum()
}

#[test]
fn a_reused_ip_and_a_pod_that_lived_between_pulls_are_named_right() {
    let shop = Shop::start(&["node-1", "node-2"]);
    let checkout = shop.kubelet.run_pod(
        &shop.lab,
        "node-1",
        "shop",
        "checkout-5d8f9c-x7k2p",
        Some(("ReplicaSet", "checkout-5d8f9c")),
        Layout::Systemd,
    );
    let payments = shop.payments_pod("payments-7c6b4d-old01", Layout::Cgroupfs);
    shop.send(&checkout, &payments, 1_000_000);
    std::thread::sleep(std::time::Duration::from_millis(1500));

    // payments' pod goes; a pod of another Deployment gets its IP.
    shop.kubelet.delete_pod(&payments);
    shop.api.put(&serde_json::json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "cart-6f7a8b", "namespace": "shop",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "cart", "uid": "uid-cart", "controller": true}]}}));
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let cart = shop.kubelet.run_pod_at(
        &shop.lab,
        "node-2",
        "shop",
        "cart-6f7a8b-new01",
        Some(("ReplicaSet", "cart-6f7a8b")),
        Layout::Systemd,
        payments.ip,
    );
    let cart_addr = SocketAddr::new(cart.ip.into(), 8080);
    shop.send_to(&checkout, &cart, cart_addr, 2_000_000);

    // A Job's pod lives a few seconds on node 1 and is gone before the pull.
    shop.api.put(&serde_json::json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "report-29012345", "namespace": "shop",
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "report", "uid": "uid-report", "controller": true}]}}));
    let job = shop.kubelet.run_pod(
        &shop.lab,
        "node-1",
        "shop",
        "report-29012345-abcde",
        Some(("Job", "report-29012345")),
        Layout::Cgroupfs,
    );
    shop.send_to(&job, &cart, cart_addr, 500_000);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    shop.kubelet.delete_pod(&job);

    let pulled = pull_after_windows(&shop);
    assert!(pulled["failed"].as_array().unwrap().is_empty(), "{pulled}");
    let f = flows(&shop);
    let workload = |name: &'static str| move |e: &Value| e["workload_name"] == name;
    let by_checkout = |e: &Value| e["workload_name"] == "checkout";
    let to_payments = sent(&f, by_checkout, workload("payments"));
    let to_cart = sent(&f, by_checkout, workload("cart"));
    assert!(
        (1_000_000..1_100_000).contains(&to_payments),
        "checkout -> payments before the IP moved: {to_payments}"
    );
    assert!((2_000_000..2_200_000).contains(&to_cart), "checkout -> cart after: {to_cart}");
    let from_job =
        sent(&f, |e| e["workload_kind"] == "CronJob" && e["workload_name"] == "report", workload("cart"));
    assert!(
        (500_000..560_000).contains(&from_job),
        "the Job pod, gone before the pull, is named: {from_job}\n{f:#?}\n{}",
        shop.agent_logs()
    );
}

#[test]
fn an_agent_not_ready_is_named_and_the_others_are_pulled() {
    let shop = Shop::start(&["node-1"]);
    // node-2's agent pod exists but its container is still being created.
    shop.api.put(&serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "egressor-agent-node-2", "namespace": "egressor", "labels": {"app.kubernetes.io/name": "egressor-agent"}},
        "spec": {"nodeName": "node-2", "containers": [{"name": "agent", "image": "egressor"}]},
        "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "agent", "image": "egressor", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}}}]}}));
    let out = shop.egressor(&["pull", "--output", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", crate::show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["agents"].as_array().unwrap().len(), 1, "{report}");
    let failed = report["failed"].to_string();
    assert!(
        failed.contains("node node-2") && failed.contains("not ready yet (Pending, ContainerCreating)"),
        "{failed}"
    );
    let out = shop.egressor(&["status"]);
    assert_eq!(out.status.code(), Some(3), "{}", crate::show(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("node-1") && table.contains("node-2") && table.contains("ContainerCreating"),
        "{table}"
    );
}
