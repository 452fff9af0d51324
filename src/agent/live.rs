//! Local capture as a live feed for `egressor top`: the agent's capture and windowing run in-process,
//! with no spool and no server.

use super::window::Windower;
use crate::capture::EventSource;
use crate::model::{FeedTick, FlowFeed, Timestamp};
use anyhow::Context;

pub struct LocalFeed {
    source: Box<dyn EventSource>,
    windower: Windower,
    last: Timestamp,
    node: String,
}

impl LocalFeed {
    pub fn new(source: Box<dyn EventSource>, windower: Windower, node: &str, now: Timestamp) -> Self {
        LocalFeed { source, windower, last: now, node: node.to_string() }
    }
}

impl FlowFeed for LocalFeed {
    fn tick(&mut self) -> anyhow::Result<Option<FeedTick>> {
        let drain = self.source.drain().context("draining kernel counters")?;
        let now = Timestamp::now();
        let out = self.windower.window(drain, self.last, now, "live");
        let start = self.last;
        self.last = now;
        Ok(Some(FeedTick { records: out.records, start, end: now }))
    }

    fn describe(&self) -> String {
        format!("local capture on {}", self.node)
    }
}
