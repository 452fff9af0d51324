//! Server-sent events, and the Messages API's stream of them.
//!
//! [`Parser`] turns the lines of a `text/event-stream` body into events (the WHATWG format:
//! `event:` and `data:` fields, comments, a blank line ends an event). [`read_message`] reads a
//! streamed response line by line, so each text delta is handed on as soon as its line is
//! complete however the bytes were split across reads, and assembles the assistant message:
//!
//! ```text
//! message_start                       message id, input tokens
//! content_block_start  index, block   text | tool_use | thinking | redacted_thinking | (other)
//! content_block_delta  index, delta   text_delta | input_json_delta | thinking_delta | signature_delta
//! content_block_stop   index          a tool use's input JSON is complete: parse it
//! message_delta                       stop_reason, output tokens
//! message_stop                        the message is complete
//! ping, unknown event types           ignored (the API may add event types)
//! error                               the API failed after its HTTP 200
//! ```
//!
//! A body that ends before `message_stop` is [`StreamError::Cut`], whatever ended it.

use std::collections::BTreeMap;
use std::io::BufRead;

use serde_json::Value;

use super::Block;

/// One event: its type (`event:`, `message` when absent) and its data lines joined by `\n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub data: String,
}

/// Lines in, events out; holds the event being read.
#[derive(Debug, Default)]
pub struct Parser {
    name: String,
    data: String,
    has_data: bool,
}

impl Parser {
    /// Feeds one line without its line end; returns the event that a blank line completes.
    pub fn line(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            let name = std::mem::take(&mut self.name);
            let data = std::mem::take(&mut self.data);
            // As the format says: an event without a data line is not dispatched.
            if !std::mem::take(&mut self.has_data) {
                return None;
            }
            let name = if name.is_empty() { "message".to_string() } else { name };
            return Some(Event { name, data });
        }
        if line.starts_with(':') {
            return None; // a comment (keep-alive)
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.name = value.to_string(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            // `id` and `retry` serve reconnection, which the Messages API does not offer.
            _ => {}
        }
        None
    }
}

/// Why a stream did not yield a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamError {
    /// An `error` event: the API's error type and message (and `details.error_code`, if any).
    Api { kind: String, message: String, error_code: Option<String> },
    /// The body ended, or a read failed or stalled, before `message_stop`.
    Cut(String),
    /// An event of a known type whose data makes no sense (not JSON, a field missing, a
    /// delta for a block that never started, a tool input that is not JSON).
    Garbled(String),
}

/// The assembled assistant message.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Assembled {
    pub content: Vec<Block>,
    pub stop_reason: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// Reads a streamed Messages API response to its `message_stop`, handing each text delta to
/// `on_text` as it arrives.
pub fn read_message(
    mut reader: impl BufRead,
    on_text: &mut dyn FnMut(&str),
) -> Result<Assembled, StreamError> {
    let mut parser = Parser::default();
    let mut message = MessageStream::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        // Up to the next `\n`, however many reads that takes: an event split across reads (or
        // a UTF-8 character split across them) is whole by the time its line is.
        let read = reader.read_until(b'\n', &mut line);
        match read {
            Err(error) => return Err(StreamError::Cut(format!("reading it failed: {error}"))),
            // The end of the body; `finish` says whether the message was complete.
            Ok(0) => return message.finish(),
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.strip_suffix('\n').unwrap_or(&text);
        let text = text.strip_suffix('\r').unwrap_or(text);
        if let Some(event) = parser.line(text) {
            message.event(&event, on_text)?;
            if message.stopped {
                return message.finish();
            }
        }
    }
}

/// A content block being received.
#[derive(Debug)]
enum Partial {
    Text(String),
    /// `input` as `content_block_start` gave it; `json` the `input_json_delta`s so far.
    ToolUse {
        id: String,
        name: String,
        input: Value,
        json: String,
    },
    Thinking {
        thinking: String,
        signature: String,
    },
    RedactedThinking(String),
    /// A block type this client does not know (server tools it never asks for): its deltas are
    /// skipped and the block is left out of the message.
    Unknown,
}

/// The Messages API's events in, the assistant message out.
#[derive(Debug, Default)]
pub struct MessageStream {
    blocks: BTreeMap<u64, Partial>,
    stop_reason: Option<String>,
    input_tokens: u64,
    output_tokens: u64,
    stopped: bool,
}

impl MessageStream {
    /// Takes one event; text deltas go to `on_text`.
    pub fn event(&mut self, event: &Event, on_text: &mut dyn FnMut(&str)) -> Result<(), StreamError> {
        let known = [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
            "error",
        ];
        if !known.contains(&event.name.as_str()) {
            return Ok(()); // ping, and event types the API adds later
        }
        let data: Value = serde_json::from_str(&event.data).map_err(|error| {
            StreamError::Garbled(format!("the data of a {} event is not JSON ({error})", event.name))
        })?;
        match event.name.as_str() {
            "message_start" => {
                let usage = &data["message"]["usage"];
                self.input_tokens = usage["input_tokens"].as_u64().unwrap_or(0);
                self.output_tokens = usage["output_tokens"].as_u64().unwrap_or(0);
            }
            "content_block_start" => {
                let index = index_of(&data)?;
                let block = start_block(&data["content_block"])?;
                if let Partial::Text(text) = &block
                    && !text.is_empty()
                {
                    on_text(text);
                }
                self.blocks.insert(index, block);
            }
            "content_block_delta" => {
                let index = index_of(&data)?;
                let block = self.blocks.get_mut(&index).ok_or_else(|| {
                    StreamError::Garbled(format!(
                        "a content_block_delta for block {index}, which never started"
                    ))
                })?;
                apply_delta(block, &data["delta"], on_text)?;
            }
            "content_block_stop" => {
                let index = index_of(&data)?;
                if let Some(block) = self.blocks.get_mut(&index) {
                    parse_input(block)?;
                }
            }
            "message_delta" => {
                if let Some(reason) = data["delta"]["stop_reason"].as_str() {
                    self.stop_reason = Some(reason.to_string());
                }
                // The usage in message_delta is cumulative: it replaces message_start's.
                if let Some(tokens) = data["usage"]["output_tokens"].as_u64() {
                    self.output_tokens = tokens;
                }
                if let Some(tokens) = data["usage"]["input_tokens"].as_u64() {
                    self.input_tokens = tokens;
                }
            }
            "message_stop" => self.stopped = true,
            _ => {
                let error = &data["error"];
                return Err(StreamError::Api {
                    kind: error["type"].as_str().unwrap_or("api_error").to_string(),
                    message: error["message"].as_str().unwrap_or("(no message)").to_string(),
                    error_code: error["details"]["error_code"].as_str().map(str::to_string),
                });
            }
        }
        Ok(())
    }

    /// The message, if `message_stop` came.
    pub fn finish(mut self) -> Result<Assembled, StreamError> {
        if !self.stopped {
            return Err(StreamError::Cut("the body ended before message_stop".into()));
        }
        let mut content = Vec::new();
        for block in self.blocks.values_mut() {
            parse_input(block)?;
        }
        for block in self.blocks.into_values() {
            match block {
                // The API refuses empty text blocks when the turn is sent back.
                Partial::Text(text) if text.is_empty() => {}
                Partial::Text(text) => content.push(Block::Text { text }),
                Partial::ToolUse { id, name, input, .. } => content.push(Block::ToolUse { id, name, input }),
                Partial::Thinking { thinking, signature } => {
                    content.push(Block::Thinking { thinking, signature })
                }
                Partial::RedactedThinking(data) => content.push(Block::RedactedThinking { data }),
                Partial::Unknown => {}
            }
        }
        Ok(Assembled {
            content,
            stop_reason: self.stop_reason,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
        })
    }
}

fn index_of(data: &Value) -> Result<u64, StreamError> {
    data["index"]
        .as_u64()
        .ok_or_else(|| StreamError::Garbled(format!("an event without a block index: {data}")))
}

fn string_field(value: &Value, field: &str) -> Result<String, StreamError> {
    value[field]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| StreamError::Garbled(format!("a content block without its {field}: {value}")))
}

fn start_block(block: &Value) -> Result<Partial, StreamError> {
    Ok(match block["type"].as_str() {
        Some("text") => Partial::Text(block["text"].as_str().unwrap_or_default().to_string()),
        Some("tool_use") => Partial::ToolUse {
            id: string_field(block, "id")?,
            name: string_field(block, "name")?,
            input: block.get("input").cloned().unwrap_or_else(|| Value::Object(Default::default())),
            json: String::new(),
        },
        Some("thinking") => Partial::Thinking {
            thinking: block["thinking"].as_str().unwrap_or_default().to_string(),
            signature: block["signature"].as_str().unwrap_or_default().to_string(),
        },
        Some("redacted_thinking") => Partial::RedactedThinking(string_field(block, "data")?),
        _ => Partial::Unknown,
    })
}

fn apply_delta(block: &mut Partial, delta: &Value, on_text: &mut dyn FnMut(&str)) -> Result<(), StreamError> {
    let piece = |field: &str| {
        delta[field]
            .as_str()
            .ok_or_else(|| StreamError::Garbled(format!("a delta without its {field}: {delta}")))
    };
    match (block, delta["type"].as_str()) {
        (Partial::Unknown, _) => {}
        (Partial::Text(text), Some("text_delta")) => {
            let piece = piece("text")?;
            text.push_str(piece);
            on_text(piece);
        }
        (Partial::ToolUse { json, .. }, Some("input_json_delta")) => json.push_str(piece("partial_json")?),
        (Partial::Thinking { thinking, .. }, Some("thinking_delta")) => thinking.push_str(piece("thinking")?),
        (Partial::Thinking { signature, .. }, Some("signature_delta")) => {
            signature.push_str(piece("signature")?)
        }
        (block, Some(kind @ ("text_delta" | "input_json_delta" | "thinking_delta" | "signature_delta"))) => {
            return Err(StreamError::Garbled(format!("a {kind} for a block that is not one: {block:?}")));
        }
        // Deltas that add nothing the conversation needs (citations_delta) or that came later.
        _ => {}
    }
    Ok(())
}

/// A tool use's input from its JSON pieces, once they are all there. Without pieces the input is
/// the one `content_block_start` gave.
fn parse_input(block: &mut Partial) -> Result<(), StreamError> {
    if let Partial::ToolUse { name, input, json, .. } = block
        && !json.is_empty()
    {
        *input = serde_json::from_str(json).map_err(|error| {
            StreamError::Garbled(format!("the input of the {name} tool use is not JSON ({error}): {json}"))
        })?;
        json.clear();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn events(text: &str) -> Vec<Event> {
        let mut parser = Parser::default();
        text.split('\n').filter_map(|line| parser.line(line.strip_suffix('\r').unwrap_or(line))).collect()
    }

    fn event(name: &str, data: &str) -> Event {
        Event { name: name.into(), data: data.into() }
    }

    #[test]
    fn lines_become_events() {
        let got = events(
            ": keep-alive\nevent: ping\ndata: {\"type\": \"ping\"}\n\n\
             data: first\ndata:second\nid: 7\nretry: 10\n\n\
             event: empty\n\n\
             event: blank\ndata:\n\n\
             data: no blank line at the end",
        );
        assert_eq!(
            got,
            [event("ping", r#"{"type": "ping"}"#), event("message", "first\nsecond"), event("blank", ""),]
        );
    }

    #[test]
    fn crlf_and_a_colon_in_the_value() {
        assert_eq!(events("event: x\r\ndata: a: b\r\n\r\n"), [event("x", "a: b")]);
    }

    /// A whole stream as the API sends it, with text and a tool use, read in three-byte pieces.
    fn api_stream() -> String {
        let events = [
            (
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_1", "content": [], "usage": {"input_tokens": 25, "output_tokens": 1}}}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            ("ping", json!({"type": "ping"})),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hé, "}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "look."}}),
            ),
            ("something_new", json!({"type": "something_new", "x": 1})),
            ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "top", "input": {}}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"limit\": "}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "3}"}}),
            ),
            ("content_block_stop", json!({"type": "content_block_stop", "index": 1})),
            (
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 42}}),
            ),
            ("message_stop", json!({"type": "message_stop"})),
        ];
        events.iter().map(|(name, data)| format!("event: {name}\ndata: {data}\n\n")).collect()
    }

    /// Hands out `chunk` bytes per read, so lines and characters are split across reads.
    struct Trickle<'a> {
        bytes: &'a [u8],
        chunk: usize,
    }

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.chunk.min(buf.len()).min(self.bytes.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    fn read(stream: &str) -> (Result<Assembled, StreamError>, Vec<String>) {
        let mut texts = Vec::new();
        let reader = std::io::BufReader::with_capacity(3, Trickle { bytes: stream.as_bytes(), chunk: 3 });
        let result = read_message(reader, &mut |text| texts.push(text.to_string()));
        (result, texts)
    }

    #[test]
    fn a_stream_becomes_the_message_with_text_in_pieces() {
        let (message, texts) = read(&api_stream());
        assert_eq!(texts, ["Hé, ", "look."]);
        assert_eq!(
            message.unwrap(),
            Assembled {
                content: vec![
                    Block::Text { text: "Hé, look.".into() },
                    Block::ToolUse { id: "toolu_1".into(), name: "top".into(), input: json!({"limit": 3}) },
                ],
                stop_reason: Some("tool_use".into()),
                input_tokens: 25,
                output_tokens: 42,
            }
        );
    }

    #[test]
    fn a_stream_without_message_stop_is_cut() {
        let stream = api_stream();
        let cut = &stream[..stream.find("event: message_delta").unwrap()];
        let (message, texts) = read(cut);
        assert!(matches!(message, Err(StreamError::Cut(_))), "{message:?}");
        assert_eq!(texts.concat(), "Hé, look.");
    }

    #[test]
    fn an_error_event_is_the_apis_error() {
        let stream = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{}}\n\n\
             event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        let (message, _) = read(stream);
        assert_eq!(
            message,
            Err(StreamError::Api {
                kind: "overloaded_error".into(),
                message: "Overloaded".into(),
                error_code: None
            })
        );
    }

    #[test]
    fn thinking_blocks_are_kept_and_empty_text_and_unknown_blocks_dropped() {
        let mut stream = MessageStream::default();
        let mut texts = Vec::new();
        let events = [
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Check egress."}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQB"}}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "redacted_thinking", "data": "EmwK"}}),
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "server_tool_use", "id": "srvtoolu_1"}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{"}}),
            json!({"type": "content_block_start", "index": 3, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "message_stop"}),
        ];
        for data in &events {
            let name = data["type"].as_str().unwrap();
            stream.event(&event(name, &data.to_string()), &mut |t| texts.push(t.to_string())).unwrap();
        }
        let message = stream.finish().unwrap();
        assert_eq!(
            message.content,
            [
                Block::Thinking { thinking: "Check egress.".into(), signature: "EqQB".into() },
                Block::RedactedThinking { data: "EmwK".into() },
            ]
        );
        assert!(texts.is_empty());
    }

    #[test]
    fn garbled_events_are_errors() {
        let mut stream = MessageStream::default();
        let garbled = |stream: &mut MessageStream, name: &str, data: &str| {
            let result = stream.event(&event(name, data), &mut |_| {});
            assert!(matches!(result, Err(StreamError::Garbled(_))), "{name} {data}: {result:?}");
        };
        garbled(&mut stream, "content_block_start", "not json");
        garbled(
            &mut stream,
            "content_block_delta",
            r#"{"index": 5, "delta": {"type": "text_delta", "text": "x"}}"#,
        );
        let start =
            r#"{"index": 0, "content_block": {"type": "tool_use", "id": "t", "name": "n", "input": {}}}"#;
        stream.event(&event("content_block_start", start), &mut |_| {}).unwrap();
        garbled(
            &mut stream,
            "content_block_delta",
            r#"{"index": 0, "delta": {"type": "text_delta", "text": "x"}}"#,
        );
        let delta = r#"{"index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"a\": "}}"#;
        stream.event(&event("content_block_delta", delta), &mut |_| {}).unwrap();
        garbled(&mut stream, "content_block_stop", r#"{"index": 0}"#);
        // Unknown events are not even parsed.
        stream.event(&event("future", "not json"), &mut |_| {}).unwrap();
    }
}
