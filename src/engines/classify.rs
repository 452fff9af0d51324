//! Every direction of every flow gets one class (same-node ... unknown) and the list of priced legs
//! the bytes pay for on the way: NAT processing, the hop to a NAT in another zone, the egress itself.
//!
//! Where an address is comes, in order, from the topology (subnet, interface endpoint, our public
//! IPs), from flow metadata (the zone and region labels of the node a pod runs on), from the shipped
//! cloud IP ranges, and finally from the address itself. A private address that none of these place
//! is `unknown`, never assumed to be in the sender's zone: that assumption is how multi-zone traffic
//! becomes silently free in other tools.

use super::cloud_ranges::{CloudRanges, CloudService};
use super::pricing::{Category, Provider};
use super::topology::Topology;
use crate::model::Party;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

macro_rules! classes {
    ($($variant:ident => $s:literal, $doc:literal;)+) => {
        /// The class of one direction of a flow. Names are stable: they appear in output and JSON.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        pub enum Class { $(#[doc = $doc] #[serde(rename = $s)] $variant),+ }
        impl Class {
            pub const ALL: &'static [Class] = &[$(Class::$variant),+];
            pub fn as_str(self) -> &'static str { match self { $(Class::$variant => $s),+ } }
            pub fn parse(s: &str) -> Option<Class> { Class::ALL.iter().copied().find(|c| c.as_str() == s) }
            pub fn names() -> String { Class::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ") }
        }
    };
}

classes! {
    SameNode => "same-node", "Both ends on one node: never leaves the machine.";
    SameZone => "same-zone", "Private traffic inside one zone.";
    CrossZone => "cross-zone", "Between zones of one region.";
    CrossRegion => "cross-region", "Between regions (privately, by peering or to a service in another region).";
    Internet => "internet", "To the internet (or a cloud's public address) without a NAT gateway.";
    NatInternet => "nat-internet", "To or from the internet through a NAT gateway.";
    NatCloudService => "nat-cloud-service", "To or from a cloud service (S3, DynamoDB...) through a NAT gateway.";
    VpcEndpoint => "vpc-endpoint", "Through a gateway or interface VPC endpoint.";
    PeeringSameZone => "peering-same-zone", "Over a VPC peering, both ends in one zone.";
    PeeringCrossZone => "peering-cross-zone", "Over a VPC peering, between zones.";
    TransitGateway => "transit-gateway", "Through a transit gateway.";
    Ingress => "ingress", "Into the cloud from the internet (or a public service) without a NAT gateway.";
    Unknown => "unknown", "Where one end is cannot be told: reported, never priced as free.";
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// local -> remote (`bytes_out`)
    Out,
    /// remote -> local (`bytes_in`)
    In,
}

/// Who besides the sender and receiver a leg's "both sides" charge falls on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sides {
    /// The leg runs between the two parties of the flow.
    Parties,
    /// The leg runs between the local party and our own gateway (NAT hop): every side is ours and
    /// is charged to the local party.
    LocalAndGateway,
}

/// One priced step of a transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leg {
    pub category: Category,
    /// A product variant of the category (`None` = the default product).
    pub variant: Option<&'static str>,
    /// The region whose price applies: where the bytes leave from (or where the gateway is).
    pub region: String,
    /// Destination region (inter-region categories).
    pub dest: Option<String>,
    pub sides: Sides,
    /// What this leg is, for explanations: "NAT processing at nat-a", "hop to NAT in us-east-1b".
    pub what: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Classified {
    pub class: Class,
    /// Why, in a sentence a person can check: "10.0.2.14 is in subnet-b (us-east-1b); sender in us-east-1a".
    pub reason: String,
    pub legs: Vec<Leg>,
    /// Whether the remote side is on our bill (our VPC or cluster): `both`-payer legs charge it too.
    pub remote_ours: bool,
    /// The remote end as a person names it: a workload, `aws:S3 us-east-1`, `internet 203.0.113.10`.
    pub remote_label: String,
    /// The cloud service at the remote end, when it is one (recommendations use it).
    pub service: Option<CloudService>,
    /// The NAT gateway on the path, and the VPC of the local end.
    pub nat: Option<String>,
    pub vpc: Option<String>,
    /// Source and destination region of cross-region traffic.
    pub regions: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    /// Inside a network we know: a VPC (from the topology) or the cluster (from node labels).
    Private {
        vpc: Option<String>,
        subnet: Option<String>,
        zone: Option<String>,
        region: Option<String>,
        nat: Option<String>,
        owned: bool,
    },
    InterfaceEndpoint {
        id: String,
        service: String,
    },
    OwnPublic {
        zone: String,
        region: String,
    },
    Service(CloudService),
    /// A private address nothing places.
    UnplacedPrivate,
    Internet,
}

pub struct Classifier<'a> {
    topo: Option<&'a Topology>,
    ranges: &'a CloudRanges,
    provider: Provider,
    remote_cache: HashMap<IpAddr, Place>,
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => {
            v.is_private()
                || v.is_loopback()
                || v.is_link_local()
                || (v.octets()[0] == 100 && (v.octets()[1] & 0xc0) == 64) // 100.64.0.0/10 CGNAT
        }
        IpAddr::V6(v) => {
            v.is_loopback() || (v.segments()[0] & 0xfe00) == 0xfc00 || (v.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

impl<'a> Classifier<'a> {
    pub fn new(topo: Option<&'a Topology>, ranges: &'a CloudRanges) -> Self {
        let provider = topo.map(|t| t.cloud).unwrap_or(Provider::Aws);
        Classifier { topo, ranges, provider, remote_cache: HashMap::new() }
    }

    pub fn provider(&self) -> Provider {
        self.provider
    }

    fn place_from_topology(&self, ip: IpAddr) -> Option<Place> {
        let t = self.topo?;
        if let Some(e) = t.interface_endpoint_at(ip) {
            return Some(Place::InterfaceEndpoint { id: e.id.clone(), service: e.service.clone() });
        }
        if let Some(s) = t.subnet_of(ip) {
            let vpc = t.vpc(&s.vpc);
            return Some(Place::Private {
                vpc: Some(s.vpc.clone()),
                subnet: Some(s.id.clone()),
                zone: Some(s.zone.clone()),
                region: vpc.map(|v| v.region.clone()),
                nat: s.nat.clone(),
                owned: vpc.is_none_or(|v| v.owned),
            });
        }
        if let Some(v) = t.vpc_of(ip) {
            return Some(Place::Private {
                vpc: Some(v.id.clone()),
                subnet: None,
                zone: None,
                region: Some(v.region.clone()),
                nat: None,
                owned: v.owned,
            });
        }
        if let Some(p) = t.public_ip(ip) {
            let region = t.vpc(&p.vpc).map(|v| v.region.clone()).unwrap_or_default();
            return Some(Place::OwnPublic { zone: p.zone.clone(), region });
        }
        None
    }

    /// Where a party is. Flow metadata (node labels) wins for zone and region; the topology adds the
    /// VPC, subnet and NAT route.
    fn place(&self, p: &Party) -> Place {
        let from_topo = p.ip.and_then(|ip| self.place_from_topology(ip));
        let labelled = p.zone.is_some() || p.region.is_some();
        match from_topo {
            Some(Place::Private { vpc, subnet, zone, region, nat, owned }) => Place::Private {
                vpc,
                subnet,
                zone: p.zone.clone().or(zone),
                region: p.region.clone().or(region),
                nat,
                owned,
            },
            Some(other) => other,
            None if labelled || p.node.is_some() => Place::Private {
                vpc: None,
                subnet: None,
                zone: p.zone.clone(),
                region: p.region.clone(),
                nat: None,
                owned: true,
            },
            None => match p.ip {
                Some(ip) => match self.ranges.lookup(ip) {
                    Some(s) if s.provider == self.provider => Place::Service(s.clone()),
                    Some(_) => Place::Internet,
                    None if is_private(ip) => Place::UnplacedPrivate,
                    None => Place::Internet,
                },
                None => Place::UnplacedPrivate,
            },
        }
    }

    fn remote_place(&mut self, p: &Party) -> Place {
        // Remote parties with metadata are pods: not cacheable by address alone.
        if p.zone.is_some() || p.region.is_some() || p.node.is_some() {
            return self.place(p);
        }
        let Some(ip) = p.ip else { return Place::UnplacedPrivate };
        if let Some(pl) = self.remote_cache.get(&ip) {
            return pl.clone();
        }
        let pl = self.place(p);
        self.remote_cache.insert(ip, pl.clone());
        pl
    }

    /// Classifies one direction of a flow seen on `node`.
    pub fn classify(&mut self, node: &str, local: &Party, remote: &Party, dir: Direction) -> Classified {
        let l = self.place(local);
        let r = self.remote_place(remote);
        let remote_label = match &r {
            Place::Service(s) => s.label(),
            Place::Internet => format!("internet {}", remote.ip.map(|i| i.to_string()).unwrap_or_default()),
            Place::InterfaceEndpoint { id, service } => format!("endpoint {id} ({service})"),
            _ => remote.workload_label(),
        };
        let mut c = Classified {
            class: Class::Unknown,
            reason: String::new(),
            legs: Vec::new(),
            remote_ours: matches!(r, Place::Private { owned: true, .. } | Place::OwnPublic { .. }),
            remote_label,
            service: match &r {
                Place::Service(s) => Some(s.clone()),
                _ => None,
            },
            nat: None,
            vpc: None,
            regions: None,
        };
        let Place::Private { vpc: lvpc, zone: lzone, region: lregion, nat: lnat, .. } = &l else {
            c.reason = format!(
                "the local end {} is not inside a known network (expected a pod or host address)",
                local.ip.map(|i| i.to_string()).unwrap_or_default()
            );
            return c;
        };
        c.vpc = lvpc.clone();
        let Some(lregion) = lregion.clone() else {
            c.reason = format!(
                "node {node} has no region: label it (topology.kubernetes.io/region) or add its subnet to the topology"
            );
            return c;
        };
        let leg = |category, region: &str, dest: Option<&str>, sides, what: String| Leg {
            category,
            variant: None,
            region: region.to_string(),
            dest: dest.map(str::to_string),
            sides,
            what,
        };
        let nat = lnat.as_ref().and_then(|id| self.topo.and_then(|t| t.nat(id)));
        // The hop between the pod and a NAT gateway in another zone is cross-zone traffic of its own.
        let nat_legs = |c: &mut Classified| {
            if let Some(n) = nat {
                c.nat = Some(n.id.clone());
                c.legs.push(leg(
                    Category::NatProcessing,
                    &lregion,
                    None,
                    Sides::LocalAndGateway,
                    format!("NAT gateway {} processing", n.id),
                ));
                if lzone.as_deref().is_some_and(|z| z != n.zone) {
                    c.legs.push(leg(
                        Category::CrossZone,
                        &lregion,
                        None,
                        Sides::LocalAndGateway,
                        format!(
                            "hop between {} and NAT {} in {}",
                            lzone.as_deref().unwrap_or("?"),
                            n.id,
                            n.zone
                        ),
                    ));
                }
            }
        };
        let rip = remote.ip.map(|i| i.to_string()).unwrap_or_default();
        match &r {
            Place::Private { vpc: rvpc, zone: rzone, region: rregion, owned, subnet, .. } => {
                if remote.node.as_deref() == Some(node) || (local.ip.is_some() && local.ip == remote.ip) {
                    c.class = Class::SameNode;
                    c.reason = format!("both ends on node {node}");
                    return c;
                }
                let where_r = match (subnet, rzone) {
                    (Some(s), Some(z)) => format!("{rip} is in {s} ({z})"),
                    (None, Some(z)) => format!("{rip} is in {z}"),
                    _ => rip.to_string(),
                };
                let Some(rregion) = rregion.clone() else {
                    c.reason = format!("{where_r}: its region is unknown");
                    return c;
                };
                let (src_region, dst_region) = match dir {
                    Direction::Out => (lregion.clone(), rregion.clone()),
                    Direction::In => (rregion.clone(), lregion.clone()),
                };
                let via = match (lvpc, rvpc) {
                    (Some(a), Some(b)) if a != b => {
                        let t = self.topo.expect("VPCs come from a topology");
                        if let Some(p) = t.peering(a, b) {
                            Some(format!("peering {p}"))
                        } else if let Some(tgw) = t.transit_gateway(a, b) {
                            c.class = Class::TransitGateway;
                            c.reason = format!("{a} and {b} are joined by transit gateway {}", tgw.id);
                            c.legs.push(leg(
                                Category::TransitGateway,
                                &src_region,
                                None,
                                Sides::Parties,
                                format!("transit gateway {} processing", tgw.id),
                            ));
                            if src_region != dst_region {
                                c.regions = Some((src_region.clone(), dst_region.clone()));
                                c.legs.push(leg(
                                    Category::InterRegion,
                                    &src_region,
                                    Some(&dst_region),
                                    Sides::Parties,
                                    format!("{src_region} to {dst_region}"),
                                ));
                            }
                            return c;
                        } else {
                            c.reason = format!(
                                "{where_r} in {b}, but no peering or transit gateway joins {a} and {b} in the topology"
                            );
                            return c;
                        }
                    }
                    _ => None,
                };
                if src_region != dst_region {
                    c.class = Class::CrossRegion;
                    c.regions = Some((src_region.clone(), dst_region.clone()));
                    let cat =
                        if via.is_some() { Category::VpcPeeringInterRegion } else { Category::InterRegion };
                    c.reason = format!(
                        "{where_r} ({rregion}); local end in {lregion}{}",
                        via.as_ref().map(|v| format!(", over {v}")).unwrap_or_default()
                    );
                    c.legs.push(leg(
                        cat,
                        &src_region,
                        Some(&dst_region),
                        Sides::Parties,
                        format!("{src_region} to {dst_region}"),
                    ));
                    return c;
                }
                let (Some(lz), Some(rz)) = (lzone, rzone) else {
                    c.reason = if lzone.is_none() {
                        format!(
                            "node {node} has no zone: label it (topology.kubernetes.io/zone) or add its subnet"
                        )
                    } else {
                        format!(
                            "{where_r} in {rregion}, but its zone is unknown: add its subnet to the topology"
                        )
                    };
                    return c;
                };
                let same = lz == rz;
                let (class, cat) = match (&via, same) {
                    (None, true) => (Class::SameZone, Category::SameZone),
                    (None, false) => (Class::CrossZone, Category::CrossZone),
                    (Some(_), true) => (Class::PeeringSameZone, Category::VpcPeeringSameZone),
                    (Some(_), false) => (Class::PeeringCrossZone, Category::VpcPeeringCrossZone),
                };
                c.class = class;
                c.remote_ours = *owned;
                c.reason = format!(
                    "{where_r}; local end in {lz}{}",
                    via.as_ref().map(|v| format!(", over {v}")).unwrap_or_default()
                );
                c.legs.push(leg(cat, &lregion, None, Sides::Parties, format!("{lz} and {rz}")));
            }
            Place::InterfaceEndpoint { id, service } => {
                c.class = Class::VpcEndpoint;
                c.reason = format!("{rip} is interface endpoint {id} for {service}");
                c.legs.push(leg(
                    Category::Privatelink,
                    &lregion,
                    None,
                    Sides::LocalAndGateway,
                    format!("endpoint {id} processing"),
                ));
            }
            Place::OwnPublic { zone, region } => {
                c.reason = format!("{rip} is one of our public addresses ({zone})");
                if region != &lregion {
                    c.class = Class::CrossRegion;
                    let (s, d) = match dir {
                        Direction::Out => (lregion.clone(), region.clone()),
                        Direction::In => (region.clone(), lregion.clone()),
                    };
                    c.regions = Some((s.clone(), d.clone()));
                    c.legs.push(leg(
                        Category::InterRegion,
                        &s,
                        Some(&d),
                        Sides::Parties,
                        format!("{s} to {d}"),
                    ));
                } else {
                    c.class = if lzone.as_deref() == Some(zone) { Class::SameZone } else { Class::CrossZone };
                    c.legs.push(leg(
                        Category::PublicIpSameRegion,
                        &lregion,
                        None,
                        Sides::Parties,
                        "to a public address in the same region".into(),
                    ));
                }
            }
            Place::Service(svc) => {
                let gw = svc.gateway_endpoint_service().and_then(|s| {
                    lvpc.as_ref().and_then(|v| self.topo.and_then(|t| t.gateway_endpoint(v, s)))
                });
                let other_region = svc.region != lregion && svc.region != "GLOBAL";
                let (s, d) = match dir {
                    Direction::Out => (lregion.clone(), svc.region.clone()),
                    Direction::In => (svc.region.clone(), lregion.clone()),
                };
                if let Some(e) = gw.filter(|_| !other_region) {
                    c.class = Class::VpcEndpoint;
                    c.reason = format!(
                        "{rip} is {}; {} routes it through gateway endpoint {}",
                        svc.label(),
                        lvpc.as_deref().unwrap_or("?"),
                        e.id
                    );
                    c.legs.push(leg(
                        Category::GatewayEndpoint,
                        &lregion,
                        None,
                        Sides::LocalAndGateway,
                        format!("gateway endpoint {}", e.id),
                    ));
                    return c;
                }
                if nat.is_some() {
                    c.class = Class::NatCloudService;
                    c.reason = format!(
                        "{rip} is {}, reached through NAT gateway {}",
                        svc.label(),
                        lnat.as_deref().unwrap_or("?")
                    );
                    nat_legs(&mut c);
                } else {
                    c.class = if dir == Direction::Out { Class::Internet } else { Class::Ingress };
                    c.reason = format!(
                        "{rip} is {}, reached over the public network{}",
                        svc.label(),
                        if self.topo.is_none() {
                            " (no topology: a NAT gateway on the path would not be seen)"
                        } else {
                            ""
                        }
                    );
                }
                if other_region {
                    c.class = if nat.is_some() { c.class } else { Class::CrossRegion };
                    c.regions = Some((s.clone(), d.clone()));
                    c.legs.push(leg(
                        Category::InterRegion,
                        &s,
                        Some(&d),
                        Sides::Parties,
                        format!("{s} to {d}"),
                    ));
                } else if svc.service == "EC2" && dir == Direction::Out {
                    // Someone's instance in our region, by its public address.
                    c.legs.push(leg(
                        Category::PublicIpSameRegion,
                        &lregion,
                        None,
                        Sides::Parties,
                        "to a public address in the same region".into(),
                    ));
                }
            }
            Place::UnplacedPrivate => {
                c.reason = format!(
                    "{rip} is a private address that no subnet, VPC or peering in the topology holds and the flow carries no zone for it{}",
                    if self.topo.is_none() { " (pass --topology)" } else { "" }
                );
            }
            Place::Internet => {
                if nat.is_some() {
                    c.class = Class::NatInternet;
                    c.reason = format!(
                        "{rip} is on the internet, reached through NAT gateway {}",
                        lnat.as_deref().unwrap_or("?")
                    );
                    nat_legs(&mut c);
                } else {
                    c.class = if dir == Direction::Out { Class::Internet } else { Class::Ingress };
                    c.reason = format!("{rip} is on the internet");
                }
                match dir {
                    Direction::Out => c.legs.push(leg(
                        Category::InternetEgress,
                        &lregion,
                        None,
                        Sides::Parties,
                        format!("{lregion} to the internet"),
                    )),
                    Direction::In => c.legs.push(leg(
                        Category::Ingress,
                        &lregion,
                        None,
                        Sides::Parties,
                        "from the internet".into(),
                    )),
                }
            }
        }
        c
    }
}
