//! `egressor man [--dir DIR]`: the man page (roff) generated from the flags: printed, or written as
//! egressor.1 plus one page per command for `man -l` or a package's man1 directory.

use crate::cli::{self, ManArgs};
use anyhow::{Context, Result};
use std::io::Write;
use std::process::ExitCode;

pub fn run(args: &ManArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let Some(dir) = &args.dir else {
        cli::write_man_page(out)?;
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, page) in cli::man_pages()? {
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
        writeln!(out, "{}", path.display())?;
    }
    Ok(ExitCode::SUCCESS)
}
