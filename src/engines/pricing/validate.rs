//! From the raw shape of a file to a [`PriceTable`], or to every problem found in it.
//!
//! Validation does not stop at the first problem: `egressor pricing validate` should show a user all
//! that is wrong in one run. It does stop before building anything half-checked: any problem means
//! no table. Positions are 1-based line and column (in characters) of the offending value, computed
//! from the byte spans toml hands back.

use super::schema::{
    PriceText, QuantityText, RawAlias, RawAllowance, RawCidr, RawHourly, RawRate, RawTable, RawTier,
    SpannedList,
};
use super::{
    Alias, AllowanceEntry, AllowancePosition, AllowanceScope, Category, CidrRule, DestinationUse,
    FreeAllowance, HourlyCharge, HourlyEntry, HourlyKind, Origin, Payer, PriceTable, Provider, Rate,
    RateEntry, Selector, TableKind, Tier, TierAccumulation, Unit,
};
use ipnet::IpNet;
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::Path;
use toml::Spanned;

/// One thing wrong in a price file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    /// Dotted path of the offending field, e.g. `rate[3].tiers[1].from`; empty when unknown.
    pub field: String,
    /// What is wrong and what was expected.
    pub message: String,
}

pub(super) fn parse_table(path: &Path, text: &str, kind: TableKind) -> Result<PriceTable, Vec<Problem>> {
    let raw: RawTable = toml::from_str(text).map_err(|e| vec![syntax_problem(text, &e)])?;
    let mut checker = Checker { text, path: path.display().to_string(), kind, problems: Vec::new() };
    let table = checker.table(raw);
    match table {
        Some(table) if checker.problems.is_empty() => Ok(table),
        _ => Err(checker.problems),
    }
}

/// Every problem of a file as `FILE:LINE:COLUMN: FIELD: MESSAGE`, one a line: how the topology and
/// policy errors print them.
pub(crate) fn at_positions(path: &Path, problems: &[Problem]) -> String {
    let at = |p: &Problem| {
        let field = if p.field.is_empty() { String::new() } else { format!("{}: ", p.field) };
        format!("{}:{}:{}: {field}{}", path.display(), p.line, p.column, p.message)
    };
    problems.iter().map(at).collect::<Vec<_>>().join("\n")
}

pub(crate) fn syntax_problem(text: &str, e: &toml::de::Error) -> Problem {
    let span = e.span().unwrap_or(0..0);
    let (line, column) = line_col(text, span.start);
    // toml does not expose the key path of a type error, but the key is on the same line as the
    // value in every layout a price file uses.
    let line_text = text.lines().nth(line - 1).unwrap_or("");
    let field = line_text.split_once('=').map(|(k, _)| k.trim().to_string()).unwrap_or_default();
    Problem { line, column, field, message: e.message().trim_end().to_string() }
}

pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

struct Checker<'a> {
    text: &'a str,
    path: String,
    kind: TableKind,
    problems: Vec<Problem>,
}

/// File-wide facts every entry is checked against.
struct Header {
    provider: Provider,
    as_of: String,
    currency: String,
    unit: Unit,
    groups: BTreeMap<String, Vec<String>>,
}

type DupKey = (String, Option<String>, String, String);

impl Checker<'_> {
    fn at(&mut self, span: Range<usize>, field: impl Into<String>, message: impl Into<String>) {
        let (line, column) = line_col(self.text, span.start);
        self.problems.push(Problem { line, column, field: field.into(), message: message.into() });
    }

    fn line_of(&self, span: &Range<usize>) -> usize {
        line_col(self.text, span.start).0
    }

    fn table(&mut self, raw: RawTable) -> Option<PriceTable> {
        let provider = self.header_enum(
            &raw.provider,
            "provider",
            Provider::parse,
            Provider::names(),
            "provider = \"aws\"",
        );
        let as_of = self.as_of(&raw.as_of);
        let currency = self.currency(&raw.currency);
        let unit = self.header_enum(&raw.unit, "unit", Unit::parse, Unit::names(), "unit = \"GiB\"");
        let tier_accumulation = raw.tier_accumulation.as_ref().and_then(|v| {
            let parsed = TierAccumulation::parse(v.get_ref());
            if parsed.is_none() {
                self.at(
                    v.span(),
                    "tier_accumulation",
                    format!(
                        "unknown tier_accumulation `{}`; expected one of {}",
                        v.get_ref(),
                        TierAccumulation::names()
                    ),
                );
            }
            parsed
        });
        let groups = self.groups(&raw.region_groups);

        // Entry checks do not depend on header values, so a bad header does not stop them: the
        // placeholders below only fill entries of a table that is then discarded.
        let header_ok = provider.is_some() && as_of.is_some() && currency.is_some() && unit.is_some();
        let header = Header {
            provider: provider.unwrap_or(Provider::Aws),
            as_of: as_of.unwrap_or_default(),
            currency: currency.unwrap_or_default(),
            unit: unit.unwrap_or(Unit::GiB),
            groups,
        };

        let aliases = self.aliases(&raw.priced_as, &raw.rate);
        let mut seen_rates: HashMap<DupKey, usize> = HashMap::new();
        let rates = raw
            .rate
            .iter()
            .enumerate()
            .filter_map(|(i, r)| self.rate(i, r, &header, &mut seen_rates))
            .collect();
        let mut seen_hourly: HashMap<(String, String), usize> = HashMap::new();
        let hourly = raw
            .hourly
            .iter()
            .enumerate()
            .filter_map(|(i, h)| self.hourly(i, h, &header, &mut seen_hourly))
            .collect();
        let allowances = self.allowances(&raw.free_allowance);
        let cidr_rules = self.cidr_rules(&raw.cidr, &header);

        header_ok.then(|| PriceTable {
            path: self.path.clone(),
            kind: self.kind,
            provider: header.provider,
            provider_at: raw.provider.as_ref().map_or((1, 1), |p| line_col(self.text, p.span().start)),
            currency_at: raw.currency.as_ref().map_or((1, 1), |c| line_col(self.text, c.span().start)),
            as_of: header.as_of,
            currency: header.currency,
            tier_accumulation,
            rates,
            hourly,
            allowances,
            aliases,
            cidr_rules,
        })
    }

    fn header_enum<T>(
        &mut self,
        value: &Option<Spanned<String>>,
        field: &str,
        parse: fn(&str) -> Option<T>,
        names: String,
        example: &str,
    ) -> Option<T> {
        let Some(value) = value else {
            self.at(0..0, field, format!("missing `{field}`; expected one of {names}, e.g. {example}"));
            return None;
        };
        let parsed = parse(value.get_ref());
        if parsed.is_none() {
            self.at(
                value.span(),
                field,
                format!("unknown {field} `{}`; expected one of {names}", value.get_ref()),
            );
        }
        parsed
    }

    fn as_of(&mut self, value: &Option<Spanned<String>>) -> Option<String> {
        let Some(value) = value else {
            self.at(0..0, "as_of", "missing `as_of`; every price file states when its prices were checked, e.g. as_of = \"2026-11-01\"");
            return None;
        };
        let s = value.get_ref();
        if is_date(s) {
            Some(s.clone())
        } else {
            self.at(
                value.span(),
                "as_of",
                format!("as_of `{s}` is not a date; expected \"YYYY-MM-DD\" or \"YYYY-MM\""),
            );
            None
        }
    }

    fn currency(&mut self, value: &Option<Spanned<String>>) -> Option<String> {
        let Some(value) = value else {
            self.at(
                0..0,
                "currency",
                "missing `currency`; expected an ISO 4217 code, e.g. currency = \"USD\"",
            );
            return None;
        };
        let s = value.get_ref();
        if s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase()) {
            Some(s.clone())
        } else {
            self.at(
                value.span(),
                "currency",
                format!("currency `{s}` is not an ISO 4217 code such as \"USD\""),
            );
            None
        }
    }

    /// Region groups must be disjoint: a region in two groups would make "the price of this region"
    /// depend on which group an entry happened to name.
    fn groups(&mut self, raw: &BTreeMap<String, SpannedList>) -> BTreeMap<String, Vec<String>> {
        let mut owner: HashMap<String, String> = HashMap::new();
        let mut groups = BTreeMap::new();
        for (name, list) in raw {
            let field = format!("region_groups.{name}");
            if !is_name(name) {
                self.at(
                    list.span(),
                    &field,
                    format!("region group name `{name}` must be lowercase letters, digits and '-'"),
                );
            }
            if list.get_ref().is_empty() {
                self.at(
                    list.span(),
                    &field,
                    format!("region group `{name}` is empty; list at least one region"),
                );
            }
            let mut members = Vec::new();
            for region in list.get_ref() {
                let r = region.get_ref();
                if r == "*" || !is_name(r) {
                    self.at(region.span(), &field, format!("`{r}` in region group `{name}` is not a region name (lowercase letters, digits, '-')"));
                    continue;
                }
                if let Some(other) = owner.get(r) {
                    let message = if other == name {
                        format!("region {r} is listed twice in region group `{name}`")
                    } else {
                        format!(
                            "region {r} is in region groups `{other}` and `{name}`; a region may belong to one group only"
                        )
                    };
                    self.at(region.span(), &field, message);
                    continue;
                }
                owner.insert(r.clone(), name.clone());
                members.push(r.clone());
            }
            groups.insert(name.clone(), members);
        }
        groups
    }

    /// Reads a `regions`/`region_groups` (or `to`/`to_groups`) pair into selectors.
    fn selectors(
        &mut self,
        direct: &Option<SpannedList>,
        via_groups: &Option<SpannedList>,
        groups: &BTreeMap<String, Vec<String>>,
        field: &str,
        (direct_name, groups_name): (&str, &str),
    ) -> Vec<Selector> {
        let mut out: Vec<Selector> = Vec::new();
        for item in direct.iter().flat_map(|l| l.get_ref()) {
            let s = item.get_ref();
            let selector = if s == "*" {
                Selector::Any
            } else if is_name(s) {
                Selector::Region(s.clone())
            } else {
                self.at(
                    item.span(),
                    format!("{field}.{direct_name}"),
                    format!("`{s}` is not a region name (lowercase letters, digits, '-') or \"*\""),
                );
                continue;
            };
            if out.contains(&selector) {
                self.at(item.span(), format!("{field}.{direct_name}"), format!("`{s}` is listed twice"));
                continue;
            }
            out.push(selector);
        }
        for item in via_groups.iter().flat_map(|l| l.get_ref()) {
            let name = item.get_ref();
            match groups.get(name) {
                Some(members) => {
                    let selector = Selector::Group { name: name.clone(), members: members.clone() };
                    if out.contains(&selector) {
                        self.at(
                            item.span(),
                            format!("{field}.{groups_name}"),
                            format!("group `{name}` is listed twice"),
                        );
                    } else {
                        out.push(selector);
                    }
                }
                None => {
                    let known = groups.keys().cloned().collect::<Vec<_>>().join(", ");
                    self.at(
                        item.span(),
                        format!("{field}.{groups_name}"),
                        format!(
                            "unknown region group `{name}`; groups defined in [region_groups]: {}",
                            if known.is_empty() { "none" } else { &known }
                        ),
                    );
                }
            }
        }
        out
    }

    fn source_text(
        &mut self,
        source: &Option<Spanned<String>>,
        entry: Range<usize>,
        field: &str,
        what: &str,
    ) -> Option<String> {
        let given = source.as_ref().map(|s| s.get_ref().trim().to_string()).filter(|s| !s.is_empty());
        match (self.kind, given) {
            (TableKind::Shipped, Some(s)) => Some(s),
            (TableKind::Shipped, None) => {
                let span = source.as_ref().map_or(entry, |s| s.span());
                self.at(span, field, format!("missing `source` for {what}; every shipped price cites where it comes from (a URL or citation, marked \"unverified\" where it is)"));
                None
            }
            (TableKind::Override, Some(s)) => Some(format!("override: {} ({s})", self.path)),
            (TableKind::Override, None) => Some(format!("override: {}", self.path)),
        }
    }

    /// A quantity that was written as a float or as text that is not a number is reported here.
    fn quantity(&mut self, q: &Spanned<QuantityText>, field: &str) -> Option<Decimal> {
        match &q.get_ref().0 {
            Ok(v) => Some(*v),
            Err(message) => {
                self.at(q.span(), field, message.clone());
                None
            }
        }
    }

    fn price(&mut self, price: &Spanned<PriceText>, field: &str, what: &str) -> Option<Decimal> {
        let value = match &price.get_ref().0 {
            Ok(v) => *v,
            Err(message) => {
                self.at(price.span(), field, message.clone());
                return None;
            }
        };
        if value.is_sign_negative() && !value.is_zero() {
            self.at(price.span(), field, format!("price for {what} must not be negative; got {value}"));
            return None;
        }
        Some(value)
    }

    fn payer(
        &mut self,
        payer: &Option<Spanned<String>>,
        entry: Range<usize>,
        field: &str,
        what: &str,
    ) -> Option<Payer> {
        let Some(payer) = payer else {
            self.at(entry, field, format!("missing `payer` for {what}; expected one of {}", Payer::names()));
            return None;
        };
        let parsed = Payer::parse(payer.get_ref());
        if parsed.is_none() {
            self.at(
                payer.span(),
                field,
                format!("unknown payer `{}` for {what}; expected one of {}", payer.get_ref(), Payer::names()),
            );
        }
        parsed
    }

    fn variant(&mut self, variant: &Option<Spanned<String>>, field: &str) -> Option<Option<String>> {
        match variant {
            None => Some(None),
            Some(v) if is_name(v.get_ref()) => Some(Some(v.get_ref().clone())),
            Some(v) => {
                self.at(
                    v.span(),
                    field,
                    format!("variant `{}` must be lowercase letters, digits and '-'", v.get_ref()),
                );
                None
            }
        }
    }

    fn rate(
        &mut self,
        i: usize,
        raw: &Spanned<RawRate>,
        header: &Header,
        seen: &mut HashMap<DupKey, usize>,
    ) -> Option<RateEntry> {
        let entry = raw.span();
        let field = format!("rate[{i}]");
        let r = raw.get_ref();
        let category = self.category(&r.category, entry.clone(), &field)?;
        let variant = self.variant(&r.variant, &format!("{field}.variant"));
        let sources = self.selectors(
            &r.regions,
            &r.region_groups,
            &header.groups,
            &field,
            ("regions", "region_groups"),
        );
        if sources.is_empty() && r.regions.is_none() && r.region_groups.is_none() {
            self.at(
                entry.clone(),
                &field,
                format!(
                    "{category} entry names no region; give `regions` (\"*\" for all) or `region_groups`"
                ),
            );
        }
        let what = entry_label(category, variant.as_ref().and_then(|v| v.as_deref()), &sources);

        let has_to = r.to.is_some() || r.to_groups.is_some();
        let dests = match category.destination_use() {
            DestinationUse::None if has_to => {
                let span = r.to.as_ref().or(r.to_groups.as_ref()).map(|t| t.span()).unwrap_or(entry.clone());
                self.at(
                    span,
                    format!("{field}.to"),
                    format!("`to` is not used for {category}: its price does not depend on the destination"),
                );
                vec![Selector::Any]
            }
            DestinationUse::Required if !has_to => {
                self.at(
                    entry.clone(),
                    format!("{field}.to"),
                    format!("{what} needs `to` (destination regions, or \"*\") or `to_groups`"),
                );
                vec![]
            }
            DestinationUse::Optional if !has_to => vec![Selector::Any],
            DestinationUse::None => vec![Selector::Any],
            _ => self.selectors(&r.to, &r.to_groups, &header.groups, &field, ("to", "to_groups")),
        };

        let payer = self.payer(&r.payer, entry.clone(), &format!("{field}.payer"), &what);
        let tiers = match (&r.price, &r.tiers) {
            (Some(_), Some(tiers)) => {
                self.at(tiers.span(), format!("{field}.tiers"), format!("{what} has both `price` and `tiers`; give `price` for a flat rate or `tiers`, not both"));
                None
            }
            (Some(price), None) => self
                .price(price, &format!("{field}.price"), &what)
                .map(|price| vec![Tier { from_units: Decimal::ZERO, to_units: None, price }]),
            (None, Some(tiers)) => self.tiers(tiers, &field, &what),
            (None, None) => {
                self.at(entry.clone(), &field, format!("{what} has no `price` or `tiers`"));
                None
            }
        };
        let source = self.source_text(&r.source, entry.clone(), &format!("{field}.source"), &what);

        let variant = variant?;
        for s in &sources {
            for d in &dests {
                let key = (category.as_str().to_string(), variant.clone(), s.label(), d.label());
                if let Some(line) = seen.get(&key) {
                    let to = if category.destination_use() == DestinationUse::None {
                        String::new()
                    } else {
                        format!(" to {}", d.label())
                    };
                    self.at(
                        entry.clone(),
                        &field,
                        format!("{} from {}{to} is already priced at line {line}; entries of one file must not overlap", entry_label(category, variant.as_deref(), &[]), s.label()),
                    );
                } else {
                    seen.insert(key, self.line_of(&entry));
                }
            }
        }
        let rate = Rate {
            provider: header.provider,
            category,
            variant,
            tiers: tiers?,
            payer: payer?,
            unit: header.unit,
            currency: header.currency.clone(),
            free: None,
            source: source?,
            as_of: header.as_of.clone(),
            origin: Origin { file: self.path.clone(), line: self.line_of(&entry) },
        };
        (!sources.is_empty() && !dests.is_empty()).then_some(RateEntry { sources, dests, rate, layer: 0 })
    }

    fn category(
        &mut self,
        category: &Option<Spanned<String>>,
        entry: Range<usize>,
        field: &str,
    ) -> Option<Category> {
        let Some(c) = category else {
            self.at(
                entry,
                format!("{field}.category"),
                format!("missing `category`; expected one of {}", Category::names()),
            );
            return None;
        };
        let parsed = Category::parse(c.get_ref());
        if parsed.is_none() {
            self.at(
                c.span(),
                format!("{field}.category"),
                format!("unknown category `{}`; expected one of {}", c.get_ref(), Category::names()),
            );
        }
        parsed
    }

    /// Tiers are written by their lower bound (like the AWS price list's `beginRange`), so they are
    /// contiguous by construction; what can go wrong is the order and the start.
    fn tiers(
        &mut self,
        tiers: &Spanned<Vec<Spanned<RawTier>>>,
        field: &str,
        what: &str,
    ) -> Option<Vec<Tier>> {
        if tiers.get_ref().is_empty() {
            self.at(
                tiers.span(),
                format!("{field}.tiers"),
                format!("tiers for {what} are empty; give at least one {{ from = 0, price = \"...\" }}"),
            );
            return None;
        }
        let mut out: Vec<Tier> = Vec::new();
        let mut ok = true;
        for (j, tier) in tiers.get_ref().iter().enumerate() {
            let tier_field = format!("{field}.tiers[{j}]");
            let RawTier { from, price } = tier.get_ref();
            let (Some(from), Some(price)) = (from, price) else {
                self.at(
                    tier.span(),
                    &tier_field,
                    format!("each tier for {what} needs `from` (units) and `price`"),
                );
                ok = false;
                continue;
            };
            // Both halves are checked before giving up on the tier, so each gets its own report.
            let from_units = self.quantity(from, &format!("{tier_field}.from"));
            let price = self.price(price, &format!("{tier_field}.price"), what);
            let (Some(from_units), Some(price)) = (from_units, price) else {
                ok = false;
                continue;
            };
            match out.last() {
                None if !from_units.is_zero() => {
                    self.at(
                        from.span(),
                        format!("{tier_field}.from"),
                        format!("tiers for {what} must start at 0 and be increasing; got {from_units} first"),
                    );
                    ok = false;
                }
                Some(prev) if from_units <= prev.from_units => {
                    self.at(
                        from.span(),
                        format!("{tier_field}.from"),
                        format!(
                            "tiers for {what} must start at 0 and be increasing; got {from_units} after {}",
                            prev.from_units
                        ),
                    );
                    ok = false;
                }
                _ => {}
            }
            if let Some(prev) = out.last_mut() {
                prev.to_units = Some(from_units);
            }
            out.push(Tier { from_units, to_units: None, price });
        }
        ok.then_some(out)
    }

    fn hourly(
        &mut self,
        i: usize,
        raw: &Spanned<RawHourly>,
        header: &Header,
        seen: &mut HashMap<(String, String), usize>,
    ) -> Option<HourlyEntry> {
        let entry = raw.span();
        let field = format!("hourly[{i}]");
        let h = raw.get_ref();
        let kind = match &h.kind {
            None => {
                self.at(
                    entry.clone(),
                    format!("{field}.kind"),
                    format!("missing `kind`; expected one of {}", HourlyKind::names()),
                );
                None
            }
            Some(k) => {
                let parsed = HourlyKind::parse(k.get_ref());
                if parsed.is_none() {
                    self.at(
                        k.span(),
                        format!("{field}.kind"),
                        format!(
                            "unknown hourly kind `{}`; expected one of {}",
                            k.get_ref(),
                            HourlyKind::names()
                        ),
                    );
                }
                parsed
            }
        };
        let kind_name = kind.map_or("hourly charge", |k| k.as_str());
        let sources = self.selectors(
            &h.regions,
            &h.region_groups,
            &header.groups,
            &field,
            ("regions", "region_groups"),
        );
        if sources.is_empty() && h.regions.is_none() && h.region_groups.is_none() {
            self.at(
                entry.clone(),
                &field,
                format!(
                    "{kind_name} entry names no region; give `regions` (\"*\" for all) or `region_groups`"
                ),
            );
        }
        let what = format!("{kind_name} in {}", short_label(&sources));
        let price = match &h.price {
            Some(p) => self.price(p, &format!("{field}.price"), &what),
            None => {
                self.at(entry.clone(), format!("{field}.price"), format!("missing `price` for {what}"));
                None
            }
        };
        let per = match &h.per {
            Some(p) if is_name(p.get_ref()) => Some(p.get_ref().clone()),
            Some(p) => {
                self.at(
                    p.span(),
                    format!("{field}.per"),
                    format!(
                        "`per` for {what} must be a short name such as \"gateway\"; got `{}`",
                        p.get_ref()
                    ),
                );
                None
            }
            None => {
                self.at(entry.clone(), format!("{field}.per"), format!("missing `per` for {what}: what one billed hour counts (gateway, attachment, endpoint-az, vm, address)"));
                None
            }
        };
        let max_quantity = match &h.max_quantity {
            None => Some(None),
            Some(m) => match self.quantity(m, &format!("{field}.max_quantity")) {
                Some(v) if v <= Decimal::ZERO => {
                    self.at(
                        m.span(),
                        format!("{field}.max_quantity"),
                        format!("max_quantity for {what} must be positive; got {v}"),
                    );
                    None
                }
                Some(v) => Some(Some(v)),
                None => None,
            },
        };
        let source = self.source_text(&h.source, entry.clone(), &format!("{field}.source"), &what);
        let kind = kind?;
        for s in &sources {
            let key = (kind.as_str().to_string(), s.label());
            if let Some(line) = seen.get(&key) {
                self.at(
                    entry.clone(),
                    &field,
                    format!("{kind} in {} is already priced at line {line}", s.label()),
                );
            } else {
                seen.insert(key, self.line_of(&entry));
            }
        }
        let charge = HourlyCharge {
            provider: header.provider,
            kind,
            price: price?,
            per: per?,
            max_quantity: max_quantity?,
            currency: header.currency.clone(),
            source: source?,
            as_of: header.as_of.clone(),
            origin: Origin { file: self.path.clone(), line: self.line_of(&entry) },
        };
        (!sources.is_empty()).then_some(HourlyEntry { sources, charge, layer: 0 })
    }

    fn allowances(&mut self, raw: &[Spanned<RawAllowance>]) -> Vec<AllowanceEntry> {
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut keys: HashMap<(Category, Option<String>), usize> = HashMap::new();
        let mut out = Vec::new();
        for (i, item) in raw.iter().enumerate() {
            let entry = item.span();
            let field = format!("free_allowance[{i}]");
            let a = item.get_ref();
            let name = match &a.name {
                Some(n) if is_name(n.get_ref()) => {
                    if let Some(line) = names.get(n.get_ref()) {
                        self.at(
                            n.span(),
                            format!("{field}.name"),
                            format!("free allowance `{}` is already defined at line {line}", n.get_ref()),
                        );
                    }
                    names.insert(n.get_ref().clone(), self.line_of(&entry));
                    Some(n.get_ref().clone())
                }
                Some(n) => {
                    self.at(
                        n.span(),
                        format!("{field}.name"),
                        format!(
                            "free allowance name `{}` must be lowercase letters, digits and '-'",
                            n.get_ref()
                        ),
                    );
                    None
                }
                None => {
                    self.at(
                        entry.clone(),
                        format!("{field}.name"),
                        "missing `name`: usage of allowances with one name is pooled",
                    );
                    None
                }
            };
            let category = self.category(&a.category, entry.clone(), &field);
            let variant = self.variant(&a.variant, &format!("{field}.variant"));
            let what = format!("free allowance {}", name.as_deref().unwrap_or("?"));
            let units = match &a.units {
                Some(u) => match self.quantity(u, &format!("{field}.units")) {
                    Some(v) if v.is_sign_negative() && !v.is_zero() => {
                        self.at(
                            u.span(),
                            format!("{field}.units"),
                            format!("units of {what} must not be negative; got {v}"),
                        );
                        None
                    }
                    v => v,
                },
                None => {
                    self.at(entry.clone(), format!("{field}.units"), format!("missing `units` for {what}"));
                    None
                }
            };
            if let Some(p) = &a.period
                && p.get_ref() != "month"
            {
                self.at(
                    p.span(),
                    format!("{field}.period"),
                    format!("period `{}` of {what} is not supported; expected \"month\"", p.get_ref()),
                );
            }
            let scope = match &a.scope {
                Some(s) => {
                    let parsed = AllowanceScope::parse(s.get_ref());
                    if parsed.is_none() {
                        self.at(
                            s.span(),
                            format!("{field}.scope"),
                            format!(
                                "unknown scope `{}` for {what}; expected one of {}",
                                s.get_ref(),
                                AllowanceScope::names()
                            ),
                        );
                    }
                    parsed
                }
                None => {
                    self.at(
                        entry.clone(),
                        format!("{field}.scope"),
                        format!("missing `scope` for {what}; expected one of {}", AllowanceScope::names()),
                    );
                    None
                }
            };
            let position = match &a.position {
                Some(p) => {
                    let parsed = AllowancePosition::parse(p.get_ref());
                    if parsed.is_none() {
                        self.at(
                            p.span(),
                            format!("{field}.position"),
                            format!(
                                "unknown position `{}` for {what}; expected one of {} (where the free units sit on the tier ladder)",
                                p.get_ref(),
                                AllowancePosition::names()
                            ),
                        );
                    }
                    parsed
                }
                // An override that does not say keeps to the way AWS's bill reads.
                None if self.kind == TableKind::Override => Some(AllowancePosition::BeforeTiers),
                None => {
                    self.at(
                        entry.clone(),
                        format!("{field}.position"),
                        format!(
                            "missing `position` for {what}; expected one of {}: whether the first tier's boundary counts the free units (within-tiers) or only paid ones (before-tiers, as AWS bills)",
                            AllowancePosition::names()
                        ),
                    );
                    None
                }
            };
            let source = self.source_text(&a.source, entry.clone(), &format!("{field}.source"), &what);
            let (
                Some(name),
                Some(category),
                Some(variant),
                Some(units),
                Some(scope),
                Some(position),
                Some(source),
            ) = (name, category, variant, units, scope, position, source)
            else {
                continue;
            };
            if let Some(line) = keys.get(&(category, variant.clone())) {
                self.at(
                    entry.clone(),
                    &field,
                    format!(
                        "{category} already has a free allowance at line {line}; one per category and variant"
                    ),
                );
                continue;
            }
            keys.insert((category, variant.clone()), self.line_of(&entry));
            out.push(AllowanceEntry {
                category,
                variant,
                allowance: FreeAllowance { name, units, scope, position, source },
                layer: 0,
            });
        }
        out
    }

    fn aliases(&mut self, raw: &[Spanned<RawAlias>], rates: &[Spanned<RawRate>]) -> Vec<Alias> {
        let mut out: Vec<(Alias, Range<usize>)> = Vec::new();
        for (i, item) in raw.iter().enumerate() {
            let entry = item.span();
            let field = format!("priced_as[{i}]");
            let a = item.get_ref();
            let category = self.category(&a.category, entry.clone(), &field);
            let as_category = match &a.as_category {
                Some(c) => {
                    let parsed = Category::parse(c.get_ref());
                    if parsed.is_none() {
                        self.at(
                            c.span(),
                            format!("{field}.as"),
                            format!(
                                "unknown category `{}`; expected one of {}",
                                c.get_ref(),
                                Category::names()
                            ),
                        );
                    }
                    parsed
                }
                None => {
                    self.at(
                        entry.clone(),
                        format!("{field}.as"),
                        "missing `as`: the category whose rates apply",
                    );
                    None
                }
            };
            let source =
                self.source_text(&a.source, entry.clone(), &format!("{field}.source"), "priced_as entry");
            let (Some(category), Some(as_category), Some(_)) = (category, as_category, source) else {
                continue;
            };
            if category == as_category {
                self.at(entry, &field, format!("{category} cannot be priced as itself"));
                continue;
            }
            if out.iter().any(|(a, _)| a.category == category) {
                self.at(entry, &field, format!("{category} already has a priced_as entry"));
                continue;
            }
            if let Some(rate) = rates
                .iter()
                .find(|r| r.get_ref().category.as_ref().is_some_and(|c| c.get_ref() == category.as_str()))
            {
                let line = self.line_of(&rate.span());
                self.at(
                    entry,
                    &field,
                    format!("{category} has its own rates (line {line}) and a priced_as entry; keep one"),
                );
                continue;
            }
            out.push((Alias { category, as_category }, entry));
        }
        // A chain would make the price depend on lookup order.
        for (alias, span) in &out {
            if out.iter().any(|(other, _)| other.category == alias.as_category) {
                self.at(span.clone(), "priced_as", format!("{} is priced as {}, which is itself priced as another category; point at the final category", alias.category, alias.as_category));
            }
        }
        out.into_iter().map(|(a, _)| a).collect()
    }

    fn cidr_rules(&mut self, raw: &[Spanned<RawCidr>], header: &Header) -> Vec<CidrRule> {
        let mut seen: HashMap<IpNet, usize> = HashMap::new();
        let mut out = Vec::new();
        for (i, item) in raw.iter().enumerate() {
            let entry = item.span();
            let field = format!("cidr[{i}]");
            if self.kind == TableKind::Shipped {
                self.at(
                    entry,
                    &field,
                    "[[cidr]] rules belong in a user override file, not in a shipped table",
                );
                continue;
            }
            let c = item.get_ref();
            let net = match &c.cidr {
                None => {
                    self.at(
                        entry.clone(),
                        format!("{field}.cidr"),
                        "missing `cidr`, e.g. cidr = \"203.0.113.0/24\"",
                    );
                    None
                }
                Some(s) => match s.get_ref().parse::<IpNet>() {
                    Ok(net) if net.trunc() != net => {
                        self.at(
                            s.span(),
                            format!("{field}.cidr"),
                            format!("{net} has host bits set; write the network, {}", net.trunc()),
                        );
                        None
                    }
                    Ok(net) => {
                        if let Some(line) = seen.get(&net) {
                            self.at(
                                s.span(),
                                format!("{field}.cidr"),
                                format!("{net} already has a rule at line {line}"),
                            );
                        }
                        seen.insert(net, self.line_of(&entry));
                        Some(net)
                    }
                    Err(_) => {
                        self.at(
                            s.span(),
                            format!("{field}.cidr"),
                            format!(
                                "`{}` is not a CIDR such as \"203.0.113.0/24\" or \"2001:db8::/32\"",
                                s.get_ref()
                            ),
                        );
                        None
                    }
                },
            };
            let what = format!("cidr {}", net.map_or("?".to_string(), |n| n.to_string()));
            let price = match &c.price {
                Some(p) => self.price(p, &format!("{field}.price"), &what),
                None => {
                    self.at(entry.clone(), format!("{field}.price"), format!("missing `price` for {what}"));
                    None
                }
            };
            let reason = match &c.reason {
                Some(r) if !r.get_ref().trim().is_empty() => Some(r.get_ref().trim().to_string()),
                _ => {
                    self.at(
                        entry.clone(),
                        format!("{field}.reason"),
                        format!("missing `reason` for {what}: say why this range is priced differently"),
                    );
                    None
                }
            };
            let payer = match &c.payer {
                None => Some(Payer::Source),
                some => self.payer(some, entry.clone(), &format!("{field}.payer"), &what),
            };
            let (Some(net), Some(price), Some(reason), Some(payer)) = (net, price, reason, payer) else {
                continue;
            };
            let citation =
                c.source.as_ref().map_or(reason.clone(), |s| format!("{reason}; {}", s.get_ref().trim()));
            out.push(CidrRule {
                provider: header.provider,
                net,
                price,
                unit: header.unit,
                payer,
                reason,
                currency: header.currency.clone(),
                source: format!("override: {} ({citation})", self.path),
                as_of: header.as_of.clone(),
                origin: Origin { file: self.path.clone(), line: self.line_of(&entry) },
            });
        }
        out
    }
}

/// "internet-egress (standard-tier) in us-east-1": how messages name an entry.
fn entry_label(category: Category, variant: Option<&str>, sources: &[Selector]) -> String {
    let variant = variant.map(|v| format!(" ({v})")).unwrap_or_default();
    if sources.is_empty() {
        format!("{category}{variant}")
    } else {
        format!("{category}{variant} in {}", short_label(sources))
    }
}

fn short_label(sources: &[Selector]) -> String {
    let labels: Vec<String> = sources.iter().map(Selector::label).collect();
    match labels.len() {
        0 => "no region".to_string(),
        1..=3 => labels.join(", "),
        n => format!("{} and {} more", labels[..2].join(", "), n - 2),
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn is_date(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let digits = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_digit());
    let month_ok = |p: &str| digits(p, 2) && (1..=12).contains(&p.parse::<u32>().unwrap_or(0));
    match parts.as_slice() {
        [y, m] => digits(y, 4) && month_ok(m),
        [y, m, d] => {
            digits(y, 4) && month_ok(m) && digits(d, 2) && (1..=31).contains(&d.parse::<u32>().unwrap_or(0))
        }
        _ => false,
    }
}
