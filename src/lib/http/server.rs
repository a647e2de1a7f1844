//! The HTTP server: an accept loop of our own over hyper's HTTP/1 connections.
//!
//! - A connection must deliver each request head within `server.header_read_timeout_secs`
//!   (counted from accept, or from the end of the previous response on a keep-alive
//!   connection); a slower one (slow-loris) or an idle one is closed.
//! - Connections are capped per process and per client IP (the TCP peer; IPv6 by /64,
//!   trusted proxies exempt): one over the cap is closed right after accept, so file
//!   descriptors are never exhausted by clients. A WebSocket keeps its connection's slot
//!   until the socket closes, since the upgraded stream carries it.
//! - An accept error (EMFILE: out of file descriptors) backs off from 10 ms up to 1 s and
//!   is logged at most every 10 s, instead of spinning.
//! - Every request carries `ConnectInfo<SocketAddr>` (the TCP peer) for `client_ip.rs`.
//! - On shutdown the loop stops accepting, idle connections close, in-flight requests
//!   finish; the caller bounds the wait (`server.shutdown_grace_secs`).
//!
//! Counts (open, rejected, timed out, accept errors) are in [`ConnStats`], exported by
//! `/metrics`.

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    pin::{Pin, pin},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{Router, extract::ConnectInfo};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::watch,
};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::domain::Cidr;

/// Connection counters of one process (both listeners).
#[derive(Debug, Default)]
pub struct ConnStats {
    accepted: AtomicU64,
    open: AtomicU64,
    limit: AtomicU64,
    rejected_max: AtomicU64,
    rejected_per_ip: AtomicU64,
    timed_out_head: AtomicU64,
    timed_out_idle: AtomicU64,
    accept_out_of_fds: AtomicU64,
    accept_other: AtomicU64,
}

/// A copy of [`ConnStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnSnapshot {
    /// Connections accepted under the caps since the process started.
    pub accepted: u64,
    /// Connections open now (HTTP and WebSocket).
    pub open: u64,
    /// The effective process-wide cap of the main listener.
    pub limit: u64,
    /// Closed right after accept: the process was at `server.max_connections`.
    pub rejected_max: u64,
    /// Closed right after accept: the client IP was at `server.max_connections_per_ip`.
    pub rejected_per_ip: u64,
    /// Closed because a request head did not arrive in time after some of it had
    /// (slow headers).
    pub timed_out_head: u64,
    /// Closed because no request came in time on a connection with nothing pending
    /// (a new or keep-alive connection left idle).
    pub timed_out_idle: u64,
    /// `accept` failed for lack of file descriptors (EMFILE, ENFILE).
    pub accept_out_of_fds: u64,
    /// `accept` failed for another reason.
    pub accept_other: u64,
}

impl ConnStats {
    /// The counters now.
    pub fn snapshot(&self) -> ConnSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ConnSnapshot {
            accepted: get(&self.accepted),
            open: get(&self.open),
            limit: get(&self.limit),
            rejected_max: get(&self.rejected_max),
            rejected_per_ip: get(&self.rejected_per_ip),
            timed_out_head: get(&self.timed_out_head),
            timed_out_idle: get(&self.timed_out_idle),
            accept_out_of_fds: get(&self.accept_out_of_fds),
            accept_other: get(&self.accept_other),
        }
    }
}

/// The process-wide connection cap: `configured`, but at most the open-files limit
/// `nofile` minus `reserved` descriptors (never under half of `nofile`, so a low limit
/// still serves). `None`: no limit known (or unlimited).
pub(crate) fn effective_max_connections(
    configured: usize,
    reserved: u64,
    nofile: Option<u64>,
) -> usize {
    let Some(nofile) = nofile else {
        return configured;
    };
    let room = nofile.saturating_sub(reserved).max(nofile / 2).max(1);
    configured.min(usize::try_from(room).unwrap_or(usize::MAX))
}

/// The soft open-files limit of this process (`None` when unlimited or unknown).
pub(crate) fn open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Why a connection was closed right after accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// The process is at its cap.
    MaxConnections,
    /// The client IP is at its cap.
    MaxConnectionsPerIp,
}

/// Caps on open connections, for one listener.
#[derive(Debug)]
pub(crate) struct ConnLimits {
    max: usize,
    per_ip: usize,
    exempt: Vec<Cidr>,
    counts: Mutex<Counts>,
    stats: Arc<ConnStats>,
}

#[derive(Debug, Default)]
struct Counts {
    open: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// The key a client IP is counted under: IPv4 as is (also when mapped into IPv6),
/// IPv6 by its /64 (one subscriber usually holds a whole /64).
fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        v4 => v4,
    }
}

impl ConnLimits {
    /// At most `max` connections, `per_ip` from one client IP; peers in `exempt` are
    /// only counted against `max`.
    pub(crate) fn new(
        max: usize,
        per_ip: usize,
        exempt: Vec<Cidr>,
        stats: Arc<ConnStats>,
    ) -> Arc<Self> {
        Arc::new(ConnLimits {
            max,
            per_ip,
            exempt,
            counts: Mutex::new(Counts::default()),
            stats,
        })
    }

    /// Record this cap as the process's connection limit (for `/metrics`).
    pub(crate) fn publish_limit(&self) {
        self.stats.limit.store(self.max as u64, Ordering::Relaxed);
    }

    /// Take a slot for a connection from `ip`, or say why not (and count it).
    pub(crate) fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Rejected> {
        let key = (!self.exempt.iter().any(|c| c.contains(ip))).then(|| ip_key(ip));
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.open >= self.max {
            drop(counts);
            self.stats.rejected_max.fetch_add(1, Ordering::Relaxed);
            return Err(Rejected::MaxConnections);
        }
        if let Some(key) = key {
            let n = counts.by_ip.entry(key).or_insert(0);
            if *n >= self.per_ip {
                drop(counts);
                self.stats.rejected_per_ip.fetch_add(1, Ordering::Relaxed);
                return Err(Rejected::MaxConnectionsPerIp);
            }
            *n += 1;
        }
        counts.open += 1;
        drop(counts);
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            limits: self.clone(),
            key,
        })
    }
}

/// One connection's place under the caps; given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    limits: Arc<ConnLimits>,
    key: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.limits.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.open = counts.open.saturating_sub(1);
        if let Some(key) = self.key
            && let Some(n) = counts.by_ip.get_mut(&key)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.by_ip.remove(&key);
            }
        }
        drop(counts);
        self.limits.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A client's TCP stream with its slot (kept as long as the stream, also after a
/// WebSocket upgrade), noting whether request bytes arrived since the last response.
struct Conn {
    stream: TcpStream,
    pending: Arc<AtomicBool>,
    _slot: Slot,
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.pending.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.pending.store(false, Ordering::Relaxed);
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.pending.store(false, Ordering::Relaxed);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Backoff and log throttling for failed accepts.
struct AcceptErrors {
    delay: Duration,
    logged_at: Option<Instant>,
    suppressed: u64,
}

impl AcceptErrors {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);
    const LOG_EVERY: Duration = Duration::from_secs(10);

    fn new() -> Self {
        AcceptErrors {
            delay: Self::FIRST,
            logged_at: None,
            suppressed: 0,
        }
    }

    fn accepted(&mut self) {
        self.delay = Self::FIRST;
    }

    /// Count and (now and then) log the error; wait before the next accept, unless it
    /// was one client's aborted handshake.
    async fn failed(&mut self, e: io::Error, stats: &ConnStats, stop: &CancellationToken) {
        if matches!(
            e.kind(),
            io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
        ) {
            return;
        }
        let out_of_fds = out_of_fds(&e);
        if out_of_fds {
            stats.accept_out_of_fds.fetch_add(1, Ordering::Relaxed);
        } else {
            stats.accept_other.fetch_add(1, Ordering::Relaxed);
        }
        if self
            .logged_at
            .is_none_or(|t| t.elapsed() >= Self::LOG_EVERY)
        {
            tracing::warn!(
                error = %e,
                out_of_file_descriptors = out_of_fds,
                suppressed = self.suppressed,
                "accept failed; backing off (logged at most every 10 s)"
            );
            self.logged_at = Some(Instant::now());
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(self.delay) => {}
        }
        self.delay = (self.delay * 2).min(Self::MAX);
    }
}

fn out_of_fds(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        use rustix::io::Errno;
        let raw = e.raw_os_error();
        raw == Some(Errno::MFILE.raw_os_error()) || raw == Some(Errno::NFILE.raw_os_error())
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

/// Serve `router` on `listener` until `stop` is cancelled, then stop accepting and
/// return once every connection has finished (in-flight requests complete; idle
/// keep-alive connections close at once).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Arc<ConnLimits>,
    header_read_timeout: Duration,
    stop: CancellationToken,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let builder = Arc::new(builder);
    // Every connection task holds a receiver; `closed()` resolves when all are gone.
    let (drained_tx, drained_rx) = watch::channel(());
    let mut errors = AcceptErrors::new();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => {
                errors.accepted();
                pair
            }
            Err(e) => {
                errors.failed(e, &limits.stats, &stop).await;
                continue;
            }
        };
        let slot = match limits.acquire(peer.ip()) {
            Ok(slot) => slot,
            // Closed at once: no task, no buffers, the descriptor back right away.
            Err(_) => continue,
        };
        let pending = Arc::new(AtomicBool::new(false));
        let conn = Conn {
            stream,
            pending: pending.clone(),
            _slot: slot,
        };
        tokio::spawn(serve_connection(
            conn,
            peer,
            router.clone(),
            builder.clone(),
            limits.stats.clone(),
            stop.clone(),
            drained_rx.clone(),
        ));
    }
    drop(listener);
    drop(drained_rx);
    drained_tx.closed().await;
}

async fn serve_connection(
    conn: Conn,
    peer: SocketAddr,
    router: Router,
    builder: Arc<http1::Builder>,
    stats: Arc<ConnStats>,
    stop: CancellationToken,
    _drained: watch::Receiver<()>,
) {
    let pending = conn.pending.clone();
    let service = service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(req)
    });
    let mut connection = pin!(
        builder
            .serve_connection(TokioIo::new(conn), service)
            .with_upgrades()
    );
    let mut stopping = false;
    let result = loop {
        tokio::select! {
            result = connection.as_mut() => break result,
            _ = stop.cancelled(), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            if pending.load(Ordering::Relaxed) {
                stats.timed_out_head.fetch_add(1, Ordering::Relaxed);
            } else {
                stats.timed_out_idle.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_the_reserve_free_but_never_less_than_half_the_limit() {
        assert_eq!(effective_max_connections(100_000, 256, None), 100_000);
        assert_eq!(
            effective_max_connections(100_000, 256, Some(262_144)),
            100_000
        );
        assert_eq!(effective_max_connections(100_000, 256, Some(1024)), 768);
        assert_eq!(effective_max_connections(100_000, 256, Some(256)), 128);
        assert_eq!(effective_max_connections(100, 256, Some(1024)), 100);
        assert_eq!(effective_max_connections(100_000, 0, Some(1)), 1);
    }

    #[test]
    fn per_ip_counts_ipv6_by_64_and_skips_exempt_peers() {
        let stats = Arc::new(ConnStats::default());
        let proxy: Cidr = "10.0.0.1".parse().expect("cidr");
        let limits = ConnLimits::new(4, 1, vec![proxy], stats.clone());
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let held = limits.acquire(a).expect("first from the /64");
        assert_eq!(
            limits.acquire(b).expect_err("same /64"),
            Rejected::MaxConnectionsPerIp
        );
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        let v4: IpAddr = "192.0.2.7".parse().expect("ip");
        let _m = limits.acquire(mapped).expect("v4 client");
        assert_eq!(
            limits.acquire(v4).expect_err("the same v4 client"),
            Rejected::MaxConnectionsPerIp
        );
        let p: IpAddr = "10.0.0.1".parse().expect("ip");
        let _p1 = limits.acquire(p).expect("proxy 1");
        let _p2 = limits.acquire(p).expect("proxy 2");
        assert_eq!(
            limits.acquire(p).expect_err("process cap"),
            Rejected::MaxConnections
        );
        drop(held);
        let _again = limits.acquire(b).expect("the /64 slot came back");
        let s = stats.snapshot();
        assert_eq!(
            (s.open, s.rejected_per_ip, s.rejected_max),
            (4, 2, 1),
            "{s:?}"
        );
    }
}
