//! Per-API-key rate limiting (GCRA via `governor`): a sustained rate plus a burst.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::RateLimitConfig;

/// Most keys tracked before idle ones are forgotten.
const TRACKED_KEYS_MAX: usize = 100_000;

/// A limiter keyed by API key id.
pub struct KeyedLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl KeyedLimiter {
    /// The limiter the config asks for, or `None` when `requests_per_second` is 0.
    pub fn from_config(config: &RateLimitConfig) -> Option<KeyedLimiter> {
        let rate = NonZeroU32::new(config.requests_per_second)?;
        let burst = NonZeroU32::new(config.burst.max(config.requests_per_second)).unwrap_or(rate);
        let quota = Quota::per_second(rate).allow_burst(burst);
        Some(KeyedLimiter {
            limiter: DefaultKeyedRateLimiter::keyed(quota),
            clock: DefaultClock::default(),
        })
    }

    /// `Ok` when the key may send a request now, else the whole seconds to wait.
    pub fn check(&self, key_id: &str) -> Result<(), u64> {
        if self.limiter.len() > TRACKED_KEYS_MAX {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&key_id.to_string())
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(self.clock.now());
                wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_burst_then_refuses_with_a_wait() {
        let limiter = KeyedLimiter::from_config(&RateLimitConfig {
            requests_per_second: 1,
            burst: 3,
        })
        .unwrap();
        for _ in 0..3 {
            assert_eq!(limiter.check("k"), Ok(()));
        }
        assert_eq!(limiter.check("k"), Err(1));
        assert_eq!(
            limiter.check("other"),
            Ok(()),
            "keys are limited separately"
        );
        assert!(KeyedLimiter::from_config(&RateLimitConfig {
            requests_per_second: 0,
            burst: 3
        })
        .is_none());
    }
}
