use super::*;
use std::str::FromStr;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn book() -> PriceBook {
    PriceBook::shipped().unwrap_or_else(|e| panic!("shipped tables must validate:\n{e}"))
}

fn prices(rate: &Rate) -> Vec<Decimal> {
    rate.tiers.iter().map(|t| t.price).collect()
}

fn problems(text: &str, kind: TableKind) -> Vec<Problem> {
    match PriceTable::parse("t.toml", text, kind) {
        Ok(_) => panic!("expected problems in:\n{text}"),
        Err(e) => e.problems().to_vec(),
    }
}

/// The single rendered error line for a file with exactly one problem.
fn one_error(text: &str, kind: TableKind) -> String {
    let err = PriceTable::parse("pricing/t.toml", text, kind).expect_err("must fail");
    assert_eq!(err.problems().len(), 1, "expected one problem, got:\n{err}");
    err.to_string()
}

const HEADER: &str = "provider = \"aws\"\nas_of = \"2026-11-01\"\ncurrency = \"USD\"\nunit = \"GiB\"\n";

#[test]
fn every_shipped_table_parses_and_validates() {
    for (path, text) in SHIPPED_TABLES {
        let table = PriceTable::parse(path, text, TableKind::Shipped).unwrap_or_else(|e| panic!("{e}"));
        assert!(table.counts().rates > 5, "{path} has too few rates");
        assert_eq!(table.as_of(), "2026-11");
    }
    let book = book();
    assert_eq!(book.providers().collect::<Vec<_>>(), vec![Provider::Aws, Provider::Gcp, Provider::Azure]);
}

#[test]
fn every_shipped_price_cites_a_source_and_states_its_unit() {
    let book = book();
    let rows = book.describe(None, None);
    assert!(rows.len() > 60);
    for row in &rows {
        assert!(!row.source.is_empty(), "{row:?}");
        assert!(!row.as_of.is_empty());
        assert!(row.origin.starts_with("pricing/"), "{}", row.origin);
    }
    // The facts mark these as unverified; the marker must survive into what users see.
    assert!(rows.iter().any(|r| r.provider == Provider::Azure && r.charge == "inter-region" && r.unverified));
    assert!(rows.iter().any(|r| r.provider == Provider::Aws
        && r.charge == "nat-processing"
        && r.regions == "*"
        && r.unverified));
}

#[test]
fn aws_internet_tiers_in_us_east_1() {
    let book = book();
    let rate = book.rate(Provider::Aws, "us-east-1", Category::InternetEgress, None).unwrap();
    assert_eq!(prices(rate), vec![d("0.09"), d("0.085"), d("0.07"), d("0.05")]);
    assert_eq!(rate.tiers[1].price, d("0.085"));
    assert_eq!(rate.tiers[1].from_units, d("10240"));
    assert_eq!(rate.tiers[1].to_units, Some(d("51200")));
    assert_eq!(rate.tiers[3].to_units, None);
    assert_eq!(rate.unit_bytes(), 1_073_741_824);
    assert_eq!(rate.payer, Payer::Source);
    let free = rate.free.as_ref().unwrap();
    assert_eq!((free.units, free.scope), (d("100"), AllowanceScope::Global));
    assert_eq!(book.tier_accumulation(Provider::Aws), Some(TierAccumulation::PerSourceRegion));
}

#[test]
fn aws_regional_internet_tables() {
    let book = book();
    let seoul = book.rate(Provider::Aws, "ap-northeast-2", Category::InternetEgress, None).unwrap();
    assert_eq!(prices(seoul), vec![d("0.126"), d("0.122"), d("0.117"), d("0.108")]);
    let starts: Vec<_> = seoul.tiers.iter().map(|t| t.from_units).collect();
    assert_eq!(starts, vec![d("0"), d("10240"), d("51200"), d("153600")]);
    let mumbai = book.rate(Provider::Aws, "ap-south-2", Category::InternetEgress, None).unwrap();
    assert_eq!(mumbai.tiers[0].price, d("0.1093"));
    let gov = book.rate(Provider::Aws, "us-gov-west-1", Category::InternetEgress, None).unwrap();
    assert_eq!(prices(gov), vec![d("0.155"), d("0.115"), d("0.09"), d("0.065")]);
    // Not in the sources: unpriced, never silently zero.
    assert!(book.rate(Provider::Aws, "me-south-1", Category::InternetEgress, None).is_none());
}

#[test]
fn aws_cross_zone_is_paid_by_both_sides() {
    let book = book();
    let rate = book.rate(Provider::Aws, "eu-west-1", Category::CrossZone, None).unwrap();
    assert_eq!((rate.payer, rate.tiers[0].price), (Payer::Both, d("0.01")));
    let nlb = book
        .rate_variant(Provider::Aws, "us-east-1", Category::LoadBalancerCrossZone, Some("nlb"), None)
        .unwrap();
    assert_eq!((nlb.payer, nlb.tiers[0].price), (Payer::Both, d("0.01")));
    let alb = book
        .rate_variant(Provider::Aws, "us-east-1", Category::LoadBalancerCrossZone, Some("alb"), None)
        .unwrap();
    assert_eq!(alb.tiers[0].price, d("0"));
}

#[test]
fn aws_inter_region_prefers_the_most_specific_pair() {
    let book = book();
    let price = |from: &str, to: &str| {
        book.rate(Provider::Aws, from, Category::InterRegion, Some(to)).map(|r| r.tiers[0].price)
    };
    assert_eq!(price("us-east-1", "us-east-2"), Some(d("0.01")));
    assert_eq!(price("us-east-2", "us-east-1"), Some(d("0.01")));
    assert_eq!(price("us-east-1", "eu-west-1"), Some(d("0.02")));
    assert_eq!(price("ap-southeast-1", "us-east-1"), Some(d("0.09")));
    assert_eq!(price("me-south-1", "eu-west-1"), Some(d("0.1105")));
    // Not in the sources (US -> Asia): unpriced.
    assert_eq!(price("us-east-1", "ap-southeast-1"), None);
    // Same region asked as inter-region is a classification bug, not a price.
    assert_eq!(price("us-east-1", "us-east-1"), None);
    assert!(book.rate(Provider::Aws, "us-east-1", Category::InterRegion, None).is_none());
    let rate = book.rate(Provider::Aws, "sa-east-1", Category::InterRegion, Some("us-east-1")).unwrap();
    assert_eq!(rate.payer, Payer::Source);
}

#[test]
fn aws_peering_across_regions_is_priced_as_inter_region() {
    let book = book();
    let rate =
        book.rate(Provider::Aws, "us-east-1", Category::VpcPeeringInterRegion, Some("us-east-2")).unwrap();
    assert_eq!((rate.category, rate.tiers[0].price), (Category::InterRegion, d("0.01")));
    let same_zone = book.rate(Provider::Aws, "us-east-1", Category::VpcPeeringSameZone, None).unwrap();
    assert_eq!(same_zone.tiers[0].price, d("0"));
}

#[test]
fn aws_gateways_endpoints_and_hourly_charges() {
    let book = book();
    let nat = book.rate(Provider::Aws, "us-east-1", Category::NatProcessing, None).unwrap();
    assert_eq!((nat.payer, nat.tiers[0].price, nat.unverified()), (Payer::Owner, d("0.045"), false));
    assert!(book.rate(Provider::Aws, "eu-west-1", Category::NatProcessing, None).unwrap().unverified());
    let hour = |region: &str, kind| book.hourly(Provider::Aws, region, kind).map(|h| h.price);
    assert_eq!(hour("us-east-1", HourlyKind::NatGatewayHour), Some(d("0.045")));
    assert_eq!(hour("us-west-1", HourlyKind::NatGatewayHour), Some(d("0.048")));
    assert_eq!(hour("eu-west-1", HourlyKind::TransitGatewayAttachmentHour), Some(d("0.05")));
    assert_eq!(hour("eu-west-1", HourlyKind::EndpointHour), Some(d("0.01")));
    assert_eq!(hour("eu-west-1", HourlyKind::PublicIpv4Hour), Some(d("0.005")));
    let gw = book.rate(Provider::Aws, "us-east-1", Category::GatewayEndpoint, None).unwrap();
    assert_eq!(gw.tiers[0].price, d("0"));
    let pl = book.rate(Provider::Aws, "us-east-1", Category::Privatelink, None).unwrap();
    assert_eq!(prices(pl), vec![d("0.01"), d("0.006"), d("0.004")]);
    assert_eq!(pl.tiers[1].from_units, d("1048576"));
    assert_eq!(
        book.rate(Provider::Aws, "us-east-1", Category::TransitGateway, None).unwrap().tiers[0].price,
        d("0.02")
    );
    assert_eq!(
        book.rate(Provider::Aws, "us-east-1", Category::GwlbEndpoint, None).unwrap().tiers[0].price,
        d("0.0035")
    );
    let public = book.rate(Provider::Aws, "us-east-1", Category::PublicIpSameRegion, None).unwrap();
    assert_eq!((public.payer, public.tiers[0].price), (Payer::Both, d("0.01")));
}

#[test]
fn gcp_prices_per_gib() {
    let book = book();
    let zone = book.rate(Provider::Gcp, "us-central1", Category::CrossZone, None).unwrap();
    assert_eq!(
        (zone.tiers[0].price, zone.unit, zone.unit_bytes(), zone.payer),
        (d("0.01"), Unit::GiB, 1 << 30, Payer::Source)
    );
    let inter = |from: &str, to: &str| {
        book.rate(Provider::Gcp, from, Category::InterRegion, Some(to)).unwrap().tiers[0].price
    };
    assert_eq!(inter("us-central1", "us-east1"), d("0.02"));
    assert_eq!(inter("europe-west1", "europe-west4"), d("0.02"));
    assert_eq!(inter("asia-east1", "asia-northeast1"), d("0.08"));
    assert_eq!(inter("southamerica-east1", "southamerica-west1"), d("0.14"));
    assert_eq!(inter("us-central1", "europe-west1"), d("0.08"));
    assert_eq!(inter("us-central1", "australia-southeast1"), d("0.10"));
    assert_eq!(inter("australia-southeast1", "us-central1"), d("0.10"));
    let premium = book.rate(Provider::Gcp, "us-central1", Category::InternetEgress, None).unwrap();
    assert_eq!(prices(premium), vec![d("0.12"), d("0.11"), d("0.08")]);
    assert_eq!(premium.free.as_ref().unwrap().units, d("1"));
    let china = book.rate(Provider::Gcp, "us-central1", Category::InternetEgress, Some("china")).unwrap();
    assert_eq!(prices(china), vec![d("0.23"), d("0.22")]);
    // An area with no rate of its own gets the worldwide price.
    let de = book.rate(Provider::Gcp, "us-central1", Category::InternetEgress, Some("germany")).unwrap();
    assert_eq!(de.tiers[0].price, d("0.12"));
    let standard = book
        .rate_variant(Provider::Gcp, "us-central1", Category::InternetEgress, Some("standard-tier"), None)
        .unwrap();
    assert_eq!(standard.tiers[0].price, d("0.085"));
    assert!(standard.free.is_none(), "the free GiB is Premium only");
    let vm = book.hourly(Provider::Gcp, "us-central1", HourlyKind::NatVmHour).unwrap();
    assert_eq!((vm.price, vm.max_quantity), (d("0.0014"), Some(d("32"))));
}

#[test]
fn azure_first_100_gb_free_and_ranges_marked() {
    let book = book();
    let rate = book.rate(Provider::Azure, "westeurope", Category::InternetEgress, None).unwrap();
    let free = rate.free.as_ref().unwrap();
    assert_eq!((free.units, free.scope, rate.unit), (d("100"), AllowanceScope::Global, Unit::GB));
    assert_eq!(rate.unit_bytes(), 1_000_000_000);
    assert_eq!(prices(rate), vec![d("0.087"), d("0.083"), d("0.07")]);
    let isp = book
        .rate_variant(Provider::Azure, "eastus", Category::InternetEgress, Some("isp-routing"), None)
        .unwrap();
    assert_eq!(isp.tiers[0].price, d("0.04"));
    assert_eq!(
        book.rate(Provider::Azure, "eastus", Category::CrossZone, None).unwrap().tiers[0].price,
        d("0")
    );
    let peering = book.rate(Provider::Azure, "eastus", Category::VpcPeeringCrossZone, None).unwrap();
    assert_eq!((peering.payer, peering.tiers[0].price), (Payer::Both, d("0.01")));
    let within = book.rate(Provider::Azure, "eastus", Category::InterRegion, Some("westus2")).unwrap();
    assert_eq!(within.tiers[0].price, d("0.02"));
    assert!(within.unverified());
    let across = book.rate(Provider::Azure, "eastus", Category::InterRegion, Some("westeurope")).unwrap();
    assert_eq!(across.tiers[0].price, d("0.05"));
    let elsewhere = book.rate(Provider::Azure, "japaneast", Category::InterRegion, Some("eastus")).unwrap();
    assert_eq!(elsewhere.tiers[0].price, d("0.16"));
    // Global peering outside zone 1 is not in the sources, and is not silently priced as inter-region.
    assert!(
        book.rate(Provider::Azure, "japaneast", Category::VpcPeeringInterRegion, Some("eastus")).is_none()
    );
}

#[test]
fn tier_slices_split_usage_across_boundaries() {
    let book = book();
    let rate = book.rate(Provider::Aws, "us-east-1", Category::InternetEgress, None).unwrap();
    let slices = rate.tier_slices(d("10000"), d("500"));
    assert_eq!(slices.len(), 2);
    assert_eq!((slices[0].tier, slices[0].units, slices[0].cost), (0, d("240"), d("21.60")));
    assert_eq!((slices[1].tier, slices[1].units, slices[1].cost), (1, d("260"), d("22.100")));
    assert!(rate.tier_slices(d("0"), d("0")).is_empty());
    assert_eq!(rate.units_for_bytes(3 << 30), d("3"));
}

#[test]
fn float_price_is_refused_with_position() {
    let text = format!(
        "{HEADER}\n[[rate]]\ncategory = \"cross-zone\"\nregions = [\"*\"]\npayer = \"both\"\nprice = 0.01\nsource = \"x\"\n"
    );
    let msg = one_error(&text, TableKind::Shipped);
    assert!(msg.starts_with("pricing/t.toml:10:9: price 0.01 is a TOML float; quote it (\"0.01\")"), "{msg}");
    let p = &problems(&text, TableKind::Shipped)[0];
    assert_eq!(p.field, "rate[0].price");
}

#[test]
fn bad_numbers_do_not_hide_other_problems() {
    let text = "provider = \"aws\"\nas_of = \"2026-13-01\"\ncurrency = \"USD\"\nunit = \"GiB\"\n\n[[rate]]\n\
                category = \"internet-egress\"\nregions = [\"us-east-1\", \"Bad Region\"]\npayer = \"source\"\nsource = \"x\"\n\
                tiers = [{ from = 0, price = \"0.09\" }, { from = 10240.5, price = \"x\" }]\n";
    let found = problems(text, TableKind::Shipped);
    let rendered: Vec<String> =
        found.iter().map(|p| format!("{}:{} {} | {}", p.line, p.column, p.field, p.message)).collect();
    assert_eq!(found.len(), 4, "{rendered:#?}");
    assert_eq!(
        rendered[0],
        "2:9 as_of | as_of `2026-13-01` is not a date; expected \"YYYY-MM-DD\" or \"YYYY-MM\""
    );
    let rendered = &rendered[1..];
    assert!(
        rendered[0].starts_with("8:25 rate[0].regions | `Bad Region` is not a region name"),
        "{rendered:#?}"
    );
    assert!(
        rendered[1].starts_with("11:49 rate[0].tiers[1].from | quantity 10240.5 is a TOML float"),
        "{rendered:#?}"
    );
    assert!(
        rendered[2].starts_with("11:66 rate[0].tiers[1].price | `x` is not a decimal number"),
        "{rendered:#?}"
    );
}

#[test]
fn tiers_out_of_order_name_the_entry_and_values() {
    let text = format!(
        "{HEADER}\n[[rate]]\ncategory = \"internet-egress\"\nregions = [\"us-east-1\"]\npayer = \"source\"\nsource = \"x\"\ntiers = [\n  {{ from = 0, price = \"0.09\" }},\n  {{ from = 51200, price = \"0.085\" }},\n  {{ from = 10240, price = \"0.07\" }},\n]\n"
    );
    let msg = one_error(&text, TableKind::Shipped);
    assert_eq!(
        msg,
        "pricing/t.toml:14:12: tiers for internet-egress in us-east-1 must start at 0 and be increasing; got 10240 after 51200"
    );
    let p = &problems(&text, TableKind::Shipped)[0];
    assert_eq!(p.field, "rate[0].tiers[2].from");
}

#[test]
fn tiers_must_start_at_zero() {
    let text = format!(
        "{HEADER}[[rate]]\ncategory = \"internet-egress\"\nregions = [\"us-east-1\"]\npayer = \"source\"\nsource = \"x\"\ntiers = [{{ from = 100, price = \"0.09\" }}]\n"
    );
    assert!(
        one_error(&text, TableKind::Shipped).contains("must start at 0 and be increasing; got 100 first")
    );
}

#[test]
fn all_problems_are_reported_together() {
    let text = format!(
        "{HEADER}[[rate]]\ncategory = \"cross-zones\"\nregions = [\"*\"]\npayer = \"both\"\nprice = \"0.01\"\nsource = \"x\"\n\n\
         [[rate]]\ncategory = \"cross-zone\"\nregions = [\"*\"]\npayer = \"sender\"\nprice = \"-0.01\"\n"
    );
    let found = problems(&text, TableKind::Shipped);
    let messages: Vec<String> =
        found.iter().map(|p| format!("{}:{} {}", p.line, p.column, p.message)).collect();
    assert_eq!(found.len(), 4, "{messages:#?}");
    assert!(
        messages[0].starts_with("6:12 unknown category `cross-zones`; expected one of same-zone, cross-zone"),
        "{messages:#?}"
    );
    assert!(messages[1].starts_with(
        "15:9 unknown payer `sender` for cross-zone in *; expected one of source, destination, both, owner"
    ));
    assert!(messages[2].starts_with("16:9 price for cross-zone in * must not be negative; got -0.01"));
    assert!(messages[3].starts_with("12:1 missing `source` for cross-zone in *"));
}

#[test]
fn header_fields_are_required_and_checked() {
    let found = problems("provider = \"aws\"\ncurrency = \"usd\"\nunit = \"GB10\"\n", TableKind::Shipped);
    let messages: Vec<&str> = found.iter().map(|p| p.message.as_str()).collect();
    assert_eq!(found.len(), 3, "{messages:#?}");
    assert!(messages[0].starts_with("missing `as_of`"));
    assert!(messages[1].contains("currency `usd` is not an ISO 4217 code"));
    assert!(messages[2].contains("unknown unit `GB10`; expected one of GiB, GB"));
    assert_eq!((found[2].line, found[2].column), (3, 8));
}

#[test]
fn toml_syntax_and_unknown_fields_have_positions() {
    let msg = one_error(
        &format!("{HEADER}[[rate]]\ncategory = \"cross-zone\"\npricee = \"0.01\"\n"),
        TableKind::Shipped,
    );
    assert!(msg.starts_with("pricing/t.toml:7:1: unknown field `pricee`"), "{msg}");
    let msg = one_error(&format!("{HEADER}as_of = \"2026-12-01\"\n"), TableKind::Shipped);
    assert!(msg.starts_with("pricing/t.toml:5:1:"), "{msg}");
}

#[test]
fn overlapping_entries_and_groups_are_refused() {
    let text = format!(
        "{HEADER}[region_groups]\na = [\"us-east-1\", \"us-east-2\"]\nb = [\"us-east-2\"]\n\n\
         [[rate]]\ncategory = \"cross-zone\"\nregions = [\"us-east-1\"]\npayer = \"both\"\nprice = \"0.01\"\nsource = \"x\"\n\n\
         [[rate]]\ncategory = \"cross-zone\"\nregions = [\"us-east-1\"]\npayer = \"both\"\nprice = \"0.02\"\nsource = \"x\"\n"
    );
    let found = problems(&text, TableKind::Shipped);
    let messages: Vec<String> =
        found.iter().map(|p| format!("{}:{} {}", p.line, p.column, p.message)).collect();
    assert_eq!(found.len(), 2, "{messages:#?}");
    assert!(messages[0].starts_with("7:6 region us-east-2 is in region groups `a` and `b`"), "{messages:#?}");
    assert!(
        messages[1].starts_with("16:1 cross-zone from us-east-1 is already priced at line 9"),
        "{messages:#?}"
    );
}

#[test]
fn destinations_are_checked_against_the_category() {
    let text = format!(
        "{HEADER}[[rate]]\ncategory = \"inter-region\"\nregions = [\"us-east-1\"]\npayer = \"source\"\nprice = \"0.02\"\nsource = \"x\"\n\n\
         [[rate]]\ncategory = \"cross-zone\"\nregions = [\"us-east-1\"]\nto = [\"us-east-2\"]\npayer = \"both\"\nprice = \"0.01\"\nsource = \"x\"\n\n\
         [[rate]]\ncategory = \"inter-region\"\nregions = [\"us-west-2\"]\nto_groups = [\"nowhere\"]\npayer = \"source\"\nprice = \"0.02\"\nsource = \"x\"\n"
    );
    let messages: Vec<String> = problems(&text, TableKind::Shipped).into_iter().map(|p| p.message).collect();
    assert_eq!(messages.len(), 3, "{messages:#?}");
    assert!(messages[0].contains("inter-region in us-east-1 needs `to`"));
    assert!(messages[1].contains("`to` is not used for cross-zone"));
    assert!(messages[2].contains("unknown region group `nowhere`"));
}

#[test]
fn shipped_tables_may_not_carry_cidr_rules() {
    let text = format!("{HEADER}[[cidr]]\ncidr = \"203.0.113.0/24\"\nprice = \"0\"\nreason = \"dx\"\n");
    assert!(one_error(&text, TableKind::Shipped).contains("[[cidr]] rules belong in a user override file"));
}

#[test]
fn a_read_error_names_the_file() {
    let err = PriceTable::load_file(Path::new("/nonexistent/egressor/prices.toml"), TableKind::Override)
        .unwrap_err();
    assert!(matches!(err, PricingError::Read { .. }));
    assert!(err.to_string().starts_with("cannot read price file /nonexistent/egressor/prices.toml"));
}

const OVERRIDE: &str = r#"
provider = "aws"
as_of = "2026-10-01"
currency = "USD"
unit = "GiB"
tier_accumulation = "global"

[[rate]]
category = "internet-egress"
regions = ["*"]
payer = "source"
tiers = [{ from = 0, price = "0.05" }, { from = 102400, price = "0.03" }]
source = "EDP contract 2026"

[[rate]]
category = "cross-zone"
regions = ["eu-west-1"]
payer = "both"
price = "0.008"

[[hourly]]
kind = "nat-gateway-hour"
regions = ["us-east-1"]
per = "gateway"
price = "0.04"

[[cidr]]
cidr = "203.0.113.0/24"
price = "0.00"
reason = "direct connect"

[[cidr]]
cidr = "203.0.0.0/16"
price = "0.02"
reason = "partner network"
payer = "both"
"#;

#[test]
fn override_prices_win_and_cite_the_override_file() {
    let ov = PriceTable::parse("my-rates.toml", OVERRIDE, TableKind::Override).unwrap();
    let book = merge(book(), ov).unwrap();

    // A "*" override beats the shipped per-region entry: any override beats any shipped price.
    let internet = book.rate(Provider::Aws, "ap-northeast-2", Category::InternetEgress, None).unwrap();
    assert_eq!(prices(internet), vec![d("0.05"), d("0.03")]);
    assert_eq!(internet.source, "override: my-rates.toml (EDP contract 2026)");
    assert_eq!(internet.as_of, "2026-10-01");
    // The shipped free allowance stays unless the override replaces it.
    assert_eq!(internet.free.as_ref().unwrap().units, d("100"));

    let eu = book.rate(Provider::Aws, "eu-west-1", Category::CrossZone, None).unwrap();
    assert_eq!((eu.tiers[0].price, eu.source.as_str()), (d("0.008"), "override: my-rates.toml"));
    let us = book.rate(Provider::Aws, "us-east-1", Category::CrossZone, None).unwrap();
    assert_eq!(us.tiers[0].price, d("0.01"), "regions the override does not name keep shipped prices");
    assert!(us.source.starts_with("https://aws.amazon.com"));

    assert_eq!(book.hourly(Provider::Aws, "us-east-1", HourlyKind::NatGatewayHour).unwrap().price, d("0.04"));
    assert_eq!(
        book.hourly(Provider::Aws, "us-west-1", HourlyKind::NatGatewayHour).unwrap().price,
        d("0.048")
    );
    assert_eq!(book.tier_accumulation(Provider::Aws), Some(TierAccumulation::Global));
    assert_eq!(book.tier_accumulation(Provider::Gcp), Some(TierAccumulation::PerSourceRegion));

    let dx = book.cidr_rule(Provider::Aws, "203.0.113.7".parse().unwrap()).unwrap();
    assert_eq!((dx.price, dx.reason.as_str()), (d("0"), "direct connect"));
    assert_eq!(dx.source, "override: my-rates.toml (direct connect)");
    let partner = book.cidr_rule(Provider::Aws, "203.0.9.1".parse().unwrap()).unwrap();
    assert_eq!((partner.price, partner.payer), (d("0.02"), Payer::Both));
    assert!(book.cidr_rule(Provider::Aws, "198.51.100.1".parse().unwrap()).is_none());
    assert!(book.cidr_rule(Provider::Gcp, "203.0.113.7".parse().unwrap()).is_none());

    let files: Vec<_> = book.tables().iter().map(|t| (t.path.as_str(), t.kind)).collect();
    assert_eq!(files.last(), Some(&("my-rates.toml", TableKind::Override)));
}

#[test]
fn later_overrides_beat_earlier_ones_and_can_withdraw_allowances() {
    let first = PriceTable::parse("a.toml", OVERRIDE, TableKind::Override).unwrap();
    let second = PriceTable::parse(
        "b.toml",
        &format!(
            "{HEADER}[[rate]]\ncategory = \"cross-zone\"\nregions = [\"eu-west-1\"]\npayer = \"both\"\nprice = \"0.007\"\n\n\
             [[free_allowance]]\nname = \"none\"\ncategory = \"internet-egress\"\nunits = \"0\"\nscope = \"global\"\n"
        ),
        TableKind::Override,
    )
    .unwrap();
    let book = book().with_override(first).unwrap().with_override(second).unwrap();
    let eu = book.rate(Provider::Aws, "eu-west-1", Category::CrossZone, None).unwrap();
    assert_eq!((eu.tiers[0].price, eu.source.as_str()), (d("0.007"), "override: b.toml"));
    assert!(book.rate(Provider::Aws, "us-east-1", Category::InternetEgress, None).unwrap().free.is_none());
}

#[test]
fn override_must_match_the_base_currency_and_provider() {
    let text = "provider = \"aws\"\nas_of = \"2026-11\"\ncurrency = \"EUR\"\nunit = \"GiB\"\n";
    let ov = PriceTable::parse("eur.toml", text, TableKind::Override).unwrap();
    let err = book().with_override(ov).unwrap_err().to_string();
    assert_eq!(
        err,
        "eur.toml:3:12: override currency EUR differs from the base table's USD; convert the prices"
    );

    let only_aws = PriceBook::from_tables(vec![
        PriceTable::parse("aws.toml", SHIPPED_TABLES[0].1, TableKind::Shipped).unwrap(),
    ])
    .unwrap();
    let gcp = PriceTable::parse(
        "g.toml",
        "provider = \"gcp\"\nas_of = \"2026-11\"\ncurrency = \"USD\"\nunit = \"GiB\"\n",
        TableKind::Override,
    )
    .unwrap();
    assert!(
        only_aws.with_override(gcp).unwrap_err().to_string().contains("no base price table for provider gcp")
    );
}

#[test]
fn cidr_rules_are_validated() {
    let text = format!(
        "{HEADER}[[cidr]]\ncidr = \"203.0.113.5/24\"\nprice = \"0\"\nreason = \"dx\"\n\n[[cidr]]\ncidr = \"not-a-net\"\nprice = \"0\"\n"
    );
    let messages: Vec<String> = problems(&text, TableKind::Override).into_iter().map(|p| p.message).collect();
    assert_eq!(messages.len(), 3, "{messages:#?}");
    assert!(messages[0].contains("203.0.113.5/24 has host bits set; write the network, 203.0.113.0/24"));
    assert!(messages[1].contains("`not-a-net` is not a CIDR"));
    assert!(messages[2].contains("missing `reason`"));
}

#[test]
fn describe_for_a_region_shows_what_that_region_pays() {
    let ov = PriceTable::parse("my-rates.toml", OVERRIDE, TableKind::Override).unwrap();
    let book = book().with_override(ov).unwrap();
    let rows = book.describe(Some(Provider::Aws), Some("eu-west-1"));
    assert!(rows.iter().all(|r| r.provider == Provider::Aws));
    let cross: Vec<_> = rows.iter().filter(|r| r.charge == "cross-zone").collect();
    assert_eq!(cross.len(), 1, "the shipped cross-zone price is shadowed");
    assert_eq!((cross[0].price, cross[0].origin.as_str()), (d("0.008"), "my-rates.toml:15"));
    let internet: Vec<_> = rows.iter().filter(|r| r.charge == "internet-egress").collect();
    assert_eq!(internet.iter().map(|r| r.tier.as_str()).collect::<Vec<_>>(), vec!["0-102400", "102400+"]);
    assert_eq!(internet[0].tier_accumulation, "global");
    assert_eq!(internet[0].free, "100 GiB/month (global)");
    let nat_hours: Vec<_> = rows.iter().filter(|r| r.charge == "nat-gateway-hour").collect();
    assert_eq!((nat_hours.len(), nat_hours[0].price), (1, d("0.045")));
    assert!(rows.iter().any(|r| r.charge == "cidr 203.0.113.0/24"));
    // The "*" internet override also wins for China-bound traffic in lookups, so show agrees.
    let us_east = book.describe(Some(Provider::Aws), Some("us-east-1"));
    assert!(us_east.iter().filter(|r| r.charge == "internet-egress").all(|r| r.origin == "my-rates.toml:8"));
    let shipped = PriceBook::shipped().unwrap();
    let china: Vec<_> = shipped
        .describe(Some(Provider::Gcp), Some("us-central1"))
        .into_iter()
        .filter(|r| r.charge == "internet-egress" && r.destination == "china")
        .collect();
    assert_eq!(china.len(), 2);
    let to_asia = shipped.describe(Some(Provider::Gcp), Some("asia-east1"));
    assert!(to_asia.iter().any(|r| r.charge == "inter-region" && r.regions == "group asia"));
    assert!(!to_asia.iter().any(|r| r.charge == "inter-region" && r.regions == "group europe"));
    // Inter-region entries the region does not send from are left out.
    assert!(!rows.iter().any(|r| r.charge == "inter-region" && r.regions == "us-east-1"));
}

/// Where a free allowance sits on the ladder changes the bill ($0.50 a month at 10 TB on AWS): a
/// shipped table must say it, and a wrong value names the field and the choices.
#[test]
fn a_shipped_free_allowance_says_where_it_sits_on_the_ladder() {
    let allowance = |position: &str| {
        format!(
            "{HEADER}\n[[free_allowance]]\nname = \"free\"\ncategory = \"internet-egress\"\nunits = \"100\"\nscope = \"global\"\n{position}source = \"x\"\n"
        )
    };
    let missing = &problems(&allowance(""), TableKind::Shipped)[0];
    assert_eq!(missing.field, "free_allowance[0].position");
    assert!(missing.message.contains("before-tiers"), "{}", missing.message);
    let wrong = &problems(&allowance("position = \"first\"\n"), TableKind::Shipped)[0];
    assert_eq!(wrong.field, "free_allowance[0].position");
    assert!(wrong.message.contains("unknown position `first`"), "{}", wrong.message);
    assert!(
        PriceTable::parse("t.toml", &allowance("position = \"within-tiers\"\n"), TableKind::Shipped).is_ok()
    );
    // An override that does not say keeps to the AWS bill's way.
    assert!(PriceTable::parse("t.toml", &allowance(""), TableKind::Override).is_ok());
}
