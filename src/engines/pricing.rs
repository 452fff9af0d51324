//! Data-transfer prices: the versioned tables in `pricing/*.toml`, user overrides, and the lookups the
//! cost engine makes.
//!
//! Why a module of its own: a cost line is only as good as the price behind it, and peers get this
//! wrong in ways that are invisible in their output (one flat $/GiB, the sender's side only, no tiers,
//! no free allowance). Here every price carries its tiers, which side pays, the byte size of its unit,
//! its free allowance, its citation and the file and line it came from, so that each cost line can
//! explain itself and a user can check or override any number.
//!
//! Flow: `*.toml` text -> [`PriceTable::parse`] (TOML with spans, then validation that collects every
//! problem with `file:line:col`) -> [`PriceBook::from_tables`] -> [`PriceBook::with_override`] for each
//! user file -> lookups ([`PriceBook::rate`], [`PriceBook::hourly`], [`PriceBook::cidr_rule`]) by the
//! cost engine, and [`PriceBook::describe`] for `egressor pricing show`.
//!
//! Money is `rust_decimal::Decimal` from end to end and is parsed from TOML strings: a TOML float in
//! a price position is an error, because `0.1` as f64 is already not 0.1. The only I/O here is
//! [`PriceTable::load_file`]; everything else is pure, and the same input gives the same book.
//!
//! Lookup precedence, most specific first (documented for users in `pricing/README.md`):
//! a later override file beats an earlier one and any override beats the shipped table; then a region
//! named in `regions` beats one reached through `region_groups`, which beats `"*"`; the same order
//! applies to destinations (`to`, `to_groups`, `"*"`). Validation rejects two entries of one file
//! that tie, so a lookup never depends on file order.

mod schema;
pub(crate) mod validate;

#[cfg(test)]
mod tests;

use ipnet::IpNet;
use rust_decimal::Decimal;
use serde::Serialize;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub(crate) use schema::AmountText;
pub use validate::Problem;

/// The tables that ship inside the binary, with the path they are reported under in errors and in
/// `pricing show`. Embedding them means a released binary can always price, whatever its cwd.
pub const SHIPPED_TABLES: [(&str, &str); 3] = [
    ("pricing/aws.toml", include_str!("../../pricing/aws.toml")),
    ("pricing/gcp.toml", include_str!("../../pricing/gcp.toml")),
    ("pricing/azure.toml", include_str!("../../pricing/azure.toml")),
];

/// Why a price file could not be used. A file with any problem yields no table at all.
#[derive(Debug, thiserror::Error)]
pub enum PricingError {
    #[error("cannot read price file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// One or more problems, each rendered as `file:line:col: message` on its own line.
    #[error("{}", render_problems(path, problems))]
    Invalid { path: PathBuf, problems: Vec<Problem> },
}

fn render_problems(path: &Path, problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("{}:{}:{}: {}", path.display(), p.line, p.column, p.message))
        .collect::<Vec<_>>()
        .join("\n")
}

impl PricingError {
    /// The problems found, empty for a read error. Lets `pricing validate` count and list them.
    pub fn problems(&self) -> &[Problem] {
        match self {
            PricingError::Read { .. } => &[],
            PricingError::Invalid { problems, .. } => problems,
        }
    }
}

macro_rules! kebab_enum {
    ($(#[$meta:meta])* $ty:ident { $($(#[$vmeta:meta])* $variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        pub enum $ty { $($(#[$vmeta])* #[serde(rename = $s)] $variant),+ }
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];
            /// The stable name used in price files, JSON output and on the command line.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $s),+ }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($ty::$variant),)+ _ => None }
            }
            /// Comma-separated names, for help text and error messages.
            pub fn names() -> String {
                Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

kebab_enum!(
    /// A cloud whose prices Egressor knows. One table per provider ships in `pricing/`.
    Provider { Aws => "aws", Gcp => "gcp", Azure => "azure" }
);

kebab_enum!(
    /// What a byte was doing when it was metered: the classifier's answer, priced per unit of data.
    /// Names are stable: they appear in price files, overrides and JSON output.
    Category {
        /// Private traffic between two endpoints in one zone.
        SameZone => "same-zone",
        /// Between zones of one region (AWS cross-AZ, GCP inter-zone, Azure inter-AZ).
        CrossZone => "cross-zone",
        /// Between regions; looked up with the destination region.
        InterRegion => "inter-region",
        /// To the internet; optionally looked up with a destination area (e.g. `china`).
        InternetEgress => "internet-egress",
        /// Into the cloud from anywhere.
        Ingress => "ingress",
        /// Bytes processed by a NAT gateway, on top of whatever the bytes cost beyond it.
        NatProcessing => "nat-processing",
        VpcPeeringSameZone => "vpc-peering-same-zone",
        VpcPeeringCrossZone => "vpc-peering-cross-zone",
        /// Peering across regions; looked up with the destination region.
        VpcPeeringInterRegion => "vpc-peering-inter-region",
        /// Bytes processed by a transit gateway.
        TransitGateway => "transit-gateway",
        /// Bytes processed by an interface endpoint (AWS PrivateLink, Azure Private Link).
        Privatelink => "privatelink",
        /// To S3/DynamoDB through a gateway endpoint (free, and the fix for NAT-routed storage traffic).
        GatewayEndpoint => "gateway-endpoint",
        /// Bytes through a Gateway Load Balancer endpoint.
        GwlbEndpoint => "gwlb-endpoint",
        /// To a public/elastic address of the same region, even from the same zone.
        PublicIpSameRegion => "public-ip-same-region",
        /// Load balancer sending to a target in another zone; variants per balancer type.
        LoadBalancerCrossZone => "load-balancer-cross-zone",
    }
);

/// Whether a category is priced per destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestinationUse {
    /// The price depends on the destination region; a lookup without one finds nothing.
    Required,
    /// A destination area may refine the price; entries without `to` apply to any destination.
    Optional,
    /// The price does not depend on the destination; `to` is an error in a file.
    None,
}

impl Category {
    pub fn destination_use(self) -> DestinationUse {
        match self {
            Category::InterRegion | Category::VpcPeeringInterRegion => DestinationUse::Required,
            Category::InternetEgress => DestinationUse::Optional,
            _ => DestinationUse::None,
        }
    }
}

kebab_enum!(
    /// Charges that accrue per hour a resource exists, whatever traffic it carries.
    HourlyKind {
        NatGatewayHour => "nat-gateway-hour",
        /// Per VM using a NAT (GCP Cloud NAT), usually capped by `max_quantity`.
        NatVmHour => "nat-vm-hour",
        TransitGatewayAttachmentHour => "transit-gateway-attachment-hour",
        /// Interface endpoint hour (AWS: per AZ the endpoint is in).
        EndpointHour => "endpoint-hour",
        PublicIpv4Hour => "public-ipv4-hour",
    }
);

kebab_enum!(
    /// Which side of a transfer is billed for it.
    Payer {
        /// The sending side only (internet egress, inter-region on AWS/GCP).
        Source => "source",
        /// The receiving side only.
        Destination => "destination",
        /// Each side is billed the full rate, so one byte costs twice the rate (AWS cross-AZ).
        Both => "both",
        /// The owner of the gateway or endpoint the bytes pass through, once per byte whatever the
        /// direction (NAT, transit gateway, PrivateLink processing). The cost engine charges it to the
        /// workload on the owner's side, not to the remote end.
        Owner => "owner",
    }
);

kebab_enum!(
    /// The byte size of one priced unit. Explicit per file because AWS says "GB" and means 2^30 bytes.
    Unit {
        /// 2^30 = 1,073,741,824 bytes.
        GiB => "GiB",
        /// 10^9 bytes.
        GB => "GB",
    }
);

impl Unit {
    pub fn bytes(self) -> u64 {
        match self {
            Unit::GiB => 1 << 30,
            Unit::GB => 1_000_000_000,
        }
    }
}

kebab_enum!(
    /// Which traffic counts toward one set of monthly tier boundaries. Whether AWS accumulates tiers
    /// across source regions is unverified, so this is a setting (default per source region) that
    /// output must state.
    TierAccumulation {
        PerSourceRegion => "per-source-region",
        /// All regions of the provider (consolidated billing) share one tier ladder.
        Global => "global",
    }
);

kebab_enum!(
    /// Which usage draws from one free allowance.
    AllowanceScope {
        /// One pool per month for the whole provider account, all regions and services together.
        Global => "global",
        PerSourceRegion => "per-source-region",
    }
);

kebab_enum!(
    /// Where a free allowance sits on a tiered price's ladder. AWS's bill reads "$0.09 per GB -
    /// first 10 TB / month data transfer out beyond the global free tier": the free 100 GB come
    /// before the ladder, and the first tier's 10 TB are paid units (`before-tiers`). A provider
    /// whose free units are the first units of the first tier (they count toward its boundary)
    /// says `within-tiers`.
    AllowancePosition {
        BeforeTiers => "before-tiers",
        WithinTiers => "within-tiers",
    }
);

kebab_enum!(
    /// What a file is allowed to contain. An override may omit `source` (it is cited as the file
    /// itself) and may contain `[[cidr]]` rules; a shipped table may not.
    TableKind { Shipped => "shipped", Override => "override" }
);

/// One step of a tiered price: `price` per unit for monthly usage from `from_units` up to
/// `to_units` (exclusive; `None` means no upper bound).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tier {
    pub from_units: Decimal,
    pub to_units: Option<Decimal>,
    pub price: Decimal,
}

/// Units that cost nothing each month before any tier applies.
///
/// Free units are taken from the start of the month's usage in `scope` and still count toward tier
/// boundaries. Usage of allowances with the same `name` is pooled: a global allowance attached to
/// every region's rate is one pool, not one per region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FreeAllowance {
    pub name: String,
    pub units: Decimal,
    pub scope: AllowanceScope,
    /// Where the free units sit on the tier ladder.
    pub position: AllowancePosition,
    pub source: String,
}

/// Where a price was written, for `explain` output and for users hunting a wrong number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub file: String,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// A per-unit price of moving data, as the cost engine needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rate {
    pub provider: Provider,
    pub category: Category,
    /// Alternative product for the same category (`standard-tier`, `isp-routing`, `nlb`); `None` is
    /// the default product.
    pub variant: Option<String>,
    /// At least one tier; the first starts at 0 and the last is unbounded.
    pub tiers: Vec<Tier>,
    pub payer: Payer,
    pub unit: Unit,
    pub currency: String,
    pub free: Option<FreeAllowance>,
    /// Citation; contains "unverified" where the figure is not confirmed (see [`Rate::unverified`]).
    pub source: String,
    pub as_of: String,
    pub origin: Origin,
}

/// The part of a quantity that fell into one tier, with its cost: one line of a cost explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TierSlice {
    /// 0-based position in [`Rate::tiers`].
    pub tier: usize,
    pub units: Decimal,
    pub unit_price: Decimal,
    pub cost: Decimal,
}

impl Rate {
    pub fn unit_bytes(&self) -> u64 {
        self.unit.bytes()
    }

    /// Bytes expressed in this rate's unit. Exact for GB; for GiB, rounded at Decimal's 28th
    /// fractional digit, which is deterministic and far below a cent on any realistic volume.
    pub fn units_for_bytes(&self, bytes: u64) -> Decimal {
        Decimal::from(bytes) / Decimal::from(self.unit.bytes())
    }

    /// Splits `units` of new usage across tiers, given `already_used` units earlier in the same month
    /// and accumulation scope. Free allowance is the caller's to subtract first: its pool may span
    /// regions, which a single rate cannot see.
    pub fn tier_slices(&self, already_used: Decimal, units: Decimal) -> Vec<TierSlice> {
        let mut slices = Vec::new();
        let end = already_used + units;
        for (i, tier) in self.tiers.iter().enumerate() {
            let lo = tier.from_units.max(already_used);
            let hi = match tier.to_units {
                Some(to) => to.min(end),
                None => end,
            };
            if hi > lo {
                let in_tier = hi - lo;
                slices.push(TierSlice {
                    tier: i,
                    units: in_tier,
                    unit_price: tier.price,
                    cost: in_tier * tier.price,
                });
            }
        }
        slices
    }

    /// True when the citation says the figure is not confirmed; views should flag such lines.
    pub fn unverified(&self) -> bool {
        self.source.to_ascii_lowercase().contains("unverified")
    }
}

/// A price per hour a resource exists (per gateway, per attachment, per endpoint AZ, per address...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HourlyCharge {
    pub provider: Provider,
    pub kind: HourlyKind,
    pub price: Decimal,
    /// What one billed hour counts, e.g. `gateway`, `attachment`, `endpoint-az`, `vm`, `address`.
    pub per: String,
    /// Above this many `per` items the hourly charge stops growing (GCP Cloud NAT: 32 VMs).
    pub max_quantity: Option<Decimal>,
    pub currency: String,
    pub source: String,
    pub as_of: String,
    pub origin: Origin,
}

impl HourlyCharge {
    pub fn unverified(&self) -> bool {
        self.source.to_ascii_lowercase().contains("unverified")
    }
}

/// A user rule: traffic whose remote address is in `net` costs `price` per unit, replacing whatever
/// the classifier's category would cost (a Direct Connect range, a free partner network...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CidrRule {
    pub provider: Provider,
    #[serde(serialize_with = "serialize_display")]
    pub net: IpNet,
    pub price: Decimal,
    pub unit: Unit,
    pub payer: Payer,
    pub reason: String,
    pub currency: String,
    pub source: String,
    pub as_of: String,
    pub origin: Origin,
}

fn serialize_display<S: serde::Serializer, T: fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// Which sources or destinations an entry covers. Ordered by specificity for lookups.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Selector {
    Region(String),
    Group { name: String, members: Vec<String> },
    Any,
}

impl Selector {
    /// Higher is more specific; `None` when the selector does not cover `region`.
    fn score(&self, region: &str) -> Option<u8> {
        match self {
            Selector::Region(r) if r == region => Some(3),
            Selector::Group { members, .. } if members.iter().any(|m| m == region) => Some(2),
            Selector::Any => Some(1),
            _ => None,
        }
    }

    fn label(&self) -> String {
        match self {
            Selector::Region(r) => r.clone(),
            Selector::Group { name, .. } => format!("group {name}"),
            Selector::Any => "*".to_string(),
        }
    }
}

fn best_score(selectors: &[Selector], region: &str) -> Option<u8> {
    selectors.iter().filter_map(|s| s.score(region)).max()
}

fn selectors_label(selectors: &[Selector]) -> String {
    selectors.iter().map(Selector::label).collect::<Vec<_>>().join(", ")
}

#[derive(Debug, Clone)]
struct RateEntry {
    pub sources: Vec<Selector>,
    /// `[Any]` for categories without destinations.
    pub dests: Vec<Selector>,
    pub rate: Rate,
    pub layer: usize,
}

#[derive(Debug, Clone)]
struct HourlyEntry {
    pub sources: Vec<Selector>,
    pub charge: HourlyCharge,
    pub layer: usize,
}

#[derive(Debug, Clone)]
struct AllowanceEntry {
    pub category: Category,
    pub variant: Option<String>,
    pub allowance: FreeAllowance,
    pub layer: usize,
}

/// "Bill `category` at `as_category`'s rates": AWS bills inter-region peering as inter-region
/// transfer. Used only when no rate of `category` itself matches.
#[derive(Debug, Clone)]
struct Alias {
    pub category: Category,
    pub as_category: Category,
}

/// A validated price file. Build a [`PriceBook`] from shipped tables, then layer overrides on it.
#[derive(Debug, Clone)]
pub struct PriceTable {
    path: String,
    kind: TableKind,
    provider: Provider,
    provider_at: (usize, usize),
    as_of: String,
    currency: String,
    currency_at: (usize, usize),
    tier_accumulation: Option<TierAccumulation>,
    rates: Vec<RateEntry>,
    hourly: Vec<HourlyEntry>,
    allowances: Vec<AllowanceEntry>,
    aliases: Vec<Alias>,
    cidr_rules: Vec<CidrRule>,
}

impl PriceTable {
    /// Parses and validates one file's text. `path` is only used in messages and citations.
    pub fn parse(path: impl Into<PathBuf>, text: &str, kind: TableKind) -> Result<PriceTable, PricingError> {
        let path = path.into();
        validate::parse_table(&path, text, kind).map_err(|problems| PricingError::Invalid { path, problems })
    }

    /// Reads and parses a file; the only I/O in this module.
    pub fn load_file(path: &Path, kind: TableKind) -> Result<PriceTable, PricingError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| PricingError::Read { path: path.to_path_buf(), source })?;
        Self::parse(path, &text, kind)
    }

    pub fn provider(&self) -> Provider {
        self.provider
    }
    pub fn as_of(&self) -> &str {
        &self.as_of
    }
    pub fn path(&self) -> &str {
        &self.path
    }
    pub fn kind(&self) -> TableKind {
        self.kind
    }
    /// Counts for `pricing validate`'s summary line.
    pub fn counts(&self) -> TableCounts {
        TableCounts {
            rates: self.rates.len(),
            hourly: self.hourly.len(),
            free_allowances: self.allowances.len(),
            cidr_rules: self.cidr_rules.len(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TableCounts {
    pub rates: usize,
    pub hourly: usize,
    pub free_allowances: usize,
    pub cidr_rules: usize,
}

/// A file that contributed to a book, in the order it was applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableInfo {
    pub provider: Provider,
    pub path: String,
    pub kind: TableKind,
    pub as_of: String,
}

#[derive(Debug, Clone)]
struct ProviderPrices {
    currency: String,
    tier_accumulation: TierAccumulation,
    rates: Vec<RateEntry>,
    hourly: Vec<HourlyEntry>,
    allowances: Vec<AllowanceEntry>,
    aliases: Vec<Alias>,
    cidr_rules: Vec<(usize, CidrRule)>,
    layers: usize,
}

/// Every price Egressor will use, per provider, after overrides. Lookups are pure and deterministic.
#[derive(Debug, Clone, Default)]
pub struct PriceBook {
    providers: std::collections::BTreeMap<Provider, ProviderPrices>,
    tables: Vec<TableInfo>,
}

impl PriceBook {
    /// The tables compiled into the binary.
    pub fn shipped() -> Result<PriceBook, PricingError> {
        let tables = SHIPPED_TABLES
            .iter()
            .map(|(path, text)| PriceTable::parse(*path, text, TableKind::Shipped))
            .collect::<Result<Vec<_>, _>>()?;
        PriceBook::from_tables(tables)
    }

    /// One base table per provider. A second table for the same provider is refused: layering is
    /// what [`PriceBook::with_override`] is for, and it records the order.
    pub fn from_tables(tables: Vec<PriceTable>) -> Result<PriceBook, PricingError> {
        let mut book = PriceBook::default();
        for table in tables {
            if book.providers.contains_key(&table.provider) {
                let (line, column) = table.provider_at;
                return Err(invalid(
                    &table.path,
                    line,
                    column,
                    "provider",
                    format!(
                        "a base table for provider {} is already loaded; apply this file as an override",
                        table.provider
                    ),
                ));
            }
            book.tables.push(table_info(&table));
            let prices = ProviderPrices {
                currency: table.currency,
                tier_accumulation: table.tier_accumulation.unwrap_or(TierAccumulation::PerSourceRegion),
                rates: table.rates,
                hourly: table.hourly,
                allowances: table.allowances,
                aliases: table.aliases,
                cidr_rules: table.cidr_rules.into_iter().map(|r| (0, r)).collect(),
                layers: 1,
            };
            book.providers.insert(table.provider, prices);
            book.providers.get_mut(&table.provider).expect("just inserted").attach_allowances();
        }
        Ok(book)
    }

    /// Layers a user's file over the book: any matching entry of it beats every earlier entry, its
    /// prices cite `override: <file>`, and a later override beats an earlier one.
    pub fn with_override(mut self, table: PriceTable) -> Result<PriceBook, PricingError> {
        let info = table_info(&table);
        let Some(prices) = self.providers.get_mut(&table.provider) else {
            let (line, column) = table.provider_at;
            return Err(invalid(
                &table.path,
                line,
                column,
                "provider",
                format!("no base price table for provider {} to override", table.provider),
            ));
        };
        if table.currency != prices.currency {
            let (line, column) = table.currency_at;
            return Err(invalid(
                &table.path,
                line,
                column,
                "currency",
                format!(
                    "override currency {} differs from the base table's {}; convert the prices",
                    table.currency, prices.currency
                ),
            ));
        }
        let layer = prices.layers;
        prices.layers += 1;
        if let Some(acc) = table.tier_accumulation {
            prices.tier_accumulation = acc;
        }
        prices.rates.extend(table.rates.into_iter().map(|e| RateEntry { layer, ..e }));
        prices.hourly.extend(table.hourly.into_iter().map(|e| HourlyEntry { layer, ..e }));
        prices.allowances.extend(table.allowances.into_iter().map(|e| AllowanceEntry { layer, ..e }));
        for alias in table.aliases {
            prices.aliases.retain(|a| a.category != alias.category);
            prices.aliases.push(alias);
        }
        prices.cidr_rules.extend(table.cidr_rules.into_iter().map(|r| (layer, r)));
        prices.attach_allowances();
        self.tables.push(info);
        Ok(self)
    }

    /// The files behind this book, in application order: the header of `pricing show`.
    pub fn tables(&self) -> &[TableInfo] {
        &self.tables
    }

    pub fn providers(&self) -> impl Iterator<Item = Provider> + '_ {
        self.providers.keys().copied()
    }

    /// How monthly tiers accumulate for this provider; output must say which was used.
    pub fn tier_accumulation(&self, provider: Provider) -> Option<TierAccumulation> {
        self.providers.get(&provider).map(|p| p.tier_accumulation)
    }

    pub fn currency(&self, provider: Provider) -> Option<&str> {
        self.providers.get(&provider).map(|p| p.currency.as_str())
    }

    /// The default product's rate for data leaving `region` in `category`. `dest` is the destination
    /// region for inter-region categories (required) or a destination area for internet egress
    /// (optional, e.g. `china`); it is ignored for other categories. `None` means "not priced": the
    /// caller reports the flow as unpriced rather than inventing zero.
    pub fn rate(
        &self,
        provider: Provider,
        region: &str,
        category: Category,
        dest: Option<&str>,
    ) -> Option<&Rate> {
        self.rate_variant(provider, region, category, None, dest)
    }

    /// Like [`PriceBook::rate`] for a named variant (`standard-tier`, `isp-routing`, `alb`, ...).
    pub fn rate_variant(
        &self,
        provider: Provider,
        region: &str,
        category: Category,
        variant: Option<&str>,
        dest: Option<&str>,
    ) -> Option<&Rate> {
        let prices = self.providers.get(&provider)?;
        if let Some(rate) = prices.find_rate(region, category, variant, dest) {
            return Some(rate);
        }
        let alias = prices.aliases.iter().find(|a| a.category == category)?;
        prices.find_rate(region, alias.as_category, variant, dest)
    }

    /// The hourly charge of `kind` in `region`.
    pub fn hourly(&self, provider: Provider, region: &str, kind: HourlyKind) -> Option<&HourlyCharge> {
        let prices = self.providers.get(&provider)?;
        let mut best: Option<((usize, u8), &HourlyCharge)> = None;
        for entry in prices.hourly.iter().filter(|e| e.charge.kind == kind) {
            if let Some(s) = best_score(&entry.sources, region) {
                let key = (entry.layer, s);
                if best.is_none_or(|(b, _)| key > b) {
                    best = Some((key, &entry.charge));
                }
            }
        }
        best.map(|(_, c)| c)
    }

    /// The user rule covering `remote`, if any: longest prefix wins, then the later override.
    pub fn cidr_rule(&self, provider: Provider, remote: IpAddr) -> Option<&CidrRule> {
        let prices = self.providers.get(&provider)?;
        prices
            .cidr_rules
            .iter()
            .filter(|(_, r)| r.net.contains(&remote))
            .max_by_key(|(layer, r)| (r.net.prefix_len(), *layer))
            .map(|(_, r)| r)
    }

    /// Plain rows for `egressor pricing show`: one per tier of every rate, one per hourly charge and
    /// one per CIDR rule, in file order. With `region`, only the entries that region resolves to
    /// (shadowed entries are dropped), so the rows answer "what would I pay here".
    pub fn describe(&self, provider: Option<Provider>, region: Option<&str>) -> Vec<PriceRow> {
        let mut rows = Vec::new();
        for (&p, prices) in &self.providers {
            if provider.is_some_and(|want| want != p) {
                continue;
            }
            let accumulation = prices.tier_accumulation.as_str();
            for entry in prices.rates.iter().filter(|e| region.is_none_or(|r| prices.resolves_to(e, r))) {
                let rate = &entry.rate;
                for (i, tier) in rate.tiers.iter().enumerate() {
                    rows.push(PriceRow {
                        provider: p,
                        charge: rate.category.as_str().to_string(),
                        variant: rate.variant.clone().unwrap_or_default(),
                        regions: selectors_label(&entry.sources),
                        destination: if rate.category.destination_use() == DestinationUse::None {
                            String::new()
                        } else {
                            selectors_label(&entry.dests)
                        },
                        tier: tier_label(rate, i),
                        price: tier.price,
                        unit: format!("{}/{}", rate.currency, rate.unit),
                        payer: rate.payer.as_str().to_string(),
                        free: rate
                            .free
                            .as_ref()
                            .map(|f| format!("{} {}/month ({})", f.units.normalize(), rate.unit, f.scope))
                            .unwrap_or_default(),
                        tier_accumulation: if rate.tiers.len() > 1 {
                            accumulation.to_string()
                        } else {
                            String::new()
                        },
                        source: rate.source.clone(),
                        unverified: rate.unverified(),
                        as_of: rate.as_of.clone(),
                        origin: rate.origin.to_string(),
                    });
                }
            }
            for entry in prices.hourly.iter() {
                if let Some(r) = region
                    && self.hourly(p, r, entry.charge.kind) != Some(&entry.charge)
                {
                    continue;
                }
                let c = &entry.charge;
                rows.push(PriceRow {
                    provider: p,
                    charge: c.kind.as_str().to_string(),
                    variant: String::new(),
                    regions: selectors_label(&entry.sources),
                    destination: String::new(),
                    tier: c
                        .max_quantity
                        .map(|m| format!("up to {} {}", m.normalize(), c.per))
                        .unwrap_or_default(),
                    price: c.price,
                    unit: format!("{}/hour per {}", c.currency, c.per),
                    payer: Payer::Owner.as_str().to_string(),
                    free: String::new(),
                    tier_accumulation: String::new(),
                    source: c.source.clone(),
                    unverified: c.unverified(),
                    as_of: c.as_of.clone(),
                    origin: c.origin.to_string(),
                });
            }
            for (_, rule) in &prices.cidr_rules {
                rows.push(PriceRow {
                    provider: p,
                    charge: format!("cidr {}", rule.net),
                    variant: String::new(),
                    regions: "*".to_string(),
                    destination: rule.net.to_string(),
                    tier: String::new(),
                    price: rule.price,
                    unit: format!("{}/{}", rule.currency, rule.unit),
                    payer: rule.payer.as_str().to_string(),
                    free: String::new(),
                    tier_accumulation: String::new(),
                    source: rule.source.clone(),
                    unverified: false,
                    as_of: rule.as_of.clone(),
                    origin: rule.origin.to_string(),
                });
            }
        }
        rows
    }
}

/// Layers a user override on a base book; see [`PriceBook::with_override`].
pub fn merge(base: PriceBook, override_table: PriceTable) -> Result<PriceBook, PricingError> {
    base.with_override(override_table)
}

/// One printable line of `pricing show`. Strings are ready to print; `price` stays a Decimal so JSON
/// output keeps it exact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PriceRow {
    pub provider: Provider,
    /// Category, hourly kind, or `cidr <net>`.
    pub charge: String,
    pub variant: String,
    pub regions: String,
    pub destination: String,
    /// Tier range in units (`0-10240`, `153600+`), `all` for a flat price, or an hourly cap.
    pub tier: String,
    pub price: Decimal,
    /// `USD/GiB` or `USD/hour per gateway`.
    pub unit: String,
    pub payer: String,
    pub free: String,
    /// Set on tiered rates: which usage counts toward the tier boundaries.
    pub tier_accumulation: String,
    pub source: String,
    pub unverified: bool,
    pub as_of: String,
    /// `file:line` the price was read from.
    pub origin: String,
}

fn tier_label(rate: &Rate, i: usize) -> String {
    let tier = &rate.tiers[i];
    match (rate.tiers.len(), tier.to_units) {
        (1, _) => "all".to_string(),
        (_, Some(to)) => format!("{}-{}", tier.from_units.normalize(), to.normalize()),
        (_, None) => format!("{}+", tier.from_units.normalize()),
    }
}

fn table_info(table: &PriceTable) -> TableInfo {
    TableInfo {
        provider: table.provider,
        path: table.path.clone(),
        kind: table.kind,
        as_of: table.as_of.clone(),
    }
}

fn invalid(path: &str, line: usize, column: usize, field: &str, message: String) -> PricingError {
    PricingError::Invalid {
        path: PathBuf::from(path),
        problems: vec![Problem { line, column, field: field.to_string(), message }],
    }
}

impl ProviderPrices {
    fn find_rate(
        &self,
        region: &str,
        category: Category,
        variant: Option<&str>,
        dest: Option<&str>,
    ) -> Option<&Rate> {
        let dest_use = category.destination_use();
        if dest_use == DestinationUse::Required && dest.is_none_or(|d| d == region) {
            // Same-region traffic asked as inter-region is a classification bug; pricing it would
            // hide that.
            return None;
        }
        let mut best: Option<((usize, u8, u8), &Rate)> = None;
        for entry in &self.rates {
            let rate = &entry.rate;
            if rate.category != category || rate.variant.as_deref() != variant {
                continue;
            }
            let Some(s) = best_score(&entry.sources, region) else {
                continue;
            };
            let d = match (dest_use, dest) {
                (DestinationUse::None, _) => 1,
                (_, Some(d)) => match best_score(&entry.dests, d) {
                    Some(d) => d,
                    None => continue,
                },
                (_, None) if entry.dests.contains(&Selector::Any) => 1,
                (_, None) => continue,
            };
            let key = (entry.layer, s, d);
            if best.is_none_or(|(b, _)| key > b) {
                best = Some((key, rate));
            }
        }
        best.map(|(_, r)| r)
    }

    /// Whether a lookup from `region` returns `entry` for at least one destination the entry names.
    /// Asking the lookup itself keeps `pricing show --region` and the cost engine in agreement.
    fn resolves_to(&self, entry: &RateEntry, region: &str) -> bool {
        let rate = &entry.rate;
        let mut dests: Vec<Option<&str>> = Vec::new();
        for selector in &entry.dests {
            match selector {
                Selector::Region(r) => dests.push(Some(r)),
                Selector::Group { members, .. } => dests.extend(members.iter().map(|m| Some(m.as_str()))),
                // "*" is the only selector a destination literally named "*" matches, so it probes
                // exactly the fallback; categories with an optional destination probe it with None.
                Selector::Any => dests.push(match rate.category.destination_use() {
                    DestinationUse::Required => Some("*"),
                    _ => None,
                }),
            }
        }
        dests.into_iter().any(|dest| {
            self.find_rate(region, rate.category, rate.variant.as_deref(), dest)
                .is_some_and(|found| std::ptr::eq(found, rate))
        })
    }

    /// Gives every rate the free allowance of its category and variant from the latest layer that
    /// defines one, so an override of a price keeps the shipped allowance unless it replaces it.
    fn attach_allowances(&mut self) {
        for entry in &mut self.rates {
            let rate = &mut entry.rate;
            rate.free = self
                .allowances
                .iter()
                .filter(|a| a.category == rate.category && a.variant == rate.variant)
                .max_by_key(|a| a.layer)
                // `units = "0"` in an override is how a user withdraws an allowance.
                .filter(|a| !a.allowance.units.is_zero())
                .map(|a| a.allowance.clone());
        }
    }
}
