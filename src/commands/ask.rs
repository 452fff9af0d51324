//! `egressor ask QUESTION`: Claude answers from summaries of the workspace and read-only tools
//! that run here. Steps: the opening summary (the deterministic explanation of the period) ->
//! redaction -> the Messages API turn, streamed -> each tool call run locally, its result redacted
//! and sent back -> ... until Claude answers -> the answer with real names restored -> every
//! money and byte figure in it checked against what the tools returned.

use super::investigate::{self, CompareWith, Investigation};
use crate::claude::{self, Block, Client, Config, Message, Progress, Request, Role};
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
             the same facts (`egressor explain --since ...`) follows."
        );
        explanation_report(out, &explanation, args.output.into(), settings.color)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut redactor = redactor(&inv, args)?;
    let opening = redactor.value(&serde_json::to_value(&explanation)?);
    let first = format!(
        "{}\n\nWhat egressor's workspace says about the period (JSON; the cost engine's own figures):\n{}",
        redactor.text(&args.question),
        serde_json::to_string(&opening)?
    );
    let tools = investigate::tools();
    let mut messages = vec![Message { role: Role::User, content: vec![Block::Text { text: first }] }];
    let config = config.unwrap_or_else(|| offline_config(args.model.as_deref()));
    if args.show_context {
        let req = Request { system: SYSTEM_PROMPT, tools: &tools, messages: &messages };
        crate::views::write_json(out, &claude::request_body(&config, &req, true))?;
        return Ok(ExitCode::SUCCESS);
    }
    let client = Client::new(config.clone())?;
    let streaming = args.output == OutputFormat::Table;
    let mut printer = LinePrinter::default();
    let mut evidence = vec![opening];
    let mut calls: Vec<ToolCall> = Vec::new();
    let mut answer = String::new();
    let mut rounds = 0;
    loop {
        if rounds == args.max_rounds {
            bail!(
                "Claude had not answered after {} rounds of tool calls (--max-rounds {}); the calls so far: {}",
                rounds,
                args.max_rounds,
                calls.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
        rounds += 1;
        let req = Request { system: SYSTEM_PROMPT, tools: &tools, messages: &messages };
        let reply = client.send(&req, &mut |p| match p {
            Progress::Text(t) if streaming => printer.push(t, &redactor, out),
            Progress::Text(_) => {}
            Progress::Retry { attempt, wait, reason } => {
                // The next attempt streams the turn again from its start: what was not printed yet is
                // dropped, and lines already printed are said to be repeated.
                if printer.discard() {
                    eprintln!("egressor: the answer so far is cut; it starts again below");
                }
                eprintln!("egressor: {reason}; attempt {attempt} in {:.1} s", wait.as_secs_f64())
            }
        })?;
        for b in &reply.content {
            if let Block::Text { text } = b {
                answer.push_str(text);
            }
        }
        let results = run_tools(&inv, &mut redactor, &reply.content, &mut calls, &mut evidence);
        messages.push(Message { role: Role::Assistant, content: reply.content });
        if results.is_empty() {
            break;
        }
        messages.push(Message { role: Role::User, content: results });
    }
    printer.finish(&redactor, out);
    let figures = honesty::check(&answer, &evidence);
    let restored = redactor.restore(&answer);
    if streaming {
        check_report(out, &figures)?;
    } else {
        ask_json(
            out,
            &AskReport {
                schema_version: SCHEMA,
                model: &config.model,
                question: &args.question,
                answer: &restored,
                redacted: !args.no_redact,
                rounds,
                tool_calls: &calls,
                check: check_of(&figures),
            },
        )?;
    }
    Ok(ExitCode::SUCCESS)
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

/// Runs the tool calls of an assistant turn; returns the user turn's tool results, in order.
fn run_tools(
    inv: &Investigation<'_>,
    redactor: &mut Redactor,
    content: &[Block],
    calls: &mut Vec<ToolCall>,
    evidence: &mut Vec<Value>,
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
        evidence.push(result.clone());
        calls.push(ToolCall { id: id.clone(), name: name.clone(), input: input.clone(), result, is_error });
        results.push(Block::ToolResult { tool_use_id: id.clone(), content, is_error });
    }
    results
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
