//! Redaction of what `ask` sends: IP addresses become pseudonyms (`ext-3` for a public address,
//! `int-2` for a private one), numbered in the order they are first met in the conversation;
//! with `names`, the workspace's pod, workload, namespace, service and node names become `name-N`.
//! Cloud service labels (`aws:S3 us-east-1`) are not addresses and keep their names.
//!
//! Pseudonyms are numbered, not hashed: a hash of an IPv4 address is undone by hashing all 2^32 of
//! them. The same redactor serves a whole conversation, so an address keeps its pseudonym in every
//! tool result, and `restore` turns Claude's answer back into the real names for the user.

use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub struct Redactor {
    addresses: bool,
    /// Names to replace, longest first (so `checkout-v2` is replaced before `checkout`).
    names: Vec<String>,
    pseudonym: BTreeMap<String, String>,
    counts: BTreeMap<&'static str, usize>,
}

impl Redactor {
    /// `addresses`: replace IP addresses; `names`: the names to replace as whole words.
    pub fn new(addresses: bool, mut names: Vec<String>) -> Redactor {
        names.retain(|n| n.len() >= 2);
        names.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        names.dedup();
        Redactor { addresses, names, pseudonym: BTreeMap::new(), counts: BTreeMap::new() }
    }

    /// Nothing is replaced (`--no-redact`).
    pub fn off() -> Redactor {
        Redactor::new(false, Vec::new())
    }

    /// Every string and object key of a JSON value, redacted.
    pub fn value(&mut self, v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.text(s)),
            Value::Array(a) => Value::Array(a.iter().map(|v| self.value(v)).collect()),
            Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (self.text(k), self.value(v))).collect()),
            other => other.clone(),
        }
    }

    /// A text with its addresses (and names) replaced.
    pub fn text(&mut self, s: &str) -> String {
        let s = if self.addresses { self.addresses_in(s) } else { s.to_string() };
        if self.names.is_empty() { s } else { self.names_in(&s) }
    }

    /// Pseudonyms back to what they stand for (longest first, so `ext-12` is not read as `ext-1`).
    pub fn restore(&self, s: &str) -> String {
        let mut pairs: Vec<(&String, &String)> = self.pseudonym.iter().collect();
        pairs.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(b.1.cmp(a.1)));
        let mut out = s.to_string();
        for (real, pseudo) in pairs {
            out = replace_words(&out, pseudo, real);
        }
        out
    }

    /// The pseudonyms given so far: (real, pseudonym).
    pub fn mapping(&self) -> &BTreeMap<String, String> {
        &self.pseudonym
    }

    fn alias(&mut self, real: &str, kind: &'static str) -> String {
        if let Some(p) = self.pseudonym.get(real) {
            return p.clone();
        }
        let n = self.counts.entry(kind).or_default();
        *n += 1;
        let p = format!("{kind}-{n}");
        self.pseudonym.insert(real.to_string(), p.clone());
        p
    }

    fn addresses_in(&mut self, s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some((start, len, ip)) = next_address(rest) {
            out.push_str(&rest[..start]);
            let kind = if is_private(ip) { "int" } else { "ext" };
            out.push_str(&self.alias(&rest[start..start + len], kind));
            rest = &rest[start + len..];
        }
        out.push_str(rest);
        out
    }

    fn names_in(&mut self, s: &str) -> String {
        let mut out = s.to_string();
        for i in 0..self.names.len() {
            let name = self.names[i].clone();
            if out.contains(&name) {
                let alias = self.alias(&name, "name");
                out = replace_words(&out, &name, &alias);
            }
        }
        out
    }
}

/// A character that continues a word: a name or pseudonym is replaced only where it stands alone.
fn word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'
}

/// `from` replaced by `to` where it is a whole word.
fn replace_words(s: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while let Some(pos) = s[i..].find(from) {
        let a = i + pos;
        let b = a + from.len();
        let before_ok = s[..a].chars().next_back().is_none_or(|c| !word_char(c));
        // A trailing '.' ends a sentence, not a word.
        let after_ok = s[b..].chars().next().is_none_or(|c| {
            !word_char(c) || (c == '.' && !s[b + 1..].starts_with(|c: char| c.is_ascii_alphanumeric()))
        });
        out.push_str(&s[i..a]);
        out.push_str(if before_ok && after_ok { to } else { from });
        i = b;
    }
    out.push_str(&s[i..]);
    out
}

/// The first IP address in `s`: (byte offset, length, address).
fn next_address(s: &str) -> Option<(usize, usize, IpAddr)> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i] as char;
        let starts_word = i == 0 || !(bytes[i - 1] as char).is_ascii_alphanumeric() && bytes[i - 1] != b'.';
        if starts_word && (c.is_ascii_hexdigit() || c == ':') {
            let run = s[i..]
                .find(|c: char| !(c.is_ascii_hexdigit() || c == ':' || c == '.'))
                .map_or(s.len(), |n| i + n);
            let token = s[i..run].trim_end_matches(['.', ':']);
            // `198.51.100.23:8443`: the address before its port.
            let v4 = token.split(':').next().unwrap_or(token);
            if let Ok(a) = v4.parse::<Ipv4Addr>() {
                return Some((i, v4.len(), IpAddr::V4(a)));
            }
            if token.matches(':').count() >= 2 {
                // `[2001:db8::1]:443` and `2001:db8::1` both; a time such as `14:00:00` does not parse.
                if let Ok(v6) = token.parse::<Ipv6Addr>() {
                    return Some((i, token.len(), IpAddr::V6(v6)));
                }
            }
            i = run.max(i + 1);
            continue;
        }
        i += c.len_utf8().max(1);
        while i < bytes.len() && !s.is_char_boundary(i) {
            i += 1;
        }
    }
    None
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || (a.octets()[0] == 100 && a.octets()[1] & 0xc0 == 64)
        }
        IpAddr::V6(a) => {
            a.is_loopback() || (a.segments()[0] & 0xfe00) == 0xfc00 || (a.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn addresses_get_stable_pseudonyms_and_come_back() {
        let mut r = Redactor::new(true, Vec::new());
        let a = r.text("internet 198.51.100.23:8443 <-> 10.0.1.5, then 198.51.100.23 again at 14:00:00Z");
        assert_eq!(a, "internet ext-1:8443 <-> int-1, then ext-1 again at 14:00:00Z");
        let v = r.value(&json!({"52.216.8.20 (aws:S3 via NAT)": ["2001:db8::7", 1.5, "v1.2.3"]}));
        assert_eq!(v, json!({"ext-2 (aws:S3 via NAT)": ["ext-3", 1.5, "v1.2.3"]}));
        assert_eq!(r.restore("ext-1 and ext-3 grew."), "198.51.100.23 and 2001:db8::7 grew.");
    }

    #[test]
    fn names_are_replaced_as_whole_words_only_when_asked() {
        let names = vec!["shop".to_string(), "checkout".to_string(), "checkout-v2".to_string()];
        let mut r = Redactor::new(true, names);
        assert_eq!(
            r.text("shop/Deployment/checkout-v2 -> shop/checkout; shopping"),
            "name-3/Deployment/name-1 -> name-3/name-2; shopping"
        );
        assert_eq!(r.restore("name-1 sends to name-2."), "checkout-v2 sends to checkout.");
        let mut off = Redactor::off();
        assert_eq!(off.text("10.0.0.1 shop"), "10.0.0.1 shop");
    }
}
