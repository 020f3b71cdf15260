//! Server access control lists (`m.room.server_acl`): which servers a room accepts requests and
//! events from. The decision is one pure function (`ServerAcl::allows`); `check_server_acl`
//! applies the room's current ACL to a request's origin.

use myelin_core::{
    MatrixError, MatrixResult,
    types::{RoomId, ServerName, StateEventType},
};
use serde_json::Value;

use crate::Services;

/// An `m.room.server_acl` content.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerAcl {
    allow: Vec<String>,
    deny: Vec<String>,
    allow_ip_literals: bool,
}

impl ServerAcl {
    /// The ACL of an event's content (fields of the wrong type count as absent).
    pub fn from_content(content: &Value) -> Self {
        let globs = |key: &str| -> Vec<String> {
            content
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_ascii_lowercase)
                .collect()
        };
        Self {
            allow: globs("allow"),
            deny: globs("deny"),
            allow_ip_literals: content.get("allow_ip_literals").and_then(Value::as_bool).unwrap_or(true),
        }
    }

    /// Whether the server (its name, port ignored, case-insensitive) may take part in the room.
    pub fn allows(&self, server: &str) -> bool {
        let host = host_of(server).to_ascii_lowercase();
        if !self.allow_ip_literals && is_ip_literal(&host) {
            return false;
        }
        if self.deny.iter().any(|glob| glob_matches(glob, &host)) {
            return false;
        }
        self.allow.iter().any(|glob| glob_matches(glob, &host))
    }
}

/// A server name without its port.
fn host_of(server: &str) -> &str {
    if let Some(rest) = server.strip_prefix('[') {
        // `[IPv6]:port`: the brackets stay, as in the server name.
        return match rest.find(']') {
            Some(end) => &server[..end + 2],
            None => server,
        };
    }
    match server.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => server,
    }
}

fn is_ip_literal(host: &str) -> bool {
    host.starts_with('[') || host.parse::<std::net::Ipv4Addr>().is_ok()
}

/// `*` matches any run of characters, `?` one character.
fn glob_matches(glob: &str, text: &str) -> bool {
    let (g, t): (Vec<char>, Vec<char>) = (glob.chars().collect(), text.chars().collect());
    // Iterative matching with backtracking to the last `*` (linear in practice).
    let (mut gi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if gi < g.len() && (g[gi] == '?' || g[gi] == t[ti]) {
            gi += 1;
            ti += 1;
        } else if gi < g.len() && g[gi] == '*' {
            star = Some((gi, ti));
            gi += 1;
        } else if let Some((sg, st)) = star {
            gi = sg + 1;
            ti = st + 1;
            star = Some((sg, st + 1));
        } else {
            return false;
        }
    }
    g[gi..].iter().all(|c| *c == '*')
}

impl Services {
    /// The room's current server ACL, if it has one.
    pub(crate) async fn server_acl(&self, room_id: &RoomId) -> MatrixResult<Option<ServerAcl>> {
        let event = self.store.current_state_event(room_id, &StateEventType::RoomServerAcl, "").await?;
        Ok(event.map(|ev| ServerAcl::from_content(&Self::event_content(&ev))))
    }

    /// Refuses (403 `M_FORBIDDEN`) a server the room's ACL denies.
    pub(crate) async fn check_server_acl(&self, origin: &ServerName, room_id: &RoomId) -> MatrixResult<()> {
        match self.server_acl(room_id).await? {
            Some(acl) if !acl.allows(origin.as_str()) => {
                Err(MatrixError::forbidden("Server is banned from this room by its server ACL"))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn acl(content: Value) -> ServerAcl {
        ServerAcl::from_content(&content)
    }

    #[test]
    fn globs_match_stars_and_question_marks() {
        assert!(glob_matches("*", "anything.org"));
        assert!(glob_matches("*.example.org", "a.example.org"));
        assert!(!glob_matches("*.example.org", "example.org"));
        assert!(glob_matches("ex?mple.org", "example.org"));
        assert!(!glob_matches("ex?mple.org", "exmple.org"));
        assert!(glob_matches("a*b*c", "aXXbYYc"));
        assert!(!glob_matches("a*b*c", "aXXbYY"));
        assert!(glob_matches("", ""));
        assert!(!glob_matches("", "x"));
    }

    #[test]
    fn no_allow_list_denies_everyone() {
        assert!(!acl(json!({})).allows("example.org"));
    }

    #[test]
    fn deny_beats_allow_case_insensitively_and_ports_are_ignored() {
        let a = acl(json!({ "allow": ["*"], "deny": ["*.Evil.org", "evil.org"] }));
        assert!(a.allows("good.org"));
        assert!(a.allows("good.org:8448"));
        assert!(!a.allows("EVIL.org"));
        assert!(!a.allows("evil.org:443"));
        assert!(!a.allows("sub.evil.ORG:8448"));
    }

    #[test]
    fn ip_literals_follow_allow_ip_literals() {
        let a = acl(json!({ "allow": ["*"], "allow_ip_literals": false }));
        assert!(!a.allows("127.0.0.1:8448"));
        assert!(!a.allows("[::1]:8448"));
        assert!(a.allows("localhost:8448"));
        let b = acl(json!({ "allow": ["*"] }));
        assert!(b.allows("127.0.0.1:8448"));
        assert!(b.allows("[::1]"));
    }

    #[test]
    fn only_listed_servers_are_allowed() {
        let a = acl(json!({ "allow": ["matrix.org", "127.0.0.1"], "deny": ["bad.*"], "allow_ip_literals": "no" }));
        assert!(a.allows("matrix.org"));
        assert!(a.allows("127.0.0.1:1234"), "an ill-typed allow_ip_literals counts as absent (true)");
        assert!(!a.allows("other.org"));
        assert!(!a.allows("bad.org"));
    }

    #[test]
    fn host_of_strips_only_a_port() {
        assert_eq!(host_of("example.org:8448"), "example.org");
        assert_eq!(host_of("example.org"), "example.org");
        assert_eq!(host_of("[::1]:8448"), "[::1]");
        assert_eq!(host_of("[::1]"), "[::1]");
    }
}
