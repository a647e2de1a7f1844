//! Realtime fan-out: the [`Hub`] that carries events to sockets, the frames they
//! carry, and the short-lived tokens that open a socket.
//!
//! Two hubs: [`LocalHub`] (one process) and [`RedisHub`] (many nodes). Either way the
//! database is the source of truth: an event carries the message `seq`, and a socket
//! that sees a gap — or is told to [`Delivery::Resync`] after Redis came back — reads
//! what it missed from the database.

mod frames;
mod local;
mod queue;
mod redis_hub;
pub mod sockets;
mod token;

pub use frames::{ClientFrame, InvalidFrame, ServerFrame};
pub use local::LocalHub;
pub use queue::QueueReceiver;
pub use redis_hub::{RedisHub, announce_visitor_closed};
pub use sockets::{SocketCaps, SocketSlot};
pub use token::{WsClaims, WsTokenSigner};

use std::sync::Arc;

use futures_util::future::BoxFuture;

/// One event for a conversation: a serialized frame, and for new messages their seq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubEvent {
    /// The seq of a new message (`message` frames); `None` for everything else.
    pub seq: Option<i64>,
    /// The JSON frame, serialized once for every socket.
    pub frame: Arc<str>,
}

impl HubEvent {
    /// A frame that is not a new message.
    pub fn other(frame: Arc<str>) -> Self {
        HubEvent { seq: None, frame }
    }
}

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// An event.
    Event(HubEvent),
    /// Events may have been missed (the Redis link was down): read from the database.
    Resync,
}

/// What closing a visitor's sockets means on one node (set by the app: the socket
/// caps' registry of open sockets, see [`SocketCaps::close_visitor`]).
pub type VisitorCloser = Arc<dyn Fn(&str) + Send + Sync>;

/// Carries events to every socket subscribed to a conversation.
///
/// Each subscription has a bounded queue: a subscriber that falls behind is dropped
/// (its [`Subscription::lagged`] turns true), never allowed to slow the others.
pub trait Hub: Send + Sync + 'static {
    /// Deliver `event` to the conversation's subscribers on every node.
    fn publish(&self, conversation_id: &str, event: HubEvent);
    /// Subscribe to a conversation with a queue of `capacity` deliveries.
    fn subscribe(&self, conversation_id: &str, capacity: usize) -> Subscription;
    /// Number of live subscriptions on this node.
    fn subscriber_count(&self) -> usize;
    /// Close every socket of the visitor on every node (their data was erased): each
    /// node hands the id to its [`VisitorCloser`]. Resolves once the announcement is
    /// out (handed to this node's closer, and published to the other nodes).
    fn close_visitor(&self, visitor_id: &str) -> BoxFuture<'static, ()>;
    /// Set what closing a visitor's sockets means on this node.
    fn set_visitor_closer(&self, closer: VisitorCloser);
}

/// A live subscription; dropping it unsubscribes.
pub struct Subscription {
    /// Deliveries for this subscriber.
    pub rx: QueueReceiver,
    _guard: Box<dyn Send + Sync>,
}

impl Subscription {
    pub(crate) fn new(rx: QueueReceiver, guard: Box<dyn Send + Sync>) -> Self {
        Subscription { rx, _guard: guard }
    }

    /// True once the hub dropped this subscriber for not keeping up.
    pub fn lagged(&self) -> bool {
        self.rx.lagged()
    }
}
