//! `egressor explain` and `egressor ask` on the 14-day demo (which injects a spike, a slow burn, a
//! new endpoint and a leak), `ask` against the lab's Messages API stand-in, which checks every
//! request it gets (headers, schema, tool protocol) and that no address of the workspace reaches it.

use crate::TestContext;
use crate::anomalies::demo;
use crate::lab::claude::{Block, ClaudeServer, Reply};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::process::Command;

const KEY: &str = "sk-ant-test-0123456789";

/// `egressor ask` against the server (with a key), or with no key at all.
fn ask(t: &TestContext, server: Option<&ClaudeServer>, args: &[&str]) -> Command {
    let mut a = vec!["ask"];
    a.extend_from_slice(args);
    let mut c = t.cmd(&a);
    c.env_remove("ANTHROPIC_API_KEY").env_remove("ANTHROPIC_BASE_URL").env_remove("EGRESSOR_MODEL");
    if let Some(s) = server {
        c.env("ANTHROPIC_API_KEY", KEY).env("ANTHROPIC_BASE_URL", s.url());
    }
    c
}

fn run(mut c: Command) -> (bool, String, String) {
    let o = c.output().expect("run egressor");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Every IP address in the workspace's raw flow records (both ends).
fn workspace_addresses(t: &TestContext) -> Vec<String> {
    let raw = t.ok(&["export", "--format", "jsonl", "--since", "30d"]);
    let mut found = BTreeSet::new();
    for line in raw.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        collect_ips(&v, &mut found);
    }
    assert!(found.len() > 5, "the demo has addresses: {found:?}");
    found.into_iter().collect()
}

fn collect_ips(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) if s.parse::<std::net::IpAddr>().is_ok() => {
            out.insert(s.clone());
        }
        Value::Array(a) => a.iter().for_each(|v| collect_ips(v, out)),
        Value::Object(o) => o.values().for_each(|v| collect_ips(v, out)),
        _ => {}
    }
}

fn anomaly_costs(t: &TestContext) -> Vec<Value> {
    t.json(&["anomalies", "--since", "14d", "--output", "json"])["anomalies"].as_array().unwrap().clone()
}

#[test]
fn explain_names_each_injected_event_with_its_cost() {
    let t = demo();
    let e = t.json(&["explain", "--since", "7d", "--output", "json"]);
    assert_eq!(e["schema_version"], "egressor.explain/v1");
    let kinds: BTreeSet<&str> =
        e["anomalies"].as_array().unwrap().iter().map(|a| a["type"].as_str().unwrap()).collect();
    for kind in ["spike", "slow-burn", "new-endpoint", "leak"] {
        assert!(kinds.contains(kind), "{kind} missing from {kinds:?}");
    }
    // Each with the cost the anomalies command gives it, and named in the text.
    let text = t.ok(&["explain", "--since", "7d"]);
    for a in e["anomalies"].as_array().unwrap() {
        let cost: f64 = a["cost_per_day"].as_str().unwrap().parse().unwrap();
        assert!(cost > 0.0, "{a}");
        assert!(text.contains(a["id"].as_str().unwrap()), "{} not in:\n{text}", a["id"]);
        let listed = anomaly_costs(&t).into_iter().find(|f| f["id"] == a["id"]).unwrap();
        assert_eq!(listed["cost_per_day"], a["cost_per_day"]);
    }
    // What changed: the slow burn's edge grew, in money, against the 7 days before.
    let c = &e["comparison"];
    assert!(c["now"]["transfer_cost"].as_str().unwrap().parse::<f64>().unwrap() > 0.0);
    let grew = c["lines"].as_array().unwrap();
    assert!(grew.iter().any(|l| l["key"].as_str().unwrap().contains("analytics-etl")), "{grew:#?}");
    assert!(text.contains("What grew") && text.contains("By class"), "{text}");
    // Deterministic: the same twice.
    assert_eq!(t.ok(&["explain", "--since", "7d"]), text);
}

#[test]
fn ask_answers_through_a_tool_and_flags_a_figure_no_tool_gave() {
    let t = demo();
    let burn = anomaly_costs(&t).into_iter().find(|f| f["type"] == "slow-burn").unwrap();
    let right = format!("${:.2}", burn["cost_per_day"].as_str().unwrap().parse::<f64>().unwrap());
    let server = ClaudeServer::start(
        KEY,
        vec![
            Reply::Message(vec![
                Block::Text("Let me look at the anomalies.".into()),
                Block::tool_use("toolu_01", "anomalies", json!({"since": "7d", "type": "slow-burn"})),
            ]),
            Reply::Message(vec![Block::Text(format!(
                "The slow burn on analytics-etl costs {right} a day and will cost $987.65 more next month.\n\
                 Next: egressor anomalies show {}",
                burn["id"].as_str().unwrap()
            ))]),
        ],
    );
    server.forbid(workspace_addresses(&t));
    let (ok, stdout, stderr) = run(ask(&t, Some(&server), &["why did egress grow?", "--output", "json"]));
    assert!(ok, "{stderr}\n{stdout}");
    server.assert_clean();
    let r: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["schema_version"], "egressor.ask/v1");
    assert_eq!(r["rounds"], 2);
    assert_eq!(r["tool_calls"][0]["name"], "anomalies");
    assert_eq!(r["tool_calls"][0]["is_error"], false);
    let figures: Vec<(String, bool)> = r["check"]["figures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["text"].as_str().unwrap().to_string(), f["verified"].as_bool().unwrap()))
        .collect();
    assert_eq!(figures, [(right.clone(), true), ("$987.65".to_string(), false)]);
    assert_eq!(r["check"]["unverified"], 1);
    // The tool result Claude got answered its id, first in the next user turn, and carried the burn.
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    let results = reqs[1].tool_results();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].tool_use_id, "toolu_01");
    assert!(results[0].text.contains(burn["id"].as_str().unwrap()), "{}", results[0].text);
    // The first request: the system prompt, the eight tools, the question and the opening summary.
    let first = &reqs[0].body;
    assert_eq!(first["tools"].as_array().unwrap().len(), 8);
    assert!(first["messages"][0]["content"][0]["text"].as_str().unwrap().starts_with("why did egress grow?"));
    assert_eq!(
        first["stream"], false,
        "--output json asks for the whole message: nothing is printed until the end"
    );
}

#[test]
fn ask_streams_the_answer_retries_and_marks_unverified_figures() {
    let t = demo();
    let server = ClaudeServer::start(
        KEY,
        vec![
            Reply::Status {
                status: 429,
                kind: "rate_limit_error",
                message: "Number of requests has exceeded your per-minute rate limit".into(),
                retry_after: Some(1),
            },
            Reply::Status {
                status: 529,
                kind: "overloaded_error",
                message: "Overloaded".into(),
                retry_after: None,
            },
            Reply::CutStream(vec![Block::Text("Half an ans".into())]),
            Reply::text("Egress to ext-1 is $123.45 a day.\nThat is all."),
        ],
    );
    server.forbid(workspace_addresses(&t));
    let (ok, stdout, stderr) = run(ask(&t, Some(&server), &["what is the costliest thing?"]));
    assert!(ok, "{stderr}\n{stdout}");
    server.assert_clean();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 4, "three retries then the answer");
    assert!(reqs[1].at.duration_since(reqs[0].at).as_secs_f64() >= 1.0, "retry-after honoured");
    assert_eq!(stderr.matches("attempt").count(), 3, "{stderr}");
    assert!(stdout.contains("That is all."), "{stdout}");
    assert!(!stdout.contains("Half an ans"), "the cut attempt's text is not printed: {stdout}");
    // The pseudonym is shown as the real address to the user.
    assert!(!stdout.contains("ext-1 is"), "{stdout}");
    assert!(stdout.contains("UNVERIFIED: $123.45"), "{stdout}");
}

#[test]
fn show_context_prints_what_would_be_sent_and_sends_nothing() {
    let t = demo();
    let server = ClaudeServer::start(KEY, vec![]);
    let (ok, stdout, stderr) = run(ask(&t, Some(&server), &["why?", "--show-context"]));
    assert!(ok, "{stderr}");
    assert!(server.requests().is_empty(), "--show-context sent a request");
    let body: Value = serde_json::from_str(&stdout).unwrap();
    assert!(body["system"].as_str().unwrap().contains("egressor"));
    assert_eq!(body["tools"].as_array().unwrap().len(), 8);
    for ip in workspace_addresses(&t) {
        assert!(
            !stdout.contains(&format!("\"{ip}")) && !stdout.contains(&format!(" {ip}")),
            "{ip} in the context"
        );
    }
    assert!(stdout.contains("ext-"), "addresses appear as pseudonyms");
    // --no-redact sends them as they are; --redact-names hides the workload names too.
    let plain = run(ask(&t, Some(&server), &["why?", "--show-context", "--no-redact"])).1;
    assert!(plain.contains("198.51.100.23"), "the leak's endpoint, unredacted");
    let names = run(ask(&t, Some(&server), &["why?", "--show-context", "--redact-names"])).1;
    assert!(!names.contains("analytics-etl") && names.contains("name-"), "names redacted");
    assert!(server.requests().is_empty());
}

#[test]
fn without_a_key_ask_says_so_and_explains() {
    let t = demo();
    let (ok, stdout, stderr) = run(ask(&t, None, &["why did egress spike?", "--since", "7d"]));
    assert!(ok, "{stderr}");
    assert!(stderr.contains("ANTHROPIC_API_KEY is not set"), "{stderr}");
    assert!(stdout.contains("Anomalies in this period"), "{stdout}");
}

#[test]
fn an_api_error_ends_with_its_message_and_request_id() {
    let t = demo();
    let server = ClaudeServer::start(
        KEY,
        vec![Reply::Status {
            status: 401,
            kind: "authentication_error",
            message: "invalid x-api-key".into(),
            retry_after: None,
        }],
    );
    let (ok, _, stderr) = run(ask(&t, Some(&server), &["why?"]));
    assert!(!ok);
    assert!(
        stderr.contains("invalid x-api-key")
            && stderr.contains("req_0001")
            && stderr.contains("ANTHROPIC_API_KEY"),
        "{stderr}"
    );
    assert_eq!(server.requests().len(), 1, "not retried");
}

/// Requires `doc` to follow docs/schemas/NAME.
fn validate(t: &TestContext, name: &str, doc: &Value) {
    let errors = t.schema_errors(name, doc);
    assert!(errors.is_empty(), "{name}: the output does not follow its schema:\n{}", errors.join("\n"));
}

#[test]
fn explain_and_ask_json_follow_their_schemas() {
    let t = demo();
    validate(&t, "explain.v1.json", &t.json(&["explain", "--since", "7d", "--output", "json"]));
    validate(
        &t,
        "explain.v1.json",
        &t.json(&["explain", "--since", "24h", "--compare", "7d", "--output", "json"]),
    );
    let mut broken = t.json(&["explain", "--output", "json"]);
    broken["comparison"]["cost_change"] = json!(1.5);
    let errors = t.schema_errors("explain.v1.json", &broken);
    assert!(
        errors.iter().any(|e| e.starts_with("comparison/cost_change")),
        "a float money figure: {errors:?}"
    );
    let server = ClaudeServer::start(
        KEY,
        vec![
            Reply::Message(vec![Block::tool_use(
                "toolu_b",
                "series",
                json!({"subject": "no such series anywhere"}),
            )]),
            Reply::text("Done."),
        ],
    );
    let (ok, stdout, stderr) = run(ask(&t, Some(&server), &["q", "--output", "json"]));
    assert!(ok, "{stderr}");
    server.assert_clean();
    let r: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["tool_calls"][0]["is_error"], true, "a tool error goes back to Claude as an error result");
    assert!(r["tool_calls"][0]["result"].as_str().unwrap().contains("no series named"), "{r}");
    validate(&t, "ask.v1.json", &r);
}
