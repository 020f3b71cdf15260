//! Dynamic client registration (RFC 7591) as MSC2966 profiles it: public clients only, their
//! URIs tied to the host of their `client_uri`.

use serde_json::{Map, Value};
use url::{Host, Url};

pub const GRANT_AUTHORIZATION_CODE: &str = "authorization_code";
pub const GRANT_REFRESH_TOKEN: &str = "refresh_token";
pub const GRANT_DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Why a registration is refused: RFC 7591's error code and a description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrationError {
    pub error: &'static str,
    pub description: String,
}

fn metadata_error(description: impl Into<String>) -> RegistrationError {
    RegistrationError { error: "invalid_client_metadata", description: description.into() }
}

fn redirect_error(description: impl Into<String>) -> RegistrationError {
    RegistrationError { error: "invalid_redirect_uri", description: description.into() }
}

/// A registered client, as the authorization server reads it back.
#[derive(Clone, Debug)]
pub struct Client {
    pub client_id: String,
    pub metadata: Map<String, Value>,
}

impl Client {
    pub fn grant_types(&self) -> Vec<String> {
        string_list(&self.metadata, "grant_types").unwrap_or_else(|| vec![GRANT_AUTHORIZATION_CODE.to_owned()])
    }

    pub fn allows_grant(&self, grant: &str) -> bool {
        self.grant_types().iter().any(|g| g == grant)
    }

    /// The name to show a person: `client_name`, else the `client_uri` host.
    pub fn display_name(&self) -> String {
        if let Some(name) = self.metadata.get("client_name").and_then(Value::as_str) {
            return name.to_owned();
        }
        self.client_uri().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_else(|| self.client_id.clone())
    }

    pub fn client_uri(&self) -> Option<Url> {
        self.metadata.get("client_uri").and_then(Value::as_str).and_then(|u| Url::parse(u).ok())
    }

    /// The registered redirect URI `requested` matches: the same string, or for a loopback
    /// `http` URI registered without a port, the same URI on any port (RFC 8252 §7.3).
    pub fn redirect_uri_matches(&self, requested: &str) -> bool {
        let registered = string_list(&self.metadata, "redirect_uris").unwrap_or_default();
        if registered.iter().any(|r| r == requested) {
            return true;
        }
        let Ok(mut requested) = Url::parse(requested) else { return false };
        if requested.scheme() != "http" || !requested.host().is_some_and(|h| is_loopback(&h)) {
            return false;
        }
        if requested.set_port(None).is_err() {
            return false;
        }
        registered.iter().any(|r| Url::parse(r).is_ok_and(|r| r.port().is_none() && r == requested))
    }
}

fn string_list(metadata: &Map<String, Value>, key: &str) -> Option<Vec<String>> {
    let list = metadata.get(key)?.as_array()?;
    Some(list.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
}

fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => *d == "localhost",
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// `host` is `parent` or one of its subdomains.
fn within(host: &str, parent: &str) -> bool {
    host == parent || host.ends_with(&format!(".{parent}"))
}

/// A few public suffixes under which nobody owns the whole domain: a client naming one as its
/// host could claim every site under it. (Not the whole Public Suffix List.)
const PUBLIC_SUFFIXES: &[&str] = &[
    "com",
    "org",
    "net",
    "io",
    "dev",
    "app",
    "co.uk",
    "org.uk",
    "github.io",
    "gitlab.io",
    "netlify.app",
    "vercel.app",
    "pages.dev",
    "herokuapp.com",
    "blogspot.com",
    "appspot.com",
    "web.app",
    "firebaseapp.com",
];

/// Validates a registration request and returns the metadata to store (with the defaults it
/// implies filled in).
pub fn validate_registration(body: &Value) -> Result<Map<String, Value>, RegistrationError> {
    let Some(input) = body.as_object() else { return Err(metadata_error("the body must be a JSON object")) };
    let mut metadata = input.clone();
    let client_uri =
        input.get("client_uri").and_then(Value::as_str).ok_or_else(|| metadata_error("client_uri is required"))?;
    let client_uri = Url::parse(client_uri).map_err(|_| metadata_error("client_uri is not a URL"))?;
    if client_uri.scheme() != "https" {
        return Err(metadata_error("client_uri must use https"));
    }
    if !client_uri.username().is_empty() || client_uri.password().is_some() {
        return Err(metadata_error("client_uri must not carry a user name or password"));
    }
    let Some(client_host) = client_uri.host_str().map(str::to_ascii_lowercase) else {
        return Err(metadata_error("client_uri has no host"));
    };
    if PUBLIC_SUFFIXES.contains(&client_host.as_str()) {
        return Err(metadata_error("client_uri's host is a public suffix"));
    }
    // logo_uri, tos_uri, policy_uri and their localised forms (`tos_uri#fr`).
    for (key, value) in input {
        let base = key.split('#').next().unwrap_or_default();
        if !["logo_uri", "tos_uri", "policy_uri", "client_uri"].contains(&base) {
            continue;
        }
        let uri = value
            .as_str()
            .and_then(|v| Url::parse(v).ok())
            .ok_or_else(|| metadata_error(format!("{key} is not a URL")))?;
        let host_ok = uri.host_str().is_some_and(|h| within(&h.to_ascii_lowercase(), &client_host));
        if uri.scheme() != "https" || !host_ok || !uri.username().is_empty() || uri.password().is_some() {
            return Err(metadata_error(format!("{key} must be https on client_uri's host or a subdomain")));
        }
    }
    match input.get("token_endpoint_auth_method") {
        None => {
            metadata.insert("token_endpoint_auth_method".into(), "none".into());
        }
        Some(Value::String(method)) if method == "none" => {}
        Some(_) => return Err(metadata_error("only public clients (token_endpoint_auth_method none) are supported")),
    }
    let grant_types = match input.get("grant_types") {
        None => vec![GRANT_AUTHORIZATION_CODE.to_owned()],
        Some(Value::Array(list)) => {
            let mut grants = Vec::new();
            for grant in list {
                match grant.as_str() {
                    Some(g @ (GRANT_AUTHORIZATION_CODE | GRANT_REFRESH_TOKEN | GRANT_DEVICE_CODE)) => {
                        grants.push(g.to_owned());
                    }
                    _ => return Err(metadata_error(format!("unsupported grant type {grant}"))),
                }
            }
            grants
        }
        Some(_) => return Err(metadata_error("grant_types must be a list")),
    };
    metadata.insert("grant_types".into(), grant_types.clone().into());
    match input.get("response_types") {
        None if grant_types.iter().any(|g| g == GRANT_AUTHORIZATION_CODE) => {
            metadata.insert("response_types".into(), vec!["code"].into());
        }
        None => {}
        Some(Value::Array(list)) if list.iter().all(|r| r == "code") => {}
        Some(_) => return Err(metadata_error("response_types may only hold code")),
    }
    let application_type = match input.get("application_type") {
        None => "web",
        Some(Value::String(t)) if t == "web" || t == "native" => t.as_str(),
        Some(_) => return Err(metadata_error("application_type is web or native")),
    };
    let redirect_uris = match input.get("redirect_uris") {
        None => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| redirect_error("redirect_uris holds strings")))
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(redirect_error("redirect_uris must be a list")),
    };
    if grant_types.iter().any(|g| g == GRANT_AUTHORIZATION_CODE) && redirect_uris.is_empty() {
        return Err(redirect_error("the authorization code grant needs redirect_uris"));
    }
    for uri in &redirect_uris {
        check_redirect_uri(uri, application_type, &client_host)?;
    }
    Ok(metadata)
}

fn check_redirect_uri(uri: &str, application_type: &str, client_host: &str) -> Result<(), RegistrationError> {
    let parsed = Url::parse(uri).map_err(|_| redirect_error(format!("{uri:?} is not a URI")))?;
    if parsed.fragment().is_some() {
        return Err(redirect_error(format!("{uri:?} has a fragment")));
    }
    let on_client_host = parsed.host_str().is_some_and(|h| within(&h.to_ascii_lowercase(), client_host));
    match (application_type, parsed.scheme()) {
        (_, "https") if on_client_host && parsed.username().is_empty() => Ok(()),
        ("native", "http") if parsed.host().is_some_and(|h| is_loopback(&h)) => {
            if parsed.port().is_some() {
                return Err(redirect_error(format!("{uri:?}: a loopback redirect URI is registered without a port")));
            }
            Ok(())
        }
        ("native", scheme) if scheme.contains('.') => {
            // A private-use scheme: the reversed domain of client_uri's host (or a parent or
            // subdomain of it), with no authority (`com.example.app:/callback`).
            if uri[scheme.len()..].starts_with("://") || parsed.host().is_some() {
                return Err(redirect_error(format!("{uri:?}: a private-use scheme takes no authority (one slash)")));
            }
            let domain: Vec<&str> = scheme.split('.').rev().collect();
            let domain = domain.join(".");
            if within(client_host, &domain) || within(&domain, client_host) {
                Ok(())
            } else {
                Err(redirect_error(format!("{uri:?}: the scheme must be client_uri's host reversed")))
            }
        }
        _ => Err(redirect_error(format!("{uri:?} is not allowed for a {application_type} client"))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn native(redirect: &str) -> Value {
        json!({ "client_uri": "https://app.example.org/", "application_type": "native", "redirect_uris": [redirect] })
    }

    #[test]
    fn the_specifications_examples_are_accepted() {
        for body in [
            json!({ "client_uri": "https://example.org/", "redirect_uris": ["https://example.org/callback"] }),
            json!({ "client_uri": "https://example.org/", "redirect_uris": ["https://app.example.org/cb"],
                    "logo_uri": "https://cdn.example.org/logo.png", "tos_uri#fr": "https://example.org/fr/tos" }),
            native("org.example.app:/callback"),
            native("org.example:/callback"),
            native("http://localhost/callback"),
            native("http://127.0.0.1/callback"),
            native("http://[::1]/callback"),
            json!({ "client_uri": "https://example.org/", "grant_types": [GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN] }),
        ] {
            assert!(validate_registration(&body).is_ok(), "{body} must be accepted");
        }
        let stored = validate_registration(&native("org.example.app:/callback")).expect("valid");
        assert_eq!(stored["token_endpoint_auth_method"], "none");
        assert_eq!(stored["response_types"], json!(["code"]));
    }

    #[test]
    fn mistakes_are_refused() {
        for body in [
            json!("not an object"),
            json!({ "redirect_uris": ["https://example.org/cb"] }),
            json!({ "client_uri": "http://example.org/", "redirect_uris": ["https://example.org/cb"] }),
            json!({ "client_uri": "https://user:pw@example.org/", "redirect_uris": ["https://example.org/cb"] }),
            json!({ "client_uri": "https://github.io/", "redirect_uris": ["https://github.io/cb"] }),
            json!({ "client_uri": "https://example.org/", "redirect_uris": ["https://example.org/cb"],
                    "logo_uri": "https://evil.example.com/logo.png" }),
            json!({ "client_uri": "https://example.org/", "redirect_uris": ["https://example.org/cb#frag"] }),
            json!({ "client_uri": "https://example.org/", "redirect_uris": ["https://evil.com/cb"] }),
            json!({ "client_uri": "https://example.org/", "redirect_uris": ["http://127.0.0.1/cb"] }),
            json!({ "client_uri": "https://example.org/" }),
            json!({ "client_uri": "https://example.org/", "redirect_uris": ["https://example.org/cb"],
                    "token_endpoint_auth_method": "client_secret_basic" }),
            json!({ "client_uri": "https://example.org/", "redirect_uris": ["https://example.org/cb"],
                    "grant_types": ["implicit"] }),
            native("org.example.app://callback"),
            native("com.evil:/callback"),
            native("http://127.0.0.1:8080/callback"),
            native("http://example.org/callback"),
        ] {
            assert!(validate_registration(&body).is_err(), "{body} must be refused");
        }
    }

    #[test]
    fn loopback_redirects_match_on_any_port() {
        let metadata = validate_registration(&native("http://127.0.0.1/callback")).expect("valid");
        let client = Client { client_id: "c".into(), metadata };
        assert!(client.redirect_uri_matches("http://127.0.0.1/callback"));
        assert!(client.redirect_uri_matches("http://127.0.0.1:43123/callback"));
        assert!(!client.redirect_uri_matches("http://127.0.0.1:43123/other"));
        assert!(!client.redirect_uri_matches("https://127.0.0.1:43123/callback"));
    }
}
