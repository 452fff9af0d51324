//! One flow, several observers: which observation of a transfer is billed.
//!
//! The same bytes are often reported twice. Agents on two nodes both see in-cluster traffic (A's
//! `bytes_out` is B's `bytes_in`); one agent sees both ends of loopback traffic and of traffic
//! between containers of its node; AWS VPC Flow Logs enabled on a VPC log a flow at the sender's
//! ENI (egress) and at the receiver's (ingress). Priced as if each were the only one, cross-zone
//! transfer between two observed ends would be charged twice per side.
//!
//! Both observations stay stored; this module decides, for pricing and display, which is used:
//!
//! 1. A receiving direction whose remote party names a node that reports traffic itself is that
//!    node's sending direction (the demo and enriched agents name the remote's node).
//! 2. Otherwise the two ends are matched by address: a directed transfer `src -> dst` in one month
//!    (and one side of the period boundary) is observed by *senders* (rows whose local address is
//!    `src`, their `bytes_out`) and by *receivers* (rows whose local address is `dst`, their
//!    `bytes_in`). When both kinds exist, the side that reported more bytes is billed and the other
//!    is not: each observation is a lower bound of what crossed (an agent restarted, a flow log
//!    lost records), and a tie goes to the senders. Addresses that mean "this host" (loopback,
//!    unspecified, link-local) only match on the same node.
//! 3. The billed observation learns what the other end said of itself: a receiver's own workload,
//!    zone and node replace the bare address its sender saw, when the other end is one party.

use crate::model::{Party, Timestamp, TrafficRow};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// Which side of a transfer an observation was made at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The sender's node or ENI (its `bytes_out`).
    Sender,
    /// The receiver's node or ENI (its `bytes_in`).
    Receiver,
}

/// One observer's total for a directed transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Observer {
    pub node: String,
    pub role: Role,
    pub bytes: u64,
}

/// A transfer seen from both ends, and which end's report is billed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeenTwice {
    pub month: Timestamp,
    pub in_period: bool,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub billed: Vec<Observer>,
    pub not_billed: Vec<Observer>,
}

/// The verdict for one row: which of its directions are billed, and who its remote end is.
#[derive(Debug, Clone, Default)]
pub struct RowVerdict {
    pub bill_out: bool,
    pub bill_in: bool,
    /// The remote party as its own observer described it (rule 3), when that is one party.
    pub remote: Option<Party>,
}

#[derive(Debug, Clone, Default)]
pub struct Observations {
    /// Same index as the rows.
    pub rows: Vec<RowVerdict>,
    /// Transfers matched by address (rule 2), in sorted order.
    pub seen_twice: Vec<SeenTwice>,
}

/// `src -> dst` in one month and period side; `scope` is the node for host-local addresses.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct TransferKey<'a> {
    month: Timestamp,
    in_period: bool,
    src: IpAddr,
    dst: IpAddr,
    scope: Option<&'a str>,
}

/// Addresses that name "this host" wherever they are seen: they match only within one node.
pub fn host_local(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_unspecified() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

#[derive(Default)]
struct Seen<'a> {
    /// (node, role) -> bytes, and the rows and directions that make it up.
    observers: BTreeMap<(&'a str, Role), u64>,
    members: Vec<(usize, Role)>,
}

/// Decides, for every row, which directions are billed (see the module documentation).
pub fn decide(rows: &[TrafficRow]) -> Observations {
    let reporting: BTreeSet<&str> = rows.iter().map(|r| r.node.as_str()).collect();
    let mut verdicts: Vec<RowVerdict> = rows
        .iter()
        .map(|r| RowVerdict {
            bill_out: r.bytes_out > 0,
            // Rule 1: the remote's node reports these bytes as its own bytes_out.
            bill_in: r.bytes_in > 0 && !r.remote.node.as_deref().is_some_and(|n| reporting.contains(n)),
            remote: None,
        })
        .collect();

    // Rule 2: group what is left by directed transfer.
    let mut transfers: BTreeMap<TransferKey<'_>, Seen<'_>> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        let (Some(local), Some(remote)) = (r.local.ip, r.remote.ip) else { continue };
        let scope = (host_local(local) || host_local(remote)).then_some(r.node.as_str());
        let directions = [
            (verdicts[i].bill_out, local, remote, Role::Sender, r.bytes_out),
            (verdicts[i].bill_in, remote, local, Role::Receiver, r.bytes_in),
        ];
        for (billed, src, dst, role, bytes) in directions {
            if !billed {
                continue;
            }
            let key = TransferKey { month: r.month, in_period: r.in_period, src, dst, scope };
            let seen = transfers.entry(key).or_default();
            *seen.observers.entry((r.node.as_str(), role)).or_default() += bytes;
            seen.members.push((i, role));
        }
    }

    let mut seen_twice = Vec::new();
    for (key, seen) in &transfers {
        let sum = |role| seen.observers.iter().filter(|((_, r), _)| *r == role).map(|(_, b)| *b).sum::<u64>();
        let (sent, received) = (sum(Role::Sender), sum(Role::Receiver));
        if sent == 0 || received == 0 {
            continue;
        }
        let billed_role = if sent >= received { Role::Sender } else { Role::Receiver };
        for &(i, role) in &seen.members {
            if role != billed_role {
                match role {
                    Role::Sender => verdicts[i].bill_out = false,
                    Role::Receiver => verdicts[i].bill_in = false,
                }
            }
        }
        learn_the_other_end(rows, &mut verdicts, seen, billed_role);
        let observers = |billed: bool| {
            seen.observers
                .iter()
                .filter(|((_, r), _)| (*r == billed_role) == billed)
                .map(|((node, role), bytes)| Observer { node: node.to_string(), role: *role, bytes: *bytes })
                .collect()
        };
        seen_twice.push(SeenTwice {
            month: key.month,
            in_period: key.in_period,
            src: key.src,
            dst: key.dst,
            billed: observers(true),
            not_billed: observers(false),
        });
    }
    Observations { rows: verdicts, seen_twice }
}

/// Rule 3: the billed rows' remote end is the other side's local party, when the other side is
/// one party. Only what the billed row did not know is taken (its own view of the remote wins).
fn learn_the_other_end(rows: &[TrafficRow], verdicts: &mut [RowVerdict], seen: &Seen<'_>, billed: Role) {
    let others: BTreeSet<&Party> =
        seen.members.iter().filter(|(_, role)| *role != billed).map(|(i, _)| &rows[*i].local).collect();
    let [other] = others.into_iter().collect::<Vec<_>>()[..] else { return };
    // The other side's observer is where that party is (rows read from the workspace carry it as
    // `local.node` already).
    let observer = seen.members.iter().find(|(_, role)| *role != billed).map(|(i, _)| rows[*i].node.clone());
    let other = Party { node: other.node.clone().or(observer), ..other.clone() };
    for &(i, role) in &seen.members {
        if role == billed {
            let merged = merge(&rows[i].remote, &other);
            if merged != rows[i].remote {
                verdicts[i].remote = Some(merged);
            }
        }
    }
}

fn merge(seen: &Party, own: &Party) -> Party {
    fn pick(a: &Option<String>, b: &Option<String>) -> Option<String> {
        a.clone().or_else(|| b.clone())
    }
    Party {
        ip: seen.ip.or(own.ip),
        process: pick(&seen.process, &own.process),
        pod: pick(&seen.pod, &own.pod),
        namespace: pick(&seen.namespace, &own.namespace),
        workload_kind: pick(&seen.workload_kind, &own.workload_kind),
        workload_name: pick(&seen.workload_name, &own.workload_name),
        service: pick(&seen.service, &own.service),
        node: pick(&seen.node, &own.node),
        zone: pick(&seen.zone, &own.zone),
        region: pick(&seen.region, &own.region),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn party(ip: &str) -> Party {
        Party { ip: Some(ip.parse().unwrap()), ..Party::default() }
    }

    fn row(node: &str, local: Party, remote: Party, out: u64, inb: u64) -> TrafficRow {
        TrafficRow {
            month: Timestamp::from_secs(1_793_491_200),
            in_period: true,
            node: node.into(),
            local,
            remote,
            bytes_out: out,
            bytes_in: inb,
        }
    }

    #[test]
    fn sender_and_receiver_reports_bill_once_and_the_receiver_names_itself() {
        let mut b = party("10.0.2.101");
        b.zone = Some("use1-az2".into());
        b.workload_name = Some("db".into());
        let rows = vec![
            row("eni-a", party("10.0.1.101"), party("10.0.2.101"), 1000, 0),
            row("eni-b", b.clone(), party("10.0.1.101"), 0, 1000),
        ];
        let o = decide(&rows);
        assert!(o.rows[0].bill_out);
        assert!(!o.rows[1].bill_in);
        let remote = o.rows[0].remote.as_ref().expect("learned from eni-b");
        assert_eq!(remote.zone.as_deref(), Some("use1-az2"));
        assert_eq!(remote.node.as_deref(), Some("eni-b"));
        assert_eq!(o.seen_twice.len(), 1);
        assert_eq!(o.seen_twice[0].billed[0].node, "eni-a");
        assert_eq!(o.seen_twice[0].not_billed[0].node, "eni-b");
    }

    #[test]
    fn the_larger_report_is_billed() {
        let rows = vec![
            row("n1", party("10.0.1.1"), party("10.0.2.2"), 600, 0),
            row("n2", party("10.0.2.2"), party("10.0.1.1"), 0, 1000),
        ];
        let o = decide(&rows);
        assert!(!o.rows[0].bill_out);
        assert!(o.rows[1].bill_in);
    }

    #[test]
    fn loopback_matches_only_on_its_own_node() {
        let lo = || party("127.0.0.1");
        let rows = vec![
            row("n1", lo(), lo(), 500, 0),
            row("n1", lo(), lo(), 0, 500),
            // Another host's loopback is another flow.
            row("n2", lo(), lo(), 0, 700),
        ];
        let o = decide(&rows);
        assert!(o.rows[0].bill_out);
        assert!(!o.rows[1].bill_in);
        assert!(o.rows[2].bill_in);
    }

    #[test]
    fn unmatched_directions_and_named_reporting_nodes_keep_the_old_rule() {
        let mut remote = party("10.0.2.2");
        remote.node = Some("n2".into());
        let rows = vec![
            row("n1", party("10.0.1.1"), remote, 100, 50),
            row("n2", party("10.0.9.9"), party("52.1.2.3"), 10, 20),
        ];
        let o = decide(&rows);
        assert!(o.rows[0].bill_out && !o.rows[0].bill_in);
        assert!(o.rows[1].bill_out && o.rows[1].bill_in);
        assert!(o.seen_twice.is_empty());
    }
}
