//! The Anthropic Messages API client: one assistant turn per call, streamed or whole, with
//! bounded retries and errors that tell the user what to do.
//!
//! ```text
//! Request (system, tools, messages) --request_body--> POST {base}/v1/messages
//!    x-api-key, anthropic-version, content-type: application/json
//!       200 text/event-stream  --sse::read_message--> Reply   (text deltas -> Progress::Text)
//!       200 application/json   --------------------> Reply
//!       429 529 5xx 408, error event, cut stream, no connection  -> wait, try again (Progress::Retry)
//!       400 401 402 403 404 413, spend limit, other 4xx          -> ApiError at once
//! ```
//!
//! The conversation is the caller's: it replays each [`Reply`]'s content unchanged as the
//! assistant [`Message`] (thinking blocks included: the API wants them back as they came) and
//! answers every tool use with a [`Block::ToolResult`] for its id, first in the next user turn.
//!
//! Retries: up to [`Config::max_attempts`] attempts in all, waiting an exponential backoff (500 ms
//! doubling, jittered to 50-100 %) but never less than the answer's `retry-after`; a `retry-after`
//! longer than [`Config::max_wait`] ends the call at once with the time to try again. A streamed
//! attempt that fails after some text was handed on starts over: the caller learns of it through
//! [`Progress::Retry`].

mod sse;

use std::fmt;
use std::io::BufReader;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use chrono::{DateTime, Utc};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub const API_VERSION: &str = "2023-06-01";
/// Claude Sonnet 5.5, the current Sonnet model (platform.claude.com, "Models overview", December
/// 2026). Claude Sonnet 4.5 (`claude-sonnet-4-5`) was retired on 2026-11-30.
pub const DEFAULT_MODEL: &str = "claude-sonnet-5-5";
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// Room for the answer and the model's thinking (which counts against `max_tokens`), and short
/// enough that a non-streamed answer comes well within [`WHOLE_ANSWER`].
pub const DEFAULT_MAX_TOKENS: u32 = 16_000;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(60);

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A stream sends events (at least pings) every few seconds; a read that waits this long is a
/// dead connection. reqwest's blocking timeout bounds the wait for the headers and each read
/// separately, not the whole body, so a long stream is fine.
const STREAM_STALL: Duration = Duration::from_secs(120);
/// A non-streamed answer arrives only when it is complete; the API itself bounds that at ten
/// minutes.
const WHOLE_ANSWER: Duration = Duration::from_secs(600);
const BACKOFF_BASE: Duration = Duration::from_millis(500);

/// Where and how to call the API.
#[derive(Clone)]
pub struct Config {
    /// Without the trailing `/v1/messages`, e.g. `https://api.anthropic.com`.
    pub base_url: String,
    pub api_key: String,
    pub model: String,
    pub max_tokens: u32,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The longest `retry-after` worth waiting for; a longer one ends the call.
    pub max_wait: Duration,
}

impl Config {
    /// From ANTHROPIC_API_KEY (None when unset or empty), ANTHROPIC_BASE_URL (default
    /// https://api.anthropic.com), the model given (else [`DEFAULT_MODEL`]).
    pub fn from_env(model: Option<&str>) -> Option<Config> {
        // Trimmed: a key pasted into a file or exported from `$(cat ...)` often ends in a newline.
        let api_key = std::env::var("ANTHROPIC_API_KEY").ok()?.trim().to_string();
        if api_key.is_empty() {
            return None;
        }
        let base_url = std::env::var("ANTHROPIC_BASE_URL")
            .ok()
            .map(|url| url.trim().trim_end_matches('/').to_string())
            .filter(|url| !url.is_empty())
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
        let model = model.map(str::trim).filter(|m| !m.is_empty()).unwrap_or(DEFAULT_MODEL).to_string();
        Some(Config {
            base_url,
            api_key,
            model,
            max_tokens: DEFAULT_MAX_TOKENS,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            max_wait: DEFAULT_MAX_WAIT,
        })
    }
}

/// Written by hand so that the key never reaches a log or an error message.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("base_url", &self.base_url)
            .field("api_key", &"(redacted)")
            .field("model", &self.model)
            .field("max_tokens", &self.max_tokens)
            .field("max_attempts", &self.max_attempts)
            .field("max_wait", &self.max_wait)
            .finish()
    }
}

/// A tool the model may call; `input_schema` is a JSON Schema of type `object`.
#[derive(Clone, Debug, Serialize)]
pub struct ToolDef {
    pub name: String,
    pub description: String,
    pub input_schema: Value,
}

#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// A content block, as the API sends and takes it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        content: String,
        #[serde(skip_serializing_if = "std::ops::Not::not", default)]
        is_error: bool,
    },
    /// The model's thinking (current models think by default; its text is usually empty, as the
    /// API omits it unless asked). Not for display: send it back unchanged with its turn.
    Thinking {
        thinking: String,
        signature: String,
    },
    /// Thinking the API encrypted; send it back unchanged with its turn.
    RedactedThinking {
        data: String,
    },
}

#[derive(Clone, Debug, Serialize)]
pub struct Message {
    pub role: Role,
    pub content: Vec<Block>,
}

/// One call's input; the model and `max_tokens` come from the [`Config`].
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub system: &'a str,
    pub tools: &'a [ToolDef],
    pub messages: &'a [Message],
}

/// Body as sent (tests and --show-context print it): model, max_tokens, system, tools, messages,
/// stream. An empty `system` or `tools` is left out.
pub fn request_body(cfg: &Config, req: &Request<'_>, stream: bool) -> Value {
    let mut body = json!({"model": cfg.model, "max_tokens": cfg.max_tokens});
    if !req.system.is_empty() {
        body["system"] = json!(req.system);
    }
    if !req.tools.is_empty() {
        body["tools"] = json!(req.tools);
    }
    body["messages"] = json!(req.messages);
    body["stream"] = json!(stream);
    body
}

/// The assistant's turn.
#[derive(Clone, Debug, Serialize)]
pub struct Reply {
    /// Every block, in order: replay all of them as the assistant message.
    pub content: Vec<Block>,
    /// `end_turn`, `tool_use`, `max_tokens`, ...
    pub stop_reason: Option<String>,
    /// The `request-id` header of the answer.
    pub request_id: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// What the caller is told while a call runs.
pub enum Progress<'a> {
    /// The next piece of the answer's text.
    Text(&'a str),
    /// An attempt failed and `attempt` (2 for the first retry) starts after `wait`. Text handed
    /// on before this belongs to the failed attempt: the next one's text starts from the beginning.
    Retry { attempt: u32, wait: Duration, reason: String },
}

/// The Messages API over HTTP.
pub struct Client {
    cfg: Config,
    url: reqwest::Url,
    http: reqwest::blocking::Client,
}

impl Client {
    pub fn new(cfg: Config) -> anyhow::Result<Client> {
        let base = cfg.base_url.trim_end_matches('/');
        let url = reqwest::Url::parse(&format!("{base}/v1/messages")).with_context(|| {
            format!("the Anthropic API base URL {base:?} (ANTHROPIC_BASE_URL) is not a URL")
        })?;
        if !matches!(url.scheme(), "https" | "http") {
            bail!("the Anthropic API base URL {base:?} (ANTHROPIC_BASE_URL) is not an http(s) URL");
        }
        let mut key = HeaderValue::from_str(&cfg.api_key).map_err(|_| {
            anyhow!(
                "ANTHROPIC_API_KEY holds characters that cannot go in an HTTP header (a quote or line break?)"
            )
        })?;
        key.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", key);
        headers.insert("anthropic-version", HeaderValue::from_static(API_VERSION));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let http = reqwest::blocking::Client::builder()
            .user_agent(concat!("egressor/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .connect_timeout(CONNECT_TIMEOUT)
            // Set per request: streamed and whole answers need different bounds.
            .timeout(None)
            .build()
            .context("cannot set up the HTTP client for the Anthropic API")?;
        Ok(Client { cfg, url, http })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// One assistant turn, streamed: POST {base}/v1/messages with stream:true; each text delta
    /// goes to `progress` as it arrives; returns the whole assistant message (tool_use inputs
    /// assembled from input_json_delta partial_json). Retries as the module says.
    pub fn send(&self, req: &Request<'_>, progress: &mut dyn FnMut(Progress<'_>)) -> Result<Reply, ApiError> {
        self.call(req, true, progress)
    }

    /// The same without streaming (stream:false, one JSON response); same retries and errors.
    pub fn send_once(&self, req: &Request<'_>) -> Result<Reply, ApiError> {
        self.call(req, false, &mut |_| {})
    }

    fn call(
        &self,
        req: &Request<'_>,
        stream: bool,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<Reply, ApiError> {
        let body = request_body(&self.cfg, req, stream).to_string();
        let attempts = self.cfg.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            let failure = match self.attempt(&body, stream, progress) {
                Ok(reply) => return Ok(reply),
                Err(failure) => verdict(failure)?,
            };
            tracing::debug!(attempt, %failure, "Messages API attempt failed");
            if let Some(wait) = failure.retry_after
                && wait > self.cfg.max_wait
            {
                let at = Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
                return Err(ApiError::RetryLater {
                    failure: Box::new(failure),
                    wait,
                    max_wait: self.cfg.max_wait,
                    at,
                });
            }
            if attempt >= attempts {
                return Err(ApiError::GaveUp { attempts, last: Box::new(failure) });
            }
            let wait = backoff(attempt).min(self.cfg.max_wait).max(failure.retry_after.unwrap_or_default());
            attempt += 1;
            progress(Progress::Retry { attempt, wait, reason: failure.to_string() });
            std::thread::sleep(wait);
        }
    }

    /// One request and its answer.
    fn attempt(
        &self,
        body: &str,
        stream: bool,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<Reply, Failure> {
        let timeout = if stream { STREAM_STALL } else { WHOLE_ANSWER };
        let response = self
            .http
            .post(self.url.clone())
            .timeout(timeout)
            .body(body.to_string())
            .send()
            .map_err(|error| Failure::connection(&error))?;
        let request_id = header(response.headers(), "request-id").map(str::to_string);
        let status = response.status().as_u16();
        if !response.status().is_success() {
            return Err(Failure::from_response(status, request_id, response));
        }
        let media_type = header(response.headers(), CONTENT_TYPE.as_str()).unwrap_or_default();
        let media_type = media_type.split(';').next().unwrap_or_default().trim();
        if media_type.eq_ignore_ascii_case("text/event-stream") {
            let mut on_text = |text: &str| progress(Progress::Text(text));
            return match sse::read_message(BufReader::new(response), &mut on_text) {
                Ok(message) => Ok(Reply {
                    content: message.content,
                    stop_reason: message.stop_reason,
                    request_id,
                    input_tokens: message.input_tokens,
                    output_tokens: message.output_tokens,
                }),
                Err(error) => Err(Failure::from_stream(error, request_id)),
            };
        }
        // A whole message: asked for, or from a proxy that does not stream.
        let bytes = response.bytes().map_err(|error| Failure {
            request_id: request_id.clone(),
            ..Failure::cut(format!("reading the answer failed: {}", chain(&error)))
        })?;
        let reply = parse_message(&bytes, request_id)?;
        if stream {
            for block in &reply.content {
                if let Block::Text { text } = block {
                    progress(Progress::Text(text));
                }
            }
        }
        Ok(reply)
    }
}

/// A complete message object (a non-streamed answer).
fn parse_message(bytes: &[u8], request_id: Option<String>) -> Result<Reply, Failure> {
    let garbled = |why: String| Failure {
        origin: Origin::Status(200),
        kind: "invalid_response".into(),
        message: why,
        request_id: request_id.clone(),
        retry_after: None,
        error_code: None,
    };
    let message: Value = serde_json::from_slice(bytes)
        .map_err(|error| garbled(format!("the answer is not JSON ({error}): {}", snippet(bytes))))?;
    if message["type"] == "error" {
        let mut failure = Failure::from_error_body(200, &message, request_id.clone());
        failure.origin = Origin::ErrorEvent;
        return Err(failure);
    }
    let Some(blocks) = message["content"].as_array() else {
        return Err(garbled(format!("the answer is not a message: {}", snippet(bytes))));
    };
    let content = blocks
        .iter()
        // Block types this client does not know (server tools it never asks for) are left out,
        // and so are empty text blocks, which the API refuses when the turn is sent back.
        .filter_map(|block| serde_json::from_value::<Block>(block.clone()).ok())
        .filter(|block| !matches!(block, Block::Text { text } if text.is_empty()))
        .collect();
    Ok(Reply {
        content,
        stop_reason: message["stop_reason"].as_str().map(str::to_string),
        request_id,
        input_tokens: message["usage"]["input_tokens"].as_u64().unwrap_or(0),
        output_tokens: message["usage"]["output_tokens"].as_u64().unwrap_or(0),
    })
}

// ---------------------------------------------------------------------------------------------
// Failures and errors

/// Where a failed attempt's failure came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// An answer with this HTTP status and (usually) the API's error body.
    Status(u16),
    /// An `error` event in a stream that had begun with HTTP 200.
    ErrorEvent,
    /// No answer: the connection failed or timed out.
    Connection,
    /// The answer broke off, stalled, or could not be read.
    StreamCut,
}

/// What one attempt ran into.
#[derive(Clone, Debug)]
pub struct Failure {
    pub origin: Origin,
    /// The API's error type (`overloaded_error`, `authentication_error`, ...); `connection_error`
    /// or `stream_cut` when the API said nothing.
    pub kind: String,
    /// The API's own message, or what went wrong on the way.
    pub message: String,
    /// The `request-id` header, or the error body's `request_id`.
    pub request_id: Option<String>,
    /// The `retry-after` (or `retry-after-ms`) header.
    pub retry_after: Option<Duration>,
    /// The error body's `error.details.error_code` (e.g. `enforced_spend_limit_reached`).
    pub error_code: Option<String>,
}

impl Failure {
    fn connection(error: &reqwest::Error) -> Failure {
        Failure {
            origin: Origin::Connection,
            kind: "connection_error".into(),
            message: format!("the request could not be sent: {}", chain(error)),
            request_id: None,
            retry_after: None,
            error_code: None,
        }
    }

    fn cut(message: String) -> Failure {
        Failure {
            origin: Origin::StreamCut,
            kind: "stream_cut".into(),
            message,
            request_id: None,
            retry_after: None,
            error_code: None,
        }
    }

    fn from_stream(error: sse::StreamError, request_id: Option<String>) -> Failure {
        let failure = match error {
            sse::StreamError::Api { kind, message, error_code } => Failure {
                origin: Origin::ErrorEvent,
                kind,
                message,
                request_id: None,
                retry_after: None,
                error_code,
            },
            sse::StreamError::Cut(why) => {
                Failure::cut(format!("the answer broke off before it was complete: {why}"))
            }
            sse::StreamError::Garbled(why) => Failure::cut(format!("the answer could not be read: {why}")),
        };
        Failure { request_id, ..failure }
    }

    /// An error answer: the API's error body if it is one (a proxy's may not be).
    fn from_response(
        status: u16,
        request_id: Option<String>,
        response: reqwest::blocking::Response,
    ) -> Failure {
        let retry_after = retry_after(response.headers());
        // An error body that cannot be read still leaves the status to go by.
        let bytes = response.bytes().unwrap_or_default();
        let failure = match serde_json::from_slice::<Value>(&bytes) {
            Ok(body) if body["error"].is_object() => Failure::from_error_body(status, &body, request_id),
            _ => Failure {
                origin: Origin::Status(status),
                kind: format!("http_{status}"),
                message: if bytes.is_empty() { "(no body)".to_string() } else { snippet(&bytes) },
                request_id,
                retry_after: None,
                error_code: None,
            },
        };
        Failure { retry_after, ..failure }
    }

    /// `{"type": "error", "error": {"type", "message", "details"}, "request_id"}`.
    fn from_error_body(status: u16, body: &Value, request_id: Option<String>) -> Failure {
        let error = &body["error"];
        Failure {
            origin: Origin::Status(status),
            kind: error["type"].as_str().unwrap_or("api_error").to_string(),
            message: error["message"].as_str().unwrap_or("(no message)").to_string(),
            request_id: request_id.or_else(|| body["request_id"].as_str().map(str::to_string)),
            retry_after: None,
            error_code: error["details"]["error_code"].as_str().map(str::to_string),
        }
    }

    /// The HTTP status this failure stands for; none when no answer came.
    fn status(&self) -> Option<u16> {
        match self.origin {
            Origin::Status(status) => Some(status),
            Origin::ErrorEvent => Some(status_of_error_type(&self.kind)),
            Origin::Connection | Origin::StreamCut => None,
        }
    }

    /// A spend limit, an exhausted credit balance or a billing problem: waiting a minute does not
    /// end it. The API reports a spend limit as a 400 `invalid_request_error`, or as a 429
    /// `rate_limit_error` (a usage tier's monthly cap, a Claude Code workspace limit), told apart
    /// from a rate limit only by its message and `details.error_code`.
    fn is_spend_limit(&self) -> bool {
        let code = self.error_code.as_deref().unwrap_or_default();
        let message = self.message.to_ascii_lowercase();
        self.kind == "billing_error"
            || ["spend_limit", "credit", "billing"].iter().any(|c| code.contains(c))
            || ["spend limit", "spending limit", "usage limit", "credit balance", "billing"]
                .iter()
                .any(|m| message.contains(m))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = self.request_id.as_deref().map(|id| format!(", request id {id}")).unwrap_or_default();
        match self.origin {
            Origin::Status(status) => write!(f, "{}: {} (HTTP {status}{id})", self.kind, self.message),
            Origin::ErrorEvent => {
                write!(f, "{}: {} (an error event in the answer's stream{id})", self.kind, self.message)
            }
            Origin::Connection | Origin::StreamCut => match &self.request_id {
                Some(request_id) => write!(f, "{} (request id {request_id})", self.message),
                None => write!(f, "{}", self.message),
            },
        }
    }
}

/// The status an `error` event stands for (the API's error types and their statuses).
fn status_of_error_type(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        // api_error, and types added later: a failure on the API's side.
        _ => 500,
    }
}

/// Gives back a failure that is worth another attempt, or the error that ends the call.
fn verdict(failure: Failure) -> Result<Failure, ApiError> {
    let Some(status) = failure.status() else {
        return Ok(failure); // no answer, or a broken one: the next connection may do better
    };
    if matches!(status, 400 | 402 | 429) && failure.is_spend_limit() {
        return Err(ApiError::Billing(Box::new(failure)));
    }
    match status {
        // 2xx: an answer that was not a message (a proxy's page, a truncated body).
        200..=299 | 408 | 429 | 500..=599 => Ok(failure),
        400 => Err(ApiError::Invalid(Box::new(failure))),
        401 => Err(ApiError::Auth(Box::new(failure))),
        402 => Err(ApiError::Billing(Box::new(failure))),
        403 => Err(ApiError::Permission(Box::new(failure))),
        404 => Err(ApiError::NotFound(Box::new(failure))),
        413 => Err(ApiError::TooLarge(Box::new(failure))),
        _ => Err(ApiError::Refused(Box::new(failure))),
    }
}

/// An error the user reads: says what happened, the API's own error type and message, the
/// request id, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401.
    #[error(
        "The Anthropic API did not accept the API key: {0}. Check ANTHROPIC_API_KEY: it must hold \
         a current API key from the Claude Console."
    )]
    Auth(Box<Failure>),
    /// 400: egressor sent something the API does not take.
    #[error("The Anthropic API refused egressor's request as invalid: {0}. This is a bug in egressor: {report}.", report = report(.0))]
    Invalid(Box<Failure>),
    /// A spend limit (400 or 429), 402.
    #[error(
        "The Anthropic API refused the request because a spend limit or the credit balance is \
         exhausted: {0}. Retrying will not help: raise the limit or add credits in the Claude \
         Console (Settings, Limits and Billing), or wait until the limit resets."
    )]
    Billing(Box<Failure>),
    /// 403.
    #[error(
        "The API key is not allowed to make this request: {0}. Use a key of a workspace that may \
         use this model, or choose another model."
    )]
    Permission(Box<Failure>),
    /// 404: most often a model name that does not exist (or no longer does).
    #[error(
        "The Anthropic API does not know the model or endpoint: {0}. Check the model name and, if \
         it is set, ANTHROPIC_BASE_URL."
    )]
    NotFound(Box<Failure>),
    /// 413.
    #[error(
        "The request is too large for the Anthropic API: {0}. Ask about a shorter period or fewer \
         workloads, so that less data goes into the request."
    )]
    TooLarge(Box<Failure>),
    /// Another 4xx.
    #[error("The Anthropic API refused the request: {0}. Retrying will not help; {report}.", report = report(.0))]
    Refused(Box<Failure>),
    /// A `retry-after` longer than [`Config::max_wait`].
    #[error(
        "The Anthropic API asks to wait {} before the next request, longer than egressor waits \
         ({}): {failure}. Try again after {}.",
        human(*wait), human(*max_wait), at.format("%Y-%m-%d %H:%M:%S UTC")
    )]
    RetryLater { failure: Box<Failure>, wait: Duration, max_wait: Duration, at: DateTime<Utc> },
    /// Every attempt failed with something that may pass.
    #[error(
        "The Anthropic API did not answer after {attempts} attempt{}; the last one failed: {last}. {}",
        if *attempts == 1 { "" } else { "s" }, gave_up_hint(last)
    )]
    GaveUp { attempts: u32, last: Box<Failure> },
}

impl ApiError {
    /// The failure that ended the call.
    pub fn failure(&self) -> &Failure {
        match self {
            ApiError::Auth(failure)
            | ApiError::Invalid(failure)
            | ApiError::Billing(failure)
            | ApiError::Permission(failure)
            | ApiError::NotFound(failure)
            | ApiError::TooLarge(failure)
            | ApiError::Refused(failure)
            | ApiError::RetryLater { failure, .. }
            | ApiError::GaveUp { last: failure, .. } => failure,
        }
    }

    pub fn request_id(&self) -> Option<&str> {
        self.failure().request_id.as_deref()
    }
}

fn report(failure: &Failure) -> String {
    match &failure.request_id {
        Some(id) => format!("please report it with the request id {id}"),
        None => "please report it with this message".to_string(),
    }
}

fn gave_up_hint(last: &Failure) -> &'static str {
    match last.origin {
        Origin::Connection => "Check the network connection and, if it is set, ANTHROPIC_BASE_URL.",
        Origin::StreamCut => "The connection keeps breaking off: check the network, or try again later.",
        Origin::Status(_) | Origin::ErrorEvent => {
            "The API may be overloaded or down: try again in a few minutes (status: https://status.claude.com)."
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// The wait before attempt `failed + 1`: 500 ms doubling per failed attempt, times 50-100 %.
/// The jitter spreads out clients that an overload hit at the same moment; the clock's
/// nanoseconds are random enough for that.
fn backoff(failed: u32) -> Duration {
    let base = BACKOFF_BASE.saturating_mul(1 << failed.saturating_sub(1).min(16));
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    base.mul_f64(0.5 + 0.5 * f64::from(nanos % 1000) / 1000.0)
}

/// `retry-after-ms` (which Anthropic's own SDKs read first), else `retry-after` in seconds or as
/// an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    // Bounded so that a silly value cannot overflow a Duration; anything this long ends the call.
    let seconds = |s: f64| (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s.min(1e9)));
    if let Some(ms) = header(headers, "retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
        return seconds(ms / 1000.0);
    }
    let value = header(headers, "retry-after")?.trim();
    if let Ok(s) = value.parse::<f64>() {
        return seconds(s);
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
    Some((at - Utc::now()).to_std().unwrap_or_default())
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// An error and its sources: reqwest's own message names only the URL.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The start of a body that is not what it should be (a proxy's HTML page, say), on one line.
fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(300) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text,
    }
}

/// `45 s`, `2 min 5 s`, `3 h 20 min`.
fn human(wait: Duration) -> String {
    let s = wait.as_secs_f64().ceil() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 if s.is_multiple_of(60) => format!("{} min", s / 60),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ if s % 3600 < 60 => format!("{} h", s / 3600),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_milliseconds_or_a_date() {
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, HeaderValue::from_str(value).unwrap());
            }
            map
        };
        assert_eq!(retry_after(&headers(&[("retry-after", "2")])), Some(Duration::from_secs(2)));
        assert_eq!(
            retry_after(&headers(&[("retry-after", "2"), ("retry-after-ms", "1500")])),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "-1")])), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")])), None);
        let past = retry_after(&headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]));
        assert_eq!(past, Some(Duration::ZERO));
        let later = (Utc::now() + chrono::Duration::seconds(90)).to_rfc2822();
        let wait = retry_after(&headers(&[("retry-after", &later)])).unwrap();
        assert!(wait > Duration::from_secs(80) && wait <= Duration::from_secs(90), "{wait:?}");
    }

    #[test]
    fn backoff_doubles_with_jitter() {
        for failed in 1..=4 {
            let base = Duration::from_millis(500 * (1 << (failed - 1)));
            let wait = backoff(failed);
            assert!(wait >= base / 2 && wait <= base, "{failed}: {wait:?}");
        }
        assert!(backoff(u32::MAX) <= BACKOFF_BASE * (1 << 16));
    }

    fn failure(origin: Origin, kind: &str, message: &str) -> Failure {
        Failure {
            origin,
            kind: kind.into(),
            message: message.into(),
            request_id: Some("req_1".into()),
            retry_after: None,
            error_code: None,
        }
    }

    #[test]
    fn what_is_retried() {
        let retried = |f: Failure| verdict(f).is_ok();
        assert!(retried(failure(
            Origin::Status(429),
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit"
        )));
        assert!(retried(failure(Origin::Status(529), "overloaded_error", "Overloaded")));
        assert!(retried(failure(Origin::Status(503), "http_503", "(no body)")));
        assert!(retried(failure(Origin::ErrorEvent, "overloaded_error", "Overloaded")));
        assert!(retried(failure(Origin::ErrorEvent, "some_new_error", "?")));
        assert!(retried(failure(Origin::Connection, "connection_error", "refused")));
        assert!(retried(failure(Origin::StreamCut, "stream_cut", "cut")));

        let ended = |f: Failure| {
            verdict(f).err().map(|e| format!("{e:?}").split('(').next().unwrap_or_default().to_string())
        };
        let spend = "This request would exceed your account's monthly spend limit. Please try again later.";
        assert_eq!(
            ended(failure(Origin::Status(429), "rate_limit_error", spend)).as_deref(),
            Some("Billing")
        );
        let mut coded = failure(Origin::Status(429), "rate_limit_error", "Rate limited");
        coded.error_code = Some("enforced_spend_limit_reached".into());
        assert_eq!(ended(coded).as_deref(), Some("Billing"));
        let usage = "You have reached your specified API usage limits. You will regain access on 2027-01-01 at 00:00 UTC.";
        assert_eq!(
            ended(failure(Origin::Status(400), "invalid_request_error", usage)).as_deref(),
            Some("Billing")
        );
        assert_eq!(ended(failure(Origin::ErrorEvent, "billing_error", "x")).as_deref(), Some("Billing"));
        assert_eq!(
            ended(failure(Origin::Status(400), "invalid_request_error", "x")).as_deref(),
            Some("Invalid")
        );
        assert_eq!(ended(failure(Origin::Status(401), "authentication_error", "x")).as_deref(), Some("Auth"));
        assert_eq!(
            ended(failure(Origin::Status(403), "permission_error", "x")).as_deref(),
            Some("Permission")
        );
        assert_eq!(ended(failure(Origin::Status(404), "not_found_error", "x")).as_deref(), Some("NotFound"));
        assert_eq!(
            ended(failure(Origin::Status(413), "request_too_large", "x")).as_deref(),
            Some("TooLarge")
        );
        assert_eq!(ended(failure(Origin::Status(409), "conflict_error", "x")).as_deref(), Some("Refused"));
    }

    #[test]
    fn messages_read_whole() {
        let body = json!({
            "id": "msg_1", "type": "message", "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "", "signature": "EqQB"},
                {"type": "text", "text": "", "citations": null},
                {"type": "text", "text": "Hi."},
                {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
                {"type": "tool_use", "id": "toolu_1", "name": "top", "input": {"limit": 3}},
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 10, "output_tokens": 20},
        });
        let reply = parse_message(body.to_string().as_bytes(), Some("req_1".into())).unwrap();
        assert_eq!(
            reply.content,
            [
                Block::Thinking { thinking: String::new(), signature: "EqQB".into() },
                Block::Text { text: "Hi.".into() },
                Block::ToolUse { id: "toolu_1".into(), name: "top".into(), input: json!({"limit": 3}) },
            ]
        );
        assert_eq!(
            (reply.stop_reason.as_deref(), reply.input_tokens, reply.output_tokens),
            (Some("tool_use"), 10, 20)
        );
        let garbled = parse_message(b"<html>Bad gateway</html>", None).unwrap_err();
        assert!(verdict(garbled).is_ok(), "a 200 that is not a message is retried");
    }

    #[test]
    fn blocks_serialize_as_the_api_takes_them() {
        let blocks = [
            Block::ToolResult { tool_use_id: "toolu_1".into(), content: "ok".into(), is_error: false },
            Block::ToolResult { tool_use_id: "toolu_2".into(), content: "no".into(), is_error: true },
            Block::RedactedThinking { data: "EmwK".into() },
        ];
        assert_eq!(
            json!(blocks),
            json!([
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "no", "is_error": true},
                {"type": "redacted_thinking", "data": "EmwK"},
            ])
        );
    }

    #[test]
    fn the_key_stays_out_of_debug_output() {
        let cfg = Config {
            base_url: DEFAULT_BASE_URL.into(),
            api_key: "sk-ant-secret".into(),
            model: DEFAULT_MODEL.into(),
            max_tokens: 1,
            max_attempts: 1,
            max_wait: DEFAULT_MAX_WAIT,
        };
        assert!(!format!("{cfg:?}").contains("sk-ant-secret"));
    }

    #[test]
    fn waits_read_as_people_say_them() {
        let s = Duration::from_secs;
        assert_eq!(
            [human(s(45)), human(s(120)), human(s(125)), human(s(3600)), human(s(12_000))],
            ["45 s", "2 min", "2 min 5 s", "1 h", "3 h 20 min"]
        );
    }
}
