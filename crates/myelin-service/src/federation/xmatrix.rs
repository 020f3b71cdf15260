//! The `X-Matrix` request signature: what is signed (the request as canonical JSON), the header
//! that carries the signature, and its parsing (RFC 9110 auth-params: names in any case, values
//! bare or quoted).

use myelin_core::types::{OwnedServerName, ServerName};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue,
    serde::Base64,
    signatures::{Ed25519KeyPair, PublicKeyMap, sign_json, verify_json},
};
use serde_json::Value;

/// The parameters of one `Authorization: X-Matrix ...` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XMatrix {
    pub origin: OwnedServerName,
    pub destination: Option<OwnedServerName>,
    /// `ed25519:<version>`.
    pub key: String,
    /// Unpadded base64 signature.
    pub sig: String,
}

impl XMatrix {
    /// Parses a header value. Unknown parameters are ignored; `origin`, `key` and `sig` are required.
    pub fn parse(header: &str) -> Result<Self, String> {
        let header = header.trim();
        let (scheme, params) = header.split_once([' ', '\t']).unwrap_or((header, ""));
        if !scheme.eq_ignore_ascii_case("X-Matrix") {
            return Err("not an X-Matrix authorization".to_owned());
        }
        let (mut origin, mut destination, mut key, mut sig) = (None, None, None, None);
        for (name, value) in auth_params(params)? {
            let slot = match name.to_ascii_lowercase().as_str() {
                "origin" => &mut origin,
                "destination" => &mut destination,
                "key" => &mut key,
                "sig" => &mut sig,
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(format!("parameter {name} appears twice"));
            }
        }
        let server = |name: &str, value: String| {
            OwnedServerName::try_from(value).map_err(|e| format!("{name} is not a server name: {e}"))
        };
        Ok(Self {
            origin: server("origin", origin.ok_or("origin is missing")?)?,
            destination: destination.map(|d| server("destination", d)).transpose()?,
            key: key.ok_or("key is missing")?,
            sig: sig.ok_or("sig is missing")?,
        })
    }

    /// The header value (values quoted, `"` and `\\` escaped).
    pub fn to_header(&self) -> String {
        let quote = |v: &str| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
        let mut value = format!("X-Matrix origin={}", quote(self.origin.as_str()));
        if let Some(destination) = &self.destination {
            value.push_str(&format!(",destination={}", quote(destination.as_str())));
        }
        value.push_str(&format!(",key={},sig={}", quote(&self.key), quote(&self.sig)));
        value
    }
}

/// `name=value` pairs separated by commas, values a token or a quoted string (with `\` escapes).
fn auth_params(input: &str) -> Result<Vec<(String, String)>, String> {
    let mut params = Vec::new();
    let mut rest = input.trim_start_matches([' ', '\t', ',']);
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=').ok_or("a parameter has no value")?;
        let name = name.trim();
        if name.is_empty() || name.contains([' ', '\t', ',', '"']) {
            return Err(format!("bad parameter name {name:?}"));
        }
        let after = after.trim_start_matches([' ', '\t']);
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => value.push(chars.next().ok_or("unfinished escape")?.1),
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let end = end.ok_or("unterminated quoted value")?;
            (value, &quoted[end..])
        } else {
            let end = after.find([',', ' ', '\t']).unwrap_or(after.len());
            (after[..end].to_owned(), &after[end..])
        };
        params.push((name.to_owned(), value));
        let after = after.trim_start_matches([' ', '\t']);
        if !after.is_empty() && !after.starts_with(',') {
            return Err("parameters must be separated by commas".to_owned());
        }
        rest = after.trim_start_matches([' ', '\t', ',']);
    }
    Ok(params)
}

/// The object a request signature covers.
pub fn request_object(
    method: &str,
    uri: &str,
    origin: &ServerName,
    destination: &ServerName,
    content: Option<&Value>,
) -> Result<CanonicalJsonObject, String> {
    let mut object = CanonicalJsonObject::new();
    object.insert("method".into(), CanonicalJsonValue::String(method.to_owned()));
    object.insert("uri".into(), CanonicalJsonValue::String(uri.to_owned()));
    object.insert("origin".into(), CanonicalJsonValue::String(origin.to_string()));
    object.insert("destination".into(), CanonicalJsonValue::String(destination.to_string()));
    if let Some(content) = content {
        let content = CanonicalJsonValue::try_from(content.clone()).map_err(|e| format!("content: {e}"))?;
        object.insert("content".into(), content);
    }
    Ok(object)
}

/// Signs a request: the `Authorization` header value.
pub fn sign_request(
    key_pair: &Ed25519KeyPair,
    origin: &ServerName,
    destination: &ServerName,
    method: &str,
    uri: &str,
    content: Option<&Value>,
) -> Result<String, String> {
    let mut object = request_object(method, uri, origin, destination, content)?;
    sign_json(origin.as_str(), key_pair, &mut object).map_err(|e| format!("signing: {e}"))?;
    let key = format!("ed25519:{}", key_pair.version());
    let sig = match object.get("signatures").and_then(|s| s.as_object()).and_then(|s| s.get(origin.as_str())) {
        Some(CanonicalJsonValue::Object(sigs)) => match sigs.get(&key) {
            Some(CanonicalJsonValue::String(sig)) => sig.clone(),
            _ => return Err("no signature made".to_owned()),
        },
        _ => return Err("no signature made".to_owned()),
    };
    Ok(XMatrix { origin: origin.to_owned(), destination: Some(destination.to_owned()), key, sig }.to_header())
}

/// Checks a request's signature against `public_key` (unpadded base64) of `auth.key`;
/// `destination` is the server the request was sent to (this one).
pub fn verify_request(
    auth: &XMatrix,
    public_key: &str,
    destination: &ServerName,
    method: &str,
    uri: &str,
    content: Option<&Value>,
) -> Result<(), String> {
    let mut object = request_object(method, uri, &auth.origin, destination, content)?;
    let mut sigs = CanonicalJsonObject::new();
    sigs.insert(auth.key.clone(), CanonicalJsonValue::String(auth.sig.clone()));
    let mut signatures = CanonicalJsonObject::new();
    signatures.insert(auth.origin.to_string(), CanonicalJsonValue::Object(sigs));
    object.insert("signatures".into(), CanonicalJsonValue::Object(signatures));
    let key = Base64::parse(public_key).map_err(|e| format!("stored key of {}: {e}", auth.origin))?;
    let keys = PublicKeyMap::from([(auth.origin.to_string(), [(auth.key.clone(), key)].into())]);
    verify_json(&keys, &object).map_err(|e| format!("bad signature: {e}"))
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use myelin_core::types::ServerName;
    use ruma::signatures::Ed25519KeyPair;
    use serde_json::json;

    use super::{XMatrix, sign_request, verify_request};

    fn name(s: &str) -> &ServerName {
        <&ServerName>::try_from(s).expect("server name")
    }

    #[test]
    fn headers_parse_in_any_case_quoted_or_bare() {
        let parsed = XMatrix::parse(
            "x-matrix Origin=origin.example:8448 , destination=\"dest.example\",KEY=\"ed25519:a b\",sig=\"ab\\\"c\"",
        )
        .expect("parse");
        assert_eq!(parsed.origin, "origin.example:8448");
        assert_eq!(parsed.destination.as_deref().map(|d| d.as_str()), Some("dest.example"));
        assert_eq!(parsed.key, "ed25519:a b");
        assert_eq!(parsed.sig, "ab\"c");
        let bare = XMatrix::parse("X-Matrix origin=o.example,key=ed25519:1,sig=abc").expect("bare values");
        assert_eq!((bare.destination, bare.key.as_str()), (None, "ed25519:1"));
        assert_eq!(XMatrix::parse(&parsed.to_header()).expect("round trip"), parsed);
        for bad in [
            "",
            "Bearer abc",
            "X-Matrix",
            "X-Matrix origin=\"o\"",
            "X-Matrix origin=\"bad name!\",key=\"k\",sig=\"s\"",
            "X-Matrix origin=\"o\",key=\"k\",sig=\"unterminated",
            "X-Matrix origin=\"o\" key=\"k\",sig=\"s\"",
            "X-Matrix origin=\"o\",origin=\"p\",key=\"k\",sig=\"s\"",
            "X-Matrix ===,,,",
        ] {
            assert!(XMatrix::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn signed_requests_verify_only_as_sent() {
        let key_pair = Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), "v1".into()).expect("key");
        let public = base64::engine::general_purpose::STANDARD_NO_PAD.encode(key_pair.public_key());
        let (origin, dest) = (name("origin.example"), name("dest.example:8448"));
        let body = json!({"a": [1, 2], "b": "c"});
        let header =
            sign_request(&key_pair, origin, dest, "PUT", "/_matrix/federation/v1/send/1", Some(&body)).expect("sign");
        let auth = XMatrix::parse(&header).expect("parse our header");
        assert_eq!(auth.key, "ed25519:v1");
        let verify = |dest, method, uri, body: Option<&serde_json::Value>| {
            verify_request(&auth, &public, name(dest), method, uri, body)
        };
        verify("dest.example:8448", "PUT", "/_matrix/federation/v1/send/1", Some(&body)).expect("verifies");
        assert!(verify("other.example", "PUT", "/_matrix/federation/v1/send/1", Some(&body)).is_err(), "destination");
        assert!(verify("dest.example:8448", "POST", "/_matrix/federation/v1/send/1", Some(&body)).is_err(), "method");
        assert!(verify("dest.example:8448", "PUT", "/_matrix/federation/v1/send/2", Some(&body)).is_err(), "uri");
        assert!(verify("dest.example:8448", "PUT", "/_matrix/federation/v1/send/1", None).is_err(), "content");
        let other = Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), "v1".into()).expect("key");
        let other_public = base64::engine::general_purpose::STANDARD_NO_PAD.encode(other.public_key());
        assert!(
            verify_request(&auth, &other_public, dest, "PUT", "/_matrix/federation/v1/send/1", Some(&body)).is_err(),
            "another key"
        );
    }
}
