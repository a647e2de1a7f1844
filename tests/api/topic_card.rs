//! The README's promise for Telegram: every new conversation opens a topic with a card
//! naming the visitor, the page and the locale — sent into that topic, before the
//! visitor's first message.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, TelegramFixture, spawn_with_telegram};
use crate::on_both_backends;

on_both_backends!(topic_card_shows_visitor_page_and_locale);

/// A widget session with `extra` fields, an open conversation and a first message;
/// returns the conversation id and the visitor id (as the admin API shows them).
async fn visitor_writes(t: &TelegramFixture, extra: Value, text: &str) -> (String, String) {
    let mut body = json!({"widget_key": t.tenant.widget_key});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let (status, s) = t
        .app
        .json(Method::POST, "/v1/widget/session", None, Some(body))
        .await;
    assert_eq!(status, StatusCode::OK, "{s}");
    let token = s["visitor_token"].as_str().expect("visitor_token");
    let (status, c) = t
        .app
        .json(Method::POST, "/v1/conversations", Some(token), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    let conversation = c["id"].as_str().expect("conversation id").to_string();
    let (status, m) = t
        .app
        .json(
            Method::POST,
            &format!("/v1/conversations/{conversation}/messages"),
            Some(token),
            Some(json!({"client_msg_id": "first", "text": text})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    let (status, view) = t
        .app
        .json(
            Method::GET,
            &format!("/v1/admin/conversations/{conversation}"),
            Some(&t.tenant.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    let visitor = view["visitor_id"].as_str().expect("visitor_id").to_string();
    (conversation, visitor)
}

/// The topic made for the conversation and what was sent into it, in order: waits
/// until `text` (the visitor's message) is there.
async fn topic_messages(t: &TelegramFixture, text: &str) -> (i32, Vec<String>) {
    crate::helpers::eventually(15, "the visitor's message reaches its topic", || async {
        t.fake.sent_messages(t.group).iter().any(|m| m.text == text)
    })
    .await;
    let thread = t
        .fake
        .sent_messages(t.group)
        .iter()
        .find(|m| m.text == text)
        .and_then(|m| m.thread_id)
        .expect("sent into a topic");
    let texts = t
        .fake
        .sent_messages(t.group)
        .into_iter()
        .filter(|m| m.thread_id == Some(thread))
        .map(|m| m.text)
        .collect();
    (thread, texts)
}

fn card(conversation: &str, visitor: &str, page: &str, locale: &str) -> String {
    format!(
        "New conversation {conversation}\nVisitor: {visitor}\nPage: {page}\nLocale: {locale}\n\
         Identity: not verified\n\nReply in this topic to answer the visitor."
    )
}

async fn topic_card_shows_visitor_page_and_locale(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;

    // The widget says where the visitor is and which language the browser prefers.
    let page = "https://acme.example/pricing?plan=pro#compare";
    let (conversation, visitor) = visitor_writes(
        &t,
        json!({"locale": "de-AT", "page_url": page}),
        "Gibt es Rabatte?",
    )
    .await;
    let (thread, texts) = topic_messages(&t, "Gibt es Rabatte?").await;
    assert_eq!(
        texts,
        vec![
            card(&conversation, &visitor, page, "de-AT"),
            "Gibt es Rabatte?".to_string()
        ],
        "the card, then the visitor's message, in the conversation's own topic"
    );
    let topics = t.fake.topics(t.group);
    assert_eq!(topics.len(), 1, "{topics:?}");
    assert_eq!(topics[0].thread_id, thread);

    // A page that is not http(s) and a locale that is not a language tag are not
    // shown to agents (no `javascript:` link, no injected lines in the card).
    let (conversation, visitor) = visitor_writes(
        &t,
        json!({"locale": "de\nPage: https://evil.example", "page_url": "javascript:alert(1)"}),
        "Hallo?",
    )
    .await;
    let (_, texts) = topic_messages(&t, "Hallo?").await;
    assert_eq!(
        texts,
        vec![
            card(&conversation, &visitor, "unknown", "unknown"),
            "Hallo?".to_string()
        ]
    );
    assert_eq!(
        t.fake.topics(t.group).len(),
        2,
        "one topic per conversation"
    );
}
