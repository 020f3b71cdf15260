//! Speaking the server-server API from a test as one of the test servers: requests signed with
//! that server's own signing key (read from its data directory), so the receiving server checks
//! them against keys it really fetches over federation; and events built and signed the same way,
//! to send what a misbehaving or malicious server would.

use anyhow::{Context, Result, bail, ensure};
use base64::Engine as _;
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, RoomVersionId,
    signatures::{Ed25519KeyPair, sign_json},
};
use serde_json::{Value, json};

use crate::TestServer;

/// An HTTPS client that accepts the servers' self-signed certificates.
pub fn https() -> Result<reqwest_tls::Client> {
    Ok(reqwest_tls::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .timeout(std::time::Duration::from_secs(30))
        .build()?)
}

/// A JSON value as a canonical JSON object.
pub fn canonical(value: &Value) -> Result<CanonicalJsonObject> {
    match CanonicalJsonValue::try_from(value.clone())? {
        CanonicalJsonValue::Object(object) => Ok(object),
        _ => bail!("not an object"),
    }
}

/// The signing key of a server, from its data directory.
pub fn signing_key(server: &TestServer) -> Result<Ed25519KeyPair> {
    let text = std::fs::read_to_string(server.data_dir().join("signing.key"))?;
    let parts: Vec<&str> = text.split_whitespace().collect();
    ensure!(parts.len() == 3 && parts[0] == "ed25519", "unexpected signing.key");
    let der = base64::engine::general_purpose::STANDARD.decode(parts[2])?;
    Ok(Ed25519KeyPair::from_der(&der, parts[1].to_owned())?)
}

/// An `X-Matrix` header for a request of `method` to `uri` (with `content`), signed as `origin`.
pub fn x_matrix(
    key: &Ed25519KeyPair,
    origin: &str,
    destination: &str,
    method: &str,
    uri: &str,
    content: Option<&Value>,
) -> Result<String> {
    let mut request = json!({ "method": method, "uri": uri, "origin": origin, "destination": destination });
    if let Some(content) = content {
        request["content"] = content.clone();
    }
    let mut object = canonical(&request)?;
    sign_json(origin, key, &mut object)?;
    let key_id = format!("ed25519:{}", key.version());
    let signed = serde_json::to_value(&object)?;
    let sig = signed["signatures"][origin][&key_id].as_str().context("signature")?.to_owned();
    Ok(format!("X-Matrix origin=\"{origin}\",destination=\"{destination}\",key=\"{key_id}\",sig=\"{sig}\""))
}

/// One test server's identity on the federation: its name and signing key.
pub struct FederationIdentity {
    pub server_name: String,
    key: Ed25519KeyPair,
    http: reqwest_tls::Client,
}

impl FederationIdentity {
    pub fn of(server: &TestServer) -> Result<Self> {
        Ok(Self { server_name: server.server_name().to_owned(), key: signing_key(server)?, http: https()? })
    }

    /// The server's name with another key (an impostor's signatures).
    pub fn with_key(server: &TestServer, key: Ed25519KeyPair) -> Result<Self> {
        Ok(Self { server_name: server.server_name().to_owned(), key, http: https()? })
    }

    /// The version part of the signing key's id.
    pub fn key_version(&self) -> String {
        self.key.version().to_owned()
    }

    /// A signed request to `destination`'s federation listener; (status, JSON answer or Null).
    pub async fn request(
        &self,
        destination: &TestServer,
        method: &str,
        uri: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value)> {
        let url = format!("{}{uri}", destination.federation_url().context("the destination federates")?);
        let auth = x_matrix(&self.key, &self.server_name, destination.server_name(), method, uri, body)?;
        let method = reqwest_tls::Method::from_bytes(method.as_bytes())?;
        let mut request = self.http.request(method, url).header("Authorization", auth);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    /// Hashes and signs a PDU as this server; returns it with its event id (room v3+ format).
    pub fn sign_pdu(&self, pdu: &Value, version: &RoomVersionId) -> Result<(String, Value)> {
        let rules = version.rules().context("room version rules")?;
        let mut object = canonical(pdu)?;
        ruma::signatures::hash_and_sign_event(&self.server_name, &self.key, &mut object, &rules.redaction)?;
        let event_id = format!("${}", ruma::signatures::reference_hash(&object, &rules)?);
        Ok((event_id, serde_json::to_value(&object)?))
    }
}
