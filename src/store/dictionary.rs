//! The dictionaries behind `flow_rows`: each node name and each distinct endpoint description (ip and
//! the [`ENDPOINT_TEXT_FIELDS`]) is stored once, in `nodes` and `endpoints`, and flow rows refer to
//! them by dense integer ids.
//!
//! The workspace keeps them in memory once loaded (one process writes a workspace at a time: DuckDB
//! locks the file), so ingest resolves a record's endpoints with two hash lookups and no query.
//! Entries added by an ingest session are written in its transaction; if the session rolls back they
//! are forgotten again ([`Dictionaries::rollback_to`]), so ids always match the stored tables. A
//! session may start while the one before it is still committing (a pull's next page): it builds on
//! that session's entries, so if that commit fails, both are forgotten.
//!
//! For the hourly rollup each endpoint also maps to its *party*: the subset of its fields that
//! [`ROLLUP_DIMENSIONS`] keep for its side. Party ids live only in memory.

use super::schema::{ENDPOINT_TEXT_FIELDS, ROLLUP_DIMENSIONS, endpoint_texts};
use crate::model::Endpoint;
use crate::model::fxhash::{FxBuild, FxHasher};
use anyhow::{Context, Result, bail};
use duckdb::Connection;
use hashbrown::HashTable;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

type Texts = [Option<Box<str>>; 12];

pub(super) struct StoredEndpoint {
    pub ip: IpAddr,
    pub text: Texts,
    hash: u64,
    /// Party ids for the rollup, computed when first needed (`u32::MAX`: not yet).
    local_party: u32,
    remote_party: u32,
}

/// What the rollup keeps of an endpoint on one side.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct Party {
    pub local: bool,
    pub ip: IpAddr,
    pub text: Texts,
}

#[derive(Default)]
pub(super) struct Dictionaries {
    node_ids: HashMap<Box<str>, u32, FxBuild>,
    pub node_names: Vec<Box<str>>,
    pub endpoints: Vec<StoredEndpoint>,
    endpoint_index: HashTable<u32>,
    /// Entries below these are in the committed tables.
    committed_nodes: usize,
    committed_endpoints: usize,
    party_ids: HashMap<Party, u32, FxBuild>,
    pub parties: Vec<Party>,
    /// Which of the [`ENDPOINT_TEXT_FIELDS`] the rollup keeps for the local and the remote side.
    local_mask: [bool; 12],
    remote_mask: [bool; 12],
}

/// The index hash of an endpoint description. It reads a few words of each field (length, first,
/// middle and last 8 bytes) rather than every byte: the fields' hashes are independent, so the CPU
/// computes them side by side, and hashing every byte of a record's two endpoints (~700 bytes) cost
/// 15% of ingest throughput. Descriptions that differ only elsewhere share a hash and are told apart
/// by the full comparison every lookup makes (a collision costs a compare, never a wrong id).
fn hash_endpoint(ip: IpAddr, texts: &[Option<&str>; 12]) -> u64 {
    let mut h = FxHasher::default();
    ip.hash(&mut h);
    let mut acc = h.finish();
    for t in texts {
        acc = acc.rotate_left(23) ^ t.map_or(0x9E37_79B9_7F4A_7C15, sample_str);
    }
    // Final avalanche: the table uses both the top and the bottom bits.
    (acc ^ (acc >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9) ^ (acc >> 32)
}

/// A hash of a string from its length and its first, middle and last 8 bytes (all of it up to 24).
#[inline]
fn sample_str(s: &str) -> u64 {
    let b = s.as_bytes();
    let n = b.len();
    let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let (first, mid, last) = if n >= 8 {
        (word(0), word(n / 2 - 4), word(n - 8))
    } else {
        let mut w = [0u8; 8];
        w[..n].copy_from_slice(b);
        (u64::from_le_bytes(w), 0, 0)
    };
    let x = (first ^ (n as u64).rotate_left(56)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let y = (mid ^ 0x94D0_49BB_1331_11EB).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^ y.rotate_left(31) ^ last.wrapping_mul(0x94D0_49BB_1331_11EB)
}

fn mask(prefix: &str) -> [bool; 12] {
    ENDPOINT_TEXT_FIELDS.map(|f| ROLLUP_DIMENSIONS.contains(&format!("{prefix}_{f}").as_str()))
}

impl Dictionaries {
    /// Reads `nodes` and `endpoints`. Ids must be dense from 0, as ingest and the migration write them.
    pub fn load(conn: &Connection) -> Result<Self> {
        let mut d =
            Dictionaries { local_mask: mask("local"), remote_mask: mask("remote"), ..Default::default() };
        let mut st = conn.prepare("SELECT node_id, name FROM nodes ORDER BY node_id")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let id: u32 = r.get(0)?;
            let name: String = r.get(1)?;
            if id as usize != d.node_names.len() {
                bail!(
                    "table nodes: node_id {id} out of sequence (expected {}); the workspace is damaged",
                    d.node_names.len()
                );
            }
            d.node_ids.insert(name.clone().into(), id);
            d.node_names.push(name.into());
        }
        let cols = std::iter::once("ip").chain(ENDPOINT_TEXT_FIELDS).collect::<Vec<_>>().join(", ");
        let mut st =
            conn.prepare(&format!("SELECT endpoint_id, {cols} FROM endpoints ORDER BY endpoint_id"))?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let id: u32 = r.get(0)?;
            if id as usize != d.endpoints.len() {
                bail!(
                    "table endpoints: endpoint_id {id} out of sequence (expected {}); the workspace is damaged",
                    d.endpoints.len()
                );
            }
            let ip: String = r.get(1)?;
            let ip: IpAddr =
                ip.parse().with_context(|| format!("table endpoints, endpoint_id {id}: ip {ip:?}"))?;
            let mut text: Texts = Default::default();
            for (i, t) in text.iter_mut().enumerate() {
                *t = r.get::<_, Option<String>>(2 + i)?.map(Into::into);
            }
            d.push_endpoint(ip, text);
        }
        d.committed_nodes = d.node_names.len();
        d.committed_endpoints = d.endpoints.len();
        Ok(d)
    }

    fn push_endpoint(&mut self, ip: IpAddr, text: Texts) -> u32 {
        let borrowed: [Option<&str>; 12] = std::array::from_fn(|i| text[i].as_deref());
        let hash = hash_endpoint(ip, &borrowed);
        let id = self.endpoints.len() as u32;
        self.endpoints.push(StoredEndpoint { ip, text, hash, local_party: u32::MAX, remote_party: u32::MAX });
        let endpoints = &self.endpoints;
        self.endpoint_index.insert_unique(hash, id, |&i| endpoints[i as usize].hash);
        id
    }

    pub fn node_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.node_ids.get(name) {
            return id;
        }
        let id = self.node_names.len() as u32;
        self.node_ids.insert(name.into(), id);
        self.node_names.push(name.into());
        id
    }

    /// The id of the endpoint's description (ip and text fields; port and pid are not part of it).
    pub fn endpoint_id(&mut self, e: &Endpoint) -> u32 {
        let texts = endpoint_texts(e);
        let hash = hash_endpoint(e.ip, &texts);
        let endpoints = &self.endpoints;
        let found = self.endpoint_index.find(hash, |&i| {
            let s = &endpoints[i as usize];
            s.ip == e.ip && s.text.iter().zip(&texts).all(|(a, b)| a.as_deref() == *b)
        });
        match found {
            Some(&id) => id,
            None => self.push_endpoint(e.ip, texts.map(|t| t.map(Into::into))),
        }
    }

    /// The rollup party of endpoint `id` on the local (`local = true`) or remote side.
    pub fn party_id(&mut self, id: u32, local: bool) -> u32 {
        let e = &self.endpoints[id as usize];
        let cached = if local { e.local_party } else { e.remote_party };
        if cached != u32::MAX {
            return cached;
        }
        let mask = if local { &self.local_mask } else { &self.remote_mask };
        let party = Party {
            local,
            ip: e.ip,
            text: std::array::from_fn(|i| if mask[i] { e.text[i].clone() } else { None }),
        };
        let pid = match self.party_ids.get(&party) {
            Some(&p) => p,
            None => {
                let p = self.parties.len() as u32;
                self.party_ids.insert(party.clone(), p);
                self.parties.push(party);
                p
            }
        };
        let e = &mut self.endpoints[id as usize];
        if local {
            e.local_party = pid;
        } else {
            e.remote_party = pid;
        }
        pid
    }

    /// Nodes added since `from` (a session's start), with their ids.
    pub fn new_nodes(&self, from: Mark) -> impl Iterator<Item = (u32, &str)> {
        self.node_names[from.nodes..].iter().enumerate().map(move |(i, n)| ((from.nodes + i) as u32, &**n))
    }

    /// Endpoints added since `from` (a session's start), with their ids.
    pub fn new_endpoints(&self, from: Mark) -> impl Iterator<Item = (u32, &StoredEndpoint)> {
        self.endpoints[from.endpoints..]
            .iter()
            .enumerate()
            .map(move |(i, e)| ((from.endpoints + i) as u32, e))
    }

    /// Where the entries added from now on start (a session's start, or its end once it is sent to
    /// commit).
    pub fn mark(&self) -> Mark {
        Mark { nodes: self.node_names.len(), endpoints: self.endpoints.len() }
    }

    /// Entries below `mark` are now in the tables (a session ending there committed).
    pub fn committed_to(&mut self, mark: Mark) {
        self.committed_nodes = self.committed_nodes.max(mark.nodes);
        self.committed_endpoints = self.committed_endpoints.max(mark.endpoints);
    }

    /// Forgets the entries from `mark` on: those of a session that did not commit, and of any session
    /// after it (their rows may refer to them, so they cannot commit either). Committed entries stay.
    pub fn rollback_to(&mut self, mark: Mark) {
        let n = mark.nodes.max(self.committed_nodes);
        let e = mark.endpoints.max(self.committed_endpoints);
        if n < self.node_names.len() {
            for name in self.node_names.drain(n..) {
                self.node_ids.remove(&name);
            }
        }
        if e < self.endpoints.len() {
            self.endpoints.truncate(e);
            self.endpoint_index.retain(|&mut id| (id as usize) < e);
        }
    }
}

/// A position in the dictionaries: how many nodes and endpoints there were.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Mark {
    nodes: usize,
    endpoints: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Endpoint;

    /// Descriptions that differ only in bytes the index hash does not read share a hash, and still
    /// get their own ids: the full comparison tells them apart.
    #[test]
    fn descriptions_differing_where_the_hash_does_not_look_get_their_own_ids() {
        let mut d = Dictionaries::default();
        let base = Endpoint::addr("10.0.0.1".parse().unwrap(), 80);
        let with = |c: char| {
            let mut e = base.clone();
            // 40 bytes: sampled at 0..8, 16..24 and 32..40; byte 10 is not read by the hash.
            let mut cgroup = "/kubepods/burstable/pod-0000000000000000000".to_string();
            cgroup.truncate(40);
            cgroup.replace_range(10..11, &c.to_string());
            e.cgroup = Some(cgroup);
            e
        };
        let (a, b, c) = (with('x'), with('y'), with('z'));
        let ta = endpoint_texts(&a);
        assert_eq!(hash_endpoint(a.ip, &ta), hash_endpoint(b.ip, &endpoint_texts(&b)), "same sampled bytes");
        let ids = [d.endpoint_id(&a), d.endpoint_id(&b), d.endpoint_id(&c)];
        assert_eq!(ids, [0, 1, 2]);
        assert_eq!([d.endpoint_id(&c), d.endpoint_id(&a), d.endpoint_id(&b)], [2, 0, 1]);
        // Short fields are hashed whole: one differing byte changes the hash.
        let mut p = base.clone();
        p.process = Some("envoy".into());
        let mut q = base.clone();
        q.process = Some("envoz".into());
        assert_ne!(hash_endpoint(p.ip, &endpoint_texts(&p)), hash_endpoint(q.ip, &endpoint_texts(&q)));
        // None and an empty string are different descriptions.
        let mut empty = base.clone();
        empty.process = Some(String::new());
        assert_ne!(d.endpoint_id(&base), d.endpoint_id(&empty));
    }
}
