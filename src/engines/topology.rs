//! The network around the flows: which addresses are ours, in which VPC, subnet, zone and region,
//! which subnets reach the internet through which NAT gateway, and which VPCs are joined by peering
//! or a transit gateway. The classifier reads it; nothing here prices anything.
//!
//! A topology file is TOML (documented in `docs/topology.md`). Like price files, a file with any
//! problem yields no topology at all, and every problem is reported as `file:line:col`.

use super::pricing::Provider;
use super::pricing::validate::{Problem, at_positions, line_col, syntax_problem};
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use toml::Spanned;

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("cannot read topology file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", at_positions(path, problems))]
    Invalid { path: PathBuf, problems: Vec<Problem> },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    cloud: Option<Spanned<String>>,
    account: Option<String>,
    #[serde(default)]
    vpc: Vec<Spanned<RawVpc>>,
    #[serde(default)]
    subnet: Vec<Spanned<RawSubnet>>,
    #[serde(default)]
    nat_gateway: Vec<Spanned<RawNat>>,
    #[serde(default)]
    peering: Vec<Spanned<RawPeering>>,
    #[serde(default)]
    transit_gateway: Vec<Spanned<RawTgw>>,
    #[serde(default)]
    endpoint: Vec<Spanned<RawEndpoint>>,
    #[serde(default)]
    public_ip: Vec<Spanned<RawPublicIp>>,
    /// Zone ID -> zone name for this account (`use1-az1 = "us-east-1a"`).
    #[serde(default)]
    zone_ids: std::collections::BTreeMap<String, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVpc {
    id: Spanned<String>,
    region: Spanned<String>,
    cidrs: Spanned<Vec<Spanned<String>>>,
    #[serde(default = "yes")]
    owned: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubnet {
    id: Spanned<String>,
    vpc: Spanned<String>,
    cidr: Spanned<String>,
    zone: Spanned<String>,
    nat: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNat {
    id: Spanned<String>,
    vpc: Spanned<String>,
    zone: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeering {
    id: Spanned<String>,
    vpcs: Spanned<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTgw {
    id: Spanned<String>,
    region: Spanned<String>,
    attachments: Spanned<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    id: Spanned<String>,
    vpc: Spanned<String>,
    kind: Spanned<String>,
    service: Spanned<String>,
    #[serde(default)]
    ips: Vec<Spanned<String>>,
    #[serde(default)]
    zones: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPublicIp {
    ip: Spanned<String>,
    vpc: Spanned<String>,
    zone: Spanned<String>,
    attached_to: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Vpc {
    pub id: String,
    pub region: String,
    pub cidrs: Vec<IpNet>,
    /// False for a peer's VPC in another account: its side of a transfer is not on our bill.
    pub owned: bool,
}

#[derive(Debug, Clone)]
pub struct Subnet {
    pub id: String,
    pub vpc: String,
    pub net: IpNet,
    pub zone: String,
    /// The NAT gateway this subnet's default route goes through; `None` means an internet gateway
    /// (public subnet) or no internet route.
    pub nat: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NatGateway {
    pub id: String,
    pub vpc: String,
    pub zone: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointKind {
    /// S3/DynamoDB gateway endpoint: a route-table entry, free.
    Gateway,
    /// Interface endpoint (PrivateLink): ENIs with private addresses, billed per hour and per GB.
    Interface,
}

#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: String,
    pub vpc: String,
    pub kind: EndpointKind,
    /// `s3`, `dynamodb`, or the interface endpoint's service name.
    pub service: String,
    pub ips: Vec<IpAddr>,
    pub zones: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct PublicIp {
    pub ip: IpAddr,
    pub vpc: String,
    pub zone: String,
    pub attached_to: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TransitGateway {
    pub id: String,
    pub region: String,
    pub attachments: Vec<String>,
}

/// A checked topology. Lookups are pure.
#[derive(Debug, Clone)]
pub struct Topology {
    /// Where it was read from (a path, or `workspace (demo)`), stated in cost output.
    pub origin: String,
    pub cloud: Provider,
    pub account: Option<String>,
    pub vpcs: Vec<Vpc>,
    pub subnets: Vec<Subnet>,
    pub nat_gateways: Vec<NatGateway>,
    pub peerings: Vec<(String, [String; 2])>,
    pub transit_gateways: Vec<TransitGateway>,
    pub endpoints: Vec<Endpoint>,
    pub public_ips: Vec<PublicIp>,
    /// This account's zone IDs (what VPC Flow Logs write in `az-id`) -> zone names (what subnets,
    /// node labels and this file use). The mapping differs per account, so it cannot be shipped.
    pub zone_ids: std::collections::BTreeMap<String, String>,
}

/// What a zone label in a flow is, read against the topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneLabel {
    /// A zone name the topology uses (or one a mapped zone ID stands for).
    Name(String),
    /// Neither a zone name of the topology nor a mapped zone ID.
    Unrecognised(String),
}

/// `use1-az1`, `euc1-az3`, `usw2-lax1-az1`: AWS zone IDs (region code, optional local zone, `-az` N).
pub fn looks_like_zone_id(s: &str) -> bool {
    let Some((prefix, n)) = s.rsplit_once("-az") else { return false };
    !prefix.is_empty()
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
        && prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && prefix.bytes().any(|b| b.is_ascii_digit())
}

impl Topology {
    /// Every zone name the topology places something in (subnets, NAT gateways, public addresses,
    /// endpoints) or maps a zone ID to.
    pub fn zone_names(&self) -> BTreeSet<&str> {
        let mut z: BTreeSet<&str> = self.subnets.iter().map(|s| s.zone.as_str()).collect();
        z.extend(self.nat_gateways.iter().map(|n| n.zone.as_str()));
        z.extend(self.public_ips.iter().map(|p| p.zone.as_str()));
        z.extend(self.endpoints.iter().flat_map(|e| e.zones.iter().map(String::as_str)));
        z.extend(self.zone_ids.values().map(String::as_str));
        z
    }

    /// A flow's zone label as a zone name: a name passes, a mapped zone ID becomes its name, and
    /// anything else is unrecognised (comparing it with names would call same-zone traffic
    /// cross-zone).
    pub fn zone_label(&self, label: &str) -> ZoneLabel {
        if let Some(name) = self.zone_ids.get(label) {
            return ZoneLabel::Name(name.clone());
        }
        let names = self.zone_names();
        // With no zones in the topology there is nothing to mistake a label for: labels are only
        // compared with each other.
        if names.is_empty() || names.contains(label) {
            return ZoneLabel::Name(label.to_string());
        }
        ZoneLabel::Unrecognised(label.to_string())
    }

    pub fn load_file(path: &Path) -> Result<Topology, TopologyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| TopologyError::Read { path: path.to_path_buf(), source })?;
        Topology::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Topology, TopologyError> {
        let invalid = |problems| TopologyError::Invalid { path: path.to_path_buf(), problems };
        let raw: RawTopology = toml::from_str(text).map_err(|e| invalid(vec![syntax_problem(text, &e)]))?;
        let mut c = Check { text, problems: Vec::new() };
        let topo = c.topology(raw, path.display().to_string());
        if c.problems.is_empty() { Ok(topo) } else { Err(invalid(c.problems)) }
    }

    pub fn vpc(&self, id: &str) -> Option<&Vpc> {
        self.vpcs.iter().find(|v| v.id == id)
    }

    /// The most specific subnet holding `ip`.
    pub fn subnet_of(&self, ip: IpAddr) -> Option<&Subnet> {
        self.subnets.iter().filter(|s| s.net.contains(&ip)).max_by_key(|s| s.net.prefix_len())
    }

    /// The VPC whose CIDRs hold `ip` (for addresses outside every listed subnet).
    pub fn vpc_of(&self, ip: IpAddr) -> Option<&Vpc> {
        self.vpcs
            .iter()
            .filter_map(|v| {
                v.cidrs.iter().filter(|n| n.contains(&ip)).map(|n| n.prefix_len()).max().map(|l| (l, v))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, v)| v)
    }

    pub fn nat(&self, id: &str) -> Option<&NatGateway> {
        self.nat_gateways.iter().find(|n| n.id == id)
    }

    pub fn interface_endpoint_at(&self, ip: IpAddr) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.kind == EndpointKind::Interface && e.ips.contains(&ip))
    }

    /// The gateway endpoint for `service` (`s3`, `dynamodb`) in `vpc`, if one exists.
    pub fn gateway_endpoint(&self, vpc: &str, service: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| {
            e.kind == EndpointKind::Gateway && e.vpc == vpc && e.service.eq_ignore_ascii_case(service)
        })
    }

    pub fn public_ip(&self, ip: IpAddr) -> Option<&PublicIp> {
        self.public_ips.iter().find(|p| p.ip == ip)
    }

    pub fn peering(&self, a: &str, b: &str) -> Option<&str> {
        self.peerings
            .iter()
            .find(|(_, v)| (v[0] == a && v[1] == b) || (v[0] == b && v[1] == a))
            .map(|(id, _)| id.as_str())
    }

    pub fn transit_gateway(&self, a: &str, b: &str) -> Option<&TransitGateway> {
        self.transit_gateways
            .iter()
            .find(|t| t.attachments.iter().any(|x| x == a) && t.attachments.iter().any(|x| x == b))
    }
}

struct Check<'a> {
    text: &'a str,
    problems: Vec<Problem>,
}

impl Check<'_> {
    fn problem(&mut self, span: std::ops::Range<usize>, field: String, message: String) {
        let (line, column) = line_col(self.text, span.start);
        self.problems.push(Problem { line, column, field, message });
    }

    fn net(&mut self, s: &Spanned<String>, field: String) -> Option<IpNet> {
        match s.get_ref().parse::<IpNet>() {
            Ok(n) if n.trunc() == n => Some(n),
            Ok(n) => {
                self.problem(
                    s.span(),
                    field,
                    format!("{n} has host bits set; expected the network address {}", n.trunc()),
                );
                None
            }
            Err(_) => {
                self.problem(s.span(), field, format!("{:?} is not a CIDR such as 10.0.1.0/24", s.get_ref()));
                None
            }
        }
    }

    fn ip(&mut self, s: &Spanned<String>, field: String) -> Option<IpAddr> {
        s.get_ref().parse().ok().or_else(|| {
            self.problem(s.span(), field, format!("{:?} is not an IP address", s.get_ref()));
            None
        })
    }

    fn known(&mut self, set: &BTreeSet<String>, s: &Spanned<String>, field: String, what: &str) {
        if !set.contains(s.get_ref()) {
            let known = set.iter().cloned().collect::<Vec<_>>().join(", ");
            self.problem(
                s.span(),
                field,
                format!(
                    "unknown {what} {:?}; expected one of: {}",
                    s.get_ref(),
                    if known.is_empty() { "(none defined)".into() } else { known }
                ),
            );
        }
    }

    fn unique(&mut self, seen: &mut BTreeSet<String>, s: &Spanned<String>, field: String) {
        if !seen.insert(s.get_ref().clone()) {
            self.problem(s.span(), field, format!("duplicate id {:?}", s.get_ref()));
        }
    }

    fn topology(&mut self, raw: RawTopology, origin: String) -> Topology {
        let cloud = match &raw.cloud {
            None => Provider::Aws,
            Some(c) => Provider::parse(c.get_ref()).unwrap_or_else(|| {
                self.problem(
                    c.span(),
                    "cloud".into(),
                    format!("unknown cloud {:?}; expected one of: {}", c.get_ref(), Provider::names()),
                );
                Provider::Aws
            }),
        };
        let mut vpc_ids = BTreeSet::new();
        let mut vpcs = Vec::new();
        for (i, v) in raw.vpc.iter().enumerate() {
            let v = v.get_ref();
            self.unique(&mut vpc_ids, &v.id, format!("vpc[{i}].id"));
            let cidrs: Vec<IpNet> = v
                .cidrs
                .get_ref()
                .iter()
                .enumerate()
                .filter_map(|(j, c)| self.net(c, format!("vpc[{i}].cidrs[{j}]")))
                .collect();
            if v.cidrs.get_ref().is_empty() {
                self.problem(
                    v.cidrs.span(),
                    format!("vpc[{i}].cidrs"),
                    "at least one CIDR is required".into(),
                );
            }
            vpcs.push(Vpc {
                id: v.id.get_ref().clone(),
                region: v.region.get_ref().clone(),
                cidrs,
                owned: v.owned,
            });
        }
        let mut nat_ids = BTreeSet::new();
        let mut nat_gateways = Vec::new();
        for (i, n) in raw.nat_gateway.iter().enumerate() {
            let n = n.get_ref();
            self.unique(&mut nat_ids, &n.id, format!("nat_gateway[{i}].id"));
            self.known(&vpc_ids, &n.vpc, format!("nat_gateway[{i}].vpc"), "vpc");
            nat_gateways.push(NatGateway {
                id: n.id.get_ref().clone(),
                vpc: n.vpc.get_ref().clone(),
                zone: n.zone.get_ref().clone(),
            });
        }
        let mut subnet_ids = BTreeSet::new();
        let mut subnets = Vec::new();
        for (i, s) in raw.subnet.iter().enumerate() {
            let s = s.get_ref();
            self.unique(&mut subnet_ids, &s.id, format!("subnet[{i}].id"));
            self.known(&vpc_ids, &s.vpc, format!("subnet[{i}].vpc"), "vpc");
            if let Some(nat) = &s.nat {
                self.known(&nat_ids, nat, format!("subnet[{i}].nat"), "nat_gateway");
            }
            let Some(net) = self.net(&s.cidr, format!("subnet[{i}].cidr")) else { continue };
            if let Some(vpc) = vpcs.iter().find(|v| &v.id == s.vpc.get_ref())
                && !vpc.cidrs.iter().any(|c| c.contains(&net))
            {
                self.problem(
                    s.cidr.span(),
                    format!("subnet[{i}].cidr"),
                    format!("{net} is outside every CIDR of vpc {:?}", vpc.id),
                );
            }
            subnets.push(Subnet {
                id: s.id.get_ref().clone(),
                vpc: s.vpc.get_ref().clone(),
                net,
                zone: s.zone.get_ref().clone(),
                nat: s.nat.as_ref().map(|n| n.get_ref().clone()),
            });
        }
        let mut peerings = Vec::new();
        for (i, p) in raw.peering.iter().enumerate() {
            let p = p.get_ref();
            let list = p.vpcs.get_ref();
            if list.len() != 2 {
                self.problem(
                    p.vpcs.span(),
                    format!("peering[{i}].vpcs"),
                    format!("a peering joins exactly two VPCs, found {}", list.len()),
                );
                continue;
            }
            for (j, v) in list.iter().enumerate() {
                self.known(&vpc_ids, v, format!("peering[{i}].vpcs[{j}]"), "vpc");
            }
            peerings.push((p.id.get_ref().clone(), [list[0].get_ref().clone(), list[1].get_ref().clone()]));
        }
        let mut transit_gateways = Vec::new();
        for (i, t) in raw.transit_gateway.iter().enumerate() {
            let t = t.get_ref();
            for (j, v) in t.attachments.get_ref().iter().enumerate() {
                self.known(&vpc_ids, v, format!("transit_gateway[{i}].attachments[{j}]"), "vpc");
            }
            transit_gateways.push(TransitGateway {
                id: t.id.get_ref().clone(),
                region: t.region.get_ref().clone(),
                attachments: t.attachments.get_ref().iter().map(|a| a.get_ref().clone()).collect(),
            });
        }
        let mut endpoints = Vec::new();
        for (i, e) in raw.endpoint.iter().enumerate() {
            let e = e.get_ref();
            self.known(&vpc_ids, &e.vpc, format!("endpoint[{i}].vpc"), "vpc");
            let kind = match e.kind.get_ref().as_str() {
                "gateway" => EndpointKind::Gateway,
                "interface" => EndpointKind::Interface,
                other => {
                    self.problem(
                        e.kind.span(),
                        format!("endpoint[{i}].kind"),
                        format!("unknown kind {other:?}; expected gateway or interface"),
                    );
                    continue;
                }
            };
            let service = e.service.get_ref().to_ascii_lowercase();
            if kind == EndpointKind::Gateway && service != "s3" && service != "dynamodb" {
                self.problem(
                    e.service.span(),
                    format!("endpoint[{i}].service"),
                    format!(
                        "gateway endpoints exist for s3 and dynamodb only, not {:?}",
                        e.service.get_ref()
                    ),
                );
            }
            if kind == EndpointKind::Interface && e.ips.is_empty() {
                self.problem(
                    e.kind.span(),
                    format!("endpoint[{i}].ips"),
                    "an interface endpoint needs the private addresses of its network interfaces (ips)"
                        .into(),
                );
            }
            let ips =
                e.ips.iter().enumerate().filter_map(|(j, s)| self.ip(s, format!("endpoint[{i}].ips[{j}]")));
            endpoints.push(Endpoint {
                id: e.id.get_ref().clone(),
                vpc: e.vpc.get_ref().clone(),
                kind,
                service,
                ips: ips.collect(),
                zones: e.zones.iter().map(|z| z.get_ref().clone()).collect(),
            });
        }
        let mut public_ips = Vec::new();
        for (i, p) in raw.public_ip.iter().enumerate() {
            let p = p.get_ref();
            self.known(&vpc_ids, &p.vpc, format!("public_ip[{i}].vpc"), "vpc");
            if let Some(ip) = self.ip(&p.ip, format!("public_ip[{i}].ip")) {
                public_ips.push(PublicIp {
                    ip,
                    vpc: p.vpc.get_ref().clone(),
                    zone: p.zone.get_ref().clone(),
                    attached_to: p.attached_to.clone(),
                });
            }
        }
        let mut zone_ids = std::collections::BTreeMap::new();
        for (id, name) in &raw.zone_ids {
            if !looks_like_zone_id(id) {
                self.problem(
                    name.span(),
                    format!("zone_ids.{id}"),
                    format!("{id:?} is not a zone ID such as use1-az1 (the key is the ID, the value its zone name)"),
                );
            } else if looks_like_zone_id(name.get_ref()) || name.get_ref().is_empty() {
                self.problem(
                    name.span(),
                    format!("zone_ids.{id}"),
                    format!("{:?} is not a zone name such as us-east-1a", name.get_ref()),
                );
            } else {
                zone_ids.insert(id.clone(), name.get_ref().clone());
            }
        }
        // Overlapping VPC ranges would make "which VPC is this address in" ambiguous.
        for (i, v) in vpcs.iter().enumerate() {
            let overlap = vpcs[..i]
                .iter()
                .find(|o| o.cidrs.iter().any(|m| v.cidrs.iter().any(|n| m.contains(n) || n.contains(m))));
            if let Some(other) = overlap {
                let span = raw.vpc[i].get_ref().cidrs.span();
                self.problem(
                    span,
                    format!("vpc[{i}].cidrs"),
                    format!("overlaps the CIDRs of vpc {:?}; an address must belong to one VPC", other.id),
                );
            }
        }
        Topology {
            origin,
            cloud,
            account: raw.account,
            vpcs,
            subnets,
            nat_gateways,
            peerings,
            transit_gateways,
            endpoints,
            public_ips,
            zone_ids,
        }
    }
}
