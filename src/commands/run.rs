//! `egressor run [--policy F] [--learn F] -- CMD ARGS...`: CMD in a cgroup of its own, every destination
//! it talked to with bytes, class and cost, the policy's verdict, and CMD's exit code passed on.
//!
//! ```text
//! policy (checked before CMD runs) --> agent::job::run (cgroup, probes, CMD) --> destinations::report
//!   --> policy::evaluate --> learned allow list, report (stdout, --report FILE, GitHub summary)
//! ```
//!
//! Exit codes: CMD's own when it failed; else 4 on a violation (enforce mode); else 0. egressor's own
//! failures are 125 (could not capture or run), 126 (CMD not executable), 127 (CMD not found), so a
//! CI log never confuses them with CMD's.

use super::load;
use crate::agent::job::{self, Job, JobError, JobOptions};
use crate::cli::{ReportFormat as CliFormat, RunArgs, Settings};
use crate::engines::destinations::{self, JobPricing, JobReport, Runner};
use crate::engines::policy::{self, Mode, Policy, Verdict};
use crate::engines::topology::Topology;
use crate::views::run::{Learned, PolicyOutcome, ReportFormat, RunView, github_annotations, run_report};
use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

pub const VIOLATION: u8 = 4;
const CANNOT_RUN: u8 = 125;
const NOT_EXECUTABLE: u8 = 126;
const NOT_FOUND: u8 = 127;

pub fn run(settings: &Settings, args: &RunArgs, out: &mut dyn Write) -> Result<ExitCode> {
    match run_and_report(settings, args, out) {
        Ok(code) => Ok(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            Ok(ExitCode::from(exit_code_of(&err)))
        }
    }
}

/// 126/127 as shells use them when CMD cannot be started; 125 for everything else egressor failed at.
fn exit_code_of(err: &anyhow::Error) -> u8 {
    match err.downcast_ref::<JobError>() {
        Some(JobError::Spawn { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => NOT_FOUND,
        Some(JobError::Spawn { source, .. }) if source.kind() == std::io::ErrorKind::PermissionDenied => {
            NOT_EXECUTABLE
        }
        _ => CANNOT_RUN,
    }
}

fn run_and_report(settings: &Settings, args: &RunArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let policy = args.policy.policy.as_deref().map(Policy::load_file).transpose()?;
    let book = load::price_book(&args.net.prices.pricing)?;
    let topology = topology(args, policy.as_ref())?;
    // Checked before CMD runs, like the policy: a file --learn could not rewrite fails nothing late.
    let previous = args.learn.as_deref().map(policy::learned_allow_list).transpose()?;
    let job = capture(args)?;
    let runner = Runner {
        host: job.host.clone(),
        provider: topology.as_ref().map_or(crate::engines::pricing::Provider::Aws, |t| t.cloud),
        region: args.region.clone().or_else(|| policy.as_ref().and_then(|p| p.runner.region.clone())),
        zone: args.zone.clone().or_else(|| policy.as_ref().and_then(|p| p.runner.zone.clone())),
    };
    let runs_per_day =
        args.runs_per_day.or_else(|| policy.as_ref().and_then(|p| p.runner.runs_per_day)).unwrap_or(1);
    let pricing = JobPricing { book: &book, topology: topology.as_ref(), runs_per_day };
    let report = destinations::report(&job.records, &runner, &pricing, job.started, job.ended)?;
    let verdict = policy.as_ref().map(|p| judge(p, &report, args.policy.report_only));
    let learned = match (args.learn.as_deref(), previous) {
        (Some(file), Some(previous)) => Some(learn(file, &previous, &report, &args.command)?),
        _ => None,
    };
    let view = RunView {
        schema_version: destinations::RUN_SCHEMA,
        command: args.command.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
        exit_code: exit_status_code(&job),
        report: &report,
        left_running: job.left_running,
        map_insert_failures: job.map_insert_failures,
        sockets_evicted: job.evicted,
        policy: policy.as_ref().zip(verdict.as_ref()).map(|(p, v)| outcome(p, v)),
        learned: learned.as_ref().map(|(l, _)| l.clone()),
    };
    let verdict_shown = view.policy.as_ref().map(|p| p.verdict);
    let render = |w: &mut dyn Write, f: ReportFormat, color: bool| run_report(w, &view, f, color);
    publish(out, args.policy.output, args.policy.report.as_deref(), verdict_shown, settings.color, render)?;
    // After the report: a file that cannot be written does not cost the run its report.
    if let (Some(file), Some((_, text))) = (args.learn.as_deref(), &learned) {
        std::fs::write(file, text)
            .with_context(|| format!("cannot write the allow list {}", file.display()))?;
    }
    Ok(ExitCode::from(final_code(view.exit_code, verdict.as_ref())))
}

/// The topology to classify with: `--topology`, else the policy's runner.topology (a run reads no
/// workspace).
fn topology(args: &RunArgs, policy: Option<&Policy>) -> Result<Option<Topology>> {
    let path = args.net.topology.clone().or_else(|| policy.and_then(|p| p.runner.topology.clone()));
    Ok(path.as_deref().map(Topology::load_file).transpose()?)
}

fn capture(args: &RunArgs) -> Result<Job> {
    let opts = JobOptions { cgroup_parent: args.cgroup_parent.clone(), ..JobOptions::default() };
    job::run(&args.command, &opts).map_err(|e| match e {
        JobError::Capture(crate::capture::Error::PermissionDenied { action }) => anyhow::Error::new(JobError::Io {
            context: "egressor run needs root",
            source: std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "permission denied while {action}. It creates a cgroup and attaches eBPF probes to it: run it \
                     with sudo (`sudo -E egressor run -- CMD`), or give it CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON \
                     (`sudo setcap cap_bpf,cap_net_admin,cap_perfmon+ep $(which egressor)`) and a cgroup \
                     directory you may write to (`--cgroup-parent DIR`, e.g. a systemd-delegated one)"
                ),
            ),
        }),
        other => anyhow::Error::new(other),
    })
}

fn judge(policy: &Policy, report: &JobReport, report_only: bool) -> Verdict {
    let mut verdict = policy::evaluate(policy, &report.usage(), &report.currency);
    if report_only {
        verdict.mode = Mode::Report;
    }
    verdict
}

fn outcome<'a>(p: &Policy, v: &'a Verdict) -> PolicyOutcome<'a> {
    PolicyOutcome { file: p.path.display().to_string(), verdict: v, passed: !v.fails() }
}

/// The widened allow list for `file` (the entries already in it kept) and what the report says of it.
fn learn(
    file: &Path,
    previous: &[String],
    report: &JobReport,
    command: &[std::ffi::OsString],
) -> Result<(Learned, String)> {
    let entries = policy::learned_entries(&report.usage().destinations);
    let cmd = command.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ");
    let header = format!(
        "Allow list learned by `egressor run --learn` ({}), last from: {cmd}\n\
         Gate later runs with `egressor run --policy {} -- ...`, or name this file in another policy's\n\
         [destinations] allow_from. Learning again adds what is new; nothing is removed.",
        report.ended,
        file.display()
    );
    let text = policy::learned_file(&entries, previous, &header);
    let total = Policy::parse(file, &text)
        .map(|p| p.allow.len())
        .context("the learned allow list does not read back")?;
    Ok((Learned { file: file.display().to_string(), entries: total }, text))
}

/// Where a run's or a check's report goes: standard output in `output` (`render`'s flag: colour),
/// `--report FILE` in the format its extension names, and in GitHub Actions the job summary
/// (Markdown) and one annotation per violation of `verdict`.
pub(crate) fn publish(
    out: &mut dyn Write,
    output: CliFormat,
    report_file: Option<&Path>,
    verdict: Option<&Verdict>,
    color: bool,
    render: impl Fn(&mut dyn Write, ReportFormat, bool) -> Result<()>,
) -> Result<()> {
    render(out, format(output), color)?;
    if let Some(file) = report_file {
        let mut buf = Vec::new();
        render(&mut buf, format_for_file(file), false)?;
        std::fs::write(file, buf).with_context(|| format!("cannot write the report {}", file.display()))?;
    }
    if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|s| !s.is_empty()) {
        let mut buf = Vec::new();
        render(&mut buf, ReportFormat::Markdown, false)?;
        append(Path::new(&summary), &buf)?;
    }
    if std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true")
        && let Some(v) = verdict
    {
        github_annotations(out, v)?;
    }
    Ok(())
}

fn format(f: CliFormat) -> ReportFormat {
    match f {
        CliFormat::Table => ReportFormat::Table,
        CliFormat::Json => ReportFormat::Json,
        CliFormat::Markdown => ReportFormat::Markdown,
    }
}

fn format_for_file(file: &Path) -> ReportFormat {
    match file.extension().and_then(|e| e.to_str()) {
        Some("json") => ReportFormat::Json,
        Some("md" | "markdown") => ReportFormat::Markdown,
        _ => ReportFormat::Table,
    }
}

fn append(file: &Path, text: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .with_context(|| format!("cannot open GITHUB_STEP_SUMMARY {}", file.display()))?;
    f.write_all(text)?;
    Ok(())
}

/// The command's exit code as a shell reports it: 128 + N when signal N killed it.
fn exit_status_code(job: &Job) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    job.status.code().unwrap_or_else(|| 128 + job.status.signal().unwrap_or(0))
}

/// CMD's failure wins (the step failed anyway, and its code says how); then a violation.
fn final_code(cmd: i32, verdict: Option<&Verdict>) -> u8 {
    if cmd != 0 {
        return u8::try_from(cmd).unwrap_or(1);
    }
    if verdict.is_some_and(Verdict::fails) { VIOLATION } else { 0 }
}
