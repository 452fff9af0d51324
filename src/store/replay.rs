//! The workspace as a live feed for `egressor top --replay`: flows are played back in window order,
//! `speed` seconds of recorded time per second of wall time.
//!
//! A record is spread over its window: a tick gets the part of each record that overlaps it, in
//! proportion to time (as the hourly rollup spreads a record over hours). Without that, a
//! 10-minute window's bytes would all land in one 250 ms tick and every rate would read zero in
//! between.

use super::Workspace;
use crate::model::{FeedTick, FlowFeed, FlowRecord, Timestamp};

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
        self.ws.for_each_flow_overlapping(start, end, |r| {
            if let Some(part) = part_within(r, start, end) {
                records.push(part);
            }
            Ok(())
        })?;
        self.pos = end;
        Ok(Some(FeedTick { records, start, end }))
    }

    fn describe(&self) -> String {
        if self.speed > 0.0 { format!("replay {}x at {}", self.speed, self.pos) } else { "replay".into() }
    }
}

/// The part of `r` inside `[start, end)`: its window cut to the tick and its measures scaled by the
/// share of its window the tick holds. Shares are differences of rounded cumulative amounts, so
/// the parts of a record over consecutive ticks add up to it exactly. Connections opened count in
/// the tick holding the window's start, closed in the one holding its end.
pub fn part_within(r: FlowRecord, start: Timestamp, end: Timestamp) -> Option<FlowRecord> {
    let (ws, we) = (r.window_start.micros(), r.window_end.micros());
    if we <= ws {
        return (ws >= start.micros() && ws < end.micros()).then_some(r);
    }
    let (from, to) = (ws.max(start.micros()), we.min(end.micros()));
    if from >= to {
        return None;
    }
    let share = |m: u64| crate::model::share_of_window(m, (ws, we), (from, to));
    Some(FlowRecord {
        window_start: Timestamp::from_micros(from),
        window_end: Timestamp::from_micros(to),
        bytes_out: share(r.bytes_out),
        bytes_in: share(r.bytes_in),
        packets_out: share(r.packets_out),
        packets_in: share(r.packets_in),
        connections_opened: if from == ws { r.connections_opened } else { 0 },
        connections_closed: if to == we { r.connections_closed } else { 0 },
        ..r
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, Initiator, Proto};

    /// Regression (issue "Truth", periods): in `top --replay --speed 60` a 10-minute window's bytes
    /// landed in one tick, so every edge read 0 b/s between them.
    #[test]
    fn a_record_is_played_back_over_its_window_and_its_parts_add_up() {
        let t0 = Timestamp::from_secs(1_793_491_200);
        let r = FlowRecord {
            window_start: t0,
            window_end: t0.add_micros(600_000_000),
            node: "n".into(),
            local: Endpoint::addr("10.0.1.1".parse().unwrap(), 40000),
            remote: Endpoint::addr("10.0.2.2".parse().unwrap(), 443),
            proto: Proto::Tcp,
            ip_version: 4,
            initiator: Initiator::Local,
            bytes_out: 600_001,
            bytes_in: 7,
            packets_out: 100,
            packets_in: 3,
            connections_opened: 1,
            connections_closed: 1,
            batch_id: None,
            source: None,
        };
        // 15-second ticks (250 ms at 60x): 40 ticks, each with ~1/40 of the bytes.
        let step = 15_000_000;
        let parts: Vec<FlowRecord> = (0..40)
            .filter_map(|i| part_within(r.clone(), t0.add_micros(i * step), t0.add_micros((i + 1) * step)))
            .collect();
        assert_eq!(parts.len(), 40);
        assert!(parts.iter().all(|p| (15_000..=15_001).contains(&p.bytes_out)), "even share per tick");
        assert_eq!(parts.iter().map(|p| p.bytes_out).sum::<u64>(), 600_001);
        assert_eq!(parts.iter().map(|p| p.bytes_in).sum::<u64>(), 7);
        assert_eq!(parts.iter().map(|p| p.packets_out).sum::<u64>(), 100);
        assert_eq!(parts.iter().map(|p| p.connections_opened).sum::<u32>(), 1);
        assert_eq!(parts[39].connections_closed, 1);
        assert!(part_within(r, t0.add_micros(600_000_000), t0.add_micros(700_000_000)).is_none());
    }
}
