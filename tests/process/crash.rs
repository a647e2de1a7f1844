//! Crash safety: workers killed with SIGKILL mid-delivery lose nothing, and each
//! kill costs at most one duplicate.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    time::{Duration, Instant},
};

use rand::Rng;

use crate::fake_telegram::{Failure, FakeTelegram};
use crate::support::{Backend, Install, Proc};

const CONVERSATIONS: usize = 20;
const PER_CONVERSATION: usize = 50;
const MESSAGES: usize = CONVERSATIONS * PER_CONVERSATION;
const MIN_KILLS: usize = 8;
const GROUP: i64 = -100_777;

/// How many of `texts` the fake accepted (distinct) and how many times each.
fn sent_counts(fake: &FakeTelegram, texts: &HashSet<String>) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for m in fake.sent_messages(GROUP) {
        if texts.contains(&m.text) {
            *counts.entry(m.text).or_insert(0) += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_killed_repeatedly_loses_nothing() {
    tokio::time::timeout(Duration::from_secs(120), killed_workers_body())
        .await
        .expect("the crash test finishes within 120 s");
}

async fn killed_workers_body() {
    let started = Instant::now();
    let fake = FakeTelegram::start_local().await;
    let install = Install::new(Backend::Postgres, &fake.api_url()).await;
    let server = install
        .serve(&[("CHATORICAL_WORKER__EMBEDDED", "false")])
        .await;
    let api = &server.api;
    let platform = install.platform_key().await;
    let tenant = api.tenant(&platform, "crashco").await;
    api.connect_telegram(&fake, &tenant, 777, GROUP).await;

    // 1,000 visitor messages over 20 conversations: conversations in parallel,
    // each conversation's messages in order.
    let mut seeding = tokio::task::JoinSet::new();
    for c in 0..CONVERSATIONS {
        let api = api.clone();
        let tenant = tenant.clone();
        seeding.spawn(async move {
            let v = api.visitor(&tenant).await;
            let mut texts = Vec::new();
            for m in 0..PER_CONVERSATION {
                let text = format!("crash c{c:02} m{m:02} {}", uuid::Uuid::new_v4().simple());
                api.send(&v, &format!("m{m}"), &text).await;
                texts.push(text);
            }
            (c, texts)
        });
    }
    let mut by_conversation: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    while let Some(r) = seeding.join_next().await {
        let (c, texts) = r.expect("seeding task");
        by_conversation.insert(c, texts);
    }
    let texts: HashSet<String> = by_conversation.values().flatten().cloned().collect();
    assert_eq!(texts.len(), MESSAGES);
    let seeded = started.elapsed();
    assert!(
        fake.sent_messages(GROUP).is_empty(),
        "nothing is delivered without a worker"
    );

    // A little Bot API latency, so that kills land inside deliveries.
    fake.fail_always(
        "sendmessage",
        None,
        Failure::Delay(Duration::from_millis(3)),
    );

    let delivered = |fake: &FakeTelegram| sent_counts(fake, &texts).len();
    let mut rng = rand::rng();
    let mut workers: VecDeque<Proc> = VecDeque::new();
    let mut spawned = 0usize;
    let mut kills = 0usize;
    let mut side_by_side = 0usize;
    let kill_phase = Instant::now();
    // Kills follow delivery progress, not the clock: kill k+1 lands somewhere in the
    // (k+1)-th share of the first 80 % of the messages, while the workers are busy
    // delivering. However fast or slow this machine delivers, every kill happens
    // mid-delivery and the last leaves a fifth of the messages to go.
    let share = MESSAGES * 4 / 5 / MIN_KILLS;
    while kills < MIN_KILLS {
        // Every third round two workers run side by side.
        let want = if kills % 3 == 2 { 2 } else { 1 };
        while workers.len() < want {
            spawned += 1;
            workers.push_back(install.worker(&format!("worker #{spawned}")));
        }
        if workers.len() > 1 {
            side_by_side += 1;
        }
        let target = kills * share + rng.random_range(share / 4..=share * 3 / 4);
        // Progress resumes once the killed worker's lease ran out (2 s).
        let (mut seen, mut progressed) = (delivered(&fake), Instant::now());
        while seen < target {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let now = delivered(&fake);
            if now > seen {
                (seen, progressed) = (now, Instant::now());
            }
            assert!(
                progressed.elapsed() < Duration::from_secs(20),
                "no delivery progress for 20 s after kill {kills} ({seen}/{MESSAGES} delivered)"
            );
        }
        let mut victim = workers.pop_front().expect("a running worker");
        victim.kill();
        let now = delivered(&fake);
        assert!(now < MESSAGES, "kill {kills} came after the last delivery");
        kills += 1;
        eprintln!(
            "kill {kills}: {now}/{MESSAGES} delivered, {} worker(s) still running",
            workers.len()
        );
    }
    let kill_phase = kill_phase.elapsed();
    let at_last_kill = delivered(&fake);

    // One worker runs until everything is delivered.
    while workers.len() > 1 {
        let mut extra = workers.pop_back().expect("worker");
        extra.kill();
        kills += 1;
    }
    if workers.is_empty() {
        spawned += 1;
        workers.push_back(install.worker(&format!("worker #{spawned} (final)")));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while delivered(&fake) < MESSAGES {
        assert!(
            Instant::now() < deadline,
            "only {}/{MESSAGES} messages delivered 60 s after the last kill",
            delivered(&fake)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    api.outbox_drained(&tenant, Duration::from_secs(30)).await;
    let mut last = workers.pop_front().expect("final worker");
    last.terminate();
    let status = last
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("the final worker exits after SIGTERM");
    assert!(status.success(), "final worker: {status}");

    // Every text arrived; duplicates are bounded by the kills.
    let counts = sent_counts(&fake, &texts);
    let missing: Vec<&String> = texts.iter().filter(|t| !counts.contains_key(*t)).collect();
    assert!(
        missing.is_empty(),
        "{} text(s) never reached Telegram, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    // A kill between createForumTopic and recording the topic leaves one orphan.
    let topics = fake.topics(GROUP).len();
    let elapsed = started.elapsed();
    eprintln!(
        "crash test: {MESSAGES} messages, {kills} kills ({spawned} workers started, \
         {side_by_side} rounds with 2 side by side), {duplicates} duplicate deliveries, \
         {topics} topics for {CONVERSATIONS} conversations; seeding {seeded:?}, kill phase {kill_phase:?} ({at_last_kill} delivered by the last kill), \
         total {elapsed:?}"
    );
    assert!(
        duplicates <= kills,
        "{duplicates} duplicate deliveries for {kills} kills: {:?}",
        counts.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    assert!(
        (CONVERSATIONS..=CONVERSATIONS + kills).contains(&topics),
        "{topics} topics for {CONVERSATIONS} conversations and {kills} kills"
    );

    // One lane, delivered in order: each conversation's messages went into one
    // topic, first deliveries in the order they were posted.
    let sent = fake.sent_messages(GROUP);
    for (c, posted) in &by_conversation {
        let index: HashMap<&str, usize> = posted
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i))
            .collect();
        let mut seen = HashSet::new();
        let mut order = Vec::new();
        let mut threads = HashSet::new();
        for m in &sent {
            if let Some(i) = index.get(m.text.as_str()) {
                threads.insert(m.thread_id);
                if seen.insert(*i) {
                    order.push(*i);
                }
            }
        }
        assert_eq!(
            threads.len(),
            1,
            "conversation {c} went into one topic: {threads:?}"
        );
        assert!(threads.iter().all(Option::is_some), "into a topic");
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "conversation {c} delivered in order: {order:?}"
        );
    }
}
