//! Rate budgets so that Telegram rarely has to answer 429: token buckets per bot,
//! per chat (per second) and per group (per minute), kept in this process.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// One rate: `per_sec` tokens per second, bursting to `burst`.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    /// Refill per second.
    pub per_sec: f64,
    /// Bucket size.
    pub burst: f64,
}

/// Token buckets by key.
#[derive(Default)]
pub struct Budgets {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Budgets {
    /// Empty budgets.
    pub fn new() -> Self {
        Self::default()
    }

    /// Take one token from every `(key, rate)` if all have one; otherwise take
    /// nothing and return how long until they would.
    pub fn try_take(&self, wants: &[(&str, Rate)]) -> Result<(), Duration> {
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait = Duration::ZERO;
        for (key, rate) in wants {
            let b = map.get(*key).copied().unwrap_or(Bucket {
                tokens: rate.burst,
                at: now,
            });
            let tokens =
                (b.tokens + now.duration_since(b.at).as_secs_f64() * rate.per_sec).min(rate.burst);
            if tokens < 1.0 {
                wait = wait.max(Duration::from_secs_f64((1.0 - tokens) / rate.per_sec));
            }
        }
        if !wait.is_zero() {
            return Err(wait);
        }
        for (key, rate) in wants {
            let b = map.get(*key).copied().unwrap_or(Bucket {
                tokens: rate.burst,
                at: now,
            });
            let tokens =
                (b.tokens + now.duration_since(b.at).as_secs_f64() * rate.per_sec).min(rate.burst);
            map.insert(
                (*key).to_string(),
                Bucket {
                    tokens: tokens - 1.0,
                    at: now,
                },
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_wait() {
        let b = Budgets::new();
        let r = Rate {
            per_sec: 1.0,
            burst: 2.0,
        };
        assert!(b.try_take(&[("chat", r)]).is_ok());
        assert!(b.try_take(&[("chat", r)]).is_ok());
        let wait = b.try_take(&[("chat", r)]).expect_err("empty");
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
        assert!(
            b.try_take(&[("other", r)]).is_ok(),
            "other keys are independent"
        );
    }

    #[test]
    fn all_or_nothing() {
        let b = Budgets::new();
        let small = Rate {
            per_sec: 0.001,
            burst: 1.0,
        };
        let big = Rate {
            per_sec: 100.0,
            burst: 100.0,
        };
        assert!(b.try_take(&[("a", small), ("b", big)]).is_ok());
        assert!(b.try_take(&[("a", small), ("b", big)]).is_err());
        // "b" was not charged for the refused attempt: 99 left.
        for _ in 0..99 {
            assert!(b.try_take(&[("b", big)]).is_ok());
        }
    }
}
