//! The shape of a price file exactly as written, before any checking.
//!
//! Everything is optional and spanned so that validation, not serde, decides what is missing and can
//! point at the line where it should have been. Only two checks happen here, because they must happen
//! while the TOML value is still a value: money and quantities are never read through a float.

use rust_decimal::Decimal;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use toml::Spanned;

pub(super) type SpannedList = Spanned<Vec<Spanned<String>>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTable {
    pub provider: Option<Spanned<String>>,
    pub as_of: Option<Spanned<String>>,
    pub currency: Option<Spanned<String>>,
    pub unit: Option<Spanned<String>>,
    pub tier_accumulation: Option<Spanned<String>>,
    #[serde(default)]
    pub region_groups: BTreeMap<String, SpannedList>,
    #[serde(default)]
    pub priced_as: Vec<Spanned<RawAlias>>,
    #[serde(default)]
    pub free_allowance: Vec<Spanned<RawAllowance>>,
    #[serde(default)]
    pub rate: Vec<Spanned<RawRate>>,
    #[serde(default)]
    pub hourly: Vec<Spanned<RawHourly>>,
    #[serde(default)]
    pub cidr: Vec<Spanned<RawCidr>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRate {
    pub category: Option<Spanned<String>>,
    pub variant: Option<Spanned<String>>,
    pub regions: Option<SpannedList>,
    pub region_groups: Option<SpannedList>,
    pub to: Option<SpannedList>,
    pub to_groups: Option<SpannedList>,
    pub payer: Option<Spanned<String>>,
    pub price: Option<Spanned<PriceText>>,
    pub tiers: Option<Spanned<Vec<Spanned<RawTier>>>>,
    pub source: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTier {
    pub from: Option<Spanned<QuantityText>>,
    pub price: Option<Spanned<PriceText>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHourly {
    pub kind: Option<Spanned<String>>,
    pub regions: Option<SpannedList>,
    pub region_groups: Option<SpannedList>,
    pub price: Option<Spanned<PriceText>>,
    pub per: Option<Spanned<String>>,
    pub max_quantity: Option<Spanned<QuantityText>>,
    pub source: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAllowance {
    pub name: Option<Spanned<String>>,
    pub category: Option<Spanned<String>>,
    pub variant: Option<Spanned<String>>,
    pub units: Option<Spanned<QuantityText>>,
    pub period: Option<Spanned<String>>,
    pub scope: Option<Spanned<String>>,
    pub position: Option<Spanned<String>>,
    pub source: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlias {
    pub category: Option<Spanned<String>>,
    #[serde(rename = "as")]
    pub as_category: Option<Spanned<String>>,
    pub source: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCidr {
    pub cidr: Option<Spanned<String>>,
    pub price: Option<Spanned<PriceText>>,
    pub payer: Option<Spanned<String>>,
    pub reason: Option<Spanned<String>>,
    pub source: Option<Spanned<String>>,
}

/// A price as written: a quoted decimal or an integer. A TOML float is refused, because `0.1` read as
/// f64 is already wrong money. The refusal is carried to validation as `Err(message)` (the value's
/// span is kept by `Spanned`) rather than failing deserialization, so one run reports every problem.
#[derive(Debug, Clone)]
pub(super) struct PriceText(pub Result<Decimal, String>);

/// A quantity of units (tier boundary, allowance, cap). Same rule as prices: no floats, so that
/// boundaries compare exactly against metered bytes.
#[derive(Debug, Clone)]
pub(super) struct QuantityText(pub Result<Decimal, String>);

struct ExactDecimal {
    what: &'static str,
}

impl<'de> Visitor<'de> for ExactDecimal {
    type Value = Result<Decimal, String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a {} as a quoted decimal string, e.g. \"0.09\"", self.what)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Decimal::from_str(v.trim()).map_err(|_| {
            format!(
                "`{v}` is not a decimal number; write the {} as a quoted decimal, e.g. \"0.09\"",
                self.what
            )
        }))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Ok(Decimal::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Ok(Decimal::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Err(format!(
            "{} {v} is a TOML float; quote it (\"{v}\") so it is read as an exact decimal, not a binary float",
            self.what
        )))
    }
}

impl<'de> Deserialize<'de> for PriceText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ExactDecimal { what: "price" }).map(PriceText)
    }
}

/// An amount of money outside a price table (a policy's budget): same rule, no floats.
#[derive(Debug, Clone)]
pub(crate) struct AmountText(pub Result<Decimal, String>);

impl<'de> Deserialize<'de> for AmountText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ExactDecimal { what: "amount" }).map(AmountText)
    }
}

impl<'de> Deserialize<'de> for QuantityText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ExactDecimal { what: "quantity" }).map(QuantityText)
    }
}
