//! The client's address (for per-IP rate limits): the TCP peer, or — when the peer is
//! one of `server.trusted_proxies` — the right-most `X-Forwarded-For` address that is
//! not itself a trusted proxy.
//!
//! Each proxy appends the address it received the request from, so the header reads
//! `client, proxy1, proxy2` and everything left of the first hop a trusted proxy wrote
//! may have been made up by the client. Walking from the right and stopping at the
//! first untrusted address takes the last address a trusted proxy vouched for; spoofed
//! entries further left are never read. A header from an untrusted peer is ignored; a
//! malformed entry met on the walk (before an untrusted address is found) means the
//! chain cannot be read, and the peer address is used.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{HeaderMap, request::Parts},
};

use crate::domain::Cidr;
use crate::error::Error;

use super::{AppState, error::ApiError};

/// The client's address, as [`client_ip`] resolves it for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ConnectInfo(peer) = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .copied()
            .ok_or_else(|| Error::internal("the peer address of the connection is unknown"))?;
        Ok(ClientIp(client_ip(
            peer.ip(),
            &parts.headers,
            &state.settings.server.trusted_proxies,
        )))
    }
}

/// The client address of a request from `peer` with these headers.
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted_proxies: &[Cidr]) -> IpAddr {
    let peer = peer.to_canonical();
    let trusted = |ip: IpAddr| trusted_proxies.iter().any(|range| range.contains(ip));
    if !trusted(peer) {
        return peer;
    }
    // Several header lines are one list, in order.
    let hops: Vec<&[u8]> = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b','))
        .collect();
    let mut nearest_proxy = None;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            return peer;
        };
        if !trusted(ip) {
            return ip;
        }
        nearest_proxy = Some(ip);
    }
    // Every hop was a trusted proxy: the left-most is the furthest one seen.
    nearest_proxy.unwrap_or(peer)
}

/// One `X-Forwarded-For` entry: `ADDR`, `IPv4:PORT`, `[IPv6]` or `[IPv6]:PORT`.
fn parse_hop(raw: &[u8]) -> Option<IpAddr> {
    let hop = std::str::from_utf8(raw).ok()?.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(addr) = hop.parse::<SocketAddr>() {
        return Some(addr.ip().to_canonical());
    }
    let v6 = hop.strip_prefix('[')?.strip_suffix(']')?;
    v6.parse::<std::net::Ipv6Addr>()
        .ok()
        .map(|ip| IpAddr::V6(ip).to_canonical())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn ranges(list: &[&str]) -> Vec<Cidr> {
        list.iter()
            .map(|s| s.parse().expect("test range"))
            .collect()
    }

    fn xff(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                "x-forwarded-for",
                HeaderValue::from_bytes(v).expect("header value"),
            );
        }
        h
    }

    const PROXY: &str = "10.0.0.2";

    fn resolve(values: &[&[u8]]) -> IpAddr {
        client_ip(ip(PROXY), &xff(values), &ranges(&["10.0.0.0/8"]))
    }

    #[test]
    fn the_header_of_an_untrusted_peer_is_ignored() {
        let h = xff(&[b"203.0.113.7"]);
        assert_eq!(
            client_ip(ip("198.51.100.1"), &h, &ranges(&["10.0.0.0/8"])),
            ip("198.51.100.1")
        );
        // Nothing trusted (the default): always the peer.
        assert_eq!(client_ip(ip(PROXY), &h, &[]), ip(PROXY));
    }

    #[test]
    fn a_trusted_proxy_names_the_client() {
        assert_eq!(resolve(&[b"203.0.113.7"]), ip("203.0.113.7"));
    }

    #[test]
    fn spoofed_left_most_entries_are_ignored() {
        // The client sent `X-Forwarded-For: 1.1.1.1`; the proxy appended its address.
        assert_eq!(resolve(&[b"1.1.1.1, 203.0.113.7"]), ip("203.0.113.7"));
        // Garbage the client put first does not matter either.
        assert_eq!(resolve(&[b"not-an-ip, 203.0.113.7"]), ip("203.0.113.7"));
        // Nor does a header line of its own before the proxy's.
        assert_eq!(resolve(&[b"1.1.1.1", b"203.0.113.7"]), ip("203.0.113.7"));
    }

    #[test]
    fn a_chain_of_trusted_proxies_is_walked() {
        assert_eq!(
            resolve(&[b"1.1.1.1, 203.0.113.7, 10.9.9.9, 10.0.0.5"]),
            ip("203.0.113.7")
        );
        // All hops trusted: the furthest one.
        assert_eq!(resolve(&[b"10.1.1.1, 10.0.0.5"]), ip("10.1.1.1"));
    }

    #[test]
    fn a_malformed_or_missing_header_means_the_peer() {
        let peer = ip(PROXY);
        assert_eq!(resolve(&[]), peer);
        assert_eq!(resolve(&[b""]), peer);
        assert_eq!(resolve(&[b"203.0.113.7, garbage"]), peer);
        assert_eq!(resolve(&[b"203.0.113.7,"]), peer);
        assert_eq!(resolve(&[b"unknown"]), peer);
        assert_eq!(resolve(&[b"203.0.113.7 10.0.0.5"]), peer);
        assert_eq!(resolve(&[b"\xff\xfe"]), peer);
        assert_eq!(resolve(&[b"203.0.113.7", b"\xff"]), peer);
    }

    #[test]
    fn ports_brackets_and_mapped_addresses() {
        assert_eq!(resolve(&[b"203.0.113.7:5123"]), ip("203.0.113.7"));
        assert_eq!(resolve(&[b"[2001:db8::1]:443"]), ip("2001:db8::1"));
        assert_eq!(resolve(&[b"[2001:db8::1]"]), ip("2001:db8::1"));
        assert_eq!(resolve(&[b" 2001:db8::1 "]), ip("2001:db8::1"));
        assert_eq!(resolve(&[b"::ffff:203.0.113.7"]), ip("203.0.113.7"));
        // A mapped peer address is the IPv4 proxy.
        let h = xff(&[b"203.0.113.7"]);
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.2"), &h, &ranges(&["10.0.0.0/8"])),
            ip("203.0.113.7")
        );
    }
}
