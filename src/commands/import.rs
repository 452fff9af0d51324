//! `egressor import FILE --format F`: one file into the workspace, all of it or nothing.

use super::load;
use crate::cli::{ImportArgs, Settings};
use crate::views::reports;
use anyhow::{Context, Result};
use std::io::Write;
use std::process::ExitCode;

pub fn run(settings: &Settings, args: &ImportArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let mut ws = load::workspace_for_ingest(settings)?;
    let summary = crate::import::import_file(&mut ws, &args.file, args.format.into())
        .with_context(|| format!("import of {} failed; the workspace is unchanged", args.file.display()))?;
    reports::import_summary(out, &summary, args.out.output.into(), settings.color)?;
    Ok(ExitCode::SUCCESS)
}
