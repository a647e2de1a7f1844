//! Caps on the widget sockets open in this process: per visitor (a new socket beyond
//! the cap closes the visitor's oldest) and per client address (a socket beyond the cap
//! is refused before the upgrade). The same registry closes all of a visitor's sockets
//! when the visitor is erased.
//!
//! Counted per process, not across nodes: behind a load balancer with N nodes a
//! visitor or an address can hold up to N times a cap. A count lives exactly as long as
//! its socket (a [`SocketSlot`] gives it back when dropped), so nothing leaks when a
//! socket ends in any way, and a node that dies takes its counts with it.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    net::{IpAddr, Ipv6Addr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio_util::sync::CancellationToken;

use crate::error::{Error, ErrorCode, Result};

#[derive(Default)]
struct Open {
    /// Each visitor's sockets, oldest first: (slot id, what closes it).
    visitors: HashMap<String, VecDeque<(u64, CancellationToken)>>,
    /// Sockets per client address (IPv6: per /64).
    addresses: HashMap<IpAddr, usize>,
    /// Sockets closed because their visitor was erased (until their slot is dropped).
    erased: HashSet<u64>,
}

/// The open sockets of this process, by visitor and by client address.
pub struct SocketCaps {
    per_visitor: usize,
    per_ip: usize,
    open: Mutex<Open>,
    next_id: AtomicU64,
    evicted: AtomicU64,
    refused: AtomicU64,
}

/// One socket's place in the counts; dropping it gives the place back.
pub struct SocketSlot {
    caps: Arc<SocketCaps>,
    id: u64,
    address: Option<IpAddr>,
    visitor: Option<String>,
}

impl SocketCaps {
    /// Caps of `per_visitor` sockets per visitor (at least 1) and `per_ip` per client
    /// address (0: none).
    pub fn new(per_visitor: usize, per_ip: usize) -> Self {
        SocketCaps {
            per_visitor: per_visitor.max(1),
            per_ip,
            open: Mutex::new(Open::default()),
            next_id: AtomicU64::new(1),
            evicted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Sockets closed because their visitor opened more than the cap.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Upgrades refused because their address had the cap open.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Close every socket of the visitor in this process (their data was erased): each
    /// ends with 1008. Returns how many there were.
    pub fn close_visitor(&self, visitor_id: &str) -> usize {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let Some(sockets) = open.visitors.remove(visitor_id) else {
            return 0;
        };
        let n = sockets.len();
        for (id, close) in sockets {
            open.erased.insert(id);
            close.cancel();
        }
        n
    }

    /// Sockets open from `ip` (or its /64) in this process.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.addresses.get(&address_key(ip)).copied().unwrap_or(0)
    }

    /// Take a place for a socket from `ip`; 429 `too_many_sockets` when the address
    /// has the cap open already.
    pub fn reserve(self: &Arc<Self>, ip: IpAddr) -> Result<SocketSlot> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut address = None;
        if self.per_ip > 0 {
            let key = address_key(ip);
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            let n = open.addresses.entry(key).or_insert(0);
            if *n >= self.per_ip {
                drop(open);
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Err(Error::new(
                    ErrorCode::TooManySockets,
                    "too many sockets open from this address; close some first",
                )
                .with_details(serde_json::json!({ "max_sockets_per_ip": self.per_ip })));
            }
            *n += 1;
            address = Some(key);
        }
        Ok(SocketSlot {
            caps: self.clone(),
            id,
            address,
            visitor: None,
        })
    }
}

impl SocketSlot {
    /// Count the socket against `visitor_id`; `close` is what ends it. When the visitor
    /// now has more than the cap open, the oldest of them are closed (their `close`
    /// is cancelled) and no longer counted.
    pub fn join_visitor(&mut self, visitor_id: &str, close: CancellationToken) {
        let caps = &self.caps;
        let mut open = caps.open.lock().unwrap_or_else(|p| p.into_inner());
        let sockets = open.visitors.entry(visitor_id.to_string()).or_default();
        sockets.push_back((self.id, close));
        while sockets.len() > caps.per_visitor {
            if let Some((_, oldest)) = sockets.pop_front() {
                oldest.cancel();
                caps.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.visitor = Some(visitor_id.to_string());
    }

    /// Whether this socket was closed because its visitor was erased
    /// ([`SocketCaps::close_visitor`]).
    pub fn closed_for_erasure(&self) -> bool {
        let open = self.caps.open.lock().unwrap_or_else(|p| p.into_inner());
        open.erased.contains(&self.id)
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut open = self.caps.open.lock().unwrap_or_else(|p| p.into_inner());
        open.erased.remove(&self.id);
        if let Some(v) = self.visitor.take()
            && let Some(sockets) = open.visitors.get_mut(&v)
        {
            sockets.retain(|(id, _)| *id != self.id);
            if sockets.is_empty() {
                open.visitors.remove(&v);
            }
        }
        if let Some(a) = self.address
            && let Some(n) = open.addresses.get_mut(&a)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.addresses.remove(&a);
            }
        }
    }
}

/// The address a cap counts: IPv4 as is, IPv6 by its /64 (one subscriber's network).
fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn the_oldest_socket_of_a_visitor_is_closed_beyond_the_cap() {
        let caps = Arc::new(SocketCaps::new(2, 0));
        let tokens: Vec<CancellationToken> = (0..3).map(|_| CancellationToken::new()).collect();
        let mut slots = Vec::new();
        for t in &tokens {
            let mut s = caps.reserve(ip("192.0.2.1")).expect("no address cap");
            s.join_visitor("vis_1", t.clone());
            slots.push(s);
        }
        assert!(tokens[0].is_cancelled(), "oldest closed");
        assert!(!tokens[1].is_cancelled() && !tokens[2].is_cancelled());
        assert_eq!(caps.evicted(), 1);
        // Another visitor is counted apart.
        let other = CancellationToken::new();
        let mut s = caps.reserve(ip("192.0.2.1")).expect("slot");
        s.join_visitor("vis_2", other.clone());
        assert!(!other.is_cancelled());
        // A closed socket frees its place: the next one evicts nobody.
        slots.remove(2);
        let mut s2 = caps.reserve(ip("192.0.2.1")).expect("slot");
        s2.join_visitor("vis_1", CancellationToken::new());
        assert_eq!(caps.evicted(), 1);
    }

    #[test]
    fn closing_a_visitor_closes_all_their_sockets_and_only_theirs() {
        let caps = Arc::new(SocketCaps::new(5, 0));
        let mine: Vec<CancellationToken> = (0..2).map(|_| CancellationToken::new()).collect();
        let mut slots = Vec::new();
        for t in &mine {
            let mut s = caps.reserve(ip("192.0.2.1")).expect("slot");
            s.join_visitor("vis_1", t.clone());
            slots.push(s);
        }
        let theirs = CancellationToken::new();
        let mut other = caps.reserve(ip("192.0.2.1")).expect("slot");
        other.join_visitor("vis_2", theirs.clone());
        assert_eq!(caps.close_visitor("vis_1"), 2);
        assert!(mine.iter().all(CancellationToken::is_cancelled));
        assert!(slots.iter().all(SocketSlot::closed_for_erasure));
        assert!(!theirs.is_cancelled() && !other.closed_for_erasure());
        assert_eq!(caps.evicted(), 0, "not counted as evictions");
        assert_eq!(caps.close_visitor("vis_1"), 0, "nothing left to close");
        drop(slots);
        assert!(caps.open.lock().expect("lock").erased.is_empty());
    }

    #[test]
    fn addresses_are_capped_and_given_back() {
        let caps = Arc::new(SocketCaps::new(5, 2));
        let a = caps.reserve(ip("198.51.100.7")).expect("1");
        let _b = caps.reserve(ip("198.51.100.7")).expect("2");
        let e = caps.reserve(ip("198.51.100.7")).err().expect("3rd refused");
        assert_eq!(e.code, ErrorCode::TooManySockets);
        assert_eq!(caps.refused(), 1);
        assert!(
            caps.reserve(ip("198.51.100.8")).is_ok(),
            "other addresses unaffected"
        );
        drop(a);
        assert_eq!(caps.open_from(ip("198.51.100.7")), 1);
        assert!(
            caps.reserve(ip("198.51.100.7")).is_ok(),
            "a place came back"
        );
    }

    #[test]
    fn ipv6_counts_per_64() {
        let caps = Arc::new(SocketCaps::new(5, 1));
        let _a = caps.reserve(ip("2001:db8:1:2::1")).expect("1");
        assert!(
            caps.reserve(ip("2001:db8:1:2:ffff::9")).is_err(),
            "same /64"
        );
        assert!(caps.reserve(ip("2001:db8:1:3::1")).is_ok(), "another /64");
    }
}
