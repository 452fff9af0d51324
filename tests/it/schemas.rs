//! Every JSON document egressor prints follows its JSON Schema in docs/schemas/ (the promise is in
//! docs/schemas/README.md): each command runs for real and its output is validated; every
//! schema file is a valid, strict schema, named after the version it describes, tied to the
//! constant the code prints and exercised by a test here; the enums of the schemas are the
//! code's; and documents that break a schema are rejected, so these checks can fail.

use crate::TestContext;
use crate::cluster::kube;
use crate::lab::api::{ADMIN_TOKEN, ApiServer};
use crate::lab::claude::{ClaudeServer, Reply};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};

/// Every version the code prints (the constants next to the types they version).
const VERSIONS: &[&str] = &[
    egressor::demo::DEMO_SCHEMA,
    egressor::import::IMPORT_SCHEMA,
    egressor::views::flows::FLOWS_SCHEMA,
    egressor::store::WORKSPACE_INFO_SCHEMA,
    egressor::store::PRUNE_SCHEMA,
    egressor::engines::cost::COST_SCHEMA,
    egressor::engines::graph::GRAPH_SCHEMA,
    egressor::views::reports::TOP_SCHEMA,
    egressor::views::reports::PRICES_SCHEMA,
    egressor::engines::anomaly::ANOMALIES_SCHEMA,
    egressor::views::anomalies::BASELINE_SCHEMA,
    egressor::engines::explain::SCHEMA,
    egressor::commands::ask::SCHEMA,
    egressor::engines::reconcile::RECONCILE_SCHEMA,
    egressor::views::cluster::DEPLOY_SCHEMA,
    egressor::views::cluster::UNDEPLOY_SCHEMA,
    egressor::views::cluster::STATUS_SCHEMA,
    egressor::views::reports::PULL_SCHEMA,
    egressor::engines::destinations::RUN_SCHEMA,
    egressor::views::run::CHECK_SCHEMA,
];

/// Every schema file and the test below that validates real output against it.
const COVERAGE: &[(&str, &str)] = &[
    ("demo.v1.json", "workspace_documents_follow_their_schemas"),
    ("import.v1.json", "workspace_documents_follow_their_schemas"),
    ("flows.v1.json", "workspace_documents_follow_their_schemas"),
    ("workspace-info.v2.json", "workspace_documents_follow_their_schemas"),
    ("prune.v1.json", "workspace_documents_follow_their_schemas"),
    ("cost.v1.json", "cost_graph_top_and_prices_follow_their_schemas"),
    ("graph.v1.json", "cost_graph_top_and_prices_follow_their_schemas"),
    ("top.v1.json", "cost_graph_top_and_prices_follow_their_schemas"),
    ("prices.v1.json", "cost_graph_top_and_prices_follow_their_schemas"),
    ("anomalies.v1.json", "anomalies_baseline_explain_and_ask_follow_their_schemas"),
    ("baseline.v1.json", "anomalies_baseline_explain_and_ask_follow_their_schemas"),
    ("explain.v1.json", "anomalies_baseline_explain_and_ask_follow_their_schemas"),
    ("ask.v1.json", "anomalies_baseline_explain_and_ask_follow_their_schemas"),
    ("reconcile.v1.json", "reconcile_follows_its_schema"),
    ("deploy.v1.json", "cluster_documents_follow_their_schemas"),
    ("undeploy.v1.json", "cluster_documents_follow_their_schemas"),
    ("status.v1.json", "cluster_documents_follow_their_schemas"),
    ("pull.v1.json", "cluster_documents_follow_their_schemas"),
    ("run.v1.json", "run_and_check_follow_their_schemas"),
    ("check.v1.json", "run_and_check_follow_their_schemas"),
];

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/schemas")
}

/// `egressor.cost/v1` is described by `cost.v1.json`.
fn file_of(version: &str) -> String {
    let (name, v) = version
        .strip_prefix("egressor.")
        .and_then(|rest| rest.split_once('/'))
        .unwrap_or_else(|| panic!("`{version}` is not egressor.<name>/v<N>"));
    format!("{name}.{v}.json")
}

fn schema(file: &str) -> Value {
    let text = std::fs::read_to_string(schemas_dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file} is not JSON: {e}"))
}

/// Each real document must follow its schema and carry the version the schema names; each must
/// stop following it with an undocumented top-level field, another version, or no version.
fn check(t: &TestContext, docs: &[(&str, Value)]) {
    let mut cases: Vec<(&str, Value, &str, bool)> = Vec::new();
    for (file, doc) in docs {
        let version = doc["schema_version"].as_str().unwrap_or_else(|| panic!("no schema_version: {doc}"));
        assert_eq!(file_of(version), *file, "a document of {version} checked against {file}");
        cases.push((file, doc.clone(), "as printed", true));
        let mut extra = doc.clone();
        extra["undocumented"] = json!(1);
        cases.push((file, extra, "with an undocumented field", false));
        let mut other = doc.clone();
        other["schema_version"] = json!(version.replace("/v", "/v9"));
        cases.push((file, other, "with another version", false));
        let mut none = doc.clone();
        none.as_object_mut().unwrap().remove("schema_version");
        cases.push((file, none, "without schema_version", false));
    }
    let answers = t.schema_errors_each(&cases.iter().map(|(f, d, _, _)| (*f, d)).collect::<Vec<_>>());
    let wrong: Vec<String> = cases
        .iter()
        .zip(&answers)
        .enumerate()
        .filter(|(_, ((_, _, _, valid), errors))| errors.is_empty() != *valid)
        .map(|(i, ((file, _, what, valid), errors))| {
            format!(
                "document {} against {file} {what}: expected {}; errors: {errors:?}",
                i / 4,
                if *valid { "valid" } else { "invalid" }
            )
        })
        .collect();
    assert!(wrong.is_empty(), "JSON schema checks failed:\n{}", wrong.join("\n"));
}

/// stdout of `egressor ARGS` as JSON, whatever the exit code (`status` and `pull` print their
/// report and exit 3 when an agent is not ready).
fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", crate::show(out)))
}

#[test]
fn workspace_documents_follow_their_schemas() {
    let t = TestContext::new();
    let empty = t.json(&["workspace", "info", "--output", "json"]);
    assert!(empty["first_window"].is_null(), "{empty}");
    let demo = t.json(&["demo", "--days", "2", "--output", "json"]);
    let again = t.json(&["demo", "--days", "2", "--output", "json"]);
    assert_eq!(again["batches_skipped"], 2, "{again}");
    let vpc = crate::fixture("vpc-flow-logs-v2.log");
    let import = t.json(&["import", vpc.to_str().unwrap(), "--format", "vpc-flow-logs", "--output", "json"]);
    assert!(!import["skipped_lines"].as_array().unwrap().is_empty(), "{import}");
    let flows = t.json(&["flows", "--since", "2d", "--limit", "30", "--output", "json"]);
    assert_eq!(flows["records"].as_array().unwrap().len(), 30);
    let no_flows = t.json(&[
        "flows",
        "--since",
        "2030-01-01T00:00:00Z",
        "--until",
        "2030-01-02T00:00:00Z",
        "--output",
        "json",
    ]);
    assert_eq!(no_flows["records"], json!([]), "{no_flows}");

    // `export --format jsonl` writes the same records as flows' document, one per line; imported
    // elsewhere they are an import of their own.
    let export = t.ok(&["export", "--format", "jsonl", "--since", "2h"]);
    let lines: Vec<Value> = export.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!lines.is_empty());
    let exported = json!({"schema_version": egressor::views::flows::FLOWS_SCHEMA, "records": lines});
    let u = TestContext::new();
    let file = u.path("flows.jsonl");
    std::fs::write(&file, &export).unwrap();
    let jsonl = u.json(&["import", file.to_str().unwrap(), "--format", "jsonl", "--output", "json"]);

    t.ok(&["workspace", "retention", "--raw-days", "1"]);
    let prune = t.json(&["workspace", "prune", "--output", "json"]);
    let info = t.json(&["workspace", "info", "--output", "json"]);
    check(
        &t,
        &[
            ("workspace-info.v2.json", empty),
            ("demo.v1.json", demo),
            ("demo.v1.json", again),
            ("import.v1.json", import),
            ("import.v1.json", jsonl),
            ("flows.v1.json", flows),
            ("flows.v1.json", no_flows),
            ("flows.v1.json", exported),
            ("prune.v1.json", prune),
            ("workspace-info.v2.json", info),
        ],
    );
}

#[test]
fn cost_graph_top_and_prices_follow_their_schemas() {
    let t = crate::anomalies::demo();
    let cost = |args: &[&str]| {
        let mut a = vec!["cost", "--output", "json"];
        a.extend_from_slice(args);
        ("cost.v1.json", t.json(&a))
    };
    let graph = |args: &[&str]| {
        let mut a = vec!["graph", "--output", "json"];
        a.extend_from_slice(args);
        ("graph.v1.json", t.json(&a))
    };
    let explained = cost(&["--since", "7d", "--by", "edge", "--top", "5", "--explain", "--recommend"]);
    assert!(!explained.1["recommendations"].as_array().unwrap().is_empty(), "{}", explained.1);
    let docs = [
        cost(&["--since", "7d"]),
        explained,
        cost(&["--since", "1d", "--by", "class"]),
        cost(&["--since", "30d", "--by", "zone", "--recommend"]),
        graph(&["--since", "24h"]),
        graph(&["--since", "24h", "--level", "zone", "--class", "cross-zone"]),
        graph(&["--since", "24h", "--level", "process", "--focus", "no such thing"]),
        ("top.v1.json", t.json(&["top", "--replay", "--since", "1h", "--once", "--output", "json"])),
        (
            "top.v1.json",
            t.json(&["top", "--replay", "--since", "1h", "--once", "--level", "zone", "--output", "json"]),
        ),
        ("prices.v1.json", t.json(&["pricing", "show", "--output", "json"])),
        (
            "prices.v1.json",
            t.json(&["pricing", "show", "--provider", "gcp", "--region", "us-central1", "--output", "json"]),
        ),
    ];
    check(&t, &docs);
}

#[test]
fn anomalies_baseline_explain_and_ask_follow_their_schemas() {
    let t = crate::anomalies::demo();
    let list = t.json(&["anomalies", "--since", "14d", "--output", "json"]);
    let id = list["anomalies"][0]["id"].as_str().expect("the demo's anomalies").to_string();
    let show = t.json(&["anomalies", "show", &id, "--output", "json"]);
    let subject = format!("class:{}", "cross-zone");
    let baseline = t.json(&["baseline", &subject, "--output", "json"]);
    let explain = t.json(&["explain", "--since", "7d", "--output", "json"]);
    // `ask` without a key prints the explanation: the explain document.
    let offline = t
        .cmd(&["ask", "why?", "--output", "json"])
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("ANTHROPIC_BASE_URL")
        .output()
        .unwrap();
    assert!(offline.status.success(), "{}", crate::show(&offline));
    let server = ClaudeServer::start("sk-ant-schema-test", vec![Reply::text("Egress grew on cross-zone.")]);
    let online = t
        .cmd(&["ask", "why?", "--output", "json"])
        .env("ANTHROPIC_API_KEY", "sk-ant-schema-test")
        .env("ANTHROPIC_BASE_URL", server.url())
        .env_remove("EGRESSOR_MODEL")
        .output()
        .unwrap();
    assert!(online.status.success(), "{}", crate::show(&online));
    server.assert_clean();
    check(
        &t,
        &[
            ("anomalies.v1.json", list),
            ("anomalies.v1.json", show),
            ("baseline.v1.json", baseline),
            ("explain.v1.json", explain),
            ("explain.v1.json", json_of(&offline)),
            ("ask.v1.json", json_of(&online)),
        ],
    );
}

#[test]
fn reconcile_follows_its_schema() {
    let t = crate::anomalies::demo();
    // A bill with a line egressor explains in part, a resource nobody observed, and a line that is
    // not data transfer.
    let cur = t.path("cur.csv");
    std::fs::write(
        &cur,
        "lineItem/UsageStartDate,lineItem/UsageType,lineItem/Operation,lineItem/ResourceId,lineItem/UsageAmount,lineItem/UnblendedCost,lineItem/LineItemType\n\
         2026-11-15T00:00:00Z,USE1-NatGateway-Hours,NatGateway,arn:aws:ec2:us-east-1:111122223333:natgateway/nat-shop-a,456,20.52,Usage\n\
         2026-11-15T00:00:00Z,USE1-DataTransfer-Regional-Bytes,,eni-0unlogged,50,0.50,Usage\n\
         2026-11-15T00:00:00Z,USE1-BoxUsage:m5.large,RunInstances,i-0aaa,720,69.12,Usage\n",
    )
    .unwrap();
    let r = t.json(&["reconcile", "--cur", cur.to_str().unwrap(), "--output", "json"]);
    assert!(!r["gaps"].as_array().unwrap().is_empty(), "{r}");
    check(&t, &[("reconcile.v1.json", r)]);
}

#[test]
fn run_and_check_follow_their_schemas() {
    crate::capture::require_root();
    let t = crate::anomalies::demo();
    let policy = t.path("policy.toml");
    std::fs::write(
        &policy,
        "version = 1\n[budget]\nper_run = \"0\"\nper_day = \"0.01\"\n\
         [[budget.limit]]\nnamespace = \"shop\"\nper_day = \"1\"\n\
         [destinations]\nallow = [\"127.0.0.1\"]\n",
    )
    .unwrap();
    let p = policy.to_str().unwrap();
    // A run with a policy (a namespace budget it cannot check), a learned list, a loopback
    // destination and a refused connection; traffic stays on loopback.
    let learned = t.path("learned.toml");
    let out = t
        .cmd(&[
            "run",
            "--region",
            "us-east-1",
            "--policy",
            p,
            "--learn",
            learned.to_str().unwrap(),
            "-o",
            "json",
            "--",
        ])
        .args(["sh", "-c", "curl -s -o /dev/null http://127.0.0.1:9/ ; true"])
        .env_remove("GITHUB_ACTIONS")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", crate::show(&out));
    let run = json_of(&out);
    assert!(!run["policy"]["skipped"].as_array().unwrap().is_empty(), "{run}");
    assert!(run["learned"].is_object(), "{run}");
    // The demo is over 0.01 USD a day and talks to destinations the allow list does not name.
    let out = t.cmd(&["check", "--policy", p, "--since", "7d", "-o", "json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", crate::show(&out));
    let check_doc = json_of(&out);
    let kinds: BTreeSet<&str> = check_doc["policy"]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, BTreeSet::from(["budget", "not-allowed"]), "{check_doc}");
    check(&t, &[("run.v1.json", run), ("check.v1.json", check_doc)]);
}

/// An agent as `status` and `pull` reach it through the API server's pods proxy: `/v1/info`,
/// one page of batches, acknowledgements. It listens on a loopback address of its own at the
/// agents' port, which is where the lab's proxy dials a pod whose IP is that address.
fn fake_agent() -> SocketAddr {
    let pid = std::process::id();
    let listener = (1..=200u8)
        .find_map(|i| {
            let ip = Ipv4Addr::new(127, 77, (pid % 250) as u8 + 1, i);
            TcpListener::bind((ip, egressor::cluster::manifests::AGENT_PORT)).ok()
        })
        .expect("a free loopback address for the agent");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer(stream));
        }
    });
    addr
}

fn answer(stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut length = 0;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let target = line.split_whitespace().nth(1).unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let reply = match path {
        "/v1/info" => Some(json!(egressor::transport::AgentInfo {
            schema: egressor::transport::WIRE_SCHEMA.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            node: "node-1".into(),
            instance: "5c4e".into(),
            spool_bytes: 4096,
            spool_max_bytes: 256 << 20,
            spool_batches: 2,
            last_ack: None,
            loss: egressor::transport::Loss::default(),
        })),
        "/v1/batches" => {
            let fresh = !query.contains("after=") || query.contains("after=0");
            let batches = if fresh { crate::pull::batches(2, 3) } else { Vec::new() };
            let cursor = batches.last().map_or(2, |b| b.seq);
            Some(json!(egressor::transport::BatchPage {
                schema: egressor::transport::WIRE_SCHEMA.into(),
                instance: "5c4e".into(),
                node: "node-1".into(),
                batches,
                cursor,
                more: false,
            }))
        }
        "/v1/ack" => Some(json!({})),
        _ => None,
    };
    let mut w = stream;
    let _ = match reply {
        Some(v) => {
            let body = v.to_string();
            write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        }
        None => w.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    };
}

/// An agent pod of the DaemonSet on `node`: ready at `ip`, or still being created.
fn agent_pod(node: &str, ip: Option<Ipv4Addr>) -> Value {
    let labels = json!({"app.kubernetes.io/name": "egressor-agent"});
    let container = json!({"name": "agent", "image": "egressor",
        "ports": [{"name": "api", "containerPort": egressor::cluster::manifests::AGENT_PORT}]});
    let status = match ip {
        Some(ip) => json!({"phase": "Running", "podIP": ip.to_string(),
            "conditions": [{"type": "Ready", "status": "True"}]}),
        None => json!({"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "agent", "image": "egressor", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
    };
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("egressor-agent-{node}"), "namespace": "egressor", "labels": labels},
        "spec": {"nodeName": node, "containers": [container]},
        "status": status})
}

#[test]
fn cluster_documents_follow_their_schemas() {
    let api = ApiServer::start();
    let t = TestContext::new();
    let kc = t.path("kubeconfig");
    api.write_kubeconfig(&kc, ADMIN_TOKEN, "lab");
    let deploy = kube(&t, &kc, &["deploy", "--output", "json"]);
    assert!(deploy.status.success(), "{}", crate::show(&deploy));
    let redeploy = kube(&t, &kc, &["deploy", "--output", "json"]);
    let agent = fake_agent();
    let SocketAddr::V4(v4) = agent else { unreachable!("bound on IPv4") };
    api.put(&agent_pod("node-1", Some(*v4.ip())));
    api.put(&agent_pod("node-2", None));

    // One agent ready and answering, one not ready: both documents say so, and the commands exit 3.
    let status = kube(&t, &kc, &["status", "--output", "json"]);
    assert_eq!(status.status.code(), Some(3), "{}", crate::show(&status));
    let status = json_of(&status);
    assert!(status["agents"][0]["info"].is_object() && status["agents"][1]["info"].is_null(), "{status}");
    let pull = kube(&t, &kc, &["pull", "--output", "json"]);
    assert_eq!(pull.status.code(), Some(3), "{}", crate::show(&pull));
    let pull = json_of(&pull);
    assert_eq!(pull["agents"][0]["records_ingested"], 6, "{pull}");
    assert_eq!(pull["failed"].as_array().unwrap().len(), 1, "{pull}");
    // The same agent again by URL: nothing new.
    let by_url = t.json(&["pull", "--agent", &format!("http://{agent}"), "--output", "json"]);

    let undeploy = kube(&t, &kc, &["undeploy", "--output", "json"]);
    assert!(undeploy.status.success(), "{}", crate::show(&undeploy));
    let again = kube(&t, &kc, &["undeploy", "--output", "json"]);
    check(
        &t,
        &[
            ("deploy.v1.json", json_of(&deploy)),
            ("deploy.v1.json", json_of(&redeploy)),
            ("status.v1.json", status),
            ("pull.v1.json", pull),
            ("pull.v1.json", by_url),
            ("undeploy.v1.json", json_of(&undeploy)),
            ("undeploy.v1.json", json_of(&again)),
        ],
    );
}

/// Documents broken the ways a careless change breaks them: each must be rejected, at the place
/// named.
#[test]
fn a_document_that_breaks_its_schema_is_rejected() {
    let t = TestContext::new();
    let vpc = crate::fixture("vpc-flow-logs-v3.log");
    t.ok(&["import", vpc.to_str().unwrap(), "--format", "vpc-flow-logs"]);
    let flows = t.json(&["flows", "--since", "2019-01-01T00:00:00Z", "--output", "json"]);
    let prices = t.json(&["pricing", "show", "--provider", "aws", "--output", "json"]);
    let info = t.json(&["workspace", "info", "--output", "json"]);
    let broken = |doc: &Value, pointer: &str, value: Option<Value>| {
        let mut d = doc.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let object = d.pointer_mut(parent).unwrap().as_object_mut().unwrap();
        match value {
            Some(v) => object.insert(key.to_string(), v),
            None => object.remove(key),
        };
        d
    };
    let cases = [
        ("flows.v1.json", broken(&flows, "/records/0/bytes_out", Some(json!("1234"))), "records/0/bytes_out"),
        ("flows.v1.json", broken(&flows, "/records/0/bytes_in", Some(json!(-1))), "records/0/bytes_in"),
        (
            "flows.v1.json",
            broken(&flows, "/records/0/local/ip", Some(json!("10.0.0.300"))),
            "records/0/local/ip",
        ),
        ("flows.v1.json", broken(&flows, "/records/0/local/rack", Some(json!("r1"))), "records/0/local"),
        (
            "flows.v1.json",
            broken(&flows, "/records/0/window_start", Some(json!("2019-08-26 10:00"))),
            "records/0/window_start",
        ),
        ("flows.v1.json", broken(&flows, "/records/0/proto", Some(json!("sctp"))), "records/0/proto"),
        ("flows.v1.json", broken(&flows, "/records/0/node", None), "records/0"),
        ("prices.v1.json", broken(&prices, "/prices/0/price", Some(json!(0.09))), "prices/0/price"),
        ("prices.v1.json", broken(&prices, "/schema", None), ""),
        ("workspace-info.v2.json", broken(&info, "/schema_version", Some(json!(4))), "schema_version"),
    ];
    let answers = t.schema_errors_each(&cases.iter().map(|(f, d, _)| (*f, d)).collect::<Vec<_>>());
    for ((file, _, at), errors) in cases.iter().zip(&answers) {
        assert!(
            errors.iter().any(|e| e.starts_with(&format!("{at}: "))),
            "{file}: a break at `{at}` was not caught: {errors:?}"
        );
    }
    // And the unbroken documents pass.
    check(&t, &[("flows.v1.json", flows), ("prices.v1.json", prices), ("workspace-info.v2.json", info)]);
}

/// Every `$ref` of `v` that points into the same file, with the JSON pointer it names.
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get("$ref") {
                out.push(r.clone());
            }
            o.values().for_each(|v| refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// Object schemas that are not strict: listing `properties` without `additionalProperties: false`
/// or without `required`, or requiring what they do not list.
fn loose(v: &Value, at: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if let Some(Value::Object(props)) = o.get("properties") {
                if o.get("additionalProperties") != Some(&json!(false)) {
                    out.push(format!("{at}: additionalProperties is not false"));
                }
                match o.get("required").and_then(Value::as_array) {
                    None => out.push(format!("{at}: no required list")),
                    Some(r) => out.extend(
                        r.iter()
                            .filter(|k| !props.contains_key(k.as_str().unwrap_or_default()))
                            .map(|k| format!("{at}: requires {k}, which it does not list")),
                    ),
                }
            }
            for (k, v) in o {
                // A condition only names properties to test them.
                if !matches!(k.as_str(), "if" | "then" | "else") {
                    loose(v, &format!("{at}/{k}"), out);
                }
            }
        }
        Value::Array(a) => a.iter().enumerate().for_each(|(i, v)| loose(v, &format!("{at}/{i}"), out)),
        _ => {}
    }
}

/// The `schema_version` constants a schema allows (one, or one per shape of a `oneOf`).
fn versions_in(schema: &Value) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut stack = vec![schema];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(o) => {
                if let Some(c) = o.get("properties").and_then(|p| p.pointer("/schema_version/const")) {
                    found.insert(c.as_str().unwrap().to_string());
                }
                stack.extend(o.values());
            }
            Value::Array(a) => stack.extend(a),
            _ => {}
        }
    }
    found
}

#[test]
fn every_schema_file_is_strict_named_for_its_version_and_exercised() {
    let files: BTreeSet<String> = std::fs::read_dir(schemas_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    let printed: BTreeSet<String> = VERSIONS.iter().map(|v| file_of(v)).collect();
    let covered: BTreeSet<String> = COVERAGE.iter().map(|(f, _)| f.to_string()).collect();
    assert_eq!(files, printed, "docs/schemas/ and the versions the code prints differ");
    assert_eq!(files, covered, "docs/schemas/ and the schemas the tests here check differ");

    let source = include_str!("schemas.rs");
    let mut problems = Vec::new();
    for (file, test) in COVERAGE {
        // The test exists and checks this file.
        let start = source.find(&format!("#[test]\nfn {test}()")).unwrap_or_else(|| panic!("no test {test}"));
        let body = &source[start..];
        let body = &body[..body.find("\n}\n").unwrap_or(body.len())];
        if !body.contains(&format!("\"{file}\"")) {
            problems.push(format!("{test} does not check {file}"));
        }
        let s = schema(file);
        let id = format!("https://egressor.dev/schemas/{file}");
        if s["$schema"] != "https://json-schema.org/draft/2020-12/schema" || s["$id"] != id.as_str() {
            problems.push(format!("{file}: $schema must be draft 2020-12 and $id {id}"));
        }
        if !s["title"].as_str().is_some_and(|t| t.starts_with("egressor ")) {
            problems.push(format!("{file}: the title names the command"));
        }
        let version = VERSIONS.iter().find(|v| file_of(v) == *file).unwrap();
        let allowed = versions_in(&s);
        if allowed != BTreeSet::from([version.to_string()]) {
            problems.push(format!("{file}: schema_version must be const {version}, is {allowed:?}"));
        }
        loose(&s, file, &mut problems);
        let mut found = Vec::new();
        refs(&s, &mut found);
        for r in found {
            let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("{file}: {r} leaves the file"));
            if s.pointer(pointer).is_none() {
                problems.push(format!("{file}: $ref {r} points nowhere"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Valid schemas by the draft's meta-schema (the validator checks each before using it).
    let t = TestContext::new();
    let nothing = json!(null);
    t.schema_errors_each(&files.iter().map(|f| (f.as_str(), &nothing)).collect::<Vec<_>>());
}

/// The enum of `file` at `pointer`.
fn enum_at(file: &str, pointer: &str) -> Vec<String> {
    let s = schema(file);
    let e = s.pointer(pointer).unwrap_or_else(|| panic!("{file}: nothing at {pointer}"));
    e.as_array()
        .unwrap_or_else(|| panic!("{file}{pointer} is not an enum"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// A closed vocabulary of the code (classes, providers, categories...) is spelled the same in
/// every schema that lists it: a value added to the code fails here until the schema has it.
#[test]
fn the_enums_of_the_schemas_are_the_codes() {
    use egressor::engines::{classify::Class, cost::GroupBy, graph::Level, pricing};
    use egressor::model::{Initiator, Proto, Source};
    let names = |v: Vec<&str>| v.into_iter().map(str::to_string).collect::<Vec<_>>();
    let classes = names(Class::ALL.iter().map(|c| c.as_str()).collect());
    for (file, _) in COVERAGE {
        if schema(file).pointer("/$defs/class").is_some() {
            assert_eq!(enum_at(file, "/$defs/class/enum"), classes, "{file}: classes");
        }
    }
    let providers = names(pricing::Provider::ALL.iter().map(|p| p.as_str()).collect());
    let levels = names(Level::ALL.iter().map(|l| l.as_str()).collect());
    let sources = names(Source::ALL.iter().map(|s| s.as_str()).collect());
    let expected: &[(&str, &str, Vec<String>)] = &[
        ("cost.v1.json", "/properties/provider/enum", providers.clone()),
        ("prices.v1.json", "/properties/tables/items/properties/provider/enum", providers.clone()),
        ("prices.v1.json", "/properties/prices/items/properties/provider/enum", providers),
        (
            "prices.v1.json",
            "/properties/tables/items/properties/kind/enum",
            names(pricing::TableKind::ALL.iter().map(|k| k.as_str()).collect()),
        ),
        (
            "cost.v1.json",
            "/properties/tier_accumulation/enum",
            names(pricing::TierAccumulation::ALL.iter().map(|a| a.as_str()).collect()),
        ),
        ("cost.v1.json", "/properties/by/enum", names(GroupBy::ALL.iter().map(|g| g.as_str()).collect())),
        (
            "cost.v1.json",
            "/properties/hourly/items/properties/kind/enum",
            names(pricing::HourlyKind::ALL.iter().map(|k| k.as_str()).collect()),
        ),
        (
            "cost.v1.json",
            "/$defs/meter/properties/category/enum",
            names(pricing::Category::ALL.iter().map(|c| c.as_str()).collect()),
        ),
        (
            "cost.v1.json",
            "/$defs/meter/properties/payer/enum",
            names(pricing::Payer::ALL.iter().map(|p| p.as_str()).collect()),
        ),
        (
            "cost.v1.json",
            "/$defs/meter/properties/unit/enum",
            names(pricing::Unit::ALL.iter().map(|u| u.as_str()).collect()),
        ),
        ("graph.v1.json", "/properties/level/enum", levels.clone()),
        ("top.v1.json", "/properties/level/enum", levels),
        (
            "flows.v1.json",
            "/$defs/record/properties/proto/enum",
            names(Proto::ALL.iter().map(|p| p.as_str()).collect()),
        ),
        (
            "flows.v1.json",
            "/$defs/record/properties/initiator/enum",
            names(Initiator::ALL.iter().map(|i| i.as_str()).collect()),
        ),
        ("flows.v1.json", "/$defs/record/properties/source/enum", sources.clone()),
        ("import.v1.json", "/properties/batches_ingested/items/properties/source/enum", sources.clone()),
        ("workspace-info.v2.json", "/properties/records_by_source/items/prefixItems/0/enum", sources),
    ];
    for (file, pointer, code) in expected {
        assert_eq!(&enum_at(file, pointer), code, "{file}{pointer}");
    }
}
