//! Outbox benchmark: visitor message committed → request at a (fake) Telegram Bot API.
//!
//! ```sh
//! cargo bench --bench outbox                 # defaults: well under a minute
//! cargo bench --bench outbox -- --help
//! cargo bench --bench outbox -- --only dispatch --messages 20000 --backends postgres
//! ```
//!
//! The fake Bot API (`tests/support/fake_telegram.rs`) runs inside this process and
//! records the arrival `Instant` of every request; the server and worker are the
//! release binary in their own processes, pointed at it with
//! `CHATORICAL_TELEGRAM__API_URL` and with the worker's rate budgets raised.
//!
//! - latency: tenants with a bot and a forum group each; every conversation gets one
//!   warm-up message first (topic creation is not measured); then visitor messages at
//!   a modest open-loop rate. Latency = `POST …/messages` answered 201 (the message and
//!   its outbox item are committed) → the fake receives the `sendMessage` with that text.
//!   Also: the server's CPU while idle with the embedded worker running (busy polling).
//! - dispatch: `serve` with `CHATORICAL_WORKER__EMBEDDED=false`, many tenants (one bot
//!   and group each, so per-chat ordering does not serialise everything), N messages
//!   enqueued; then `chatorical worker` starts and the requests/s arriving at the fake
//!   are counted.

#[path = "../tests/support/fake_telegram.rs"]
mod fake_telegram;

mod common;

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use clap::Parser;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use reqwest::Method;
use serde_json::json;

use common::{
    Backend, CpuWatch, Deployment, PgDatabase, Proc, Row, Tenant, Visitor, histogram, ms, record,
    summary, verdict,
};
use fake_telegram::FakeTelegram;

/// Outbox benchmark for chatorical (see the file header).
#[derive(Debug, Parser)]
#[command(name = "outbox")]
struct Args {
    /// Latency run: visitor messages per second (open loop), under the budgets.
    #[arg(long, default_value_t = 50)]
    rate: u64,
    /// Latency run: seconds.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Latency run: tenants (one bot and forum group each).
    #[arg(long, default_value_t = 10)]
    tenants: usize,
    /// Latency run: visitors (conversations, topics) per tenant.
    #[arg(long, default_value_t = 5)]
    visitors_per_tenant: usize,
    /// Dispatch run: messages enqueued before the worker starts.
    #[arg(long, default_value_t = 5000)]
    messages: usize,
    /// Dispatch run: tenants (one bot and forum group each: one lane each).
    #[arg(long, default_value_t = 50)]
    dispatch_tenants: usize,
    /// Dispatch run: conversations (topics) per tenant.
    #[arg(long, default_value_t = 4)]
    dispatch_conversations: usize,
    /// Seconds of idle time over which the server's CPU is measured.
    #[arg(long, default_value_t = 3)]
    idle_secs: u64,
    /// Phases to run.
    #[arg(long, default_value = "latency,dispatch")]
    only: String,
    /// Backends.
    #[arg(long, default_value = "sqlite,postgres")]
    backends: String,
    /// Before each measured run wait up to this many seconds for the machine to be
    /// quiet (other builds and tests share it); 0 only reports how busy it was.
    #[arg(long, default_value_t = 0)]
    wait_quiet: u64,
    /// "Quiet": the machine's CPU busy fraction over one second is at most this.
    #[arg(long, default_value_t = 0.25)]
    quiet_below: f64,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

/// A server (and maybe a worker) on a fresh database, talking to a fake Telegram.
struct Env {
    fake: FakeTelegram,
    dep: Deployment,
    server: Proc,
    platform: String,
    _dir: tempfile::TempDir,
    pg: Option<PgDatabase>,
}

impl Env {
    async fn start(backend: Backend, embedded_worker: bool) -> Result<Env> {
        let fake = FakeTelegram::start_local().await;
        let dir = tempfile::tempdir()?;
        let pg = match backend {
            Backend::Postgres => Some(PgDatabase::create(&common::pg_admin_url()).await?),
            Backend::Sqlite => None,
        };
        let extra: Vec<(&str, String)> = vec![
            ("CHATORICAL_TELEGRAM__API_URL", fake.api_url()),
            ("CHATORICAL_TELEGRAM__REQUEST_TIMEOUT_SECS", "5".into()),
            // The fake is a local Bot API server: the webhook is plain http.
            ("CHATORICAL_TELEGRAM__ALLOW_HTTP_WEBHOOK", "true".into()),
            // Webhook mode (without server.public_url the default would be polling).
            ("CHATORICAL_TELEGRAM__DEFAULT_MODE", "webhook".into()),
            ("CHATORICAL_WORKER__EMBEDDED", embedded_worker.to_string()),
            ("CHATORICAL_WORKER__PER_CHAT_PER_SEC", "100000".into()),
            ("CHATORICAL_WORKER__PER_GROUP_PER_MIN", "100000000".into()),
            ("CHATORICAL_WORKER__PER_BOT_PER_SEC", "100000".into()),
            ("CHATORICAL_WORKER__BACKOFF_BASE_MS", "50".into()),
            ("CHATORICAL_WORKER__BACKOFF_MAX_SECS", "1".into()),
        ];
        let dep = Deployment::new(dir.path(), pg.as_ref().map(|p| p.url.as_str()), &extra);
        let platform = dep.platform_key().await?;
        let server = dep.serve("server").await?;
        Ok(Env {
            fake,
            dep,
            server,
            platform,
            _dir: dir,
            pg,
        })
    }

    /// `n` tenants, each with its own bot and forum group, connected through the API.
    async fn telegram_tenants(&self, n: usize, prefix: &str) -> Result<Vec<Tenant>> {
        let http = common::http_client();
        let base = self.server.base();
        let mut tenants = Vec::new();
        for i in 0..n {
            let t = common::create_tenant(
                &http,
                &base,
                &self.platform,
                &format!("{prefix}{i}"),
                &["conversations:write", "telegram:write"],
            )
            .await?;
            let bot_id = 7000 + i as u64;
            let token = format!("{bot_id}:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
            let chat = -1_000_000_000_000 - bot_id as i64;
            self.fake
                .add_bot(&token, bot_id, &format!("bench{bot_id}_bot"));
            self.fake.add_group(chat, "Support", true);
            self.fake.set_member(bot_id, chat, "administrator", true);
            let (st, body) = common::call(
                &http,
                Method::PUT,
                &format!("{base}/v1/admin/telegram"),
                Some(&t.key),
                Some(json!({"bot_token": token, "group_chat_id": chat})),
            )
            .await?;
            if !st.is_success() {
                bail!("connect telegram for {}: {st} {body}", t.slug);
            }
            tenants.push(t);
        }
        Ok(tenants)
    }

    async fn teardown(mut self) {
        self.server.stop().await;
        if let Some(pg) = self.pg.take() {
            pg.drop_now().await;
        }
    }
}

/// `sendMessage` calls whose text starts with `prefix`: (text, arrival).
fn arrivals(fake: &FakeTelegram, prefix: &str) -> Vec<(String, Instant)> {
    fake.calls_of("sendMessage")
        .into_iter()
        .filter_map(|c| {
            let t = c.text()?.to_string();
            t.starts_with(prefix).then_some((t, c.at))
        })
        .collect()
}

async fn wait_arrivals(fake: &FakeTelegram, prefix: &str, n: usize, secs: u64) -> usize {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let got = arrivals(fake, prefix).len();
        if got >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Round trip of a direct `getMe` to the fake, sequential (the floor of one Bot API call).
async fn fake_rtt(fake: &FakeTelegram, token: &str, n: usize) -> Result<Histogram<u64>> {
    let http = common::http_client();
    let url = format!("{}/bot{token}/getMe", fake.api_url());
    let mut h = histogram();
    for i in 0..n + 50 {
        let t = Instant::now();
        let r = http.post(&url).json(&json!({})).send().await?;
        r.bytes().await?;
        if i >= 50 {
            record(&mut h, t.elapsed());
        }
    }
    Ok(h)
}

/// Closed-loop requests/s the fake takes directly (sendMessage, `conc` clients, `secs`).
async fn fake_capacity(fake: &FakeTelegram, token: &str, chat: i64, conc: usize, secs: f64) -> f64 {
    let http = common::http_client();
    let url = format!("{}/bot{token}/sendMessage", fake.api_url());
    let count = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..conc)
        .map(|_| {
            let (http, url, count) = (http.clone(), url.clone(), count.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    if let Ok(r) = http
                        .post(&url)
                        .json(&json!({"chat_id": chat, "text": "capacity probe"}))
                        .send()
                        .await
                        && r.bytes().await.is_ok()
                    {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    count.load(Ordering::Relaxed) as f64 / secs
}

fn ratio(a: u64, b: u64) -> String {
    if b == 0 {
        "-".into()
    } else {
        format!("×{:.1}", a as f64 / b as f64)
    }
}

// ---------------------------------------------------------------------------
// Commit → request latency
// ---------------------------------------------------------------------------

async fn latency_phase(args: &Args, backend: Backend, rows: &mut Vec<Row>) -> Result<()> {
    eprintln!("outbox: latency on {}", backend.name());
    let env = Env::start(backend, true).await?;
    let tenants = env.telegram_tenants(args.tenants.max(1), "obl-t").await?;
    let http = common::http_client();
    let base = env.server.base();
    let visitors = common::create_visitors(
        &http,
        &base,
        &tenants,
        tenants.len() * args.visitors_per_tenant.max(1),
        32,
    )
    .await?;
    // Warm-up: one message per conversation creates its topic (not measured).
    for (i, v) in visitors.iter().enumerate() {
        let st =
            common::post_message(&http, &base, v, &format!("w{i}"), &format!("warm-{i}")).await?;
        if st.as_u16() != 201 {
            bail!("warm-up message: {st}");
        }
    }
    let got = wait_arrivals(&env.fake, "warm-", visitors.len(), 60).await;
    if got < visitors.len() {
        bail!(
            "warm-up: only {got}/{} messages reached the fake Telegram\n{}",
            visitors.len(),
            env.server.log_tail()
        );
    }

    // Idle: what does the server (with its embedded worker) burn doing nothing?
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls_before = env.fake.calls().len();
    let idle_watch = CpuWatch::start(&[&env.server]);
    let cpu0 = common::cpu_ms(env.server.pid).unwrap_or(0);
    let pg0 = common::cpu_ms_by_name("postgres");
    tokio::time::sleep(Duration::from_secs(args.idle_secs.max(1))).await;
    let idle_ms_per_s = common::cpu_ms(env.server.pid)
        .unwrap_or(0)
        .saturating_sub(cpu0) as f64
        / args.idle_secs.max(1) as f64;
    let idle_pg_ms_per_s = common::cpu_ms_by_name("postgres").saturating_sub(pg0) as f64
        / args.idle_secs.max(1) as f64;
    let idle_cpu = idle_watch.report();
    let idle_calls = env.fake.calls().len() - calls_before;

    // Floors.
    let tg_token = "7000:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let floor = fake_rtt(&env.fake, tg_token, 1000).await?;
    let healthz = common::healthz_rtt(&http, &base, 1000).await?;

    // Open-loop visitor messages.
    let gate = common::quiet_gate(args.wait_quiet, args.quiet_below).await;
    let n = (args.rate * args.seconds) as usize;
    let committed: Arc<Vec<OnceLock<Instant>>> =
        Arc::new((0..n).map(|_| OnceLock::new()).collect());
    let post_hist = Arc::new(std::sync::Mutex::new(histogram()));
    let failed = Arc::new(AtomicU64::new(0));
    let watch = CpuWatch::start(&[&env.server]);
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::new();
    for k in 0..n {
        tokio::time::sleep_until(
            start + Duration::from_nanos(k as u64 * 1_000_000_000 / args.rate.max(1)),
        )
        .await;
        let (http, base, v) = (
            http.clone(),
            base.clone(),
            visitors[k % visitors.len()].clone(),
        );
        let (committed, post_hist, failed) = (committed.clone(), post_hist.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            match common::post_message(&http, &base, &v, &format!("o{k}"), &format!("obx-{k}"))
                .await
            {
                Ok(s) if s.as_u16() == 201 => {
                    let now = Instant::now();
                    let _ = committed[k].set(now);
                    record(
                        &mut post_hist.lock().unwrap_or_else(|p| p.into_inner()),
                        now - t,
                    );
                }
                _ => {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let ok = n - failed.load(Ordering::Relaxed) as usize;
    let got = wait_arrivals(&env.fake, "obx-", ok, 60).await;
    let cpu = watch.report();
    let mut h = histogram();
    let mut early = 0;
    for (text, at) in arrivals(&env.fake, "obx-") {
        let Some(k) = text
            .strip_prefix("obx-")
            .and_then(|k| k.parse::<usize>().ok())
        else {
            continue;
        };
        let Some(c) = committed.get(k).and_then(|c| c.get()) else {
            continue;
        };
        if at < *c {
            // The request reached Telegram before the 201 reached the client.
            early += 1;
        }
        record(&mut h, at.saturating_duration_since(*c));
    }
    let post = post_hist.lock().unwrap_or_else(|p| p.into_inner()).clone();
    println!(
        "\noutbox latency ({}, {} msg/s over {} conversations / {} tenants, {} s): commit→sendMessage {}; {} of {} arrived ({} before the 201 reached the client); POST→201 {}; {}",
        backend.name(),
        args.rate,
        visitors.len(),
        tenants.len(),
        args.seconds,
        summary(&h),
        got,
        ok,
        early,
        summary(&post),
        cpu
    );
    println!(
        "floors: fake getMe RTT {}; GET /healthz RTT {}; idle server {:.1} ms CPU/s, postgres {:.1} ms CPU/s, {} Bot API calls while idle ({idle_cpu})",
        summary(&floor),
        summary(&healthz),
        idle_ms_per_s,
        idle_pg_ms_per_s,
        idle_calls
    );
    let (p50, p99) = (h.value_at_quantile(0.5), h.value_at_quantile(0.99));
    let f50 = floor.value_at_quantile(0.5);
    let note = format!(
        "{} msg/s, {} conversations over {} tenants/bots; {got}/{ok} arrived; {early} arrived before the client saw 201; POST→201 p50 {}; {cpu}",
        args.rate,
        visitors.len(),
        tenants.len(),
        ms(post.value_at_quantile(0.5))
    );
    rows.push(Row::new(
        format!("outbox commit→sendMessage p50 ({})", backend.name()),
        "≤ 5 ms",
        ms(p50),
        format!(
            "direct getMe RTT to the fake p50 {} → {}",
            ms(f50),
            ratio(p50, f50)
        ),
        format!(
            "{}; {note}{}",
            verdict(p50 as f64 / 1000.0, 5.0, true),
            gate.as_ref()
                .map(|g| format!("; ⚠ {g}"))
                .unwrap_or_default()
        ),
    ));
    rows.push(Row::new(
        format!("outbox commit→sendMessage p99 ({})", backend.name()),
        "≤ 20 ms",
        format!(
            "{} (p90 {}, max {})",
            ms(p99),
            ms(h.value_at_quantile(0.9)),
            ms(h.max())
        ),
        format!("getMe RTT p99 {}", ms(floor.value_at_quantile(0.99))),
        verdict(p99 as f64 / 1000.0, 20.0, true),
    ));
    rows.push(Row::new(
        format!("idle server with embedded worker: CPU ({})", backend.name()),
        "no busy polling",
        format!("{idle_ms_per_s:.1} ms CPU per s"),
        format!("postgres {idle_pg_ms_per_s:.1} ms CPU per s"),
        format!(
            "{idle_calls} Bot API calls while idle over {} s",
            args.idle_secs.max(1)
        ),
    ));
    env.teardown().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// Dispatch throughput
// ---------------------------------------------------------------------------

async fn dispatch_phase(args: &Args, backend: Backend, rows: &mut Vec<Row>) -> Result<()> {
    eprintln!("outbox: dispatch on {}", backend.name());
    let env = Env::start(backend, false).await?;
    let tenants = env
        .telegram_tenants(args.dispatch_tenants.max(1), "obd-t")
        .await?;
    let http = common::http_client();
    let base = env.server.base();
    let visitors: Vec<Visitor> = common::create_visitors(
        &http,
        &base,
        &tenants,
        tenants.len() * args.dispatch_conversations.max(1),
        32,
    )
    .await?;
    // Enqueue with the worker stopped.
    let n = args.messages;
    let enq_start = Instant::now();
    let results: Vec<bool> = futures_util::stream::iter(0..n)
        .map(|k| {
            let (http, base, v) = (&http, &base, &visitors[k % visitors.len()]);
            async move {
                matches!(
                    common::post_message(http, base, v, &format!("d{k}"), &format!("dsp-{k}")).await,
                    Ok(s) if s.as_u16() == 201
                )
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let enq_secs = enq_start.elapsed().as_secs_f64();
    let ok = results.iter().filter(|b| **b).count();
    if ok < n {
        eprintln!("outbox: {} of {n} enqueues failed", n - ok);
    }
    // What can the fake take, measured by this process (so the fake is not the limit)?
    let capacity = fake_capacity(
        &env.fake,
        "7000:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        -1_000_000_000_000 - 7000,
        32,
        2.0,
    )
    .await;
    env.fake.clear();
    let gate = common::quiet_gate(args.wait_quiet, args.quiet_below).await;

    let spawned = Instant::now();
    let mut worker = env.dep.worker("worker").await?;
    let watch = CpuWatch::start(&[&worker, &env.server]);
    let got = wait_arrivals(&env.fake, "dsp-", ok, 300).await;
    let cpu = watch.report();
    let calls = env.fake.calls();
    worker.stop().await;
    let first = calls.iter().map(|c| c.at).min();
    let last = calls.iter().map(|c| c.at).max();
    let (Some(first), Some(last)) = (first, last) else {
        bail!("no requests reached the fake\n{}", worker.log_tail());
    };
    let span = last.duration_since(first).as_secs_f64().max(0.001);
    let total = calls.len();
    let topics = calls
        .iter()
        .filter(|c| c.method == "createforumtopic")
        .count();
    let rps = (total.saturating_sub(1)) as f64 / span;
    let from_spawn = total as f64 / last.duration_since(spawned).as_secs_f64().max(0.001);
    // Steady state: the middle 80% of arrivals.
    let mut ats: Vec<Instant> = calls.iter().map(|c| c.at).collect();
    ats.sort();
    let (lo, hi) = (ats.len() / 10, ats.len() * 9 / 10);
    let mid = if hi > lo + 1 {
        (hi - lo) as f64 / ats[hi].duration_since(ats[lo]).as_secs_f64().max(0.001)
    } else {
        rps
    };
    println!(
        "\noutbox dispatch ({}, {ok} messages over {} lanes, {} conversations; enqueued at {:.0} msg/s): {total} Bot API requests ({topics} createForumTopic) in {span:.2} s = {rps:.0} req/s (middle 80%: {mid:.0} req/s; from worker spawn {from_spawn:.0} req/s); {got}/{ok} messages arrived; {cpu}; fake alone takes {capacity:.0} req/s",
        backend.name(),
        tenants.len(),
        visitors.len(),
        ok as f64 / enq_secs
    );
    rows.push(Row::new(
        format!("outbox dispatch throughput ({})", backend.name()),
        "≥ 1,000 req/s",
        format!("{rps:.0} req/s (middle 80%: {mid:.0})"),
        format!("fake Bot API alone, 32 clients: {capacity:.0} req/s → {:.2}", rps / capacity.max(1.0)),
        format!(
            "{}; {total} requests ({topics} createForumTopic + cards + {got} messages) over {} lanes; worker concurrency default; {cpu}",
            verdict(rps, 1000.0, false),
            tenants.len()
        ) + &gate.map(|g| format!("; ⚠ {g}")).unwrap_or_default(),
    ));
    env.teardown().await;
    Ok(())
}

async fn run(args: Args) -> Result<()> {
    let phases: Vec<&str> = args.only.split(',').map(str::trim).collect();
    let backends = Backend::parse_list(&args.backends)?;
    common::raise_own_nofile();
    println!("# chatorical outbox benchmark\n");
    println!(
        "machine: {}; load average {} at start",
        common::machine(),
        common::loadavg()
    );
    println!(
        "args: rate={} msg/s seconds={} tenants={} visitors/tenant={} messages={} dispatch tenants={} conversations/tenant={} only={} backends={}",
        args.rate,
        args.seconds,
        args.tenants,
        args.visitors_per_tenant,
        args.messages,
        args.dispatch_tenants,
        args.dispatch_conversations,
        args.only,
        args.backends
    );
    let mut rows = Vec::new();
    for &backend in &backends {
        if phases.contains(&"latency") {
            latency_phase(&args, backend, &mut rows).await?;
        }
        if phases.contains(&"dispatch") {
            dispatch_phase(&args, backend, &mut rows).await?;
        }
    }
    common::print_table("chatorical outbox: results", &rows);
    println!("\nload average {} at the end", common::loadavg());
    Ok(())
}
