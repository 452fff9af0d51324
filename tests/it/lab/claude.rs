//! A stand-in for the Anthropic Messages API (`POST /v1/messages`) for the integration tests.
//!
//! `egressor ask` is pointed at it with `ANTHROPIC_BASE_URL=http://127.0.0.1:PORT`. It answers
//! from a script, one [`Reply`] per valid request, in the API's wire format: a message object, or
//! a server-sent event stream (`message_start`, `content_block_start`, `ping`,
//! `content_block_delta` with `text_delta`/`input_json_delta`, `content_block_stop`,
//! `message_delta`, `message_stop`, plus an event of a type the API may add later), or an error
//! body with its `request_id`. Every response has a `request-id` header.
//!
//! It checks every request the way the real API would reject it (endpoint, `x-api-key`,
//! `anthropic-version`, `content-type`, the request schema with unknown fields refused, role
//! order, the tool-use protocol) and what only a test can: that the assistant turns a client
//! replays are the ones this server sent (none invented, altered or dropped, and a tool request
//! answered in the very next request), that the API key is not in the body, and that no forbidden
//! text (see [`ClaudeServer::forbid`]) is anywhere in a request. Each failed check is a problem
//! ([`ClaudeServer::problems`]) and the request gets the API's error response: 404
//! `not_found_error`, 401 `authentication_error`, or 400 `invalid_request_error` with the
//! message the first failed check gives (the real API's wording where it has one).
//!
//! The HTTP/1.1 layer is written by hand on tokio, as in `api`: a stream goes out event by event
//! (each event split over two chunks, so a client must reassemble lines across reads) and
//! [`Reply::CutStream`] stops mid-way without the terminating chunk.

use std::collections::{HashSet, VecDeque};
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::http;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// The only `anthropic-version` the API has for the Messages API.
const API_VERSION: &str = "2023-06-01";

/// The pause after each half of a streamed event, so a client sees the stream arrive in pieces.
const EVENT_GAP: Duration = Duration::from_millis(2);

/// Top-level request fields the real API accepts (besides the required three).
const TOP_LEVEL_FIELDS: &[&str] = &[
    "model",
    "max_tokens",
    "messages",
    "system",
    "stream",
    "tools",
    "tool_choice",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "metadata",
    "thinking",
    "service_tier",
];

/// One scripted answer; the server uses the next one for each request that passes its checks (a
/// rejected request does not use one).
#[derive(Clone, Debug)]
pub enum Reply {
    /// A normal answer: content blocks; sent as SSE if the request had `"stream": true`, else as
    /// one JSON message. `stop_reason` is `tool_use` if a block is a tool use, else `end_turn`.
    Message(Vec<Block>),
    /// An HTTP error status with the API's error body: (status, error type, message, the
    /// `retry-after` header in seconds if any).
    Status { status: u16, kind: &'static str, message: String, retry_after: Option<u64> },
    /// Streaming only: HTTP 200, `message_start`, the first block's `content_block_start` and
    /// one delta, then the connection is closed without `message_stop` (or the final chunk).
    CutStream(Vec<Block>),
    /// Streaming only: HTTP 200, `message_start`, then `event: error` with this error
    /// type/message (e.g. `overloaded_error`), as the API reports failures after the 200.
    ErrorEvent { kind: &'static str, message: String },
}

impl Reply {
    /// A message with one text block.
    pub fn text(text: &str) -> Reply {
        Reply::Message(vec![Block::Text(text.to_string())])
    }
}

/// A content block of an assistant message.
#[derive(Clone, Debug)]
pub enum Block {
    Text(String),
    /// `id` as the script gives it (e.g. `toolu_01`); `input` a JSON object.
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
}

impl Block {
    pub fn tool_use(id: &str, name: &str, input: Value) -> Block {
        Block::ToolUse { id: id.to_string(), name: name.to_string(), input }
    }

    /// The block as the API returns it in a message.
    fn to_json(&self) -> Value {
        match self {
            Block::Text(text) => json!({"type": "text", "text": text}),
            Block::ToolUse { id, name, input } => {
                json!({"type": "tool_use", "id": id, "name": name, "input": input})
            }
        }
    }

    /// The block as `content_block_start` announces it: empty text, or the tool use with `{}`.
    fn start_json(&self) -> Value {
        match self {
            Block::Text(_) => json!({"type": "text", "text": ""}),
            Block::ToolUse { id, name, .. } => {
                json!({"type": "tool_use", "id": id, "name": name, "input": {}})
            }
        }
    }

    /// The `delta`s of its `content_block_delta` events: the text in several pieces, or the
    /// input's JSON in several pieces cut anywhere (after an empty first one, as the API does).
    fn deltas(&self) -> Vec<Value> {
        match self {
            Block::Text(text) => {
                pieces(text, 3).into_iter().map(|p| json!({"type": "text_delta", "text": p})).collect()
            }
            Block::ToolUse { input, .. } => {
                let input = serde_json::to_string(input).expect("JSON values serialize");
                std::iter::once("")
                    .chain(pieces(&input, 3))
                    .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                    .collect()
            }
        }
    }

    fn tokens(&self) -> u64 {
        let length = match self {
            Block::Text(text) => text.len(),
            Block::ToolUse { input, .. } => input.to_string().len(),
        };
        length as u64 / 4 + 1
    }
}

/// One request as the server received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// When it had been read in full.
    pub at: Instant,
    /// In the order sent; names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`null` if it was not JSON).
    pub body: Value,
    /// The request line, the headers and the body as received (the body decoded lossily).
    pub raw: String,
    /// The `request-id` the response carried (`req_0001` for the first request, and so on).
    pub request_id: String,
    /// The response's HTTP status.
    pub status: u16,
}

/// A `tool_result` block a request sent back.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolResult {
    pub tool_use_id: String,
    /// The content: the string, or the text blocks' texts joined by newlines.
    pub text: String,
    pub is_error: bool,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The `tool_result` blocks of the request's last message, in order.
    pub fn tool_results(&self) -> Vec<ToolResult> {
        let last = self.body.get("messages").and_then(Value::as_array).and_then(|m| m.last());
        let blocks = last.and_then(|m| m.get("content")).and_then(Value::as_array);
        blocks
            .into_iter()
            .flatten()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
            .map(|b| ToolResult {
                tool_use_id: b.get("tool_use_id").and_then(Value::as_str).unwrap_or_default().to_string(),
                text: match b.get("content") {
                    Some(Value::String(text)) => text.clone(),
                    Some(Value::Array(parts)) => parts
                        .iter()
                        .filter_map(|p| p.get("text").and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    _ => String::new(),
                },
                is_error: b.get("is_error").and_then(Value::as_bool).unwrap_or(false),
            })
            .collect()
    }
}

/// A running stand-in for the Messages API on `127.0.0.1` at a random port. It stops when dropped.
pub struct ClaudeServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    /// Dropping the sender ends the server thread.
    _stop: oneshot::Sender<()>,
}

impl ClaudeServer {
    /// Serves on a background thread with its own tokio runtime; requests must carry `api_key` as
    /// `x-api-key` (and, if it has 8 characters or more, must not carry it in the body). `script` is answered in order, one reply per valid request; a valid request
    /// beyond it gets a 500 `api_error` and is a problem.
    pub fn start(api_key: &str, script: Vec<Reply>) -> ClaudeServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the test Claude API");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let addr = listener.local_addr().expect("the test Claude API's address");
        let state = State { script: script.into(), ..State::default() };
        let shared = Arc::new(Shared { api_key: api_key.to_string(), state: Mutex::new(state) });
        let (stop, stopped) = oneshot::channel();
        let serving = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("lab-claude".into())
            .spawn(move || run_server(serving, listener, stopped))
            .expect("start the test Claude API thread");
        ClaudeServer { shared, addr, _stop: stop }
    }

    /// Strings that must never appear in a request (e.g. the workspace's IP addresses): searched
    /// in the request line, every header but `host` (the client derives it from the base URL),
    /// the body's JSON strings and keys, and the raw body. Each hit is a problem naming the
    /// needle and where it was, and the request gets a 400. Adds to earlier needles.
    pub fn forbid(&self, needles: Vec<String>) {
        self.shared.state().forbidden.extend(needles);
    }

    /// `http://127.0.0.1:PORT`, for `ANTHROPIC_BASE_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.state().requests.clone()
    }

    /// Every failed check, in words, each starting with the request's id.
    pub fn problems(&self) -> Vec<String> {
        self.shared.state().problems.clone()
    }

    /// Panics listing the problems, if there are any.
    pub fn assert_clean(&self) {
        let problems = self.problems();
        assert!(
            problems.is_empty(),
            "the test Claude API found {} problem(s) with the requests it got:\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// State

struct Shared {
    api_key: String,
    state: Mutex<State>,
}

impl Shared {
    /// A test that panicked while holding the lock leaves usable state behind.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
struct State {
    script: VecDeque<Reply>,
    forbidden: Vec<String>,
    requests: Vec<Recorded>,
    problems: Vec<String>,
    /// Every complete assistant message sent, in order.
    sent: Vec<Sent>,
    /// A sent turn with tool uses that the next request must replay.
    pending: Option<usize>,
    messages: u64,
}

/// An assistant turn the server sent.
struct Sent {
    id: String,
    /// Its content blocks as [`normalized`].
    content: Vec<Value>,
    tool_ids: Vec<String>,
}

/// A failed check: the error response it calls for, and the problem.
struct Failure {
    status: u16,
    kind: &'static str,
    message: String,
}

impl Failure {
    fn invalid(message: String) -> Failure {
        Failure { status: 400, kind: "invalid_request_error", message }
    }
}

enum Response {
    Json {
        status: u16,
        headers: Vec<(String, String)>,
        body: Value,
    },
    /// SSE events (name, data); `cut` closes the connection after them, unfinished.
    Stream {
        events: Vec<(&'static str, Value)>,
        cut: bool,
    },
}

impl Response {
    fn status(&self) -> u16 {
        match self {
            Response::Json { status, .. } => *status,
            Response::Stream { .. } => 200,
        }
    }
}

fn error_response(
    status: u16,
    kind: &str,
    message: &str,
    request_id: &str,
    retry_after: Option<u64>,
) -> Response {
    let mut headers = Vec::new();
    if let Some(seconds) = retry_after {
        headers.push(("retry-after".to_string(), seconds.to_string()));
    }
    let body = json!({
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": request_id,
    });
    Response::Json { status, headers, body }
}

// ---------------------------------------------------------------------------------------------
// Handling one request

fn handle(shared: &Shared, request: &HttpRequest) -> (String, Response) {
    let mut state = shared.state();
    let request_id = format!("req_{:04}", state.requests.len() + 1);
    let parsed = serde_json::from_slice::<Value>(&request.body);
    let body = parsed.as_ref().cloned().unwrap_or(Value::Null);
    let mut failures = Vec::new();

    let routed = request.method == "POST" && request.path == "/v1/messages";
    if !routed {
        let problem = format!("{} {}: the Messages API has no such endpoint", request.method, request.path);
        failures.push(Failure { status: 404, kind: "not_found_error", message: problem });
    }
    match request.header("x-api-key") {
        None => failures.push(Failure {
            status: 401,
            kind: "authentication_error",
            message: "x-api-key header is required".into(),
        }),
        Some(key) if key != shared.api_key => failures.push(Failure {
            status: 401,
            kind: "authentication_error",
            message: "invalid x-api-key".into(),
        }),
        Some(_) => {}
    }
    match request.header("anthropic-version") {
        None => failures.push(Failure::invalid("anthropic-version: header is required".into())),
        Some(API_VERSION) => {}
        Some(other) => {
            failures.push(Failure::invalid(format!("anthropic-version: {other:?} is not a valid version")))
        }
    }
    if routed {
        let media_type = request.header("content-type").unwrap_or_default();
        let media_type = media_type.split(';').next().unwrap_or_default().trim();
        if !media_type.eq_ignore_ascii_case("application/json") {
            let message = format!("content-type: {media_type:?} is not supported; send application/json");
            failures.push(Failure::invalid(message));
        }
        // A key too short to be distinctive would be found in any body by chance.
        let distinctive = shared.api_key.len() >= 8;
        if distinctive && String::from_utf8_lossy(&request.body).contains(&shared.api_key) {
            failures.push(Failure::invalid("body: the API key is in the request body".into()));
        }
    }
    for hit in forbidden_hits(request, &body, &state.forbidden) {
        failures.push(Failure::invalid(hit));
    }
    if routed {
        match &parsed {
            Err(error) => failures.push(Failure::invalid(format!(
                "There was an error parsing the body of your request as JSON: {error}"
            ))),
            Ok(body) => {
                let mut errors = validate_request(body);
                check_conversation(&mut state, body, &mut errors);
                failures.extend(errors.into_iter().map(Failure::invalid));
            }
        }
    }

    let mut problems: Vec<String> = failures.iter().map(|f| f.message.clone()).collect();
    let response = match failures.first() {
        Some(first) => error_response(first.status, first.kind, &first.message, &request_id, None),
        None => state.reply(&body, request.body.len(), &request_id, &mut problems),
    };
    for problem in problems {
        state.problems.push(format!("{request_id}: {problem}"));
    }
    state.requests.push(Recorded {
        at: request.at,
        headers: request.headers.clone(),
        body,
        raw: request.raw.clone(),
        request_id: request_id.clone(),
        status: response.status(),
    });
    (request_id, response)
}

impl State {
    /// The next scripted reply to a valid request.
    fn reply(
        &mut self,
        body: &Value,
        body_len: usize,
        request_id: &str,
        problems: &mut Vec<String>,
    ) -> Response {
        let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
        let model = body.get("model").and_then(Value::as_str).unwrap_or_default();
        let input_tokens = body_len as u64 / 4 + 1;
        let Some(reply) = self.script.pop_front() else {
            problems.push("a request beyond the script: every scripted reply was used".into());
            return error_response(500, "api_error", "Internal server error", request_id, None);
        };
        match reply {
            Reply::Message(blocks) => {
                let id = self.message_id();
                let message = message_json(&id, model, &blocks, input_tokens);
                let content: Vec<Value> = blocks.iter().map(Block::to_json).collect();
                let tool_ids = tool_use_ids(&content);
                if !tool_ids.is_empty() {
                    self.pending = Some(self.sent.len());
                }
                self.sent.push(Sent { id, content, tool_ids });
                if stream {
                    Response::Stream { events: stream_events(&message, &blocks), cut: false }
                } else {
                    Response::Json { status: 200, headers: Vec::new(), body: message }
                }
            }
            Reply::Status { status, kind, message, retry_after } => {
                error_response(status, kind, &message, request_id, retry_after)
            }
            Reply::CutStream(blocks) if stream => {
                let id = self.message_id();
                let message = message_json(&id, model, &blocks, input_tokens);
                let mut events = vec![message_start(&message)];
                if let Some(first) = blocks.first() {
                    events.push(block_start(0, first));
                    events.extend(first.deltas().into_iter().take(1).map(|d| block_delta(0, d)));
                }
                Response::Stream { events, cut: true }
            }
            Reply::ErrorEvent { kind, message } if stream => {
                let id = self.message_id();
                let start = message_json(&id, model, &[], input_tokens);
                let error = json!({"type": "error", "error": {"type": kind, "message": message}});
                Response::Stream { events: vec![message_start(&start), ("error", error)], cut: false }
            }
            Reply::CutStream(_) | Reply::ErrorEvent { .. } => {
                problems.push(
                    "the script's next reply is streaming-only, but the request did not ask for a stream"
                        .into(),
                );
                error_response(500, "api_error", "Internal server error", request_id, None)
            }
        }
    }

    fn message_id(&mut self) -> String {
        self.messages += 1;
        format!("msg_{:04}", self.messages)
    }
}

/// The complete message object, as a non-streaming response returns it.
fn message_json(id: &str, model: &str, blocks: &[Block], input_tokens: u64) -> Value {
    let uses_tools = blocks.iter().any(|b| matches!(b, Block::ToolUse { .. }));
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks.iter().map(Block::to_json).collect::<Vec<_>>(),
        "stop_reason": if uses_tools { "tool_use" } else { "end_turn" },
        "stop_sequence": null,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": blocks.iter().map(Block::tokens).sum::<u64>(),
        },
    })
}

fn message_start(message: &Value) -> (&'static str, Value) {
    let mut start = message.clone();
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    start["usage"]["output_tokens"] = json!(1);
    ("message_start", json!({"type": "message_start", "message": start}))
}

fn block_start(index: usize, block: &Block) -> (&'static str, Value) {
    let data = json!({"type": "content_block_start", "index": index, "content_block": block.start_json()});
    ("content_block_start", data)
}

fn block_delta(index: usize, delta: Value) -> (&'static str, Value) {
    ("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": delta}))
}

/// The whole event stream of a message, with one `ping` and one event of a type a client does
/// not know (the API documents that new event types may appear) during the first block.
fn stream_events(message: &Value, blocks: &[Block]) -> Vec<(&'static str, Value)> {
    let ping = ("ping", json!({"type": "ping"}));
    let future = ("future_event_type", json!({"type": "future_event_type", "detail": {"note": "ignore me"}}));
    let mut events = vec![message_start(message)];
    if blocks.is_empty() {
        events.extend([ping.clone(), future.clone()]);
    }
    for (index, block) in blocks.iter().enumerate() {
        events.push(block_start(index, block));
        if index == 0 {
            events.push(ping.clone());
        }
        events.extend(block.deltas().into_iter().map(|d| block_delta(index, d)));
        if index == 0 {
            events.push(future.clone());
        }
        events.push(("content_block_stop", json!({"type": "content_block_stop", "index": index})));
    }
    let delta = json!({
        "type": "message_delta",
        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": null},
        "usage": {"output_tokens": message["usage"]["output_tokens"]},
    });
    events.push(("message_delta", delta));
    events.push(("message_stop", json!({"type": "message_stop"})));
    events
}

/// `text` in up to `n` non-empty pieces, cut at character boundaries.
fn pieces(text: &str, n: usize) -> Vec<&str> {
    let cuts: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    let size = cuts.len().div_ceil(n).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    for cut in cuts.iter().skip(size).step_by(size) {
        out.push(&text[start..*cut]);
        start = *cut;
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// The ids of the `tool_use` blocks among `blocks`.
fn tool_use_ids(blocks: &[Value]) -> Vec<String> {
    blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
        .filter_map(|b| b.get("id").and_then(Value::as_str).map(str::to_string))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Forbidden text

fn forbidden_hits(request: &HttpRequest, body: &Value, needles: &[String]) -> Vec<String> {
    let mut hits = Vec::new();
    for needle in needles.iter().filter(|n| !n.is_empty()) {
        let mut places = Vec::new();
        if request.line.contains(needle.as_str()) {
            places.push("the request line".to_string());
        }
        for (name, value) in request.headers.iter().filter(|(name, _)| name != "host") {
            if name.contains(needle.as_str()) || value.contains(needle.as_str()) {
                places.push(format!("header {name}"));
            }
        }
        let in_body = places.len();
        find_in_json(body, "", needle, &mut places);
        if places.len() == in_body && String::from_utf8_lossy(&request.body).contains(needle.as_str()) {
            places.push("the body".to_string());
        }
        for place in places {
            hits.push(format!("forbidden text {needle:?} in {place}"));
        }
    }
    hits
}

/// Where in `value` (as API paths: `messages.2.content.0.content`) a string or key holds `needle`.
fn find_in_json(value: &Value, path: &str, needle: &str, places: &mut Vec<String>) {
    let at =
        |path: &str| if path.is_empty() { "the body".to_string() } else { format!("the body at {path}") };
    let join = |key: &str| if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
    match value {
        Value::String(text) if text.contains(needle) => places.push(at(path)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                find_in_json(item, &join(&i.to_string()), needle, places);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                if key.contains(needle) {
                    places.push(format!("a key of {}", at(path)));
                }
                find_in_json(item, &join(key), needle, places);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// The request schema

/// Everything wrong with a request body as the Messages API would see it, as `path: message`.
fn validate_request(body: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let Some(top) = body.as_object() else {
        errors.push("body: Input should be a valid dictionary".into());
        return errors;
    };
    extra_fields(top, TOP_LEVEL_FIELDS, "", &mut errors);
    match top.get("model") {
        None => errors.push("model: Field required".into()),
        Some(Value::String(model)) if model.is_empty() => {
            errors.push("model: String should have at least 1 character".into())
        }
        Some(Value::String(_)) => {}
        Some(_) => errors.push("model: Input should be a valid string".into()),
    }
    match top.get("max_tokens").map(Value::as_i64) {
        None => errors.push("max_tokens: Field required".into()),
        Some(None) => errors.push("max_tokens: Input should be a valid integer".into()),
        Some(Some(n)) if n < 1 => {
            errors.push("max_tokens: Input should be greater than or equal to 1".into())
        }
        Some(Some(_)) => {}
    }
    match top.get("messages") {
        None => errors.push("messages: Field required".into()),
        Some(Value::Array(messages)) if messages.is_empty() => {
            errors.push("messages: at least one message is required".into())
        }
        Some(Value::Array(messages)) => validate_messages(messages, &mut errors),
        Some(_) => errors.push("messages: Input should be a valid list".into()),
    }
    match top.get("system") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(blocks)) => {
            for (i, block) in blocks.iter().enumerate() {
                validate_text_block(block, &format!("system.{i}"), &mut errors);
            }
        }
        Some(_) => errors.push("system: Input should be a valid string or a list of text blocks".into()),
    }
    if top.get("stream").is_some_and(|s| !s.is_boolean()) {
        errors.push("stream: Input should be a valid boolean".into());
    }
    for field in ["temperature", "top_p"] {
        match top.get(field).map(Value::as_f64) {
            None => {}
            Some(Some(x)) if (0.0..=1.0).contains(&x) => {}
            Some(Some(_)) => errors.push(format!("{field}: Input should be between 0 and 1")),
            Some(None) => errors.push(format!("{field}: Input should be a valid number")),
        }
    }
    if top.get("top_k").is_some_and(|k| k.as_u64().is_none()) {
        errors.push("top_k: Input should be a non-negative integer".into());
    }
    if let Some(stops) = top.get("stop_sequences")
        && !stops.as_array().is_some_and(|s| s.iter().all(Value::is_string))
    {
        errors.push("stop_sequences: Input should be a valid list of strings".into());
    }
    if let Some(metadata) = top.get("metadata") {
        match metadata.as_object() {
            Some(map) => {
                extra_fields(map, &["user_id"], "metadata", &mut errors);
                if map.get("user_id").is_some_and(|u| !u.is_string() && !u.is_null()) {
                    errors.push("metadata.user_id: Input should be a valid string".into());
                }
            }
            None => errors.push("metadata: Input should be a valid dictionary".into()),
        }
    }
    if let Some(thinking) = top.get("thinking") {
        validate_thinking(thinking, &mut errors);
    }
    if let Some(tier) = top.get("service_tier")
        && !matches!(tier.as_str(), Some("auto" | "standard_only"))
    {
        errors.push("service_tier: Input should be 'auto' or 'standard_only'".into());
    }
    let tools = validate_tools(top.get("tools"), &mut errors);
    if let Some(choice) = top.get("tool_choice") {
        validate_tool_choice(choice, top.contains_key("tools"), &tools, &mut errors);
    }
    errors
}

/// `path.key: Extra inputs are not permitted` for every key not in `allowed`.
fn extra_fields(map: &Map<String, Value>, allowed: &[&str], path: &str, errors: &mut Vec<String>) {
    for key in map.keys().filter(|k| !allowed.contains(&k.as_str())) {
        let at = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
        errors.push(format!("{at}: Extra inputs are not permitted"));
    }
}

fn validate_messages(messages: &[Value], errors: &mut Vec<String>) {
    let mut previous = None;
    for (i, message) in messages.iter().enumerate() {
        let path = format!("messages.{i}");
        let Some(map) = message.as_object() else {
            errors.push(format!("{path}: Input should be a valid dictionary"));
            continue;
        };
        extra_fields(map, &["role", "content"], &path, errors);
        let role = match map.get("role").and_then(Value::as_str) {
            Some(role @ ("user" | "assistant")) => role,
            Some(_) => {
                errors.push(format!("{path}.role: Input should be 'user' or 'assistant'"));
                continue;
            }
            None => {
                errors.push(format!("{path}.role: Field required"));
                continue;
            }
        };
        if i == 0 && role != "user" {
            errors.push(r#"messages: first message must use the "user" role"#.into());
        }
        if previous == Some(role) {
            errors.push(format!(
                r#"messages: roles must alternate between "user" and "assistant", but found multiple "{role}" roles in a row"#
            ));
        }
        previous = Some(role);
        let empty = || {
            format!(
                "{path}: all messages must have non-empty content except for the optional final assistant message"
            )
        };
        match map.get("content") {
            None => errors.push(format!("{path}.content: Field required")),
            Some(Value::String(text)) if text.is_empty() => errors.push(empty()),
            Some(Value::String(_)) => {}
            Some(Value::Array(blocks)) if blocks.is_empty() => errors.push(empty()),
            Some(Value::Array(blocks)) => {
                for (k, block) in blocks.iter().enumerate() {
                    validate_block(block, &format!("{path}.content.{k}"), role, errors);
                }
            }
            Some(_) => errors
                .push(format!("{path}.content: Input should be a valid string or list of content blocks")),
        }
    }
}

fn validate_block(block: &Value, path: &str, role: &str, errors: &mut Vec<String>) {
    let Some(map) = block.as_object() else {
        errors.push(format!("{path}: Input should be a valid dictionary"));
        return;
    };
    let Some(kind) = map.get("type").and_then(Value::as_str) else {
        errors.push(format!("{path}: Unable to extract tag using discriminator 'type'"));
        return;
    };
    match kind {
        "text" => validate_text_block(block, path, errors),
        "tool_use" => {
            if role != "assistant" {
                errors.push(format!("{path}: `tool_use` blocks may only be in assistant messages"));
            }
            extra_fields(map, &["type", "id", "name", "input", "cache_control"], path, errors);
            match map.get("id").and_then(Value::as_str) {
                Some(id) if !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') => {}
                Some(_) => errors.push(format!("{path}.id: String should match pattern '^[a-zA-Z0-9_-]+$'")),
                None => errors.push(format!("{path}.id: Field required")),
            }
            match map.get("name").and_then(Value::as_str) {
                Some(name) if valid_tool_name(name) => {}
                Some(_) => errors.push(format!("{path}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")),
                None => errors.push(format!("{path}.name: Field required")),
            }
            if !map.get("input").is_some_and(Value::is_object) {
                errors.push(format!("{path}.input: Input should be a valid dictionary"));
            }
        }
        "tool_result" => {
            if role != "user" {
                errors.push(format!("{path}: `tool_result` blocks may only be in user messages"));
            }
            extra_fields(map, &["type", "tool_use_id", "content", "is_error", "cache_control"], path, errors);
            if !map.get("tool_use_id").is_some_and(Value::is_string) {
                errors.push(format!("{path}.tool_use_id: Field required (a string)"));
            }
            match map.get("content") {
                None | Some(Value::String(_)) => {}
                Some(Value::Array(parts)) => {
                    for (j, part) in parts.iter().enumerate() {
                        validate_text_block(part, &format!("{path}.content.{j}"), errors);
                    }
                }
                Some(_) => errors.push(format!("{path}.content: Input should be a valid string or list of text blocks")),
            }
            if map.get("is_error").is_some_and(|e| !e.is_boolean()) {
                errors.push(format!("{path}.is_error: Input should be a valid boolean"));
            }
        }
        other => errors.push(format!(
            "{path}: Input tag '{other}' found using 'type' does not match any of the expected tags: 'text', 'tool_use', 'tool_result'"
        )),
    }
}

fn validate_text_block(block: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(map) = block.as_object() else {
        errors.push(format!("{path}: Input should be a valid dictionary"));
        return;
    };
    match map.get("type").and_then(Value::as_str) {
        Some("text") => {}
        Some(other) => {
            errors.push(format!(
                "{path}: Input tag '{other}' found using 'type' does not match the expected tag: 'text'"
            ));
            return;
        }
        None => {
            errors.push(format!("{path}: Unable to extract tag using discriminator 'type'"));
            return;
        }
    }
    extra_fields(map, &["type", "text", "cache_control", "citations"], path, errors);
    match map.get("text") {
        Some(Value::String(text)) if text.is_empty() => {
            errors.push(format!("{path}: text content blocks must be non-empty"))
        }
        Some(Value::String(_)) => {}
        Some(_) => errors.push(format!("{path}.text: Input should be a valid string")),
        None => errors.push(format!("{path}.text: Field required")),
    }
}

fn validate_thinking(thinking: &Value, errors: &mut Vec<String>) {
    let Some(map) = thinking.as_object() else {
        errors.push("thinking: Input should be a valid dictionary".into());
        return;
    };
    match map.get("type").and_then(Value::as_str) {
        Some("enabled") => {
            extra_fields(map, &["type", "budget_tokens"], "thinking", errors);
            if map.get("budget_tokens").and_then(Value::as_u64).is_none_or(|b| b < 1024) {
                errors.push("thinking.enabled.budget_tokens: Input should be an integer >= 1024".into());
            }
        }
        Some("disabled") => extra_fields(map, &["type"], "thinking", errors),
        _ => errors
            .push("thinking: Input tag found using 'type' does not match 'enabled' or 'disabled'".into()),
    }
}

fn valid_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Checks `tools` and returns the names it defines. Stricter than the API in one point: every
/// tool must have a description (the model chooses tools by them).
fn validate_tools(tools: Option<&Value>, errors: &mut Vec<String>) -> Vec<String> {
    let mut names = Vec::new();
    let Some(tools) = tools else { return names };
    let Some(tools) = tools.as_array() else {
        errors.push("tools: Input should be a valid list".into());
        return names;
    };
    for (i, tool) in tools.iter().enumerate() {
        let path = format!("tools.{i}");
        let Some(map) = tool.as_object() else {
            errors.push(format!("{path}: Input should be a valid dictionary"));
            continue;
        };
        extra_fields(map, &["type", "name", "description", "input_schema", "cache_control"], &path, errors);
        if map.get("type").is_some_and(|t| t.as_str() != Some("custom")) {
            errors.push(format!("{path}.type: Input should be 'custom'"));
        }
        match map.get("name").and_then(Value::as_str) {
            Some(name) if valid_tool_name(name) => {
                if names.iter().any(|n| n == name) {
                    errors.push("tools: Tool names must be unique.".into());
                }
                names.push(name.to_string());
            }
            Some(_) => {
                errors.push(format!("{path}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"))
            }
            None => errors.push(format!("{path}.name: Field required")),
        }
        match map.get("description") {
            Some(Value::String(d)) if !d.trim().is_empty() => {}
            Some(Value::String(_)) => {
                errors.push(format!("{path}.description: the lab requires a non-empty description"))
            }
            Some(_) => errors.push(format!("{path}.description: Input should be a valid string")),
            None => errors.push(format!("{path}.description: Field required (the lab requires one)")),
        }
        match map.get("input_schema") {
            None => errors.push(format!("{path}.input_schema: Field required")),
            Some(schema) => validate_input_schema(schema, &format!("{path}.input_schema"), errors),
        }
    }
    names
}

fn validate_input_schema(schema: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(map) = schema.as_object() else {
        errors.push(format!("{path}: Input should be a valid dictionary"));
        return;
    };
    if map.get("type").and_then(Value::as_str) != Some("object") {
        errors.push(format!("{path}.type: Input should be 'object'"));
    }
    let properties = match map.get("properties") {
        None => None,
        Some(Value::Object(properties)) => Some(properties),
        Some(_) => {
            errors.push(format!("{path}: JSON schema is invalid - properties must be an object"));
            None
        }
    };
    if let Some(required) = map.get("required") {
        let Some(required) = required.as_array() else {
            errors.push(format!("{path}: JSON schema is invalid - required must be a list of strings"));
            return;
        };
        for name in required {
            match name.as_str() {
                Some(name) if properties.is_some_and(|p| p.contains_key(name)) => {}
                Some(name) => errors.push(format!(
                    "{path}: JSON schema is invalid - required property {name:?} is not in properties"
                )),
                None => errors
                    .push(format!("{path}: JSON schema is invalid - required must be a list of strings")),
            }
        }
    }
}

fn validate_tool_choice(choice: &Value, has_tools: bool, tools: &[String], errors: &mut Vec<String>) {
    let Some(map) = choice.as_object() else {
        errors.push("tool_choice: Input should be a valid dictionary".into());
        return;
    };
    let kind = map.get("type").and_then(Value::as_str).unwrap_or_default();
    match kind {
        "auto" | "any" => extra_fields(map, &["type", "disable_parallel_tool_use"], "tool_choice", errors),
        "tool" => {
            extra_fields(map, &["type", "name", "disable_parallel_tool_use"], "tool_choice", errors);
            match map.get("name").and_then(Value::as_str) {
                Some(name) if tools.iter().any(|t| t == name) => {}
                Some(name) => errors.push(format!("tool_choice.name: tool {name:?} is not in tools")),
                None => errors.push("tool_choice.tool.name: Field required".into()),
            }
        }
        "none" => extra_fields(map, &["type"], "tool_choice", errors),
        other => errors.push(format!(
            "tool_choice: Input tag '{other}' found using 'type' does not match any of the expected tags: 'auto', 'any', 'tool', 'none'"
        )),
    }
    if kind != "none" && !has_tools {
        errors.push("tool_choice: tool_choice may only be specified while providing tools.".into());
    }
    if let Some(disable) = map.get("disable_parallel_tool_use")
        && !disable.is_boolean()
    {
        errors.push("tool_choice.disable_parallel_tool_use: Input should be a valid boolean".into());
    }
}

// ---------------------------------------------------------------------------------------------
// The conversation: the tool-use protocol and the turns this server sent

/// The tool-use protocol over the whole history, and whether the assistant turns are the ones this
/// server sent, in order, with a tool request answered by the very next request.
fn check_conversation(state: &mut State, body: &Value, errors: &mut Vec<String>) {
    let pending = state.pending.take();
    let messages = body.get("messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let tools: Vec<&str> = body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("name").and_then(Value::as_str))
        .collect();
    tool_protocol(messages, &tools, body.get("tools").is_some(), errors);
    let replayed = replayed_turns(&state.sent, messages, errors);
    if let Some(turn) = pending
        && !replayed.contains(&turn)
    {
        let sent = &state.sent[turn];
        errors.push(format!(
            "messages: the reply {} asked for tool results ({}), but the next request does not replay that turn",
            sent.id,
            sent.tool_ids.join(", ")
        ));
    }
}

fn role_of(message: &Value) -> Option<&str> {
    message.get("role").and_then(Value::as_str)
}

/// A message's content blocks; none for string content.
fn blocks_of(message: &Value) -> &[Value] {
    message.get("content").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

fn block_type(block: &Value) -> Option<&str> {
    block.get("type").and_then(Value::as_str)
}

/// The API's rule: the message after an assistant message with `tool_use` blocks is a user
/// message that starts with one `tool_result` per tool use (no more, no fewer), and a
/// `tool_result` answers a `tool_use` of the message right before it. Every tool use names a
/// defined tool and has a unique id.
fn tool_protocol(messages: &[Value], tools: &[&str], has_tools: bool, errors: &mut Vec<String>) {
    let mut ids = HashSet::new();
    for (i, message) in messages.iter().enumerate() {
        let blocks = blocks_of(message);
        match role_of(message) {
            Some("assistant") => {
                let mut uses = Vec::new();
                for (k, block) in blocks.iter().enumerate().filter(|(_, b)| block_type(b) == Some("tool_use"))
                {
                    let id = block.get("id").and_then(Value::as_str).unwrap_or_default();
                    let name = block.get("name").and_then(Value::as_str).unwrap_or_default();
                    if !ids.insert(id) {
                        errors.push(format!("messages.{i}.content.{k}: `tool_use` ids must be unique: {id}"));
                    }
                    if !has_tools {
                        errors.push(format!(
                            "messages.{i}.content.{k}: Requests which include `tool_use` or `tool_result` blocks must define tools."
                        ));
                    } else if !tools.contains(&name) {
                        errors.push(format!(
                            "messages.{i}.content.{k}: the `tool_use` names {name:?}, which is not a tool in tools"
                        ));
                    }
                    uses.push(id);
                }
                if uses.is_empty() {
                    continue;
                }
                let next = messages.get(i + 1).filter(|m| role_of(m) == Some("user"));
                let answered: Vec<&str> = next
                    .map(blocks_of)
                    .unwrap_or_default()
                    .iter()
                    .take_while(|b| block_type(b) == Some("tool_result"))
                    .filter_map(|b| b.get("tool_use_id").and_then(Value::as_str))
                    .collect();
                let missing: Vec<&str> = uses.iter().copied().filter(|id| !answered.contains(id)).collect();
                if !missing.is_empty() {
                    errors.push(format!(
                        "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                        missing.join(", ")
                    ));
                }
            }
            Some("user") => {
                let previous =
                    i.checked_sub(1).map(|p| &messages[p]).filter(|m| role_of(m) == Some("assistant"));
                let asked = tool_use_ids(previous.map(blocks_of).unwrap_or_default());
                let mut answered = HashSet::new();
                let mut leading = true;
                for (k, block) in blocks.iter().enumerate() {
                    if block_type(block) != Some("tool_result") {
                        leading = false;
                        continue;
                    }
                    let id = block.get("tool_use_id").and_then(Value::as_str).unwrap_or_default();
                    if !leading {
                        errors.push(format!(
                            "messages.{i}.content.{k}: `tool_result` blocks must come first in the message, before any other content"
                        ));
                    }
                    if !asked.iter().any(|a| a == id) {
                        errors.push(format!(
                            "messages.{i}.content.{k}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                        ));
                    } else if !answered.insert(id) {
                        errors.push(format!(
                            "messages.{i}.content.{k}: the `tool_use` {id} is answered by more than one `tool_result`"
                        ));
                    }
                }
            }
            _ => {}
        }
    }
}

/// An assistant message's content as this server would have sent it: blocks with only the fields
/// that carry meaning (string content as one text block).
fn normalized(content: Option<&Value>) -> Vec<Value> {
    match content {
        Some(Value::String(text)) => vec![json!({"type": "text", "text": text})],
        Some(Value::Array(blocks)) => blocks
            .iter()
            .map(|b| match block_type(b) {
                Some("text") => json!({"type": "text", "text": b.get("text")}),
                Some("tool_use") => json!({
                    "type": "tool_use",
                    "id": b.get("id"),
                    "name": b.get("name"),
                    "input": b.get("input"),
                }),
                _ => b.clone(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Matches the request's assistant turns with the turns sent: each must be one of them, unaltered,
/// and together they must be consecutive sent turns in order (a gap is a dropped turn), not
/// starting right after a turn that asked for tools (that conversation went on, so its start was
/// dropped). Returns the indices of the sent turns replayed.
fn replayed_turns(sent: &[Sent], messages: &[Value], errors: &mut Vec<String>) -> Vec<usize> {
    let mut replayed: Vec<usize> = Vec::new();
    for (i, message) in messages.iter().enumerate().filter(|(_, m)| role_of(m) == Some("assistant")) {
        let content = normalized(message.get("content"));
        let after = replayed.last().map_or(0, |last| last + 1);
        let found = (after..sent.len()).find(|&j| sent[j].content == content);
        match found {
            Some(j) => {
                if let Some(&last) = replayed.last()
                    && j != last + 1
                {
                    let dropped: Vec<&str> = sent[last + 1..j].iter().map(|s| s.id.as_str()).collect();
                    errors.push(format!(
                        "messages.{i}: turns were dropped: the assistant turn {} follows {} here, but the server sent {} in between",
                        sent[j].id,
                        sent[last].id,
                        dropped.join(", ")
                    ));
                } else if replayed.is_empty() && j > 0 && !sent[j - 1].tool_ids.is_empty() {
                    errors.push(format!(
                        "messages.{i}: turns were dropped: the history starts at the assistant turn {}, but the server sent {} (asking for tools) right before it",
                        sent[j].id,
                        sent[j - 1].id
                    ));
                }
                replayed.push(j);
            }
            None => {
                let ids = tool_use_ids(&content);
                let earlier = (0..after).find(|&j| sent[j].content == content);
                let altered = sent.iter().find(|s| s.tool_ids.iter().any(|t| ids.contains(t)));
                let shown = Value::Array(content);
                if let Some(j) = earlier {
                    errors.push(format!(
                        "messages.{i}: the assistant turn {} is replayed out of order",
                        sent[j].id
                    ));
                } else if let Some(s) = altered {
                    errors.push(format!(
                        "messages.{i}: the assistant turn {} is replayed altered: the server sent {}, the request has {shown}",
                        s.id,
                        Value::Array(s.content.clone())
                    ));
                } else {
                    errors.push(format!(
                        "messages.{i}: an assistant turn the server never sent (invented by the client): {shown}"
                    ));
                }
            }
        }
    }
    replayed
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 on tokio

struct HttpRequest {
    method: String,
    path: String,
    /// The request line without its line end.
    line: String,
    /// Names in lower case.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    raw: String,
    at: Instant,
}

impl HttpRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

fn run_server(shared: Arc<Shared>, listener: std::net::TcpListener, stopped: oneshot::Receiver<()>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the test Claude API");
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener).expect("a tokio listener");
        tokio::select! {
            _ = accept_connections(shared, listener) => {}
            // The ClaudeServer was dropped; dropping the runtime closes every connection.
            _ = stopped => {}
        }
    });
}

async fn accept_connections(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        if let Ok((stream, _)) = listener.accept().await {
            let shared = Arc::clone(&shared);
            // A connection that breaks only ends itself.
            tokio::spawn(async move { converse(&shared, stream).await });
        }
    }
}

/// Requests one after another on a kept-alive connection.
async fn converse(shared: &Shared, stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let (read, mut writer) = stream.into_split();
    let mut reader = BufReader::new(read);
    while let Some(request) = read_request(&mut reader).await? {
        let close = request.header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let (request_id, response) = handle(shared, &request);
        match response {
            Response::Json { status, headers, body } => {
                write_json(&mut writer, &request_id, status, &headers, &body).await?;
            }
            Response::Stream { events, cut } => {
                write_stream(&mut writer, &request_id, &events, cut).await?;
                if cut {
                    return writer.shutdown().await;
                }
            }
        }
        if close {
            break;
        }
    }
    Ok(())
}

async fn read_request(reader: &mut BufReader<OwnedReadHalf>) -> io::Result<Option<HttpRequest>> {
    let Some(head) = http::read_head(reader).await? else { return Ok(None) };
    let body = http::read_body(reader, &head).await?;
    let path = head.target.split_once('?').map_or(head.target.as_str(), |(path, _)| path).to_string();
    let headers = head.headers.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.clone())).collect();
    let raw = format!("{}{}", head.raw, String::from_utf8_lossy(&body));
    Ok(Some(HttpRequest {
        method: head.method,
        path,
        line: head.line,
        headers,
        body,
        raw,
        at: Instant::now(),
    }))
}

async fn write_json(
    writer: &mut OwnedWriteHalf,
    request_id: &str,
    status: u16,
    headers: &[(String, String)],
    body: &Value,
) -> io::Result<()> {
    let body = serde_json::to_vec(body).expect("JSON values serialize");
    let mut head = format!("HTTP/1.1 {status} {}\r\n", http::reason_phrase(status));
    let _ = write!(head, "content-type: application/json\r\nrequest-id: {request_id}\r\n");
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    let _ = write!(head, "content-length: {}\r\n\r\n", body.len());
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&body);
    writer.write_all(&bytes).await?;
    writer.flush().await
}

/// A chunked event stream; each event goes out in two chunks with a pause after each, and `cut`
/// leaves out the final chunk.
async fn write_stream(
    writer: &mut OwnedWriteHalf,
    request_id: &str,
    events: &[(&'static str, Value)],
    cut: bool,
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ncache-control: no-cache\r\n\
         request-id: {request_id}\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    writer.write_all(head.as_bytes()).await?;
    for (name, data) in events {
        let event = format!("event: {name}\ndata: {data}\n\n");
        let mut middle = event.len() / 2;
        while !event.is_char_boundary(middle) {
            middle -= 1;
        }
        for half in [&event[..middle], &event[middle..]] {
            let chunk = format!("{:x}\r\n{half}\r\n", half.len());
            writer.write_all(chunk.as_bytes()).await?;
            writer.flush().await?;
            tokio::time::sleep(EVENT_GAP).await;
        }
    }
    if !cut {
        writer.write_all(b"0\r\n\r\n").await?;
    }
    writer.flush().await
}

// =============================================================================================
// Tests: the server through raw reqwest calls

mod tests {
    use super::*;

    const KEY: &str = "sk-ant-lab-0123456789";

    fn post_with(server: &ClaudeServer, key: &str, body: &Value) -> reqwest::blocking::Response {
        reqwest::blocking::Client::builder()
            .no_proxy()
            .build()
            .expect("an HTTP client")
            .post(format!("{}/v1/messages", server.url()))
            .header("x-api-key", key)
            .header("anthropic-version", API_VERSION)
            .json(body)
            .send()
            .expect("the test Claude API answers")
    }

    fn post(server: &ClaudeServer, body: &Value) -> reqwest::blocking::Response {
        post_with(server, KEY, body)
    }

    fn ask(question: &str) -> Value {
        json!({"model": "claude-lab-1", "max_tokens": 1024, "messages": [{"role": "user", "content": question}]})
    }

    fn tools() -> Value {
        json!([{
            "name": "top_talkers",
            "description": "The workloads that send the most bytes.",
            "input_schema": {
                "type": "object",
                "properties": {"limit": {"type": "integer"}, "namespace": {"type": "string"}},
                "required": ["limit"],
            },
        }])
    }

    /// An error response's status, error type and message, after checking its shape.
    fn api_error(response: reqwest::blocking::Response) -> (u16, String, String) {
        let status = response.status().as_u16();
        let request_id = response.headers()["request-id"].to_str().unwrap().to_string();
        let body: Value = response.json().unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["request_id"], request_id.as_str(), "the body names the request-id header's id");
        let text = |v: &Value| v.as_str().unwrap().to_string();
        (status, text(&body["error"]["type"]), text(&body["error"]["message"]))
    }

    /// A server-sent event stream as (event name, data).
    fn sse(text: &str) -> Vec<(String, Value)> {
        text.split("\n\n")
            .filter(|event| !event.is_empty())
            .map(|event| {
                let (name, data) = event.split_once('\n').expect("event: and data: lines");
                let name = name.strip_prefix("event: ").expect("an event line");
                let data = data.strip_prefix("data: ").expect("a data line");
                (name.to_string(), serde_json::from_str(data).expect("JSON data"))
            })
            .collect()
    }

    #[test]
    fn lab_claude_answers_a_plain_request() {
        let server = ClaudeServer::start(KEY, vec![Reply::text("Hello from the lab.")]);
        let response = post(&server, &ask("Hi?"));
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["request-id"], "req_0001");
        let message: Value = response.json().unwrap();
        assert!(message["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(
            (&message["type"], &message["role"], &message["model"]),
            (&json!("message"), &json!("assistant"), &json!("claude-lab-1"))
        );
        assert_eq!(message["content"], json!([{"type": "text", "text": "Hello from the lab."}]));
        assert_eq!((&message["stop_reason"], &message["stop_sequence"]), (&json!("end_turn"), &Value::Null));
        assert!(message["usage"]["input_tokens"].as_u64().unwrap() > 0);
        assert!(message["usage"]["output_tokens"].as_u64().unwrap() > 0);

        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        assert_eq!((request.status, request.request_id.as_str()), (200, "req_0001"));
        assert_eq!(request.header("X-Api-Key"), Some(KEY));
        assert_eq!(request.body["messages"][0]["content"], "Hi?");
        assert!(request.raw.starts_with("POST /v1/messages HTTP/1.1\r\n") && request.raw.ends_with('}'));
        server.assert_clean();
    }

    #[test]
    fn lab_claude_streams_events_in_order_and_follows_the_tool_round_trip() {
        let input = json!({"limit": 5, "namespace": "shop"});
        let script = vec![
            Reply::Message(vec![
                Block::Text("Let me look at the top talkers.".into()),
                Block::tool_use("toolu_01", "top_talkers", input.clone()),
            ]),
            Reply::text("The checkout pods send the most."),
        ];
        let server = ClaudeServer::start(KEY, script);
        let mut first = ask("Who sends the most?");
        first["stream"] = json!(true);
        first["tools"] = tools();
        first["system"] = json!([{"type": "text", "text": "You explain egress."}]);
        let response = post(&server, &first);
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        let events = sse(&response.text().unwrap());

        let mut names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
        names.dedup();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "future_event_type",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        for (name, data) in &events {
            assert_eq!(data["type"], name.as_str(), "each event's data names its type");
        }
        let start = &events[0].1["message"];
        assert_eq!((&start["content"], &start["stop_reason"]), (&json!([]), &Value::Null));
        assert_eq!(events[1].1["content_block"], json!({"type": "text", "text": ""}));
        let deltas = |index: u64, field: &str| -> Vec<String> {
            events
                .iter()
                .filter(|(name, data)| name == "content_block_delta" && data["index"] == index)
                .map(|(_, data)| data["delta"][field].as_str().unwrap().to_string())
                .collect()
        };
        let text = deltas(0, "text");
        assert!(text.len() > 1, "the text comes in several deltas");
        assert_eq!(text.concat(), "Let me look at the top talkers.");
        let tool_start = events.iter().find(|(n, d)| n == "content_block_start" && d["index"] == 1).unwrap();
        assert_eq!(
            tool_start.1["content_block"],
            json!({"type": "tool_use", "id": "toolu_01", "name": "top_talkers", "input": {}})
        );
        let json_parts = deltas(1, "partial_json");
        assert!(json_parts.len() >= 3, "the input comes in several input_json_delta chunks");
        assert_eq!(serde_json::from_str::<Value>(&json_parts.concat()).unwrap(), input);
        let message_delta = &events.iter().find(|(n, _)| n == "message_delta").unwrap().1;
        assert_eq!(message_delta["delta"]["stop_reason"], "tool_use");
        assert!(message_delta["usage"]["output_tokens"].as_u64().unwrap() > 1);

        // The client replays the turn it got and answers the tool use.
        let mut second = first.clone();
        second["stream"] = json!(false);
        second["messages"] = json!([
            first["messages"][0],
            {"role": "assistant", "content": [
                {"type": "text", "text": text.concat()},
                {"type": "tool_use", "id": "toolu_01", "name": "top_talkers", "input": input},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": [{"type": "text", "text": "checkout: 4 GiB"}]},
                {"type": "text", "text": "Keep it short."},
            ]},
        ]);
        let response = post(&server, &second);
        assert_eq!(response.status(), 200);
        let message: Value = response.json().unwrap();
        assert_eq!(message["content"][0]["text"], "The checkout pods send the most.");
        let requests = server.requests();
        assert!(requests[1].at >= requests[0].at);
        let results = requests[1].tool_results();
        assert_eq!(results.len(), 1);
        let result = &results[0];
        assert_eq!(
            (result.tool_use_id.as_str(), result.text.as_str(), result.is_error),
            ("toolu_01", "checkout: 4 GiB", false)
        );
        server.assert_clean();
    }

    #[test]
    fn lab_claude_rejects_a_wrong_key_and_a_missing_version() {
        let server = ClaudeServer::start(KEY, vec![Reply::text("Fine.")]);
        let (status, kind, message) = api_error(post_with(&server, "sk-ant-wrong", &ask("Hi?")));
        assert_eq!(
            (status, kind.as_str(), message.as_str()),
            (401, "authentication_error", "invalid x-api-key")
        );

        let client = reqwest::blocking::Client::builder().no_proxy().build().unwrap();
        let unversioned =
            client.post(format!("{}/v1/messages", server.url())).header("x-api-key", KEY).json(&ask("Hi?"));
        let (status, kind, message) = api_error(unversioned.send().unwrap());
        assert_eq!(
            (status, kind.as_str(), message.as_str()),
            (400, "invalid_request_error", "anthropic-version: header is required")
        );
        let elsewhere = client.get(format!("{}/v1/models", server.url())).header("x-api-key", KEY);
        let (status, kind, _) = api_error(elsewhere.header("anthropic-version", API_VERSION).send().unwrap());
        assert_eq!((status, kind.as_str()), (404, "not_found_error"));

        // Rejected requests use no reply of the script.
        assert_eq!(post(&server, &ask("Hi?")).status(), 200);
        let problems = server.problems();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("req_0001: ") && problems[0].contains("invalid x-api-key"));
        let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [401, 400, 404, 200]);
    }

    #[test]
    fn lab_claude_rejects_a_tool_use_without_its_result_and_invented_turns() {
        let script =
            vec![Reply::Message(vec![Block::tool_use("toolu_01", "top_talkers", json!({"limit": 3}))])];
        let server = ClaudeServer::start(KEY, script);
        let mut request = ask("Who sends the most?");
        request["tools"] = tools();
        let message: Value = post(&server, &request).json().unwrap();
        assert_eq!(message["stop_reason"], "tool_use");

        request["messages"] = json!([
            request["messages"][0],
            {"role": "assistant", "content": message["content"]},
            {"role": "user", "content": "Never mind."},
        ]);
        let (status, kind, text) = api_error(post(&server, &request));
        assert_eq!((status, kind.as_str()), (400, "invalid_request_error"));
        assert_eq!(
            text,
            "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_01. \
             Each `tool_use` block must have a corresponding `tool_result` block in the next message."
        );

        // A turn the server never sent, and a result for a tool use that does not exist.
        request["messages"] = json!([
            request["messages"][0],
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_99", "name": "top_talkers", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_98", "content": "x"}]},
        ]);
        assert_eq!(post(&server, &request).status(), 400);
        let problems = server.problems();
        assert!(
            problems[0].starts_with("req_0002: messages.1: `tool_use` ids were found without"),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.starts_with("req_0003: ") && p.contains("unexpected `tool_use_id`"))
        );
        assert!(problems.iter().any(|p| p.contains("messages.1: an assistant turn the server never sent")));
        let clean = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| server.assert_clean()));
        assert!(clean.is_err(), "assert_clean panics when there are problems");
    }

    #[test]
    fn lab_claude_catches_dropped_and_altered_turns() {
        let script = vec![
            Reply::Message(vec![Block::tool_use("toolu_01", "top_talkers", json!({"limit": 1}))]),
            Reply::Message(vec![Block::tool_use("toolu_02", "top_talkers", json!({"limit": 2}))]),
            Reply::text("Done."),
        ];
        let server = ClaudeServer::start(KEY, script);
        let mut request = ask("Who sends the most?");
        request["tools"] = tools();
        let question = request["messages"][0].clone();
        let turn = |id: &str, limit: u64| {
            json!({"role": "assistant", "content": [
                {"type": "tool_use", "id": id, "name": "top_talkers", "input": {"limit": limit}}
            ]})
        };
        let result = |id: &str| json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "ok"}]});
        assert_eq!(post(&server, &request).status(), 200);
        request["messages"] = json!([question, turn("toolu_01", 1), result("toolu_01")]);
        assert_eq!(post(&server, &request).status(), 200);

        // Only the last exchange: the first one was dropped.
        request["messages"] = json!([question, turn("toolu_02", 2), result("toolu_02")]);
        assert_eq!(post(&server, &request).status(), 400);
        // The first tool use with another input than the server sent.
        request["messages"] = json!([
            question,
            turn("toolu_01", 7),
            result("toolu_01"),
            turn("toolu_02", 2),
            result("toolu_02")
        ]);
        assert_eq!(post(&server, &request).status(), 400);
        assert_eq!(server.requests().iter().filter(|r| r.status == 400).count(), 2);

        request["messages"] = json!([
            question,
            turn("toolu_01", 1),
            result("toolu_01"),
            turn("toolu_02", 2),
            result("toolu_02")
        ]);
        let message: Value = post(&server, &request).json().unwrap();
        assert_eq!(message["content"][0]["text"], "Done.");
        let problems = server.problems();
        assert!(problems[0].starts_with("req_0003: messages.1: turns were dropped"), "{problems:?}");
        assert!(
            problems
                .iter()
                .any(|p| p
                    .starts_with("req_0004: messages.1: the assistant turn msg_0001 is replayed altered"))
        );
        assert!(
            problems.iter().all(|p| p.starts_with("req_0003") || p.starts_with("req_0004")),
            "{problems:?}"
        );
    }

    #[test]
    fn lab_claude_rejects_fields_and_blocks_the_api_does_not_have() {
        let server = ClaudeServer::start(KEY, vec![]);
        let mut request = ask("Hi?");
        request["temprature"] = json!(0.5);
        let (status, _, message) = api_error(post(&server, &request));
        assert_eq!((status, message.as_str()), (400, "temprature: Extra inputs are not permitted"));

        let request = json!({"model": "claude-lab-1", "max_tokens": 0, "messages": [
            {"role": "user", "content": [{"type": "image_url", "url": "http://x"}]},
            {"role": "user", "content": "again"},
        ]});
        assert_eq!(post(&server, &request).status(), 400);
        let problems = server.problems();
        for expected in [
            "req_0002: max_tokens: Input should be greater than or equal to 1",
            "req_0002: messages.0.content.0: Input tag 'image_url' found using 'type'",
            r#"req_0002: messages: roles must alternate between "user" and "assistant""#,
        ] {
            assert!(problems.iter().any(|p| p.starts_with(expected)), "{expected} in {problems:?}");
        }
    }

    #[test]
    fn lab_claude_forbid_catches_an_ip_anywhere() {
        let server = ClaudeServer::start(KEY, vec![Reply::text("unused")]);
        server.forbid(vec!["10.42.7.13".into()]);
        let client = reqwest::blocking::Client::builder().no_proxy().build().unwrap();
        let response = client
            .post(format!("{}/v1/messages", server.url()))
            .header("x-api-key", KEY)
            .header("anthropic-version", API_VERSION)
            .header("x-trace", "from 10.42.7.13")
            .json(&ask("Why does 10.42.7.13 send so much?"))
            .send()
            .unwrap();
        assert_eq!(response.status(), 400);
        let problems = server.problems();
        assert_eq!(
            problems,
            [
                r#"req_0001: forbidden text "10.42.7.13" in header x-trace"#,
                r#"req_0001: forbidden text "10.42.7.13" in the body at messages.0.content"#,
            ]
        );
    }

    #[test]
    fn lab_claude_plays_scripted_failures() {
        let script = vec![
            Reply::Status {
                status: 429,
                kind: "rate_limit_error",
                message: "Number of requests has exceeded your rate limit.".into(),
                retry_after: Some(2),
            },
            Reply::Status {
                status: 529,
                kind: "overloaded_error",
                message: "Overloaded".into(),
                retry_after: None,
            },
            Reply::CutStream(vec![Block::Text("A partial answer that never ends".into())]),
            Reply::ErrorEvent { kind: "overloaded_error", message: "Overloaded".into() },
        ];
        let server = ClaudeServer::start(KEY, script);
        let mut request = ask("Hi?");
        request["stream"] = json!(true);

        let limited = post(&server, &request);
        assert_eq!(limited.headers()["retry-after"], "2");
        assert_eq!(api_error(limited).1, "rate_limit_error");
        let (status, kind, message) = api_error(post(&server, &request));
        assert_eq!((status, kind.as_str(), message.as_str()), (529, "overloaded_error", "Overloaded"));

        let cut = post(&server, &request);
        assert_eq!(cut.status(), 200);
        assert!(cut.text().is_err(), "a cut stream is an incomplete body");

        let events = sse(&post(&server, &request).text().unwrap());
        let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["message_start", "error"]);
        assert_eq!(events[1].1["error"], json!({"type": "overloaded_error", "message": "Overloaded"}));

        let (status, kind, _) = api_error(post(&server, &request));
        assert_eq!((status, kind.as_str()), (500, "api_error"));
        let problems = server.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("req_0005: a request beyond the script"));
    }
}
