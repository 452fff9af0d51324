//! `egressor completions SHELL`: the completion script for a shell, generated from the flags.

use crate::cli::{self, CompletionsArgs};
use anyhow::Result;
use std::io::Write;
use std::process::ExitCode;

pub fn run(args: &CompletionsArgs, out: &mut dyn Write) -> Result<ExitCode> {
    cli::write_completions(args.shell, out);
    Ok(ExitCode::SUCCESS)
}
