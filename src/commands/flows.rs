//! `egressor flows`: list flow records, oldest first.

use crate::cli::{FlowsArgs, Settings};
use crate::store::{FlowFilter, Workspace};
use crate::views::{Format, flows::FlowSink};
use anyhow::Result;
use std::io::Write;
use std::process::ExitCode;

pub fn run(settings: &Settings, args: &FlowsArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let ws = Workspace::open(&settings.workspace)?;
    let (since, until) = args.range.resolve(settings.now)?;
    let filter = FlowFilter { since, until, limit: Some(args.limit) };
    let mut sink = match args.out.output.into() {
        Format::Table => FlowSink::table(out, settings.color),
        Format::Json => FlowSink::json(out),
        Format::Csv => FlowSink::csv(out),
    };
    ws.for_each_flow(&filter, |r| sink.push(r))?;
    sink.finish()?;
    Ok(ExitCode::SUCCESS)
}
