//! Several nodes on PostgreSQL + Redis behave as one: fan-out across nodes, and a
//! Redis outage loses nothing and shows nothing twice.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use chatorical::config::Secret;
use reqwest::{Method, StatusCode};

use crate::helpers::{Backend, TestApp, Ws, next_json, next_of, spawn_app_with};

/// A redis-server of the test's own (never the shared one), on a free port.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let mut r = OwnRedis { port, child: None };
        r.restart();
        r
    }

    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("own redis-server did not start");
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn shared_redis() -> String {
    crate::test_redis::url()
}

/// Two nodes on one PostgreSQL database and one Redis (prefix unique to the test).
pub(crate) async fn two_nodes(redis_url: String) -> (TestApp, TestApp) {
    let prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    let url = redis_url.clone();
    let p = prefix.clone();
    let a = spawn_app_with(Backend::Postgres, move |s| {
        s.redis.url = Some(Secret::new(url));
        s.redis.key_prefix = p;
    })
    .await;
    let db_url = a.state.settings.database.url.clone();
    let key_file = a.state.settings.secrets.master_key_file.clone();
    let b = spawn_app_with(Backend::Postgres, move |s| {
        s.redis.url = Some(Secret::new(redis_url));
        s.redis.key_prefix = prefix;
        s.database.url = db_url;
        s.secrets.master_key_file = key_file;
    })
    .await;
    (a, b)
}

/// Wait until `app`'s node holds its Redis subscription to the conversation's channel
/// (`PUBSUB NUMSUB` on `PREFIX:conv:ID`, the channel `RedisHub` uses): from then on an
/// event any node publishes reaches it, without a backfill.
async fn subscribed(app: &TestApp, conversation_id: &str) {
    let cluster = app.state.cluster.as_ref().expect("a node on Redis");
    let channel = cluster.key(&["conv", conversation_id]);
    let client = cluster.client().clone();
    crate::helpers::eventually(10, "the node's Redis subscription", || {
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
            matches!(counts, Ok((_, n)) if n >= 1)
        }
    })
    .await;
}

/// Collect `message` frames until seqs 1..=n have arrived; panics on a duplicate
/// or an out-of-order seq.
async fn collect_in_order(ws: &mut Ws, n: i64, within: Duration) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + within;
    let mut texts = Vec::new();
    let mut last = 0;
    while last < n {
        let frame = tokio::time::timeout_at(deadline, next_json(ws))
            .await
            .unwrap_or_else(|_| panic!("only {last} of {n} messages arrived"));
        if frame["type"] != "message" {
            continue;
        }
        let seq = frame["message"]["seq"].as_i64().expect("seq");
        assert_eq!(
            seq,
            last + 1,
            "every message exactly once, in seq order (got {seq} after {last})"
        );
        last = seq;
        texts.push(frame["message"]["text"].as_str().unwrap_or("").to_string());
    }
    texts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_posted_to_one_node_reaches_a_socket_on_the_other() {
    let (a, b) = two_nodes(shared_redis()).await;
    let t = a.tenant("acme").await;
    let v = a.visitor(&t).await;
    let mut ws = a
        .ws(&v.ws_token, Some(&t.origin))
        .await
        .expect("socket on node A");
    next_of(&mut ws, "hello").await;
    subscribed(&a, &v.conversation_id).await;
    let (status, _) = b.reply(&t, &v.conversation_id, "from node B").await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = a.reply(&t, &v.conversation_id, "from node A").await;
    assert_eq!(status, StatusCode::CREATED);
    let texts = collect_in_order(&mut ws, 2, Duration::from_secs(10)).await;
    assert_eq!(texts, vec!["from node B", "from node A"]);
    // A visitor message sent through node B also reaches the socket on node A.
    let (status, _) = b.send(&v, "vb", "visitor via B").await;
    assert_eq!(status, StatusCode::CREATED);
    let texts = collect_in_order_from(&mut ws, 3, Duration::from_secs(10)).await;
    assert_eq!(texts, vec!["visitor via B"]);
}

async fn collect_in_order_from(ws: &mut Ws, seq: i64, within: Duration) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let frame = tokio::time::timeout_at(deadline, next_json(ws))
            .await
            .expect("message in time");
        if frame["type"] == "message" {
            assert_eq!(frame["message"]["seq"], seq);
            return vec![frame["message"]["text"].as_str().unwrap_or("").to_string()];
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_loses_nothing_and_shows_nothing_twice() {
    let mut redis = OwnRedis::start();
    let (a, b) = two_nodes(redis.url()).await;
    let t = a.tenant("acme").await;
    let v = a.visitor(&t).await;
    let mut ws = a
        .ws(&v.ws_token, Some(&t.origin))
        .await
        .expect("socket on node A");
    next_of(&mut ws, "hello").await;
    subscribed(&a, &v.conversation_id).await;
    let mut expected = Vec::new();
    for i in 0..10 {
        let node = if i % 2 == 0 { &a } else { &b };
        let text = format!("before {i}");
        let (status, _) = node.reply(&t, &v.conversation_id, &text).await;
        assert_eq!(status, StatusCode::CREATED);
        expected.push(text);
    }
    redis.stop();
    for i in 0..10 {
        let node = if i % 2 == 0 { &b } else { &a };
        let text = format!("during {i}");
        let (status, body) = node.reply(&t, &v.conversation_id, &text).await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "sends commit while Redis is down: {body}"
        );
        expected.push(text);
    }
    let (status, ready) = a.json(Method::GET, "/readyz", None, None).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "readyz reports Redis down: {ready}"
    );
    redis.restart();
    for i in 0..5 {
        let node = if i % 2 == 0 { &a } else { &b };
        let text = format!("after {i}");
        // The first calls may still see the old link; they commit either way.
        let (status, _) = node.reply(&t, &v.conversation_id, &text).await;
        assert_eq!(status, StatusCode::CREATED);
        expected.push(text);
    }
    let got = collect_in_order(&mut ws, expected.len() as i64, Duration::from_secs(30)).await;
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_crosses_nodes() {
    let prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    let p = prefix.clone();
    let a = spawn_app_with(Backend::Postgres, move |s| {
        s.redis.url = Some(Secret::new(shared_redis()));
        s.redis.key_prefix = p;
        s.ws.ping_interval_secs = 1;
    })
    .await;
    let db_url = a.state.settings.database.url.clone();
    let key_file = a.state.settings.secrets.master_key_file.clone();
    let b = spawn_app_with(Backend::Postgres, move |s| {
        s.redis.url = Some(Secret::new(shared_redis()));
        s.redis.key_prefix = prefix;
        s.database.url = db_url;
        s.secrets.master_key_file = key_file;
    })
    .await;
    let t = a.tenant("acme").await;
    let v = a.visitor(&t).await;
    let mut ws = a
        .ws(&v.ws_token, Some(&t.origin))
        .await
        .expect("socket on node A");
    next_of(&mut ws, "hello").await;
    let first = next_of(&mut ws, "presence").await;
    assert_eq!(first["agents_online"], false, "nobody answered yet");
    let (status, _) = b.reply(&t, &v.conversation_id, "an agent on node B").await;
    assert_eq!(status, StatusCode::CREATED);
    let online = tokio::time::timeout(Duration::from_secs(6), next_of(&mut ws, "presence"))
        .await
        .expect("presence pushed");
    assert_eq!(online["agents_online"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_answer_through_one_node_reaches_a_socket_on_the_other() {
    use crate::fake_telegram::{FakeTelegram, topic_text_update};
    let fake = FakeTelegram::start_local().await;
    let prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    let (api, p) = (fake.api_url(), prefix.clone());
    let a = spawn_app_with(Backend::Postgres, move |s| {
        s.redis.url = Some(Secret::new(shared_redis()));
        s.redis.key_prefix = p;
        s.telegram.api_url = api;
    })
    .await;
    let db_url = a.state.settings.database.url.clone();
    let key_file = a.state.settings.secrets.master_key_file.clone();
    let api = fake.api_url();
    let b = spawn_app_with(Backend::Postgres, move |s| {
        s.redis.url = Some(Secret::new(shared_redis()));
        s.redis.key_prefix = prefix;
        s.database.url = db_url;
        s.secrets.master_key_file = key_file;
        s.telegram.api_url = api;
    })
    .await;
    let t = a.tenant("acme").await;
    let token = crate::helpers::fake_bot_and_group(&fake, 111, -100111);
    crate::helpers::connect_telegram(&a, &t, &token, -100111).await;
    let v = a.visitor(&t).await;
    let mut ws = a
        .ws(&v.ws_token, Some(&t.origin))
        .await
        .expect("socket on node A");
    next_of(&mut ws, "hello").await;
    a.send(&v, "m1", "hello agents").await;
    let sent = fake
        .wait_for_calls("sendmessage", 2, Duration::from_secs(10))
        .await;
    let thread = sent[1].thread_id().expect("topic");
    // Telegram calls node B (as a load balancer might route it).
    let secret = fake
        .webhook(&token)
        .and_then(|h| h.secret_token)
        .expect("secret");
    let update = topic_text_update(7, -100111, thread, 900, 555, "Ana", "answered via node B");
    let resp = b
        .http
        .post(format!("{}/v1/telegram/webhook/acme", b.base))
        .header("X-Telegram-Bot-Api-Secret-Token", secret)
        .json(&update)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::OK);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let frame = tokio::time::timeout_at(deadline, next_json(&mut ws))
            .await
            .expect("agent answer reaches node A");
        if frame["type"] == "message" && frame["message"]["direction"] == "outbound" {
            assert_eq!(frame["message"]["text"], "answered via node B");
            assert_eq!(frame["message"]["author"], "Ana");
            break;
        }
    }
}

/// The per-conversation typing throttle is a Redis key: sockets of one conversation on
/// two nodes (whose Telegram budgets are separate) make one `sendChatAction`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_is_throttled_per_conversation_across_nodes() {
    use crate::fake_telegram::FakeTelegram;
    use crate::helpers::send_json;
    use chatorical::telegram::typing::TypingOutcome;
    let fake = FakeTelegram::start_local().await;
    let prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    let (api, p) = (fake.api_url(), prefix.clone());
    let a = spawn_app_with(Backend::Postgres, move |s| {
        s.redis.url = Some(Secret::new(shared_redis()));
        s.redis.key_prefix = p;
        s.telegram.api_url = api;
    })
    .await;
    let db_url = a.state.settings.database.url.clone();
    let key_file = a.state.settings.secrets.master_key_file.clone();
    let api = fake.api_url();
    let b = spawn_app_with(Backend::Postgres, move |s| {
        s.redis.url = Some(Secret::new(shared_redis()));
        s.redis.key_prefix = prefix;
        s.database.url = db_url;
        s.secrets.master_key_file = key_file;
        s.telegram.api_url = api;
    })
    .await;
    let t = a.tenant("acme").await;
    let token = crate::helpers::fake_bot_and_group(&fake, 111, -100111);
    crate::helpers::connect_telegram(&a, &t, &token, -100111).await;
    let v = a.visitor(&t).await;
    let thread = fake.add_topic(-100111, "typing");
    let mut pc = a.state.db.conn().await.expect("conn");
    chatorical::db::repo::conversations::set_topic(
        &mut pc.as_conn(),
        &t.id,
        &v.conversation_id,
        i64::from(thread),
        "typing",
    )
    .await
    .expect("topic recorded");
    drop(pc);
    let mut on_a = a.ws(&v.ws_token, Some(&t.origin)).await.expect("node A");
    let mut on_b = b.ws(&v.ws_token, Some(&t.origin)).await.expect("node B");
    next_of(&mut on_a, "hello").await;
    next_of(&mut on_b, "hello").await;
    let total = |app: &TestApp| -> u64 {
        TypingOutcome::ALL
            .iter()
            .map(|o| app.state.typing.count(*o))
            .sum()
    };
    send_json(&mut on_a, serde_json::json!({"type": "typing"})).await;
    crate::helpers::eventually(10, "node A handled its typing", || {
        let n = total(&a);
        async move { n == 1 }
    })
    .await;
    send_json(&mut on_b, serde_json::json!({"type": "typing"})).await;
    crate::helpers::eventually(10, "node B handled its typing", || {
        let n = total(&b);
        async move { n == 1 }
    })
    .await;
    assert_eq!(a.state.typing.count(TypingOutcome::Sent), 1);
    assert_eq!(
        b.state.typing.count(TypingOutcome::Throttled),
        1,
        "node B saw node A's mark in Redis"
    );
    let actions = fake.calls_of("sendchataction");
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].thread_id(), Some(thread));
}
