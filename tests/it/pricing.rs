//! `egressor pricing show|validate` as a user runs them.

use crate::{TestContext, fixture};

#[test]
fn show_lists_region_prices_with_payer_and_source() {
    let t = TestContext::new();
    let v = t.json(&["pricing", "show", "--provider", "aws", "--region", "us-east-1", "--output", "json"]);
    assert_eq!(v["schema_version"], "egressor.prices/v1");
    let prices = v["prices"].as_array().unwrap();
    let cross = prices.iter().find(|p| p["charge"] == "cross-zone").expect("cross-zone priced");
    assert_eq!(cross["price"], "0.01");
    assert_eq!(cross["payer"], "both");
    let tiers: Vec<&str> = prices
        .iter()
        .filter(|p| p["charge"] == "internet-egress" && p["variant"] == "")
        .map(|p| p["price"].as_str().unwrap())
        .collect();
    assert_eq!(tiers, vec!["0.09", "0.085", "0.07", "0.05"]);
    assert!(prices.iter().all(|p| p["source"].as_str().is_some_and(|s| !s.is_empty())));
    let table = t.ok(&["pricing", "show", "--provider", "gcp"]);
    assert!(table.contains("gcp") && table.contains("pricing/gcp.toml"), "{table}");
    let err = t.cmd(&["pricing", "show", "--provider", "oracle"]).output().unwrap();
    assert!(String::from_utf8_lossy(&err.stderr).contains("known: aws, gcp, azure"));
}

#[test]
fn validate_reports_file_line_col_and_an_override_applies() {
    let t = TestContext::new();
    let ok = t.ok(&["pricing", "validate", fixture("../../pricing/aws.toml").to_str().unwrap()]);
    assert!(ok.contains(": ok (aws"), "{ok}");

    let bad = t.path("rates.toml");
    std::fs::write(
        &bad,
        "provider = \"aws\"\nas_of = \"2026-10-01\"\nunit = \"GiB\"\ncurrency = \"USD\"\n\n[[rate]]\ncategory = \"cross-zone\"\nregions = [\"us-east-1\"]\npayer = \"both\"\nprice = 0.005\n",
    )
    .unwrap();
    let err = t.fails(&["pricing", "validate", bad.to_str().unwrap(), "--override"]);
    assert!(err.contains("rates.toml:10:"), "{err}");
    assert!(err.contains("quote it"), "{err}");

    std::fs::write(
        &bad,
        std::fs::read_to_string(&bad).unwrap().replace("price = 0.005", "price = \"0.005\""),
    )
    .unwrap();
    let out = t.ok(&["pricing", "validate", bad.to_str().unwrap(), "--override"]);
    assert!(out.contains("ok"), "{out}");
    let v = t.json(&[
        "pricing",
        "show",
        "--provider",
        "aws",
        "--region",
        "us-east-1",
        "--prices",
        bad.to_str().unwrap(),
        "--output",
        "json",
    ]);
    let cross = v["prices"].as_array().unwrap().iter().find(|p| p["charge"] == "cross-zone").unwrap().clone();
    assert_eq!(cross["price"], "0.005", "{cross}");
}
