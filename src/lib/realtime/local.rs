//! The in-process hub (embedded default and single-node deployments).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use futures_util::future::BoxFuture;

use super::{
    Delivery, Hub, HubEvent, Subscription, VisitorCloser,
    queue::{QueueSender, SendError, queue},
};

struct Subscriber {
    id: u64,
    tx: QueueSender,
}

#[derive(Default)]
struct Inner {
    topics: Mutex<HashMap<String, Vec<Subscriber>>>,
    next_id: AtomicU64,
    count: AtomicU64,
    closer: Mutex<Option<VisitorCloser>>,
}

/// Fan-out within one process.
#[derive(Clone, Default)]
pub struct LocalHub {
    inner: Arc<Inner>,
}

impl LocalHub {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    fn deliver(&self, conversation_id: &str, delivery: Delivery) {
        let mut topics = self.inner.topics.lock().unwrap_or_else(|p| p.into_inner());
        let Some(subs) = topics.get_mut(conversation_id) else {
            return;
        };
        let before = subs.len();
        // A subscriber too slow to keep up (its queue marks it lagged) or gone is
        // dropped: its socket task sees the end of its queue and closes.
        subs.retain(|s| match s.tx.try_send(delivery.clone()) {
            Ok(()) => true,
            Err(SendError::Full | SendError::Closed) => false,
        });
        let removed = before - subs.len();
        if removed > 0 {
            self.inner
                .count
                .fetch_sub(removed as u64, Ordering::Relaxed);
        }
        if subs.is_empty() {
            topics.remove(conversation_id);
        }
    }

    /// Tell every subscriber on this node to catch up from the database.
    pub fn resync_all(&self) {
        let ids: Vec<String> = self.conversations();
        for id in ids {
            self.deliver(&id, Delivery::Resync);
        }
    }

    /// Tell one conversation's subscribers on this node to catch up from the database.
    pub fn resync_one(&self, conversation_id: &str) {
        self.deliver(conversation_id, Delivery::Resync);
    }

    /// Close the visitor's sockets on this node (through the closer, when one is set).
    pub fn close_visitor_here(&self, visitor_id: &str) {
        let closer = self
            .inner
            .closer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(close) = closer {
            close(visitor_id);
        }
    }

    /// Conversations with at least one subscriber on this node.
    pub fn conversations(&self) -> Vec<String> {
        self.inner
            .topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }
}

struct Guard {
    inner: Arc<Inner>,
    topic: String,
    id: u64,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut topics = self.inner.topics.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(subs) = topics.get_mut(&self.topic) {
            let before = subs.len();
            subs.retain(|s| s.id != self.id);
            if subs.len() < before {
                self.inner.count.fetch_sub(1, Ordering::Relaxed);
            }
            if subs.is_empty() {
                topics.remove(&self.topic);
            }
        }
    }
}

impl Hub for LocalHub {
    fn publish(&self, conversation_id: &str, event: HubEvent) {
        self.deliver(conversation_id, Delivery::Event(event));
    }

    fn subscribe(&self, conversation_id: &str, capacity: usize) -> Subscription {
        let (tx, rx) = queue(capacity);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.inner
            .topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(conversation_id.to_string())
            .or_default()
            .push(Subscriber { id, tx });
        self.inner.count.fetch_add(1, Ordering::Relaxed);
        let guard = Guard {
            inner: self.inner.clone(),
            topic: conversation_id.to_string(),
            id,
        };
        Subscription::new(rx, Box::new(guard))
    }

    fn subscriber_count(&self) -> usize {
        self.inner.count.load(Ordering::Relaxed) as usize
    }

    fn close_visitor(&self, visitor_id: &str) -> BoxFuture<'static, ()> {
        self.close_visitor_here(visitor_id);
        Box::pin(std::future::ready(()))
    }

    fn set_visitor_closer(&self, closer: VisitorCloser) {
        *self.inner.closer.lock().unwrap_or_else(|p| p.into_inner()) = Some(closer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slow_subscriber_is_dropped_while_others_keep_receiving() {
        let hub = LocalHub::new();
        let slow = hub.subscribe("cv_1", 4);
        let mut fast = hub.subscribe("cv_1", 4);
        for i in 0..20 {
            hub.publish("cv_1", HubEvent::other(Arc::from(format!("{i}"))));
            let got = fast.rx.recv().await.expect("fast keeps receiving");
            assert_eq!(
                got,
                Delivery::Event(HubEvent::other(Arc::from(format!("{i}"))))
            );
        }
        assert!(slow.lagged(), "slow subscriber marked lagged");
        assert!(!fast.lagged());
        assert_eq!(hub.subscriber_count(), 1);
    }

    #[tokio::test]
    async fn dropping_a_subscription_unsubscribes() {
        let hub = LocalHub::new();
        let a = hub.subscribe("cv_1", 4);
        let _b = hub.subscribe("cv_2", 4);
        assert_eq!(hub.subscriber_count(), 2);
        drop(a);
        assert_eq!(hub.subscriber_count(), 1);
    }

    #[tokio::test]
    async fn closing_a_visitor_reaches_the_closer() {
        let hub = LocalHub::new();
        // No closer yet: nothing to do, nothing fails.
        hub.close_visitor("vis_0").await;
        let closed = Arc::new(Mutex::new(Vec::new()));
        let seen = closed.clone();
        hub.set_visitor_closer(Arc::new(move |id: &str| {
            seen.lock().expect("lock").push(id.to_string());
        }));
        hub.close_visitor("vis_1").await;
        assert_eq!(*closed.lock().expect("lock"), vec!["vis_1".to_string()]);
    }

    #[tokio::test]
    async fn frames_go_only_to_their_conversation() {
        let hub = LocalHub::new();
        let mut a = hub.subscribe("cv_a", 4);
        let mut b = hub.subscribe("cv_b", 4);
        hub.publish("cv_a", HubEvent::other(Arc::from("x")));
        assert_eq!(
            a.rx.recv().await.expect("a"),
            Delivery::Event(HubEvent::other(Arc::from("x")))
        );
        assert!(b.rx.try_recv().is_none());
        hub.resync_all();
        assert_eq!(a.rx.recv().await.expect("a"), Delivery::Resync);
        assert_eq!(b.rx.recv().await.expect("b"), Delivery::Resync);
    }
}
