//! `egressor workspace info|prune|retention`: inspect the workspace and keep it within its
//! retention.

use crate::cli::{RetentionArgs, Settings, WorkspaceCommand};
use crate::store::Workspace;
use crate::views::reports;
use anyhow::Result;
use std::io::Write;
use std::process::ExitCode;

pub fn run(settings: &Settings, cmd: &WorkspaceCommand, out: &mut dyn Write) -> Result<ExitCode> {
    match cmd {
        WorkspaceCommand::Info(o) => {
            let ws = Workspace::open(&settings.workspace)?;
            // Sizes on disk are only true once the WAL is folded into the file.
            ws.checkpoint()?;
            reports::workspace_info(out, &ws.info()?, o.output.into(), settings.color)?;
        }
        WorkspaceCommand::Prune(o) => {
            let mut ws = Workspace::open(&settings.workspace)?;
            let r = ws.prune(settings.now)?;
            reports::prune_report(out, &r, o.output.into(), settings.color)?;
        }
        WorkspaceCommand::Retention(args) => retention(settings, args, out)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Changes what is asked, then shows what is in force.
fn retention(settings: &Settings, args: &RetentionArgs, out: &mut dyn Write) -> Result<()> {
    let ws = Workspace::open(&settings.workspace)?;
    if args.raw_days.is_some() || args.rollup_days.is_some() {
        ws.set_retention(args.raw_days, args.rollup_days)?;
    }
    let (raw_days, rollup_days) = ws.retention()?;
    reports::retention(out, &reports::Retention { raw_days, rollup_days }, settings.color)?;
    Ok(())
}
