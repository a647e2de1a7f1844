//! Proves that the fake Telegram Bot API (`tests/support/fake_telegram.rs`)
//! speaks the real protocol: a real `teloxide::Bot` is pointed at it and every
//! answer must deserialise; scripted failures must map to the teloxide errors
//! the worker will see; the update builders must deserialise as `Update`s.

#[path = "support/fake_telegram.rs"]
mod fake_telegram;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use fake_telegram::{
    DEFAULT_ICON_COLOR, Failure, FakeTelegram, Limits, SECRET_TOKEN_HEADER, Topic, Window,
    bot_own_update, edited_topic_text_update, general_text_update, private_update, service_update,
    topic_text_update,
};
use serde_json::{Value, json};
use teloxide::{
    ApiError, RequestError,
    prelude::*,
    types::{
        AllowedUpdate, ChatFullInfoKind, ChatFullInfoPublicKind, ChatMemberKind, MessageId,
        ThreadId, Update, UpdateId, UpdateKind,
    },
};

const TOKEN: &str = "111:AAA-fake";
const BOT_ID: u64 = 111;
const USERNAME: &str = "support_bot";
const FORUM: i64 = -1_001_000_000_001;
const PLAIN_GROUP: i64 = -1_001_000_000_002;

/// A fake with one admin bot in one forum (and one non-forum group).
async fn world() -> (FakeTelegram, Bot) {
    populate(FakeTelegram::start().await)
}

/// [`world`] on a fake that behaves as a local Bot API server.
async fn local_world() -> (FakeTelegram, Bot) {
    populate(FakeTelegram::start_local().await)
}

fn populate(fake: FakeTelegram) -> (FakeTelegram, Bot) {
    fake.add_bot(TOKEN, BOT_ID, USERNAME);
    fake.add_group(FORUM, "Support", true);
    fake.add_group(PLAIN_GROUP, "Plain", false);
    fake.set_member(BOT_ID, FORUM, "administrator", true);
    fake.set_member(BOT_ID, PLAIN_GROUP, "administrator", true);
    let bot = Bot::new(TOKEN).set_api_url(fake.url());
    (fake, bot)
}

fn thread(n: i32) -> ThreadId {
    ThreadId(MessageId(n))
}

/// The description of an `ApiError::Unknown`, or a panic with the error.
fn unknown_description(result: Result<impl std::fmt::Debug, RequestError>) -> String {
    match result {
        Err(RequestError::Api(ApiError::Unknown(description))) => description,
        other => panic!("expected ApiError::Unknown, got {other:?}"),
    }
}

#[tokio::test]
async fn teloxide_round_trip() {
    let (fake, bot) = world().await;
    assert!(fake.api_url().starts_with("http://127.0.0.1:"));
    assert_eq!(fake.url().as_str(), format!("{}/", fake.api_url()));

    // getMe
    let me = bot.get_me().await.expect("getMe");
    assert_eq!(me.id, UserId(BOT_ID));
    assert!(me.is_bot);
    assert_eq!(me.username(), USERNAME);
    assert!(me.can_join_groups);

    // getChat
    let chat = bot.get_chat(ChatId(FORUM)).await.expect("getChat");
    assert_eq!(chat.id, ChatId(FORUM));
    assert_eq!(chat.title(), Some("Support"));
    assert!(chat.is_supergroup());
    let ChatFullInfoKind::Public(public) = &chat.kind else {
        panic!("public chat expected")
    };
    let ChatFullInfoPublicKind::Supergroup(supergroup) = &public.kind else {
        panic!("supergroup expected")
    };
    assert!(supergroup.is_forum);

    // getChatMember
    let member = bot
        .get_chat_member(ChatId(FORUM), UserId(BOT_ID))
        .await
        .expect("getChatMember");
    assert_eq!(member.user.id, UserId(BOT_ID));
    let ChatMemberKind::Administrator(admin) = &member.kind else {
        panic!("administrator expected, got {member:?}")
    };
    assert!(admin.can_manage_topics);

    // setWebhook (sent as multipart by teloxide) and getWebhookInfo
    let hook_url =
        reqwest::Url::parse("https://chat.example.com/telegram/webhook/t1").expect("url");
    bot.set_webhook(hook_url.clone())
        .secret_token("s3cret_token-1")
        .allowed_updates([AllowedUpdate::Message, AllowedUpdate::EditedMessage])
        .await
        .expect("setWebhook");
    let hook = fake.webhook(TOKEN).expect("webhook remembered");
    assert_eq!(hook.url, hook_url.as_str());
    assert_eq!(hook.secret_token.as_deref(), Some("s3cret_token-1"));
    assert_eq!(
        hook.allowed_updates,
        Some(vec!["message".to_owned(), "edited_message".to_owned()])
    );
    let info = bot.get_webhook_info().await.expect("getWebhookInfo");
    assert_eq!(info.url, Some(hook_url.clone()));
    assert!(!info.has_custom_certificate);
    assert_eq!(info.pending_update_count, 0);
    assert_eq!(
        info.allowed_updates,
        Some(vec![AllowedUpdate::Message, AllowedUpdate::EditedMessage])
    );

    // createForumTopic: thread ids increase per chat
    let topic = bot
        .create_forum_topic(ChatId(FORUM), "Visitor #1")
        .await
        .expect("createForumTopic");
    assert_eq!(topic.name, "Visitor #1");
    assert_eq!(topic.icon_color.to_u32(), DEFAULT_ICON_COLOR);
    let second = bot
        .create_forum_topic(ChatId(FORUM), "Visitor #2")
        .await
        .expect("second topic");
    assert!(second.thread_id.0.0 > topic.thread_id.0.0);

    // sendMessage into the topic
    let sent = bot
        .send_message(ChatId(FORUM), "Hello from the website")
        .message_thread_id(topic.thread_id)
        .await
        .expect("sendMessage");
    assert_eq!(sent.chat.id, ChatId(FORUM));
    assert_eq!(sent.text(), Some("Hello from the website"));
    assert_eq!(sent.thread_id, Some(topic.thread_id));
    assert!(sent.is_topic_message);
    assert_eq!(sent.from.as_ref().map(|u| u.id), Some(UserId(BOT_ID)));
    let opener = sent
        .reply_to_message()
        .expect("topic messages reply to the service message");
    assert_eq!(opener.id, topic.thread_id.0);
    assert_eq!(
        opener.forum_topic_created().map(|c| c.name.as_str()),
        Some("Visitor #1")
    );
    let again = bot
        .send_message(ChatId(FORUM), "Second")
        .message_thread_id(topic.thread_id)
        .await
        .expect("second sendMessage");
    assert!(again.id.0 > sent.id.0, "message ids increase per chat");
    let general = bot
        .send_message(ChatId(FORUM), "General")
        .await
        .expect("General topic");
    assert_eq!(general.thread_id, None);
    assert!(!general.is_topic_message);

    // close / reopen / edit
    bot.close_forum_topic(ChatId(FORUM), topic.thread_id)
        .await
        .expect("closeForumTopic");
    assert!(
        fake.topic(FORUM, topic.thread_id.0.0)
            .expect("topic")
            .closed
    );
    let twice = bot.close_forum_topic(ChatId(FORUM), topic.thread_id).await;
    assert_eq!(
        unknown_description(twice),
        "Bad Request: TOPIC_NOT_MODIFIED"
    );
    bot.reopen_forum_topic(ChatId(FORUM), topic.thread_id)
        .await
        .expect("reopenForumTopic");
    bot.edit_forum_topic(ChatId(FORUM), topic.thread_id)
        .name("Visitor #1 (Alice)")
        .await
        .expect("editForumTopic");
    assert_eq!(
        fake.topic(FORUM, topic.thread_id.0.0),
        Some(Topic {
            thread_id: topic.thread_id.0.0,
            name: "Visitor #1 (Alice)".to_owned(),
            icon_color: DEFAULT_ICON_COLOR,
            closed: false,
            deleted: false,
            creator_bot_id: BOT_ID,
            created_at: fake
                .topic(FORUM, topic.thread_id.0.0)
                .expect("topic")
                .created_at,
        })
    );

    // The recorded calls, in order, with lower-case names and JSON params.
    let methods: Vec<String> = fake.calls().into_iter().map(|c| c.method).collect();
    assert_eq!(
        methods,
        [
            "getme",
            "getchat",
            "getchatmember",
            "setwebhook",
            "getwebhookinfo",
            "createforumtopic",
            "createforumtopic",
            "sendmessage",
            "sendmessage",
            "sendmessage",
            "closeforumtopic",
            "closeforumtopic",
            "reopenforumtopic",
            "editforumtopic",
        ]
    );
    assert!(fake.calls().iter().all(|c| c.token == TOKEN));
    let calls = fake.calls();
    assert!(calls.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(
        calls[2].params,
        json!({ "chat_id": FORUM, "user_id": BOT_ID })
    );
    assert_eq!(calls[3].params["url"], json!(hook_url.as_str()));
    assert_eq!(calls[3].params["secret_token"], json!("s3cret_token-1"));
    assert_eq!(
        calls[3].params["allowed_updates"],
        json!(["message", "edited_message"])
    );
    assert_eq!(
        calls[5].params,
        json!({ "chat_id": FORUM, "name": "Visitor #1" })
    );
    let sends = fake.calls_of("SendMessage");
    assert_eq!(sends.len(), 3);
    assert_eq!(
        sends[0].params,
        json!({
            "chat_id": FORUM,
            "text": "Hello from the website",
            "message_thread_id": topic.thread_id.0.0,
        })
    );
    assert_eq!(sends[0].chat_id(), Some(FORUM));
    assert_eq!(sends[0].thread_id(), Some(topic.thread_id.0.0));
    assert_eq!(sends[0].text(), Some("Hello from the website"));
    assert_eq!(sends[2].thread_id(), None);
    assert_eq!(
        calls[10].params,
        json!({ "chat_id": FORUM, "message_thread_id": topic.thread_id.0.0 })
    );
    let stored = fake.sent_messages(FORUM);
    assert_eq!(stored.len(), 3);
    assert_eq!(stored[0].message_id, sent.id.0);
    assert_eq!(stored[0].thread_id, Some(topic.thread_id.0.0));

    // deleteWebhook forgets it.
    bot.delete_webhook().await.expect("deleteWebhook");
    assert_eq!(fake.webhook(TOKEN), None);
    assert_eq!(
        bot.get_webhook_info().await.expect("getWebhookInfo").url,
        None
    );

    fake.clear();
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn topic_rules() {
    let (fake, bot) = world().await;

    let not_forum = bot.create_forum_topic(ChatId(PLAIN_GROUP), "x").await;
    assert_eq!(
        unknown_description(not_forum),
        "Bad Request: the chat is not a forum"
    );

    fake.set_member(BOT_ID, FORUM, "member", false);
    let no_rights = bot.create_forum_topic(ChatId(FORUM), "x").await;
    assert_eq!(
        unknown_description(no_rights),
        "Bad Request: not enough rights to create a topic"
    );
    fake.set_member(BOT_ID, FORUM, "administrator", false);
    let no_rights = bot.create_forum_topic(ChatId(FORUM), "x").await;
    assert_eq!(
        unknown_description(no_rights),
        "Bad Request: not enough rights to create a topic"
    );
    fake.set_member(BOT_ID, FORUM, "administrator", true);

    let topic = bot
        .create_forum_topic(ChatId(FORUM), "t")
        .await
        .expect("topic");
    let unknown = bot
        .send_message(ChatId(FORUM), "hi")
        .message_thread_id(thread(999))
        .await;
    assert_eq!(
        unknown_description(unknown),
        "Bad Request: message thread not found"
    );
    let unknown = bot.close_forum_topic(ChatId(FORUM), thread(999)).await;
    assert_eq!(
        unknown_description(unknown),
        "Bad Request: message thread not found"
    );
    let unknown = bot.reopen_forum_topic(ChatId(FORUM), thread(999)).await;
    assert_eq!(
        unknown_description(unknown),
        "Bad Request: message thread not found"
    );
    let unknown = bot
        .edit_forum_topic(ChatId(FORUM), thread(999))
        .name("n")
        .await;
    assert_eq!(
        unknown_description(unknown),
        "Bad Request: message thread not found"
    );

    // editForumTopic: a new name applies; the same name again, an empty or absent
    // one (which keep the name) change nothing; too long is refused.
    bot.edit_forum_topic(ChatId(FORUM), topic.thread_id)
        .name("Refund for order 42")
        .await
        .expect("rename");
    let renamed = |fake: &FakeTelegram| fake.topic(FORUM, topic.thread_id.0.0).expect("topic").name;
    assert_eq!(renamed(&fake), "Refund for order 42");
    for unchanged in [
        bot.edit_forum_topic(ChatId(FORUM), topic.thread_id)
            .name("Refund for order 42")
            .await,
        bot.edit_forum_topic(ChatId(FORUM), topic.thread_id)
            .name("")
            .await,
        bot.edit_forum_topic(ChatId(FORUM), topic.thread_id).await,
    ] {
        assert_eq!(
            unknown_description(unchanged),
            "Bad Request: TOPIC_NOT_MODIFIED"
        );
    }
    let too_long = bot
        .edit_forum_topic(ChatId(FORUM), topic.thread_id)
        .name("😀".repeat(65))
        .await;
    assert_eq!(
        unknown_description(too_long),
        "Bad Request: TOPIC_TITLE_TOO_LONG"
    );
    assert_eq!(renamed(&fake), "Refund for order 42");
    let edits = fake.calls_of("editForumTopic");
    assert_eq!(edits.len(), 6, "every call is recorded, refused ones too");
    assert_eq!(
        edits[1].params,
        json!({
            "chat_id": FORUM,
            "message_thread_id": topic.thread_id.0.0,
            "name": "Refund for order 42",
        })
    );
    assert_eq!(edits[1].name(), Some("Refund for order 42"));
    assert_eq!(edits[4].name(), None);
    let in_plain = bot
        .send_message(ChatId(PLAIN_GROUP), "hi")
        .message_thread_id(thread(1))
        .await;
    assert_eq!(
        unknown_description(in_plain),
        "Bad Request: message thread not found"
    );

    // A topic deleted by an admin.
    fake.delete_thread(FORUM, topic.thread_id.0.0);
    let deleted = bot
        .send_message(ChatId(FORUM), "hi")
        .message_thread_id(topic.thread_id)
        .await;
    assert_eq!(
        unknown_description(deleted),
        "Bad Request: message thread not found"
    );
    assert!(
        fake.topic(FORUM, topic.thread_id.0.0)
            .expect("topic")
            .deleted
    );
    // Reserved ids are skipped for new topics.
    fake.delete_thread(FORUM, topic.thread_id.0.0 + 1);
    let next = bot
        .create_forum_topic(ChatId(FORUM), "next")
        .await
        .expect("next topic");
    assert_eq!(next.thread_id.0.0, topic.thread_id.0.0 + 2);

    // Text checks.
    let empty = bot.send_message(ChatId(FORUM), "").await;
    assert!(
        matches!(empty, Err(RequestError::Api(ApiError::MessageTextIsEmpty))),
        "{empty:?}"
    );
    let long = bot.send_message(ChatId(FORUM), "x".repeat(4097)).await;
    assert!(
        matches!(long, Err(RequestError::Api(ApiError::MessageIsTooLong))),
        "{long:?}"
    );
    bot.send_message(ChatId(FORUM), "é".repeat(4096))
        .await
        .expect("4096 characters are fine");
    let no_chat = bot.send_message(ChatId(-1_001_000_000_999), "hi").await;
    assert!(
        matches!(no_chat, Err(RequestError::Api(ApiError::ChatNotFound))),
        "{no_chat:?}"
    );

    // Closed topics: writable by a bot that manages topics, not by others.
    bot.close_forum_topic(ChatId(FORUM), next.thread_id)
        .await
        .expect("close");
    bot.send_message(ChatId(FORUM), "admin may")
        .message_thread_id(next.thread_id)
        .await
        .expect("admin");
    fake.set_member(BOT_ID, FORUM, "member", false);
    let closed = bot
        .send_message(ChatId(FORUM), "hi")
        .message_thread_id(next.thread_id)
        .await;
    assert_eq!(unknown_description(closed), "Bad Request: TOPIC_CLOSED");
    let not_admin = bot.reopen_forum_topic(ChatId(FORUM), next.thread_id).await;
    assert_eq!(
        unknown_description(not_admin),
        "Bad Request: CHAT_ADMIN_REQUIRED"
    );
    // An administrator without can_manage_topics may still manage its own topic.
    fake.set_member(BOT_ID, FORUM, "administrator", false);
    bot.reopen_forum_topic(ChatId(FORUM), next.thread_id)
        .await
        .expect("creator reopens");
    let admin_topic = fake.add_topic(FORUM, "made by a human");
    let foreign = bot
        .close_forum_topic(ChatId(FORUM), thread(admin_topic))
        .await;
    assert_eq!(
        unknown_description(foreign),
        "Bad Request: CHAT_ADMIN_REQUIRED"
    );

    // Membership: left and kicked bots cannot write; getChatMember says so.
    fake.set_member(BOT_ID, FORUM, "left", false);
    let left = bot.send_message(ChatId(FORUM), "hi").await;
    assert_eq!(
        unknown_description(left),
        "Forbidden: bot is not a member of the supergroup chat"
    );
    let member = bot
        .get_chat_member(ChatId(FORUM), UserId(BOT_ID))
        .await
        .expect("left member");
    assert!(matches!(member.kind, ChatMemberKind::Left));
    fake.set_member(BOT_ID, FORUM, "member", false);
    let member = bot
        .get_chat_member(ChatId(FORUM), UserId(BOT_ID))
        .await
        .expect("member");
    assert!(matches!(member.kind, ChatMemberKind::Member(_)));
    fake.set_member(BOT_ID, FORUM, "kicked", false);
    let kicked = bot.send_message(ChatId(FORUM), "hi").await;
    assert!(
        matches!(
            kicked,
            Err(RequestError::Api(ApiError::BotKickedFromSupergroup))
        ),
        "{kicked:?}"
    );
    let member = bot
        .get_chat_member(ChatId(FORUM), UserId(BOT_ID))
        .await
        .expect("kicked member");
    assert!(matches!(member.kind, ChatMemberKind::Banned(_)));
    fake.set_member(BOT_ID, FORUM, "creator", false);
    let member = bot
        .get_chat_member(ChatId(FORUM), UserId(BOT_ID))
        .await
        .expect("creator");
    assert!(matches!(member.kind, ChatMemberKind::Owner(_)));
    let stranger = bot.get_chat_member(ChatId(FORUM), UserId(5)).await;
    assert!(
        matches!(stranger, Err(RequestError::Api(ApiError::UserNotFound))),
        "{stranger:?}"
    );
}

#[tokio::test]
async fn scripted_failures_map_to_teloxide_errors() {
    let (fake, bot) = world().await;

    fake.fail_next("sendMessage", None, Failure::RetryAfter(7));
    match bot.send_message(ChatId(FORUM), "hi").await {
        Err(RequestError::RetryAfter(secs)) => {
            assert_eq!(secs.seconds(), 7);
            assert_eq!(secs.duration(), Duration::from_secs(7));
        }
        other => panic!("expected RetryAfter, got {other:?}"),
    }
    // One-shot: the next call goes through and nothing was sent by the failed one.
    bot.send_message(ChatId(FORUM), "hi")
        .await
        .expect("after retry");
    assert_eq!(fake.sent_messages(FORUM).len(), 1);

    fake.fail_next("SENDMESSAGE", None, Failure::Forbidden);
    let forbidden = bot.send_message(ChatId(FORUM), "hi").await;
    assert!(
        matches!(
            forbidden,
            Err(RequestError::Api(ApiError::BotKickedFromSupergroup))
        ),
        "{forbidden:?}"
    );

    // Chat filter: the failure waits for a call naming its chat.
    fake.fail_next("sendmessage", Some(PLAIN_GROUP), Failure::RetryAfter(3));
    bot.send_message(ChatId(FORUM), "unaffected")
        .await
        .expect("other chat");
    let filtered = bot.send_message(ChatId(PLAIN_GROUP), "hit").await;
    assert!(
        matches!(filtered, Err(RequestError::RetryAfter(_))),
        "{filtered:?}"
    );

    // Arbitrary status; well-known descriptions map to specific ApiErrors.
    fake.fail_next(
        "getchat",
        None,
        Failure::Status(400, "Bad Request: chat not found".into()),
    );
    let status = bot.get_chat(ChatId(FORUM)).await;
    assert!(
        matches!(status, Err(RequestError::Api(ApiError::ChatNotFound))),
        "{status:?}"
    );

    // fail_always until cleared.
    fake.fail_always("createForumTopic", Some(FORUM), Failure::RetryAfter(1));
    for _ in 0..2 {
        let err = bot.create_forum_topic(ChatId(FORUM), "t").await;
        assert!(matches!(err, Err(RequestError::RetryAfter(_))), "{err:?}");
    }
    assert!(fake.topics(FORUM).is_empty(), "failed calls change nothing");
    fake.clear_failures();
    bot.create_forum_topic(ChatId(FORUM), "t")
        .await
        .expect("after clear_failures");

    // Delay: answered normally, just late...
    fake.fail_next("getme", None, Failure::Delay(Duration::from_millis(300)));
    let started = Instant::now();
    bot.get_me().await.expect("delayed getMe");
    assert!(started.elapsed() >= Duration::from_millis(300));
    // ...which a client with a short timeout reports as a network timeout.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .expect("client");
    let impatient = Bot::with_client(TOKEN, client).set_api_url(fake.url());
    fake.fail_next("getme", None, Failure::Delay(Duration::from_secs(2)));
    match impatient.get_me().await {
        Err(RequestError::Network(err)) => assert!(err.is_timeout(), "{err:?}"),
        other => panic!("expected a network timeout, got {other:?}"),
    }

    // Failed calls are recorded like any other.
    assert_eq!(fake.calls_of("getme").len(), 2);
}

/// teloxide sleeps 10 s after any 5xx before returning, so this test is slow.
#[tokio::test]
async fn server_error_is_an_error() {
    let (fake, bot) = world().await;
    fake.fail_next("sendmessage", None, Failure::ServerError);
    let started = Instant::now();
    let result = bot.send_message(ChatId(FORUM), "hi").await;
    assert_eq!(unknown_description(result), "Internal Server Error");
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "teloxide waits after a 5xx"
    );
}

#[tokio::test]
async fn unknown_token_is_unauthorized() {
    let (fake, _bot) = world().await;
    let stranger = Bot::new("999:nope").set_api_url(fake.url());
    let result = stranger.get_me().await;
    assert!(
        matches!(result, Err(RequestError::Api(ApiError::InvalidToken))),
        "{result:?}"
    );
    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].token, "999:nope");
    assert_eq!(calls[0].method, "getme");

    // The raw answer is exactly Telegram's.
    let raw: Value = reqwest::get(format!("{}/bot999:nope/getMe", fake.api_url()))
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(
        raw,
        json!({ "ok": false, "error_code": 401, "description": "Unauthorized" })
    );
}

#[tokio::test]
async fn several_bots_are_independent() {
    let (fake, bot) = world().await;
    fake.add_bot("222:BBB", 222, "other_bot");
    fake.add_group(-1_001_000_000_003, "Other", true);
    fake.set_member(222, -1_001_000_000_003, "administrator", true);
    let other = Bot::new("222:BBB").set_api_url(fake.url());

    assert_eq!(other.get_me().await.expect("getMe").id, UserId(222));
    // The first bot is not in the second bot's group.
    let outsider = bot
        .create_forum_topic(ChatId(-1_001_000_000_003), "t")
        .await;
    assert_eq!(
        unknown_description(outsider),
        "Forbidden: bot is not a member of the supergroup chat"
    );
    other
        .create_forum_topic(ChatId(-1_001_000_000_003), "t")
        .await
        .expect("own group");

    let url = reqwest::Url::parse("https://example.com/hook/b").expect("url");
    other.set_webhook(url).await.expect("setWebhook");
    assert!(fake.webhook("222:BBB").is_some());
    assert!(fake.webhook(TOKEN).is_none());
    assert_eq!(
        fake.calls().iter().filter(|c| c.token == "222:BBB").count(),
        3
    );
}

#[tokio::test]
async fn raw_protocol_details() {
    let (fake, _bot) = world().await;
    let http = reqwest::Client::new();
    let base = format!("{}/bot{TOKEN}", fake.api_url());

    // Method names are case-insensitive; GET with a query string works.
    for name in ["getMe", "GETME", "getme"] {
        let body: Value = http
            .get(format!("{base}/{name}"))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        assert_eq!(body["ok"], json!(true), "{name}: {body}");
        assert_eq!(body["result"]["username"], json!(USERNAME));
    }

    // Form-encoded bodies (strings) are accepted too.
    let topic = fake.add_topic(FORUM, "form");
    let body: Value = http
        .post(format!("{base}/sendMessage"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "chat_id={FORUM}&message_thread_id={topic}&text=hello+there%21"
        ))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(body["result"]["text"], json!("hello there!"), "{body}");
    assert_eq!(body["result"]["message_thread_id"], json!(topic));

    // Flood-wait answers carry parameters.retry_after.
    fake.fail_next("sendMessage", None, Failure::RetryAfter(5));
    let response = http
        .post(format!("{base}/sendMessage"))
        .json(&json!({ "chat_id": FORUM, "text": "x" }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), reqwest::StatusCode::TOO_MANY_REQUESTS);
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        body,
        json!({
            "ok": false,
            "error_code": 429,
            "description": "Too Many Requests: retry after 5",
            "parameters": { "retry_after": 5 },
        })
    );

    // Unknown methods and paths are 404 Not Found.
    let response = http
        .post(format!("{base}/noSuchMethod"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        body,
        json!({ "ok": false, "error_code": 404, "description": "Not Found" })
    );
    let response = http
        .get(format!("{}/elsewhere", fake.api_url()))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn deliver_update_posts_to_the_webhook_with_the_secret() {
    use axum::{Router, http::HeaderMap, routing::post};

    type Seen = Arc<Mutex<Vec<(Option<String>, Value)>>>;
    let seen: Seen = Arc::default();
    let app = Router::new().route(
        "/hook",
        post({
            let seen = Arc::clone(&seen);
            move |headers: HeaderMap, axum::Json(body): axum::Json<Value>| async move {
                let secret = headers
                    .get(SECRET_TOKEN_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                seen.lock().expect("lock").push((secret, body));
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let receiver = tokio::spawn(async move { axum::serve(listener, app).await });

    let (fake, bot) = local_world().await;
    let url = reqwest::Url::parse(&format!("http://{addr}/hook")).expect("url");
    bot.set_webhook(url)
        .secret_token("abc_DEF-123")
        .await
        .expect("setWebhook");

    let update = topic_text_update(10, FORUM, 5, 42, 7, "Alice", "hi there");
    let status = fake
        .deliver_update(TOKEN, &update)
        .await
        .expect("delivered");
    assert!(status.is_success());
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen, vec![(Some("abc_DEF-123".to_owned()), update)]);

    // Secret tokens Telegram would reject are rejected.
    let bad = bot
        .set_webhook(reqwest::Url::parse("https://example.com/x").expect("url"))
        .secret_token("not/allowed+chars")
        .await;
    assert_eq!(
        unknown_description(bad),
        "Bad Request: secret token contains unallowed characters"
    );
    receiver.abort();
}

#[tokio::test]
async fn webhooks_follow_the_cloud_rules_unless_local() {
    let (fake, bot) = world().await;
    let url = |u: &str| reqwest::Url::parse(u).expect("url");
    let http = bot.set_webhook(url("http://chat.example.com/hook")).await;
    assert!(
        matches!(http, Err(RequestError::Api(ApiError::WebhookRequireHttps))),
        "{http:?}"
    );
    let port = bot
        .set_webhook(url("https://chat.example.com:8080/hook"))
        .await;
    assert!(
        matches!(port, Err(RequestError::Api(ApiError::BadWebhookPort))),
        "{port:?}"
    );
    assert!(fake.webhook(TOKEN).is_none(), "a refused URL is not kept");
    for ok in [
        "https://chat.example.com/hook",
        "https://chat.example.com:8443/hook",
        "https://chat.example.com:88/hook",
    ] {
        bot.set_webhook(url(ok)).await.expect(ok);
        assert_eq!(fake.webhook(TOKEN).expect("kept").url, ok);
    }

    // A local Bot API server takes plain http on any port.
    let (local, bot) = local_world().await;
    bot.set_webhook(url("http://127.0.0.1:8080/hook"))
        .await
        .expect("http on a local server");
    assert_eq!(
        local.webhook(TOKEN).expect("kept").url,
        "http://127.0.0.1:8080/hook"
    );
    let ftp = bot.set_webhook(url("ftp://127.0.0.1/hook")).await;
    assert!(
        matches!(ftp, Err(RequestError::Api(ApiError::WebhookRequireHttps))),
        "{ftp:?}"
    );
}

#[tokio::test]
async fn flood_limits_answer_429_with_retry_after_and_change_nothing() {
    let (fake, bot) = world().await;
    let topic = fake.add_topic(FORUM, "t");
    // Per chat: 1 per 200 ms (no slack).
    fake.set_limits(Some(Limits {
        per_bot: Window {
            max: 100,
            every: Duration::from_secs(1),
        },
        per_chat: Window {
            max: 1,
            every: Duration::from_millis(200),
        },
        per_group: Window {
            max: 100,
            every: Duration::from_secs(1),
        },
        slack: Duration::ZERO,
    }));
    bot.send_message(ChatId(FORUM), "one").await.expect("first");
    let second = bot.send_message(ChatId(FORUM), "two").await;
    assert!(
        matches!(&second, Err(RequestError::RetryAfter(secs)) if secs.seconds() == 1),
        "{second:?}"
    );
    // The raw answer carries parameters.retry_after.
    let raw: Value = reqwest::Client::new()
        .post(format!("{}/bot{TOKEN}/sendMessage", fake.api_url()))
        .json(&json!({"chat_id": FORUM, "text": "raw"}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(raw["error_code"], 429, "{raw}");
    assert_eq!(raw["parameters"]["retry_after"], 1, "{raw}");
    assert_eq!(
        raw["description"], "Too Many Requests: retry after 1",
        "{raw}"
    );
    assert_eq!(
        fake.sent_messages(FORUM).len(),
        1,
        "refused calls send nothing"
    );
    let throttled: Vec<Option<String>> = fake
        .throttled()
        .iter()
        .map(|c| c.text().map(str::to_owned))
        .collect();
    assert_eq!(throttled, vec![Some("two".into()), Some("raw".into())]);
    // Other chats have their own window; after the window the chat takes one more.
    bot.create_forum_topic(ChatId(PLAIN_GROUP), "x")
        .await
        .expect_err("not a forum: 400, but not throttled");
    tokio::time::sleep(Duration::from_millis(210)).await;
    bot.send_message(ChatId(FORUM), "three")
        .await
        .expect("after the window");

    // Per group: messages only, chat actions do not count.
    fake.set_limits(Some(Limits {
        per_bot: Window {
            max: 100,
            every: Duration::from_secs(1),
        },
        per_chat: Window {
            max: 100,
            every: Duration::from_secs(1),
        },
        per_group: Window {
            max: 2,
            every: Duration::from_secs(60),
        },
        slack: Duration::ZERO,
    }));
    for _ in 0..3 {
        bot.send_chat_action(ChatId(FORUM), teloxide::types::ChatAction::Typing)
            .message_thread_id(thread(topic))
            .await
            .expect("chat actions are not messages");
    }
    bot.send_message(ChatId(FORUM), "g1").await.expect("g1");
    bot.create_forum_topic(ChatId(FORUM), "g2")
        .await
        .expect("a topic posts its service message");
    let third = bot.send_message(ChatId(FORUM), "g3").await;
    match third {
        Err(RequestError::RetryAfter(secs)) => {
            assert!((59..=60).contains(&secs.seconds()), "{secs:?}")
        }
        other => panic!("{other:?}"),
    }

    // Per bot: all chats together.
    fake.set_limits(Some(Limits {
        per_bot: Window {
            max: 2,
            every: Duration::from_secs(1),
        },
        per_chat: Window {
            max: 100,
            every: Duration::from_secs(1),
        },
        per_group: Window {
            max: 100,
            every: Duration::from_secs(1),
        },
        slack: Duration::ZERO,
    }));
    bot.send_message(ChatId(FORUM), "b1").await.expect("b1");
    bot.send_message(ChatId(PLAIN_GROUP), "b2")
        .await
        .expect("b2");
    let b3 = bot.send_message(ChatId(PLAIN_GROUP), "b3").await;
    assert!(matches!(b3, Err(RequestError::RetryAfter(_))), "{b3:?}");
    // Reading methods are never counted.
    bot.get_chat(ChatId(FORUM)).await.expect("getChat");
    fake.set_limits(None);
    bot.send_message(ChatId(PLAIN_GROUP), "b4")
        .await
        .expect("limits off");
}

#[tokio::test]
async fn the_telegram_limits_scale_their_windows_only() {
    let limits = Limits::telegram();
    assert_eq!(
        (
            limits.per_bot.max,
            limits.per_chat.max,
            limits.per_group.max
        ),
        (30, 1, 20)
    );
    assert_eq!(limits.per_group.every, Duration::from_secs(60));
    let scaled = limits.scaled(10);
    assert_eq!(scaled.per_group.max, 20);
    assert_eq!(scaled.per_group.every, Duration::from_secs(6));
    assert_eq!(scaled.per_chat.every, Duration::from_millis(100));
    assert_eq!(scaled.slack, limits.slack);
}

#[tokio::test]
async fn a_migrated_group_answers_migrate_to_chat_id() {
    const SUPERGROUP: i64 = -1_001_000_000_099;
    let (fake, bot) = world().await;
    fake.migrate_group(FORUM, SUPERGROUP, true);
    let old = bot.send_message(ChatId(FORUM), "hello").await;
    assert!(
        matches!(old, Err(RequestError::MigrateToChatId(ChatId(id))) if id == SUPERGROUP),
        "{old:?}"
    );
    let raw: Value = reqwest::Client::new()
        .post(format!("{}/bot{TOKEN}/sendMessage", fake.api_url()))
        .json(&json!({"chat_id": FORUM, "text": "raw"}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(raw["error_code"], 400, "{raw}");
    assert_eq!(
        raw["description"], "Bad Request: group chat was upgraded to a supergroup chat",
        "{raw}"
    );
    assert_eq!(raw["parameters"]["migrate_to_chat_id"], SUPERGROUP, "{raw}");
    // The new chat has the old one's title and the bot keeps its rights there.
    let chat = bot.get_chat(ChatId(SUPERGROUP)).await.expect("getChat");
    assert_eq!(chat.title(), Some("Support"));
    bot.create_forum_topic(ChatId(SUPERGROUP), "after")
        .await
        .expect("topic in the supergroup");
    bot.send_message(ChatId(SUPERGROUP), "hello")
        .await
        .expect("message in the supergroup");
    assert!(fake.sent_messages(FORUM).is_empty());
}

#[tokio::test]
async fn a_restricted_bot_may_not_send() {
    let (fake, bot) = world().await;
    fake.set_member(BOT_ID, FORUM, "restricted", false);
    let member = bot
        .get_chat_member(ChatId(FORUM), UserId(BOT_ID))
        .await
        .expect("getChatMember");
    let ChatMemberKind::Restricted(r) = &member.kind else {
        panic!("restricted expected, got {member:?}")
    };
    assert!(!r.can_send_messages);
    assert!(member.kind.is_present());
    let sent = bot.send_message(ChatId(FORUM), "hi").await;
    assert_eq!(
        unknown_description(sent),
        "Bad Request: not enough rights to send text messages to the chat"
    );
    let typing = bot
        .send_chat_action(ChatId(FORUM), teloxide::types::ChatAction::Typing)
        .await;
    assert_eq!(
        unknown_description(typing),
        "Bad Request: not enough rights to send text messages to the chat"
    );
    let topic = bot.create_forum_topic(ChatId(FORUM), "t").await;
    assert_eq!(
        unknown_description(topic),
        "Bad Request: not enough rights to create a topic"
    );
    assert!(fake.sent_messages(FORUM).is_empty());
}

/// Deserialises an update from its JSON text, as a webhook handler receives
/// it (`serde_json::from_slice` on the body, or axum's `Json<Update>`).
///
/// `Update` deserialisation never fails on a malformed payload: it yields
/// `UpdateKind::Error`, so that case is treated as a failure here and the
/// inner message is parsed again for a useful error.
fn parse_update(value: Value) -> Update {
    let bytes = serde_json::to_vec(&value).expect("serialise");
    let update = serde_json::from_slice::<Update>(&bytes)
        .unwrap_or_else(|err| panic!("update does not deserialise: {err}\n{value:#}"));
    if let UpdateKind::Error(_) = update.kind {
        let detail = ["message", "edited_message"]
            .iter()
            .filter_map(|key| value.get(*key))
            .map(
                |msg| match serde_json::from_value::<teloxide::types::Message>(msg.clone()) {
                    Ok(_) => "message parses".to_owned(),
                    Err(err) => err.to_string(),
                },
            )
            .collect::<Vec<_>>();
        panic!("update became UpdateKind::Error: {detail:?}\n{value:#}");
    }
    update
}

/// A pitfall worth a test: `serde_json::from_value::<Update>` (and
/// `from_reader`) return `Ok`, but with `UpdateKind::Error`, because teloxide's
/// `UpdateKind` visitor asks for borrowed map keys, which a `Value` cannot
/// lend. Webhook handlers must deserialise from the body text/bytes. If this
/// test starts failing, teloxide fixed it.
#[test]
fn from_value_loses_the_update_kind() {
    let builders = [
        topic_text_update(1, FORUM, 5, 42, 7, "Alice", "hi"),
        edited_topic_text_update(2, FORUM, 5, 42, 7, "Alice", "hi"),
        service_update(3, FORUM, 5, "t", BOT_ID, USERNAME),
        private_update(4, 7, "Alice", 1, "hi"),
        general_text_update(5, FORUM, 6, 7, "Alice", "hi"),
        bot_own_update(6, FORUM, 5, 43, BOT_ID, USERNAME, "hi"),
    ];
    for value in builders {
        let update = serde_json::from_value::<Update>(value.clone()).expect("from_value is Ok");
        assert_eq!(Some(u64::from(update.id.0)), value["update_id"].as_u64());
        assert!(matches!(update.kind, UpdateKind::Error(_)), "{update:?}");
        // The very same JSON, as text, deserialises fully.
        assert!(!matches!(parse_update(value).kind, UpdateKind::Error(_)));
    }
}

#[test]
fn update_builders_deserialise() {
    // A human admin writing in a topic.
    let update = parse_update(topic_text_update(1, FORUM, 5, 42, 7, "Alice", "hi there"));
    assert_eq!(update.id, UpdateId(1));
    let UpdateKind::Message(msg) = &update.kind else {
        panic!("message expected: {update:?}")
    };
    assert_eq!(msg.text(), Some("hi there"));
    assert_eq!(msg.thread_id, Some(thread(5)));
    assert!(msg.is_topic_message);
    assert_eq!(msg.id, MessageId(42));
    assert_eq!(msg.chat.id, ChatId(FORUM));
    let from = msg.from.as_ref().expect("from");
    assert_eq!(
        (from.id, from.is_bot, from.first_name.as_str()),
        (UserId(7), false, "Alice")
    );
    assert_eq!(update.from().map(|u| u.id), Some(UserId(7)));
    assert_eq!(update.chat().map(|c| c.id), Some(ChatId(FORUM)));
    let opener = msg.reply_to_message().expect("reply_to_message");
    assert_eq!(opener.id, MessageId(5));
    assert!(opener.forum_topic_created().is_some());
    assert_eq!(msg.edit_date(), None);

    // The same message edited.
    let update = parse_update(edited_topic_text_update(
        2,
        FORUM,
        5,
        42,
        7,
        "Alice",
        "hi (edited)",
    ));
    let UpdateKind::EditedMessage(msg) = &update.kind else {
        panic!("edit expected: {update:?}")
    };
    assert_eq!(msg.text(), Some("hi (edited)"));
    assert_eq!(msg.thread_id, Some(thread(5)));
    assert_eq!(msg.id, MessageId(42));
    assert!(msg.edit_date().is_some());
    assert_eq!(msg.from.as_ref().map(|u| u.id), Some(UserId(7)));

    // The service message that opens a topic.
    let update = parse_update(service_update(3, FORUM, 9, "Visitor #9", BOT_ID, USERNAME));
    let UpdateKind::Message(msg) = &update.kind else {
        panic!("message expected: {update:?}")
    };
    assert_eq!(msg.text(), None);
    assert_eq!(msg.thread_id, Some(thread(9)));
    assert_eq!(
        msg.forum_topic_created().map(|c| c.name.as_str()),
        Some("Visitor #9")
    );
    assert_eq!(
        msg.from.as_ref().map(|u| (u.id, u.is_bot)),
        Some((UserId(BOT_ID), true))
    );

    // A private chat with the bot.
    let update = parse_update(private_update(4, 7, "Alice", 3, "/start"));
    let UpdateKind::Message(msg) = &update.kind else {
        panic!("message expected: {update:?}")
    };
    assert!(msg.chat.is_private());
    assert_eq!(msg.chat.id, ChatId(7));
    assert_eq!(msg.text(), Some("/start"));
    assert_eq!(msg.thread_id, None);

    // The General topic of the forum.
    let update = parse_update(general_text_update(5, FORUM, 11, 7, "Alice", "general"));
    let UpdateKind::Message(msg) = &update.kind else {
        panic!("message expected: {update:?}")
    };
    assert_eq!(msg.thread_id, None);
    assert!(!msg.is_topic_message);
    assert_eq!(msg.text(), Some("general"));

    // A message from the bot itself.
    let update = parse_update(bot_own_update(6, FORUM, 5, 43, BOT_ID, USERNAME, "echo"));
    let UpdateKind::Message(msg) = &update.kind else {
        panic!("message expected: {update:?}")
    };
    assert_eq!(msg.text(), Some("echo"));
    assert_eq!(msg.thread_id, Some(thread(5)));
    let from = msg.from.as_ref().expect("from");
    assert!(from.is_bot);
    assert_eq!(from.id, UserId(BOT_ID));
    assert_eq!(from.username.as_deref(), Some(USERNAME));
}
