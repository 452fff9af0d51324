//! Agents as a live feed for `egressor top`: reads new batches after the agents' current head
//! without acknowledging them, so `egressor pull` still gets everything.

use super::link::AgentLink;
use super::pull::fetch_page;
use crate::model::{FeedTick, FlowFeed, Timestamp};

struct Cursor {
    link: Box<dyn AgentLink>,
    instance: String,
    after: u64,
}

pub struct AgentFeed {
    cursors: Vec<Cursor>,
    last: Timestamp,
}

impl AgentFeed {
    /// Connects to every agent and skips what is already spooled: `top` shows traffic from now on.
    pub fn connect(links: Vec<Box<dyn AgentLink>>, now: Timestamp) -> anyhow::Result<Self> {
        let mut cursors = Vec::new();
        for link in links {
            let (mut instance, mut after) = (String::new(), 0);
            loop {
                let page = fetch_page(link.as_ref(), &instance, after, 1000)?;
                instance = page.instance;
                after = page.cursor;
                if !page.more {
                    break;
                }
            }
            cursors.push(Cursor { link, instance, after });
        }
        Ok(AgentFeed { cursors, last: now })
    }
}

impl FlowFeed for AgentFeed {
    fn tick(&mut self) -> anyhow::Result<Option<FeedTick>> {
        let mut records = Vec::new();
        for c in &mut self.cursors {
            loop {
                let page = fetch_page(c.link.as_ref(), &c.instance, c.after, 200)?;
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
        let names: Vec<&str> = self.cursors.iter().map(|c| c.link.name()).collect();
        format!("agents {}", names.join(", "))
    }
}
