use super::*;
use crate::engines::cloud_ranges::CloudService;
use std::str::FromStr;

fn parse(text: &str) -> Result<Policy, PolicyError> {
    Policy::parse(Path::new("p.toml"), text)
}

/// Every problem as `line:field: message`.
fn problems(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => panic!("expected problems in:\n{text}"),
        Err(e) => e.problems().iter().map(|p| format!("{}:{}: {}", p.line, p.field, p.message)).collect(),
    }
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn dest(ip: &str, port: Option<u16>, class: Class, out: u64) -> Destination {
    Destination {
        ip: ip.parse().unwrap(),
        port,
        service: None,
        label: format!("internet {ip}"),
        class,
        bytes_out: out,
        bytes_in: 0,
    }
}

fn run_usage(cost: &str, destinations: Vec<Destination>) -> Usage {
    let mut bytes_by_class = BTreeMap::new();
    for d in &destinations {
        *bytes_by_class.entry(d.class).or_default() += d.bytes_out;
    }
    Usage {
        span: Span::Run { runs_per_day: 10 },
        destinations,
        cost: dec(cost),
        cost_by: BTreeMap::new(),
        bytes_by_class,
    }
}

const FULL: &str = r#"version = 1
mode = "report"

[runner]
region = "us-east-1"
zone = "us-east-1a"
topology = "net/topology.toml"
runs_per_day = 24

[budget]
per_run = "0.05"
per_day = 20

[[budget.limit]]
class = "internet"
per_day = "5.00"

[[budget.limit]]
namespace = "analytics"
per_run = "0.01"
per_day = "1"

[destinations]
allow = ["aws:S3", "10.0.0.0/8", "198.51.100.10:8080", "[2001:db8::1]:443"]
deny = ["203.0.113.0/24", "aws:EC2 eu-west-1"]

[limits]
internet_bytes_per_run = "50 MB"
cross_region_bytes_per_day = 1073741824
"#;

#[test]
fn a_full_policy_reads_every_field() {
    let p = Policy::parse(Path::new("/etc/ci/p.toml"), FULL).unwrap();
    assert_eq!(p.mode, Mode::Report);
    assert_eq!(p.runner.region.as_deref(), Some("us-east-1"));
    assert_eq!(p.runner.topology.as_deref(), Some(Path::new("/etc/ci/net/topology.toml")));
    assert_eq!(p.runner.runs_per_day, Some(24));
    let budgets: Vec<_> =
        p.budgets.iter().map(|b| (b.scope.to_string(), b.per, b.amount.to_string())).collect();
    assert_eq!(
        budgets,
        vec![
            ("total".into(), Per::Run, "0.05".into()),
            ("total".into(), Per::Day, "20".into()),
            ("class internet".into(), Per::Day, "5.00".into()),
            ("namespace analytics".into(), Per::Run, "0.01".into()),
            ("namespace analytics".into(), Per::Day, "1".into()),
        ]
    );
    assert_eq!(p.budgets[2].origin.to_string(), "/etc/ci/p.toml:16 budget.limit[0].per_day");
    assert_eq!(p.allow.len(), 4);
    assert_eq!(p.allow[3].pattern, Pattern::Net { net: "2001:db8::1/128".parse().unwrap(), port: Some(443) });
    assert_eq!(
        p.deny[1].pattern,
        Pattern::Service { provider: Provider::Aws, service: "EC2".into(), region: Some("eu-west-1".into()) }
    );
    assert_eq!(p.allowlist.as_ref().unwrap().line, 24);
    assert_eq!(p.limits[0].bytes, 50_000_000);
    assert_eq!(p.limits[1].bytes, 1 << 30);
}

#[test]
fn every_problem_is_reported_with_its_line_and_field() {
    let text = r#"version = 1
mode = "strict"

[budget]
per_run = 0.05

[[budget.limit]]
class = "intranet"
per_day = "1"

[[budget.limit]]
namespace = "a"
workload = "b"
per_day = "1"

[destinations]
allow = ["10.0.0.1/8", "example.com", "1.2.3.4:99999"]
deny = ["aws:"]

[limits]
internet_bytes_per_run = "5 XB"
"#;
    let got = problems(text);
    let want = [
        "2:mode: unknown mode \"strict\"",
        "5:budget.per_run: amount 0.05 is a TOML float",
        "8:budget.limit[0].class: unknown class \"intranet\"",
        "11:budget.limit[1]: give exactly one of `class`, `namespace` or `workload`",
        "17:destinations.allow[0]: 10.0.0.1/8 has host bits set",
        "17:destinations.allow[1]: \"example.com\" is not a destination",
        "17:destinations.allow[2]: \"1.2.3.4:99999\": port \"99999\"",
        "18:destinations.deny[0]: \"aws:\": name the service",
        "21:limits.internet_bytes_per_run: `5 XB`: unknown unit `XB`",
    ];
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for (g, w) in got.iter().zip(want) {
        assert!(g.starts_with(w), "got {g:?}, want it to start with {w:?}");
    }
}

#[test]
fn syntax_errors_unknown_fields_and_versions_name_their_line() {
    assert!(
        problems("version = 1\n[budget]\nper_week = \"1\"\n")[0]
            .starts_with("3:per_week: unknown field `per_week`")
    );
    assert!(problems("version = 1\n[destinations\n")[0].starts_with("2:"));
    assert!(problems("mode = \"report\"\n")[0].contains("missing `version = 1`"));
    assert!(problems("version = 2\n")[0].starts_with("1:version: version 2 is not one this egressor reads"));
    let e = parse("version = 1\nmode = \"x\"\n").unwrap_err().to_string();
    assert!(e.starts_with("p.toml:2:8: mode: unknown mode"), "{e}");
}

#[test]
fn budgets_scale_to_runs_per_day_and_to_days_of_a_period() {
    let p = parse("version = 1\n[budget]\nper_run = \"0.05\"\nper_day = \"0.40\"\n").unwrap();
    // 0.05 per run passes; x10 runs a day = 0.50 > 0.40 fails.
    let v = evaluate(&p, &run_usage("0.05", vec![]), "USD");
    assert_eq!(v.checked, 2);
    assert_eq!(v.violations.len(), 1, "{v:#?}");
    assert_eq!(v.violations[0].observed, "0.50 USD");
    assert_eq!(v.violations[0].rule.field, "budget.per_day");
    assert!(
        v.violations[0].message.contains("over the budget of 0.40 USD per day (p.toml:4 budget.per_day)")
    );
    assert!(v.fails());

    // Over 7 days of a period: 2.80 / 7 = 0.40 per day is not over; per_run cannot be read.
    let mut period = run_usage("2.80", vec![]);
    period.span = Span::Period { days: dec("7") };
    let v = evaluate(&p, &period, "USD");
    assert!(v.violations.is_empty(), "{v:#?}");
    assert_eq!(v.skipped.len(), 1);
    assert!(v.skipped[0].why.contains("per_run applies to `egressor run`"));
    period.cost = dec("2.81");
    assert_eq!(evaluate(&p, &period, "USD").violations.len(), 1);
}

#[test]
fn scoped_budgets_read_their_class_namespace_or_workload() {
    let p = parse(
        "version = 1\n[[budget.limit]]\nclass = \"cross-zone\"\nper_day = \"1\"\n\
         [[budget.limit]]\nnamespace = \"etl\"\nper_day = \"2\"\n",
    )
    .unwrap();
    let mut u = run_usage("100", vec![]);
    u.span = Span::Period { days: Decimal::ONE };
    u.cost_by.insert(ScopeKey::Class(Class::CrossZone), dec("1.5"));
    u.cost_by.insert(ScopeKey::Namespace("etl".into()), dec("2"));
    let v = evaluate(&p, &u, "USD");
    assert_eq!(v.violations.len(), 1);
    assert_eq!(v.violations[0].subject, "class cross-zone");
    // A run has no namespace: skipped, not passed.
    let v = evaluate(&p, &run_usage("0", vec![]), "USD");
    assert_eq!(v.skipped.len(), 1);
    assert!(v.skipped[0].why.contains("no namespace"));
}

#[test]
fn deny_wins_over_allow_and_an_allow_list_closes_the_gate() {
    let p = parse(
        "version = 1\n[destinations]\nallow = [\"198.51.100.0/24\", \"203.0.113.9:443\", \"aws:S3 us-east-1\"]\n\
         deny = [\"198.51.100.66\"]\n",
    )
    .unwrap();
    let mut s3 = dest("52.216.8.10", Some(443), Class::Internet, 10);
    s3.service =
        Some(CloudService { provider: Provider::Aws, service: "S3".into(), region: "us-east-1".into() });
    let mut s3_other_region = s3.clone();
    s3_other_region.service.as_mut().unwrap().region = "eu-west-1".into();
    let u = run_usage(
        "0",
        vec![
            dest("198.51.100.10", Some(80), Class::Internet, 1),
            dest("198.51.100.66", Some(80), Class::Internet, 2),
            dest("203.0.113.9", Some(443), Class::Internet, 3),
            dest("203.0.113.9", Some(8443), Class::Internet, 4),
            s3,
            s3_other_region,
        ],
    );
    let v = evaluate(&p, &u, "USD");
    let got: Vec<_> = v.violations.iter().map(|v| (v.kind, v.observed.clone())).collect();
    assert_eq!(
        got,
        vec![
            (RuleKind::Denied, "2 B sent, 0 B received".to_string()),
            (RuleKind::NotAllowed, "4 B sent, 0 B received".to_string()),
            (RuleKind::NotAllowed, "10 B sent, 0 B received".to_string()),
        ]
    );
    assert_eq!(v.violations[0].rule.field, "destinations.deny[0]");
    assert_eq!(v.violations[1].rule.line, 3);
}

#[test]
fn byte_limits_count_internet_and_cross_region_classes() {
    let p = parse(
        "version = 1\n[limits]\ninternet_bytes_per_run = \"1 KB\"\ncross_region_bytes_per_day = 5000\n",
    )
    .unwrap();
    let u = run_usage(
        "0",
        vec![
            dest("198.51.100.1", Some(80), Class::Internet, 600),
            dest("198.51.100.2", Some(80), Class::NatInternet, 401),
            dest("10.1.0.1", Some(80), Class::CrossRegion, 400),
        ],
    );
    let v = evaluate(&p, &u, "USD");
    let got: Vec<_> = v.violations.iter().map(|v| (v.subject.as_str(), v.observed.as_str())).collect();
    // 1001 > 1000 per run; 400 x 10 runs = 4000 <= 5000 per day.
    assert_eq!(got, vec![("internet traffic", "1001 bytes")]);
}

#[test]
fn a_learned_file_is_a_policy_and_learning_again_widens_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut s3 = dest("52.216.8.10", Some(443), Class::Internet, 10);
    s3.service =
        Some(CloudService { provider: Provider::Aws, service: "S3".into(), region: "us-east-1".into() });
    let first = learned_entries(&[dest("198.51.100.10", Some(8080), Class::Internet, 1), s3.clone()]);
    assert_eq!(first, vec!["198.51.100.10:8080".to_string(), "aws:S3 us-east-1".to_string()]);
    let text = learned_file(&first, &[], "learned by a test\nsecond line");
    assert!(text.starts_with("# learned by a test\n# second line\nversion = 1\n"), "{text}");
    let learned = dir.path().join("learned.toml");
    std::fs::write(&learned, learned_file(&["[2001:db8::1]:443".into()], &first, "again")).unwrap();

    let main = dir.path().join("policy.toml");
    std::fs::write(&main, "version = 1\n[destinations]\nallow_from = [\"learned.toml\"]\n").unwrap();
    let p = Policy::load_file(&main).unwrap();
    assert_eq!(p.allow.len(), 3);
    assert_eq!(p.allowlist.as_ref().unwrap().field, "destinations.allow_from");
    let u = run_usage("0", vec![dest("198.51.100.10", Some(8080), Class::Internet, 1), s3]);
    assert!(evaluate(&p, &u, "USD").violations.is_empty());
    let u = run_usage("0", vec![dest("198.51.100.11", Some(8080), Class::Internet, 1)]);
    assert_eq!(evaluate(&p, &u, "USD").violations.len(), 1);

    // A broken learned file is reported at the allow_from entry that names it.
    std::fs::write(&learned, "version = 1\n[destinations]\nallow = [\"nope\"]\n").unwrap();
    let e = Policy::load_file(&main).unwrap_err();
    assert_eq!(e.problems()[0].field, "destinations.allow_from[0]");
    assert!(e.problems()[0].message.contains("learned.toml:3:"), "{}", e.problems()[0].message);
}

/// `run --learn FILE` rewrites FILE with an allow list only: a file with any other rule is refused
/// (each rule named where it is) before anything runs, rather than rewritten without them.
#[test]
fn learning_into_a_policy_with_other_rules_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gate.toml");
    assert_eq!(learned_allow_list(&file).unwrap(), Vec::<String>::new(), "a new file starts empty");
    std::fs::write(&file, learned_file(&["198.51.100.10:443".into()], &[], "learned")).unwrap();
    assert_eq!(learned_allow_list(&file).unwrap(), vec!["198.51.100.10:443".to_string()]);

    let full = "version = 1\nmode = \"report\"\n[budget]\nper_run = \"0.01\"\n\
                [destinations]\nallow = [\"10.0.0.0/8\"]\ndeny = [\"192.0.2.0/24\"]\n";
    std::fs::write(&file, full).unwrap();
    let e = learned_allow_list(&file).unwrap_err();
    let found: Vec<String> = e.problems().iter().map(|p| format!("{}:{}", p.line, p.field)).collect();
    assert_eq!(found, ["2:mode", "3:budget", "7:destinations.deny"]);
    assert!(e.to_string().contains("allow_from"), "{e}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), full, "the file is left as it was");
}

#[test]
fn report_mode_never_fails() {
    let p = parse("version = 1\nmode = \"report\"\n[budget]\nper_run = \"0\"\n").unwrap();
    let v = evaluate(&p, &run_usage("1", vec![]), "USD");
    assert_eq!(v.violations.len(), 1);
    assert!(!v.fails());
}
