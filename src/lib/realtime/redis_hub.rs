//! Fan-out across nodes through Redis pub/sub.
//!
//! Publishing goes through a command connection, receiving through a separate
//! subscriber connection; both reconnect by themselves. Each node subscribes to a
//! conversation's channel while it has a socket for it and fans out locally with a
//! [`LocalHub`]. While Redis is unreachable, events still reach this node's sockets,
//! and once the subscriber is back every local socket is told to
//! [`Delivery::Resync`](super::Delivery::Resync) from the database — so nothing is
//! lost, and the seq on each event keeps anything from being shown twice.
//!
//! Besides the conversations' channels every node listens on one control channel: a
//! visitor whose data was erased has their sockets closed on every node.

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use futures_util::future::BoxFuture;

use super::{Hub, HubEvent, LocalHub, Subscription, VisitorCloser};
use crate::cluster::Cluster;

#[derive(Serialize, Deserialize)]
struct Envelope {
    s: Option<i64>,
    f: String,
}

enum Command {
    Subscribe(String),
}

struct Inner {
    local: LocalHub,
    cluster: Cluster,
    wanted: Mutex<HashSet<String>>,
    commands: mpsc::UnboundedSender<Command>,
    outgoing: mpsc::UnboundedSender<(String, HubEvent)>,
    /// The subscriber link is down (events from other nodes may be missed).
    degraded: AtomicBool,
    /// When publishing last failed; publishing skips Redis briefly after a failure.
    last_publish_failure: Mutex<Option<Instant>>,
}

/// A hub shared by every node of a deployment.
#[derive(Clone)]
pub struct RedisHub {
    inner: Arc<Inner>,
}

impl RedisHub {
    /// Start the publisher and subscriber tasks on the current runtime.
    /// A panic in either task is logged and counted in `panics`.
    pub fn start(cluster: Cluster, panics: &crate::tasks::Panics) -> Self {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (outgoing, outgoing_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            local: LocalHub::new(),
            cluster,
            wanted: Mutex::new(HashSet::new()),
            commands,
            outgoing,
            degraded: AtomicBool::new(true),
            last_publish_failure: Mutex::new(None),
        });
        panics.spawn("redis hub publisher", publisher(inner.clone(), outgoing_rx));
        panics.spawn(
            "redis hub subscriber",
            subscriber(inner.clone(), command_rx),
        );
        RedisHub { inner }
    }

    /// Whether the subscriber link to Redis is up.
    pub fn connected(&self) -> bool {
        !self.inner.degraded.load(Ordering::Relaxed)
    }
}

fn channel(cluster: &Cluster, conversation_id: &str) -> String {
    cluster.key(&["conv", conversation_id])
}

/// The channel every node listens on for visitors whose sockets are to be closed
/// (the payload is the visitor id).
fn close_channel(cluster: &Cluster) -> String {
    cluster.key(&["ctl", "close_visitor"])
}

/// Tell every node (through Redis) to close the visitor's sockets. `false` when Redis
/// did not take it within two seconds.
pub async fn announce_visitor_closed(cluster: &Cluster, visitor_id: &str) -> bool {
    let mut conn = cluster.conn();
    let sent = tokio::time::timeout(
        Duration::from_secs(2),
        redis::cmd("PUBLISH")
            .arg(close_channel(cluster))
            .arg(visitor_id)
            .query_async::<i64>(&mut conn),
    )
    .await;
    matches!(sent, Ok(Ok(_)))
}

impl Hub for RedisHub {
    fn publish(&self, conversation_id: &str, event: HubEvent) {
        // Ordered per node: one publisher task sends everything in order.
        if self
            .inner
            .outgoing
            .send((conversation_id.to_string(), event.clone()))
            .is_err()
        {
            self.inner.local.publish(conversation_id, event);
        }
    }

    fn subscribe(&self, conversation_id: &str, capacity: usize) -> Subscription {
        let sub = self.inner.local.subscribe(conversation_id, capacity);
        let new = self
            .inner
            .wanted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(conversation_id.to_string());
        if new {
            let _ = self
                .inner
                .commands
                .send(Command::Subscribe(conversation_id.to_string()));
        }
        sub
    }

    fn subscriber_count(&self) -> usize {
        self.inner.local.subscriber_count()
    }

    fn close_visitor(&self, visitor_id: &str) -> BoxFuture<'static, ()> {
        // This node at once (even with Redis down), the others through Redis.
        self.inner.local.close_visitor_here(visitor_id);
        let inner = self.inner.clone();
        let visitor_id = visitor_id.to_string();
        Box::pin(async move {
            if !announce_visitor_closed(&inner.cluster, &visitor_id).await {
                tracing::warn!(
                    "redis did not take a visitor's socket closure; sockets on other nodes stay open until they end"
                );
            }
        })
    }

    fn set_visitor_closer(&self, closer: VisitorCloser) {
        self.inner.local.set_visitor_closer(closer);
    }
}

/// Events one pipeline of the publisher carries at most.
const PUBLISH_BATCH: usize = 256;

async fn publisher(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<(String, HubEvent)>) {
    let mut conn = inner.cluster.conn();
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    // Whatever is waiting goes in one pipeline, in order (one round trip for the events
    // of a group commit, not one each); nothing waits for more to come.
    while rx.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let recently_failed = inner
            .last_publish_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() < Duration::from_millis(500));
        if recently_failed {
            // Redis is down: this node's sockets still get them; others resync later.
            for (conversation_id, event) in batch.drain(..) {
                inner.local.publish(&conversation_id, event);
            }
            continue;
        }
        let mut pipe = redis::pipe();
        for (conversation_id, event) in &batch {
            let payload = serde_json::to_string(&Envelope {
                s: event.seq,
                f: event.frame.to_string(),
            })
            .unwrap_or_default();
            pipe.cmd("PUBLISH")
                .arg(channel(&inner.cluster, conversation_id))
                .arg(payload)
                .ignore();
        }
        let sent = pipe.query_async::<()>(&mut conn).await;
        if sent.is_err() {
            *inner
                .last_publish_failure
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            inner.degraded.store(true, Ordering::Relaxed);
            tracing::warn!(
                "redis publish failed; delivering on this node only until Redis is back"
            );
            // Some may have gone out before the failure: a socket that gets one twice
            // drops the second by its seq.
            for (conversation_id, event) in batch.drain(..) {
                inner.local.publish(&conversation_id, event);
            }
        }
        batch.clear();
    }
}

async fn subscriber(inner: Arc<Inner>, mut commands: mpsc::UnboundedReceiver<Command>) {
    let prefix = inner.cluster.key(&["conv", ""]);
    let mut backoff = Duration::from_millis(100);
    let mut connected_before = false;
    let mut cleanup = tokio::time::interval(Duration::from_secs(30));
    loop {
        let pubsub = match tokio::time::timeout(
            Duration::from_secs(2),
            inner.cluster.client().get_async_pubsub(),
        )
        .await
        {
            Ok(Ok(p)) => p,
            _ => {
                inner.degraded.store(true, Ordering::Relaxed);
                // Drain commands meanwhile: `wanted` already remembers them.
                while commands.try_recv().is_ok() {}
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        let wanted: Vec<String> = inner
            .wanted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        let closes = close_channel(&inner.cluster);
        let mut ok = sink.subscribe(&closes).await.is_ok();
        for id in &wanted {
            if !ok || sink.subscribe(channel(&inner.cluster, id)).await.is_err() {
                ok = false;
                break;
            }
        }
        if !ok {
            continue;
        }
        backoff = Duration::from_millis(100);
        let was_degraded = inner.degraded.swap(false, Ordering::Relaxed);
        *inner
            .last_publish_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        if connected_before && was_degraded {
            tracing::info!("redis link back; sockets catch up from the database");
        }
        if connected_before || was_degraded {
            inner.local.resync_all();
        }
        connected_before = true;
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(msg) = msg else { break };
                    if msg.get_channel_name() == closes {
                        if let Ok(visitor_id) = msg.get_payload::<String>() {
                            inner.local.close_visitor_here(&visitor_id);
                        }
                        continue;
                    }
                    let Some(id) = msg.get_channel_name().strip_prefix(&prefix).map(str::to_string) else { continue };
                    let Ok(payload) = msg.get_payload::<String>() else { continue };
                    let Ok(env) = serde_json::from_str::<Envelope>(&payload) else { continue };
                    inner.local.publish(&id, HubEvent { seq: env.s, frame: env.f.into() });
                }
                cmd = commands.recv() => match cmd {
                    Some(Command::Subscribe(id)) => {
                        if sink.subscribe(channel(&inner.cluster, &id)).await.is_err() {
                            break;
                        }
                        // Anything published before the subscription took effect is read
                        // from the database.
                        inner.local.resync_one(&id);
                    }
                    None => return,
                },
                _ = cleanup.tick() => {
                    let live: HashSet<String> = inner.local.conversations().into_iter().collect();
                    let idle: Vec<String> = {
                        let mut wanted = inner.wanted.lock().unwrap_or_else(|p| p.into_inner());
                        let idle: Vec<String> = wanted.iter().filter(|id| !live.contains(*id)).cloned().collect();
                        for id in &idle {
                            wanted.remove(id);
                        }
                        idle
                    };
                    for id in idle {
                        let _ = sink.unsubscribe(channel(&inner.cluster, &id)).await;
                    }
                }
            }
        }
        inner.degraded.store(true, Ordering::Relaxed);
        tracing::warn!("redis subscriber link lost; reconnecting");
    }
}
