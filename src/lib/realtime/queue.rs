//! One subscriber's queue of deliveries: bounded, and holding no memory while empty.
//!
//! Every open widget socket has one, and most of them are idle. A tokio `mpsc` channel
//! allocates its first block of slots when it is made (32 slots, a kilobyte per socket
//! here); this queue is one small shared allocation, takes room only while deliveries
//! wait, and gives it back once the socket has taken them.

use std::{
    collections::VecDeque,
    future::poll_fn,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Poll, Waker},
};

use super::Delivery;

/// Why [`QueueSender::try_send`] did not queue a delivery.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SendError {
    /// The queue holds `capacity` deliveries: the subscriber is not keeping up.
    Full,
    /// The receiver is gone.
    Closed,
}

struct State {
    items: VecDeque<Delivery>,
    capacity: usize,
    /// The receiver's task, while it waits for a delivery.
    waker: Option<Waker>,
    /// Set when the sender dropped the subscriber for not keeping up.
    lagged: bool,
    sender_gone: bool,
    receiver_gone: bool,
}

struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A bounded queue of `capacity` deliveries (at least one).
pub(crate) fn queue(capacity: usize) -> (QueueSender, QueueReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            capacity: capacity.max(1),
            waker: None,
            lagged: false,
            sender_gone: false,
            receiver_gone: false,
        }),
    });
    (
        QueueSender {
            shared: shared.clone(),
        },
        QueueReceiver { shared },
    )
}

/// The hub's end. Dropping it ends the receiver's stream once it has taken what waits.
pub(crate) struct QueueSender {
    shared: Arc<Shared>,
}

impl QueueSender {
    /// Queue a delivery without waiting; a full queue marks the subscriber lagged.
    pub(crate) fn try_send(&self, delivery: Delivery) -> Result<(), SendError> {
        let waker = {
            let mut state = self.shared.lock();
            if state.receiver_gone {
                return Err(SendError::Closed);
            }
            if state.items.len() >= state.capacity {
                state.lagged = true;
                return Err(SendError::Full);
            }
            state.items.push_back(delivery);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

impl Drop for QueueSender {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.shared.lock();
            state.sender_gone = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The subscriber's end.
pub struct QueueReceiver {
    shared: Arc<Shared>,
}

impl QueueReceiver {
    /// The next delivery; `None` once the sender is gone and nothing waits.
    pub async fn recv(&mut self) -> Option<Delivery> {
        poll_fn(|cx| {
            let mut state = self.shared.lock();
            if let Some(delivery) = take(&mut state) {
                return Poll::Ready(Some(delivery));
            }
            if state.sender_gone {
                return Poll::Ready(None);
            }
            if !state
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                state.waker = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// The next delivery if one waits.
    pub fn try_recv(&mut self) -> Option<Delivery> {
        take(&mut self.shared.lock())
    }

    /// True once the sender dropped this subscriber for not keeping up.
    pub fn lagged(&self) -> bool {
        self.shared.lock().lagged
    }
}

impl Drop for QueueReceiver {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receiver_gone = true;
        state.waker = None;
        // What waited goes now, not when the hub next writes to this subscriber.
        state.items = VecDeque::new();
    }
}

/// Pop the oldest delivery; an emptied queue gives its room back.
fn take(state: &mut State) -> Option<Delivery> {
    let delivery = state.items.pop_front()?;
    if state.items.is_empty() {
        state.items = VecDeque::new();
    }
    Some(delivery)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::HubEvent;
    use std::time::Duration;

    fn event(i: i64) -> Delivery {
        Delivery::Event(HubEvent {
            seq: Some(i),
            frame: Arc::from(i.to_string()),
        })
    }

    #[tokio::test]
    async fn delivers_in_order_up_to_capacity_then_lags() {
        let (tx, mut rx) = queue(3);
        for i in 1..=3 {
            assert_eq!(tx.try_send(event(i)), Ok(()));
        }
        assert_eq!(tx.try_send(event(4)), Err(SendError::Full));
        assert!(rx.lagged());
        for i in 1..=3 {
            assert_eq!(rx.recv().await, Some(event(i)));
        }
        assert_eq!(rx.try_recv(), None);
    }

    #[tokio::test]
    async fn an_empty_queue_holds_no_room() {
        let (tx, mut rx) = queue(64);
        for i in 0..40 {
            tx.try_send(event(i)).expect("room");
        }
        assert!(rx.shared.lock().items.capacity() >= 40);
        while rx.try_recv().is_some() {}
        assert_eq!(rx.shared.lock().items.capacity(), 0);
        assert!(!rx.lagged());
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_and_ends_after_the_sender() {
        let (tx, mut rx) = queue(4);
        let waiting = tokio::spawn(async move {
            let first = rx.recv().await;
            let second = rx.recv().await;
            let end = rx.recv().await;
            (first, second, end)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.try_send(event(1)).expect("room");
        tx.try_send(Delivery::Resync).expect("room");
        drop(tx);
        let got = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .expect("task");
        assert_eq!(got, (Some(event(1)), Some(Delivery::Resync), None));
    }

    #[tokio::test]
    async fn sending_to_a_dropped_receiver_is_closed() {
        let (tx, rx) = queue(4);
        tx.try_send(event(1)).expect("room");
        drop(rx);
        assert_eq!(tx.try_send(event(2)), Err(SendError::Closed));
    }
}
