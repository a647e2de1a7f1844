use std::{fmt, net::IpAddr, str::FromStr};

/// An address range `ADDR/PREFIX` (`10.0.0.0/8`, `fd00::/8`), or one address
/// (`192.0.2.1`, the same as `/32`; `::1`, the same as `/128`). Bits of `ADDR` past the
/// prefix are cleared. IPv4-mapped IPv6 addresses (`::ffff:10.1.2.3`) match the IPv4
/// range they map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a range did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an IP address or CIDR range like 10.0.0.0/8")]
pub struct CidrParseError(String);

impl Cidr {
    /// Whether `ip` is inside the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask_v4(u32::from(ip), self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask_v6(u128::from(ip), self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask_v4(bits: u32, prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => bits & (u32::MAX << (32 - u32::from(p.min(32)))),
    }
}

fn mask_v6(bits: u128, prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        p => bits & (u128::MAX << (128 - u32::from(p.min(128)))),
    }
}

impl FromStr for Cidr {
    type Err = CidrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CidrParseError(s.to_string());
        let trimmed = s.trim();
        let (addr, prefix) = match trimmed.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (trimmed, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix: Option<u8> = match prefix {
            // Digits only: `+8` or ` 8` are not prefixes.
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                Some(p.parse().map_err(|_| bad())?)
            }
            Some(_) => return Err(bad()),
            None => None,
        };
        // A range written in IPv4-mapped form (`::ffff:10.0.0.0/104`) is the IPv4 range.
        let (addr, prefix) = match (addr, addr.to_canonical()) {
            (IpAddr::V6(_), IpAddr::V4(v4)) => match prefix {
                Some(p) => (IpAddr::V4(v4), Some(p.checked_sub(96).ok_or_else(bad)?)),
                None => (IpAddr::V4(v4), None),
            },
            (a, _) => (a, prefix),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        let network = match addr {
            IpAddr::V4(v4) => IpAddr::V4(mask_v4(u32::from(v4), prefix).into()),
            IpAddr::V6(v6) => IpAddr::V6(mask_v6(u128::from(v6), prefix).into()),
        };
        Ok(Cidr { network, prefix })
    }
}

impl TryFrom<String> for Cidr {
    type Error = CidrParseError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        c.to_string()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn ipv4_ranges_contain_their_addresses_only() {
        let r = cidr("10.1.0.0/16");
        assert!(r.contains(ip("10.1.0.1")));
        assert!(r.contains(ip("10.1.255.255")));
        assert!(!r.contains(ip("10.2.0.1")));
        assert!(!r.contains(ip("::1")));
        // Mapped addresses match the IPv4 range.
        assert!(r.contains(ip("::ffff:10.1.2.3")));
    }

    #[test]
    fn single_addresses_and_host_bits() {
        assert_eq!(cidr("192.0.2.7"), cidr("192.0.2.7/32"));
        assert!(cidr("192.0.2.7").contains(ip("192.0.2.7")));
        assert!(!cidr("192.0.2.7").contains(ip("192.0.2.8")));
        // Host bits past the prefix are cleared.
        assert_eq!(cidr("192.0.2.7/24").to_string(), "192.0.2.0/24");
        assert_eq!(cidr("::1").to_string(), "::1/128");
    }

    #[test]
    fn zero_prefix_matches_its_whole_family() {
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!cidr("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(cidr("::/0").contains(ip("2001:db8::1")));
    }

    #[test]
    fn ipv6_ranges() {
        let r = cidr("fd00::/8");
        assert!(r.contains(ip("fd12:3456::1")));
        assert!(!r.contains(ip("fe80::1")));
        assert_eq!(cidr("::ffff:10.0.0.0/104"), cidr("10.0.0.0/8"));
    }

    #[test]
    fn malformed_ranges_are_refused() {
        for s in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0/8",
            "example.com",
            "10.0.0.0/8/8",
            "::ffff:10.0.0.0/90",
        ] {
            assert!(s.parse::<Cidr>().is_err(), "{s:?} parsed");
        }
    }
}
