//! `egressor::claude::Client` against the lab's stand-in for the Messages API
//! (`lab::claude::ClaudeServer`), which checks every request the client sends.

use std::time::Duration;

use egressor::claude::{
    self, ApiError, Block, Client, Config, Message, Progress, Reply, Request, Role, ToolDef,
};
use serde_json::{Value, json};

use crate::lab::claude::{self as lab, ClaudeServer};

const KEY: &str = "sk-ant-lab-0123456789";

fn config(base_url: String, key: &str) -> Config {
    Config {
        base_url,
        api_key: key.to_string(),
        model: "claude-lab-1".to_string(),
        max_tokens: 1024,
        max_attempts: 4,
        max_wait: Duration::from_secs(60),
    }
}

fn client(server: &ClaudeServer) -> Client {
    Client::new(config(server.url(), KEY)).expect("a client")
}

fn tools() -> Vec<ToolDef> {
    vec![ToolDef {
        name: "top_talkers".into(),
        description: "The workloads that send the most bytes.".into(),
        input_schema: json!({
            "type": "object",
            "properties": {"limit": {"type": "integer"}},
            "required": ["limit"],
        }),
    }]
}

fn question(text: &str) -> Vec<Message> {
    vec![Message { role: Role::User, content: vec![Block::Text { text: text.into() }] }]
}

/// What `progress` was told during a call.
#[derive(Default)]
struct Told {
    texts: Vec<String>,
    retries: Vec<(u32, Duration, String)>,
}

impl Told {
    fn call(&mut self) -> impl FnMut(Progress<'_>) + '_ {
        |progress| match progress {
            Progress::Text(text) => self.texts.push(text.to_string()),
            Progress::Retry { attempt, wait, reason } => self.retries.push((attempt, wait, reason)),
        }
    }
}

fn send(client: &Client, messages: &[Message], told: &mut Told) -> Result<Reply, ApiError> {
    let tools = tools();
    let request = Request { system: "You explain egress.", tools: &tools, messages };
    client.send(&request, &mut told.call())
}

fn text_of(reply: &Reply) -> String {
    reply
        .content
        .iter()
        .filter_map(|b| match b {
            Block::Text { text } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

fn overloaded() -> lab::Reply {
    lab::Reply::Status {
        status: 529,
        kind: "overloaded_error",
        message: "Overloaded".into(),
        retry_after: None,
    }
}

#[test]
fn claude_client_streams_a_tool_use_and_answers_it() {
    let input = json!({"limit": 3});
    let script = vec![
        lab::Reply::Message(vec![
            lab::Block::Text("Let me look at the top talkers.".into()),
            lab::Block::tool_use("toolu_01", "top_talkers", input.clone()),
        ]),
        lab::Reply::text("The checkout pods send the most."),
    ];
    let server = ClaudeServer::start(KEY, script);
    let client = client(&server);
    let mut messages = question("Who sends the most?");

    let mut told = Told::default();
    let reply = send(&client, &messages, &mut told).expect("the first turn");
    assert_eq!(
        reply.content,
        [
            Block::Text { text: "Let me look at the top talkers.".into() },
            Block::ToolUse { id: "toolu_01".into(), name: "top_talkers".into(), input: input.clone() },
        ]
    );
    assert_eq!(reply.stop_reason.as_deref(), Some("tool_use"));
    assert_eq!(reply.request_id.as_deref(), Some("req_0001"));
    assert!(reply.input_tokens > 0 && reply.output_tokens > 0, "{reply:?}");
    assert!(told.texts.len() > 1, "the text arrives in pieces: {:?}", told.texts);
    assert_eq!(told.texts.concat(), "Let me look at the top talkers.");
    assert!(told.retries.is_empty());

    // As the lead's loop does it: the turn replayed as it came, then the tool's result first.
    messages.push(Message { role: Role::Assistant, content: reply.content.clone() });
    messages.push(Message {
        role: Role::User,
        content: vec![
            Block::ToolResult {
                tool_use_id: "toolu_01".into(),
                content: "checkout: 4 GiB".into(),
                is_error: false,
            },
            Block::Text { text: "Keep it short.".into() },
        ],
    });
    let mut told = Told::default();
    let reply = send(&client, &messages, &mut told).expect("the second turn");
    assert_eq!(text_of(&reply), "The checkout pods send the most.");
    assert_eq!(reply.stop_reason.as_deref(), Some("end_turn"));
    assert_eq!(told.texts.concat(), "The checkout pods send the most.");

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let results = requests[1].tool_results();
    assert_eq!(
        results,
        [lab::ToolResult { tool_use_id: "toolu_01".into(), text: "checkout: 4 GiB".into(), is_error: false }]
    );
    for request in &requests {
        assert_eq!(request.header("x-api-key"), Some(KEY));
        assert_eq!(request.header("anthropic-version"), Some(claude::API_VERSION));
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.body["stream"], true);
        assert_eq!(request.body["model"], "claude-lab-1");
    }
    server.assert_clean();
}

#[test]
fn claude_client_request_body_has_the_fields_the_api_takes() {
    let server = ClaudeServer::start(KEY, vec![]);
    let cfg = config(server.url(), KEY);
    let tools = tools();
    let messages = question("Hi?");
    let request = Request { system: "Be brief.", tools: &tools, messages: &messages };
    let body = claude::request_body(&cfg, &request, true);
    let keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["max_tokens", "messages", "model", "stream", "system", "tools"]);
    assert_eq!(body["messages"], json!([{"role": "user", "content": [{"type": "text", "text": "Hi?"}]}]));
    assert_eq!(body["tools"][0]["input_schema"]["type"], "object");
    assert!(!body.to_string().contains(KEY), "the key goes in a header only");

    let bare = claude::request_body(&cfg, &Request { system: "", tools: &[], messages: &messages }, false);
    assert_eq!(bare.get("system"), None);
    assert_eq!(bare.get("tools"), None);
    assert_eq!(bare["stream"], false);
}

#[test]
fn claude_client_waits_as_long_as_retry_after_says() {
    let script = vec![
        lab::Reply::Status {
            status: 429,
            kind: "rate_limit_error",
            message: "Number of requests has exceeded your rate limit.".into(),
            retry_after: Some(1),
        },
        lab::Reply::text("Fine."),
    ];
    let server = ClaudeServer::start(KEY, script);
    let mut told = Told::default();
    let reply = send(&client(&server), &question("Hi?"), &mut told).expect("an answer after the wait");
    assert_eq!(text_of(&reply), "Fine.");

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let waited = requests[1].at.duration_since(requests[0].at);
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
    assert_eq!(told.retries.len(), 1);
    let (attempt, wait, reason) = &told.retries[0];
    assert_eq!((*attempt, *wait), (2, Duration::from_secs(1)));
    assert!(reason.contains("rate_limit_error") && reason.contains("req_0001"), "{reason}");
    server.assert_clean();
}

#[test]
fn claude_client_retries_overloaded_and_server_errors() {
    let script = vec![
        overloaded(),
        lab::Reply::Status {
            status: 500,
            kind: "api_error",
            message: "Internal server error".into(),
            retry_after: None,
        },
        lab::Reply::text("Third time lucky."),
    ];
    let server = ClaudeServer::start(KEY, script);
    let mut told = Told::default();
    let reply = send(&client(&server), &question("Hi?"), &mut told).expect("an answer");
    assert_eq!(text_of(&reply), "Third time lucky.");
    assert_eq!(reply.request_id.as_deref(), Some("req_0003"));
    assert_eq!(server.requests().len(), 3);
    let attempts: Vec<u32> = told.retries.iter().map(|(attempt, _, _)| *attempt).collect();
    assert_eq!(attempts, [2, 3]);
    assert!(told.retries[0].2.contains("overloaded_error"), "{:?}", told.retries);
    assert!(told.retries[1].2.contains("api_error"), "{:?}", told.retries);
    server.assert_clean();
}

#[test]
fn claude_client_retries_an_error_event_after_http_200() {
    let script = vec![
        lab::Reply::ErrorEvent { kind: "overloaded_error", message: "Overloaded".into() },
        lab::Reply::text("Back."),
    ];
    let server = ClaudeServer::start(KEY, script);
    let mut told = Told::default();
    let reply = send(&client(&server), &question("Hi?"), &mut told).expect("an answer");
    assert_eq!(text_of(&reply), "Back.");
    assert_eq!(server.requests().len(), 2);
    assert_eq!(told.retries.len(), 1);
    let reason = &told.retries[0].2;
    assert!(reason.contains("overloaded_error") && reason.contains("error event"), "{reason}");
    server.assert_clean();
}

#[test]
fn claude_client_retries_a_cut_stream_and_says_the_text_starts_over() {
    let script = vec![
        lab::Reply::CutStream(vec![lab::Block::Text("A partial answer that never ends".into())]),
        lab::Reply::text("A whole answer."),
    ];
    let server = ClaudeServer::start(KEY, script);
    let mut told = Told::default();
    let reply = send(&client(&server), &question("Hi?"), &mut told).expect("an answer");
    assert_eq!(text_of(&reply), "A whole answer.");
    assert_eq!(server.requests().len(), 2);
    assert_eq!(told.retries.len(), 1);
    assert!(told.retries[0].2.contains("broke off"), "{:?}", told.retries);
    // The cut attempt's piece came first; the retry's text is whole after it.
    assert!(told.texts.concat().ends_with("A whole answer."), "{:?}", told.texts);
    assert!(told.texts[0].starts_with("A partial"), "{:?}", told.texts);
    server.assert_clean();
}

#[test]
fn claude_client_reports_a_wrong_key_at_once() {
    let server = ClaudeServer::start(KEY, vec![lab::Reply::text("unused")]);
    let client = Client::new(config(server.url(), "sk-ant-wrong-key-000")).unwrap();
    let error = send(&client, &question("Hi?"), &mut Told::default()).unwrap_err();
    assert!(matches!(error, ApiError::Auth(_)), "{error:?}");
    assert_eq!(error.request_id(), Some("req_0001"));
    let text = error.to_string();
    for part in ["authentication_error", "invalid x-api-key", "req_0001", "ANTHROPIC_API_KEY"] {
        assert!(text.contains(part), "{part} in: {text}");
    }
    assert!(!text.contains("sk-ant-wrong-key-000"), "the key is not shown: {text}");
    assert_eq!(server.requests().len(), 1, "not retried");
    // The lab counts the wrong key as the one problem.
    assert_eq!(server.problems(), ["req_0001: invalid x-api-key"]);
}

#[test]
fn claude_client_reports_an_invalid_request_as_a_bug() {
    let message = "messages.0.content.0.text: Field required";
    let script = vec![lab::Reply::Status {
        status: 400,
        kind: "invalid_request_error",
        message: message.into(),
        retry_after: None,
    }];
    let server = ClaudeServer::start(KEY, script);
    let error = send(&client(&server), &question("Hi?"), &mut Told::default()).unwrap_err();
    assert!(matches!(error, ApiError::Invalid(_)), "{error:?}");
    let text = error.to_string();
    for part in ["invalid_request_error", message, "req_0001", "bug in egressor", "report"] {
        assert!(text.contains(part), "{part} in: {text}");
    }
    assert_eq!(server.requests().len(), 1, "not retried");
    server.assert_clean();
}

#[test]
fn claude_client_does_not_retry_a_spend_limit() {
    let message = "This request would exceed your account's monthly spend limit. Please try again later.";
    let script = vec![
        lab::Reply::Status {
            status: 429,
            kind: "rate_limit_error",
            message: message.into(),
            retry_after: None,
        },
        lab::Reply::text("unused"),
    ];
    let server = ClaudeServer::start(KEY, script);
    let mut told = Told::default();
    let error = send(&client(&server), &question("Hi?"), &mut told).unwrap_err();
    assert!(matches!(error, ApiError::Billing(_)), "{error:?}");
    let text = error.to_string();
    for part in ["rate_limit_error", message, "req_0001", "Retrying will not help", "Claude Console"] {
        assert!(text.contains(part), "{part} in: {text}");
    }
    assert_eq!(server.requests().len(), 1, "not retried");
    assert!(told.retries.is_empty());
    server.assert_clean();
}

#[test]
fn claude_client_gives_up_after_max_attempts() {
    let server = ClaudeServer::start(KEY, vec![overloaded(), overloaded(), overloaded(), overloaded()]);
    let mut told = Told::default();
    let error = send(&client(&server), &question("Hi?"), &mut told).unwrap_err();
    assert!(matches!(error, ApiError::GaveUp { attempts: 4, .. }), "{error:?}");
    let text = error.to_string();
    for part in ["after 4 attempts", "overloaded_error", "Overloaded", "req_0004", "try again"] {
        assert!(text.contains(part), "{part} in: {text}");
    }
    assert_eq!(server.requests().len(), 4);
    assert_eq!(told.retries.len(), 3);
    // Exponential backoff: each wait at least half of 0.5 s, 1 s, 2 s.
    for ((_, wait, _), base) in told.retries.iter().zip([500, 1000, 2000]) {
        let base = Duration::from_millis(base);
        assert!(*wait >= base / 2 && *wait <= base, "{wait:?} for {base:?}");
    }
    server.assert_clean();
}

#[test]
fn claude_client_does_not_wait_longer_than_max_wait() {
    let script = vec![
        lab::Reply::Status {
            status: 429,
            kind: "rate_limit_error",
            message: "Number of requests has exceeded your rate limit.".into(),
            retry_after: Some(300),
        },
        lab::Reply::text("unused"),
    ];
    let server = ClaudeServer::start(KEY, script);
    let error = send(&client(&server), &question("Hi?"), &mut Told::default()).unwrap_err();
    assert!(matches!(error, ApiError::RetryLater { .. }), "{error:?}");
    let text = error.to_string();
    for part in ["wait 5 min", "waits (1 min)", "rate_limit_error", "req_0001", "Try again after"] {
        assert!(text.contains(part), "{part} in: {text}");
    }
    assert_eq!(server.requests().len(), 1);
    server.assert_clean();
}

#[test]
fn claude_client_gives_up_when_nothing_answers() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = Config { max_attempts: 2, ..config(format!("http://127.0.0.1:{port}"), KEY) };
    let client = Client::new(cfg).unwrap();
    let mut told = Told::default();
    let error = send(&client, &question("Hi?"), &mut told).unwrap_err();
    assert!(matches!(error, ApiError::GaveUp { attempts: 2, .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("after 2 attempts") && text.contains("ANTHROPIC_BASE_URL"), "{text}");
    assert_eq!(told.retries.len(), 1);
}

#[test]
fn claude_client_sends_once_without_streaming() {
    let input = json!({"limit": 2});
    let script = vec![lab::Reply::Message(vec![
        lab::Block::Text("Checking.".into()),
        lab::Block::tool_use("toolu_07", "top_talkers", input.clone()),
    ])];
    let server = ClaudeServer::start(KEY, script);
    let tools = tools();
    let messages = question("Who sends the most?");
    let reply = client(&server)
        .send_once(&Request { system: "You explain egress.", tools: &tools, messages: &messages })
        .expect("an answer");
    assert_eq!(
        reply.content,
        [
            Block::Text { text: "Checking.".into() },
            Block::ToolUse { id: "toolu_07".into(), name: "top_talkers".into(), input },
        ]
    );
    assert_eq!(reply.stop_reason.as_deref(), Some("tool_use"));
    assert_eq!(reply.request_id.as_deref(), Some("req_0001"));
    let requests = server.requests();
    assert_eq!(requests[0].body["stream"], Value::Bool(false));
    server.assert_clean();
}

#[test]
fn claude_client_config_from_the_environment() {
    // Only what does not depend on the test process's environment: the explicit model wins.
    if let Some(cfg) = Config::from_env(Some("claude-other")) {
        assert_eq!(cfg.model, "claude-other");
        assert!(!cfg.api_key.is_empty());
        assert!(!cfg.base_url.ends_with('/'));
    }
    assert_eq!(claude::DEFAULT_MODEL, "claude-sonnet-5-5");
    let bad = Config {
        base_url: "not a url".into(),
        api_key: KEY.into(),
        model: "m".into(),
        max_tokens: 1,
        max_attempts: 1,
        max_wait: Duration::from_secs(1),
    };
    let error = Client::new(bad).err().expect("a bad base URL is refused").to_string();
    assert!(error.contains("ANTHROPIC_BASE_URL"), "{error}");
}
