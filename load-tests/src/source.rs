//! The vehicles of one connection, interleaved into messages.
//!
//! A vehicle always travels on the same connection, so its batches stay in order (the server
//! keeps per-connection arrival order); each round gives every vehicle one 10-second tick, so
//! all vehicles of a connection advance together through simulated time.
use crate::sim::{VehicleBatch, VehicleSim};
use std::collections::VecDeque;

/// What one send carries: `per_message` vehicles' batches (a forwarding platform multiplexes
/// many terminals), all live or all reissue.
#[derive(Debug)]
pub struct Message {
    pub batches: Vec<VehicleBatch>,
    pub reissue: bool,
}

impl Message {
    pub fn records(&self) -> usize {
        self.batches.iter().map(|b| b.records.len()).sum()
    }
}

pub struct Source {
    pub sims: Vec<VehicleSim>,
    cursor: usize,
    /// Simulated seconds each vehicle runs for.
    max_s: u32,
    per_message: usize,
    live: VecDeque<VehicleBatch>,
    reissue: VecDeque<VehicleBatch>,
    scratch: Vec<VehicleBatch>,
    drained: bool,
}

impl Source {
    pub fn new(sims: Vec<VehicleSim>, max_s: u32, per_message: usize) -> Self {
        Source {
            sims,
            cursor: 0,
            max_s,
            per_message: per_message.max(1),
            live: VecDeque::new(),
            reissue: VecDeque::new(),
            scratch: Vec::new(),
            drained: false,
        }
    }

    fn take(q: &mut VecDeque<VehicleBatch>, n: usize, reissue: bool) -> Message {
        let n = n.min(q.len());
        Message { batches: q.drain(..n).collect(), reissue }
    }

    /// The next message, or `None` when every vehicle has run its simulated time and everything
    /// buffered has been handed out.
    pub fn next_message(&mut self) -> Option<Message> {
        loop {
            if self.reissue.len() >= self.per_message {
                return Some(Self::take(&mut self.reissue, self.per_message, true));
            }
            if self.live.len() >= self.per_message {
                return Some(Self::take(&mut self.live, self.per_message, false));
            }
            if !self.step() {
                if !self.live.is_empty() {
                    return Some(Self::take(&mut self.live, self.per_message, false));
                }
                if !self.reissue.is_empty() {
                    return Some(Self::take(&mut self.reissue, self.per_message, true));
                }
                return None;
            }
        }
    }

    /// Ticks one vehicle; false when there is nothing left to simulate.
    fn step(&mut self) -> bool {
        let n = self.sims.len();
        for _ in 0..n {
            let i = self.cursor;
            self.cursor = (self.cursor + 1) % n;
            let sim = &mut self.sims[i];
            if sim.simulated_s() < self.max_s {
                sim.tick(&mut self.scratch);
                self.enqueue();
                return true;
            }
        }
        if !self.drained {
            self.drained = true;
            for sim in &mut self.sims {
                sim.drain_reissue(&mut self.scratch);
            }
            self.enqueue();
            return !self.reissue.is_empty();
        }
        false
    }

    fn enqueue(&mut self) {
        for b in self.scratch.drain(..) {
            if b.reissue {
                self.reissue.push_back(b);
            } else {
                self.live.push_back(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::vehicle;
    use crate::plant::{Plan, Span};

    #[test]
    fn every_record_is_handed_out_once_in_vehicle_order() {
        let sims: Vec<_> = (0..7)
            .map(|i| {
                let spec = vehicle(3, i, false);
                let plan = if i == 2 {
                    Plan::Offline { gap: Span { start_s: 20, len_s: 60 }, nox: None }
                } else {
                    Plan::Clean
                };
                VehicleSim::new(3, spec, plan, 1_700_000_000_000)
            })
            .collect();
        let mut src = Source::new(sims, 100, 4);
        let mut per_vehicle: std::collections::HashMap<u32, Vec<i64>> = Default::default();
        let mut messages = 0;
        while let Some(m) = src.next_message() {
            messages += 1;
            assert!(m.batches.len() <= 4 && !m.batches.is_empty());
            for b in m.batches {
                assert_eq!(b.reissue, m.reissue);
                per_vehicle.entry(b.vehicle).or_default().extend(b.records.iter().map(|r| r.time_ms));
            }
        }
        assert!(messages >= 18);
        for (v, mut times) in per_vehicle {
            assert_eq!(times.len(), 100, "vehicle {v}");
            times.sort_unstable();
            times.dedup();
            assert_eq!(times.len(), 100);
        }
        assert!(src.sims.iter().all(|s| s.complete_until_ms() == s.t0_ms + 100_000));
    }
}
