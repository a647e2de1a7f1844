//! Messages Telegram cannot take in one piece (issue 9, item 5): a visitor message over
//! 4,096 characters (Telegram's limit, which the fake enforces) reaches the topic as
//! ordered, marked parts, each retried on its own; nothing the visitor was told was
//! accepted is lost.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::fake_telegram::{Failure, MAX_MESSAGE_CHARS};
use crate::helpers::{Backend, eventually, spawn_with_telegram};
use crate::on_both_backends;

on_both_backends!(
    six_thousand_characters_arrive_as_two_ordered_parts,
    texts_long_in_utf16_are_split_too,
);

/// `n` characters of numbered lines of words (about 60 characters a line).
fn long_text(n: usize) -> String {
    let mut text = String::new();
    let mut line = 0;
    while text.len() < n {
        line += 1;
        text.push_str(&format!(
            "line {line:04}: the quick brown fox jumps over the lazy dog\n"
        ));
    }
    // Ends on a word, not on whitespace (which Telegram would drop).
    text.truncate(n - 1);
    text.push('.');
    text
}

fn utf16(s: &str) -> usize {
    s.encode_utf16().count()
}

async fn six_thousand_characters_arrive_as_two_ordered_parts(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    let v = t.app.visitor(&t.tenant).await;
    let text = long_text(6000);
    assert_eq!(text.chars().count(), 6000);
    // Part 2 is refused once (429): it alone is sent again, after part 1.
    t.fake
        .fail_next_text("sendmessage", "(2/2) ", Failure::RetryAfter(1));
    let (status, body) = t.app.send(&v, "long", &text).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["text"].as_str().map(str::len),
        Some(6000),
        "stored whole"
    );

    let app = &t.app;
    let key = t.tenant.key.clone();
    eventually(20, "both parts delivered", || {
        let key = key.clone();
        async move {
            let (_, list) = app
                .json(
                    Method::GET,
                    "/v1/admin/outbox?status=delivered",
                    Some(&key),
                    None,
                )
                .await;
            list["items"].as_array().is_some_and(|i| i.len() == 2)
        }
    })
    .await;
    let (_, list) = app
        .json(Method::GET, "/v1/admin/outbox", Some(&key), None)
        .await;
    let mut keys: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["idempotency_key"].as_str())
        .collect();
    keys.sort_unstable();
    let id = body["id"].as_str().expect("message id");
    assert_eq!(
        keys,
        vec![
            format!("conv_msg_out_{id}_part_1"),
            format!("conv_msg_out_{id}_part_2")
        ],
        "one outbox item per part, nothing else"
    );

    // In the topic: the card, then part 1, then part 2 — each once, each within the limit.
    let delivered = t.fake.sent_messages(t.group);
    assert_eq!(delivered.len(), 3, "card + 2 parts: {delivered:#?}");
    let (p1, p2) = (&delivered[1].text, &delivered[2].text);
    assert!(p1.starts_with("(1/2) line 0001"), "{}", &p1[..40]);
    assert!(p2.starts_with("(2/2) line "), "{}", &p2[..40]);
    assert!(utf16(p1) <= MAX_MESSAGE_CHARS && utf16(p2) <= MAX_MESSAGE_CHARS);
    assert_eq!(delivered[1].thread_id, delivered[0].thread_id);
    assert_eq!(delivered[2].thread_id, delivered[0].thread_id);
    // Cut at a line break; nothing else lost or added.
    assert_eq!(format!("{}\n{}", &p1[6..], &p2[6..]), text);

    // Attempts: part 1 once; part 2 refused once, then sent once more.
    let attempts: Vec<String> = t
        .fake
        .calls_of("sendmessage")
        .iter()
        .filter_map(|c| c.text().and_then(|x| x.get(..5)).map(str::to_string))
        .filter(|x| x.starts_with('('))
        .collect();
    assert_eq!(attempts, vec!["(1/2)", "(2/2)", "(2/2)"]);

    // No dead letters, and the message's Telegram id is part 1's.
    let (_, dead) = app
        .json(
            Method::GET,
            "/v1/admin/outbox?status=dead",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(dead["items"].as_array().map(Vec::len), Some(0), "{dead}");
}

async fn texts_long_in_utf16_are_split_too(b: Backend) {
    let t = spawn_with_telegram(b, |_| {}).await;
    let v = t.app.visitor(&t.tenant).await;
    // 2,100 emoji: 2,100 characters, but 4,200 UTF-16 code units.
    let emoji = "😀".repeat(2100);
    let (status, body) = t.app.send(&v, "emoji", &emoji).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // An operator's text of 4,096 characters through the admin API: 8,192 units.
    let (status, body) = t
        .app
        .json(
            Method::POST,
            "/v1/admin/outbox",
            Some(&t.tenant.key),
            Some(json!({"text": "🙂".repeat(4096), "idempotency_key": "wide"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, again) = t
        .app
        .json(
            Method::POST,
            "/v1/admin/outbox",
            Some(&t.tenant.key),
            Some(json!({"text": "🙂".repeat(4096), "idempotency_key": "wide"})),
        )
        .await;
    assert_eq!(
        (status, &again["enqueued"]),
        (StatusCode::OK, &json!(false))
    );

    // card + 2 visitor parts + 3 operator parts.
    t.fake
        .wait_for_calls("sendmessage", 6, Duration::from_secs(20))
        .await;
    let delivered = t.fake.sent_messages(t.group);
    assert_eq!(
        delivered.len(),
        6,
        "{:#?}",
        delivered
            .iter()
            .map(|m| m.text.chars().take(8).collect::<String>())
            .collect::<Vec<_>>()
    );
    let visitor_parts: Vec<&str> = delivered
        .iter()
        .filter(|m| m.text.contains('😀'))
        .map(|m| m.text.as_str())
        .collect();
    let operator_parts: Vec<&str> = delivered
        .iter()
        .filter(|m| m.text.contains('🙂'))
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(visitor_parts.len(), 2);
    assert_eq!(operator_parts.len(), 3);
    for (parts, whole) in [
        (&visitor_parts, &emoji),
        (&operator_parts, &"🙂".repeat(4096)),
    ] {
        let n = parts.len();
        let mut joined = String::new();
        for (i, p) in parts.iter().enumerate() {
            assert!(
                utf16(p) <= MAX_MESSAGE_CHARS,
                "part {} is {} units",
                i + 1,
                utf16(p)
            );
            let marker = format!("({}/{n}) ", i + 1);
            joined.push_str(p.strip_prefix(&marker).expect("marked in order"));
        }
        assert_eq!(&joined, whole, "every emoji arrives whole, in order");
    }
    assert_eq!(
        t.fake.calls_of("sendmessage").len(),
        6,
        "nothing refused, nothing twice"
    );
}
