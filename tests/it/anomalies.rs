//! `egressor anomalies` and `egressor baseline` as a user runs them, on the 14-day demo (seed 42)
//! ending 2026-11-20T00:00:00Z with "now" pinned to 2026-11-20T12:00:00Z: the demo's four injected
//! events are found, priced and keep their ids; the JSON follows docs/schemas/anomalies.v1.json;
//! states; filters; and the tables people read, kept as insta snapshots (tests/it/snapshots;
//! `INSTA_UPDATE=always` or `cargo insta review` to update them).

use crate::TestContext;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::sync::OnceLock;

const SPIKE_EDGE: &str = "shop/Deployment/catalog <-> shop/Deployment/recommendations";

/// A workspace with the demo in it. The demo is generated once per test run; each test gets its own
/// copy of the workspace file, so a state set in one test never reaches another.
pub fn demo() -> TestContext {
    static FILES: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    let files = FILES.get_or_init(|| {
        let t = TestContext::new();
        t.ok(&["demo", "--end", "2026-11-20T00:00:00Z"]);
        let name = t.workspace().file_name().unwrap().to_str().unwrap().to_string();
        std::fs::read_dir(t.dir.path())
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(&name)))
            .map(|e| (e.file_name().to_str().unwrap().to_string(), std::fs::read(e.path()).unwrap()))
            .collect()
    });
    let t = TestContext::new();
    for (name, bytes) in files {
        std::fs::write(t.path(name), bytes).unwrap();
    }
    t
}

/// `anomalies --since SINCE --output json` and its findings.
fn list(t: &TestContext, args: &[&str]) -> (Value, Vec<Value>) {
    let mut a = vec!["anomalies", "--output", "json"];
    a.extend_from_slice(args);
    let j = t.json(&a);
    assert_eq!(j["schema_version"], "egressor.anomalies/v1", "{j}");
    let findings = j["anomalies"].as_array().unwrap_or_else(|| panic!("no anomalies array: {j}")).clone();
    (j, findings)
}

fn summary(findings: &[Value]) -> Vec<String> {
    findings
        .iter()
        .map(|f| format!("{} {} {} {} {}", f["id"], f["type"], f["subject"]["name"], f["start"], f["state"]))
        .collect()
}

/// The only finding of a type.
fn one<'a>(findings: &'a [Value], kind: &str) -> &'a Value {
    let hits: Vec<&Value> = findings.iter().filter(|f| f["type"] == kind).collect();
    assert_eq!(hits.len(), 1, "one {kind} expected: {:#?}", summary(findings));
    hits[0]
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} is not a string: {v}"))
}

fn decimal(v: &Value) -> Decimal {
    v.as_str().unwrap_or_else(|| panic!("not a decimal string: {v}")).parse().unwrap()
}

/// The finding starts at or after the injected event and before it was detected (RFC 3339 UTC
/// strings of one format compare as times).
fn within(f: &Value, event_start: &str) -> bool {
    let (start, detected) = (str_of(f, "start"), str_of(f, "detected_at"));
    event_start <= start && start <= detected
}

fn spike_id(t: &TestContext) -> String {
    let (_, all) = list(t, &["--since", "14d"]);
    str_of(one(&all, "spike"), "id").to_string()
}

#[test]
fn anomalies_finds_the_demos_four_events_priced_with_stable_ids() {
    let t = demo();
    let (j, all) = list(&t, &["--since", "14d"]);
    assert_eq!(
        all.len(),
        4,
        "exactly the four injected events at the default thresholds: {:#?}",
        summary(&all)
    );

    let spike = one(&all, "spike");
    assert_eq!(spike["subject"]["kind"], "edge");
    assert_eq!(spike["subject"]["name"], SPIKE_EDGE);
    assert_eq!(spike["start"], "2026-11-18T14:00:00Z");
    assert_eq!(spike["end"], "2026-11-18T16:00:00Z");
    assert!(spike["score"].as_f64().unwrap() >= j["thresholds"]["spike_z"].as_f64().unwrap(), "{spike}");

    let burn = one(&all, "slow-burn");
    assert!(str_of(&burn["subject"], "name").contains("data/CronJob/analytics-etl"), "{burn}");
    // The demo's burn starts 2026-11-10; a finding may start once the rise shows, not before it.
    assert!(within(burn, "2026-11-10T00:00:00Z"), "{burn}");
    assert_eq!(burn["end"], Value::Null, "the burn goes on to the end of the data");
    assert!(burn["growth_per_day"].as_f64().unwrap() >= 0.03, "{burn}");
    assert!(burn["p_value"].as_f64().unwrap() < 0.05, "{burn}");
    assert!(
        burn["next_steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s.as_str().unwrap().starts_with("egressor baseline ")),
        "{burn}"
    );

    let new = one(&all, "new-endpoint");
    assert!(str_of(&new["subject"], "name").contains("internet 192.0.2.77"), "{new}");
    assert_eq!(new["start"], "2026-11-17T09:00:00Z");

    let leak = one(&all, "leak");
    assert!(str_of(&leak["subject"], "name").contains("internet 198.51.100.23"), "{leak}");
    assert!(within(leak, "2026-11-08T00:00:00Z"), "{leak}");
    assert_eq!(leak["subject"]["external"], true);
    assert_eq!(leak["subject"]["cloud"], false);

    for f in &all {
        let cost = decimal(&f["cost_per_day"]);
        assert!(cost > Decimal::ZERO, "cost_per_day must be > 0: {}", f["id"]);
        // A spike that is over happened once: it projects nothing onto the month.
        let month = decimal(&f["projected_extra_per_month"]);
        if str_of(f, "type") == "spike" && !f["end"].is_null() {
            assert_eq!(month, Decimal::ZERO, "{}", f["id"]);
        } else {
            assert!(month > Decimal::ZERO, "{}", f["id"]);
        }
        assert!(str_of(f, "cost_basis").contains("USD/GB"), "{}", f["cost_basis"]);
        let steps = f["next_steps"].as_array().unwrap();
        assert!(!steps.is_empty(), "no next step: {}", f["id"]);
        assert!(steps.iter().all(|s| s.as_str().unwrap().starts_with("egressor ")), "{steps:?}");
        assert_eq!(f["state"], "open");
        // Each adds at least --min-bytes a day (new endpoints and leaks: a tenth of it).
        let min = j["thresholds"]["min_bytes_per_day"].as_u64().unwrap();
        let min = if matches!(str_of(f, "type"), "new-endpoint" | "leak") { min / 10 } else { min };
        assert!(f["excess_bytes_per_day"].as_u64().unwrap() >= min, "{}: below {min} bytes a day", f["id"]);
        let ev = &f["evidence"];
        let n = ev["observed"].as_array().unwrap().len();
        assert!(n > 0);
        for k in ["expected", "low", "high"] {
            assert_eq!(ev[k].as_array().unwrap().len(), n, "evidence {k} of {}", f["id"]);
        }
    }

    // Ids: identical on a second run (the whole output is), and with another --since.
    let first = t.ok(&["anomalies", "--since", "14d", "--output", "json"]);
    let second = t.ok(&["anomalies", "--since", "14d", "--output", "json"]);
    assert_eq!(first, second, "two runs on the same workspace must print the same bytes");
    let ids = |fs: &[Value]| -> Vec<String> { fs.iter().map(|f| str_of(f, "id").to_string()).collect() };
    let (_, recent) = list(&t, &["--since", "3d"]);
    assert_eq!(ids(&recent), ids(&all), "--since 3d: {:#?}", summary(&recent));
    assert_eq!(one(&recent, "spike")["id"], spike["id"]);
    // A day back the spike is over; the rest go on, with the same ids.
    let (_, day) = list(&t, &["--since", "24h"]);
    let mut expected = ids(&all);
    expected.retain(|id| id.as_str() != str_of(spike, "id"));
    assert_eq!(ids(&day), expected, "--since 24h: {:#?}", summary(&day));
    // `show` prints the very finding the list has.
    for f in &all {
        let shown = t.json(&["anomalies", "show", str_of(f, "id"), "--output", "json"]);
        assert_eq!(&shown["anomaly"], f, "show {} differs from the list", f["id"]);
    }
}

/// Checks each case against docs/schemas/anomalies.v1.json: `(name, document, whether it must be
/// valid)`.
fn validate(t: &TestContext, cases: &[(&str, Value, bool)]) {
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(name, doc, valid)| {
            let errors = t.schema_errors("anomalies.v1.json", doc);
            (errors.is_empty() != *valid).then(|| {
                format!("{name}: expected {}; errors: {errors:?}", if *valid { "valid" } else { "invalid" })
            })
        })
        .collect();
    assert!(wrong.is_empty(), "JSON schema validation failed:\n{}", wrong.join("\n"));
}

#[test]
fn anomalies_json_follows_the_v1_schema() {
    let t = demo();
    let (list14, all) = list(&t, &["--since", "14d"]);
    assert!(!all.is_empty());
    let (empty, none) = list(&t, &["--since", "14d", "--min-cost", "1000", "--no-forest"]);
    assert!(none.is_empty());
    let shows: Vec<Value> =
        all.iter().map(|f| t.json(&["anomalies", "show", str_of(f, "id"), "--output", "json"])).collect();
    for s in &shows {
        assert_eq!(s["schema_version"], "egressor.anomalies/v1");
    }

    let mut cases: Vec<(&str, Value, bool)> =
        vec![("list --since 14d", list14.clone(), true), ("list, nothing found", empty.clone(), true)];
    cases.extend(shows.iter().map(|s| ("show", s.clone(), true)));
    // The schema must catch what it does not document, at every level.
    let with = |mut doc: Value, pointer: &str, key: &str| -> Value {
        doc.pointer_mut(pointer).unwrap().as_object_mut().unwrap().insert(key.into(), json!(1));
        doc
    };
    cases.push(("undocumented top-level field", with(list14.clone(), "", "extra"), false));
    cases.push(("undocumented threshold", with(list14.clone(), "/thresholds", "learn_hours"), false));
    cases.push((
        "undocumented finding field",
        with(list14.clone(), "/anomalies/0", "slope_bytes_per_day"),
        false,
    ));
    cases.push(("undocumented subject field", with(list14.clone(), "/anomalies/0/subject", "zone"), false));
    cases.push((
        "undocumented evidence field",
        with(list14.clone(), "/anomalies/0/evidence", "sigma"),
        false,
    ));
    cases.push(("undocumented show field", with(shows[0].clone(), "", "until"), false));
    let mut missing = list14.clone();
    missing["anomalies"][0].as_object_mut().unwrap().remove("cost_per_day");
    cases.push(("a finding without cost_per_day", missing, false));
    let mut state = shows[0].clone();
    state["anomaly"]["state"] = json!("snoozed");
    cases.push(("an unknown state", state, false));
    let mut version = list14.clone();
    version["schema_version"] = json!("egressor.anomalies/v2");
    cases.push(("another schema version", version, false));
    validate(&t, &cases);
}

#[test]
fn anomalies_ack_resolve_reopen() {
    let t = demo();
    let id = spike_id(&t);
    let state = |args: &[&str]| -> Option<String> {
        let (_, all) = list(&t, args);
        all.iter().find(|f| f["id"] == id.as_str()).map(|f| str_of(f, "state").to_string())
    };

    let ack = t.ok(&["anomalies", "ack", &id]);
    assert!(ack.contains(&id) && ack.contains("acknowledged") && ack.contains(SPIKE_EDGE), "{ack}");
    assert_eq!(state(&["--since", "14d"]).as_deref(), Some("acknowledged"));
    let shown = t.json(&["anomalies", "show", &id, "--output", "json"]);
    assert_eq!(shown["anomaly"]["state"], "acknowledged");

    let resolve = t.ok(&["anomalies", "resolve", &id]);
    assert!(resolve.contains(&id) && resolve.contains("resolved"), "{resolve}");
    assert_eq!(state(&["--since", "14d"]), None, "resolved findings are hidden by default");
    assert_eq!(state(&["--since", "14d", "--all"]).as_deref(), Some("resolved"));
    let table = t.ok(&["anomalies", "--since", "14d"]);
    assert!(!table.contains(&id), "{table}");
    let (_, rest) = list(&t, &["--since", "14d"]);
    assert_eq!(rest.len(), 3, "only the spike is hidden: {:#?}", summary(&rest));

    let reopen = t.ok(&["anomalies", "reopen", &id]);
    assert!(reopen.contains(&id) && reopen.contains("open"), "{reopen}");
    assert_eq!(state(&["--since", "14d"]).as_deref(), Some("open"));

    for action in ["ack", "resolve", "reopen", "show"] {
        let err = t.fails(&["anomalies", action, "sp-00000000"]);
        assert!(err.contains("sp-00000000"), "{action}: {err}");
        assert!(err.contains("egressor anomalies --since 90d --all"), "{action}: {err}");
    }
    assert_eq!(state(&["--since", "14d"]).as_deref(), Some("open"), "a failed command changes nothing");
}

#[test]
fn anomalies_filters_and_csv() {
    let t = demo();
    let (_, spikes) = list(&t, &["--since", "14d", "--type", "spike"]);
    assert_eq!(spikes.len(), 1, "{:#?}", summary(&spikes));
    assert_eq!(spikes[0]["subject"]["name"], SPIKE_EDGE);
    let (_, leaks) = list(&t, &["--since", "14d", "--type", "leak"]);
    assert_eq!(leaks.len(), 1, "{:#?}", summary(&leaks));

    let (j, none) = list(&t, &["--since", "14d", "--min-cost", "1000"]);
    assert!(none.is_empty(), "{:#?}", summary(&none));
    assert_eq!(j["thresholds"]["min_cost_per_day"], "1000");
    let table = t.ok(&["anomalies", "--since", "14d", "--min-cost", "1000"]);
    assert!(table.contains("No anomalies above") && table.contains("1000.00 USD/day"), "{table}");
    assert!(!table.contains("ID"), "{table}");
    // A dollar threshold between the findings' costs keeps the dearer ones only.
    let (_, all) = list(&t, &["--since", "14d"]);
    let (_, dear) = list(&t, &["--since", "14d", "--min-cost", "1"]);
    let expected: Vec<&Value> = all.iter().filter(|f| decimal(&f["cost_per_day"]) >= Decimal::ONE).collect();
    assert!(!dear.is_empty() && dear.len() < all.len(), "{:#?}", summary(&dear));
    assert_eq!(dear.iter().collect::<Vec<_>>(), expected);

    let csv = t.ok(&["anomalies", "--since", "14d", "--output", "csv"]);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "id,type,subject_kind,subject,start,end,detected_at,expected_bytes_per_day,observed_bytes_per_day,\
             excess_bytes_per_day,growth_per_day,cost_per_day,projected_extra_per_month,state,next_step"
        )
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), all.len(), "{csv}");
    for (row, f) in rows.iter().zip(&all) {
        assert!(row.starts_with(&format!("{},{},edge,", str_of(f, "id"), str_of(f, "type"))), "{row}");
    }
}

fn no_escapes(s: &str) -> &str {
    assert!(!s.contains('\x1b'), "colour escapes in output meant for a snapshot:\n{s}");
    s
}

#[test]
fn anomalies_table_and_show_snapshots() {
    let t = demo();
    let table = t.ok(&["anomalies", "--since", "14d"]);
    insta::assert_snapshot!("anomalies_table", no_escapes(&table));
    let id = spike_id(&t);
    let show = t.ok(&["anomalies", "show", &id]);
    insta::assert_snapshot!("anomalies_show_spike", no_escapes(&show));
}

#[test]
fn baseline_of_an_edge_and_an_ambiguous_subject() {
    let t = demo();
    let subject = format!("edge:{SPIKE_EDGE}");
    let out = t.ok(&["baseline", &subject]);
    assert!(out.contains(&format!("Baseline of {subject}")), "{out}");
    for header in ["WINDOW", "MEAN", "MEDIAN", "MAD", "P95", "P99"] {
        assert!(out.contains(header), "{header}: {out}");
    }
    for window in ["24h", "7d", "28d"] {
        assert!(out.lines().any(|l| l.contains(&format!(" {window} "))), "{window}: {out}");
    }
    assert!(out.contains("Median by weekday and hour"), "{out}");
    for day in ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"] {
        assert!(out.lines().any(|l| l.starts_with(day)), "{day}: {out}");
    }
    assert!(out.contains("The recent hours against the band"), "{out}");
    insta::assert_snapshot!("baseline_spike_edge", no_escapes(&out));

    let err = t.fails(&["baseline", "shop"]);
    assert!(err.contains("\"shop\" names") && err.contains("say which"), "{err}");
    assert!(err.contains(&subject), "{err}");
    assert!(err.contains("egress:shop/Deployment/checkout"), "{err}");

    let err = t.fails(&["baseline", "no-such-series"]);
    assert!(err.contains("no series named \"no-such-series\""), "{err}");
}
