//! Which peer addresses are trusted reverse proxies, and the client address a request comes from
//! once their `X-Forwarded-For` is taken into account.
//!
//! A request whose peer is not a trusted proxy comes from its peer, whatever headers it sends:
//! anyone can write `X-Forwarded-For`. From a trusted proxy, the header is read right to left
//! (each proxy appends the address it received the request from) and the first address that is
//! not itself a trusted proxy is the client.

use std::{fmt, net::IpAddr, str::FromStr};

/// An address range: an address and how many leading bits of it count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u32::from(net).into(), self.prefix, 32) == masked(u32::from(ip).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), self.prefix, 128) == masked(u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

/// The top `prefix` bits of a `width`-bit address.
fn masked(bits: u128, prefix: u8, width: u8) -> u128 {
    let keep = u32::from(prefix.min(width));
    if keep == 0 { 0 } else { bits >> (u32::from(width) - keep) }
}

impl FromStr for IpNet {
    type Err = String;

    /// `ADDRESS` (one address) or `ADDRESS/PREFIX`, IPv4 or IPv6.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| format!("{s:?} is not an IP address or range"))?;
        let addr = addr.to_canonical();
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) => {
                p.parse::<u8>().ok().filter(|p| *p <= width).ok_or_else(|| format!("{s:?}: bad prefix length"))?
            }
        };
        Ok(IpNet { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The configured trusted proxies (`trusted_proxies`).
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses the configured entries; the first bad one is the error.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        entries.iter().map(|e| e.as_ref().parse()).collect::<Result<_, _>>().map(TrustedProxies)
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    /// The client a request comes from: `peer`, unless `peer` is a trusted proxy and
    /// `forwarded_for` (the `X-Forwarded-For` values, in header order) names someone else.
    pub fn client_address<'a>(&self, peer: IpAddr, forwarded_for: impl IntoIterator<Item = &'a str>) -> IpAddr {
        if !self.is_trusted(peer) {
            return peer.to_canonical();
        }
        let hops: Vec<&str> = forwarded_for.into_iter().flat_map(|v| v.split(',')).collect();
        let mut client = peer.to_canonical();
        for hop in hops.iter().rev() {
            // A malformed entry ends the walk: nothing to its left can be trusted.
            let Ok(ip) = hop.trim().parse::<IpAddr>() else { break };
            client = ip.to_canonical();
            if !self.is_trusted(client) {
                break;
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::{IpNet, TrustedProxies};

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn ranges_hold_their_addresses_only() {
        let net: IpNet = "10.1.0.0/16".parse().expect("range");
        assert!(net.contains(ip("10.1.200.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.0.9")), "IPv4-mapped IPv6 peers count as IPv4");
        let one: IpNet = "192.0.2.7".parse().expect("address");
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let v6: IpNet = "fd00::/8".parse().expect("v6 range");
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")) && !v6.contains(ip("10.0.0.1")));
        let everything: IpNet = "0.0.0.0/0".parse().expect("all of IPv4");
        assert!(everything.contains(ip("203.0.113.1")));
        for bad in ["", "10.0.0.0/33", "10.0.0/8", "host.example", "::/129", "10.0.0.1/x"] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxies = TrustedProxies::parse(&["127.0.0.1", "10.0.0.0/8"]).expect("config");
        // Straight from a client: the header is the client's own claim.
        assert_eq!(proxies.client_address(ip("203.0.113.5"), ["198.51.100.1"]), ip("203.0.113.5"));
        // Through the proxy: the address it saw.
        assert_eq!(proxies.client_address(ip("127.0.0.1"), ["198.51.100.1"]), ip("198.51.100.1"));
        // A client's forged first entry is skipped: the rightmost untrusted address wins.
        assert_eq!(proxies.client_address(ip("127.0.0.1"), ["1.2.3.4, 198.51.100.1"]), ip("198.51.100.1"));
        // Through two proxies, over two headers.
        assert_eq!(proxies.client_address(ip("127.0.0.1"), ["198.51.100.1", "10.0.0.2"]), ip("198.51.100.1"));
        // No header, or garbage: the proxy itself.
        assert_eq!(proxies.client_address(ip("127.0.0.1"), []), ip("127.0.0.1"));
        assert_eq!(proxies.client_address(ip("127.0.0.1"), ["unknown"]), ip("127.0.0.1"));
        // Nothing trusted: never believed.
        let none = TrustedProxies::default();
        assert_eq!(none.client_address(ip("127.0.0.1"), ["198.51.100.1"]), ip("127.0.0.1"));
        assert!(TrustedProxies::parse(&["nonsense"]).is_err());
    }
}
