//! Token-bucket rate limits per account, kept in memory on each replica (so with `n`
//! replicas an account gets at most `n` times the configured rate).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket per key: `rate` tokens per second, at most `burst` saved.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// A limiter refilling `rate` tokens per second up to `burst`.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `cost` tokens for `key`, or says how long until they are available.
    pub fn check(&self, key: &str, cost: f64) -> Result<(), Duration> {
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(key.to_owned()).or_insert((self.burst, now));
        let elapsed = now.saturating_duration_since(entry.1).as_secs_f64();
        entry.0 = (entry.0 + elapsed * self.rate).min(self.burst);
        entry.1 = now;
        if entry.0 >= cost {
            entry.0 -= cost;
            Ok(())
        } else {
            let wait = (cost - entry.0) / self.rate;
            Err(Duration::from_secs_f64(wait.clamp(0.0, 86_400.0)))
        }
    }

    /// Drops buckets that are full again (they carry no state).
    pub fn prune(&self) {
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (rate, burst) = (self.rate, self.burst);
        map.retain(|_, (tokens, at)| {
            *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_empties_and_reports_wait() {
        let l = RateLimiter::new(1.0, 2.0);
        assert!(l.check("a", 1.0).is_ok());
        assert!(l.check("a", 1.0).is_ok());
        let wait = l.check("a", 1.0).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        assert!(l.check("b", 1.0).is_ok());
    }
}
