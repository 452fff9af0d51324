//! `egressor policy validate F`: check a policy file and the allow lists it names; every problem as
//! file:line:col: field (exit 1 when there is one), else a summary of its rules.

use crate::cli::PolicyCommand;
use crate::engines::policy::{Mode, Policy};
use anyhow::Result;
use std::io::Write;
use std::process::ExitCode;

pub fn run(cmd: &PolicyCommand, out: &mut dyn Write) -> Result<ExitCode> {
    let PolicyCommand::Validate { file } = cmd;
    let policy = match Policy::load_file(file) {
        Ok(p) => p,
        Err(e) => {
            // Every problem of the file, then their count: the exit code alone says "invalid".
            let n = e.problems().len().max(1);
            eprintln!("{e}");
            eprintln!("{n} problem{}", if n == 1 { "" } else { "s" });
            return Ok(ExitCode::from(1));
        }
    };
    let mode = match policy.mode {
        Mode::Enforce => "enforce",
        Mode::Report => "report only",
    };
    writeln!(
        out,
        "{}: ok ({mode}; {} budgets, {} allowed and {} denied destinations{}, {} byte limits)",
        file.display(),
        policy.budgets.len(),
        policy.allow.len(),
        policy.deny.len(),
        if policy.allowlist.is_some() { ", anything else not allowed" } else { "" },
        policy.limits.len()
    )?;
    Ok(ExitCode::SUCCESS)
}
