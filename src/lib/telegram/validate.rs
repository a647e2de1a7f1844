//! `tenants validate`: the checks an operator would do by hand on a new tenant.

use std::time::Duration;

use serde::Serialize;
use teloxide::{
    prelude::Requester,
    types::{ChatFullInfoKind, ChatFullInfoPublicKind, ChatId, ChatMemberKind, UserId},
};

use super::{Bots, FIELD_WEBHOOK_SECRET, setup};
use crate::db::{Db, repo};
use crate::domain::{new_id, now_ms};
use crate::outbox;
use crate::tenancy::{self, Tenant};
use crate::transaction;

/// One check and how it went.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub check: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

fn check(name: &str, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        check: name.into(),
        ok,
        detail: detail.into(),
    }
}

/// Run every check for `tenant`; `round_trip_wait` bounds the wait for a worker to
/// deliver the test message.
pub async fn validate(
    db: &Db,
    bots: &Bots,
    tenant: &Tenant,
    public_url: &str,
    round_trip_wait: Duration,
) -> Vec<Check> {
    let mut out = Vec::new();
    isolation(db, tenant, &mut out).await;
    let cfg = match db.conn().await {
        Ok(mut pc) => repo::telegram::get(&mut pc.as_conn(), &tenant.id)
            .await
            .ok()
            .flatten(),
        Err(_) => None,
    };
    let Some(cfg) = cfg else {
        out.push(check(
            "telegram connected",
            false,
            "no Telegram connection: run `chatorical telegram setup`",
        ));
        return out;
    };
    out.push(check(
        "telegram connected",
        cfg.enabled,
        if cfg.enabled {
            "enabled"
        } else {
            "connected but disabled"
        },
    ));
    let bot = match bots.for_tenant(&cfg) {
        Ok(b) => b,
        Err(_) => {
            out.push(check(
                "bot token",
                false,
                "the stored token cannot be decrypted for this tenant",
            ));
            return out;
        }
    };
    match bot.get_me().await {
        Ok(me) if i64::try_from(me.id.0).ok() == Some(cfg.bot_id) => out.push(check(
            "bot reachable",
            true,
            format!("@{}", me.username.clone().unwrap_or_default()),
        )),
        Ok(me) => out.push(check(
            "bot reachable",
            false,
            format!("token now belongs to another bot ({})", me.id),
        )),
        Err(e) => out.push(check("bot reachable", false, setup::short(&e))),
    }
    match bot.get_chat(ChatId(cfg.group_chat_id)).await {
        Ok(chat) => {
            let forum = matches!(&chat.kind, ChatFullInfoKind::Public(p) if matches!(&p.kind, ChatFullInfoPublicKind::Supergroup(s) if s.is_forum));
            out.push(check(
                "forum group",
                forum,
                if forum {
                    "topics enabled"
                } else {
                    "the group is not a forum"
                },
            ));
        }
        Err(e) => out.push(check("forum group", false, setup::short(&e))),
    }
    let bot_user = UserId(u64::try_from(cfg.bot_id).unwrap_or(0));
    match bot
        .get_chat_member(ChatId(cfg.group_chat_id), bot_user)
        .await
    {
        Ok(m) => {
            let (ok, detail) = match &m.kind {
                ChatMemberKind::Owner(_) => (true, "owner".to_string()),
                ChatMemberKind::Administrator(a) if a.can_manage_topics => {
                    (true, "admin with Manage Topics".into())
                }
                ChatMemberKind::Administrator(_) => (
                    cfg.default_topic_id.is_some(),
                    "admin without Manage Topics (default topic used)".into(),
                ),
                _ => (false, "the bot is not an admin of the group".into()),
            };
            out.push(check("bot is group admin", ok, detail));
        }
        Err(e) => out.push(check("bot is group admin", false, setup::short(&e))),
    }
    super::relays::validate(
        db,
        bots,
        &cfg,
        &setup::webhook_url(public_url, &tenant.slug),
        &mut out,
    )
    .await;
    if super::TelegramMode::from_stored(&cfg.mode) == super::TelegramMode::Polling {
        polling(db, &bot, &cfg, &mut out).await;
        out.push(round_trip(db, &cfg, round_trip_wait).await);
        return out;
    }
    let expected = setup::webhook_url(public_url, &tenant.slug);
    match bot.get_webhook_info().await {
        Ok(info) => {
            let url = info.url.map(|u| u.to_string()).unwrap_or_default();
            let ok = url == expected && info.last_error_message.is_none();
            let detail = match info.last_error_message {
                Some(err) => format!("{url}: Telegram reports: {err}"),
                None if url == expected => format!("{url} ({} pending)", info.pending_update_count),
                None => format!("registered {url:?}, expected {expected}"),
            };
            out.push(check("webhook registered", ok, detail));
        }
        Err(e) => out.push(check("webhook registered", false, setup::short(&e))),
    }
    out.push(webhook_secret(bots, &cfg, &expected).await);
    out.push(round_trip(db, &cfg, round_trip_wait).await);
    out
}

/// Polling mode: no webhook set (Telegram refuses getUpdates while one is), and a
/// worker polls the bot without errors.
async fn polling(
    db: &Db,
    bot: &teloxide::Bot,
    cfg: &crate::db::models::TelegramConfigRow,
    out: &mut Vec<Check>,
) {
    match bot.get_webhook_info().await {
        Ok(info) => match info.url {
            None => out.push(check("no webhook set", true, "updates are polled")),
            Some(url) => out.push(check(
                "no webhook set",
                false,
                format!(
                    "a webhook is set ({url}): Telegram refuses getUpdates; run `chatorical \
                     telegram mode polling` again"
                ),
            )),
        },
        Err(e) => out.push(check("no webhook set", false, setup::short(&e))),
    }
    let poll = match db.conn().await {
        Ok(mut pc) => repo::telegram::poll_state(&mut pc.as_conn(), &cfg.tenant_id)
            .await
            .ok()
            .flatten(),
        Err(_) => None,
    };
    let now = now_ms();
    let (ok, detail) = match poll {
        None => (
            false,
            "no worker has polled the bot yet: is `chatorical serve` or `chatorical worker` running?"
                .to_string(),
        ),
        Some(p) if p.lease_until.is_none_or(|until| until < now) => (
            false,
            "no worker polls the bot now: is `chatorical serve` or `chatorical worker` running?"
                .to_string(),
        ),
        Some(p) => match p.last_error {
            Some(e) => (false, format!("getUpdates fails: {e}")),
            None => (true, "a worker polls the bot".to_string()),
        },
    };
    out.push(check("bot polled", ok, detail));
}

async fn isolation(db: &Db, tenant: &Tenant, out: &mut Vec<Check>) {
    if tenant.settings.allowed_origins.is_empty() {
        out.push(check(
            "widget origins",
            false,
            "no allowed origins: the widget cannot connect from any site",
        ));
        return;
    }
    let others = tenancy::list_tenants(db, &crate::tenancy::Caller::System)
        .await
        .unwrap_or_default();
    let shared: Vec<String> = tenant
        .settings
        .allowed_origins
        .iter()
        .filter(|o| {
            others
                .iter()
                .any(|t| t.id != tenant.id && t.settings.allowed_origins.contains(o))
        })
        .map(|o| o.as_str().to_string())
        .collect();
    if shared.is_empty() {
        out.push(check(
            "widget isolation",
            true,
            format!(
                "{} origin(s), none shared with another tenant",
                tenant.settings.allowed_origins.len()
            ),
        ));
    } else {
        out.push(check(
            "widget isolation",
            false,
            format!("origins shared with another tenant: {}", shared.join(", ")),
        ));
    }
}

/// Our webhook refuses a wrong secret and accepts the right one.
async fn webhook_secret(
    bots: &Bots,
    cfg: &crate::db::models::TelegramConfigRow,
    url: &str,
) -> Check {
    let Ok(secret) = bots.key().open(
        &cfg.tenant_id,
        FIELD_WEBHOOK_SECRET,
        &cfg.webhook_secret_enc,
    ) else {
        return check(
            "webhook secret",
            false,
            "the stored secret cannot be decrypted",
        );
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default();
    // An update from another chat: accepted and ignored, never stored.
    let probe = serde_json::json!({
        "update_id": 0,
        "message": {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private", "first_name": "probe"}, "text": "probe"}
    });
    let wrong = client
        .post(url)
        .header("X-Telegram-Bot-Api-Secret-Token", "wrong-secret")
        .json(&probe)
        .send()
        .await;
    let right = client
        .post(url)
        .header("X-Telegram-Bot-Api-Secret-Token", &secret)
        .json(&probe)
        .send()
        .await;
    match (wrong, right) {
        (Ok(w), Ok(r)) if w.status() == 401 && r.status().is_success() => check(
            "webhook secret",
            true,
            "wrong secret refused, right secret accepted",
        ),
        (Ok(w), Ok(r)) => check(
            "webhook secret",
            false,
            format!(
                "wrong secret → {}, right secret → {}",
                w.status(),
                r.status()
            ),
        ),
        _ => check(
            "webhook secret",
            false,
            format!("the server is not reachable at {url}"),
        ),
    }
}

/// A test message through the outbox, delivered by a running worker.
async fn round_trip(db: &Db, cfg: &crate::db::models::TelegramConfigRow, wait: Duration) -> Check {
    let name = "round trip";
    let key = new_id("check");
    let tenant_id = crate::domain::TenantId::from(cfg.tenant_id.as_str());
    let lane = outbox::telegram_lane(&cfg.tenant_id, cfg.group_chat_id);
    let job = outbox::Job::SendText {
        text: "chatorical check: this group is connected".into(),
        topic_id: cfg.default_topic_id,
    };
    let Ok(mut pc) = db.conn().await else {
        return check(name, false, "database unavailable");
    };
    let mut conn = pc.as_conn();
    let now = now_ms();
    let enqueued = transaction!(&mut conn, |tx| {
        outbox::enqueue(tx, &tenant_id, &job, &key, &lane, now).await
    });
    if enqueued.is_err() {
        return check(name, false, "could not enqueue the test message");
    }
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let rows = repo::outbox::list(&mut conn, &tenant_id, None, 50)
            .await
            .unwrap_or_default();
        if let Some(row) = rows.iter().find(|r| r.idempotency_key == key) {
            match row.status.parse::<crate::outbox::OutboxStatus>() {
                Ok(crate::outbox::OutboxStatus::Delivered) => {
                    return check(name, true, "test message delivered to the group");
                }
                Ok(crate::outbox::OutboxStatus::Dead) => {
                    return check(
                        name,
                        false,
                        format!(
                            "test message failed: {}",
                            row.last_error.clone().unwrap_or_default()
                        ),
                    );
                }
                _ => {}
            }
        }
        if tokio::time::Instant::now() > deadline {
            return check(
                name,
                false,
                format!(
                    "not delivered within {} s: is `chatorical serve` or `chatorical worker` running?",
                    wait.as_secs()
                ),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
