//! Freed heap pages back to the operating system after bursts of connections.
//!
//! glibc's allocator keeps the pages it has freed inside its heaps resident: it gives
//! memory back by itself only from the top of a heap. A burst of widget sockets leaves
//! such pages behind: each handshake allocates its request's buffers, headers and
//! routing state, and frees them once the socket is upgraded, between the few hundred
//! bytes every idle socket keeps: 4–6 MB after an opening burst of thousands of sockets
//! (docs/PERFORMANCE.md, "The heap returned after bursts"). `malloc_trim(0)` walks the
//! heaps and returns every whole free page.
//!
//! It runs once when the server starts serving, and after that when at least
//! [`BURST`] connections have been accepted since it last ran and the accept loop has
//! then been quiet for a tick — so never in the middle of a busy stretch, where the
//! pages would be taken again at once and the walk would hold the heaps' locks while
//! requests wait. Under steady new connections it runs at most every [`MAX_WAIT`].
//! Elsewhere than glibc on Linux it does not run at all.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;

use crate::http::server::ConnStats;

/// Accepted connections after which a trim is worth its walk.
pub(crate) const BURST: u64 = 256;

/// How often the accept counter is looked at.
const TICK: Duration = Duration::from_secs(1);

/// The longest a due trim waits for a quiet tick.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(60);

/// Whether to trim now: `accepted` connections in all, `accepted_last_tick` one tick
/// ago, `accepted_at_trim` when the heap was last trimmed, `since_trim` ago.
pub(crate) fn due(
    accepted: u64,
    accepted_last_tick: u64,
    accepted_at_trim: u64,
    since_trim: Duration,
) -> bool {
    let new = accepted.saturating_sub(accepted_at_trim);
    new >= BURST && (accepted == accepted_last_tick || since_trim >= MAX_WAIT)
}

/// Whether this build's allocator can give free pages back on request (glibc).
const SUPPORTED: bool = cfg!(all(target_os = "linux", target_env = "gnu"));

/// Return the free pages of every heap to the system.
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and is safe to call from any thread at any
    // time; the allocator locks each heap while it walks it.
    unsafe {
        libc::malloc_trim(0);
    }
}

async fn trim_now() {
    let started = Instant::now();
    if tokio::task::spawn_blocking(trim).await.is_ok() {
        metrics::counter!("chatorical_heap_trims_total").increment(1);
        tracing::debug!(
            took_us = started.elapsed().as_micros() as u64,
            "heap trimmed"
        );
    }
}

/// Trim once now, then after each burst of connections counted in `stats`, until `stop`.
/// Returns at once where the allocator cannot trim.
pub(crate) async fn trim_after_bursts(stats: Arc<ConnStats>, stop: CancellationToken) {
    if !SUPPORTED {
        return;
    }
    trim_now().await;
    let mut at_trim = (stats.snapshot().accepted, Instant::now());
    let mut last_tick = at_trim.0;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let accepted = stats.snapshot().accepted;
        if due(accepted, last_tick, at_trim.0, at_trim.1.elapsed()) {
            trim_now().await;
            at_trim = (accepted, Instant::now());
        }
        last_tick = accepted;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn a_burst_is_trimmed_once_it_is_over() {
        // Still arriving: wait.
        assert!(!due(1_000, 900, 0, SEC));
        // Quiet for a tick after a burst: trim.
        assert!(due(1_000, 1_000, 0, SEC));
        // Nothing new since the last trim: nothing to do, however long ago it was.
        assert!(!due(1_000, 1_000, 1_000, MAX_WAIT * 10));
    }

    #[test]
    fn a_few_connections_are_not_a_burst() {
        assert!(!due(BURST - 1, BURST - 1, 0, SEC));
        assert!(due(BURST, BURST, 0, SEC));
        assert!(!due(
            10_000 + BURST - 1,
            10_000 + BURST - 1,
            10_000,
            MAX_WAIT
        ));
    }

    #[test]
    fn steady_arrivals_are_trimmed_at_most_every_max_wait() {
        assert!(!due(5_000, 4_990, 0, MAX_WAIT - SEC));
        assert!(due(5_000, 4_990, 0, MAX_WAIT));
    }
}
