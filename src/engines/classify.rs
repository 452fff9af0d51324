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
use super::topology::{Endpoint, NatGateway, Topology, TransitGateway, ZoneLabel};
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
    /// Zone labels the topology neither names nor maps, and how many parties carried each.
    unrecognised_zones: std::cell::RefCell<std::collections::BTreeMap<String, u64>>,
    /// Each label's reading, computed once (parties repeat their labels on every transfer).
    zone_labels: std::cell::RefCell<HashMap<String, Option<String>>>,
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
        Classifier {
            topo,
            ranges,
            provider,
            remote_cache: HashMap::new(),
            unrecognised_zones: Default::default(),
            zone_labels: Default::default(),
        }
    }

    /// A flow's zone label as the topology names zones. VPC Flow Logs write zone IDs
    /// (`use1-az1`) and topologies and node labels zone names (`us-east-1a`); the mapping differs
    /// per account, so comparing the two forms as they are would call same-zone traffic
    /// cross-zone. A label that is neither a name of the topology nor a mapped ID is not used (the
    /// topology's own placement decides) and is reported.
    fn zone_of_label(&self, label: Option<&String>) -> Option<String> {
        let label = label?;
        let Some(t) = self.topo else { return Some(label.clone()) };
        let read = self
            .zone_labels
            .borrow_mut()
            .entry(label.clone())
            .or_insert_with(|| match t.zone_label(label) {
                ZoneLabel::Name(name) => Some(name),
                ZoneLabel::Unrecognised(_) => None,
            })
            .clone();
        if read.is_none() {
            *self.unrecognised_zones.borrow_mut().entry(label.clone()).or_default() += 1;
        }
        read
    }

    /// What to tell the user about zone labels that were not used.
    pub fn zone_problems(&self) -> Vec<String> {
        let names =
            self.topo.map(|t| t.zone_names().into_iter().collect::<Vec<_>>().join(", ")).unwrap_or_default();
        self.unrecognised_zones
            .borrow()
            .iter()
            .map(|(z, n)| {
                let fix = if super::topology::looks_like_zone_id(z) {
                    format!(
                        "it looks like a zone ID: add `[zone_ids]` with `{z} = \"<zone name>\"` to the topology \
                         (this account's mapping: aws ec2 describe-availability-zones)"
                    )
                } else {
                    "name it in the topology (a subnet's zone) or correct the node's zone label".into()
                };
                format!(
                    "zone \"{z}\" ({n} flow ends) is neither a zone of the topology ({names}) nor a zone ID it maps; \
                     the topology's placement was used instead. Fix: {fix}"
                )
            })
            .collect()
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
        let label = self.zone_of_label(p.zone.as_ref());
        match from_topo {
            Some(Place::Private { vpc, subnet, zone, region, nat, owned }) => Place::Private {
                vpc,
                subnet,
                zone: label.or(zone),
                region: p.region.clone().or(region),
                nat,
                owned,
            },
            Some(other) => other,
            None if labelled || p.node.is_some() => Place::Private {
                vpc: None,
                subnet: None,
                zone: label,
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
        let mut c = unclassified(remote, &r);
        let Place::Private { vpc, zone, region, nat, .. } = &l else {
            c.reason = format!(
                "the local end {} is not inside a known network (expected a pod or host address)",
                local.ip.map(|i| i.to_string()).unwrap_or_default()
            );
            return c;
        };
        c.vpc = vpc.clone();
        let Some(region) = region.as_deref() else {
            c.reason = format!(
                "node {node} has no region: label it (topology.kubernetes.io/region) or add its subnet to the topology"
            );
            return c;
        };
        let flow = Flow {
            topo: self.topo,
            node,
            local,
            remote,
            dir,
            rip: remote.ip.map(|i| i.to_string()).unwrap_or_default(),
            vpc: vpc.as_deref(),
            zone: zone.as_deref(),
            region,
            nat_id: nat.as_deref(),
            nat: nat.as_deref().and_then(|id| self.topo.and_then(|t| t.nat(id))),
        };
        flow.classify(&r, &mut c);
        c
    }
}

/// What is known of the remote end before it is classified. It starts `Unknown`: a step that
/// cannot place an end returns it as is, with the reason.
fn unclassified(remote: &Party, r: &Place) -> Classified {
    Classified {
        class: Class::Unknown,
        reason: String::new(),
        legs: Vec::new(),
        remote_ours: matches!(r, Place::Private { owned: true, .. } | Place::OwnPublic { .. }),
        remote_label: remote_label(remote, r),
        service: match r {
            Place::Service(s) => Some(s.clone()),
            _ => None,
        },
        nat: None,
        vpc: None,
        regions: None,
    }
}

fn remote_label(remote: &Party, r: &Place) -> String {
    match r {
        Place::Service(s) => s.label(),
        Place::Internet => format!("internet {}", remote.ip.map(|i| i.to_string()).unwrap_or_default()),
        Place::InterfaceEndpoint { id, service } => format!("endpoint {id} ({service})"),
        _ => remote.workload_label(),
    }
}

/// A flow whose local end is placed in a known network with a region: what every step that places
/// the remote end reads. The class depends on where the remote end is, so there is a step per place.
struct Flow<'f> {
    topo: Option<&'f Topology>,
    node: &'f str,
    local: &'f Party,
    remote: &'f Party,
    dir: Direction,
    /// The remote address as reasons quote it (empty when the flow has none).
    rip: String,
    vpc: Option<&'f str>,
    zone: Option<&'f str>,
    region: &'f str,
    /// The NAT gateway the local subnet routes through, and that gateway when the topology has it.
    nat_id: Option<&'f str>,
    nat: Option<&'f NatGateway>,
}

/// A remote end inside a known network (`Place::Private`), borrowed.
struct PrivateEnd<'p> {
    vpc: Option<&'p str>,
    subnet: Option<&'p str>,
    zone: Option<&'p str>,
    region: Option<&'p str>,
    owned: bool,
}

/// What joins the VPCs of two private ends.
enum Join<'t> {
    /// One VPC, or an end whose VPC is not known (placed by node labels): nothing to cross.
    Direct,
    Peering(&'t str),
    TransitGateway {
        a: &'t str,
        b: &'t str,
        tgw: &'t TransitGateway,
    },
    Nothing {
        a: &'t str,
        b: &'t str,
    },
}

impl<'f> Flow<'f> {
    fn classify(&self, r: &Place, c: &mut Classified) {
        match r {
            Place::Private { vpc, zone, region, owned, subnet, .. } => self.private_peer(
                &PrivateEnd {
                    vpc: vpc.as_deref(),
                    subnet: subnet.as_deref(),
                    zone: zone.as_deref(),
                    region: region.as_deref(),
                    owned: *owned,
                },
                c,
            ),
            Place::InterfaceEndpoint { id, service } => self.interface_endpoint(id, service, c),
            Place::OwnPublic { zone, region } => self.own_public_address(zone, region, c),
            Place::Service(svc) => self.cloud_service(svc, c),
            Place::UnplacedPrivate => self.unplaced_private(c),
            Place::Internet => self.internet(c),
        }
    }

    fn private_peer(&self, r: &PrivateEnd<'_>, c: &mut Classified) {
        let (node, rip) = (self.node, &self.rip);
        if self.remote.node.as_deref() == Some(node)
            || (self.local.ip.is_some() && self.local.ip == self.remote.ip)
        {
            c.class = Class::SameNode;
            c.reason = format!("both ends on node {node}");
            return;
        }
        let where_r = match (r.subnet, r.zone) {
            (Some(s), Some(z)) => format!("{rip} is in {s} ({z})"),
            (None, Some(z)) => format!("{rip} is in {z}"),
            _ => rip.to_string(),
        };
        let Some(rregion) = r.region else {
            c.reason = format!("{where_r}: its region is unknown");
            return;
        };
        let (src_region, dst_region) = self.src_dst(rregion);
        let via = match self.join(r.vpc) {
            Join::Direct => None,
            Join::Peering(p) => Some(format!("peering {p}")),
            Join::TransitGateway { a, b, tgw } => {
                through_transit_gateway(a, b, tgw, &src_region, &dst_region, c);
                return;
            }
            Join::Nothing { a, b } => {
                c.reason = format!(
                    "{where_r} in {b}, but no peering or transit gateway joins {a} and {b} in the topology"
                );
                return;
            }
        };
        if src_region != dst_region {
            self.across_regions(&where_r, rregion, via.as_deref(), &src_region, &dst_region, c);
        } else {
            self.within_region(r, &where_r, rregion, via.as_deref(), c);
        }
    }

    fn join<'j>(&'j self, rvpc: Option<&'j str>) -> Join<'j> {
        match (self.vpc, rvpc) {
            (Some(a), Some(b)) if a != b => {
                let t = self.topo.expect("VPCs come from a topology");
                if let Some(p) = t.peering(a, b) {
                    Join::Peering(p)
                } else if let Some(tgw) = t.transit_gateway(a, b) {
                    Join::TransitGateway { a, b, tgw }
                } else {
                    Join::Nothing { a, b }
                }
            }
            _ => Join::Direct,
        }
    }

    fn across_regions(
        &self,
        where_r: &str,
        rregion: &str,
        via: Option<&str>,
        src_region: &str,
        dst_region: &str,
        c: &mut Classified,
    ) {
        let lregion = self.region;
        c.class = Class::CrossRegion;
        c.regions = Some((src_region.to_string(), dst_region.to_string()));
        let cat = if via.is_some() { Category::VpcPeeringInterRegion } else { Category::InterRegion };
        c.reason = format!("{where_r} ({rregion}); local end in {lregion}{}", over(via));
        c.legs.push(between_regions(cat, src_region, dst_region));
    }

    fn within_region(
        &self,
        r: &PrivateEnd<'_>,
        where_r: &str,
        rregion: &str,
        via: Option<&str>,
        c: &mut Classified,
    ) {
        let node = self.node;
        let (Some(lz), Some(rz)) = (self.zone, r.zone) else {
            c.reason = if self.zone.is_none() {
                format!("node {node} has no zone: label it (topology.kubernetes.io/zone) or add its subnet")
            } else {
                format!("{where_r} in {rregion}, but its zone is unknown: add its subnet to the topology")
            };
            return;
        };
        let same = lz == rz;
        let (class, cat) = match (via, same) {
            (None, true) => (Class::SameZone, Category::SameZone),
            (None, false) => (Class::CrossZone, Category::CrossZone),
            (Some(_), true) => (Class::PeeringSameZone, Category::VpcPeeringSameZone),
            (Some(_), false) => (Class::PeeringCrossZone, Category::VpcPeeringCrossZone),
        };
        c.class = class;
        c.remote_ours = r.owned;
        c.reason = format!("{where_r}; local end in {lz}{}", over(via));
        c.legs.push(leg(cat, self.region, None, Sides::Parties, format!("{lz} and {rz}")));
    }

    fn interface_endpoint(&self, id: &str, service: &str, c: &mut Classified) {
        let rip = &self.rip;
        c.class = Class::VpcEndpoint;
        c.reason = format!("{rip} is interface endpoint {id} for {service}");
        c.legs.push(leg(
            Category::Privatelink,
            self.region,
            None,
            Sides::LocalAndGateway,
            format!("endpoint {id} processing"),
        ));
    }

    fn own_public_address(&self, zone: &str, region: &str, c: &mut Classified) {
        let rip = &self.rip;
        c.reason = format!("{rip} is one of our public addresses ({zone})");
        if region != self.region {
            c.class = Class::CrossRegion;
            let (s, d) = self.src_dst(region);
            c.regions = Some((s.clone(), d.clone()));
            c.legs.push(between_regions(Category::InterRegion, &s, &d));
        } else {
            c.class = if self.zone == Some(zone) { Class::SameZone } else { Class::CrossZone };
            c.legs.push(public_ip_same_region(self.region));
        }
    }

    /// A gateway endpoint only serves its own region; otherwise the bytes take the NAT or the
    /// public network like any other address.
    fn cloud_service(&self, svc: &CloudService, c: &mut Classified) {
        let other_region = svc.region != self.region && svc.region != "GLOBAL";
        if !other_region && let Some(e) = self.gateway_endpoint(svc) {
            self.through_gateway_endpoint(svc, e, c);
            return;
        }
        self.service_over_nat_or_public_network(svc, c);
        if other_region {
            // Through a NAT the class stays the NAT's: the inter-region leg is added to its legs.
            c.class = if self.nat.is_some() { c.class } else { Class::CrossRegion };
            let (s, d) = self.src_dst(&svc.region);
            c.regions = Some((s.clone(), d.clone()));
            c.legs.push(between_regions(Category::InterRegion, &s, &d));
        } else if svc.service == "EC2" && self.dir == Direction::Out {
            // Someone's instance in our region, by its public address.
            c.legs.push(public_ip_same_region(self.region));
        }
    }

    fn through_gateway_endpoint(&self, svc: &CloudService, e: &Endpoint, c: &mut Classified) {
        let rip = &self.rip;
        c.class = Class::VpcEndpoint;
        c.reason = format!(
            "{rip} is {}; {} routes it through gateway endpoint {}",
            svc.label(),
            self.vpc.unwrap_or("?"),
            e.id
        );
        c.legs.push(leg(
            Category::GatewayEndpoint,
            self.region,
            None,
            Sides::LocalAndGateway,
            format!("gateway endpoint {}", e.id),
        ));
    }

    fn service_over_nat_or_public_network(&self, svc: &CloudService, c: &mut Classified) {
        let rip = &self.rip;
        if self.nat.is_some() {
            c.class = Class::NatCloudService;
            c.reason = format!(
                "{rip} is {}, reached through NAT gateway {}",
                svc.label(),
                self.nat_id.unwrap_or("?")
            );
            self.nat_legs(c);
        } else {
            c.class = self.internet_or_ingress();
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
    }

    fn gateway_endpoint(&self, svc: &CloudService) -> Option<&'f Endpoint> {
        let s = svc.gateway_endpoint_service()?;
        self.vpc.and_then(|v| self.topo.and_then(|t| t.gateway_endpoint(v, s)))
    }

    fn unplaced_private(&self, c: &mut Classified) {
        let rip = &self.rip;
        c.reason = format!(
            "{rip} is a private address that no subnet, VPC or peering in the topology holds and the flow carries no zone for it{}",
            if self.topo.is_none() { " (pass --topology)" } else { "" }
        );
    }

    fn internet(&self, c: &mut Classified) {
        let (rip, lregion) = (&self.rip, self.region);
        if self.nat.is_some() {
            c.class = Class::NatInternet;
            c.reason = format!(
                "{rip} is on the internet, reached through NAT gateway {}",
                self.nat_id.unwrap_or("?")
            );
            self.nat_legs(c);
        } else {
            c.class = self.internet_or_ingress();
            c.reason = format!("{rip} is on the internet");
        }
        c.legs.push(match self.dir {
            Direction::Out => leg(
                Category::InternetEgress,
                lregion,
                None,
                Sides::Parties,
                format!("{lregion} to the internet"),
            ),
            Direction::In => {
                leg(Category::Ingress, lregion, None, Sides::Parties, "from the internet".into())
            }
        });
    }

    /// The hop between the pod and a NAT gateway in another zone is cross-zone traffic of its own.
    fn nat_legs(&self, c: &mut Classified) {
        let Some(n) = self.nat else { return };
        c.nat = Some(n.id.clone());
        c.legs.push(leg(
            Category::NatProcessing,
            self.region,
            None,
            Sides::LocalAndGateway,
            format!("NAT gateway {} processing", n.id),
        ));
        if self.zone.is_some_and(|z| z != n.zone) {
            c.legs.push(leg(
                Category::CrossZone,
                self.region,
                None,
                Sides::LocalAndGateway,
                format!("hop between {} and NAT {} in {}", self.zone.unwrap_or("?"), n.id, n.zone),
            ));
        }
    }

    /// Without a NAT, public traffic is egress one way and ingress the other.
    fn internet_or_ingress(&self) -> Class {
        if self.dir == Direction::Out { Class::Internet } else { Class::Ingress }
    }

    /// Source and destination region: the bytes leave from the sender's.
    fn src_dst(&self, remote_region: &str) -> (String, String) {
        match self.dir {
            Direction::Out => (self.region.to_string(), remote_region.to_string()),
            Direction::In => (remote_region.to_string(), self.region.to_string()),
        }
    }
}

/// A transit gateway charges its processing in the source region; crossing regions adds the
/// inter-region leg on top.
fn through_transit_gateway(
    a: &str,
    b: &str,
    tgw: &TransitGateway,
    src_region: &str,
    dst_region: &str,
    c: &mut Classified,
) {
    c.class = Class::TransitGateway;
    c.reason = format!("{a} and {b} are joined by transit gateway {}", tgw.id);
    c.legs.push(leg(
        Category::TransitGateway,
        src_region,
        None,
        Sides::Parties,
        format!("transit gateway {} processing", tgw.id),
    ));
    if src_region != dst_region {
        c.regions = Some((src_region.to_string(), dst_region.to_string()));
        c.legs.push(between_regions(Category::InterRegion, src_region, dst_region));
    }
}

fn leg(category: Category, region: &str, dest: Option<&str>, sides: Sides, what: String) -> Leg {
    Leg { category, variant: None, region: region.to_string(), dest: dest.map(str::to_string), sides, what }
}

fn between_regions(category: Category, src: &str, dst: &str) -> Leg {
    leg(category, src, Some(dst), Sides::Parties, format!("{src} to {dst}"))
}

fn public_ip_same_region(region: &str) -> Leg {
    leg(
        Category::PublicIpSameRegion,
        region,
        None,
        Sides::Parties,
        "to a public address in the same region".into(),
    )
}

/// `, over peering pcx-1` for a reason, or nothing.
fn over(via: Option<&str>) -> String {
    via.map(|v| format!(", over {v}")).unwrap_or_default()
}
