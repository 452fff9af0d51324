//! Policy: what a job (`egressor run`) or the workspace (`egressor check`) may send where, and what it
//! may cost. A policy file is TOML (docs/policy.md); like price and topology files, a file with any
//! problem yields no policy, and every problem is reported as `file:line:column: field: message`.
//!
//! ```text
//! policy file --parse--> Policy --evaluate(Usage)--> Verdict { violations, checked, skipped }
//! ```
//!
//! [`Usage`] is what both commands measured, in one shape: a run's destinations and cost per run, or a
//! period's destinations and cost per day. Rules a usage cannot answer (a per-run budget in `check`,
//! a namespace budget for a command that has no namespace) are listed as skipped, never as passed.

use super::classify::Class;
use super::pricing::validate::{Problem, at_positions, line_col, syntax_problem};
use super::pricing::{AmountText, Provider};
use ipnet::IpNet;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The only policy file version this build reads.
pub const POLICY_VERSION: i64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", at_positions(path, problems))]
    Invalid { path: PathBuf, problems: Vec<Problem> },
}

impl PolicyError {
    pub fn problems(&self) -> &[Problem] {
        match self {
            PolicyError::Read { .. } => &[],
            PolicyError::Invalid { problems, .. } => problems,
        }
    }
}

// ---- The file as written -------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    version: Option<Spanned<i64>>,
    mode: Option<Spanned<String>>,
    runner: Option<RawRunner>,
    budget: Option<RawBudget>,
    destinations: Option<RawDestinations>,
    limits: Option<RawLimits>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRunner {
    region: Option<Spanned<String>>,
    zone: Option<Spanned<String>>,
    topology: Option<Spanned<String>>,
    runs_per_day: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    per_run: Option<Spanned<AmountText>>,
    per_day: Option<Spanned<AmountText>>,
    #[serde(default)]
    limit: Vec<Spanned<RawScopedBudget>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScopedBudget {
    class: Option<Spanned<String>>,
    namespace: Option<Spanned<String>>,
    workload: Option<Spanned<String>>,
    per_run: Option<Spanned<AmountText>>,
    per_day: Option<Spanned<AmountText>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDestinations {
    allow: Option<Spanned<Vec<Spanned<String>>>>,
    allow_from: Option<Spanned<Vec<Spanned<String>>>>,
    deny: Option<Spanned<Vec<Spanned<String>>>>,
}

/// The elements of an optional list.
fn items(list: &Option<Spanned<Vec<Spanned<String>>>>) -> &[Spanned<String>] {
    list.as_ref().map_or(&[], |l| l.get_ref().as_slice())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    internet_bytes_per_run: Option<Spanned<SizeText>>,
    internet_bytes_per_day: Option<Spanned<SizeText>>,
    cross_region_bytes_per_run: Option<Spanned<SizeText>>,
    cross_region_bytes_per_day: Option<Spanned<SizeText>>,
}

/// A byte count as written: an integer or a string with a unit ("50 MB"), read at validation so
/// that a bad one is reported with the others.
#[derive(Deserialize)]
#[serde(untagged)]
enum SizeText {
    Bytes(i64),
    Text(String),
}

// ---- The policy as checked -----------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A violation fails the command (exit code 4).
    Enforce,
    /// Violations are reported and the command exits as if there were none: adopting a gate.
    Report,
}

/// Where a rule is written: `policy.toml:12` and the field, for messages and CI annotations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleOrigin {
    pub file: String,
    pub line: usize,
    pub field: String,
}

impl std::fmt::Display for RuleOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{} {}", self.file, self.line, self.field)
    }
}

/// Where `egressor run` runs: what its destinations' classes and prices are relative to. The cloud
/// is the topology's (aws without one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Runner {
    pub region: Option<String>,
    pub zone: Option<String>,
    /// Resolved against the policy file's directory.
    pub topology: Option<PathBuf>,
    pub runs_per_day: Option<u32>,
}

/// Whose cost a budget caps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "lowercase")]
pub enum Scope {
    Total,
    Class(Class),
    Namespace(String),
    Workload(String),
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Total => f.write_str("total"),
            Scope::Class(c) => write!(f, "class {c}"),
            Scope::Namespace(n) => write!(f, "namespace {n}"),
            Scope::Workload(w) => write!(f, "workload {w}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Per {
    Run,
    Day,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub scope: Scope,
    pub per: Per,
    pub amount: Decimal,
    pub origin: RuleOrigin,
}

/// A destination as a rule names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// An address or a network, optionally one port.
    Net { net: IpNet, port: Option<u16> },
    /// A cloud service from the shipped IP ranges, optionally in one region: `aws:S3 us-east-1`.
    Service { provider: Provider, service: String, region: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub pattern: Pattern,
    /// As written in the file.
    pub text: String,
    pub origin: RuleOrigin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Traffic {
    /// Classes `internet` and `nat-internet`: bytes sent to the internet.
    Internet,
    /// Class `cross-region`.
    CrossRegion,
}

impl Traffic {
    pub fn classes(self) -> &'static [Class] {
        match self {
            Traffic::Internet => &[Class::Internet, Class::NatInternet],
            Traffic::CrossRegion => &[Class::CrossRegion],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByteLimit {
    pub traffic: Traffic,
    pub per: Per,
    pub bytes: u64,
    pub origin: RuleOrigin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub path: PathBuf,
    pub mode: Mode,
    pub runner: Runner,
    pub budgets: Vec<Budget>,
    /// Empty: every destination not denied is allowed. Otherwise only these (and `allow_from`'s).
    pub allow: Vec<Entry>,
    /// Where the allow list is written, when the file has one (an empty learned list still closes
    /// the gate): destinations it does not name are violations of this rule.
    pub allowlist: Option<RuleOrigin>,
    pub deny: Vec<Entry>,
    pub limits: Vec<ByteLimit>,
}

impl Policy {
    pub fn load_file(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| PolicyError::Read { path: path.to_path_buf(), source })?;
        Policy::parse(path, &text)
    }

    /// Checks every field; `allow_from` files are read relative to `path`'s directory.
    pub fn parse(path: &Path, text: &str) -> Result<Policy, PolicyError> {
        Policy::parse_following(path, text, true)
    }

    /// `follow`: read the files `allow_from` names. A file named there is read without following its
    /// own `allow_from` (which it should not have: learned files hold an allow list only), so two
    /// files naming each other cannot loop.
    fn parse_following(path: &Path, text: &str, follow: bool) -> Result<Policy, PolicyError> {
        let invalid = |problems| PolicyError::Invalid { path: path.to_path_buf(), problems };
        let raw: RawPolicy = toml::from_str(text).map_err(|e| invalid(vec![syntax_problem(text, &e)]))?;
        let allow_from = raw.destinations.as_ref().map(|d| items(&d.allow_from).to_vec()).unwrap_or_default();
        let mut check = Check { text, file: path.display().to_string(), problems: Vec::new() };
        let policy = check.policy(path, raw);
        let mut problems = check.problems;
        let policy = match policy {
            Some(mut p) if problems.is_empty() && follow => {
                problems.extend(load_allow_from(&mut p, path, text, &allow_from));
                p
            }
            Some(p) if problems.is_empty() => p,
            _ => return Err(invalid(problems)),
        };
        if problems.is_empty() { Ok(policy) } else { Err(invalid(problems)) }
    }
}

/// Reads the allow lists of the files named in `allow_from` (learned by `run --learn`): a problem in
/// one is reported at the `allow_from` entry that names it, with the learned file's own position.
fn load_allow_from(p: &mut Policy, path: &Path, text: &str, files: &[Spanned<String>]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let target = relative_to(path, f.get_ref());
        let (line, column) = line_col(text, f.span().start);
        let field = format!("destinations.allow_from[{i}]");
        let learned = std::fs::read_to_string(&target)
            .map_err(|source| PolicyError::Read { path: target.clone(), source })
            .and_then(|t| Policy::parse_following(&target, &t, false));
        match learned {
            Ok(learned) => p.allow.extend(learned.allow),
            Err(e) => problems.push(Problem { line, column, field, message: format!("{e}") }),
        }
    }
    problems
}

fn relative_to(policy: &Path, named: &str) -> PathBuf {
    let named = Path::new(named);
    if named.is_absolute() {
        return named.to_path_buf();
    }
    policy.parent().map_or_else(|| named.to_path_buf(), |d| d.join(named))
}

struct Check<'a> {
    text: &'a str,
    file: String,
    problems: Vec<Problem>,
}

impl Check<'_> {
    fn problem(&mut self, span: Range<usize>, field: &str, message: String) {
        let (line, column) = line_col(self.text, span.start);
        self.problems.push(Problem { line, column, field: field.to_string(), message });
    }

    fn origin(&self, span: Range<usize>, field: &str) -> RuleOrigin {
        RuleOrigin {
            file: self.file.clone(),
            line: line_col(self.text, span.start).0,
            field: field.to_string(),
        }
    }

    fn policy(&mut self, path: &Path, raw: RawPolicy) -> Option<Policy> {
        match &raw.version {
            None => self.problem(
                0..0,
                "version",
                format!("missing `version = {POLICY_VERSION}` (the first line of a policy file)"),
            ),
            Some(v) if *v.get_ref() != POLICY_VERSION => self.problem(
                v.span(),
                "version",
                format!("version {} is not one this egressor reads; expected {POLICY_VERSION}", v.get_ref()),
            ),
            Some(_) => {}
        }
        let mode = self.mode(raw.mode.as_ref());
        let runner = raw.runner.map(|r| self.runner(path, r)).unwrap_or_default();
        let budgets = raw.budget.map(|b| self.budgets(b)).unwrap_or_default();
        let (allow, deny, allowlist) = match raw.destinations {
            Some(d) => (
                self.entries(items(&d.allow), "destinations.allow"),
                self.entries(items(&d.deny), "destinations.deny"),
                self.allowlist(&d),
            ),
            None => (Vec::new(), Vec::new(), None),
        };
        let limits = raw.limits.map(|l| self.limits(l)).unwrap_or_default();
        Some(Policy { path: path.to_path_buf(), mode, runner, budgets, allow, allowlist, deny, limits })
    }

    /// Where the allow list starts: `allow`, else `allow_from` (the rule a new destination breaks).
    fn allowlist(&self, d: &RawDestinations) -> Option<RuleOrigin> {
        let origin = |list: &Option<Spanned<Vec<Spanned<String>>>>, field: &str| {
            list.as_ref().map(|l| self.origin(l.span(), field))
        };
        origin(&d.allow, "destinations.allow").or_else(|| origin(&d.allow_from, "destinations.allow_from"))
    }

    fn mode(&mut self, mode: Option<&Spanned<String>>) -> Mode {
        match mode.map(|m| (m.get_ref().as_str(), m.span())) {
            None | Some(("enforce", _)) => Mode::Enforce,
            Some(("report", _)) => Mode::Report,
            Some((other, span)) => {
                self.problem(
                    span,
                    "mode",
                    format!("unknown mode {other:?}; expected \"enforce\" or \"report\""),
                );
                Mode::Enforce
            }
        }
    }

    fn runner(&mut self, path: &Path, r: RawRunner) -> Runner {
        let runs_per_day = r.runs_per_day.as_ref().and_then(|n| match u32::try_from(*n.get_ref()) {
            Ok(v) if v > 0 => Some(v),
            _ => {
                self.problem(
                    n.span(),
                    "runner.runs_per_day",
                    format!("{} runs per day: expected a whole number >= 1", n.get_ref()),
                );
                None
            }
        });
        Runner {
            region: r.region.map(Spanned::into_inner),
            zone: r.zone.map(Spanned::into_inner),
            topology: r.topology.map(|t| relative_to(path, t.get_ref())),
            runs_per_day,
        }
    }

    fn amount(&mut self, a: &Spanned<AmountText>, field: &str) -> Option<Decimal> {
        match &a.get_ref().0 {
            Ok(v) if v.is_sign_negative() && !v.is_zero() => {
                self.problem(a.span(), field, format!("a budget of {v} is negative"));
                None
            }
            Ok(v) => Some(*v),
            Err(message) => {
                self.problem(a.span(), field, message.clone());
                None
            }
        }
    }

    fn budgets(&mut self, b: RawBudget) -> Vec<Budget> {
        let mut out = Vec::new();
        self.budget_amounts(&mut out, Scope::Total, b.per_run.as_ref(), b.per_day.as_ref(), "budget");
        for (i, entry) in b.limit.iter().enumerate() {
            let field = format!("budget.limit[{i}]");
            if let Some(scope) = self.scope(entry, &field) {
                let e = entry.get_ref();
                if e.per_run.is_none() && e.per_day.is_none() {
                    self.problem(
                        entry.span(),
                        &field,
                        "a limit needs `per_run` or `per_day` (or both)".into(),
                    );
                }
                self.budget_amounts(&mut out, scope, e.per_run.as_ref(), e.per_day.as_ref(), &field);
            }
        }
        out
    }

    fn budget_amounts(
        &mut self,
        out: &mut Vec<Budget>,
        scope: Scope,
        per_run: Option<&Spanned<AmountText>>,
        per_day: Option<&Spanned<AmountText>>,
        field: &str,
    ) {
        for (per, a, name) in [(Per::Run, per_run, "per_run"), (Per::Day, per_day, "per_day")] {
            let Some(a) = a else { continue };
            let field = format!("{field}.{name}");
            if let Some(amount) = self.amount(a, &field) {
                let origin = self.origin(a.span(), &field);
                out.push(Budget { scope: scope.clone(), per, amount, origin });
            }
        }
    }

    /// Exactly one of class, namespace and workload.
    fn scope(&mut self, entry: &Spanned<RawScopedBudget>, field: &str) -> Option<Scope> {
        let e = entry.get_ref();
        let given = [e.class.is_some(), e.namespace.is_some(), e.workload.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            self.problem(
                entry.span(),
                field,
                "give exactly one of `class`, `namespace` or `workload`".into(),
            );
            return None;
        }
        if let Some(c) = &e.class {
            return match Class::parse(c.get_ref()) {
                Some(class) => Some(Scope::Class(class)),
                None => {
                    let names = Class::names();
                    self.problem(
                        c.span(),
                        &format!("{field}.class"),
                        format!("unknown class {:?}; expected one of {names}", c.get_ref()),
                    );
                    None
                }
            };
        }
        if let Some(n) = &e.namespace {
            return Some(Scope::Namespace(n.get_ref().clone()));
        }
        e.workload.as_ref().map(|w| Scope::Workload(w.get_ref().clone()))
    }

    fn entries(&mut self, list: &[Spanned<String>], field: &str) -> Vec<Entry> {
        let mut out = Vec::new();
        for (i, s) in list.iter().enumerate() {
            let field = format!("{field}[{i}]");
            match parse_pattern(s.get_ref()) {
                Ok(pattern) => out.push(Entry {
                    pattern,
                    text: s.get_ref().clone(),
                    origin: self.origin(s.span(), &field),
                }),
                Err(message) => self.problem(s.span(), &field, message),
            }
        }
        out
    }

    fn limits(&mut self, l: RawLimits) -> Vec<ByteLimit> {
        let mut out = Vec::new();
        for (traffic, per, value, name) in [
            (Traffic::Internet, Per::Run, &l.internet_bytes_per_run, "internet_bytes_per_run"),
            (Traffic::Internet, Per::Day, &l.internet_bytes_per_day, "internet_bytes_per_day"),
            (Traffic::CrossRegion, Per::Run, &l.cross_region_bytes_per_run, "cross_region_bytes_per_run"),
            (Traffic::CrossRegion, Per::Day, &l.cross_region_bytes_per_day, "cross_region_bytes_per_day"),
        ] {
            let Some(v) = value else { continue };
            let field = format!("limits.{name}");
            let bytes = match v.get_ref() {
                SizeText::Bytes(n) => u64::try_from(*n).map_err(|_| format!("{n} bytes is negative")),
                SizeText::Text(t) => crate::model::parse_size(t),
            };
            match bytes {
                Ok(bytes) => {
                    out.push(ByteLimit { traffic, per, bytes, origin: self.origin(v.span(), &field) })
                }
                Err(message) => self.problem(v.span(), &field, message),
            }
        }
        out
    }
}

/// `203.0.113.7`, `203.0.113.0/24`, `203.0.113.7:443`, `10.0.0.0/8:5432`, `[2001:db8::1]:443`,
/// `aws:S3`, `aws:S3 us-east-1`.
pub fn parse_pattern(s: &str) -> Result<Pattern, String> {
    let t = s.trim();
    if let Some((provider, rest)) = t.split_once(':')
        && let Some(provider) = Provider::parse(provider)
    {
        let mut words = rest.split_whitespace();
        let service = words.next().filter(|w| !w.is_empty()).ok_or_else(|| {
            format!("{t:?}: name the service after `{provider}:`, e.g. \"{provider}:S3\" or \"{provider}:S3 us-east-1\"")
        })?;
        let region = words.next().map(str::to_string);
        if words.next().is_some() {
            return Err(format!("{t:?}: expected \"provider:SERVICE\" or \"provider:SERVICE region\""));
        }
        return Ok(Pattern::Service { provider, service: service.to_ascii_uppercase(), region });
    }
    let (addr, port) = split_port(t)?;
    let net = match addr.parse::<IpNet>() {
        Ok(n) if n.trunc() == n => n,
        Ok(n) => return Err(format!("{n} has host bits set; expected the network address {}", n.trunc())),
        Err(_) => match addr.parse::<IpAddr>() {
            Ok(ip) => IpNet::from(ip),
            Err(_) => {
                return Err(format!(
                    "{t:?} is not a destination: expected an address, a CIDR (optionally with :port) or a \
                     cloud service such as \"aws:S3 us-east-1\" (host names are not resolved: egressor sees addresses)"
                ));
            }
        },
    };
    Ok(Pattern::Net { net, port })
}

/// `a.b.c.d:port`, `cidr:port`, `[v6]:port`; a bare IPv6 address has no port.
fn split_port(t: &str) -> Result<(&str, Option<u16>), String> {
    let port =
        |p: &str| p.parse::<u16>().map_err(|_| format!("{t:?}: port {p:?} is not a number from 0 to 65535"));
    if let Some(rest) = t.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').ok_or_else(|| format!("{t:?}: missing `]`"))?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((addr, Some(port(p)?))),
            None if after.is_empty() => Ok((addr, None)),
            None => Err(format!("{t:?}: expected `[address]:port`")),
        };
    }
    match t.rsplit_once(':') {
        Some((addr, p)) if !addr.contains(':') => Ok((addr, Some(port(p)?))),
        _ => Ok((t, None)),
    }
}

// ---- What was measured, and the verdict -----------------------------------------------------------

/// One place a job or the workspace sent to or received from, as the rules read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub ip: IpAddr,
    /// Known for a run (per socket); rollups keep no ports, so `check` has none.
    pub port: Option<u16>,
    pub service: Option<super::cloud_ranges::CloudService>,
    /// How reports name it: `internet 203.0.113.7:443`, `aws:S3 us-east-1 (52.216.8.10:443)`.
    pub label: String,
    pub class: Class,
    pub bytes_out: u64,
    pub bytes_in: u64,
}

/// What was measured, over one run or over a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub span: Span,
    /// Destinations outside our networks (loopback and our own hosts and pods are not listed).
    pub destinations: Vec<Destination>,
    /// Cost of the run, or of the period.
    pub cost: Decimal,
    pub cost_by: BTreeMap<ScopeKey, Decimal>,
    pub bytes_by_class: BTreeMap<Class, u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// One run of a command, repeated `runs_per_day` times a day.
    Run { runs_per_day: u32 },
    /// A period of the workspace, `days` long.
    Period { days: Decimal },
}

/// What a scoped budget looks up in [`Usage::cost_by`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ScopeKey {
    Class(Class),
    Namespace(String),
    Workload(String),
}

impl Usage {
    /// The measured amount scaled to what a rule's `per` means, or why it cannot be.
    fn scaled(&self, amount: Decimal, per: Per) -> Result<Decimal, &'static str> {
        match (self.span, per) {
            (Span::Run { .. }, Per::Run) => Ok(amount),
            (Span::Run { runs_per_day }, Per::Day) => Ok(amount * Decimal::from(runs_per_day)),
            (Span::Period { days }, Per::Day) if !days.is_zero() => Ok(amount / days),
            (Span::Period { .. }, Per::Day) => Err("the period holds no traffic"),
            (Span::Period { .. }, Per::Run) => {
                Err("per_run applies to `egressor run`; `check` reads a period")
            }
        }
    }

    fn scope_cost(&self, scope: &Scope) -> Result<Decimal, &'static str> {
        let key = match scope {
            Scope::Total => return Ok(self.cost),
            Scope::Class(c) => ScopeKey::Class(*c),
            Scope::Namespace(_) | Scope::Workload(_) if matches!(self.span, Span::Run { .. }) => {
                return Err("a command run by `egressor run` has no namespace or workload");
            }
            Scope::Namespace(n) => ScopeKey::Namespace(n.clone()),
            Scope::Workload(w) => ScopeKey::Workload(w.clone()),
        };
        Ok(self.cost_by.get(&key).copied().unwrap_or_default())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleKind {
    Budget,
    Denied,
    NotAllowed,
    ByteLimit,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub kind: RuleKind,
    /// The rule broken, where it is written (for a destination outside the allow list: the policy file).
    pub rule: RuleOrigin,
    /// What broke it: `total`, `class internet`, a destination's label.
    pub subject: String,
    /// What was measured and what the rule allows, in the rule's unit.
    pub observed: String,
    pub limit: String,
    /// One sentence for a person (and a CI annotation).
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub rule: RuleOrigin,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub mode: Mode,
    /// Rules evaluated (each budget and limit, and one per destination rule list in use).
    pub checked: usize,
    pub violations: Vec<Violation>,
    pub skipped: Vec<Skipped>,
}

impl Verdict {
    /// True when the command should fail: violations under `enforce`.
    pub fn fails(&self) -> bool {
        self.mode == Mode::Enforce && !self.violations.is_empty()
    }
}

/// What `check` measured: a priced period of the workspace. Destinations are the remote ends outside
/// our networks that are not pods (by address: rollups keep no ports); scoped costs are the local
/// party's (a workload is found by `name`, `namespace/name` or `namespace/kind/name`).
pub fn period_usage(r: &super::cost::CostReport) -> Usage {
    let mut destinations: BTreeMap<IpAddr, Destination> = BTreeMap::new();
    let mut cost_by: BTreeMap<ScopeKey, Decimal> = BTreeMap::new();
    let mut bytes_by_class: BTreeMap<Class, u64> = BTreeMap::new();
    for (t, costs) in r.transfers.iter().zip(&r.transfer_costs).filter(|(t, _)| t.in_period) {
        let cost: Decimal = costs.values().copied().sum();
        let class = t.classified.class;
        *bytes_by_class.entry(class).or_default() += t.bytes;
        *cost_by.entry(ScopeKey::Class(class)).or_default() += cost;
        let local = t.local();
        if let Some(ns) = &local.namespace {
            *cost_by.entry(ScopeKey::Namespace(ns.clone())).or_default() += cost;
        }
        for name in workload_names(local) {
            *cost_by.entry(ScopeKey::Workload(name)).or_default() += cost;
        }
        let remote = t.remote();
        let Some(ip) = remote.ip.filter(|_| !t.classified.remote_ours && remote.node.is_none()) else {
            continue;
        };
        let d = destinations.entry(ip).or_insert_with(|| Destination {
            ip,
            port: None,
            service: t.classified.service.clone(),
            label: t.classified.remote_label.clone(),
            class,
            bytes_out: 0,
            bytes_in: 0,
        });
        match t.direction {
            super::classify::Direction::Out => {
                d.bytes_out += t.bytes;
                d.class = class;
            }
            super::classify::Direction::In => d.bytes_in += t.bytes,
        }
    }
    Usage {
        span: Span::Period { days: r.hours / Decimal::from(24) },
        destinations: destinations.into_values().collect(),
        cost: r.totals.cost,
        cost_by,
        bytes_by_class,
    }
}

/// The names a workload budget may use for a party: `name`, `namespace/name`, `namespace/kind/name`.
fn workload_names(p: &crate::model::Party) -> Vec<String> {
    let Some(name) = &p.workload_name else { return Vec::new() };
    let mut out = vec![name.clone()];
    if let Some(ns) = &p.namespace {
        out.push(format!("{ns}/{name}"));
        if let Some(kind) = &p.workload_kind {
            out.push(format!("{ns}/{kind}/{name}"));
        }
    }
    out
}

pub fn evaluate(policy: &Policy, usage: &Usage, currency: &str) -> Verdict {
    let mut v = Verdict { mode: policy.mode, checked: 0, violations: Vec::new(), skipped: Vec::new() };
    for b in &policy.budgets {
        check_budget(&mut v, b, usage, currency);
    }
    for l in &policy.limits {
        check_limit(&mut v, l, usage);
    }
    check_destinations(&mut v, policy, usage);
    v
}

fn check_budget(v: &mut Verdict, b: &Budget, usage: &Usage, currency: &str) {
    let cost = usage.scope_cost(&b.scope).and_then(|c| usage.scaled(c, b.per));
    let cost = match cost {
        Ok(c) => c,
        Err(why) => return v.skipped.push(Skipped { rule: b.origin.clone(), why: why.into() }),
    };
    v.checked += 1;
    if cost > b.amount {
        let per = per_name(b.per);
        let (observed, limit) = (money(cost, currency), money(b.amount, currency));
        v.violations.push(Violation {
            kind: RuleKind::Budget,
            rule: b.origin.clone(),
            subject: b.scope.to_string(),
            message: format!(
                "{} costs {observed} {per}, over the budget of {limit} {per} ({})",
                b.scope, b.origin
            ),
            observed,
            limit,
        });
    }
}

fn check_limit(v: &mut Verdict, l: &ByteLimit, usage: &Usage) {
    let bytes: u64 =
        l.traffic.classes().iter().map(|c| usage.bytes_by_class.get(c).copied().unwrap_or(0)).sum();
    let bytes = match usage.scaled(Decimal::from(bytes), l.per) {
        Ok(b) => b,
        Err(why) => return v.skipped.push(Skipped { rule: l.origin.clone(), why: why.into() }),
    };
    v.checked += 1;
    if bytes > Decimal::from(l.bytes) {
        let per = per_name(l.per);
        let what = match l.traffic {
            Traffic::Internet => "internet",
            Traffic::CrossRegion => "cross-region",
        };
        let observed = format!("{} bytes", bytes.round().normalize());
        let limit = format!("{} bytes", l.bytes);
        v.violations.push(Violation {
            kind: RuleKind::ByteLimit,
            rule: l.origin.clone(),
            subject: format!("{what} traffic"),
            message: format!(
                "{what} traffic of {} {per} is over the limit of {} {per} ({})",
                crate::model::human_bytes(bytes.round().try_into().unwrap_or(u64::MAX)),
                crate::model::human_bytes(l.bytes),
                l.origin
            ),
            observed,
            limit,
        });
    }
}

/// Deny first (a denied destination is a violation even if allowed); then, with an allow list, every
/// destination it does not name.
fn check_destinations(v: &mut Verdict, policy: &Policy, usage: &Usage) {
    if !policy.deny.is_empty() {
        v.checked += 1;
    }
    if policy.allowlist.is_some() {
        v.checked += 1;
    }
    for d in &usage.destinations {
        if let Some(e) = policy.deny.iter().find(|e| matches(&e.pattern, d)) {
            v.violations.push(Violation {
                kind: RuleKind::Denied,
                rule: e.origin.clone(),
                subject: d.label.clone(),
                observed: traffic_summary(d),
                limit: format!("denied by {:?}", e.text),
                message: format!(
                    "{} is denied by {:?} ({}): {}",
                    d.label,
                    e.text,
                    e.origin,
                    traffic_summary(d)
                ),
            });
        } else if let Some(rule) = &policy.allowlist
            && !policy.allow.iter().any(|e| matches(&e.pattern, d))
        {
            v.violations.push(Violation {
                kind: RuleKind::NotAllowed,
                rule: rule.clone(),
                subject: d.label.clone(),
                observed: traffic_summary(d),
                limit: "not in the allow list".into(),
                message: format!(
                    "{} is not in the allow list ({rule}); new since the list was learned? {}",
                    d.label,
                    traffic_summary(d)
                ),
            });
        }
    }
}

pub fn matches(p: &Pattern, d: &Destination) -> bool {
    match p {
        Pattern::Net { net, port } => {
            net.contains(&d.ip.to_canonical()) && port.is_none_or(|p| d.port.is_none_or(|dp| dp == p))
        }
        Pattern::Service { provider, service, region } => d.service.as_ref().is_some_and(|s| {
            s.provider == *provider
                && s.service.eq_ignore_ascii_case(service)
                && region.as_ref().is_none_or(|r| *r == s.region)
        }),
    }
}

fn traffic_summary(d: &Destination) -> String {
    format!(
        "{} sent, {} received",
        crate::model::human_bytes(d.bytes_out),
        crate::model::human_bytes(d.bytes_in)
    )
}

fn per_name(per: Per) -> &'static str {
    match per {
        Per::Run => "per run",
        Per::Day => "per day",
    }
}

/// Money as messages write it: the explanation's rounding (4 decimals below a cent) and the currency.
pub fn money(v: Decimal, currency: &str) -> String {
    format!("{} {currency}", super::explain::money(v))
}

/// The allow list a run's destinations need, as `run --learn` writes it: cloud services by name (their
/// addresses change from one request to the next), other destinations by address and port (for a
/// peer that connected in, the port it connected to).
pub fn learned_entries(destinations: &[Destination]) -> Vec<String> {
    let mut out: Vec<String> = destinations
        .iter()
        .map(|d| match (&d.service, d.port) {
            (Some(s), _) => format!("{}:{} {}", s.provider, s.service, s.region),
            (None, Some(p)) if d.ip.is_ipv6() => format!("[{}]:{p}", d.ip),
            (None, Some(p)) => format!("{}:{p}", d.ip),
            (None, None) => d.ip.to_string(),
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The entries `run --learn FILE` starts from: none when FILE does not exist yet, else its allow
/// list. FILE is rewritten whole ([`learned_file`]), so it may hold only what that writes (`version`
/// and `[destinations] allow`): any other rule would be lost, and is refused with its position.
pub fn learned_allow_list(path: &Path) -> Result<Vec<String>, PolicyError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(PolicyError::Read { path: path.to_path_buf(), source }),
    };
    let policy = Policy::parse_following(path, &text, false)?;
    #[derive(Deserialize)]
    struct Rules {
        mode: Option<Spanned<toml::Value>>,
        runner: Option<Spanned<toml::Value>>,
        budget: Option<Spanned<toml::Value>>,
        limits: Option<Spanned<toml::Value>>,
        destinations: Option<DestinationRules>,
    }
    #[derive(Deserialize)]
    struct DestinationRules {
        allow_from: Option<Spanned<toml::Value>>,
        deny: Option<Spanned<toml::Value>>,
    }
    let rules: Rules = toml::from_str(&text).map_err(|e| PolicyError::Invalid {
        path: path.to_path_buf(),
        problems: vec![syntax_problem(&text, &e)],
    })?;
    let (allow_from, deny) = rules.destinations.map_or((None, None), |d| (d.allow_from, d.deny));
    let found = [
        ("mode", rules.mode),
        ("runner", rules.runner),
        ("budget", rules.budget),
        ("limits", rules.limits),
        ("destinations.allow_from", allow_from),
        ("destinations.deny", deny),
    ];
    let problems: Vec<Problem> = found
        .into_iter()
        .filter_map(|(field, rule)| rule.map(|r| (field, r.span())))
        .map(|(field, span)| {
            let (line, column) = line_col(&text, span.start);
            Problem {
                line,
                column,
                field: field.into(),
                message: "`run --learn` rewrites its file with an allow list only, and this rule would be \
                          lost: learn into a file of its own and name it in this policy's \
                          [destinations] allow_from"
                    .into(),
            }
        })
        .collect();
    if !problems.is_empty() {
        return Err(PolicyError::Invalid { path: path.to_path_buf(), problems });
    }
    Ok(policy.allow.into_iter().map(|e| e.text).collect())
}

/// A learned policy file: `version` and the allow list, usable on its own as `--policy` or named
/// from another policy's `allow_from`. `previous`: entries already in the file
/// (kept: learning over several runs widens the list).
pub fn learned_file(entries: &[String], previous: &[String], header: &str) -> String {
    let mut all: Vec<&String> = entries.iter().chain(previous).collect();
    all.sort();
    all.dedup();
    let mut s = String::new();
    for line in header.lines() {
        s.push_str(&format!("# {line}\n"));
    }
    s.push_str(&format!("version = {POLICY_VERSION}\n\n[destinations]\nallow = [\n"));
    for e in all {
        s.push_str(&format!("    {},\n", toml_string(e)));
    }
    s.push_str("]\n");
    s
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests;
