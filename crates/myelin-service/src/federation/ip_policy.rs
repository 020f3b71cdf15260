//! Which addresses outbound requests (federation, later push and URL previews) may reach: not
//! this machine, not the private network around it, not ranges that are never a public server,
//! unless the operator allows a range (`federation.ip_range_allowlist`).

use std::net::IpAddr;

use myelin_core::proxies::IpNet;

/// Ranges refused unless allowed: loopback, unspecified, RFC 1918, CGNAT, link-local, benchmark
/// and documentation ranges, multicast and reserved, unique-local and site-local IPv6, NAT64's
/// well-known prefix is left alone (public addresses behind it).
const REFUSED: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "fe80::/10",
    "fec0::/10",
    "fc00::/7",
    "2001:db8::/32",
    "ff00::/8",
    "100::/64",
];

/// The outbound address policy.
#[derive(Clone, Debug)]
pub struct IpPolicy {
    refused: Vec<IpNet>,
    allowed: Vec<IpNet>,
}

impl IpPolicy {
    /// The default refusals, with `allowlist` (CIDR ranges or single addresses) let through.
    pub fn new<S: AsRef<str>>(allowlist: &[S]) -> Result<Self, String> {
        let allowed = allowlist.iter().map(|r| r.as_ref().parse()).collect::<Result<Vec<IpNet>, _>>()?;
        let refused = REFUSED.iter().map(|r| r.parse()).collect::<Result<Vec<IpNet>, _>>()?;
        Ok(Self { refused, allowed })
    }

    /// Whether a connection to `ip` is allowed.
    pub fn allows(&self, ip: IpAddr) -> bool {
        // IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
        let ip = ip.to_canonical();
        self.allowed.iter().any(|net| net.contains(ip)) || !self.refused.iter().any(|net| net.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::IpPolicy;

    fn allows(policy: &IpPolicy, ip: &str) -> bool {
        policy.allows(ip.parse().expect("ip"))
    }

    #[test]
    fn private_and_special_ranges_are_refused_by_default() {
        let policy = IpPolicy::new::<&str>(&[]).expect("policy");
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "192.0.2.10",
            "198.51.100.1",
            "203.0.113.5",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "fc00::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!allows(&policy, ip), "{ip} should be refused");
        }
        for ip in ["1.1.1.1", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(allows(&policy, ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn the_allowlist_lets_ranges_through() {
        let policy = IpPolicy::new(&["127.0.0.1/32", "::1/128", "10.0.0.0/8"]).expect("policy");
        assert!(allows(&policy, "127.0.0.1"));
        assert!(allows(&policy, "::1"));
        assert!(allows(&policy, "10.200.0.1"));
        assert!(!allows(&policy, "127.0.0.2"), "only the allowed range");
        assert!(!allows(&policy, "192.168.0.1"));
        assert!(IpPolicy::new(&["not a range"]).is_err());
    }
}
