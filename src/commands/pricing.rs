//! `egressor pricing show|validate`: print the prices in use after overrides, or check a price
//! file (every problem as file:line:col; exit 1 when there is one).

use super::load;
use crate::cli::{PricingCommand, PricingShowArgs, PricingValidateArgs, Settings};
use crate::engines::pricing::{PriceBook, PriceTable, Provider, TableKind};
use crate::views::reports;
use anyhow::{Context, Result};
use std::io::Write;
use std::process::ExitCode;

pub fn run(settings: &Settings, cmd: &PricingCommand, out: &mut dyn Write) -> Result<ExitCode> {
    match cmd {
        PricingCommand::Show(args) => show(settings, args, out),
        PricingCommand::Validate(args) => validate(args, out),
    }
}

fn show(settings: &Settings, args: &PricingShowArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let provider = match &args.provider {
        Some(p) => Some(
            Provider::parse(p)
                .with_context(|| format!("unknown provider {p:?}; known: {}", Provider::names()))?,
        ),
        None => None,
    };
    let book = load::price_book(&args.prices.pricing)?;
    let rows = book.describe(provider, args.region.as_deref());
    reports::price_rows(out, &book, &rows, args.out.output.into(), settings.color)?;
    Ok(ExitCode::SUCCESS)
}

fn validate(args: &PricingValidateArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let kind = if args.is_override { TableKind::Override } else { TableKind::Shipped };
    let table = match PriceTable::load_file(&args.file, kind) {
        Ok(t) => t,
        Err(e) => {
            // Every problem of the file, then their count: the exit code alone says "invalid".
            let n = e.problems().len().max(1);
            eprintln!("{e}");
            eprintln!("{n} problem{}", if n == 1 { "" } else { "s" });
            return Ok(ExitCode::from(1));
        }
    };
    if args.is_override {
        // Catches a provider or currency that does not match the shipped tables.
        PriceBook::shipped()?.with_override(table.clone())?;
    }
    let c = table.counts();
    writeln!(
        out,
        "{}: ok ({}, as of {}, {} rates, {} hourly charges, {} free allowances, {} CIDR rules)",
        args.file.display(),
        table.provider(),
        table.as_of(),
        c.rates,
        c.hourly,
        c.free_allowances,
        c.cidr_rules
    )?;
    Ok(ExitCode::SUCCESS)
}
