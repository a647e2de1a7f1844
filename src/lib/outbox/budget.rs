//! Rate budgets so that Telegram never has to answer 429: at most N calls in any
//! window, per bot and per chat (N a second) and per group (N a minute), kept in this
//! process.
//!
//! A budget is a sliding window, as Telegram states its limits ("no more than 20
//! messages per minute in a group"): a call is allowed when fewer than `max` calls
//! were charged to the key within the last `per`. (A token bucket of the same rate
//! and burst would let twice as many through in a window: a full bucket of 20, then
//! 20 more refilled within the minute.)
//!
//! One [`Budgets`] is shared by everything in a process that calls the Bot API on a
//! schedule it chooses: the Telegram delivery charges it right before every call that
//! posts into a group (a message, an opening card, a topic created, renamed, closed,
//! reopened or deleted, an operator's, quota, dunning or backlog notice — every one a
//! `Job` of the outbox — so a first message that opens a topic with its card costs
//! three), and the socket code charges it for every typing action ([`typing_rates`]:
//! the group's budget too, within half of it). Nothing else in the code posts into a
//! group: the other Bot API calls (getMe, getChat, getChatMember, setWebhook,
//! deleteWebhook, getWebhookInfo, getUpdates) post nothing. The outbox worker only looks
//! ([`Budgets::check`]) so that it does not claim a lane that could not go yet.
//! Budgets are not shared between processes: each `serve` node and each `chatorical
//! worker` process keeps its own, so N processes may together reach N times a budget
//! (Telegram's 429 and its `retry_after` are still honoured by the worker).

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::config::WorkerSettings;

/// At most `max` calls in any window of `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Calls allowed in one window (0 is treated as 1).
    pub max: u32,
    /// The window.
    pub per: Duration,
}

impl Rate {
    fn max(self) -> usize {
        usize::try_from(self.max.max(1)).unwrap_or(usize::MAX)
    }
}

/// When each key was charged, within its window.
#[derive(Default)]
pub struct Budgets {
    charged: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// How long until `log` has room under `rate` at `now` (zero: now). Forgets charges
/// older than the window.
fn wait_in(log: &mut VecDeque<Instant>, rate: Rate, now: Instant) -> Duration {
    while log
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= rate.per)
    {
        log.pop_front();
    }
    let max = rate.max();
    if log.len() < max {
        return Duration::ZERO;
    }
    // The charge that must leave the window before one more fits.
    let oldest = log[log.len() - max];
    (oldest + rate.per).saturating_duration_since(now)
}

impl Budgets {
    /// Empty budgets.
    pub fn new() -> Self {
        Self::default()
    }

    fn wait(&self, wants: &[(&str, Rate)], take: bool) -> Result<(), Duration> {
        let now = Instant::now();
        let mut map = self.charged.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait = Duration::ZERO;
        for (key, rate) in wants {
            if let Some(log) = map.get_mut(*key) {
                wait = wait.max(wait_in(log, *rate, now));
            }
        }
        if !wait.is_zero() {
            return Err(wait);
        }
        if take {
            for (key, _) in wants {
                map.entry((*key).to_string()).or_default().push_back(now);
            }
        }
        Ok(())
    }

    /// Whether every `(key, rate)` has room now (charging nothing); otherwise how
    /// long until all would.
    pub fn check(&self, wants: &[(&str, Rate)]) -> Result<(), Duration> {
        self.wait(wants, false)
    }

    /// Charge one call to every `(key, rate)` if all have room; otherwise charge
    /// nothing and return how long until they would.
    pub fn try_take(&self, wants: &[(&str, Rate)]) -> Result<(), Duration> {
        self.wait(wants, true)
    }

    /// How many calls the longest window among `wants` (a lane's group budget, the
    /// minute) has room for right now, charging nothing. The coalescing delivery
    /// compares it with the lane's pending items: more items than room is a backlog.
    pub fn room(&self, wants: &[(&str, Rate)]) -> usize {
        let Some((key, rate)) = wants.iter().max_by_key(|(_, r)| r.per) else {
            return usize::MAX;
        };
        let now = Instant::now();
        let mut map = self.charged.lock().unwrap_or_else(|p| p.into_inner());
        let used = match map.get_mut(*key) {
            Some(log) => {
                wait_in(log, *rate, now);
                log.len()
            }
            None => 0,
        };
        rate.max().saturating_sub(used)
    }

    /// Charge one call to every `(key, rate)`, waiting until all have room.
    pub async fn take(&self, wants: &[(&str, Rate)]) {
        while let Err(wait) = self.try_take(wants) {
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }
}

/// `secs` seconds divided by the settings' time scale (tests run budgets in scaled
/// time; production uses 1).
fn window(settings: &WorkerSettings, secs: u64) -> Duration {
    Duration::from_secs(secs) / settings.budget_time_scale.max(1)
}

/// The budgets every call into the lane `tg:<tenant>:<chat>[:r<relay>]` takes from: the
/// lane's bot (`per_bot_per_sec` a second), the chat (`per_chat_per_sec` a second,
/// shared by all the tenant's bots in it) and the bot's share of the group
/// (`per_group_per_min` a minute for each bot: Telegram counts a group's messages per
/// bot, so every relay bot adds a budget of its own).
pub fn message_rates(settings: &WorkerSettings, lane: &str) -> Vec<(String, Rate)> {
    let (tenant, chat, bot) = match super::TelegramLane::parse(lane) {
        Some(l) => (
            l.tenant_id,
            l.chat_id.to_string(),
            l.relay.map_or(String::new(), |r| format!(":r{r}")),
        ),
        // Not a Telegram lane: its own budgets, keyed by the whole lane.
        None => (lane.to_string(), String::new(), String::new()),
    };
    let tenant = tenant.as_str();
    let s = settings;
    vec![
        (
            format!("{}{bot}", bot_key(tenant)),
            Rate {
                max: s.per_bot_per_sec,
                per: window(s, 1),
            },
        ),
        (
            format!("chat:{tenant}:{chat}"),
            Rate {
                max: s.per_chat_per_sec,
                per: window(s, 1),
            },
        ),
        (
            format!("group:{tenant}:{chat}{bot}"),
            Rate {
                max: s.per_group_per_min,
                per: window(s, 60),
            },
        ),
    ]
}

/// The budgets one typing action in the tenant's group `chat` takes from: the same
/// per-bot, per-chat and per-group budgets as its messages (a `sendChatAction` posts
/// into the group, so the group's budget counts it), each with a share that typing may
/// not exceed, so that typing never holds up a message:
///
/// - the chat: one action per two of the chat's windows' worth of calls (half the
///   per-chat rate; the key `typing:<tenant>:<chat>`), so messages keep the other half;
/// - the group: an action fits only while fewer than half the group's budget was used
///   in its window (`max` half of `per_group_per_min`, at least 1, on the group's own
///   key). A lane with a backlog uses its whole budget, so its typing is dropped; a
///   quiet group shows typing, and charges it.
pub fn typing_rates(settings: &WorkerSettings, tenant: &str, chat: i64) -> Vec<(String, Rate)> {
    let lane = super::telegram_lane(tenant, chat);
    let mut rates = message_rates(settings, &lane);
    if let Some((_, group)) = rates.get_mut(2) {
        group.max = (group.max / 2).max(1);
    }
    rates.push((
        format!("typing:{tenant}:{chat}"),
        Rate {
            max: 1,
            per: window(settings, 2) / settings.per_chat_per_sec.max(1),
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
    fn typing_shares_the_bot_and_chat_budgets_of_messages() {
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
        assert_eq!(msg[2].0, typing[2].0, "the group's own budget");
        assert_eq!(typing[2].1.max, 10, "at most half of it");
        assert_eq!(
            typing[3].1,
            Rate {
                max: 1,
                per: Duration::from_secs(1)
            },
            "half the per-chat rate"
        );
        // Typing takes from the chat budget that messages use.
        let b = Budgets::new();
        assert!(b.try_take(&refs(&typing)).is_ok());
        assert!(
            b.try_take(&refs(&typing)).is_err(),
            "typing share: one action a window"
        );
        assert!(
            b.try_take(&refs(&msg)).is_ok(),
            "messages keep the rest of the chat budget"
        );
        assert!(
            b.try_take(&refs(&msg)).is_err(),
            "chat budget (2 a second) used up by typing + message"
        );
    }

    #[test]
    fn typing_counts_in_the_group_budget_and_only_uses_its_first_half() {
        let s = WorkerSettings {
            per_bot_per_sec: 1_000,
            per_chat_per_sec: 1_000,
            per_group_per_min: 4,
            ..WorkerSettings::default()
        };
        let msg = message_rates(&s, &crate::outbox::telegram_lane("t1", -100));
        let typing = typing_rates(&s, "t1", -100);
        let b = Budgets::new();
        // A typing action is charged to the group: messages then have 3 of 4 left.
        assert!(b.try_take(&refs(&typing)).is_ok());
        assert!(b.try_take(&refs(&msg)).is_ok());
        // Two of four used: typing no longer fits (whatever its own share says)...
        let group_only = [(typing[2].0.as_str(), typing[2].1)];
        assert!(b.try_take(&group_only).is_err(), "typing stops at half");
        // ...while messages use the rest, and then nothing fits.
        assert!(b.try_take(&refs(&msg)).is_ok());
        assert!(b.try_take(&refs(&msg)).is_ok());
        assert!(b.try_take(&refs(&msg)).is_err(), "4 of 4 used");
    }

    #[test]
    fn a_full_window_waits_for_its_oldest_charge() {
        let b = Budgets::new();
        let r = Rate {
            max: 2,
            per: Duration::from_secs(1),
        };
        assert!(b.try_take(&[("chat", r)]).is_ok());
        assert!(b.try_take(&[("chat", r)]).is_ok());
        let wait = b.try_take(&[("chat", r)]).expect_err("full");
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
        assert!(b.check(&[("chat", r)]).is_err(), "check sees the same");
        assert!(
            b.try_take(&[("other", r)]).is_ok(),
            "other keys are independent"
        );
    }

    #[test]
    fn check_charges_nothing() {
        let b = Budgets::new();
        let r = Rate {
            max: 1,
            per: Duration::from_secs(60),
        };
        for _ in 0..5 {
            assert!(b.check(&[("group", r)]).is_ok());
        }
        assert!(b.try_take(&[("group", r)]).is_ok());
        assert!(b.check(&[("group", r)]).is_err());
    }

    #[test]
    fn never_more_than_max_in_any_window() {
        // A token bucket of 20 refilled at 20 a minute lets ~40 through in a minute;
        // the window lets exactly 20, then one more as each charge leaves it.
        let b = Budgets::new();
        let r = Rate {
            max: 20,
            per: Duration::from_millis(300),
        };
        let started = Instant::now();
        // Each charge happened between `before` and `after`.
        let mut at: Vec<(Instant, Instant)> = Vec::new();
        while started.elapsed() < Duration::from_millis(700) {
            let before = Instant::now();
            if b.try_take(&[("group", r)]).is_ok() {
                at.push((before, Instant::now()));
            }
        }
        assert!(at.len() >= 40, "{} taken", at.len());
        for i in 20..at.len() {
            assert!(
                at[i].1.duration_since(at[i - 20].0) >= r.per,
                "charge {i} within a window of charge {}",
                i - 20
            );
        }
    }

    #[test]
    fn all_or_nothing() {
        let b = Budgets::new();
        let small = Rate {
            max: 1,
            per: Duration::from_secs(1000),
        };
        let big = Rate {
            max: 100,
            per: Duration::from_secs(1),
        };
        assert!(b.try_take(&[("a", small), ("b", big)]).is_ok());
        assert!(b.try_take(&[("a", small), ("b", big)]).is_err());
        // "b" was not charged for the refused attempt: 99 left.
        for _ in 0..99 {
            assert!(b.try_take(&[("b", big)]).is_ok());
        }
        assert!(b.try_take(&[("b", big)]).is_err());
    }

    #[test]
    fn scaled_time_keeps_the_counts_and_shortens_the_windows() {
        let s = WorkerSettings {
            budget_time_scale: 10,
            ..WorkerSettings::default()
        };
        let rates = message_rates(&s, "tg:t1:-100");
        let per: Vec<(u32, Duration)> = rates.iter().map(|(_, r)| (r.max, r.per)).collect();
        assert_eq!(
            per,
            vec![
                (30, Duration::from_millis(100)),
                (1, Duration::from_millis(100)),
                (20, Duration::from_secs(6)),
            ]
        );
    }

    #[test]
    fn a_relay_has_its_own_bot_and_group_budgets_and_shares_the_chat() {
        let s = WorkerSettings::default();
        let main = message_rates(&s, "tg:t1:-100");
        let relay = message_rates(&s, "tg:t1:-100:r42");
        assert_ne!(main[0].0, relay[0].0, "bot");
        assert_eq!(main[1].0, relay[1].0, "chat");
        assert_ne!(main[2].0, relay[2].0, "group");
        let b = Budgets::new();
        let g = |v: &[(String, Rate)]| vec![(v[2].0.clone(), v[2].1)];
        for _ in 0..s.per_group_per_min {
            assert!(b.try_take(&refs(&g(&main))).is_ok());
        }
        assert!(b.check(&refs(&g(&main))).is_err(), "main's minute used up");
        assert!(b.check(&refs(&g(&relay))).is_ok(), "the relay's is its own");
    }

    #[test]
    fn room_counts_what_the_longest_window_still_takes() {
        let b = Budgets::new();
        let second = Rate {
            max: 1,
            per: Duration::from_secs(1),
        };
        let minute = Rate {
            max: 3,
            per: Duration::from_secs(60),
        };
        let wants = [("chat", second), ("group", minute)];
        assert_eq!(b.room(&wants), 3);
        assert!(b.try_take(&wants).is_ok());
        assert_eq!(b.room(&wants), 2, "the chat's second is not the measure");
        assert!(b.try_take(&[("group", minute)]).is_ok());
        assert!(b.try_take(&[("group", minute)]).is_ok());
        assert_eq!(b.room(&wants), 0);
        assert_eq!(b.room(&[]), usize::MAX);
    }

    #[tokio::test]
    async fn take_waits_for_room() {
        let b = Budgets::new();
        let r = Rate {
            max: 1,
            per: Duration::from_millis(200),
        };
        let started = Instant::now();
        b.take(&[("chat", r)]).await;
        b.take(&[("chat", r)]).await;
        assert!(started.elapsed() >= Duration::from_millis(200));
    }
}
