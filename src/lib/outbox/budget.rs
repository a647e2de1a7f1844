//! Rate budgets so that Telegram rarely has to answer 429: token buckets per bot,
//! per chat (per second) and per group (per minute), kept in this process.
//!
//! One [`Budgets`] is shared by everything in a process that calls the Bot API on a
//! schedule it chooses: the outbox worker inside `serve` charges it for every message
//! and the socket code for every typing action ([`typing_rates`]). Budgets are not
//! shared between processes: each `serve` node and each `chatorical worker` keeps its
//! own, so N processes may together reach N times a budget (Telegram's 429 and its
//! `retry_after` are still honoured by the worker).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::config::WorkerSettings;

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

/// The budgets one message into the lane `tg:<tenant>:<chat>` takes from: the
/// tenant's bot (per second), the chat (per second) and the group (per minute).
pub fn message_rates(settings: &WorkerSettings, lane: &str) -> Vec<(String, Rate)> {
    let mut parts = lane.splitn(3, ':');
    let (_, tenant, chat) = (
        parts.next(),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let s = settings;
    vec![
        (
            bot_key(tenant),
            Rate {
                per_sec: f64::from(s.per_bot_per_sec),
                burst: f64::from(s.per_bot_per_sec),
            },
        ),
        (
            format!("chat:{tenant}:{chat}"),
            Rate {
                per_sec: f64::from(s.per_chat_per_sec),
                burst: f64::from(s.per_chat_per_sec).max(1.0),
            },
        ),
        (
            format!("group:{tenant}:{chat}"),
            Rate {
                per_sec: f64::from(s.per_group_per_min) / 60.0,
                burst: f64::from(s.per_group_per_min),
            },
        ),
    ]
}

/// The budgets one typing action in the tenant's group `chat` takes from: the same
/// per-bot and per-chat buckets as its messages, and a typing share of the chat — at
/// most half the per-chat rate (one action of burst) — so that typing can never use
/// the whole chat budget and messages always keep the other half. Not the per-minute
/// group budget: Telegram's 20 a minute counts messages, and a typing visitor must not
/// hold up everyone's messages for a minute.
pub fn typing_rates(settings: &WorkerSettings, tenant: &str, chat: i64) -> Vec<(String, Rate)> {
    let lane = super::telegram_lane(tenant, chat);
    let mut rates = message_rates(settings, &lane);
    rates.truncate(2);
    rates.push((
        format!("typing:{tenant}:{chat}"),
        Rate {
            per_sec: f64::from(settings.per_chat_per_sec) / 2.0,
            burst: 1.0,
        },
    ));
    rates
}

fn bot_key(tenant: &str) -> String {
    format!("bot:{tenant}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(v: &[(String, Rate)]) -> Vec<(&str, Rate)> {
        v.iter().map(|(k, r)| (k.as_str(), *r)).collect()
    }

    #[test]
    fn typing_shares_the_bot_and_chat_buckets_of_messages() {
        let s = WorkerSettings {
            per_bot_per_sec: 30,
            per_chat_per_sec: 2,
            per_group_per_min: 20,
            ..WorkerSettings::default()
        };
        let msg = message_rates(&s, &crate::outbox::telegram_lane("t1", -100));
        let typing = typing_rates(&s, "t1", -100);
        assert_eq!(msg[0].0, typing[0].0);
        assert_eq!(msg[1].0, typing[1].0);
        assert!(typing.iter().all(|(k, _)| !k.starts_with("group:")));
        assert_eq!(typing[2].1.per_sec, 1.0, "half the per-chat rate");
        // Typing takes from the chat bucket that messages use.
        let b = Budgets::new();
        assert!(b.try_take(&refs(&typing)).is_ok());
        assert!(
            b.try_take(&refs(&typing)).is_err(),
            "typing share: one action of burst"
        );
        assert!(
            b.try_take(&refs(&msg)).is_ok(),
            "messages keep the rest of the chat budget"
        );
        assert!(
            b.try_take(&refs(&msg)).is_err(),
            "chat bucket (2) used up by typing + message"
        );
    }

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
