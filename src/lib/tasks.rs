//! Panics are never silent: every task the application spawns, and every request
//! handler, runs under a watch that logs a panic (with where it happened) and counts it.
//! The count is `chatorical_panics_total` in `/metrics`, and the test harness fails a
//! test whose application panicked even when the panic was caught and the request
//! answered 500.

use std::{
    any::Any,
    future::Future,
    panic::AssertUnwindSafe,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use futures_util::FutureExt;

/// How many panics this application has caught, shared by everything it spawned.
#[derive(Debug, Clone, Default)]
pub struct Panics(Arc<AtomicU64>);

impl Panics {
    /// Panics caught so far.
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Record a panic of `task` with its payload.
    pub fn record(&self, task: &str, payload: &(dyn Any + Send)) {
        self.0.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("chatorical_panics_total").increment(1);
        tracing::error!(task, panic = %message(payload), "task panicked");
    }

    /// Record a task's `JoinError` if the task panicked; `true` if it did.
    pub fn check_join(&self, task: &str, result: &Result<(), tokio::task::JoinError>) -> bool {
        match result {
            Err(e) if e.is_panic() => {
                self.0.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("chatorical_panics_total").increment(1);
                tracing::error!(task, "task panicked");
                true
            }
            _ => false,
        }
    }

    /// `fut`, with a panic inside it caught, logged and counted instead of unwinding
    /// into the runtime (where it would only end the task, unseen).
    pub fn watch<F>(&self, task: &'static str, fut: F) -> impl Future<Output = ()> + Send + use<F>
    where
        F: Future<Output = ()> + Send,
    {
        let me = self.clone();
        // A combinator rather than an `async` block: the block would keep `fut` twice
        // (the captured argument and the future it runs), doubling the size of every
        // watched task — every open socket among them.
        AssertUnwindSafe(fut).catch_unwind().map(move |result| {
            if let Err(payload) = result {
                me.record(task, payload.as_ref());
            }
        })
    }

    /// Spawn `fut` on the current runtime under [`Panics::watch`].
    pub fn spawn<F>(&self, task: &'static str, fut: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        tokio::spawn(self.watch(task, fut))
    }
}

/// The text of a panic payload (`panic!` with a message or a formatted string).
pub fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_counted_not_lost() {
        let panics = Panics::default();
        panics
            .spawn("boom", async { panic!("deliberate") })
            .await
            .expect("the watch itself does not panic");
        panics.spawn("fine", async {}).await.expect("join");
        assert_eq!(panics.count(), 1);
        let joined = tokio::spawn(async { panic!("unwatched") }).await;
        assert!(panics.check_join("unwatched", &joined));
        assert_eq!(panics.count(), 2);
    }

    #[test]
    fn watching_a_future_adds_only_a_few_words_to_it() {
        let inner = async {
            let buf = [0u8; 1024];
            tokio::task::yield_now().await;
            std::hint::black_box(&buf);
        };
        let inner_size = std::mem::size_of_val(&inner);
        let watched = Panics::default().watch("sized", inner);
        let size = std::mem::size_of_val(&watched);
        assert!(
            size <= inner_size + 64,
            "watched future is {size} bytes around a {inner_size}-byte future"
        );
    }
}
