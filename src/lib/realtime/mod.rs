//! Realtime fan-out: the [`Hub`] that carries events to sockets, the frames they
//! carry, and the short-lived tokens that open a socket.

mod frames;
mod local;
mod token;

pub use frames::{ClientFrame, ServerFrame};
pub use local::LocalHub;
pub use token::{WsClaims, WsTokenSigner};

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use tokio::sync::mpsc;

/// Carries serialized frames to every socket subscribed to a conversation.
///
/// The database is the source of truth; a hub is only transport. Each subscription
/// has a bounded queue: a subscriber that falls behind is dropped (its
/// [`Subscription::lagged`] turns true), never allowed to slow the others.
pub trait Hub: Send + Sync + 'static {
    /// Deliver `frame` to the conversation's subscribers on every node.
    fn publish(&self, conversation_id: &str, frame: Arc<str>);
    /// Subscribe to a conversation with a queue of `capacity` frames.
    fn subscribe(&self, conversation_id: &str, capacity: usize) -> Subscription;
    /// Number of live subscriptions on this node.
    fn subscriber_count(&self) -> usize;
}

/// A live subscription; dropping it unsubscribes.
pub struct Subscription {
    /// Frames for this subscriber.
    pub rx: mpsc::Receiver<Arc<str>>,
    lagged: Arc<AtomicBool>,
    _guard: Box<dyn Send + Sync>,
}

impl Subscription {
    pub(crate) fn new(
        rx: mpsc::Receiver<Arc<str>>,
        lagged: Arc<AtomicBool>,
        guard: Box<dyn Send + Sync>,
    ) -> Self {
        Subscription {
            rx,
            lagged,
            _guard: guard,
        }
    }

    /// True once the hub dropped this subscriber for not keeping up.
    pub fn lagged(&self) -> bool {
        self.lagged.load(Ordering::Relaxed)
    }
}
