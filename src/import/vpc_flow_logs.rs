//! AWS VPC Flow Logs -> flow records.
//!
//! Accepts the default format (version 2, 14 space-separated fields, as CloudWatch Logs shows it) and
//! custom formats (versions 3-5 and later fields) when the file starts with the header line that S3
//! delivery writes (`version account-id interface-id srcaddr ...`).
//!
//! Mapping (also in docs/data-model.md):
//! - node: `instance-id` when present, else `interface-id` (the ENI is where AWS observed the flow).
//! - direction: with `flow-direction`, `egress` makes the source the local side (bytes_out) and
//!   `ingress` makes the destination the local side (bytes_in). Without it (v2), a record from a
//!   public address to a private one is ingress; every other record is egress from `srcaddr`,
//!   except the second report of one flow: flow logs enabled on a VPC log a flow at the sender's
//!   ENI and at the receiver's, with the same addresses, ports and protocol. The first interface
//!   to report a 5-tuple is taken as the sender's; another interface reporting it over an
//!   overlapping window is the receiver's, and its record is ingress. The cost engine then bills
//!   the flow once (`engines::observations`); which ENI is which only names the observers.
//! - addresses: `pkt-srcaddr`/`pkt-dstaddr` (the packet's real addresses, e.g. a pod behind a NAT or
//!   an EKS secondary IP) win over `srcaddr`/`dstaddr` when present.
//! - `az-id` and `region` describe the local side; `pkt-dst-aws-service` (or `pkt-src-...` for
//!   ingress) names the remote as `aws:<SERVICE>` in `remote.service`.
//! - `tcp-flags`: a bare SYN marks a connection opened by the sender, SYN-ACK one opened by the peer;
//!   FIN or RST count a close.
//! - `log-status` NODATA (no traffic) and SKIPDATA (AWS lost records) lines carry no flow and are
//!   counted; `action` REJECT lines are counted and skipped, since rejected packets never reached
//!   their destination.

use super::ImportError;
use crate::model::{Endpoint, FlowRecord, Initiator, Proto, Timestamp};
use anyhow::{Context, Result};
use std::io::BufRead;
use std::net::IpAddr;
use std::path::Path;

/// The fields of the default (version 2) format, in order.
const DEFAULT_FIELDS: &[&str] = &[
    "version",
    "account-id",
    "interface-id",
    "srcaddr",
    "dstaddr",
    "srcport",
    "dstport",
    "protocol",
    "packets",
    "bytes",
    "start",
    "end",
    "action",
    "log-status",
];

/// Every field AWS documents for versions 2-5 (later versions add more; unknown names in a header are
/// accepted and ignored so new AWS fields do not break imports).
const KNOWN_FIELDS: &[&str] = &[
    "version",
    "account-id",
    "interface-id",
    "srcaddr",
    "dstaddr",
    "srcport",
    "dstport",
    "protocol",
    "packets",
    "bytes",
    "start",
    "end",
    "action",
    "log-status",
    "vpc-id",
    "subnet-id",
    "instance-id",
    "tcp-flags",
    "type",
    "pkt-srcaddr",
    "pkt-dstaddr",
    "region",
    "az-id",
    "sublocation-type",
    "sublocation-id",
    "pkt-src-aws-service",
    "pkt-dst-aws-service",
    "flow-direction",
    "traffic-path",
];

#[derive(Debug, Default)]
pub struct Skipped {
    pub nodata: u64,
    pub skipdata: u64,
    pub rejected: u64,
}

impl Skipped {
    pub fn as_pairs(&self) -> Vec<(String, u64)> {
        [("NODATA", self.nodata), ("SKIPDATA", self.skipdata), ("REJECT", self.rejected)]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| (k.to_string(), n))
            .collect()
    }
}

/// Column positions of the fields we use, resolved once from the header.
struct Layout {
    names: Vec<String>,
    idx: std::collections::HashMap<String, usize>,
}

impl Layout {
    fn new(names: Vec<String>) -> Self {
        let idx = names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
        Layout { names, idx }
    }
    fn get<'a>(&self, row: &[&'a str], name: &str) -> Option<&'a str> {
        self.idx.get(name).map(|&i| row[i]).filter(|v| *v != "-")
    }
}

fn is_header(line: &str) -> bool {
    let mut tokens = line.split_whitespace();
    let first = tokens.next().unwrap_or("");
    first == "version"
        || line
            .split_whitespace()
            .all(|t| t.chars().all(|c| c.is_ascii_lowercase() || c == '-') && KNOWN_FIELDS.contains(&t))
}

pub fn read(
    file: &Path,
    mut lines: Box<dyn BufRead>,
    mut sink: impl FnMut(FlowRecord) -> Result<()>,
) -> Result<Skipped> {
    let mut skipped = Skipped::default();
    let mut second_reports = SecondReports::default();
    let mut layout: Option<Layout> = None;
    let mut buf = String::new();
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let read = lines.read_line(&mut buf).with_context(|| {
            format!("{}:{}: cannot read (is it UTF-8 text?)", file.display(), line_no + 1)
        })?;
        if read == 0 {
            break;
        }
        line_no += 1;
        let text = buf.trim();
        if text.is_empty() {
            continue;
        }
        let err = |field: Option<&str>, message: String| ImportError {
            file: file.to_path_buf(),
            line: line_no,
            unit: "line",
            field: field.map(str::to_string),
            message,
        };
        if layout.is_none() {
            if is_header(text) {
                let names: Vec<String> = text.split_whitespace().map(str::to_string).collect();
                for required in ["srcaddr", "dstaddr", "bytes", "packets", "start", "end"] {
                    if !names.iter().any(|n| n == required) {
                        return Err(err(
                            Some(required),
                            "the header lacks this field; egressor needs srcaddr, dstaddr, bytes, packets, start and end"
                                .into(),
                        )
                        .into());
                    }
                }
                layout = Some(Layout::new(names));
                continue;
            }
            layout = Some(Layout::new(DEFAULT_FIELDS.iter().map(|s| s.to_string()).collect()));
        }
        let layout = layout.as_ref().expect("set above");
        let row: Vec<&str> = text.split_whitespace().collect();
        if row.len() != layout.names.len() {
            return Err(err(
                None,
                format!(
                    "expected {} space-separated fields ({}), found {}",
                    layout.names.len(),
                    if layout.names.len() == DEFAULT_FIELDS.len() {
                        "default v2 format"
                    } else {
                        "as in the header"
                    },
                    row.len()
                ),
            )
            .into());
        }
        match layout.get(&row, "log-status") {
            Some("NODATA") => {
                skipped.nodata += 1;
                continue;
            }
            Some("SKIPDATA") => {
                skipped.skipdata += 1;
                continue;
            }
            Some("OK") | None => {}
            Some(other) => {
                return Err(err(
                    Some("log-status"),
                    format!("unknown value {other:?} (OK, NODATA, SKIPDATA)"),
                )
                .into());
            }
        }
        match layout.get(&row, "action") {
            Some("REJECT") => {
                skipped.rejected += 1;
                continue;
            }
            Some("ACCEPT") | None => {}
            Some(other) => {
                return Err(err(Some("action"), format!("unknown value {other:?} (ACCEPT, REJECT)")).into());
            }
        }
        let mut record = to_record(layout, &row).map_err(|(f, m)| err(Some(f), m))?;
        if layout.get(&row, "flow-direction").is_none() {
            second_reports.orient(&mut record);
        }
        sink(record)?;
    }
    Ok(skipped)
}

fn to_record(l: &Layout, row: &[&str]) -> Result<FlowRecord, (&'static str, String)> {
    fn num<T: std::str::FromStr>(
        l: &Layout,
        row: &[&str],
        f: &'static str,
    ) -> Result<Option<T>, (&'static str, String)> {
        match l.get(row, f) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| (f, format!("{v:?} is not a valid number"))),
        }
    }
    fn ip(l: &Layout, row: &[&str], f: &'static str) -> Result<Option<IpAddr>, (&'static str, String)> {
        match l.get(row, f) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| (f, format!("{v:?} is not an IP address"))),
        }
    }
    let src = ip(l, row, "srcaddr")?.ok_or(("srcaddr", "missing value".to_string()))?;
    let dst = ip(l, row, "dstaddr")?.ok_or(("dstaddr", "missing value".to_string()))?;
    let src = ip(l, row, "pkt-srcaddr")?.unwrap_or(src);
    let dst = ip(l, row, "pkt-dstaddr")?.unwrap_or(dst);
    let srcport: u16 = num(l, row, "srcport")?.unwrap_or(0);
    let dstport: u16 = num(l, row, "dstport")?.unwrap_or(0);
    let bytes: u64 = num(l, row, "bytes")?.ok_or(("bytes", "missing value".to_string()))?;
    let packets: u64 = num(l, row, "packets")?.ok_or(("packets", "missing value".to_string()))?;
    let start: i64 = num(l, row, "start")?.ok_or(("start", "missing value".to_string()))?;
    let end: i64 = num(l, row, "end")?.ok_or(("end", "missing value".to_string()))?;
    if end < start {
        return Err(("end", format!("{end} is before start {start}")));
    }
    let proto = match num::<u8>(l, row, "protocol")? {
        Some(6) => Proto::Tcp,
        Some(17) => Proto::Udp,
        _ => Proto::Other,
    };
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(("dstaddr", format!("{dst} and source {src} are of different IP versions")));
    }
    let egress = match l.get(row, "flow-direction") {
        // Without a direction (v2), the ENI's side is the private one when exactly one side is.
        None => !is_private(dst) || is_private(src),
        Some("egress") => true,
        Some("ingress") => false,
        Some(other) => return Err(("flow-direction", format!("unknown value {other:?} (ingress, egress)"))),
    };
    // Flags are OR-ed over the aggregation interval: SYN without ACK is only sent by the opener.
    let flags: u16 = num(l, row, "tcp-flags")?.unwrap_or(0);
    let (syn, ack, fin, rst) = (flags & 0x02 != 0, flags & 0x10 != 0, flags & 0x01 != 0, flags & 0x04 != 0);
    let sender_opened = syn && !ack;
    let receiver_opened = syn && ack;
    let mut local = Endpoint::addr(if egress { src } else { dst }, if egress { srcport } else { dstport });
    let mut remote = Endpoint::addr(if egress { dst } else { src }, if egress { dstport } else { srcport });
    local.zone = l.get(row, "az-id").map(str::to_string);
    local.region = l.get(row, "region").map(str::to_string);
    local.node = node_of(l, row);
    let remote_service = l.get(row, if egress { "pkt-dst-aws-service" } else { "pkt-src-aws-service" });
    remote.service = remote_service.map(|s| format!("aws:{s}"));
    let initiator = match (sender_opened, receiver_opened, egress) {
        (true, _, true) | (_, true, false) => Initiator::Local,
        (true, _, false) | (_, true, true) => Initiator::Remote,
        _ => Initiator::Unknown,
    };
    Ok(FlowRecord {
        window_start: Timestamp::from_secs(start),
        window_end: Timestamp::from_secs(end),
        node: local.node.clone().unwrap_or_else(|| "vpc-flow-logs".into()),
        ip_version: if src.is_ipv4() { 4 } else { 6 },
        local,
        remote,
        proto,
        initiator,
        bytes_out: if egress { bytes } else { 0 },
        bytes_in: if egress { 0 } else { bytes },
        packets_out: if egress { packets } else { 0 },
        packets_in: if egress { 0 } else { packets },
        connections_opened: u32::from(sender_opened),
        connections_closed: u32::from(fin || rst),
        batch_id: None,
        source: None,
    })
}

/// (src, dst, src port, dst port, protocol).
type FiveTuple = (IpAddr, IpAddr, u16, u16, Proto);

/// The interfaces that reported each 5-tuple so far, for v2 files (no `flow-direction`).
#[derive(Default)]
struct SecondReports {
    /// 5-tuple -> (interface, window start, window end) of each report taken as the sender's.
    first: std::collections::HashMap<FiveTuple, Vec<(String, i64, i64)>>,
}

impl SecondReports {
    /// Turns `r` (oriented as egress from the source) into the receiver's ingress record when
    /// another interface already reported the same 5-tuple over an overlapping window.
    fn orient(&mut self, r: &mut FlowRecord) {
        if r.bytes_in > 0 {
            return; // already ingress (from a public address)
        }
        let key = (r.local.ip, r.remote.ip, r.local.port, r.remote.port, r.proto);
        let (start, end) = (r.window_start.micros(), r.window_end.micros());
        let seen = self.first.entry(key).or_default();
        let overlaps = |(_, s, e): &&(String, i64, i64)| *s <= end && start <= *e;
        let other = seen.iter().filter(overlaps).any(|(iface, _, _)| *iface != r.node);
        if !other {
            seen.push((r.node.clone(), start, end));
            return;
        }
        std::mem::swap(&mut r.local, &mut r.remote);
        std::mem::swap(&mut r.bytes_out, &mut r.bytes_in);
        std::mem::swap(&mut r.packets_out, &mut r.packets_in);
        // What the interface said of itself (az-id, region, its id) stays with the local side.
        std::mem::swap(&mut r.local.zone, &mut r.remote.zone);
        std::mem::swap(&mut r.local.region, &mut r.remote.region);
        std::mem::swap(&mut r.local.node, &mut r.remote.node);
        r.initiator = match r.initiator {
            Initiator::Local => Initiator::Remote,
            Initiator::Remote => Initiator::Local,
            Initiator::Unknown => Initiator::Unknown,
        };
        r.connections_opened = 0;
    }
}

/// Addresses that can belong to an interface inside a VPC: RFC 1918, CGNAT (100.64/10), link-local,
/// and IPv6 unique-local.
fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private() || v4.is_link_local() || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00 || (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

fn node_of(l: &Layout, row: &[&str]) -> Option<String> {
    l.get(row, "instance-id").or_else(|| l.get(row, "interface-id")).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn parse(text: &str) -> Result<(Vec<FlowRecord>, Skipped)> {
        let mut out = Vec::new();
        let s = read(Path::new("t.log"), Box::new(Cursor::new(text.to_string())), |r| {
            out.push(r);
            Ok(())
        })?;
        Ok((out, s))
    }

    /// Flow logs on a VPC log one flow at the sender's ENI and at the receiver's; in v2 both lines
    /// read "src -> dst". The second interface's line is the receiver's ingress.
    #[test]
    fn the_second_enis_report_of_a_flow_is_its_ingress() {
        let line = |eni: &str, start: i64| {
            format!("2 1 {eni} 10.0.1.101 10.0.2.101 40000 443 6 10 5000 {start} {} ACCEPT OK\n", start + 60)
        };
        let text = format!("{}{}{}", line("eni-a", 1000), line("eni-b", 1030), line("eni-a", 5000));
        let (recs, _) = parse(&text).unwrap();
        assert_eq!(
            (recs[0].node.as_str(), recs[0].local.ip.to_string(), recs[0].bytes_out),
            ("eni-a", "10.0.1.101".into(), 5000)
        );
        assert_eq!(
            (recs[1].node.as_str(), recs[1].local.ip.to_string(), recs[1].bytes_in),
            ("eni-b", "10.0.2.101".into(), 5000)
        );
        assert_eq!(
            (recs[1].remote.ip.to_string(), recs[1].remote.port, recs[1].local.port),
            ("10.0.1.101".into(), 40000, 443)
        );
        assert_eq!(recs[1].bytes_out, 0);
        // The same interface later, or a window that does not overlap: egress as before.
        assert_eq!((recs[2].node.as_str(), recs[2].bytes_out), ("eni-a", 5000));
    }

    /// The default-format examples from the AWS VPC Flow Logs user guide ("Flow log record examples").
    #[test]
    fn aws_documentation_default_format_examples() {
        let text = "\
2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK
2 123456789010 eni-1235b8ca123456789 172.31.9.69 172.31.9.12 49761 3389 6 20 4249 1418530010 1418530070 REJECT OK
2 123456789010 eni-1235b8ca123456789 - - - - - - - 1431280876 1431280934 - NODATA
2 123456789010 eni-11111111aaaaaaaaa - - - - - - - 1431280876 1431280934 - SKIPDATA
2 123456789010 eni-1235b8ca123456789 2001:db8:1234:a100:8d6e:3477:df66:f105 2001:db8:1234:a102:3304:8879:34cf:4071 34892 22 6 54 8855 1477913708 1477913820 ACCEPT OK
";
        let (recs, skipped) = parse(text).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!((skipped.rejected, skipped.nodata, skipped.skipdata), (1, 1, 1));
        let r = &recs[0];
        assert_eq!(r.node, "eni-1235b8ca123456789");
        assert_eq!(r.local.ip.to_string(), "172.31.16.139");
        assert_eq!((r.local.port, r.remote.port), (20641, 22));
        assert_eq!((r.bytes_out, r.packets_out, r.bytes_in), (4249, 20, 0));
        assert_eq!(r.window_start.to_string(), "2014-12-14T04:06:50Z");
        assert_eq!(r.window_end.to_string(), "2014-12-14T04:07:50Z");
        assert_eq!(r.proto, Proto::Tcp);
        assert_eq!(recs[1].ip_version, 6);
        assert_eq!(recs[1].bytes_out, 8855);
    }

    /// Custom-format examples from the same guide (v3 with pkt-* and tcp-flags, v5 with direction).
    #[test]
    fn aws_documentation_custom_format_examples() {
        let text = "\
version vpc-id subnet-id instance-id interface-id account-id type srcaddr dstaddr srcport dstport pkt-srcaddr pkt-dstaddr protocol bytes packets start end action tcp-flags log-status
3 vpc-abcdefab012345678 subnet-aaaaaaaa012345678 i-01234567890123456 eni-1235b8ca123456789 123456789010 IPv4 52.213.180.42 10.0.0.62 43416 5001 52.213.180.42 10.0.0.62 6 568 8 1566848875 1566848933 ACCEPT 2 OK
3 vpc-abcdefab012345678 subnet-aaaaaaaa012345678 i-01234567890123456 eni-1235b8ca123456789 123456789010 IPv4 10.0.0.62 52.213.180.42 5001 43416 10.0.0.62 52.213.180.42 6 376 7 1566848875 1566848933 ACCEPT 18 OK
3 vpc-abcdefab012345678 subnet-aaaaaaaa012345678 i-01234567890123456 eni-1235b8ca123456789 123456789010 IPv4 10.0.0.62 52.213.180.42 5001 43416 10.0.0.62 52.213.180.42 6 100 1 1566848875 1566848933 ACCEPT 1 OK
";
        let (recs, _) = parse(text).unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0].node, "i-01234567890123456");
        // No flow-direction in v3: public -> private is read as ingress, so the instance is local.
        assert_eq!(recs[0].local.ip.to_string(), "10.0.0.62");
        assert_eq!(recs[0].bytes_in, 568);
        assert_eq!(recs[0].initiator, Initiator::Remote, "bare SYN from outside: the peer opened");
        assert_eq!(recs[0].connections_opened, 1);
        assert_eq!(recs[1].bytes_out, 376);
        assert_eq!(recs[1].initiator, Initiator::Remote, "our SYN-ACK: the peer opened");
        assert_eq!(recs[2].connections_closed, 1);

        let v5 = "\
version interface-id account-id vpc-id subnet-id instance-id srcaddr dstaddr srcport dstport protocol tcp-flags type pkt-srcaddr pkt-dstaddr region az-id action log-status flow-direction traffic-path pkt-dst-aws-service
5 eni-01234567890123456 123456789012 vpc-0123456789abcdef0 subnet-0123456789abcdef0 i-0123456789abcdef0 10.0.1.5 52.216.0.8 34210 443 6 3 IPv4 10.0.1.5 52.216.0.8 us-east-1 use1-az4 ACCEPT OK egress 8 S3
5 eni-01234567890123456 123456789012 vpc-0123456789abcdef0 subnet-0123456789abcdef0 i-0123456789abcdef0 52.216.0.8 10.0.1.5 443 34210 6 19 IPv4 52.216.0.8 10.0.1.5 us-east-1 use1-az4 ACCEPT OK ingress - -
";
        // A header without the byte counters cannot be priced: refused at the header line.
        let err = parse(v5).unwrap_err().to_string();
        assert!(err.contains("t.log:1: field `bytes`"), "{err}");
        let v5 = v5
            .replace("pkt-dst-aws-service", "pkt-dst-aws-service bytes packets start end")
            .replace("egress 8 S3", "egress 8 S3 1200 10 1700000000 1700000060")
            .replace("ingress - -", "ingress - - 90000 70 1700000000 1700000060");
        let (recs, _) = parse(&v5).unwrap();
        assert_eq!(recs[0].remote.service.as_deref(), Some("aws:S3"));
        assert_eq!(recs[0].local.zone.as_deref(), Some("use1-az4"));
        assert_eq!(recs[0].local.region.as_deref(), Some("us-east-1"));
        assert_eq!(recs[1].bytes_in, 90000);
        assert_eq!(recs[1].local.ip.to_string(), "10.0.1.5", "ingress: the destination is local");
        assert_eq!(recs[1].initiator, Initiator::Local, "SYN-ACK received: we opened it");
    }

    #[test]
    fn errors_name_line_and_field() {
        let text = "\
2 123456789010 eni-1 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK
2 123456789010 eni-1 172.31.16.139 172.31.16.21 20641 22 6 20 42x9 1418530010 1418530070 ACCEPT OK
";
        let e = parse(text).unwrap_err().to_string();
        assert_eq!(e, "t.log:2: field `bytes`: \"42x9\" is not a valid number");
        let e = parse("2 1 eni-1 1.2.3.4 5.6.7.8 1 2 6 1 1 10 20 ACCEPT\n").unwrap_err().to_string();
        assert!(e.contains("t.log:1: expected 14"), "{e}");
        let e = parse("2 1 eni-1 1.2.3.4 5.6.7.8 1 2 6 1 1 30 20 ACCEPT OK\n").unwrap_err().to_string();
        assert!(e.contains("field `end`"), "{e}");
    }
}
