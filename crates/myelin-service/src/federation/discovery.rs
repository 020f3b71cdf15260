//! Server discovery: where the server named `host[:port]` answers federation requests.
//!
//! An IP literal is that address (port given or 8448); a name with a port is that name and port;
//! otherwise `https://host/.well-known/matrix/server` may delegate to another name, resolved by
//! the same two rules; a name left without a port (the server's own, or the delegated one) is
//! looked up as SRV `_matrix-fed._tcp.<name>`, then `_matrix._tcp.<name>`, else port 8448. The
//! name found is the URL's host, so it is also the TLS server name and the `Host` header; an SRV
//! target is only where the connection goes (`connect_to`).

use std::{net::IpAddr, time::Duration};

use myelin_core::types::{OwnedServerName, ServerName};
use serde_json::Value;

/// The default federation port.
pub const DEFAULT_PORT: u16 = 8448;
/// A well-known answer without a usable `Cache-Control` is kept this long.
pub const WELL_KNOWN_DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// ... and at most this long, whatever it says.
pub const WELL_KNOWN_MAX_TTL: Duration = Duration::from_secs(48 * 3600);
/// A failed well-known lookup (no delegation) is remembered this long.
pub const WELL_KNOWN_ERROR_TTL: Duration = Duration::from_secs(3600);
/// The largest well-known body read.
pub const WELL_KNOWN_MAX_BYTES: usize = 64 * 1024;

/// Where to send a server's federation requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// A DNS name, an IPv4 address, or an IPv6 address in brackets.
    pub host: String,
    pub port: u16,
    /// The host an SRV record named: the connection goes there, the rest is about `host`.
    pub connect_to: Option<String>,
}

impl Destination {
    /// `https://host:port`.
    pub fn base_url(&self) -> String {
        format!("https://{}:{}", self.host, self.port)
    }

    /// The address, when the host is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.trim_start_matches('[').trim_end_matches(']').parse().ok()
    }
}

/// The destination of `server` when no well-known lookup is needed: an IP literal or an
/// explicit port. `None`: ask `https://host/.well-known/matrix/server`.
pub fn direct(server: &ServerName) -> Option<Destination> {
    let host = server.host().to_owned();
    let port = server.port();
    if server.is_ip_literal() {
        return Some(Destination { host, port: port.unwrap_or(DEFAULT_PORT), connect_to: None });
    }
    port.map(|port| Destination { host, port, connect_to: None })
}

/// The destination a delegation (the well-known `m.server`) names: it is resolved by the same
/// rules as a server name, without a second well-known lookup.
pub fn delegated(server: &ServerName) -> Destination {
    direct(server).unwrap_or_else(|| Destination {
        host: server.host().to_owned(),
        port: DEFAULT_PORT,
        connect_to: None,
    })
}

/// The SRV names of a host, in the order they are asked.
pub fn srv_names(host: &str) -> [String; 2] {
    [format!("_matrix-fed._tcp.{host}"), format!("_matrix._tcp.{host}")]
}

/// The destination an SRV record gives `host`.
pub fn via_srv(host: &str, record: &super::dns::SrvRecord) -> Destination {
    Destination { host: host.to_owned(), port: record.port, connect_to: Some(record.target.clone()) }
}

/// The delegated server of a well-known body, if it names a valid one.
pub fn parse_well_known(body: &[u8]) -> Option<OwnedServerName> {
    let json: Value = serde_json::from_slice(body).ok()?;
    let name = json.get("m.server")?.as_str()?;
    OwnedServerName::try_from(name).ok()
}

/// How long a well-known answer is kept: its `Cache-Control: max-age`, capped, unless
/// `no-store`/`no-cache` says not to keep it at all.
pub fn well_known_ttl(cache_control: Option<&str>) -> Duration {
    let Some(header) = cache_control else { return WELL_KNOWN_DEFAULT_TTL };
    let mut ttl = WELL_KNOWN_DEFAULT_TTL;
    for directive in header.split(',') {
        let directive = directive.trim().to_ascii_lowercase();
        if directive == "no-store" || directive == "no-cache" {
            return Duration::ZERO;
        }
        if let Some(seconds) = directive.strip_prefix("max-age=")
            && let Ok(seconds) = seconds.trim_matches('"').parse::<u64>()
        {
            ttl = Duration::from_secs(seconds);
        }
    }
    ttl.min(WELL_KNOWN_MAX_TTL)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use myelin_core::types::ServerName;

    use super::*;

    fn name(s: &str) -> &ServerName {
        <&ServerName>::try_from(s).expect("server name")
    }

    fn dest(host: &str, port: u16) -> Destination {
        Destination { host: host.into(), port, connect_to: None }
    }

    #[test]
    fn ip_literals_and_explicit_ports_need_no_lookup() {
        assert_eq!(direct(name("1.2.3.4")), Some(dest("1.2.3.4", 8448)));
        assert_eq!(direct(name("1.2.3.4:8000")), Some(dest("1.2.3.4", 8000)));
        assert_eq!(direct(name("[::1]")), Some(dest("[::1]", 8448)));
        assert_eq!(direct(name("[2001:db8::1]:9000")), Some(dest("[2001:db8::1]", 9000)));
        assert_eq!(direct(name("example.org:8449")), Some(dest("example.org", 8449)));
        assert_eq!(direct(name("example.org")), None, "a bare name asks its well-known");
        assert_eq!(dest("[::1]", 1).ip(), Some("::1".parse().expect("ip")));
        assert_eq!(dest("example.org", 1).ip(), None);
        assert_eq!(dest("[::1]", 8448).base_url(), "https://[::1]:8448");
    }

    #[test]
    fn well_known_delegation_is_resolved_by_the_same_rules() {
        let parse = |s: &str| parse_well_known(s.as_bytes()).map(|name| delegated(&name));
        assert_eq!(parse(r#"{"m.server": "matrix.example.org"}"#), Some(dest("matrix.example.org", 8448)));
        assert_eq!(parse(r#"{"m.server": "matrix.example.org:443"}"#), Some(dest("matrix.example.org", 443)));
        assert_eq!(parse(r#"{"m.server": "10.0.0.1"}"#), Some(dest("10.0.0.1", 8448)));
        assert_eq!(parse(r#"{"m.server": "[::1]:1234"}"#), Some(dest("[::1]", 1234)));
        for bad in [r#"{"m.server": "bad name"}"#, r#"{"m.server": 3}"#, r#"{}"#, "not json", r#"["m.server"]"#] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn well_known_answers_are_kept_as_long_as_they_say_within_bounds() {
        assert_eq!(well_known_ttl(None), WELL_KNOWN_DEFAULT_TTL);
        assert_eq!(well_known_ttl(Some("public, max-age=600")), Duration::from_secs(600));
        assert_eq!(well_known_ttl(Some("max-age=999999999")), WELL_KNOWN_MAX_TTL);
        assert_eq!(well_known_ttl(Some("no-store")), Duration::ZERO);
        assert_eq!(well_known_ttl(Some("max-age=abc")), WELL_KNOWN_DEFAULT_TTL);
    }

    #[test]
    fn an_srv_record_gives_the_port_and_where_to_connect() {
        assert_eq!(srv_names("example.org"), ["_matrix-fed._tcp.example.org", "_matrix._tcp.example.org"]);
        let record =
            crate::federation::dns::SrvRecord { priority: 0, weight: 0, port: 443, target: "m.example.org".into() };
        let found = via_srv("example.org", &record);
        assert_eq!(found.base_url(), "https://example.org:443", "the server's name stays the URL's host");
        assert_eq!(found.connect_to.as_deref(), Some("m.example.org"));
    }
}
