//! `egressor ask QUESTION`: Claude answers from summaries of the workspace and read-only tools
//! that run here. Steps: the opening summary (the deterministic explanation of the period) ->
//! redaction -> the Messages API turn, streamed -> each tool call run locally, its result redacted
//! and sent back -> ... until Claude answers -> the answer with real names restored -> every
//! money and byte figure in it checked against what the tools returned.

use super::investigate::{self, CompareWith, Investigation};
use crate::claude::{self, Block, Client, Config, Message, Progress, Request, Role, ToolDef};
use crate::cli::{AskArgs, OutputFormat, Settings};
use crate::engines::honesty;
use crate::engines::redact::Redactor;
use crate::views::explain::{AskReport, ToolCall, ask_json, check_of, check_report, explanation_report};
use anyhow::{Result, bail};
use serde_json::Value;
use std::io::Write;
use std::process::ExitCode;

pub const SCHEMA: &str = "egressor.ask/v1";

const SYSTEM_PROMPT: &str = "You are egressor's analyst. egressor measures the network transfer of a \
Kubernetes or cloud system (every byte per socket, attributed to pods, workloads, services and \
external endpoints) and prices it with the provider's real price tables. Answer the user's question \
about their transfer and its cost. Rules: every money or byte figure you write must be one the \
opening summary or a tool result gave you, written as it was given (money as $ with the figure's \
decimals, bytes with their unit); do not compute new totals or estimates. Use the tools to look \
further when the summary does not answer. Addresses (ext-N public, int-N private) and sometimes names \
(name-N) are pseudonyms; use them as they are. Be brief: the cause, its cost, and the next command \
to run (egressor graph --focus ..., egressor cost --explain ..., egressor anomalies show ID).";

pub fn run(settings: &Settings, args: &AskArgs, out: &mut dyn Write) -> Result<ExitCode> {
    if args.output == OutputFormat::Csv {
        bail!("`ask` prints the answer or JSON (--output table|json)");
    }
    let inv = Investigation::new(settings, &args.net);
    let explanation = inv.explain(args.since, None, CompareWith::Previous)?;
    let config = Config::from_env(args.model.as_deref());
    if config.is_none() && !args.show_context {
        eprintln!(
            "ANTHROPIC_API_KEY is not set, so nothing is sent to Claude. The deterministic answer from \
             the same facts follows (what `egressor explain --since {}` prints).",
            args.since.resolve(settings.now)
        );
        explanation_report(out, &explanation, args.output.into(), settings.color)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut redactor = redactor(&inv, args)?;
    let opening = redactor.value(&serde_json::to_value(&explanation)?);
    let first = opening_message(&redactor.text(&args.question), &opening)?;
    let tools = investigate::tools();
    if args.show_context {
        let config = config.unwrap_or_else(|| offline_config(args.model.as_deref()));
        let messages = [first];
        let req = Request { system: SYSTEM_PROMPT, tools: &tools, messages: &messages };
        crate::views::write_json(out, &claude::request_body(&config, &req, true))?;
        return Ok(ExitCode::SUCCESS);
    }
    let client = Client::new(config.expect("a key, or --show-context returned"))?;
    let mut talk = Conversation { messages: vec![first], evidence: vec![opening], ..Conversation::default() };
    talk.run(&client, &inv, &mut redactor, args, &tools, out)?;
    report(out, args, &client.config().model, &redactor, &talk)?;
    Ok(ExitCode::SUCCESS)
}

/// The first user turn: the question, then the explanation of the period as JSON.
fn opening_message(question: &str, opening: &Value) -> Result<Message> {
    let text = format!(
        "{question}\n\nWhat egressor's workspace says about the period (JSON; the cost engine's own figures):\n{}",
        serde_json::to_string(opening)?
    );
    Ok(Message { role: Role::User, content: vec![Block::Text { text }] })
}

/// A conversation with Claude: the turns so far, what the tools returned, and the answer's text.
#[derive(Default)]
struct Conversation {
    messages: Vec<Message>,
    /// The opening summary and every tool result, as sent: what the answer's figures are checked against.
    evidence: Vec<Value>,
    calls: Vec<ToolCall>,
    answer: String,
    rounds: u32,
}

impl Conversation {
    /// Turns until Claude answers without calling a tool, or the round limit.
    fn run(
        &mut self,
        client: &Client,
        inv: &Investigation<'_>,
        redactor: &mut Redactor,
        args: &AskArgs,
        tools: &[ToolDef],
        out: &mut dyn Write,
    ) -> Result<()> {
        let mut printer = (args.output == OutputFormat::Table).then(LinePrinter::default);
        loop {
            if self.rounds == args.max_rounds {
                bail!(
                    "Claude had not answered after {} rounds of tool calls (--max-rounds {}); the calls so far: {}",
                    self.rounds,
                    args.max_rounds,
                    self.calls.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
                );
            }
            self.rounds += 1;
            let req = Request { system: SYSTEM_PROMPT, tools, messages: &self.messages };
            let reply = match printer.as_mut() {
                Some(p) => client.send(&req, &mut |progress| p.progress(progress, redactor, out))?,
                // JSON prints nothing until the end: no stream to follow.
                None => client.send_once(&req)?,
            };
            for b in &reply.content {
                if let Block::Text { text } = b {
                    self.answer.push_str(text);
                }
            }
            let results = self.run_tools(inv, redactor, &reply.content);
            self.messages.push(Message { role: Role::Assistant, content: reply.content });
            if results.is_empty() {
                if let Some(p) = printer.as_mut() {
                    p.finish(redactor, out);
                }
                return Ok(());
            }
            self.messages.push(Message { role: Role::User, content: results });
        }
    }

    /// Runs the tool calls of an assistant turn; returns the user turn's tool results, in order.
    fn run_tools(
        &mut self,
        inv: &Investigation<'_>,
        redactor: &mut Redactor,
        content: &[Block],
    ) -> Vec<Block> {
        let mut results = Vec::new();
        for b in content {
            let Block::ToolUse { id, name, input } = b else { continue };
            // Claude names things by their pseudonyms: the tools look up the real ones.
            let real_input = restore_value(redactor, input);
            let (result, is_error) = match inv.call(name, &real_input) {
                Ok(v) => (redactor.value(&v), false),
                Err(e) => (Value::String(redactor.text(&format!("error: {e:#}"))), true),
            };
            let content = match &result {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            self.evidence.push(result.clone());
            self.calls.push(ToolCall {
                id: id.clone(),
                name: name.clone(),
                input: input.clone(),
                result,
                is_error,
            });
            results.push(Block::ToolResult { tool_use_id: id.clone(), content, is_error });
        }
        results
    }
}

/// The answer's check, after the streamed answer or with the whole conversation as JSON.
fn report(
    out: &mut dyn Write,
    args: &AskArgs,
    model: &str,
    redactor: &Redactor,
    talk: &Conversation,
) -> Result<()> {
    let figures = honesty::check(&talk.answer, &talk.evidence);
    if args.output == OutputFormat::Table {
        return check_report(out, &figures);
    }
    ask_json(
        out,
        &AskReport {
            schema_version: SCHEMA,
            model,
            question: &args.question,
            answer: &redactor.restore(&talk.answer),
            redacted: !args.no_redact,
            rounds: talk.rounds,
            tool_calls: &talk.calls,
            check: check_of(&figures),
        },
    )
}

fn redactor(inv: &Investigation<'_>, args: &AskArgs) -> Result<Redactor> {
    if args.no_redact {
        return Ok(Redactor::off());
    }
    let names = if args.redact_names { inv.names()? } else { Vec::new() };
    Ok(Redactor::new(true, names))
}

/// What `--show-context` shows: the request as it would be sent, whether or not a key is set
/// (the key is a header, never part of what is shown).
fn offline_config(model: Option<&str>) -> Config {
    Config {
        base_url: claude::DEFAULT_BASE_URL.to_string(),
        api_key: String::new(),
        model: model.unwrap_or(claude::DEFAULT_MODEL).to_string(),
        max_tokens: claude::DEFAULT_MAX_TOKENS,
        max_attempts: claude::DEFAULT_MAX_ATTEMPTS,
        max_wait: claude::DEFAULT_MAX_WAIT,
    }
}

fn restore_value(r: &Redactor, v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(r.restore(s)),
        Value::Array(a) => Value::Array(a.iter().map(|v| restore_value(r, v)).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), restore_value(r, v))).collect()),
        other => other.clone(),
    }
}

/// Prints streamed text a line at a time, with pseudonyms turned back into real names (a
/// pseudonym can be split across two deltas, never across a line).
#[derive(Default)]
struct LinePrinter {
    pending: String,
    /// Lines of the current attempt were printed.
    printed: bool,
}

impl LinePrinter {
    fn push(&mut self, text: &str, r: &Redactor, out: &mut dyn Write) {
        self.pending.push_str(text);
        if let Some(end) = self.pending.rfind('\n') {
            let lines: String = self.pending.drain(..=end).collect();
            self.printed = true;
            // A closed stdout (`| head`) ends the printing, not the conversation.
            let _ = out.write_all(r.restore(&lines).as_bytes()).and_then(|_| out.flush());
        }
    }

    fn progress(&mut self, p: Progress<'_>, r: &Redactor, out: &mut dyn Write) {
        match p {
            Progress::Text(t) => self.push(t, r, out),
            Progress::Retry { attempt, wait, reason } => {
                // The next attempt streams the turn again from its start: what was not printed yet is
                // dropped, and lines already printed are said to be repeated.
                if self.discard() {
                    eprintln!("egressor: the answer so far is cut; it starts again below");
                }
                eprintln!("egressor: {reason}; attempt {attempt} in {:.1} s", wait.as_secs_f64())
            }
        }
    }

    /// Drops the unprinted part of a turn that will be streamed again; true if lines of it were printed.
    fn discard(&mut self) -> bool {
        self.pending.clear();
        std::mem::take(&mut self.printed)
    }

    fn finish(&mut self, r: &Redactor, out: &mut dyn Write) {
        if !self.pending.is_empty() {
            let _ = writeln!(out, "{}", r.restore(&std::mem::take(&mut self.pending)));
        }
    }
}
