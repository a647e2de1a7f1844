//! Visitors' data (GDPR): the export holds everything stored about a visitor; erasure
//! leaves nothing of them in any table (the SQLite file's bytes, every text column on
//! PostgreSQL), closes their sockets (on every node), revokes their tokens, cancels
//! their pending outbox items, renames and closes their topics, and is audited once.

use std::time::Duration;

use chatorical::{domain::VisitorToken, identity::user_hash};
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{
    Backend, TenantFixture, TestApp, Ws, code, eventually, next_of, refused_status, spawn_app,
    spawn_with_telegram,
};
use crate::on_both_backends;

on_both_backends!(
    export_then_erasure_leaves_nothing_of_the_visitor,
    erasure_is_scoped_isolated_idempotent_and_revokes_every_token,
    erasure_racing_the_visitors_own_writes_leaves_nothing_open_or_unerased,
);

/// What the visitor told about themselves, and what they wrote: none of it may be
/// stored anywhere after the erasure.
const NAME: &str = "Zelda Quillfeather";
const EMAIL: &str = "zelda.quill@needle.example";
const USER_ID: &str = "ext-user-7731-needle";
const PAGE: &str = "https://acme.example/orders/needle-page-4411";
const LOCALE: &str = "de-AT";
const TEXT: &str = "visitor says aardvark-needle-one";
const REPLY: &str = "Ana quotes: aardvark-needle-one? We will refund it.";
const SUBJECT: &str = "Refund for Zelda Quillfeather";
/// Repeated into a text long enough for SQLite's overflow pages.
const LONG_PART: &str = "overflow-needle-two ";
const PENDING: &str = "pending-needle-three";
const DEAD: &str = "dead-needle-four";

/// A verified visitor of `t` with everything a visitor can leave behind: profile,
/// identity, two device tokens, a conversation with a subject, texts in both
/// directions (one long), and an agent reply quoting them.
struct Seeded {
    visitor_id: String,
    conversation_id: String,
    tokens: [String; 2],
    ws_token: String,
}

impl Seeded {
    /// Every string that must be gone after the erasure (the tokens as their hashes:
    /// tokens are never stored).
    fn needles(&self) -> Vec<String> {
        let mut out: Vec<String> = [NAME, EMAIL, USER_ID, PAGE, "aardvark-needle-one"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        out.push(LONG_PART.trim().to_string());
        for t in &self.tokens {
            out.push(VisitorToken::parse(t).expect("a visitor token").hash());
        }
        out
    }
}

async fn seed(app: &TestApp, t: &TenantFixture) -> Seeded {
    let (status, s) = app
        .json(
            Method::POST,
            "/v1/admin/identity/secret",
            Some(&t.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{s}");
    let secret = s["identity_secret"].as_str().expect("secret").to_string();
    let session = |extra: Value| {
        let mut body = json!({
            "widget_key": t.widget_key,
            "user_id": USER_ID,
            "user_hash": user_hash(&secret, USER_ID),
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        app.json(Method::POST, "/v1/widget/session", None, Some(body))
    };
    let (status, first) = session(json!({
        "user_name": NAME, "user_email": EMAIL, "locale": LOCALE, "page_url": PAGE,
    }))
    .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let token = first["visitor_token"].as_str().expect("token").to_string();
    let (status, c) = app
        .json(Method::POST, "/v1/conversations", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    let conversation_id = c["id"].as_str().expect("id").to_string();
    // A second device of the same user: another token for the same visitor.
    let (status, second) = session(json!({})).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let token2 = second["visitor_token"].as_str().expect("token").to_string();
    assert_ne!(token, token2);
    assert_eq!(second["conversation_id"], conversation_id.as_str());
    let long = LONG_PART.repeat(300);
    for (id, text) in [("m1", TEXT), ("m2", long.as_str())] {
        let (status, m) = app
            .json(
                Method::POST,
                &format!("/v1/conversations/{conversation_id}/messages"),
                Some(&token),
                Some(json!({"client_msg_id": id, "text": text})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{m}");
    }
    let (status, r) = app.reply(t, &conversation_id, REPLY).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    let (status, p) = app
        .json(
            Method::PATCH,
            &format!("/v1/admin/conversations/{conversation_id}"),
            Some(&t.key),
            Some(json!({"subject": SUBJECT})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    Seeded {
        visitor_id: c["visitor_id"].as_str().expect("visitor_id").to_string(),
        conversation_id,
        tokens: [token, token2],
        ws_token: c["ws_token"].as_str().expect("ws_token").to_string(),
    }
}

/// Where each needle is stored: SQLite — the database file and its WAL, SHM and journal
/// as bytes on disk; PostgreSQL — every text column of every table. One line per hit.
async fn stored(app: &TestApp, needles: &[String]) -> Vec<String> {
    match app.state.settings.database_url().expect("database url") {
        chatorical::config::DatabaseUrl::Sqlite(path) => {
            let mut hits = Vec::new();
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let mut file = path.clone().into_os_string();
                file.push(suffix);
                let Ok(bytes) = std::fs::read(&file) else {
                    continue;
                };
                for needle in needles {
                    if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                        hits.push(format!("{} holds {needle}", file.to_string_lossy()));
                    }
                }
            }
            hits
        }
        chatorical::config::DatabaseUrl::Postgres(_) => pg_hits(app, needles).await,
    }
}

#[derive(diesel::QueryableByName)]
struct Column {
    #[diesel(sql_type = diesel::sql_types::Text)]
    table_name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    column_name: String,
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

async fn pg_hits(app: &TestApp, needles: &[String]) -> Vec<String> {
    use diesel_async::RunQueryDsl;
    let mut pc = app.state.db.conn().await.expect("conn");
    let chatorical::db::PooledConn::Pg(conn, _) = &mut pc else {
        panic!("a PostgreSQL connection");
    };
    let columns: Vec<Column> = diesel::sql_query(
        "SELECT c.table_name::text AS table_name, c.column_name::text AS column_name \
         FROM information_schema.columns c \
         JOIN information_schema.tables t \
           ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
         WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' \
           AND c.data_type IN ('text', 'character varying', 'character', 'json', 'jsonb') \
         ORDER BY 1, 2",
    )
    .load(&mut **conn)
    .await
    .expect("columns");
    assert!(
        columns
            .iter()
            .any(|c| c.table_name == "messages" && c.column_name == "body"),
        "the scan covers messages.body"
    );
    assert!(columns.iter().any(|c| c.table_name == "audit_log"));
    let mut hits = Vec::new();
    for col in &columns {
        for needle in needles {
            let sql = format!(
                "SELECT count(*) AS n FROM \"{}\" WHERE strpos(\"{}\"::text, $1) > 0",
                col.table_name, col.column_name
            );
            let found: Count = diesel::sql_query(sql)
                .bind::<diesel::sql_types::Text, _>(needle)
                .get_result(&mut **conn)
                .await
                .expect("scan");
            if found.n > 0 {
                hits.push(format!(
                    "{}.{} holds {needle} ({} rows)",
                    col.table_name, col.column_name, found.n
                ));
            }
        }
    }
    hits
}

/// The close frame a socket receives next (code, reason), skipping other frames.
async fn close_frame(ws: &mut Ws) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("closed within 10 s");
        match next {
            Some(Ok(Message::Close(Some(f)))) => return (u16::from(f.code), f.reason.to_string()),
            Some(Ok(Message::Close(None))) => panic!("a close frame without a code"),
            Some(Ok(_)) => continue,
            other => panic!("socket ended without a close frame: {other:?}"),
        }
    }
}

/// The audit entries of one action the tenant's `audit:read` key sees.
async fn audit_entries(app: &TestApp, key: &str, action: &str) -> Vec<Value> {
    let (status, page) = app
        .json(
            Method::GET,
            &format!("/v1/admin/audit?action={action}"),
            Some(key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["entries"].as_array().expect("entries").clone()
}

async fn export_then_erasure_leaves_nothing_of_the_visitor(b: Backend) {
    let tg = spawn_with_telegram(b, |_| {}).await;
    let (app, t) = (&tg.app, &tg.tenant);
    app.unlimited(t).await;
    let v = seed(app, t).await;
    let (_, key) = app.key(t, &["visitors:write", "audit:read"]).await;

    // Telegram got the topic (named after the visitor, then the subject) and the texts.
    tg.fake
        .wait_for_calls("editForumTopic", 1, Duration::from_secs(20))
        .await;
    let created = tg
        .fake
        .wait_for_calls("createForumTopic", 1, Duration::from_secs(20))
        .await;
    let thread = {
        let topics = tg.fake.topics(tg.group);
        assert_eq!(topics.len(), 1, "{topics:?}");
        topics[0].thread_id
    };
    assert!(
        created[0].name().is_some_and(|n| n.contains(NAME)),
        "{created:?}"
    );
    eventually(20, "the subject shown in Telegram", || async {
        tg.fake
            .topic(tg.group, thread)
            .is_some_and(|t| t.name == SUBJECT)
    })
    .await;

    // The export holds everything.
    let (status, export) = app
        .json(
            Method::GET,
            &format!("/v1/admin/visitors/{}/export", v.visitor_id),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{export}");
    assert_eq!(export["tenant"], "acme");
    let p = &export["visitor"];
    assert_eq!(p["id"], v.visitor_id.as_str());
    assert_eq!(p["name"], NAME);
    assert_eq!(p["email"], EMAIL);
    assert_eq!(p["locale"], LOCALE);
    assert_eq!(p["page_url"], PAGE);
    assert_eq!(p["erased"], false);
    assert_eq!(p["environment"], "production");
    assert!(p["created_at"].is_string() && p["last_seen_at"].is_string());
    assert_eq!(
        export["identity"],
        json!({"verified": true, "external_user_id": USER_ID})
    );
    assert_eq!(export["device_tokens"]["active"], 2, "{export}");
    let text = export.to_string();
    for t in &v.tokens {
        assert!(!text.contains(t.as_str()), "never a token");
        let hash = VisitorToken::parse(t).expect("token").hash();
        assert!(!text.contains(&hash), "never a token's hash");
    }
    let convs = export["conversations"].as_array().expect("conversations");
    assert_eq!(convs.len(), 1);
    let c = &convs[0];
    assert_eq!(c["id"], v.conversation_id.as_str());
    assert_eq!(c["status"], "open");
    assert_eq!(c["subject"], SUBJECT);
    assert_eq!(c["telegram_topic_id"], thread);
    let messages: Vec<(i64, &str, &str)> = c["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["seq"].as_i64().expect("seq"),
                m["direction"].as_str().expect("direction"),
                m["text"].as_str().expect("text"),
            )
        })
        .collect();
    let long = LONG_PART.repeat(300);
    assert_eq!(
        messages,
        vec![
            (1, "inbound", TEXT),
            (2, "inbound", long.as_str()),
            (3, "outbound", REPLY)
        ]
    );
    assert_eq!(c["messages"][2]["author"], "Ana");
    assert_eq!(audit_entries(app, &key, "visitor.exported").await.len(), 1);

    // Every needle is stored somewhere now: the scan can see them.
    tg.fake
        .wait_for_calls("sendMessage", 4, Duration::from_secs(20))
        .await;
    let needles = v.needles();
    let before = stored(app, &needles).await;
    for needle in &needles {
        assert!(
            before
                .iter()
                .any(|h| h.contains(&format!(" holds {needle}"))),
            "{needle} is stored before the erasure: {before:#?}"
        );
    }

    // Telegram refuses one message for good: a dead item (an operator could retry it).
    tg.fake.fail_next_text(
        "sendMessage",
        DEAD,
        crate::fake_telegram::Failure::Status(400, "Bad Request: refused by the test".into()),
    );
    let (status, m) = app
        .json(
            Method::POST,
            &format!("/v1/conversations/{}/messages", v.conversation_id),
            Some(&v.tokens[0]),
            Some(json!({"client_msg_id": "m-dead", "text": DEAD})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    eventually(20, "the refused message dead-lettered", || async {
        let (_, d) = app
            .json(
                Method::GET,
                "/v1/admin/outbox?status=dead",
                Some(&t.key),
                None,
            )
            .await;
        d["items"].as_array().is_some_and(|i| i.len() == 1)
    })
    .await;

    // Telegram paused: the next visitor message waits in the outbox.
    let (status, _) = app
        .json(
            Method::PATCH,
            "/v1/admin/telegram",
            Some(&t.key),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, m) = app
        .json(
            Method::POST,
            &format!("/v1/conversations/{}/messages", v.conversation_id),
            Some(&v.tokens[0]),
            Some(json!({"client_msg_id": "m3", "text": PENDING})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    let mut ws = app
        .ws(&v.ws_token, Some(&t.origin))
        .await
        .expect("socket opens");
    next_of(&mut ws, "hello").await;

    // Erase.
    let (status, erased) = app
        .json(
            Method::DELETE,
            &format!("/v1/admin/visitors/{}", v.visitor_id),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{erased}");
    assert_eq!(erased["already_erased"], false);
    assert_eq!(erased["conversations"], 1);
    assert_eq!(erased["conversations_closed"], 1);
    assert_eq!(erased["messages_erased"], 5);
    assert_eq!(erased["labels_cleared"], 1);
    assert_eq!(erased["tokens_revoked"], 2);
    assert_eq!(
        erased["outbox_cancelled"], 2,
        "the pending and the dead message"
    );
    assert_eq!(erased["topics_renamed"], 1);
    assert_eq!(erased["topics_closed"], 1);

    // The open socket is closed with the policy code.
    let (code, reason) = close_frame(&mut ws).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("erased"), "{reason}");

    // The agents' history keeps the conversation's shape: seqs, directions, authors.
    let (status, h) = app
        .json(
            Method::GET,
            &format!("/v1/admin/conversations/{}/messages", v.conversation_id),
            Some(&t.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{h}");
    let rows: Vec<(i64, &str, &str, bool)> = h["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["seq"].as_i64().expect("seq"),
                m["direction"].as_str().expect("direction"),
                m["text"].as_str().expect("text"),
                m["erased"] == true,
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (1, "inbound", "", true),
            (2, "inbound", "", true),
            (3, "outbound", "", true),
            (4, "inbound", "", true),
            (5, "inbound", "", true)
        ]
    );
    assert_eq!(h["messages"][2]["author"], "Ana");

    // Telegram resumes: the topic is renamed to ids only and closed; the cancelled
    // message never goes out (it was ahead of both in the lane). First the worker finds
    // the rename paused (an attempt still running when Telegram resumes would put it
    // off for the pause's minute).
    eventually(20, "the rename tried while Telegram is paused", || async {
        let (_, q) = app
            .json(
                Method::GET,
                "/v1/admin/outbox?status=queued",
                Some(&t.key),
                None,
            )
            .await;
        q["items"].as_array().is_some_and(|items| {
            items.iter().any(|i| {
                i["kind"] == "telegram.rename_topic" && i["last_error"] == "Telegram is paused"
            })
        })
    })
    .await;
    let (status, _) = app
        .json(
            Method::PATCH,
            "/v1/admin/telegram",
            Some(&t.key),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    tg.fake
        .wait_for_calls("closeForumTopic", 1, Duration::from_secs(20))
        .await;
    let topic = tg.fake.topic(tg.group, thread).expect("topic");
    assert!(topic.closed, "{topic:?}");
    assert!(topic.name.starts_with("Visitor "), "{topic:?}");
    for needle in [NAME, EMAIL, "Refund"] {
        assert!(!topic.name.contains(needle), "{topic:?}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for call in tg.fake.calls() {
        assert!(
            !call.params.to_string().contains(PENDING),
            "the cancelled message reached Telegram: {call:?}"
        );
    }
    let (_, items) = app
        .json(
            Method::GET,
            "/v1/admin/outbox?status=cancelled",
            Some(&t.key),
            None,
        )
        .await;
    let items = items["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(
        items.iter().all(|i| i["kind"] == "telegram.send_message"),
        "{items:?}"
    );
    // A cancelled item cannot be retried.
    for item in items {
        let (status, body) = app
            .json(
                Method::POST,
                &format!(
                    "/v1/admin/outbox/{}/retry",
                    item["id"].as_str().expect("id")
                ),
                Some(&t.key),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
    }
    // Nothing pending is left for the visitor's conversation.
    eventually(20, "the outbox drained", || async {
        let (_, q) = app
            .json(
                Method::GET,
                "/v1/admin/outbox?status=queued",
                Some(&t.key),
                None,
            )
            .await;
        q["items"].as_array().is_some_and(Vec::is_empty)
    })
    .await;

    // The export shows the erased state.
    let (status, after) = app
        .json(
            Method::GET,
            &format!("/v1/admin/visitors/{}/export", v.visitor_id),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{after}");
    let p = &after["visitor"];
    assert_eq!(p["erased"], true);
    assert!(p["erased_at"].is_string());
    for field in ["name", "email", "locale", "page_url"] {
        assert!(p[field].is_null(), "{field}: {after}");
    }
    assert_eq!(
        after["identity"],
        json!({"verified": false, "external_user_id": null})
    );
    assert_eq!(
        after["device_tokens"],
        json!({"active": 0, "issued_at": []})
    );
    let c = &after["conversations"][0];
    assert_eq!(c["status"], "closed");
    assert!(c["subject"].is_null() && c["messages"].as_array().expect("m").len() == 5);

    // Nothing of the visitor is stored anywhere: not in any table, not in the file.
    let hits = stored(app, &needles).await;
    assert!(hits.is_empty(), "still stored after the erasure: {hits:#?}");
    let hits = stored(app, &[PENDING.to_string(), DEAD.to_string()]).await;
    assert!(hits.is_empty(), "{hits:#?}");

    // One audit entry with counts only.
    let entries = audit_entries(app, &key, "visitor.erased").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["target"], v.visitor_id.as_str());
    assert_eq!(entries[0]["changes"]["messages_erased"], 5);
    assert!(
        entries[0]["changes"]
            .as_object()
            .expect("changes")
            .values()
            .all(Value::is_number),
        "{entries:?}"
    );
}

async fn erasure_is_scoped_isolated_idempotent_and_revokes_every_token(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    let other = app.tenant("other").await;
    let v = seed(&app, &t).await;
    let theirs = app.visitor(&other).await;
    let export_path = format!("/v1/admin/visitors/{}/export", v.visitor_id);
    let erase_path = format!("/v1/admin/visitors/{}", v.visitor_id);

    // Scopes: none of visitors:* is 403; read exports but does not erase.
    let (_, none) = app.key(&t, &["conversations:write"]).await;
    let (_, read) = app.key(&t, &["visitors:read"]).await;
    let (_, write) = app.key(&t, &["visitors:write", "audit:read"]).await;
    for (path, method) in [(&export_path, Method::GET), (&erase_path, Method::DELETE)] {
        let (status, body) = app.json(method, path, Some(&none), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
    }
    let (status, body) = app.json(Method::GET, &export_path, Some(&read), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .json(Method::DELETE, &erase_path, Some(&read), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // Another tenant's key (with every visitors scope) finds nothing and changes nothing.
    let (_, other_key) = app.key(&other, &["visitors:write"]).await;
    for (path, method) in [(&export_path, Method::GET), (&erase_path, Method::DELETE)] {
        let (status, body) = app.json(method, path, Some(&other_key), None).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::NOT_FOUND, "not_found"),
            "{path}"
        );
        assert!(!body.to_string().contains(NAME));
    }
    let (status, body) = app
        .json(
            Method::GET,
            &format!("/v1/conversations/{}/messages", v.conversation_id),
            Some(&v.tokens[1]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "untouched: {body}");
    // Nor does acme's key find the other tenant's visitor, or an unknown one.
    let (status, c) = app
        .json(
            Method::GET,
            &format!("/v1/admin/conversations/{}", theirs.conversation_id),
            Some(&other.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let their_visitor = c["visitor_id"].as_str().expect("visitor_id");
    for id in [their_visitor, "vis_unknown"] {
        let (status, body) = app
            .json(
                Method::DELETE,
                &format!("/v1/admin/visitors/{id}"),
                Some(&write),
                None,
            )
            .await;
        assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    }
    // Both routes are documented, with their answers' schemas.
    let (_, doc) = app.json(Method::GET, "/openapi.json", None, None).await;
    for (path, method, schema) in [
        ("/v1/admin/visitors/{id}/export", "get", "VisitorExport"),
        ("/v1/admin/visitors/{id}", "delete", "Erasure"),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} documented");
        assert_eq!(
            op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            format!("#/components/schemas/{schema}"),
            "{op}"
        );
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    assert!(doc["components"]["schemas"]["ConversationExport"].is_object());
    // A platform key acts for the tenant it names.
    let resp = app
        .http
        .get(format!("{}{export_path}", app.base))
        .bearer_auth(&app.platform_key)
        .header("chatorical-tenant", "acme")
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::OK);

    // Erase, then again: the same shape, nothing changed, one audit entry.
    let (status, first) = app
        .json(Method::DELETE, &erase_path, Some(&write), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["already_erased"], false);
    assert_eq!(first["tokens_revoked"], 2);
    assert_eq!(first["outbox_cancelled"], 0, "no Telegram, no outbox");
    let (status, again) = app
        .json(Method::DELETE, &erase_path, Some(&write), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&again), keys(&first), "the same shape");
    assert_eq!(again["already_erased"], true);
    assert_eq!(again["erased_at"], first["erased_at"]);
    assert_eq!(again["conversations"], 1);
    for field in [
        "conversations_closed",
        "messages_erased",
        "labels_cleared",
        "tokens_revoked",
        "outbox_cancelled",
        "topics_renamed",
        "topics_closed",
    ] {
        assert_eq!(again[field], 0, "{field}: {again}");
    }
    let entries = audit_entries(&app, &write, "visitor.erased").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(
        entries[0]["actor"]
            .as_str()
            .is_some_and(|a| a.starts_with("key:"))
    );

    // No token of the visitor works any more, on any widget route.
    for token in &v.tokens {
        let (status, body) = app
            .json(
                Method::GET,
                &format!("/v1/conversations/{}/messages", v.conversation_id),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        let (status, _) = app
            .json(Method::POST, "/v1/conversations", Some(token), None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = app
            .json(
                Method::POST,
                "/v1/widget/identify",
                Some(token),
                Some(json!({"name": NAME})),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // A session with the old token starts a new, empty visitor.
        let (status, s) = app
            .json(
                Method::POST,
                "/v1/widget/session",
                None,
                Some(json!({"widget_key": t.widget_key, "visitor_token": token})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{s}");
        assert!(s["conversation_id"].is_null(), "{s}");
        assert_ne!(s["visitor_token"], token.as_str());
    }
    // A ws token issued before the erasure opens no socket.
    let err = app
        .ws(&v.ws_token, Some(&t.origin))
        .await
        .expect_err("refused");
    assert_eq!(refused_status(&err), Some(401));
    // Nothing of the visitor in the audit log (the whole of it, as the API shows it).
    let (status, all) = app
        .json(Method::GET, "/v1/admin/audit?limit=500", Some(&write), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let all = all.to_string();
    for needle in [NAME, EMAIL, USER_ID, PAGE, "aardvark", SUBJECT] {
        assert!(!all.contains(needle), "{needle} in the audit log: {all}");
    }
}

/// The visitor keeps opening conversations and writing into them from four clients
/// while the erasure runs: whatever committed before it is erased, nothing commits
/// after it (no open conversation, no text left), and every client is refused at last.
/// (Whether a request falls exactly into the erasure's window is up to timing; the
/// window itself is then exercised directly on the operations.)
async fn erasure_racing_the_visitors_own_writes_leaves_nothing_open_or_unerased(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.tenant("acme").await;
    app.unlimited(&t).await;
    let v = app.visitor(&t).await;
    let (status, c) = app
        .json(
            Method::GET,
            &format!("/v1/admin/conversations/{}", v.conversation_id),
            Some(&t.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let visitor_id = c["visitor_id"].as_str().expect("visitor_id").to_string();
    let (_, key) = app.key(&t, &["visitors:write"]).await;
    let (base, token) = (app.base.clone(), v.token.clone());
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (base, token, http) = (base.clone(), token.clone(), app.http.clone());
            tokio::spawn(async move {
                let mut written = 0;
                for i in 0..400 {
                    // Close nothing, open (or find) the conversation, write into it.
                    let resp = http
                        .post(format!("{base}/v1/conversations"))
                        .bearer_auth(&token)
                        .send()
                        .await
                        .expect("sent");
                    if resp.status() == StatusCode::UNAUTHORIZED {
                        return written;
                    }
                    let conv: Value = resp.json().await.expect("json");
                    let Some(id) = conv["id"].as_str() else {
                        continue;
                    };
                    let resp = http
                        .post(format!("{base}/v1/conversations/{id}/messages"))
                        .bearer_auth(&token)
                        .json(&json!({"client_msg_id": format!("w{w}-{i}"), "text": format!("racing-needle {w} {i}")}))
                        .send()
                        .await
                        .expect("sent");
                    match resp.status() {
                        StatusCode::CREATED => written += 1,
                        StatusCode::UNAUTHORIZED => return written,
                        // Closed under it by the erasure (or by the agent below).
                        StatusCode::CONFLICT => {}
                        other => panic!("unexpected {other}"),
                    }
                }
                panic!("writer {w} was never refused");
            })
        })
        .collect();
    // Meanwhile an agent closes the conversation now and then, so new ones are opened.
    let mut closed = 0;
    let erase_path = format!("/v1/admin/visitors/{visitor_id}");
    loop {
        let (_, list) = app
            .json(
                Method::GET,
                "/v1/admin/conversations?status=open",
                Some(&t.key),
                None,
            )
            .await;
        if let Some(id) = list["conversations"][0]["id"].as_str() {
            app.json(
                Method::POST,
                &format!("/v1/admin/conversations/{id}/close"),
                Some(&t.key),
                None,
            )
            .await;
            closed += 1;
        }
        if closed >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, erased) = app
        .json(Method::DELETE, &erase_path, Some(&key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{erased}");
    let mut written = 0;
    for w in writers {
        written += w.await.expect("writer");
    }
    assert!(written > 0, "the writers wrote before the erasure");
    let (status, export) = app
        .json(
            Method::GET,
            &format!("{erase_path}/export"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{export}");
    let convs = export["conversations"].as_array().expect("conversations");
    assert!(convs.len() >= 2, "{}", convs.len());
    let mut messages = 0;
    for c in convs {
        assert_eq!(c["status"], "closed", "{c}");
        for m in c["messages"].as_array().expect("messages") {
            assert_eq!(
                (m["text"].as_str(), m["erased"].as_bool()),
                (Some(""), Some(true)),
                "{m}"
            );
            messages += 1;
        }
    }
    assert_eq!(messages, written, "every message that was stored is erased");
    // A request authenticated just before the erasure and acting just after it (the
    // window the race above may or may not hit): no conversation is opened, nothing is
    // written.
    let authenticated = chatorical::chat::Visitor {
        id: visitor_id.as_str().into(),
        tenant_id: t.id.as_str().into(),
        environment: chatorical::domain::Environment::Production,
    };
    let err = app
        .state
        .chat
        .open_conversation(&authenticated)
        .await
        .expect_err("no conversation for an erased visitor");
    assert_eq!(
        err.code,
        chatorical::error::ErrorCode::Unauthorized,
        "{err:?}"
    );
    let last = convs.last().expect("a conversation")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let err = app
        .state
        .chat
        .post_message(
            &authenticated.tenant_id,
            &last.as_str().into(),
            Some(authenticated.environment),
            chatorical::chat::Sender::Visitor(&authenticated.id),
            "racing-needle late",
            Some("late"),
        )
        .await
        .expect_err("nothing written for an erased visitor");
    assert_eq!(
        err.code,
        chatorical::error::ErrorCode::ConversationClosed,
        "{err:?}"
    );
    // A second erasure finds nothing that slipped past the first.
    let (status, again) = app
        .json(Method::DELETE, &erase_path, Some(&key), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["messages_erased"], 0, "{again}");
    assert_eq!(again["conversations_closed"], 0, "{again}");
    let hits = stored(&app, &["racing-needle".to_string()]).await;
    assert!(hits.is_empty(), "{hits:#?}");
}

/// Wait until `n` nodes listen on the channel erasures are announced on.
async fn nodes_listening(app: &TestApp, n: i64) {
    let cluster = app.state.cluster.as_ref().expect("a node on Redis");
    let channel = cluster.key(&["ctl", "close_visitor"]);
    let client = cluster.client().clone();
    eventually(10, "every node listening for erasures", || {
        let (client, channel) = (client.clone(), channel.clone());
        async move {
            let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
                return false;
            };
            let counts: Result<(String, i64), _> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&channel)
                .query_async(&mut conn)
                .await;
            matches!(counts, Ok((_, got)) if got >= n)
        }
    })
    .await;
}

/// An erasure through node B closes the visitor's socket on node A (PostgreSQL and
/// Redis: the two-node deployment).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_on_one_node_closes_the_socket_on_the_other() {
    let (a, b) = crate::cluster::two_nodes(crate::cluster::shared_redis()).await;
    let t = a.tenant("acme").await;
    let v = a.visitor(&t).await;
    let bystander = a.visitor(&t).await;
    let mut ws = a
        .ws(&v.ws_token, Some(&t.origin))
        .await
        .expect("socket on A");
    next_of(&mut ws, "hello").await;
    let mut other_ws = a
        .ws(&bystander.ws_token, Some(&t.origin))
        .await
        .expect("socket on A");
    next_of(&mut other_ws, "hello").await;
    nodes_listening(&a, 2).await;
    let (status, c) = a
        .json(
            Method::GET,
            &format!("/v1/admin/conversations/{}", v.conversation_id),
            Some(&t.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let visitor_id = c["visitor_id"].as_str().expect("visitor_id");
    let (_, key) = b.key(&t, &["visitors:write"]).await;
    let (status, body) = b
        .json(
            Method::DELETE,
            &format!("/v1/admin/visitors/{visitor_id}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (code, reason) = close_frame(&mut ws).await;
    assert_eq!(code, 1008, "{reason}");
    // Another visitor's socket on the same node stays open and keeps working.
    let (status, _) = b.reply(&t, &bystander.conversation_id, "still here").await;
    assert_eq!(status, StatusCode::CREATED);
    let m = next_of(&mut other_ws, "message").await;
    assert_eq!(m["message"]["text"], "still here");
}
