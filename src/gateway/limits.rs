//! Per-connection frame-rate limit: a token bucket, so a burst after a blind spot (reissue) passes
//! and a terminal stuck in a send loop does not starve the others.
use std::time::Instant;

pub struct FrameBudget {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl FrameBudget {
    pub fn new(rate: f64, burst: f64) -> Self {
        let burst = burst.max(1.0);
        FrameBudget { rate: rate.max(0.1), burst, tokens: burst, last: Instant::now() }
    }

    /// Takes one frame's token; false when over the limit.
    pub fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let t = Instant::now();
        let mut b = FrameBudget::new(10.0, 5.0);
        assert_eq!((0..10).filter(|_| b.take(t)).count(), 5);
        assert!(b.take(t + Duration::from_millis(100)));
        assert!(!b.take(t + Duration::from_millis(100)));
    }
}
