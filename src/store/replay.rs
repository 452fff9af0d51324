//! The workspace as a live feed for `egressor top --replay`: flows are played back in window order,
//! `speed` seconds of recorded time per second of wall time.

use super::{FlowFilter, Workspace};
use crate::model::{FeedTick, FlowFeed, Timestamp};

pub struct ReplayFeed<'w> {
    ws: &'w Workspace,
    pos: Timestamp,
    end: Timestamp,
    /// Recorded microseconds per tick.
    step: i64,
    speed: f64,
}

impl<'w> ReplayFeed<'w> {
    pub fn new(ws: &'w Workspace, since: Timestamp, until: Timestamp, tick_secs: f64, speed: f64) -> Self {
        let step = ((tick_secs * speed) * 1e6).max(1.0) as i64;
        ReplayFeed { ws, pos: since, end: until, step, speed }
    }

    /// All of the range in one tick (`top --once --replay`).
    pub fn whole(ws: &'w Workspace, since: Timestamp, until: Timestamp) -> Self {
        ReplayFeed { ws, pos: since, end: until, step: (until.micros() - since.micros()).max(1), speed: 0.0 }
    }
}

impl FlowFeed for ReplayFeed<'_> {
    fn tick(&mut self) -> anyhow::Result<Option<FeedTick>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let start = self.pos;
        let end = self.pos.add_micros(self.step).min(self.end);
        let mut records = Vec::new();
        self.ws.for_each_flow(&FlowFilter { since: Some(start), until: Some(end), limit: None }, |r| {
            records.push(r);
            Ok(())
        })?;
        self.pos = end;
        Ok(Some(FeedTick { records, start, end }))
    }

    fn describe(&self) -> String {
        if self.speed > 0.0 { format!("replay {}x at {}", self.speed, self.pos) } else { "replay".into() }
    }
}
