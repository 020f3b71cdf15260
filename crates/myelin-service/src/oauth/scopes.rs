//! Scopes as MSC2967 defines them: the client-server API, exactly one device, and OpenID. Both
//! the stable spelling and the unstable one clients still send are accepted, never mixed.

use std::fmt;

pub const OPENID: &str = "openid";
const STABLE_PREFIX: &str = "urn:matrix:client:";
const UNSTABLE_PREFIX: &str = "urn:matrix:org.matrix.msc2967.client:";

/// A scope the server grants, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// `openid`: an ID token comes with the tokens.
    pub openid: bool,
    /// The client-server API (`…client:api:*`).
    pub api: bool,
    /// The device the session is (`…client:device:<id>`).
    pub device_id: Option<String>,
    /// Which spelling the client used, kept when the scope is written back.
    pub unstable: bool,
}

/// Why a scope is refused (`invalid_scope`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeError(pub String);

impl Scope {
    pub fn parse(text: &str) -> Result<Self, ScopeError> {
        let mut scope = Scope { openid: false, api: false, device_id: None, unstable: false };
        let mut spelling: Option<bool> = None;
        for token in text.split(' ').filter(|t| !t.is_empty()) {
            if token == OPENID {
                scope.openid = true;
                continue;
            }
            let (unstable, rest) = if let Some(rest) = token.strip_prefix(STABLE_PREFIX) {
                (false, rest)
            } else if let Some(rest) = token.strip_prefix(UNSTABLE_PREFIX) {
                (true, rest)
            } else {
                return Err(ScopeError(format!("unknown scope {token:?}")));
            };
            if spelling.is_some_and(|s| s != unstable) {
                return Err(ScopeError("stable and unstable scopes are mixed".into()));
            }
            spelling = Some(unstable);
            if rest == "api:*" {
                scope.api = true;
            } else if let Some(device) = rest.strip_prefix("device:") {
                if scope.device_id.is_some() {
                    return Err(ScopeError("more than one device scope".into()));
                }
                if !valid_device_id(device) {
                    return Err(ScopeError(format!("invalid device id {device:?}")));
                }
                scope.device_id = Some(device.to_owned());
            } else {
                return Err(ScopeError(format!("unknown scope {token:?}")));
            }
        }
        scope.unstable = spelling.unwrap_or(false);
        if !scope.api {
            return Err(ScopeError("the client-server API scope is required".into()));
        }
        Ok(scope)
    }

    /// Whether every part of `other` is within this scope (a refresh may narrow, never widen).
    pub fn covers(&self, other: &Scope) -> bool {
        (self.openid || !other.openid)
            && (self.api || !other.api)
            && (other.device_id.is_none() || other.device_id == self.device_id)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = if self.unstable { UNSTABLE_PREFIX } else { STABLE_PREFIX };
        let mut parts = Vec::new();
        if self.openid {
            parts.push(OPENID.to_owned());
        }
        if self.api {
            parts.push(format!("{prefix}api:*"));
        }
        if let Some(device) = &self.device_id {
            parts.push(format!("{prefix}device:{device}"));
        }
        f.write_str(&parts.join(" "))
    }
}

/// MSC2967's device id alphabet (which includes `+` and `/`, as the unpadded base64 keys QR
/// login uses), at least ten characters.
fn valid_device_id(id: &str) -> bool {
    id.len() >= 10
        && id.len() <= 255
        && id.chars().all(|c| c.is_ascii_alphanumeric() || "._~!$&'()*+,;=:@/-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_parse_and_print_back() {
        let stable = "urn:matrix:client:api:* urn:matrix:client:device:ABCDEFGHIJ";
        let scope = Scope::parse(stable).expect("stable");
        assert_eq!(scope.device_id.as_deref(), Some("ABCDEFGHIJ"));
        assert_eq!(scope.to_string(), stable);
        let unstable = "openid urn:matrix:org.matrix.msc2967.client:api:* urn:matrix:org.matrix.msc2967.client:device:a+b/c=d0123456789";
        let scope = Scope::parse(unstable).expect("unstable");
        assert!(scope.openid && scope.unstable);
        assert_eq!(scope.device_id.as_deref(), Some("a+b/c=d0123456789"));
        assert_eq!(scope.to_string(), unstable);
    }

    #[test]
    fn escalations_and_mistakes_are_refused() {
        for bad in [
            "",
            "openid",
            "urn:matrix:client:device:ABCDEFGHIJ",
            "urn:matrix:client:api:* urn:matrix:client:device:ABCDEFGHIJ urn:matrix:client:device:KLMNOPQRST",
            "urn:matrix:client:api:* urn:matrix:org.matrix.msc2967.client:device:ABCDEFGHIJ",
            "urn:matrix:client:api:* urn:synapse:admin:*",
            "urn:matrix:client:api:* urn:matrix:client:device:SHORT",
            "urn:matrix:client:api:* urn:matrix:client:device:with space?",
            "urn:matrix:client:api:* urn:matrix:client:guest",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn a_refresh_may_narrow_but_not_widen() {
        let granted = Scope::parse("urn:matrix:client:api:* urn:matrix:client:device:ABCDEFGHIJ").expect("scope");
        let with_openid = Scope::parse("openid urn:matrix:client:api:*").expect("scope");
        let other_device = Scope::parse("urn:matrix:client:api:* urn:matrix:client:device:KLMNOPQRST").expect("scope");
        assert!(granted.covers(&Scope::parse("urn:matrix:client:api:*").expect("scope")));
        assert!(!granted.covers(&with_openid));
        assert!(!granted.covers(&other_device));
    }
}
