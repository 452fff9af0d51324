//! Agents as a live feed for `egressor top`: reads new batches after the agents' current head
//! without acknowledging them, so `egressor pull` still gets everything.

use super::pull::AgentTarget;
use super::pull::fetch_page;
use crate::model::{FeedTick, FlowFeed, Timestamp};
use std::time::Duration;

struct Cursor {
    target: AgentTarget,
    instance: String,
    after: u64,
}

pub struct AgentFeed {
    client: reqwest::blocking::Client,
    cursors: Vec<Cursor>,
    last: Timestamp,
}

impl AgentFeed {
    /// Connects to every agent and skips what is already spooled: `top` shows traffic from now on.
    pub fn connect(targets: Vec<AgentTarget>, now: Timestamp) -> anyhow::Result<Self> {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build()?;
        let mut cursors = Vec::new();
        for target in targets {
            let base = target.url.trim_end_matches('/').to_string();
            let (mut instance, mut after) = (String::new(), 0);
            loop {
                let page = fetch_page(&client, &base, target.token.as_deref(), &instance, after, 1000)?;
                instance = page.instance;
                after = page.cursor;
                if !page.more {
                    break;
                }
            }
            cursors.push(Cursor { target: AgentTarget { url: base, token: target.token }, instance, after });
        }
        Ok(AgentFeed { client, cursors, last: now })
    }
}

impl FlowFeed for AgentFeed {
    fn tick(&mut self) -> anyhow::Result<Option<FeedTick>> {
        let mut records = Vec::new();
        for c in &mut self.cursors {
            loop {
                let page = fetch_page(
                    &self.client,
                    &c.target.url,
                    c.target.token.as_deref(),
                    &c.instance,
                    c.after,
                    200,
                )?;
                if page.instance != c.instance {
                    c.instance = page.instance.clone();
                }
                c.after = page.cursor;
                records.extend(page.batches.into_iter().flat_map(|b| b.records));
                if !page.more {
                    break;
                }
            }
        }
        let now = Timestamp::now();
        let start = self.last;
        self.last = now;
        Ok(Some(FeedTick { records, start, end: now }))
    }

    fn describe(&self) -> String {
        let urls: Vec<&str> = self.cursors.iter().map(|c| c.target.url.as_str()).collect();
        format!("agents {}", urls.join(", "))
    }
}
