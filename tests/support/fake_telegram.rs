//! A fake Telegram Bot API server for tests.
//!
//! Test binaries include it with
//!
//! ```ignore
//! #[path = "../support/fake_telegram.rs"] // from tests/<dir>/main.rs
//! mod fake_telegram;
//! ```
//!
//! (`#[path = "support/fake_telegram.rs"]` from a top-level `tests/*.rs`.)
//!
//! and point a real `teloxide::Bot` (or the server under test) at it:
//!
//! ```ignore
//! let fake = FakeTelegram::start().await;
//! fake.add_bot("111:AAA", 111, "support_bot");
//! fake.add_group(-1001, "Support", true);
//! fake.set_member(111, -1001, "administrator", true);
//! let bot = teloxide::Bot::new("111:AAA").set_api_url(fake.url());
//! ```
//!
//! # What it emulates
//!
//! Requests arrive as `{api_url}/bot<token>/<method>`; teloxide sends a
//! capitalised method name (`SendMessage`) with a JSON body, except for
//! `setWebhook`, which it always sends as `multipart/form-data`. Like
//! Telegram, the fake matches method names case-insensitively and accepts
//! JSON, multipart, url-encoded bodies and query strings. Multipart and
//! url-encoded values stay strings (Telegram coerces them), except values
//! that parse as a JSON array or object (teloxide sends `allowed_updates` as
//! `["message",...]`), which are recorded parsed.
//!
//! Every answer is `{"ok":true,"result":...}` or
//! `{"ok":false,"error_code":N,"description":"...","parameters":{...}}`
//! (`parameters` only for flood waits, `{"retry_after":N}`, and for a group that
//! became a supergroup, `{"migrate_to_chat_id":ID}`). Unknown tokens get 401
//! `Unauthorized`, unknown methods 404 `Not Found` (both map to
//! `ApiError::InvalidToken` in teloxide, as with the real API).
//!
//! Implemented methods: `getMe`, `getChat`, `getChatMember`, `setWebhook`,
//! `deleteWebhook`, `getWebhookInfo`, `getUpdates`, `createForumTopic`,
//! `editForumTopic`, `closeForumTopic`, `reopenForumTopic`, `deleteForumTopic`,
//! `sendMessage`.
//!
//! `getUpdates` (long polling; teloxide sends it as JSON: `offset`, `limit`,
//! `timeout`, `allowed_updates`) serves the updates a test queued for the bot with
//! [`FakeTelegram::queue_update`], as Telegram does:
//! - an `offset` confirms (forgets) every queued update with a smaller `update_id`;
//!   the answer holds the queued updates from `offset` on, in order, at most `limit`
//!   (default 100), whose kind is in the `allowed_updates` last given (if any);
//! - with nothing to send and `timeout` > 0 the request is held up to `timeout`
//!   seconds (at most 50) and answered as soon as an update is queued (`[]` when the
//!   time is up);
//! - while the bot has a webhook: 409 `Conflict: can't use getUpdates method while
//!   webhook is active; use deleteWebhook to delete the webhook first` (a held
//!   request gets it as soon as a webhook is set);
//! - a second getUpdates of the same bot ends the one being held with 409
//!   `Conflict: terminated by other getUpdates request; make sure that only one bot
//!   instance is running` (teloxide: `ApiError::TerminatedByOtherGetUpdates`);
//! - [`FakeTelegram::hold_polls`] keeps the bot's getUpdates requests that would
//!   confirm a given update (an `offset` above its id) from being processed: they
//!   wait, confirm nothing and answer nothing until released — and a request whose
//!   client went away meanwhile never takes effect, as if it had never reached
//!   Telegram.
//!
//! [`FakeTelegram::polls`] counts getUpdates requests of a bot, and the most that
//! were held at once; [`FakeTelegram::pending_updates`] lists what is queued.
//!
//! State model: bots are known by token; groups are supergroups, optionally
//! forums; each (bot, chat) pair has a membership (default: `left`). Message
//! ids are allocated per chat from one counter, and a topic's thread id is
//! the id of its `forum_topic_created` service message, as in Telegram, so
//! thread ids and message ids both increase per chat.
//!
//! Rules enforced (descriptions as Telegram sends them, except where noted):
//! - unknown chat: 400 `Bad Request: chat not found`;
//! - writing methods need membership: 403 `Forbidden: bot is not a member of
//!   the supergroup chat` (status `left`) or 403 `Forbidden: bot was kicked
//!   from the supergroup chat` (status `kicked`);
//! - `createForumTopic`: 400 `Bad Request: the chat is not a forum`, 400
//!   `Bad Request: not enough rights to create a topic` unless the bot is an
//!   administrator with `can_manage_topics` (or the creator); topic names
//!   must be 1..=128 characters (descriptions for that are approximations);
//! - `edit/close/reopen/deleteForumTopic`: 400 `Bad Request: message thread
//!   not found` for unknown or deleted threads; for edit/close/reopen the bot
//!   must be an administrator and have `can_manage_topics` unless it created
//!   the topic; `deleteForumTopic` (`chat_id`, `message_thread_id`) deletes the
//!   topic with its messages and, as documented, needs an administrator with
//!   `can_delete_messages` (on by default for administrators here, see
//!   [`FakeTelegram::set_can_delete_messages`]); otherwise 400
//!   `Bad Request: CHAT_ADMIN_REQUIRED`; closing a closed topic,
//!   reopening an open one or an edit that changes nothing gives 400
//!   `Bad Request: TOPIC_NOT_MODIFIED`;
//! - `editForumTopic` (`chat_id`, `message_thread_id`, optional `name` and
//!   `icon_custom_emoji_id`; teloxide sends it as JSON): an absent or empty
//!   `name` keeps the topic's name, as Telegram documents; a name over 128
//!   characters is refused like in `createForumTopic`. Topic names are counted
//!   in UTF-16 code units (never laxer than Telegram). [`Call::name`] reads the
//!   `name` a recorded call asked for;
//! - a bot whose membership is `restricted` (no right to send messages) gets 400
//!   `Bad Request: not enough rights to send text messages to the chat` from
//!   `sendMessage` and `sendChatAction`;
//! - a group migrated with [`FakeTelegram::migrate_group`] answers every call
//!   naming it with 400 `Bad Request: group chat was upgraded to a supergroup chat`
//!   and `parameters.migrate_to_chat_id` (teloxide: `RequestError::MigrateToChatId`);
//! - `sendMessage`: 400 `Bad Request: message text is empty`, 400
//!   `Bad Request: message is too long` (over 4096 characters, counted in UTF-16
//!   code units so that a character outside the BMP counts twice — never laxer than
//!   Telegram), 400
//!   `Bad Request: message thread not found` (unknown or deleted thread, or
//!   a thread id in a non-forum chat), 400 `Bad Request: TOPIC_CLOSED` when
//!   the topic is closed and the bot cannot manage topics;
//! - `setWebhook`: as Telegram's cloud API, the URL must be `https://` (400
//!   `Bad Request: bad webhook: HTTPS url must be provided for webhook`) on
//!   port 443, 80, 88 or 8443 (400 `Bad Request: bad webhook: Webhook can be set
//!   up only on ports 80, 88, 443 or 8443`). A fake started with
//!   [`FakeTelegram::start_local`] behaves as a local Bot API server
//!   (`telegram-bot-api --local`) instead and also takes `http://` on any port,
//!   so that tests can point webhooks at servers on loopback. The secret token
//!   must be 1..=256 characters of `A-Z a-z 0-9 _ -`.
//!
//! Flood limits ([`FakeTelegram::set_limits`], off unless set): with
//! [`Limits::telegram`] (optionally [`Limits::scaled`] to shorter windows) a
//! call that would exceed 30 a second per bot, 1 a second per chat (all bots
//! together) or 20 a minute per group and bot gets 429 `Too Many Requests: retry after N` with
//! `parameters.retry_after` (seconds until it would fit, at least 1), and
//! changes nothing. Counted are the calls that post into a chat
//! ([`COUNTED_METHODS`]); the group window counts messages only, not
//! `sendChatAction`. A window is checked as `slack` shorter than it is (network
//! jitter between the client's pacing and the fake's clock), so only a client
//! that does not pace at all is refused. [`FakeTelegram::throttled`] lists the
//! calls the limits refused.
//!
//! Scripted failures ([`FakeTelegram::fail_next`], [`FakeTelegram::fail_always`])
//! are checked after the token and before the method runs; a failed call
//! changes no state. Every request that reaches `/bot<token>/<method>` is
//! recorded, including failed and unauthorised ones.
//!
//! Note for users: teloxide sleeps 10 seconds after any 5xx answer before
//! returning the error, so [`Failure::ServerError`] (or a 5xx
//! [`Failure::Status`]) makes that call take 10 s.
//!
//! The free functions at the bottom build webhook `Update`s as Telegram sends
//! them, for posting to the server under test (directly, or through
//! [`FakeTelegram::deliver_update`], which adds the secret-token header).
//! Deserialise them from JSON text or bytes (`serde_json::from_slice`,
//! axum's `Json<Update>`): `serde_json::from_value::<Update>` returns `Ok`
//! but with `UpdateKind::Error`, because teloxide's `UpdateKind` visitor
//! needs borrowed map keys.
#![allow(dead_code)]

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::any,
};
use serde_json::{Map, Value, json};

/// The icon colour Telegram picks when `createForumTopic` gets none (0x6FB9F0).
pub(crate) const DEFAULT_ICON_COLOR: u32 = 0x6F_B9_F0;

/// Longest text `sendMessage` accepts, in UTF-16 code units.
pub(crate) const MAX_MESSAGE_CHARS: usize = 4096;

/// Longest forum topic name, in characters (UTF-16 code units).
pub(crate) const MAX_TOPIC_NAME_CHARS: usize = 128;

/// Chat title used by the update builders, which do not know the group.
pub(crate) const UPDATE_CHAT_TITLE: &str = "Support";

/// Header Telegram uses to send the webhook's secret token.
pub(crate) const SECRET_TOKEN_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";

/// Ports Telegram's cloud Bot API delivers webhooks to.
pub(crate) const WEBHOOK_PORTS: [u16; 4] = [443, 80, 88, 8443];

/// Methods the flood limits count (lower-cased): every call that posts into a chat.
pub(crate) const COUNTED_METHODS: [&str; 7] = [
    "sendmessage",
    "createforumtopic",
    "editforumtopic",
    "closeforumtopic",
    "reopenforumtopic",
    "deleteforumtopic",
    "sendchataction",
];

/// At most `max` calls in any `every`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    pub max: usize,
    pub every: Duration,
}

/// Telegram's flood limits as the fake enforces them, see [`FakeTelegram::set_limits`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Counted calls per bot, all chats together.
    pub per_bot: Window,
    /// Counted calls per chat, all bots together.
    pub per_chat: Window,
    /// Messages per group and bot (counted calls except `sendChatAction`): the Bot
    /// FAQ's "your bot will not be able to send more than 20 messages per minute to
    /// the same group" — each bot in a group has its own 20.
    pub per_group: Window,
    /// Each window is checked this much shorter than it is.
    pub slack: Duration,
}

impl Limits {
    /// The Bot FAQ's numbers: 30 messages a second per bot, 1 a second per chat, 20 a
    /// minute per group; 50 ms of slack.
    pub(crate) fn telegram() -> Self {
        Limits {
            per_bot: Window {
                max: 30,
                every: Duration::from_secs(1),
            },
            per_chat: Window {
                max: 1,
                every: Duration::from_secs(1),
            },
            per_group: Window {
                max: 20,
                every: Duration::from_secs(60),
            },
            slack: Duration::from_millis(50),
        }
    }

    /// The same counts in windows `factor` times shorter (the slack stays), to match
    /// a client running its budgets in scaled time.
    pub(crate) fn scaled(self, factor: u32) -> Self {
        let factor = factor.max(1);
        let scale = |w: Window| Window {
            max: w.max,
            every: w.every / factor,
        };
        Limits {
            per_bot: scale(self.per_bot),
            per_chat: scale(self.per_chat),
            per_group: scale(self.per_group),
            slack: self.slack,
        }
    }
}

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

/// One request received by the fake.
#[derive(Clone, Debug)]
pub(crate) struct Call {
    /// The bot token from the URL (whether or not the fake knows it).
    pub token: String,
    /// The method name, lower-cased (`sendmessage`).
    pub method: String,
    /// The request parameters as a JSON object (`Null` if unparseable).
    pub params: Value,
    /// When the request arrived.
    pub at: Instant,
}

impl Call {
    /// The `chat_id` parameter as a number, if present and numeric.
    pub(crate) fn chat_id(&self) -> Option<i64> {
        int_value(self.params.get("chat_id")?)
    }

    /// The `message_thread_id` parameter as a number, if present.
    pub(crate) fn thread_id(&self) -> Option<i32> {
        int_value(self.params.get("message_thread_id")?).and_then(|n| i32::try_from(n).ok())
    }

    /// The `text` parameter, if present.
    pub(crate) fn text(&self) -> Option<&str> {
        self.params.get("text")?.as_str()
    }

    /// The `name` parameter (`createForumTopic`, `editForumTopic`), if present.
    pub(crate) fn name(&self) -> Option<&str> {
        self.params.get("name")?.as_str()
    }
}

/// A scripted failure, see [`FakeTelegram::fail_next`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// 429 `Too Many Requests: retry after N` with `parameters.retry_after`;
    /// teloxide returns `RequestError::RetryAfter(Seconds(N))`.
    RetryAfter(u32),
    /// 403 `Forbidden: bot was kicked from the supergroup chat`; teloxide
    /// returns `RequestError::Api(ApiError::BotKickedFromSupergroup)`.
    Forbidden,
    /// 500 `Internal Server Error` (teloxide waits 10 s, then returns
    /// `RequestError::Api(ApiError::Unknown("Internal Server Error"))`).
    ServerError,
    /// Answer normally, but only after this delay (to provoke client timeouts).
    /// The call takes effect after the delay even if the client stopped waiting.
    Delay(Duration),
    /// Any status code and description.
    Status(u16, String),
}

/// The webhook configuration remembered for one bot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Webhook {
    pub url: String,
    pub secret_token: Option<String>,
    pub allowed_updates: Option<Vec<String>>,
    pub max_connections: Option<u32>,
    pub drop_pending_updates: bool,
}

/// A forum topic as the fake knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Topic {
    pub thread_id: i32,
    pub name: String,
    pub icon_color: u32,
    pub closed: bool,
    /// Deleted by an admin ([`FakeTelegram::delete_thread`]) or by `deleteForumTopic`.
    pub deleted: bool,
    /// The bot that created it (0 for topics made with [`FakeTelegram::add_topic`]).
    pub creator_bot_id: u64,
    /// Unix time of creation.
    pub created_at: i64,
}

/// A message sent through `sendMessage`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SentMessage {
    pub message_id: i32,
    pub thread_id: Option<i32>,
    pub bot_id: u64,
    pub text: String,
}

// ---------------------------------------------------------------------------
// The handle
// ---------------------------------------------------------------------------

/// A bot's long polling as the fake saw it, see [`FakeTelegram::polls`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PollStats {
    /// getUpdates requests received.
    pub requests: usize,
    /// getUpdates requests being held (waiting for updates) right now.
    pub in_flight: usize,
    /// The most getUpdates requests held at once.
    pub max_in_flight: usize,
    /// Requests answered 409 because another getUpdates came in.
    pub terminated: usize,
    /// Requests answered 409 because a webhook was set.
    pub refused_for_webhook: usize,
}

/// A running fake Bot API server; it stops when the handle is dropped.
///
/// All methods take `&self`, so the handle can be shared (e.g. in an `Arc`)
/// between the test and anything else that needs it.
pub(crate) struct FakeTelegram {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeTelegram {
    /// Binds `127.0.0.1:0` and serves the fake API in a background task, with the
    /// rules of Telegram's cloud Bot API (webhooks only at `https://`).
    pub(crate) async fn start() -> Self {
        Self::serve(false).await
    }

    /// Like [`Self::start`], but as a local Bot API server (`telegram-bot-api
    /// --local`), which also takes `http://` webhooks on any port: for tests whose
    /// server under test listens on plain http on loopback (and runs with
    /// `telegram.allow_http_webhook`).
    pub(crate) async fn start_local() -> Self {
        Self::serve(true).await
    }

    async fn serve(local: bool) -> Self {
        let shared = Arc::new(Shared::default());
        shared.lock().local = local;
        let app = Router::new()
            .route("/{bot}/{method}", any(handle_method))
            .fallback(handle_not_found)
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake telegram: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake telegram: local address");
        let server = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                eprintln!("fake telegram server stopped: {err}");
            }
        });
        Self {
            shared,
            addr,
            server,
        }
    }

    /// The API base URL, e.g. `http://127.0.0.1:PORT` (no trailing slash).
    pub(crate) fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// [`Self::api_url`] parsed, ready for `teloxide::Bot::set_api_url`.
    pub(crate) fn url(&self) -> reqwest::Url {
        reqwest::Url::parse(&self.api_url()).expect("fake telegram: api url parses")
    }

    /// A teloxide bot for `token` talking to this fake (default client: 17 s
    /// timeout). For short timeouts use `teloxide::Bot::with_client`.
    pub(crate) fn bot(&self, token: &str) -> teloxide::Bot {
        teloxide::Bot::new(token).set_api_url(self.url())
    }

    // --- world setup -------------------------------------------------------

    /// Registers a bot: `getMe` answers with this id and username.
    pub(crate) fn add_bot(&self, token: &str, bot_id: u64, username: &str) {
        self.shared.lock().bots.insert(
            token.to_owned(),
            BotAccount {
                id: bot_id,
                username: username.to_owned(),
            },
        );
    }

    /// Registers a supergroup, a forum if `is_forum`. Re-adding keeps its
    /// topics and messages but updates title and forum flag.
    pub(crate) fn add_group(&self, chat_id: i64, title: &str, is_forum: bool) {
        let mut state = self.shared.lock();
        let group = state.groups.entry(chat_id).or_default();
        group.title = title.to_owned();
        group.is_forum = is_forum;
    }

    /// Sets a bot's membership in a chat. `status` is one of
    /// `"administrator"`, `"member"`, `"restricted"` (a member that may not send
    /// messages), `"left"`, `"kicked"`, `"creator"`.
    /// `can_manage_topics` only matters for administrators (creators have
    /// every right). Panics on an unknown status.
    pub(crate) fn set_member(
        &self,
        bot_id: u64,
        chat_id: i64,
        status: &str,
        can_manage_topics: bool,
    ) {
        let status = MemberStatus::parse(status)
            .unwrap_or_else(|| panic!("fake telegram: unknown member status {status:?}"));
        self.shared.lock().members.insert(
            (bot_id, chat_id),
            Membership {
                status,
                can_manage_topics,
                can_delete_messages: true,
            },
        );
    }

    /// Gives or takes a bot's `can_delete_messages` administrator right in a
    /// chat (administrators set with [`FakeTelegram::set_member`] have it).
    /// Panics unless the bot's membership was set.
    pub(crate) fn set_can_delete_messages(&self, bot_id: u64, chat_id: i64, can: bool) {
        let mut state = self.shared.lock();
        let member = state
            .members
            .get_mut(&(bot_id, chat_id))
            .unwrap_or_else(|| panic!("fake telegram: no membership of {bot_id} in {chat_id}"));
        member.can_delete_messages = can;
    }

    /// Creates a topic directly (as a human admin would) and returns its
    /// thread id. Panics if the chat was not added.
    pub(crate) fn add_topic(&self, chat_id: i64, name: &str) -> i32 {
        let mut state = self.shared.lock();
        let group = state
            .groups
            .get_mut(&chat_id)
            .unwrap_or_else(|| panic!("fake telegram: add_topic on unknown chat {chat_id}"));
        group
            .create_topic(name.to_owned(), DEFAULT_ICON_COLOR, 0)
            .thread_id
    }

    /// Simulates an admin deleting a topic: later calls naming the thread get
    /// `Bad Request: message thread not found`. A thread id the fake never
    /// handed out is reserved as deleted, so no new topic will get it.
    /// Panics if the chat was not added.
    pub(crate) fn delete_thread(&self, chat_id: i64, thread_id: i32) {
        let mut state = self.shared.lock();
        let group = state
            .groups
            .get_mut(&chat_id)
            .unwrap_or_else(|| panic!("fake telegram: delete_thread on unknown chat {chat_id}"));
        let topic = group.topics.entry(thread_id).or_insert_with(|| Topic {
            thread_id,
            name: String::new(),
            icon_color: DEFAULT_ICON_COLOR,
            closed: false,
            deleted: true,
            creator_bot_id: 0,
            created_at: unix_now(),
        });
        topic.deleted = true;
    }

    /// Simulates a group becoming a supergroup: a new chat `to` with `from`'s
    /// title and members (a forum if `is_forum`; Telegram makes a group a
    /// supergroup when its admins turn Topics on). Every later call naming `from`
    /// gets 400 `Bad Request: group chat was upgraded to a supergroup chat` with
    /// `parameters.migrate_to_chat_id` = `to`. Panics if `from` was not added.
    pub(crate) fn migrate_group(&self, from: i64, to: i64, is_forum: bool) {
        let mut state = self.shared.lock();
        let title = state
            .groups
            .get(&from)
            .map(|g| g.title.clone())
            .unwrap_or_else(|| panic!("fake telegram: migrate_group on unknown chat {from}"));
        let group = state.groups.entry(to).or_default();
        group.title = title;
        group.is_forum = is_forum;
        let members: Vec<(u64, Membership)> = state
            .members
            .iter()
            .filter(|((_, chat), _)| *chat == from)
            .map(|((bot, _), m)| (*bot, *m))
            .collect();
        for (bot, membership) in members {
            state.members.insert((bot, to), membership);
        }
        state.migrated.insert(from, to);
    }

    // --- flood limits ------------------------------------------------------

    /// Enforces `limits` from now on (`None`: no limits, the default). Calls
    /// counted before are forgotten.
    pub(crate) fn set_limits(&self, limits: Option<Limits>) {
        let mut state = self.shared.lock();
        state.limits = limits;
        state.flood.clear();
    }

    /// The calls the flood limits refused with 429, in arrival order.
    pub(crate) fn throttled(&self) -> Vec<Call> {
        self.shared.lock().throttled.clone()
    }

    // --- scripted failures -------------------------------------------------

    /// Makes the next call of `method` (case-insensitive) fail once; with
    /// `chat_id`, only a call whose `chat_id` parameter equals it. One-shot
    /// failures are used in the order they were queued, before any
    /// [`Self::fail_always`] rule.
    pub(crate) fn fail_next(&self, method: &str, chat_id: Option<i64>, failure: Failure) {
        self.shared
            .lock()
            .one_shot
            .push_back(ScriptedFailure::new(method, chat_id, failure));
    }

    /// Makes the next call of `method` whose `text` parameter starts with
    /// `text_prefix` fail once (queued with the [`Self::fail_next`] failures).
    pub(crate) fn fail_next_text(&self, method: &str, text_prefix: &str, failure: Failure) {
        let mut scripted = ScriptedFailure::new(method, None, failure);
        scripted.text_prefix = Some(text_prefix.to_owned());
        self.shared.lock().one_shot.push_back(scripted);
    }

    /// Makes every matching call fail until [`Self::clear_failures`].
    pub(crate) fn fail_always(&self, method: &str, chat_id: Option<i64>, failure: Failure) {
        self.shared
            .lock()
            .always
            .push(ScriptedFailure::new(method, chat_id, failure));
    }

    /// Drops all scripted failures, one-shot and permanent.
    pub(crate) fn clear_failures(&self) {
        let mut state = self.shared.lock();
        state.one_shot.clear();
        state.always.clear();
    }

    // --- inspection --------------------------------------------------------

    /// Every call received so far, in arrival order.
    pub(crate) fn calls(&self) -> Vec<Call> {
        self.shared.lock().calls.clone()
    }

    /// The calls of one method (name matched case-insensitively).
    pub(crate) fn calls_of(&self, method: &str) -> Vec<Call> {
        let method = method.to_ascii_lowercase();
        self.shared
            .lock()
            .calls
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }

    /// Forgets the recorded calls (not bots, groups, topics or failures).
    pub(crate) fn clear(&self) {
        self.shared.lock().calls.clear();
    }

    /// Waits until at least `count` calls of `method` arrived and returns
    /// them; panics after `timeout`.
    pub(crate) async fn wait_for_calls(
        &self,
        method: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<Call> {
        let deadline = Instant::now() + timeout;
        loop {
            let calls = self.calls_of(method);
            if calls.len() >= count {
                return calls;
            }
            assert!(
                Instant::now() < deadline,
                "fake telegram: waited {timeout:?} for {count} {method} call(s), got {}: {calls:#?}",
                calls.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The webhook remembered for a bot, if one is set.
    pub(crate) fn webhook(&self, token: &str) -> Option<Webhook> {
        self.shared.lock().webhooks.get(token).cloned()
    }

    // --- long polling ------------------------------------------------------

    /// Queues `update` (built with the update builders below; it must carry a numeric
    /// `update_id`) for the bot's getUpdates, and answers a request being held.
    pub(crate) fn queue_update(&self, token: &str, update: Value) {
        self.queue_updates(token, vec![update]);
    }

    /// Queues several updates at once: a request being held answers with all of them.
    pub(crate) fn queue_updates(&self, token: &str, updates: Vec<Value>) {
        {
            let mut state = self.shared.lock();
            let queue = state.updates.entry(token.to_owned()).or_default();
            for update in updates {
                let id = update
                    .get("update_id")
                    .and_then(Value::as_i64)
                    .unwrap_or_else(|| {
                        panic!("fake telegram: an update needs an update_id: {update}")
                    });
                queue.push_back((id, update));
            }
        }
        self.shared.poll_wake.notify_waiters();
    }

    /// The `update_id`s queued for a bot and not confirmed yet.
    pub(crate) fn pending_updates(&self, token: &str) -> Vec<i64> {
        self.shared
            .lock()
            .updates
            .get(token)
            .map(|q| q.iter().map(|(id, _)| *id).collect())
            .unwrap_or_default()
    }

    /// Hold the bot's getUpdates requests that would confirm update `update_id` (their
    /// `offset` is above it) until called again with `None`: such a request waits
    /// without taking effect (see the module docs). Other requests go on as usual.
    pub(crate) fn hold_polls(&self, token: &str, update_id: Option<i64>) {
        let mut state = self.shared.lock();
        match update_id {
            Some(id) => state.held_polls.insert(token.to_owned(), id),
            None => state.held_polls.remove(token),
        };
        drop(state);
        self.shared.poll_wake.notify_waiters();
    }

    /// How the bot's getUpdates requests went so far.
    pub(crate) fn polls(&self, token: &str) -> PollStats {
        self.shared
            .lock()
            .polls
            .get(token)
            .cloned()
            .unwrap_or_default()
    }

    /// The `offset` parameters of the bot's getUpdates requests, in arrival order
    /// (`None` for a request without one).
    pub(crate) fn poll_offsets(&self, token: &str) -> Vec<Option<i64>> {
        self.calls_of("getUpdates")
            .into_iter()
            .filter(|c| c.token == token)
            .map(|c| c.params.get("offset").and_then(int_value))
            .collect()
    }

    /// One topic of a chat (including deleted ones).
    pub(crate) fn topic(&self, chat_id: i64, thread_id: i32) -> Option<Topic> {
        self.shared
            .lock()
            .groups
            .get(&chat_id)?
            .topics
            .get(&thread_id)
            .cloned()
    }

    /// All topics of a chat, by thread id.
    pub(crate) fn topics(&self, chat_id: i64) -> Vec<Topic> {
        self.shared
            .lock()
            .groups
            .get(&chat_id)
            .map(|g| g.topics.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Messages sent into a chat with `sendMessage`, in order.
    pub(crate) fn sent_messages(&self, chat_id: i64) -> Vec<SentMessage> {
        self.shared
            .lock()
            .groups
            .get(&chat_id)
            .map(|g| g.messages.clone())
            .unwrap_or_default()
    }

    // --- webhook delivery --------------------------------------------------

    /// Posts `update` to the webhook set by the bot with `token`, with the
    /// secret-token header Telegram adds, and returns the HTTP status.
    /// Panics if the bot has no webhook.
    pub(crate) async fn deliver_update(
        &self,
        token: &str,
        update: &Value,
    ) -> Result<reqwest::StatusCode, reqwest::Error> {
        let hook = self
            .webhook(token)
            .unwrap_or_else(|| panic!("fake telegram: no webhook set for token {token:?}"));
        let mut request = reqwest::Client::new().post(&hook.url).json(update);
        if let Some(secret) = &hook.secret_token {
            request = request.header(SECRET_TOKEN_HEADER, secret);
        }
        Ok(request.send().await?.status())
    }
}

// ---------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Shared {
    state: Mutex<WorldState>,
    /// Wakes held getUpdates requests: an update was queued, a webhook set, another
    /// request came in, or polls were released.
    poll_wake: tokio::sync::Notify,
}

impl Shared {
    /// Locks the state; a panic elsewhere while holding the lock must not
    /// take the server down with it, so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, WorldState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
struct WorldState {
    /// Bots by token.
    bots: HashMap<String, BotAccount>,
    groups: HashMap<i64, Group>,
    /// Membership by (bot id, chat id).
    members: HashMap<(u64, i64), Membership>,
    /// Webhooks by token.
    webhooks: HashMap<String, Webhook>,
    calls: Vec<Call>,
    one_shot: VecDeque<ScriptedFailure>,
    always: Vec<ScriptedFailure>,
    /// A local Bot API server: http webhooks on any port.
    local: bool,
    /// Migrated groups: old chat id -> new chat id.
    migrated: HashMap<i64, i64>,
    limits: Option<Limits>,
    /// When counted calls were accepted, by scope.
    flood: HashMap<FloodKey, VecDeque<Instant>>,
    throttled: Vec<Call>,
    /// Updates queued for getUpdates, by token: (update_id, update).
    updates: HashMap<String, VecDeque<(i64, Value)>>,
    /// The `allowed_updates` a bot's getUpdates last gave.
    allowed_updates: HashMap<String, Vec<String>>,
    /// getUpdates statistics, by token.
    polls: HashMap<String, PollStats>,
    /// The newest getUpdates request of each bot (older ones are terminated).
    poll_generation: HashMap<String, u64>,
    /// Bots whose getUpdates requests confirming this update id are held.
    held_polls: HashMap<String, i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum FloodKey {
    Bot(u64),
    Chat(i64),
    /// A group's messages are counted per bot (each bot its own 20 a minute).
    Group(u64, i64),
}

#[derive(Clone, Debug)]
struct BotAccount {
    id: u64,
    username: String,
}

impl BotAccount {
    fn user_json(&self) -> Value {
        bot_user_json(self.id, &self.username)
    }
}

#[derive(Default)]
struct Group {
    title: String,
    is_forum: bool,
    /// Last message id handed out in this chat (service messages included).
    last_message_id: i32,
    topics: BTreeMap<i32, Topic>,
    messages: Vec<SentMessage>,
}

impl Group {
    fn next_message_id(&mut self) -> i32 {
        self.last_message_id += 1;
        self.last_message_id
    }

    fn create_topic(&mut self, name: String, icon_color: u32, creator_bot_id: u64) -> Topic {
        // Skip ids that delete_thread reserved, so a new topic is never "deleted".
        let mut thread_id = self.next_message_id();
        while self.topics.contains_key(&thread_id) {
            thread_id = self.next_message_id();
        }
        let topic = Topic {
            thread_id,
            name,
            icon_color,
            closed: false,
            deleted: false,
            creator_bot_id,
            created_at: unix_now(),
        };
        self.topics.insert(thread_id, topic.clone());
        topic
    }

    fn chat_json(&self, chat_id: i64) -> Value {
        supergroup_chat_json(chat_id, &self.title, self.is_forum)
    }

    /// A live (not deleted) topic, or `message thread not found`.
    fn live_topic(&mut self, thread_id: i32) -> Result<&mut Topic, ApiFailure> {
        match self.topics.get_mut(&thread_id) {
            Some(topic) if !topic.deleted && self.is_forum => Ok(topic),
            _ => Err(ApiFailure::bad_request("message thread not found")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MemberStatus {
    Creator,
    Administrator,
    Member,
    /// A member without the right to send messages.
    Restricted,
    Left,
    Kicked,
}

impl MemberStatus {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "creator" => Self::Creator,
            "administrator" => Self::Administrator,
            "member" => Self::Member,
            "restricted" => Self::Restricted,
            "left" => Self::Left,
            "kicked" => Self::Kicked,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug)]
struct Membership {
    status: MemberStatus,
    can_manage_topics: bool,
    /// Only matters for administrators.
    can_delete_messages: bool,
}

impl Membership {
    const LEFT: Self = Self {
        status: MemberStatus::Left,
        can_manage_topics: false,
        can_delete_messages: false,
    };

    fn is_admin(self) -> bool {
        matches!(
            self.status,
            MemberStatus::Creator | MemberStatus::Administrator
        )
    }

    fn deletes_messages(self) -> bool {
        match self.status {
            MemberStatus::Creator => true,
            MemberStatus::Administrator => self.can_delete_messages,
            _ => false,
        }
    }

    fn manages_topics(self) -> bool {
        match self.status {
            MemberStatus::Creator => true,
            MemberStatus::Administrator => self.can_manage_topics,
            _ => false,
        }
    }

    /// Writing into a chat needs the bot to be in it.
    fn require_present(self) -> Result<(), ApiFailure> {
        match self.status {
            MemberStatus::Left => Err(ApiFailure::forbidden(
                "bot is not a member of the supergroup chat",
            )),
            MemberStatus::Kicked => Err(ApiFailure::forbidden(
                "bot was kicked from the supergroup chat",
            )),
            _ => Ok(()),
        }
    }

    /// Sending a message or a chat action needs the right to send messages.
    fn require_send(self) -> Result<(), ApiFailure> {
        self.require_present()?;
        if self.status == MemberStatus::Restricted {
            return Err(ApiFailure::bad_request(
                "not enough rights to send text messages to the chat",
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
struct ScriptedFailure {
    method: String,
    chat_id: Option<i64>,
    text_prefix: Option<String>,
    failure: Failure,
}

impl ScriptedFailure {
    fn new(method: &str, chat_id: Option<i64>, failure: Failure) -> Self {
        Self {
            method: method.to_ascii_lowercase(),
            chat_id,
            text_prefix: None,
            failure,
        }
    }

    fn matches(&self, method: &str, chat_id: Option<i64>, text: Option<&str>) -> bool {
        self.method == method
            && self.chat_id.is_none_or(|wanted| chat_id == Some(wanted))
            && self
                .text_prefix
                .as_deref()
                .is_none_or(|prefix| text.is_some_and(|t| t.starts_with(prefix)))
    }
}

// ---------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------

/// A failed answer: `{"ok":false,"error_code":..,"description":..}`.
#[derive(Debug)]
struct ApiFailure {
    code: u16,
    description: String,
    retry_after: Option<u32>,
    migrate_to_chat_id: Option<i64>,
}

impl ApiFailure {
    fn new(code: u16, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
            retry_after: None,
            migrate_to_chat_id: None,
        }
    }

    fn too_many_requests(secs: u32) -> Self {
        Self {
            retry_after: Some(secs),
            ..Self::new(429, format!("Too Many Requests: retry after {secs}"))
        }
    }

    fn migrated(to: i64) -> Self {
        Self {
            migrate_to_chat_id: Some(to),
            ..Self::bad_request("group chat was upgraded to a supergroup chat")
        }
    }

    fn bad_request(detail: &str) -> Self {
        Self::new(400, format!("Bad Request: {detail}"))
    }

    fn forbidden(detail: &str) -> Self {
        Self::new(403, format!("Forbidden: {detail}"))
    }

    fn unauthorized() -> Self {
        Self::new(401, "Unauthorized")
    }

    fn not_found() -> Self {
        Self::new(404, "Not Found")
    }

    fn chat_not_found() -> Self {
        Self::bad_request("chat not found")
    }

    /// The failure a script asks for; `None` for [`Failure::Delay`].
    fn scripted(failure: &Failure) -> Option<Self> {
        Some(match failure {
            Failure::RetryAfter(secs) => Self::too_many_requests(*secs),
            Failure::Forbidden => Self::forbidden("bot was kicked from the supergroup chat"),
            Failure::ServerError => Self::new(500, "Internal Server Error"),
            Failure::Status(code, description) => Self::new(*code, description.clone()),
            Failure::Delay(_) => return None,
        })
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let mut body = json!({
            "ok": false,
            "error_code": self.code,
            "description": self.description,
        });
        if let (Some(secs), Some(obj)) = (self.retry_after, body.as_object_mut()) {
            obj.insert("parameters".to_owned(), json!({ "retry_after": secs }));
        }
        if let (Some(to), Some(obj)) = (self.migrate_to_chat_id, body.as_object_mut()) {
            obj.insert("parameters".to_owned(), json!({ "migrate_to_chat_id": to }));
        }
        let status = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(body)).into_response()
    }
}

/// A successful answer, optionally with the `description` Telegram adds to
/// some of them ("Webhook was set").
struct Reply {
    result: Value,
    description: Option<&'static str>,
}

impl Reply {
    fn with_description(result: Value, description: &'static str) -> Self {
        Self {
            result,
            description: Some(description),
        }
    }
}

impl From<Value> for Reply {
    fn from(result: Value) -> Self {
        Self {
            result,
            description: None,
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut body = json!({ "ok": true, "result": self.result });
        if let (Some(description), Some(obj)) = (self.description, body.as_object_mut()) {
            obj.insert("description".to_owned(), json!(description));
        }
        (StatusCode::OK, Json(body)).into_response()
    }
}

type ApiResult = Result<Reply, ApiFailure>;

// ---------------------------------------------------------------------------
// HTTP handlers
// ---------------------------------------------------------------------------

async fn handle_not_found() -> Response {
    ApiFailure::not_found().into_response()
}

/// `/{bot<token>}/{method}`: record, authenticate, apply scripts, dispatch.
async fn handle_method(
    State(shared): State<Arc<Shared>>,
    Path((bot_segment, method)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let Some(token) = bot_segment.strip_prefix("bot") else {
        return ApiFailure::not_found().into_response();
    };
    let method = method.to_ascii_lowercase();
    let parsed = parse_params(query.as_deref(), &headers, &body);

    // Record the call, then decide what to do while still holding the lock.
    let call = Call {
        token: token.to_owned(),
        method: method.clone(),
        params: parsed
            .as_ref()
            .map_or(Value::Null, |p| Value::Object(p.clone())),
        at,
    };
    let (params, delay) = match record_and_answer(&shared, token, &method, parsed, call.clone()) {
        Recorded::Answered(response) => return response,
        Recorded::Poll(params, delay) => {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            return get_updates(&shared, token, &params).await;
        }
        Recorded::Delayed(params, delay) => (params, delay),
    };
    // The call takes effect after the delay even if the client gave up waiting (as
    // a slow Telegram does: the answer is lost, the message is sent).
    let token = token.to_owned();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        answer(&shared, shared.lock(), &token, &method, &params, call)
    })
    .await
    .unwrap_or_else(|_| ApiFailure::new(500, "Internal Server Error").into_response())
}

/// What [`record_and_answer`] left to do.
enum Recorded {
    Answered(Response),
    /// `getUpdates`, after an optional scripted delay.
    Poll(Map<String, Value>, Option<Duration>),
    /// A call scripted to take effect after a delay.
    Delayed(Map<String, Value>, Duration),
}

/// Record the call; answer it under the same lock unless it waits. A test that has
/// seen the call then also sees what it did (a renamed topic, a sent message).
fn record_and_answer(
    shared: &Shared,
    token: &str,
    method: &str,
    parsed: Result<Map<String, Value>, ApiFailure>,
    call: Call,
) -> Recorded {
    let mut state = shared.lock();
    state.calls.push(call.clone());
    if !state.bots.contains_key(token) {
        return Recorded::Answered(ApiFailure::unauthorized().into_response());
    }
    let params = match parsed {
        Ok(params) => params,
        Err(failure) => return Recorded::Answered(failure.into_response()),
    };
    let chat_id = params.get("chat_id").and_then(int_value);
    let text = params.get("text").and_then(Value::as_str);
    let delay = match state.take_failure(method, chat_id, text) {
        Some(Failure::Delay(delay)) => Some(delay),
        Some(failure) => match ApiFailure::scripted(&failure) {
            Some(api_failure) => return Recorded::Answered(api_failure.into_response()),
            None => None,
        },
        None => None,
    };
    if method == "getupdates" {
        return Recorded::Poll(params, delay);
    }
    if let Some(delay) = delay {
        return Recorded::Delayed(params, delay);
    }
    Recorded::Answered(answer(shared, state, token, method, &params, call))
}

/// Counts a getUpdates request as held while it lives (also when its client goes away
/// and the request future is dropped).
struct InFlightPoll<'a> {
    shared: &'a Shared,
    token: String,
}

impl<'a> InFlightPoll<'a> {
    fn start(shared: &'a Shared, token: &str) -> Self {
        let mut state = shared.lock();
        let stats = state.polls.entry(token.to_owned()).or_default();
        stats.in_flight += 1;
        stats.max_in_flight = stats.max_in_flight.max(stats.in_flight);
        Self {
            shared,
            token: token.to_owned(),
        }
    }
}

impl Drop for InFlightPoll<'_> {
    fn drop(&mut self) {
        if let Some(stats) = self.shared.lock().polls.get_mut(&self.token) {
            stats.in_flight = stats.in_flight.saturating_sub(1);
        }
    }
}

/// The kind of an update (`message`, `edited_message`, …): its key besides `update_id`.
fn update_kind(update: &Value) -> Option<&str> {
    update
        .as_object()?
        .keys()
        .find(|k| k.as_str() != "update_id")
        .map(String::as_str)
}

/// `getUpdates`, with long polling (see the module docs).
async fn get_updates(shared: &Shared, token: &str, params: &Map<String, Value>) -> Response {
    // Held: wait without taking effect (a dropped request never does).
    let confirms = params.get("offset").and_then(int_value);
    loop {
        let released = shared.poll_wake.notified();
        tokio::pin!(released);
        released.as_mut().enable();
        let held = shared.lock().held_polls.get(token).copied();
        let would_confirm = held.is_some_and(|id| confirms.is_some_and(|offset| offset > id));
        if !would_confirm {
            break;
        }
        released.await;
    }
    let request = Request {
        token,
        bot: &BotAccount {
            id: 0,
            username: String::new(),
        },
        params,
    };
    let parsed = (|| -> Result<_, ApiFailure> {
        let offset = request.int("offset")?;
        let limit = request.int("limit")?.unwrap_or(100).clamp(1, 100);
        let timeout = request.int("timeout")?.unwrap_or(0).clamp(0, 50);
        let allowed = match request.get("allowed_updates") {
            None => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect::<Vec<_>>(),
            ),
            Some(_) => return Err(ApiFailure::bad_request("can't parse allowed updates")),
        };
        Ok((offset, limit, timeout, allowed))
    })();
    let (offset, limit, timeout, allowed) = match parsed {
        Ok(p) => p,
        Err(failure) => return failure.into_response(),
    };
    let generation = {
        let mut state = shared.lock();
        state.polls.entry(token.to_owned()).or_default().requests += 1;
        if let Some(allowed) = allowed.filter(|a| !a.is_empty()) {
            state.allowed_updates.insert(token.to_owned(), allowed);
        }
        let queue = state.updates.entry(token.to_owned()).or_default();
        match offset {
            // A negative offset keeps the last -offset updates.
            Some(o) if o < 0 => {
                let keep = usize::try_from(o.unsigned_abs()).unwrap_or(usize::MAX);
                while queue.len() > keep {
                    queue.pop_front();
                }
            }
            Some(o) => queue.retain(|(id, _)| *id >= o),
            None => {}
        }
        let generation = state.poll_generation.entry(token.to_owned()).or_default();
        *generation += 1;
        *generation
    };
    // The request this one replaces ends with 409.
    shared.poll_wake.notify_waiters();
    let _in_flight = InFlightPoll::start(shared, token);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout.unsigned_abs());
    loop {
        let woken = shared.poll_wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        {
            let mut state = shared.lock();
            if state.webhooks.contains_key(token) {
                if let Some(stats) = state.polls.get_mut(token) {
                    stats.refused_for_webhook += 1;
                }
                return ApiFailure::new(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
                )
                .into_response();
            }
            if state.poll_generation.get(token) != Some(&generation) {
                if let Some(stats) = state.polls.get_mut(token) {
                    stats.terminated += 1;
                }
                return ApiFailure::new(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
                )
                .into_response();
            }
            let allowed = state.allowed_updates.get(token).cloned();
            let queue = state.updates.entry(token.to_owned()).or_default();
            if let Some(allowed) = &allowed {
                // Telegram never sends kinds the bot did not ask for.
                queue.retain(|(_, u)| {
                    update_kind(u).is_some_and(|k| allowed.iter().any(|a| a == k))
                });
            }
            let batch: Vec<Value> = queue
                .iter()
                .take(usize::try_from(limit).unwrap_or(100))
                .map(|(_, u)| u.clone())
                .collect();
            if !batch.is_empty() || tokio::time::Instant::now() >= deadline {
                return Reply::from(Value::Array(batch)).into_response();
            }
        }
        tokio::select! {
            _ = &mut woken => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// Checks migration and flood limits for an authenticated call, then runs it.
fn answer(
    shared: &Shared,
    mut state: MutexGuard<'_, WorldState>,
    token: &str,
    method: &str,
    params: &Map<String, Value>,
    call: Call,
) -> Response {
    // The bot may have been removed while we slept.
    let Some(bot) = state.bots.get(token).cloned() else {
        return ApiFailure::unauthorized().into_response();
    };
    let request = Request {
        token,
        bot: &bot,
        params,
    };
    let chat_id = params.get("chat_id").and_then(int_value);
    if let Some(to) = chat_id.and_then(|c| state.migrated.get(&c).copied()) {
        return ApiFailure::migrated(to).into_response();
    }
    if let Err(failure) = state.admit(method, bot.id, chat_id) {
        state.throttled.push(call);
        return failure.into_response();
    }
    let response = match state.dispatch(method, &request) {
        Ok(reply) => reply.into_response(),
        Err(failure) => failure.into_response(),
    };
    drop(state);
    if method == "setwebhook" {
        // A held getUpdates now gets 409.
        shared.poll_wake.notify_waiters();
    }
    response
}

/// One authenticated call, as the method implementations see it.
struct Request<'a> {
    token: &'a str,
    bot: &'a BotAccount,
    params: &'a Map<String, Value>,
}

impl Request<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.params.get(name).filter(|v| !v.is_null())
    }

    /// A string parameter (numbers and booleans are stringified).
    fn str(&self, name: &str) -> Option<String> {
        match self.get(name)? {
            Value::String(s) => Some(s.clone()),
            other @ (Value::Number(_) | Value::Bool(_)) => Some(other.to_string()),
            _ => None,
        }
    }

    /// An integer parameter; `Ok(None)` if absent, 400 if not an integer.
    fn int(&self, name: &str) -> Result<Option<i64>, ApiFailure> {
        match self.get(name) {
            None => Ok(None),
            Some(value) => int_value(value)
                .map(Some)
                .ok_or_else(|| ApiFailure::bad_request(&format!("invalid {name} specified"))),
        }
    }

    fn bool(&self, name: &str) -> bool {
        match self.get(name) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s == "true" || s == "1",
            Some(Value::Number(n)) => n.as_i64().is_some_and(|n| n != 0),
            _ => false,
        }
    }

    /// `chat_id`, which must name a known chat by number.
    fn chat_id(&self) -> Result<i64, ApiFailure> {
        match self.get("chat_id") {
            None => Err(ApiFailure::bad_request("chat_id is empty")),
            // "@username" and other non-numeric ids name no chat the fake knows.
            Some(value) => int_value(value).ok_or_else(ApiFailure::chat_not_found),
        }
    }

    /// `message_thread_id`; unparseable or out-of-range ids are "not found".
    fn thread_id(&self) -> Result<Option<i32>, ApiFailure> {
        match self.get("message_thread_id") {
            None => Ok(None),
            Some(value) => int_value(value)
                .and_then(|n| i32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| ApiFailure::bad_request("message thread not found")),
        }
    }

    fn required_thread_id(&self) -> Result<i32, ApiFailure> {
        self.thread_id()?
            .ok_or_else(|| ApiFailure::bad_request("message thread not found"))
    }
}

// ---------------------------------------------------------------------------
// Methods
// ---------------------------------------------------------------------------

impl WorldState {
    /// Checks the flood limits for a call and counts it; 429 (counting nothing)
    /// when a window is full.
    fn admit(&mut self, method: &str, bot_id: u64, chat_id: Option<i64>) -> Result<(), ApiFailure> {
        let Some(limits) = self.limits else {
            return Ok(());
        };
        if !COUNTED_METHODS.contains(&method) {
            return Ok(());
        }
        let mut scopes = vec![(FloodKey::Bot(bot_id), limits.per_bot)];
        if let Some(chat) = chat_id {
            scopes.push((FloodKey::Chat(chat), limits.per_chat));
            if method != "sendchataction" {
                scopes.push((FloodKey::Group(bot_id, chat), limits.per_group));
            }
        }
        let now = Instant::now();
        let mut wait = Duration::ZERO;
        for (key, window) in &scopes {
            let every = window.every.saturating_sub(limits.slack);
            let log = self.flood.entry(*key).or_default();
            while log
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= every)
            {
                log.pop_front();
            }
            if log.len() >= window.max.max(1) {
                let oldest = log[log.len() - window.max.max(1)];
                wait = wait.max((oldest + every).saturating_duration_since(now));
            }
        }
        if !wait.is_zero() {
            let secs = u32::try_from(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
                .unwrap_or(u32::MAX)
                .max(1);
            return Err(ApiFailure::too_many_requests(secs));
        }
        for (key, _) in scopes {
            self.flood.entry(key).or_default().push_back(now);
        }
        Ok(())
    }

    fn take_failure(
        &mut self,
        method: &str,
        chat_id: Option<i64>,
        text: Option<&str>,
    ) -> Option<Failure> {
        if let Some(pos) = self
            .one_shot
            .iter()
            .position(|s| s.matches(method, chat_id, text))
        {
            return self.one_shot.remove(pos).map(|s| s.failure);
        }
        self.always
            .iter()
            .find(|s| s.matches(method, chat_id, text))
            .map(|s| s.failure.clone())
    }

    fn membership(&self, bot_id: u64, chat_id: i64) -> Membership {
        self.members
            .get(&(bot_id, chat_id))
            .copied()
            .unwrap_or(Membership::LEFT)
    }

    fn username_of(&self, bot_id: u64) -> Option<&str> {
        self.bots
            .values()
            .find(|b| b.id == bot_id)
            .map(|b| b.username.as_str())
    }

    fn dispatch(&mut self, method: &str, req: &Request<'_>) -> ApiResult {
        match method {
            "getme" => Ok(self.get_me(req)),
            "getchat" => self.get_chat(req),
            "getchatmember" => self.get_chat_member(req),
            "setwebhook" => self.set_webhook(req),
            "deletewebhook" => Ok(self.delete_webhook(req)),
            "getwebhookinfo" => Ok(self.get_webhook_info(req)),
            "createforumtopic" => self.create_forum_topic(req),
            "editforumtopic" => self.manage_topic(req, TopicAction::Edit),
            "closeforumtopic" => self.manage_topic(req, TopicAction::Close),
            "reopenforumtopic" => self.manage_topic(req, TopicAction::Reopen),
            "deleteforumtopic" => self.manage_topic(req, TopicAction::Delete),
            "sendmessage" => self.send_message(req),
            "sendchataction" => self.send_chat_action(req),
            _ => Err(ApiFailure::not_found()),
        }
    }

    fn get_me(&self, req: &Request<'_>) -> Reply {
        let mut me = req.bot.user_json();
        if let Some(obj) = me.as_object_mut() {
            obj.insert("can_join_groups".to_owned(), json!(true));
            obj.insert("can_read_all_group_messages".to_owned(), json!(false));
            obj.insert("supports_inline_queries".to_owned(), json!(false));
            obj.insert("can_connect_to_business".to_owned(), json!(false));
            obj.insert("has_main_web_app".to_owned(), json!(false));
        }
        me.into()
    }

    fn get_chat(&self, req: &Request<'_>) -> ApiResult {
        let chat_id = req.chat_id()?;
        let group = self
            .groups
            .get(&chat_id)
            .ok_or_else(ApiFailure::chat_not_found)?;
        Ok(json!({
            "id": chat_id,
            "type": "supergroup",
            "title": group.title,
            "is_forum": group.is_forum,
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": false,
                "limited_gifts": false,
                "unique_gifts": false,
                "premium_subscription": false,
            },
            "permissions": {
                "can_send_messages": true,
                "can_send_audios": true,
                "can_send_documents": true,
                "can_send_photos": true,
                "can_send_videos": true,
                "can_send_video_notes": true,
                "can_send_voice_notes": true,
                "can_send_polls": true,
                "can_send_other_messages": true,
                "can_add_web_page_previews": true,
                "can_change_info": false,
                "can_invite_users": true,
                "can_pin_messages": false,
                "can_manage_topics": false,
            },
        })
        .into())
    }

    /// Answers for bots the fake knows; any other user is "not found".
    fn get_chat_member(&self, req: &Request<'_>) -> ApiResult {
        let chat_id = req.chat_id()?;
        if !self.groups.contains_key(&chat_id) {
            return Err(ApiFailure::chat_not_found());
        }
        let user_id = req
            .int("user_id")?
            .and_then(|id| u64::try_from(id).ok())
            .ok_or_else(|| ApiFailure::bad_request("user not found"))?;
        let member = self
            .bots
            .values()
            .find(|b| b.id == user_id)
            .ok_or_else(|| ApiFailure::bad_request("user not found"))?;
        let membership = self.membership(user_id, chat_id);
        Ok(chat_member_json(member.user_json(), membership).into())
    }

    fn set_webhook(&mut self, req: &Request<'_>) -> ApiResult {
        let url = req.str("url").unwrap_or_default();
        if url.is_empty() {
            // An empty URL removes the webhook, as in Telegram.
            return Ok(self.delete_webhook(req));
        }
        let parsed = reqwest::Url::parse(&url)
            .map_err(|_| ApiFailure::bad_request("bad webhook: Failed to resolve host"))?;
        let http_ok = self.local && parsed.scheme() == "http";
        if parsed.scheme() != "https" && !http_ok {
            return Err(ApiFailure::bad_request(
                "bad webhook: HTTPS url must be provided for webhook",
            ));
        }
        let port = parsed.port_or_known_default().unwrap_or(0);
        if !self.local && !WEBHOOK_PORTS.contains(&port) {
            return Err(ApiFailure::bad_request(
                "bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443",
            ));
        }
        let secret_token = req.str("secret_token").filter(|s| !s.is_empty());
        if let Some(secret) = &secret_token {
            let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
            if secret.len() > 256 || !secret.chars().all(allowed) {
                return Err(ApiFailure::bad_request(
                    "secret token contains unallowed characters",
                ));
            }
        }
        let allowed_updates = match req.get("allowed_updates") {
            None => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|item| match item {
                        Value::String(s) => Ok(s.clone()),
                        _ => Err(ApiFailure::bad_request("can't parse allowed updates")),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(_) => return Err(ApiFailure::bad_request("can't parse allowed updates")),
        };
        let max_connections = req
            .int("max_connections")?
            .map(|n| {
                u32::try_from(n).map_err(|_| ApiFailure::bad_request("invalid max_connections"))
            })
            .transpose()?;
        self.webhooks.insert(
            req.token.to_owned(),
            Webhook {
                url,
                secret_token,
                allowed_updates,
                max_connections,
                drop_pending_updates: req.bool("drop_pending_updates"),
            },
        );
        Ok(Reply::with_description(json!(true), "Webhook was set"))
    }

    fn delete_webhook(&mut self, req: &Request<'_>) -> Reply {
        if req.bool("drop_pending_updates") {
            self.updates.remove(req.token);
        }
        match self.webhooks.remove(req.token) {
            Some(_) => Reply::with_description(json!(true), "Webhook was deleted"),
            None => Reply::with_description(json!(true), "Webhook is already deleted"),
        }
    }

    fn get_webhook_info(&self, req: &Request<'_>) -> Reply {
        let mut info = json!({
            "url": "",
            "has_custom_certificate": false,
            "pending_update_count": 0,
        });
        if let (Some(hook), Some(obj)) = (self.webhooks.get(req.token), info.as_object_mut()) {
            obj.insert("url".to_owned(), json!(hook.url));
            obj.insert(
                "max_connections".to_owned(),
                json!(hook.max_connections.unwrap_or(40)),
            );
            if let Some(allowed) = &hook.allowed_updates {
                obj.insert("allowed_updates".to_owned(), json!(allowed));
            }
        }
        info.into()
    }

    fn create_forum_topic(&mut self, req: &Request<'_>) -> ApiResult {
        let chat_id = req.chat_id()?;
        let membership = self.membership(req.bot.id, chat_id);
        let group = self
            .groups
            .get_mut(&chat_id)
            .ok_or_else(ApiFailure::chat_not_found)?;
        membership.require_present()?;
        if !group.is_forum {
            return Err(ApiFailure::bad_request("the chat is not a forum"));
        }
        if !membership.manages_topics() {
            return Err(ApiFailure::bad_request(
                "not enough rights to create a topic",
            ));
        }
        let name = validate_topic_name(req.str("name").unwrap_or_default())?;
        let icon_color = req.int("icon_color")?.map_or(Ok(DEFAULT_ICON_COLOR), |c| {
            u32::try_from(c).map_err(|_| ApiFailure::bad_request("TOPIC_ICON_COLOR_INVALID"))
        })?;
        let topic = group.create_topic(name, icon_color, req.bot.id);
        Ok(json!({
            "message_thread_id": topic.thread_id,
            "name": topic.name,
            "icon_color": topic.icon_color,
        })
        .into())
    }

    fn manage_topic(&mut self, req: &Request<'_>, action: TopicAction) -> ApiResult {
        let chat_id = req.chat_id()?;
        let thread_id = req.required_thread_id()?;
        let new_name = match action {
            // Absent or empty: the topic keeps its name.
            TopicAction::Edit => req
                .str("name")
                .filter(|n| !n.is_empty())
                .map(validate_topic_name)
                .transpose()?,
            _ => None,
        };
        let new_emoji = req.get("icon_custom_emoji_id").is_some();
        let membership = self.membership(req.bot.id, chat_id);
        let group = self
            .groups
            .get_mut(&chat_id)
            .ok_or_else(ApiFailure::chat_not_found)?;
        membership.require_present()?;
        let topic = group.live_topic(thread_id)?;
        let allowed = match action {
            TopicAction::Delete => membership.deletes_messages(),
            _ => {
                membership.is_admin()
                    && (membership.manages_topics() || topic.creator_bot_id == req.bot.id)
            }
        };
        if !allowed {
            return Err(ApiFailure::bad_request("CHAT_ADMIN_REQUIRED"));
        }
        let not_modified = || ApiFailure::bad_request("TOPIC_NOT_MODIFIED");
        match action {
            TopicAction::Close if topic.closed => return Err(not_modified()),
            TopicAction::Close => topic.closed = true,
            TopicAction::Reopen if !topic.closed => return Err(not_modified()),
            TopicAction::Reopen => topic.closed = false,
            TopicAction::Edit => match new_name {
                Some(name) if name != topic.name => topic.name = name,
                _ if new_emoji => {}
                _ => return Err(not_modified()),
            },
            TopicAction::Delete => topic.deleted = true,
        }
        Ok(json!(true).into())
    }

    /// `sendChatAction`: only `typing` is known here; the topic must be live.
    fn send_chat_action(&mut self, req: &Request<'_>) -> ApiResult {
        let chat_id = req.chat_id()?;
        let thread_id = req.thread_id()?;
        let membership = self.membership(req.bot.id, chat_id);
        let group = self
            .groups
            .get_mut(&chat_id)
            .ok_or_else(ApiFailure::chat_not_found)?;
        membership.require_send()?;
        if req.str("action").as_deref() != Some("typing") {
            return Err(ApiFailure::bad_request("wrong parameter action in request"));
        }
        if let Some(thread_id) = thread_id {
            group.live_topic(thread_id)?;
        }
        Ok(json!(true).into())
    }

    fn send_message(&mut self, req: &Request<'_>) -> ApiResult {
        let chat_id = req.chat_id()?;
        let thread_id = req.thread_id()?;
        let text = req.str("text").unwrap_or_default();
        let membership = self.membership(req.bot.id, chat_id);
        let group = self
            .groups
            .get_mut(&chat_id)
            .ok_or_else(ApiFailure::chat_not_found)?;
        membership.require_send()?;
        if text.trim().is_empty() {
            return Err(ApiFailure::bad_request("message text is empty"));
        }
        if text.encode_utf16().count() > MAX_MESSAGE_CHARS {
            return Err(ApiFailure::bad_request("message is too long"));
        }
        let topic = match thread_id {
            None => None,
            Some(thread_id) => {
                let topic = group.live_topic(thread_id)?;
                if topic.closed && !membership.manages_topics() {
                    return Err(ApiFailure::bad_request("TOPIC_CLOSED"));
                }
                Some(topic.clone())
            }
        };
        let message_id = group.next_message_id();
        group.messages.push(SentMessage {
            message_id,
            thread_id,
            bot_id: req.bot.id,
            text: text.clone(),
        });
        let chat = group.chat_json(chat_id);
        let mut message = json!({
            "message_id": message_id,
            "from": req.bot.user_json(),
            "chat": chat,
            "date": unix_now(),
            "text": text,
        });
        if let (Some(topic), Some(obj)) = (topic, message.as_object_mut()) {
            let creator = self
                .username_of(topic.creator_bot_id)
                .map(|username| bot_user_json(topic.creator_bot_id, username));
            obj.insert("message_thread_id".to_owned(), json!(topic.thread_id));
            obj.insert("is_topic_message".to_owned(), json!(true));
            obj.insert(
                "reply_to_message".to_owned(),
                topic_created_message_json(
                    &chat,
                    topic.thread_id,
                    &topic.name,
                    topic.icon_color,
                    creator,
                    topic.created_at,
                ),
            );
        }
        Ok(message.into())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TopicAction {
    Edit,
    Close,
    Reopen,
    Delete,
}

/// A topic name: 1..=128 characters, counted in UTF-16 code units.
fn validate_topic_name(name: String) -> Result<String, ApiFailure> {
    let chars = name.encode_utf16().count();
    if chars == 0 {
        Err(ApiFailure::bad_request("TOPIC_TITLE_EMPTY"))
    } else if chars > MAX_TOPIC_NAME_CHARS {
        Err(ApiFailure::bad_request("TOPIC_TITLE_TOO_LONG"))
    } else {
        Ok(name)
    }
}

/// The `ChatMember` object for a user with the given membership.
fn chat_member_json(user: Value, membership: Membership) -> Value {
    match membership.status {
        MemberStatus::Creator => json!({
            "user": user,
            "status": "creator",
            "is_anonymous": false,
        }),
        MemberStatus::Administrator => json!({
            "user": user,
            "status": "administrator",
            "can_be_edited": false,
            "is_anonymous": false,
            "can_manage_chat": true,
            "can_delete_messages": membership.can_delete_messages,
            "can_manage_video_chats": true,
            "can_restrict_members": true,
            "can_promote_members": false,
            "can_change_info": true,
            "can_invite_users": true,
            "can_post_stories": false,
            "can_edit_stories": false,
            "can_delete_stories": false,
            "can_pin_messages": true,
            "can_manage_topics": membership.can_manage_topics,
        }),
        MemberStatus::Member => json!({ "user": user, "status": "member" }),
        MemberStatus::Restricted => json!({
            "user": user,
            "status": "restricted",
            "until_date": 0,
            "is_member": true,
            "can_send_messages": false,
            "can_send_audios": false,
            "can_send_documents": false,
            "can_send_photos": false,
            "can_send_videos": false,
            "can_send_video_notes": false,
            "can_send_voice_notes": false,
            "can_send_polls": false,
            "can_send_other_messages": false,
            "can_add_web_page_previews": false,
            "can_change_info": false,
            "can_invite_users": false,
            "can_pin_messages": false,
            "can_manage_topics": false,
        }),
        MemberStatus::Left => json!({ "user": user, "status": "left" }),
        MemberStatus::Kicked => json!({ "user": user, "status": "kicked", "until_date": 0 }),
    }
}

// ---------------------------------------------------------------------------
// Request parsing
// ---------------------------------------------------------------------------

/// Merges query-string and body parameters into one JSON object (body wins).
fn parse_params(
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Map<String, Value>, ApiFailure> {
    let mut params = query.map(parse_urlencoded).unwrap_or_default();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let from_body = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else if mime == "multipart/form-data" {
        let boundary = content_type
            .split(';')
            .filter_map(|p| p.trim().strip_prefix("boundary="))
            .map(|b| b.trim_matches('"').to_owned())
            .next()
            .ok_or_else(|| ApiFailure::bad_request("multipart boundary is missing"))?;
        parse_multipart(body, &boundary)
    } else if mime == "application/x-www-form-urlencoded" {
        parse_urlencoded(&String::from_utf8_lossy(body))
    } else {
        // application/json, or unlabelled: Telegram's clients all send JSON.
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => map,
            _ => return Err(ApiFailure::bad_request("can't parse JSON object")),
        }
    };
    params.extend(from_body);
    Ok(params)
}

/// A minimal `multipart/form-data` reader: enough for teloxide's text parts.
/// File parts (e.g. a webhook certificate) are kept as lossy text.
fn parse_multipart(body: &[u8], boundary: &str) -> Map<String, Value> {
    let text = String::from_utf8_lossy(body);
    let delimiter = format!("--{boundary}");
    let mut params = Map::new();
    for part in text.split(delimiter.as_str()).skip(1) {
        if part.starts_with("--") {
            break; // closing delimiter
        }
        let part = part.strip_prefix("\r\n").unwrap_or(part);
        let Some((head, value)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let value = value.strip_suffix("\r\n").unwrap_or(value);
        let name = head
            .lines()
            .filter(|line| {
                line.to_ascii_lowercase()
                    .starts_with("content-disposition:")
            })
            .flat_map(|line| line.split(';'))
            .find_map(|attr| {
                attr.trim()
                    .strip_prefix("name=")
                    .map(|n| n.trim_matches('"').to_owned())
            });
        if let Some(name) = name {
            params.insert(name, form_value(value));
        }
    }
    params
}

fn parse_urlencoded(input: &str) -> Map<String, Value> {
    input
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), form_value(&percent_decode(value)))
        })
        .collect()
}

/// A form value: JSON arrays/objects are parsed, everything else stays text.
fn form_value(raw: &str) -> Value {
    let trimmed = raw.trim_start();
    if (trimmed.starts_with('[') || trimmed.starts_with('{'))
        && let Ok(value) = serde_json::from_str(raw)
    {
        return value;
    }
    Value::String(raw.to_owned())
}

fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An integer from a JSON number or a numeric string.
fn int_value(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

// ---------------------------------------------------------------------------
// JSON building blocks (Telegram's object shapes)
// ---------------------------------------------------------------------------

/// A human `User`.
pub(crate) fn human_user_json(user_id: u64, first_name: &str) -> Value {
    json!({ "id": user_id, "is_bot": false, "first_name": first_name })
}

/// A bot `User` (first name = username).
pub(crate) fn bot_user_json(bot_id: u64, username: &str) -> Value {
    json!({ "id": bot_id, "is_bot": true, "first_name": username, "username": username })
}

/// A supergroup `Chat`; `is_forum` is only sent when true, as Telegram does.
pub(crate) fn supergroup_chat_json(chat_id: i64, title: &str, is_forum: bool) -> Value {
    let mut chat = json!({ "id": chat_id, "title": title, "type": "supergroup" });
    if let (true, Some(obj)) = (is_forum, chat.as_object_mut()) {
        obj.insert("is_forum".to_owned(), json!(true));
    }
    chat
}

/// The `forum_topic_created` service message that opens a topic; its
/// message id is the thread id. `creator` is its `from`, if known.
pub(crate) fn topic_created_message_json(
    chat: &Value,
    thread_id: i32,
    name: &str,
    icon_color: u32,
    creator: Option<Value>,
    date: i64,
) -> Value {
    let mut message = json!({
        "message_id": thread_id,
        "message_thread_id": thread_id,
        "date": date,
        "chat": chat,
        "is_topic_message": true,
        "forum_topic_created": { "name": name, "icon_color": icon_color },
    });
    if let (Some(creator), Some(obj)) = (creator, message.as_object_mut()) {
        obj.insert("from".to_owned(), creator);
    }
    message
}

/// A text message inside a forum topic, as Telegram delivers it: with
/// `message_thread_id`, `is_topic_message` and `reply_to_message` pointing at
/// the topic's service message (named "Topic N", creator unknown).
pub(crate) fn topic_text_message_json(
    chat_id: i64,
    thread_id: i32,
    message_id: i32,
    from: Value,
    text: &str,
) -> Value {
    let chat = supergroup_chat_json(chat_id, UPDATE_CHAT_TITLE, true);
    let date = unix_now();
    json!({
        "message_id": message_id,
        "message_thread_id": thread_id,
        "from": from,
        "chat": chat,
        "date": date,
        "is_topic_message": true,
        "reply_to_message": topic_created_message_json(
            &chat,
            thread_id,
            &format!("Topic {thread_id}"),
            DEFAULT_ICON_COLOR,
            None,
            date - 60,
        ),
        "text": text,
    })
}

// ---------------------------------------------------------------------------
// Update builders (webhook payloads)
// ---------------------------------------------------------------------------

/// A human admin's text message in a forum topic.
pub(crate) fn topic_text_update(
    update_id: u32,
    chat_id: i64,
    thread_id: i32,
    message_id: i32,
    from_user_id: u64,
    first_name: &str,
    text: &str,
) -> Value {
    let message = topic_text_message_json(
        chat_id,
        thread_id,
        message_id,
        human_user_json(from_user_id, first_name),
        text,
    );
    json!({ "update_id": update_id, "message": message })
}

/// The same message as [`topic_text_update`] after an edit: an
/// `edited_message` carrying `edit_date`.
pub(crate) fn edited_topic_text_update(
    update_id: u32,
    chat_id: i64,
    thread_id: i32,
    message_id: i32,
    from_user_id: u64,
    first_name: &str,
    text: &str,
) -> Value {
    let mut message = topic_text_message_json(
        chat_id,
        thread_id,
        message_id,
        human_user_json(from_user_id, first_name),
        text,
    );
    if let Some(obj) = message.as_object_mut() {
        obj.insert("edit_date".to_owned(), json!(unix_now()));
    }
    json!({ "update_id": update_id, "edited_message": message })
}

/// The `forum_topic_created` service message for a topic the bot created.
pub(crate) fn service_update(
    update_id: u32,
    chat_id: i64,
    thread_id: i32,
    topic_name: &str,
    bot_id: u64,
    bot_username: &str,
) -> Value {
    let chat = supergroup_chat_json(chat_id, UPDATE_CHAT_TITLE, true);
    let message = topic_created_message_json(
        &chat,
        thread_id,
        topic_name,
        DEFAULT_ICON_COLOR,
        Some(bot_user_json(bot_id, bot_username)),
        unix_now(),
    );
    json!({ "update_id": update_id, "message": message })
}

/// A text message in the bot's private chat with a user.
pub(crate) fn private_update(
    update_id: u32,
    user_id: u64,
    first_name: &str,
    message_id: i32,
    text: &str,
) -> Value {
    json!({
        "update_id": update_id,
        "message": {
            "message_id": message_id,
            "from": human_user_json(user_id, first_name),
            "chat": { "id": user_id, "type": "private", "first_name": first_name },
            "date": unix_now(),
            "text": text,
        },
    })
}

/// A text message in the forum's General topic (no thread id).
pub(crate) fn general_text_update(
    update_id: u32,
    chat_id: i64,
    message_id: i32,
    from_user_id: u64,
    first_name: &str,
    text: &str,
) -> Value {
    json!({
        "update_id": update_id,
        "message": {
            "message_id": message_id,
            "from": human_user_json(from_user_id, first_name),
            "chat": supergroup_chat_json(chat_id, UPDATE_CHAT_TITLE, true),
            "date": unix_now(),
            "text": text,
        },
    })
}

/// A topic message whose `from` is a bot (e.g. the bot's own echo).
pub(crate) fn bot_own_update(
    update_id: u32,
    chat_id: i64,
    thread_id: i32,
    message_id: i32,
    bot_id: u64,
    bot_username: &str,
    text: &str,
) -> Value {
    let message = topic_text_message_json(
        chat_id,
        thread_id,
        message_id,
        bot_user_json(bot_id, bot_username),
        text,
    );
    json!({ "update_id": update_id, "message": message })
}
