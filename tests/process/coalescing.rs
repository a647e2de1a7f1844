//! Coalescing under SIGKILL: with a backlog the worker sends combined messages (one
//! Telegram message carrying a conversation's pending visitor messages); workers
//! killed mid-batch, again and again, lose nothing, and each kill costs at most one
//! re-sent Telegram message (the same combined message, its set recorded before the
//! call).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rand::Rng;

use crate::fake_telegram::{Failure, FakeTelegram};
use crate::support::{Backend, Install, Proc};

const CONVERSATIONS: usize = 8;
const KILLS: usize = 5;
const GROUP: i64 = -100_778;

/// The message texts one Telegram text carries: the text itself, or the entries of a
/// combined message (`HH:MM:SS text`).
fn entries(text: &str) -> Vec<String> {
    let is_entry = |line: &str| {
        let b = line.as_bytes();
        b.len() > 9 && b[2] == b':' && b[5] == b':' && b[8] == b' '
    };
    if !text.lines().next().is_some_and(is_entry) {
        return vec![text.to_string()];
    }
    text.lines()
        .filter(|l| is_entry(l))
        .map(|l| l[9..].to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_killed_mid_batch_lose_nothing_and_resend_at_most_one_message_each() {
    tokio::time::timeout(Duration::from_secs(120), body())
        .await
        .expect("the test finishes within 120 s");
}

async fn body() {
    let started = Instant::now();
    let fake = FakeTelegram::start_local().await;
    // 20 calls a minute per group, in time scaled 30 times (2 s windows): the lane
    // always has a backlog while visitors keep writing.
    let install = Install::new(Backend::Postgres, &fake.api_url())
        .await
        .with_env("CHATORICAL_WORKER__PER_GROUP_PER_MIN", "20")
        .with_env("CHATORICAL_WORKER__PER_CHAT_PER_SEC", "1")
        .with_env("CHATORICAL_WORKER__BUDGET_TIME_SCALE", "30");
    let server = install
        .serve(&[("CHATORICAL_WORKER__EMBEDDED", "false")])
        .await;
    let api = server.api.clone();
    let tenant = install.tenant("batchco").await;
    api.connect_telegram(&fake, &tenant, 778, GROUP).await;
    // Calls take a while, so that kills land inside them (after Telegram took the
    // message, before the worker heard back).
    fake.fail_always(
        "sendmessage",
        None,
        Failure::Delay(Duration::from_millis(120)),
    );

    // Visitors write all along: a message every 150 ms in each conversation.
    let posted: Arc<Mutex<BTreeMap<usize, Vec<String>>>> = Arc::default();
    let stop = tokio_util::sync::CancellationToken::new();
    let mut writers = tokio::task::JoinSet::new();
    for c in 0..CONVERSATIONS {
        let (api, tenant, posted, stop) =
            (api.clone(), tenant.clone(), posted.clone(), stop.clone());
        writers.spawn(async move {
            let v = api.visitor(&tenant).await;
            let mut m = 0;
            while !stop.is_cancelled() {
                let text = format!("batch c{c} m{m:03}");
                api.send(&v, &format!("m{m}"), &text).await;
                posted
                    .lock()
                    .expect("lock")
                    .entry(c)
                    .or_default()
                    .push(text);
                m += 1;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        });
    }

    // Where the texts went: (Telegram message index, entries) per sent message.
    let arrived = |fake: &FakeTelegram| -> HashSet<String> {
        fake.sent_messages(GROUP)
            .iter()
            .flat_map(|m| entries(&m.text))
            .collect()
    };
    let mut rng = rand::rng();
    let mut kills = 0;
    let mut worker: Option<Proc> = None;
    while kills < KILLS {
        let mut w = worker
            .take()
            .unwrap_or_else(|| install.worker(&format!("worker #{}", kills + 1)));
        // Let it deliver a little (its predecessor's leases run out after 2 s), then
        // kill it while a combined message is on its way.
        let before = fake.calls_of("sendmessage").len();
        let deadline = Instant::now() + Duration::from_secs(20);
        while fake.calls_of("sendmessage").len() <= before + 2 {
            assert!(Instant::now() < deadline, "no delivery progress for 20 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..120))).await;
        w.kill();
        kills += 1;
        eprintln!(
            "kill {kills}: {} Telegram messages so far",
            fake.sent_messages(GROUP).len()
        );
    }
    stop.cancel();
    while let Some(r) = writers.join_next().await {
        r.expect("writer");
    }
    let posted = posted.lock().expect("lock").clone();
    let all: Vec<&String> = posted.values().flatten().collect();

    // One worker delivers the rest.
    let mut last = install.worker("worker (final)");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = arrived(&fake);
        if all.iter().all(|t| got.contains(*t)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}/{} texts delivered 60 s after the last kill",
            all.iter().filter(|t| got.contains(**t)).count(),
            all.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    api.outbox_drained(&tenant, Duration::from_secs(30)).await;
    last.terminate();
    let _ = last.wait_exit(Duration::from_secs(15)).await;

    // Nothing lost; a Telegram message that repeats any text already sent is a
    // re-send, and there is at most one per kill.
    let sent = fake.sent_messages(GROUP);
    let mut seen: HashMap<String, usize> = HashMap::new();
    let (mut resent, mut combined, mut carried) = (0, 0, 0);
    let mut first_order: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let index: HashMap<&str, (usize, usize)> = posted
        .iter()
        .flat_map(|(c, texts)| {
            texts
                .iter()
                .enumerate()
                .map(move |(i, t)| (t.as_str(), (*c, i)))
        })
        .collect();
    let mut threads: HashMap<usize, HashSet<Option<i32>>> = HashMap::new();
    for m in &sent {
        let e = entries(&m.text);
        let ours: Vec<&String> = e
            .iter()
            .filter(|t| index.contains_key(t.as_str()))
            .collect();
        if ours.is_empty() {
            continue; // an opening card
        }
        if ours.len() > 1 {
            combined += 1;
            carried += ours.len();
        }
        if ours.iter().any(|t| seen.contains_key(*t)) {
            resent += 1;
        }
        for t in ours {
            let n = seen.entry(t.clone()).or_insert(0);
            *n += 1;
            let (c, i) = index[t.as_str()];
            threads.entry(c).or_default().insert(m.thread_id);
            if *n == 1 {
                first_order.entry(c).or_default().push(i);
            }
        }
    }
    eprintln!(
        "coalescing crash test: {} texts posted, {} Telegram messages ({combined} combined, carrying {carried}), {kills} kills, {resent} re-sent messages, {:?}",
        all.len(),
        sent.len(),
        started.elapsed()
    );
    assert!(combined > 0, "the backlog was coalesced");
    assert!(
        resent <= kills,
        "{resent} re-sent Telegram messages for {kills} kills"
    );
    for (c, order) in &first_order {
        assert_eq!(order.len(), posted[c].len(), "conversation {c}: every text");
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "conversation {c} in order: {order:?}"
        );
        assert_eq!(threads[c].len(), 1, "conversation {c} in one topic");
    }
    drop(server);
}
