//! Conversation subjects and Telegram topic renames: `PATCH /v1/admin/conversations/{id}`,
//! the widget's identify step, a verified identity's display name and `/subject` in
//! the topic all rename the conversation's forum topic (editForumTopic, through the
//! outbox); a rename to the name the topic has changes nothing.

use std::time::Duration;

use chatorical::{db::repo, identity::user_hash};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::fake_telegram::{Call, topic_text_update};
use crate::helpers::{
    Backend, TelegramFixture, VisitorFixture, code, eventually, next_of, spawn_with_telegram,
};
use crate::on_both_backends;

on_both_backends!(
    patched_subject_renames_the_topic_once,
    subject_before_the_topic_exists_names_it_at_creation,
    identify_renames_the_topic_after_the_visitor,
    verified_display_name_renames_and_anonymous_is_ignored,
    subject_command_in_telegram_renames_and_never_reaches_the_visitor,
    invalid_subjects_and_identities_are_refused_naming_the_field,
);

/// A human agent's Telegram user id in these tests.
const AGENT: u64 = 555;

/// A visitor whose conversation has a topic (after their first message); returns the
/// topic's thread id.
pub(crate) async fn visitor_with_topic(t: &TelegramFixture) -> (VisitorFixture, i32) {
    let v = t.app.visitor(&t.tenant).await;
    let (status, body) = t.app.send(&v, "m1", "hello").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    settled(t).await;
    let thread = t
        .fake
        .sent_messages(t.group)
        .iter()
        .find(|m| m.text == "hello")
        .and_then(|m| m.thread_id)
        .expect("the message went into a topic");
    (v, thread)
}

/// Wait until the tenant's outbox has nothing queued or in flight.
pub(crate) async fn settled(t: &TelegramFixture) {
    eventually(15, "the outbox is delivered", || async {
        let mut pc = t.app.state.db.conn().await.expect("conn");
        let items = repo::outbox::list(&mut pc.as_conn(), &t.tenant.id, None, 500)
            .await
            .expect("outbox");
        items
            .iter()
            .all(|i| i.status == "delivered" || i.status == "dead")
    })
    .await;
}

/// The tenant's rename items (oldest first), as `(idempotency key, status)`.
pub(crate) async fn rename_items(t: &TelegramFixture) -> Vec<(String, String)> {
    let mut pc = t.app.state.db.conn().await.expect("conn");
    let mut items: Vec<_> = repo::outbox::list(&mut pc.as_conn(), &t.tenant.id, None, 500)
        .await
        .expect("outbox")
        .into_iter()
        .filter(|i| i.kind == "telegram.rename_topic")
        .map(|i| (i.id, i.idempotency_key, i.status))
        .collect();
    items.sort();
    items.into_iter().map(|(_, k, s)| (k, s)).collect()
}

pub(crate) fn edits(t: &TelegramFixture) -> Vec<Call> {
    t.fake.calls_of("editforumtopic")
}

pub(crate) fn topic_name(t: &TelegramFixture, thread: i32) -> String {
    t.fake.topic(t.group, thread).expect("topic").name
}

pub(crate) async fn patch_subject(
    t: &TelegramFixture,
    conversation: &str,
    subject: Value,
) -> (StatusCode, Value) {
    t.app
        .json(
            Method::PATCH,
            &format!("/v1/admin/conversations/{conversation}"),
            Some(&t.tenant.key),
            Some(json!({ "subject": subject })),
        )
        .await
}

pub(crate) async fn identify(t: &TelegramFixture, token: &str, body: Value) -> (StatusCode, Value) {
    t.app
        .json(Method::POST, "/v1/widget/identify", Some(token), Some(body))
        .await
}

/// Every text the visitor can see in their conversation's history.
pub(crate) async fn visitor_history(t: &TelegramFixture, v: &VisitorFixture) -> Vec<String> {
    let (status, h) = t
        .app
        .json(
            Method::GET,
            &format!("/v1/conversations/{}/messages", v.conversation_id),
            Some(&v.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{h}");
    h["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn patched_subject_renames_the_topic_once(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    let (v, thread) = visitor_with_topic(&t).await;
    assert!(
        topic_name(&t, thread).starts_with("Visitor "),
        "{}",
        topic_name(&t, thread)
    );

    let (status, view) =
        patch_subject(&t, &v.conversation_id, json!("  Refund for order 42 ")).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["id"], v.conversation_id.as_str());
    assert_eq!(view["subject"], "Refund for order 42", "stored trimmed");
    let calls = t
        .fake
        .wait_for_calls("editforumtopic", 1, Duration::from_secs(10))
        .await;
    assert_eq!(
        calls[0].params,
        json!({"chat_id": t.group, "message_thread_id": thread, "name": "Refund for order 42"})
    );
    assert_eq!(topic_name(&t, thread), "Refund for order 42");
    let (status, shown) = t
        .app
        .json(
            Method::GET,
            &format!("/v1/admin/conversations/{}", v.conversation_id),
            Some(&t.tenant.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["subject"], "Refund for order 42");

    // The same subject again: 200, nothing queued, no call.
    settled(&t).await;
    let (status, view) = patch_subject(&t, &v.conversation_id, json!("Refund for order 42")).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(rename_items(&t).await.len(), 1, "no second item");
    settled(&t).await;
    assert_eq!(edits(&t).len(), 1, "no second call");

    // Two renames in a row: each is its own item (keys differ), the topic ends with the
    // last name, and no call repeats a name already applied.
    for subject in ["Refund, order 43", "Refund, order 44"] {
        let (status, view) = patch_subject(&t, &v.conversation_id, json!(subject)).await;
        assert_eq!(status, StatusCode::OK, "{view}");
    }
    settled(&t).await;
    let items = rename_items(&t).await;
    assert_eq!(items.len(), 3, "{items:?}");
    assert!(items.iter().all(|(_, s)| s == "delivered"), "{items:?}");
    let keys: std::collections::BTreeSet<_> = items.iter().map(|(k, _)| k).collect();
    assert_eq!(keys.len(), 3, "one key per rename: {items:?}");
    // In the lane of the group's messages, so ordered after the conversation's earlier
    // messages.
    let mut pc = t.app.state.db.conn().await.expect("conn");
    let lanes: std::collections::BTreeSet<String> =
        repo::outbox::list(&mut pc.as_conn(), &t.tenant.id, None, 500)
            .await
            .expect("outbox")
            .into_iter()
            .map(|i| i.lane)
            .collect();
    drop(pc);
    assert_eq!(lanes.len(), 1, "{lanes:?}");
    assert_eq!(topic_name(&t, thread), "Refund, order 44");
    let names: Vec<String> = edits(&t)
        .iter()
        .filter_map(|c| c.name().map(str::to_string))
        .collect();
    assert!(
        (2..=3).contains(&names.len())
            && names.last().map(String::as_str) == Some("Refund, order 44"),
        "{names:?}"
    );
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(unique, names, "no name is sent twice in a row");
}

async fn subject_before_the_topic_exists_names_it_at_creation(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    let v = t.app.visitor(&t.tenant).await;
    let (status, view) = patch_subject(&t, &v.conversation_id, json!("Invoice question")).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    // The rename has no topic to rename: done without a call.
    settled(&t).await;
    assert_eq!(
        rename_items(&t)
            .await
            .iter()
            .map(|(_, s)| s.as_str())
            .collect::<Vec<_>>(),
        ["delivered"]
    );
    assert!(edits(&t).is_empty());

    // The topic the first message creates is named after the subject already.
    let (status, body) = t.app.send(&v, "m1", "Where is my invoice?").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    settled(&t).await;
    let created = t.fake.calls_of("createforumtopic");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].name(), Some("Invoice question"));
    assert!(edits(&t).is_empty(), "no rename needed: {:?}", edits(&t));

    // A visitor who said who they are before writing: the topic is named after them,
    // and its opening card says it too.
    let w = t.app.visitor(&t.tenant).await;
    let (status, body) = identify(
        &t,
        &w.token,
        json!({"name": "Bob", "email": "bob@example.com"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = t.app.send(&w, "m1", "Hi, Bob here").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    settled(&t).await;
    let created = t.fake.calls_of("createforumtopic");
    assert_eq!(created.len(), 2);
    assert_eq!(created[1].name(), Some("Bob \u{b7} bob@example.com"));
    let sent = t.fake.sent_messages(t.group);
    let thread = sent
        .iter()
        .find(|m| m.text == "Hi, Bob here")
        .and_then(|m| m.thread_id)
        .expect("in a topic");
    let card = &sent
        .iter()
        .find(|m| m.thread_id == Some(thread))
        .expect("the card")
        .text;
    assert!(
        card.contains("Visitor: ") && card.contains("\nName: Bob\nEmail: bob@example.com\nPage: "),
        "{card}"
    );
    assert!(edits(&t).is_empty(), "{:?}", edits(&t));
}

async fn identify_renames_the_topic_after_the_visitor(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    let (v, thread) = visitor_with_topic(&t).await;

    let (status, body) = identify(&t, &v.token, json!({"name": " Ada Lovelace "})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"name": "Ada Lovelace", "email": null}));
    let calls = t
        .fake
        .wait_for_calls("editforumtopic", 1, Duration::from_secs(10))
        .await;
    assert_eq!(calls[0].name(), Some("Ada Lovelace"));
    assert_eq!(calls[0].thread_id(), Some(thread));

    // The email joins the name; the name stays as it was.
    let (status, body) = identify(&t, &v.token, json!({"email": "ada@example.com"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"name": "Ada Lovelace", "email": "ada@example.com"})
    );
    let calls = t
        .fake
        .wait_for_calls("editforumtopic", 2, Duration::from_secs(10))
        .await;
    assert_eq!(calls[1].name(), Some("Ada Lovelace \u{b7} ada@example.com"));
    assert_eq!(
        topic_name(&t, thread),
        "Ada Lovelace \u{b7} ada@example.com"
    );

    // The same again: nothing queued.
    settled(&t).await;
    let (status, _) = identify(
        &t,
        &v.token,
        json!({"name": "Ada Lovelace", "email": "ada@example.com"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rename_items(&t).await.len(), 2);

    // A subject names the topic from now on: a new name is stored but renames nothing.
    let (status, _) = patch_subject(&t, &v.conversation_id, json!("VIP")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = identify(&t, &v.token, json!({"name": "Ada King"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "Ada King");
    settled(&t).await;
    assert_eq!(rename_items(&t).await.len(), 3, "only the subject's rename");
    assert_eq!(topic_name(&t, thread), "VIP");
    assert!(
        !visitor_history(&t, &v)
            .await
            .iter()
            .any(|m| m.contains("Ada")),
        "identifying adds no message"
    );
}

async fn verified_display_name_renames_and_anonymous_is_ignored(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    let (status, body) = t
        .app
        .json(
            Method::POST,
            "/v1/admin/identity/secret",
            Some(&t.tenant.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let secret = body["identity_secret"]
        .as_str()
        .expect("secret")
        .to_string();
    let session = async |extra: Value| {
        let mut body = json!({"widget_key": t.tenant.widget_key});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        t.app
            .json(Method::POST, "/v1/widget/session", None, Some(body))
            .await
    };

    // Anonymous: a display name is not vouched for, so it is ignored.
    let (status, s) = session(json!({"user_name": "Mallory"})).await;
    assert_eq!(status, StatusCode::OK, "{s}");
    let token = s["visitor_token"].as_str().expect("token").to_string();
    let (status, c) = t
        .app
        .json(Method::POST, "/v1/conversations", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    let conversation = c["id"].as_str().expect("id").to_string();
    let (status, _) = t
        .app
        .json(
            Method::POST,
            &format!("/v1/conversations/{conversation}/messages"),
            Some(&token),
            Some(json!({"client_msg_id": "a1", "text": "anonymous hello"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    settled(&t).await;
    let created = t.fake.calls_of("createforumtopic");
    assert_eq!(created.len(), 1);
    let anonymous = created[0].name().expect("name").to_string();
    assert!(anonymous.starts_with("Visitor "), "{anonymous}");
    assert!(
        !t.fake
            .sent_messages(t.group)
            .iter()
            .any(|m| m.text.contains("Mallory")),
        "an unverified name is shown nowhere"
    );

    // Verified: the first session opens a conversation with a topic under the
    // anonymous name (no display name yet) ...
    let hash = user_hash(&secret, "u-42");
    let (status, s) = session(json!({"user_id": "u-42", "user_hash": hash})).await;
    assert_eq!(status, StatusCode::OK, "{s}");
    let token = s["visitor_token"].as_str().expect("token").to_string();
    let (status, c) = t
        .app
        .json(Method::POST, "/v1/conversations", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    let conversation = c["id"].as_str().expect("id").to_string();
    let (status, _) = t
        .app
        .json(
            Method::POST,
            &format!("/v1/conversations/{conversation}/messages"),
            Some(&token),
            Some(json!({"client_msg_id": "v1", "text": "verified hello"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    settled(&t).await;
    assert_eq!(t.fake.calls_of("createforumtopic").len(), 2);
    assert!(edits(&t).is_empty());

    // ... and the next session carrying the user's name and email renames it.
    let (status, s) = session(json!({
        "user_id": "u-42", "user_hash": hash, "visitor_token": token,
        "user_name": "Grace Hopper", "user_email": "grace@example.com",
    }))
    .await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(s["conversation_id"], conversation.as_str());
    let calls = t
        .fake
        .wait_for_calls("editforumtopic", 1, Duration::from_secs(10))
        .await;
    assert_eq!(
        calls[0].name(),
        Some("Grace Hopper \u{b7} grace@example.com")
    );
    // The same name on every later session renames nothing.
    settled(&t).await;
    let (status, s) = session(json!({
        "user_id": "u-42", "user_hash": hash, "visitor_token": token,
        "user_name": "Grace Hopper", "user_email": "grace@example.com",
    }))
    .await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(rename_items(&t).await.len(), 1);

    // A verified session's display name is checked like any other.
    let (status, e) = session(json!({
        "user_id": "u-42", "user_hash": hash, "user_name": "x".repeat(129),
    }))
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"]["details"]["field"], "user_name", "{e}");
    let (status, e) = session(json!({
        "user_id": "u-42", "user_hash": hash, "user_email": "not-an-email",
    }))
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"]["details"]["field"], "user_email", "{e}");
}

async fn subject_command_in_telegram_renames_and_never_reaches_the_visitor(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    let (v, thread) = visitor_with_topic(&t).await;
    let mut ws = t
        .app
        .ws(&v.ws_token, Some(&t.tenant.origin))
        .await
        .expect("socket");
    next_of(&mut ws, "hello").await;
    let deliver = async |update: Value| {
        t.fake
            .deliver_update(&t.token, &update)
            .await
            .expect("webhook call")
    };

    let command = topic_text_update(
        30,
        t.group,
        thread,
        9001,
        AGENT,
        "Ana",
        "/subject Shipping delay",
    );
    assert_eq!(deliver(command).await, StatusCode::OK);
    let calls = t
        .fake
        .wait_for_calls("editforumtopic", 1, Duration::from_secs(10))
        .await;
    assert_eq!(calls[0].name(), Some("Shipping delay"));
    assert_eq!(calls[0].thread_id(), Some(thread));
    let (status, view) = t
        .app
        .json(
            Method::GET,
            &format!("/v1/admin/conversations/{}", v.conversation_id),
            Some(&t.tenant.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["subject"], "Shipping delay");

    // Addressed to this bot by name works too; to another bot it is an ordinary answer.
    let command = topic_text_update(
        31,
        t.group,
        thread,
        9002,
        AGENT,
        "Ana",
        "/subject@bot111 Shipping delay, again",
    );
    assert_eq!(deliver(command).await, StatusCode::OK);
    t.fake
        .wait_for_calls("editforumtopic", 2, Duration::from_secs(10))
        .await;
    assert_eq!(topic_name(&t, thread), "Shipping delay, again");

    // Without a subject: a notice in the topic, nothing renamed, nothing for the visitor.
    let command = topic_text_update(32, t.group, thread, 9003, AGENT, "Ana", "/subject");
    assert_eq!(deliver(command).await, StatusCode::OK);
    eventually(10, "the notice reaches the topic", || async {
        t.fake.sent_messages(t.group).iter().any(|m| {
            m.thread_id == Some(thread)
                && m.text
                    .starts_with("Subject not changed: subject must not be empty")
        })
    })
    .await;

    // The next real answer is the first message frame the visitor's socket gets.
    let answer = topic_text_update(33, t.group, thread, 9004, AGENT, "Ana", "It ships Monday.");
    assert_eq!(deliver(answer).await, StatusCode::OK);
    let frame = next_of(&mut ws, "message").await;
    assert_eq!(frame["message"]["text"], "It ships Monday.");
    assert_eq!(
        visitor_history(&t, &v).await,
        ["hello", "It ships Monday."],
        "commands are never messages"
    );
    settled(&t).await;
    assert_eq!(edits(&t).len(), 2);
    assert_eq!(rename_items(&t).await.len(), 2);
}

async fn invalid_subjects_and_identities_are_refused_naming_the_field(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    let v = t.app.visitor(&t.tenant).await;
    for bad in [
        json!(""),
        json!("   "),
        json!("\u{200b}"),
        json!("x".repeat(129)),
        json!("a\u{1b}[2Jb"),
        json!("line\nbreak"),
    ] {
        let (status, e) = patch_subject(&t, &v.conversation_id, bad.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {e}");
        assert_eq!(code(&e), "validation_failed", "{e}");
        assert_eq!(e["error"]["details"]["field"], "subject", "{bad}: {e}");
    }
    let (status, e) = patch_subject(&t, &v.conversation_id, json!("a\u{0}b")).await;
    assert_eq!(
        (status, code(&e)),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        "{e}"
    );
    let (status, ok) = patch_subject(&t, &v.conversation_id, json!("y".repeat(128))).await;
    assert_eq!(status, StatusCode::OK, "128 characters are fine: {ok}");

    // Scope and tenancy.
    let (_, read_only) = t.app.key(&t.tenant, &["conversations:read"]).await;
    let (status, e) = t
        .app
        .json(
            Method::PATCH,
            &format!("/v1/admin/conversations/{}", v.conversation_id),
            Some(&read_only),
            Some(json!({"subject": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{e}");
    let other = t.app.tenant("other").await;
    let (status, e) = t
        .app
        .json(
            Method::PATCH,
            &format!("/v1/admin/conversations/{}", v.conversation_id),
            Some(&other.key),
            Some(json!({"subject": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{e}");

    // Identify.
    for (body, field) in [
        (json!({}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"name": "x".repeat(129)}), "name"),
        (json!({"name": "a\u{7}b"}), "name"),
        (json!({"email": "no-at-sign"}), "email"),
        (json!({"email": "two@@example.com"}), "email"),
        (json!({"email": "a@b@example.com"}), "email"),
        (json!({"email": "@example.com"}), "email"),
        (json!({"email": "has space@example.com"}), "email"),
        (
            json!({"email": format!("{}@example.com", "a".repeat(243))}),
            "email",
        ),
        (json!({"name": "Ada", "email": "x"}), "email"),
    ] {
        let (status, e) = identify(&t, &v.token, body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {e}");
        assert_eq!(e["error"]["details"]["field"], field, "{body}: {e}");
    }
    let (status, e) = identify(&t, &v.token, json!({"nickname": "Ada"})).await;
    assert!(status.is_client_error(), "unknown fields are refused: {e}");
    let (status, _) = t
        .app
        .json(
            Method::POST,
            "/v1/widget/identify",
            None,
            Some(json!({"name": "Ada"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The widget routes' CORS rules: the tenant's origin is answered, another is refused.
    let url = format!("{}/v1/widget/identify", t.app.base);
    let preflight = t
        .app
        .http
        .request(Method::OPTIONS, &url)
        .header("origin", &t.tenant.origin)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("preflight");
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        t.tenant.origin.as_str()
    );
    for origin in ["https://evil.example", &other.origin] {
        let resp = t
            .app
            .http
            .post(&url)
            .bearer_auth(&v.token)
            .header("origin", origin)
            .json(&json!({"name": "Eve"}))
            .send()
            .await
            .expect("identify");
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{origin}");
        let e: Value = resp.json().await.expect("error body");
        assert_eq!(code(&e), "origin_not_allowed", "{origin}: {e}");
    }
    // Nothing was stored by the refused calls.
    let (status, body) = identify(
        &t,
        &v.token,
        json!({"email": format!("{}@example.com", "a".repeat(242))}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "254 characters are fine: {body}");
    assert_eq!(body["name"], Value::Null, "{body}");
}
