//! `egressor explain`: a period against the one before it (what grew, by edge and class, in
//! money), the anomalies going on in it and the recommendations that apply. No network, and the
//! same workspace gives the same explanation on every run.

use super::investigate::{CompareWith, Investigation};
use crate::cli::{ExplainArgs, OutputFormat, Settings};
use crate::views::explain::explanation_report;
use anyhow::{Result, bail};
use std::io::Write;
use std::process::ExitCode;

pub fn run(settings: &Settings, args: &ExplainArgs, out: &mut dyn Write) -> Result<ExitCode> {
    if args.output == OutputFormat::Csv {
        bail!("`explain` prints text or JSON (--output table|json)");
    }
    let with = CompareWith::parse(&args.compare)?;
    let explanation = Investigation::new(settings, &args.net).explain(args.since, args.until, with)?;
    explanation_report(out, &explanation, args.output.into(), settings.color)?;
    Ok(ExitCode::SUCCESS)
}
