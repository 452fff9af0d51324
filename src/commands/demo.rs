//! `egressor demo`: write a labelled synthetic cluster into the workspace.

use super::load;
use crate::cli::{DemoArgs, Settings};
use crate::demo::{self, DemoSpec};
use crate::views::reports;
use anyhow::Result;
use std::io::Write;
use std::process::ExitCode;

pub fn run(settings: &Settings, args: &DemoArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let mut ws = load::workspace_for_ingest(settings)?;
    let spec = DemoSpec { days: args.days, seed: args.seed, end: args.end.unwrap_or(settings.now) };
    let report = demo::write(&mut ws, spec)?;
    reports::demo_report(out, &report, args.out.output.into(), settings.color)?;
    Ok(ExitCode::SUCCESS)
}
