//! What the workspace keeps of anomalies: the hourly traffic they are computed from (read from
//! the rollups), and each finding's state as the user set it (`anomaly_state`). Findings are not
//! stored: they are recomputed, deterministically, and their stable ids join them to their state.

use super::Workspace;
use super::query::{LOCAL_HAS, PARTY_COLS, REMOTE_HAS, party_from};
use crate::model::{HourlyTraffic, Timestamp};
use anyhow::{Result, bail};
use duckdb::params;
use std::collections::BTreeMap;

pub(crate) const CREATE_SQL: &str = "
CREATE TABLE anomaly_state (
    anomaly_id VARCHAR PRIMARY KEY,
    state VARCHAR NOT NULL,
    changed_at TIMESTAMP NOT NULL,
    kind VARCHAR NOT NULL,
    subject VARCHAR NOT NULL,
    started_at TIMESTAMP NOT NULL
);";

/// A state the user gave a finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnomalyState {
    pub state: String,
    pub changed_at: Timestamp,
}

/// A labelled event the demo injected (ground truth for the detectors).
#[derive(Debug, Clone)]
pub struct DemoEvent {
    pub kind: String,
    pub started_at: Timestamp,
    pub ended_at: Timestamp,
    pub subject: String,
    pub remote: Option<String>,
}

impl Workspace {
    /// Traffic per hour and (node, local party, remote party) in `[since, until)`, sorted.
    pub fn hourly_traffic(&self, since: Timestamp, until: Timestamp) -> Result<Vec<HourlyTraffic>> {
        let cols = |side: &str, has: &[bool; 10]| -> Vec<String> {
            PARTY_COLS.iter().zip(has).filter(|(_, h)| **h).map(|(c, _)| format!("{side}_{c}")).collect()
        };
        let mut dims = vec!["node".to_string()];
        dims.extend(cols("local", &LOCAL_HAS));
        dims.extend(cols("remote", &REMOTE_HAS));
        let sql = format!(
            "SELECT epoch_us(hour), {dims}, sum(bytes_out), sum(bytes_in), sum(connections_opened)
             FROM flows_hourly WHERE hour >= make_timestamp(?) AND hour < make_timestamp(?)
             GROUP BY ALL ORDER BY ALL",
            dims = dims.join(", ")
        );
        let n_local = LOCAL_HAS.iter().filter(|h| **h).count();
        let n_remote = REMOTE_HAS.iter().filter(|h| **h).count();
        let mut st = self.conn.prepare(&sql)?;
        let mut rows = st.query(params![since.micros(), until.micros()])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let hour: i64 = r.get(0)?;
            let node: String = r.get(1)?;
            let mut local = party_from(r, 2, &LOCAL_HAS)?;
            local.node = Some(node.clone());
            let remote = party_from(r, 2 + n_local, &REMOTE_HAS)?;
            let at = 2 + n_local + n_remote;
            let (o, i, c): (i128, i128, i128) = (r.get(at)?, r.get(at + 1)?, r.get(at + 2)?);
            out.push(HourlyTraffic {
                hour: Timestamp::from_micros(hour),
                node,
                local,
                remote,
                bytes_out: o as u64,
                bytes_in: i as u64,
                connections: c as u64,
            });
        }
        Ok(out)
    }

    /// The state of every finding the user changed.
    pub fn anomaly_states(&self) -> Result<BTreeMap<String, AnomalyState>> {
        let mut st =
            self.conn.prepare("SELECT anomaly_id, state, epoch_us(changed_at) FROM anomaly_state")?;
        let rows =
            st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (id, state, at) = row?;
            out.insert(id, AnomalyState { state, changed_at: Timestamp::from_micros(at) });
        }
        Ok(out)
    }

    /// Sets a finding's state (`open`, `acknowledged`, `resolved`), keeping what it was about.
    pub fn set_anomaly_state(
        &self,
        id: &str,
        state: &str,
        at: Timestamp,
        (kind, subject, started_at): (&str, &str, Timestamp),
    ) -> Result<()> {
        if !["open", "acknowledged", "resolved"].contains(&state) {
            bail!("unknown anomaly state {state:?} (open, acknowledged, resolved)");
        }
        self.conn.execute(
            "INSERT INTO anomaly_state VALUES (?, ?, make_timestamp(?), ?, ?, make_timestamp(?))
             ON CONFLICT (anomaly_id) DO UPDATE SET state = excluded.state, changed_at = excluded.changed_at",
            params![id, state, at.micros(), kind, subject, started_at.micros()],
        )?;
        Ok(())
    }

    /// The demo's labelled events (what `demo` injected), oldest first.
    pub fn demo_events(&self) -> Result<Vec<DemoEvent>> {
        let mut st = self.conn.prepare(
            "SELECT kind, epoch_us(started_at), epoch_us(ended_at), subject, remote FROM demo_events
             ORDER BY started_at, kind",
        )?;
        let rows = st.query_map([], |r| {
            Ok(DemoEvent {
                kind: r.get(0)?,
                started_at: Timestamp::from_micros(r.get(1)?),
                ended_at: Timestamp::from_micros(r.get(2)?),
                subject: r.get(3)?,
                remote: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
