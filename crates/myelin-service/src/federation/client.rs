//! Outbound federation requests: discovery, the address policy on every connection, the
//! `X-Matrix` signature, bounded bodies and timeouts.

use std::{
    net::SocketAddr,
    sync::{Arc, PoisonError},
    time::Duration,
};

use myelin_core::{
    MatrixError,
    types::{OwnedServerName, ServerName},
};
use serde_json::Value;

use super::{
    discovery::{self, Destination},
    ip_policy::IpPolicy,
    xmatrix,
};
use crate::Services;

/// A whole request, from connecting to the last byte of the answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A media file fetched from another server (or where it points) may take this long in all.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(300);
/// A push gateway answers within this, or the push is tried again later (the job runner's
/// lane is not held long).
const PUSH_GATEWAY_TIMEOUT: Duration = Duration::from_secs(10);
/// A page or image fetched for a URL preview may take this long.
const PREVIEW_TIMEOUT: Duration = Duration::from_secs(10);
/// Redirects followed at most.
const MAX_REDIRECTS: usize = 5;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read (room state for a join can be large).
const MAX_RESPONSE_BYTES: usize = 100 << 20;
/// Idle connections kept per destination.
const IDLE_PER_HOST: usize = 8;

/// Why a federation request failed.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    #[error("{0} is this server: nothing is sent over the network to it")]
    OwnServer(OwnedServerName),
    #[error("{destination}: address refused by the outbound policy ({reason})")]
    Blocked { destination: String, reason: String },
    #[error("{destination} is unreachable: {reason}")]
    Unreachable { destination: String, reason: String },
    #[error("{destination} did not answer in time")]
    Timeout { destination: String },
    #[error("{destination} answered {status} {errcode:?}: {error:?}")]
    Status { destination: String, status: u16, errcode: Option<String>, error: Option<String> },
    #[error("{destination} sent an unusable answer: {reason}")]
    BadResponse { destination: String, reason: String },
}

impl FederationError {
    /// The remote Matrix error code, when the remote answered with one.
    pub fn errcode(&self) -> Option<&str> {
        match self {
            Self::Status { errcode, .. } => errcode.as_deref(),
            _ => None,
        }
    }
}

impl From<FederationError> for MatrixError {
    /// A remote's "not found" stays one; anything else is a 502 (the remote failed, not us).
    fn from(err: FederationError) -> Self {
        match &err {
            FederationError::Status { status: 404, .. } => MatrixError::not_found(err.to_string()),
            FederationError::OwnServer(_) => MatrixError::internal(err.to_string()),
            FederationError::Timeout { .. } => MatrixError::internal(err.to_string()).with_status(504),
            _ => MatrixError::internal(err.to_string()).with_status(502),
        }
    }
}

/// The marker error of a DNS answer with no allowed address.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

/// Hosts whose connections go to another host (an SRV target).
type ConnectAliases = Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>;

/// Resolves names with the system resolver (a host with an SRV target: the target), keeping
/// only addresses the policy allows.
struct PolicyResolver(Arc<IpPolicy>, ConnectAliases);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = {
            let aliases = self.1.lock().unwrap_or_else(PoisonError::into_inner);
            aliases.get(name.as_str()).cloned().unwrap_or_else(|| name.as_str().to_owned())
        };
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found.iter().copied().filter(|a| policy.allows(a.ip())).collect();
            if allowed.is_empty() {
                let reason = if found.is_empty() {
                    format!("{host} has no address")
                } else {
                    format!("{host} resolves only to refused addresses ({found:?})")
                };
                return Err(Box::new(Refused(reason)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

pub(super) fn build_http_client(
    policy: Arc<IpPolicy>,
    aliases: ConnectAliases,
    verify_certificates: bool,
) -> Result<reqwest::Client, String> {
    // A redirect to an address (not a name, which the resolver checks) must be allowed too.
    let redirect_policy = policy.clone();
    let redirects = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            return attempt.error("too many redirects");
        }
        let host = attempt.url().host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
        match host.parse::<std::net::IpAddr>() {
            Ok(ip) if !redirect_policy.allows(ip) => {
                attempt.error(Refused(format!("redirect to refused address {ip}")))
            }
            _ => attempt.follow(),
        }
    });
    reqwest::Client::builder()
        .redirect(redirects)
        .dns_resolver(Arc::new(PolicyResolver(policy, aliases)))
        .tls_danger_accept_invalid_certs(!verify_certificates)
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_max_idle_per_host(IDLE_PER_HOST)
        .user_agent(concat!("Myelin/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the federation HTTP client: {e}"))
}

/// A failed send, classified.
fn send_error(destination: &str, err: &reqwest::Error) -> FederationError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return FederationError::Blocked { destination: destination.to_owned(), reason: refused.0.clone() };
        }
        source = e.source();
    }
    if err.is_timeout() {
        return FederationError::Timeout { destination: destination.to_owned() };
    }
    let mut reason = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        reason.push_str(": ");
        reason.push_str(&e.to_string());
        source = e.source();
    }
    FederationError::Unreachable { destination: destination.to_owned(), reason }
}

/// Reads an answer's body, at most `limit` bytes.
async fn read_body(
    destination: &str,
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, FederationError> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(FederationError::BadResponse {
                        destination: destination.to_owned(),
                        reason: format!("answer larger than {limit} bytes"),
                    });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(err) => return Err(send_error(destination, &err)),
        }
    }
}

impl Services {
    /// Where `server` takes federation requests (cached; see `discovery`).
    pub async fn federation_destination(&self, server: &ServerName) -> Result<Destination, FederationError> {
        let now = self.clock.now_ms();
        let cached = {
            let cache = self.federation.destinations.lock().unwrap_or_else(PoisonError::into_inner);
            cache.get(server).filter(|(_, until)| *until > now).map(|(d, _)| d.clone())
        };
        let (destination, ttl) = match cached {
            Some(destination) => (destination, None),
            None => match discovery::direct(server) {
                Some(destination) => (destination, None),
                None => {
                    let (destination, ttl) = self.discover(server).await;
                    (destination, Some(ttl))
                }
            },
        };
        if let Some(ttl) = ttl {
            let until = now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
            let mut cache = self.federation.destinations.lock().unwrap_or_else(PoisonError::into_inner);
            cache.retain(|_, (_, until)| *until > now);
            cache.insert(server.to_owned(), (destination.clone(), until));
        }
        if let Some(ip) = destination.ip()
            && !self.federation.policy.allows(ip)
        {
            return Err(FederationError::Blocked {
                destination: server.to_string(),
                reason: format!("{ip} is in a refused range"),
            });
        }
        Ok(destination)
    }

    /// A server name without a port: its well-known delegation, then the SRV records of the
    /// name left without a port, then port 8448; and how long to keep the answer.
    async fn discover(&self, server: &ServerName) -> (Destination, Duration) {
        let (delegated, ttl) = self.well_known(server).await;
        let name = match delegated {
            Some(name) => match discovery::direct(&name) {
                Some(destination) => return (destination, ttl),
                None => name,
            },
            None => server.to_owned(),
        };
        match self.srv_destination(name.host()).await {
            Some(destination) => (destination, ttl.max(discovery::WELL_KNOWN_ERROR_TTL)),
            None => (discovery::delegated(&name), ttl),
        }
    }

    /// The destination the SRV records of `host` give, if any (the connection to it is aliased).
    async fn srv_destination(&self, host: &str) -> Option<Destination> {
        let nameserver = self.federation.nameserver?;
        for name in discovery::srv_names(host) {
            match super::dns::lookup_srv(nameserver, &name).await {
                Ok(records) => {
                    if let Some(record) = records.first() {
                        let destination = discovery::via_srv(host, record);
                        let mut aliases =
                            self.federation.connect_aliases.lock().unwrap_or_else(PoisonError::into_inner);
                        if aliases.len() > 10_000 {
                            aliases.clear();
                        }
                        aliases.insert(host.to_owned(), record.target.clone());
                        return Some(destination);
                    }
                }
                Err(e) => tracing::debug!(%name, error = %e, "SRV lookup failed"),
            }
        }
        None
    }

    /// The delegation `https://host/.well-known/matrix/server` names and how long to keep the
    /// answer (`None`: no delegation).
    async fn well_known(&self, server: &ServerName) -> (Option<OwnedServerName>, Duration) {
        let fallback = None;
        let url = format!("https://{}/.well-known/matrix/server", server.host());
        let response = match self.federation.http.get(&url).send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                tracing::debug!(%server, status = %r.status(), "no well-known delegation");
                return (fallback, discovery::WELL_KNOWN_ERROR_TTL);
            }
            Err(err) => {
                tracing::debug!(%server, error = %err, "well-known lookup failed");
                return (fallback, discovery::WELL_KNOWN_ERROR_TTL);
            }
        };
        let ttl = discovery::well_known_ttl(
            response.headers().get(reqwest::header::CACHE_CONTROL).and_then(|v| v.to_str().ok()),
        );
        match read_body(server.as_str(), response, discovery::WELL_KNOWN_MAX_BYTES).await {
            Ok(body) => match discovery::parse_well_known(&body) {
                Some(delegated) => (Some(delegated), ttl),
                None => (fallback, discovery::WELL_KNOWN_ERROR_TTL),
            },
            Err(_) => (fallback, discovery::WELL_KNOWN_ERROR_TTL),
        }
    }

    /// A signed `GET` to another server; the answer's JSON.
    pub async fn federation_get(
        &self,
        destination: &ServerName,
        path_and_query: &str,
    ) -> Result<Value, FederationError> {
        self.federation_send(reqwest::Method::GET, destination, path_and_query, &Value::Null).await
    }

    /// A signed request with a JSON body (`Value::Null`: no body) to another server.
    pub async fn federation_send(
        &self,
        method: reqwest::Method,
        destination: &ServerName,
        path_and_query: &str,
        body: &Value,
    ) -> Result<Value, FederationError> {
        let content = (!body.is_null()).then_some(body);
        let raw = self.federation_request(method, destination, path_and_query, content, true).await?;
        serde_json::from_slice(&raw).map_err(|e| FederationError::BadResponse {
            destination: destination.to_string(),
            reason: format!("not JSON: {e}"),
        })
    }

    /// A request to another server, signed or not; the answer's raw body.
    pub(super) async fn federation_request(
        &self,
        method: reqwest::Method,
        destination: &ServerName,
        path_and_query: &str,
        content: Option<&Value>,
        sign: bool,
    ) -> Result<Vec<u8>, FederationError> {
        if destination == self.server_name {
            return Err(FederationError::OwnServer(destination.to_owned()));
        }
        let name = destination.to_string();
        let target = self.federation_destination(destination).await?;
        let url = format!("{}{path_and_query}", target.base_url());
        let mut request = self.federation.http.request(method.clone(), &url);
        if sign {
            let header = xmatrix::sign_request(
                &self.keys.key_pair,
                &self.server_name,
                destination,
                method.as_str(),
                path_and_query,
                content,
            )
            .map_err(|reason| FederationError::BadResponse { destination: name.clone(), reason })?;
            request = request.header(reqwest::header::AUTHORIZATION, header);
        }
        if let Some(content) = content {
            request = request.json(content);
        }
        let response = request.send().await.map_err(|e| send_error(&name, &e))?;
        let response = successful(&name, response).await?;
        read_body(&name, response, MAX_RESPONSE_BYTES).await
    }

    /// A `GET` to another server, signed or not, whose answer is read as it streams (media):
    /// the response, once its status says success.
    pub(crate) async fn federation_get_streaming(
        &self,
        destination: &ServerName,
        path_and_query: &str,
        sign: bool,
    ) -> Result<reqwest::Response, FederationError> {
        if destination == self.server_name {
            return Err(FederationError::OwnServer(destination.to_owned()));
        }
        let name = destination.to_string();
        let target = self.federation_destination(destination).await?;
        let url = format!("{}{path_and_query}", target.base_url());
        let mut request = self.federation.http.get(&url).timeout(MEDIA_TIMEOUT);
        if sign {
            let header =
                xmatrix::sign_request(&self.keys.key_pair, &self.server_name, destination, "GET", path_and_query, None)
                    .map_err(|reason| FederationError::BadResponse { destination: name.clone(), reason })?;
            request = request.header(reqwest::header::AUTHORIZATION, header);
        }
        let response = request.send().await.map_err(|e| send_error(&name, &e))?;
        successful(&name, response).await
    }

    /// An unsigned `GET` of a URL another server pointed to (a media `Location`), under the same
    /// outbound address policy.
    pub(crate) async fn federation_get_url(
        &self,
        origin: &str,
        url: &str,
    ) -> Result<reqwest::Response, FederationError> {
        self.check_url_address(url)?;
        let response =
            self.federation.http.get(url).timeout(MEDIA_TIMEOUT).send().await.map_err(|e| send_error(origin, &e))?;
        successful(origin, response).await
    }

    /// A `GET` of a URL a user gave (a URL preview), reading at most `limit` bytes of the answer.
    pub(crate) async fn fetch_limited(&self, url: &reqwest::Url, limit: usize) -> Result<Fetched, FederationError> {
        let name = url.as_str();
        self.check_url_address(name)?;
        let response = self
            .federation
            .http
            .get(url.clone())
            .timeout(PREVIEW_TIMEOUT)
            .send()
            .await
            .map_err(|e| send_error(name, &e))?;
        let mut response = successful(name, response).await?;
        let final_url = response.url().clone();
        let content_type =
            response.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut bytes = Vec::new();
        let mut complete = true;
        while let Some(chunk) = response.chunk().await.map_err(|e| send_error(name, &e))? {
            if bytes.len() + chunk.len() > limit {
                bytes.extend_from_slice(&chunk[..limit - bytes.len()]);
                complete = false;
                break;
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Fetched { url: final_url, content_type, bytes, complete })
    }

    /// A JSON `POST` to a URL a user gave (a push gateway), under the outbound address policy:
    /// the answer's JSON (`{}` if it is not JSON).
    pub(crate) async fn push_gateway_post(&self, url: &str, body: &Value) -> Result<Value, FederationError> {
        self.check_url_address(url)?;
        let response = self
            .federation
            .http
            .post(url)
            .timeout(PUSH_GATEWAY_TIMEOUT)
            .json(body)
            .send()
            .await
            .map_err(|e| send_error(url, &e))?;
        let response = successful(url, response).await?;
        let raw = read_body(url, response, 64 * 1024).await?;
        Ok(serde_json::from_slice(&raw).unwrap_or_else(|_| Value::Object(Default::default())))
    }

    /// A URL's host, when it is an address rather than a name (names are checked as they are
    /// resolved), must be one the outbound policy allows.
    fn check_url_address(&self, url: &str) -> Result<(), FederationError> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| FederationError::Blocked { destination: url.to_owned(), reason: e.to_string() })?;
        let host = parsed.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
        match host.parse::<std::net::IpAddr>() {
            Ok(ip) if !self.federation.policy.allows(ip) => Err(FederationError::Blocked {
                destination: url.to_owned(),
                reason: format!("{ip} is refused by the outbound address policy"),
            }),
            _ => Ok(()),
        }
    }
}

/// What a bounded fetch read.
pub(crate) struct Fetched {
    /// Where the answer came from, after redirects.
    pub url: reqwest::Url,
    pub content_type: Option<String>,
    pub bytes: Vec<u8>,
    /// False when the answer was longer than the limit (`bytes` is its start).
    pub complete: bool,
}

/// The response if its status is a success; else the remote's Matrix error.
async fn successful(destination: &str, response: reqwest::Response) -> Result<reqwest::Response, FederationError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = read_body(destination, response, 64 * 1024).await.unwrap_or_default();
    let error: Option<Value> = serde_json::from_slice(&body).ok();
    let field = |key: &str| error.as_ref().and_then(|e| e.get(key)).and_then(Value::as_str).map(str::to_owned);
    Err(FederationError::Status {
        destination: destination.to_owned(),
        status: status.as_u16(),
        errcode: field("errcode"),
        error: field("error"),
    })
}
