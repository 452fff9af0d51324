//! Which public addresses belong to a cloud provider's services, and in which region: the shipped
//! snapshot in `pricing/ip-ranges/` (with its date), so a destination such as `52.216.8.20` is named
//! "aws:S3 us-east-1" instead of "internet".

use super::pricing::Provider;
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

pub const SHIPPED: [(&str, &str); 1] =
    [("pricing/ip-ranges/aws.toml", include_str!("../../pricing/ip-ranges/aws.toml"))];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRanges {
    provider: String,
    as_of: String,
    source: String,
    /// service -> region -> prefixes
    service: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

/// A named destination: a provider's service in a region.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CloudService {
    pub provider: Provider,
    /// As the provider names it: `S3`, `DYNAMODB`, `EC2`.
    pub service: String,
    pub region: String,
}

impl CloudService {
    /// Storage/database services reachable through a free gateway endpoint.
    pub fn gateway_endpoint_service(&self) -> Option<&'static str> {
        match (self.provider, self.service.as_str()) {
            (Provider::Aws, "S3") => Some("s3"),
            (Provider::Aws, "DYNAMODB") => Some("dynamodb"),
            _ => None,
        }
    }

    /// `aws:S3 us-east-1`
    pub fn label(&self) -> String {
        format!("{}:{} {}", self.provider, self.service, self.region)
    }
}

/// Snapshot metadata, printed with cost output so a stale snapshot is visible.
#[derive(Debug, Clone)]
pub struct RangesInfo {
    pub file: String,
    pub provider: Provider,
    pub as_of: String,
    pub source: String,
    pub prefixes: usize,
}

pub struct CloudRanges {
    /// (prefix length, network) -> service; services other than EC2 win over EC2 on the same prefix.
    by_prefix: HashMap<(u8, IpNet), CloudService>,
    lengths_v4: Vec<u8>,
    lengths_v6: Vec<u8>,
    pub info: Vec<RangesInfo>,
}

impl CloudRanges {
    /// The snapshot compiled into the binary, parsed once per process.
    pub fn shipped() -> anyhow::Result<&'static CloudRanges> {
        static RANGES: std::sync::OnceLock<Result<CloudRanges, String>> = std::sync::OnceLock::new();
        RANGES
            .get_or_init(|| CloudRanges::parse_shipped().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    fn parse_shipped() -> anyhow::Result<CloudRanges> {
        let mut by_prefix = HashMap::new();
        let mut info = Vec::new();
        for (file, text) in SHIPPED {
            let raw: RawRanges = toml::from_str(text).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
            let provider = Provider::parse(&raw.provider)
                .ok_or_else(|| anyhow::anyhow!("{file}: unknown provider {:?}", raw.provider))?;
            let mut n = 0;
            for (service, regions) in &raw.service {
                for (region, prefixes) in regions {
                    for p in prefixes {
                        let net: IpNet =
                            p.parse().map_err(|_| anyhow::anyhow!("{file}: bad prefix {p:?}"))?;
                        let svc = CloudService { provider, service: service.clone(), region: region.clone() };
                        n += 1;
                        let key = (net.prefix_len(), net.trunc());
                        // EC2 ranges overlap the service ranges in some snapshots: the named service wins.
                        match by_prefix.get(&key) {
                            Some(CloudService { service: s, .. }) if s != "EC2" => {}
                            _ => {
                                by_prefix.insert(key, svc);
                            }
                        }
                    }
                }
            }
            info.push(RangesInfo {
                file: file.into(),
                provider,
                as_of: raw.as_of,
                source: raw.source,
                prefixes: n,
            });
        }
        let mut lengths_v4: Vec<u8> =
            by_prefix.keys().filter(|(_, n)| matches!(n, IpNet::V4(_))).map(|(l, _)| *l).collect();
        let mut lengths_v6: Vec<u8> =
            by_prefix.keys().filter(|(_, n)| matches!(n, IpNet::V6(_))).map(|(l, _)| *l).collect();
        for l in [&mut lengths_v4, &mut lengths_v6] {
            l.sort_unstable_by(|a, b| b.cmp(a));
            l.dedup();
        }
        Ok(CloudRanges { by_prefix, lengths_v4, lengths_v6, info })
    }

    /// The most specific range holding `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<&CloudService> {
        let lengths = if ip.is_ipv4() { &self.lengths_v4 } else { &self.lengths_v6 };
        lengths.iter().find_map(|&len| {
            let net = IpNet::new(ip, len).ok()?.trunc();
            self.by_prefix.get(&(len, net))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_parses_and_names_services() {
        let r = CloudRanges::shipped().unwrap();
        assert!(r.info[0].prefixes > 100, "{:?}", r.info[0].prefixes);
        // Every prefix of the snapshot finds itself (or a more specific one of the same service set).
        let mut checked = 0;
        for ((_, net), svc) in r.by_prefix.iter().take(200) {
            let hit = r.lookup(net.network()).expect("a listed prefix is found");
            assert!(hit.service == svc.service || svc.service == "EC2", "{net}: {hit:?} vs {svc:?}");
            checked += 1;
        }
        assert!(checked > 0);
        assert_eq!(r.lookup("10.1.2.3".parse().unwrap()), None);
        assert_eq!(r.lookup("192.0.2.1".parse().unwrap()), None);
    }
}
