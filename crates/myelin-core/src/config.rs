//! The configuration model. The binary fills it from defaults, the TOML file, environment variables
//! and flags (in that order, later wins); every other layer only reads it.

use std::{net::SocketAddr, path::PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The server name that appears in user ids and room aliases (`@alice:NAME`).
    pub server_name: String,
    /// Address of the client-server API listener.
    pub listen: SocketAddr,
    /// Where the signing key, the generated config and the SQLite database live.
    pub data_dir: PathBuf,
    /// `sqlite:PATH` or `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`; empty means `sqlite:<data_dir>/myelin.db`.
    pub database: String,
    /// The URL clients should use, published in `/.well-known/matrix/client`.
    /// Empty means `http://<listen>`.
    pub public_baseurl: String,
    /// Room version for new rooms when the client does not ask for one.
    pub default_room_version: String,
    /// `text` (human-readable) or `json`.
    pub log_format: String,
    /// What to log, as `RUST_LOG` says it (e.g. `info,myelin_service=debug`); empty: `RUST_LOG`,
    /// else `info`. Read again on SIGHUP.
    pub log_filter: String,
    /// Reverse proxies whose `X-Forwarded-For` names the client (addresses or CIDR ranges, e.g.
    /// `10.0.0.0/8`). Requests from anywhere else are attributed to their peer address.
    pub trusted_proxies: Vec<String>,
    pub registration: RegistrationConfig,
    pub limits: LimitsConfig,
    pub rate_limits: RateLimitsConfig,
    pub federation: FederationConfig,
    pub rtc: RtcConfig,
    pub media: MediaConfig,
    pub presence: PresenceConfig,
    pub turn: TurnConfig,
    pub support: SupportConfig,
    pub email: EmailConfig,
    pub server_notices: ServerNoticesConfig,
    pub metrics: MetricsConfig,
    pub oauth: OAuthConfig,
    /// Application service registration files (Synapse's YAML format), loaded at start
    /// (`MYELIN_APPSERVICES`, comma-separated).
    pub appservices: Vec<String>,
}

/// The OAuth 2.0 authorization server of next-gen auth (`[oauth]`): on by default, beside
/// `/login` and `/register`, which keep working.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OAuthConfig {
    /// Serve `auth_metadata`, the OAuth endpoints and the web pages. Off: they answer 404
    /// `M_UNRECOGNIZED`, as on a server without next-gen auth.
    pub enabled: bool,
    /// How long an access token an OAuth client gets works before it is refreshed (MAS's 5 minutes).
    pub access_token_lifetime_ms: u64,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self { enabled: true, access_token_lifetime_ms: 5 * 60 * 1000 }
    }
}

/// Prometheus metrics (`[metrics]`): served at `/metrics` on a listener of their own, off by
/// default (never on the public listener).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where to serve them (`--metrics-listen`, `MYELIN_METRICS_LISTEN`), e.g. 127.0.0.1:9090.
    pub listen: Option<SocketAddr>,
}

/// Server notices (`[server_notices]`): messages from the admins to a user (admin API
/// `send_server_notice`, `myelin user notice`), in the user's server notices room, sent by a
/// system user of this name. An empty `system_mxid_localpart` turns them off.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerNoticesConfig {
    pub system_mxid_localpart: String,
    pub system_mxid_display_name: String,
    pub system_mxid_avatar_url: String,
    pub room_name: String,
    pub room_topic: String,
}

impl Default for ServerNoticesConfig {
    fn default() -> Self {
        Self {
            system_mxid_localpart: "notices".to_owned(),
            system_mxid_display_name: "Server Notices".to_owned(),
            system_mxid_avatar_url: String::new(),
            room_name: "Server Notices".to_owned(),
            room_topic: String::new(),
        }
    }
}

/// Sending email (`[email]`): validation links for addresses (adding one to an account,
/// resetting a forgotten password). Off while `smtp_host` is empty.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    pub smtp_host: String,
    pub smtp_port: u16,
    /// Login for the SMTP server (AUTH PLAIN), if it needs one.
    pub smtp_user: String,
    pub smtp_pass: String,
    /// `starttls` (upgrade after connecting; refused if the server cannot), `tls` (TLS from the
    /// start, usually port 465) or `none` (plain text: a relay on the same machine only).
    pub tls: String,
    /// The sender, e.g. `Example <noreply@example.org>`; empty means `noreply@<server_name>`.
    pub from: String,
    /// How long a validation link works.
    pub validation_token_lifetime_ms: u64,
    /// Email pushers: a notification still unread this long after it came is emailed (with the
    /// others waiting), as Synapse's 10 minutes.
    pub notif_delay_ms: u64,
}

impl std::fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailConfig")
            .field("smtp_host", &self.smtp_host)
            .field("smtp_port", &self.smtp_port)
            .field("smtp_user", &self.smtp_user)
            .field("tls", &self.tls)
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            smtp_host: String::new(),
            smtp_port: 25,
            smtp_user: String::new(),
            smtp_pass: String::new(),
            tls: "starttls".to_owned(),
            from: String::new(),
            validation_token_lifetime_ms: 60 * 60 * 1000,
            notif_delay_ms: 10 * 60 * 1000,
        }
    }
}

impl EmailConfig {
    pub fn enabled(&self) -> bool {
        !self.smtp_host.is_empty()
    }
}

/// TURN servers for VoIP calls (`GET /voip/turnServer`, `[turn]`): either a shared secret
/// (credentials made per user, as coturn's `use-auth-secret`) or a fixed username and password.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TurnConfig {
    /// `turn:` / `turns:` URIs; none: clients get no TURN server.
    pub uris: Vec<String>,
    pub shared_secret: String,
    pub username: String,
    pub password: String,
    /// How long credentials made from the shared secret last; 0 means a day.
    pub user_lifetime_ms: u64,
}

/// Who to contact about the server (`/.well-known/matrix/support`, `[support]`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupportConfig {
    /// A web page for help.
    pub page: String,
    pub contacts: Vec<SupportContact>,
}

/// One contact: a role (`m.role.admin`, `m.role.security`) and a Matrix id and/or an email address.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupportContact {
    pub role: String,
    pub matrix_id: String,
    pub email_address: String,
}

/// Presence (`[presence]`): who is online, shown to the users they share a room with.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceConfig {
    /// `true` (tracked: syncing shows a user online, timers make them idle and offline),
    /// `"untracked"` (only what users set themselves) or `false` (no presence at all).
    pub enabled: PresenceEnabled,
    /// An online user who has done nothing for this long shows as `unavailable` (idle).
    pub idle_after_ms: u64,
    /// A user shows as `offline` this long after their last sync ended.
    pub offline_after_ms: u64,
}

/// `presence.enabled`: a boolean or `"untracked"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PresenceEnabled {
    Flag(bool),
    Mode(PresenceMode),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceMode {
    Untracked,
}

impl PresenceConfig {
    /// Presence is answered and sent at all.
    pub fn enabled(&self) -> bool {
        self.enabled != PresenceEnabled::Flag(false)
    }

    /// The server keeps presence from activity and timers.
    pub fn tracked(&self) -> bool {
        self.enabled == PresenceEnabled::Flag(true)
    }
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self { enabled: PresenceEnabled::Flag(true), idle_after_ms: 5 * 60 * 1000, offline_after_ms: 30_000 }
    }
}

/// The content repository (`[media]`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Largest upload, in bytes; larger ones get `M_TOO_LARGE` (413). Published as
    /// `m.upload.size` in the media config.
    pub max_upload_bytes: u64,
    /// Where the filesystem blob store keeps media; empty means `<data_dir>/media`. Processes
    /// sharing a PostgreSQL database must share this directory.
    pub path: PathBuf,
    /// Asynchronous uploads (MSC2246) one user may have reserved and not yet filled.
    pub max_pending_uploads: usize,
    /// How long a reserved media id may wait for its bytes, in milliseconds.
    pub unused_expiry_ms: u64,
    /// URL previews (`preview_url`): the server fetches the pages its users link to. Off by
    /// default; fetches obey `federation.ip_range_allowlist` (no private addresses).
    pub url_previews: bool,
    /// An S3-compatible object store for the bytes instead of `path` (`[media.s3]`): what
    /// processes on several machines share. Uploads are still spooled under `path`.
    pub s3: Option<S3Config>,
    /// This server's media not downloaded for this long is deleted (0: kept forever). Avatars
    /// (of users and rooms) are always kept.
    pub local_media_lifetime_ms: u64,
    /// Other servers' media cached here and not downloaded for this long is deleted (0: kept
    /// forever); it is fetched again when asked for.
    pub remote_media_lifetime_ms: u64,
    /// How much one user may upload per period (`[[media.upload_limits]]`, `period_ms` and
    /// `max_bytes`); past it, uploads get 400 `M_RESOURCE_LIMIT_EXCEEDED`.
    pub upload_limits: Vec<UploadLimit>,
}

/// At most `max_bytes` uploaded by one user in any `period_ms`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadLimit {
    pub period_ms: u64,
    pub max_bytes: u64,
}

/// An S3-compatible bucket (path-style requests, SigV4).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// `https://s3.eu-west-1.amazonaws.com`, `http://127.0.0.1:9000`, …
    pub endpoint: String,
    pub bucket: String,
    #[serde(default = "default_s3_region")]
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
}

/// Without the secret key (configurations are logged).
impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

fn default_s3_region() -> String {
    "us-east-1".to_owned()
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: 50 * 1024 * 1024,
            path: PathBuf::new(),
            max_pending_uploads: 5,
            unused_expiry_ms: 24 * 3600 * 1000,
            url_previews: false,
            s3: None,
            local_media_lifetime_ms: 0,
            remote_media_lifetime_ms: 0,
            upload_limits: Vec::new(),
        }
    }
}

/// MatrixRTC: delayed events (MSC4140) and the embedded LiveKit JWT service.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtcConfig {
    /// Longest delay a client may give a delayed event, in milliseconds; 0 turns delayed events
    /// off. Calls restart theirs every few seconds, so anything from a minute up serves them.
    pub max_event_delay_ms: u64,
    /// Delayed events one user may have pending at once.
    pub max_delayed_events_per_user: usize,
    /// The LiveKit SFU calls use (`[rtc.livekit]`). Unset: no call transport is advertised and
    /// the JWT service answers 404.
    pub livekit: Option<LiveKitConfig>,
}

impl Default for RtcConfig {
    fn default() -> Self {
        Self { max_event_delay_ms: 24 * 3600 * 1000, max_delayed_events_per_user: 100, livekit: None }
    }
}

/// A LiveKit SFU: where clients connect, and the API key and secret access tokens are signed with.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveKitConfig {
    /// The SFU's WebSocket URL handed to clients (`wss://livekit.example.com`).
    pub url: String,
    /// The API key (the tokens' issuer).
    pub key: String,
    /// The API secret the tokens are signed with (HS256).
    pub secret: String,
    /// The homeservers whose users may have the SFU create a call's room and may delegate their
    /// delayed leave (lk-jwt-service's `LIVEKIT_FULL_ACCESS_HOMESERVERS`); `"*"` for every one.
    /// This server is always one. Users of other servers may only join rooms that exist.
    #[serde(default)]
    pub full_access_homeservers: Vec<String>,
    /// The SFU's server API (room creation, participant lookups). Unset: the `url` with
    /// `ws`/`wss` read as `http`/`https`.
    #[serde(default)]
    pub api_url: Option<String>,
}

impl LiveKitConfig {
    /// An SFU at `url` with this API key and secret, full access for this server's users only.
    pub fn new(url: String, key: String, secret: String) -> Self {
        Self { url, key, secret, full_access_homeservers: Vec::new(), api_url: None }
    }

    /// The base URL of the SFU's server API.
    pub fn server_api_url(&self) -> String {
        let url = match &self.api_url {
            Some(url) => url.clone(),
            None => match self.url.split_once("://") {
                Some(("wss", rest)) => format!("https://{rest}"),
                Some(("ws", rest)) => format!("http://{rest}"),
                _ => self.url.clone(),
            },
        };
        url.trim_end_matches('/').to_owned()
    }
}

/// The server-server API: its TLS listener and how this server reaches others.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FederationConfig {
    /// Address of the built-in federation TLS listener (usually `0.0.0.0:8448`). Unset: no such
    /// listener; the federation routes are still served on the client listener (behind a
    /// TLS-terminating proxy).
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain of the federation listener. Unset (with `tls_key`): a self-signed
    /// certificate is generated into the data directory (`federation.crt`) and reused.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert` (generated as `federation.key` when unset).
    pub tls_key: Option<PathBuf>,
    /// Check other servers' certificates (turn off only for tests and local interop).
    pub verify_certificates: bool,
    /// Address ranges (CIDR) outbound requests may reach although they are loopback, private or
    /// otherwise refused by default (e.g. `127.0.0.1/32` for servers on one machine).
    pub ip_range_allowlist: Vec<String>,
    /// The DNS server (`IP:PORT`) asked for SRV records in server discovery. Unset: the first
    /// `nameserver` of `/etc/resolv.conf`.
    pub dns_server: Option<SocketAddr>,
}

impl Default for FederationConfig {
    fn default() -> Self {
        Self {
            listen: None,
            tls_cert: None,
            tls_key: None,
            verify_certificates: true,
            ip_range_allowlist: Vec::new(),
            dns_server: None,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrationConfig {
    /// Open registration. Unset: on only while the listener is on a loopback address.
    pub enabled: Option<bool>,
    /// When non-empty, registering requires one of these tokens (`m.login.registration_token`),
    /// even if open registration is off.
    pub tokens: Vec<String>,
    /// Guest accounts (`/register?kind=guest`): off unless set.
    pub allow_guests: bool,
    /// Registering needs a validated email address (`m.login.email.identity`), bound to the new
    /// account; needs `[email]`.
    pub require_email: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body accepted, in bytes; larger ones get `M_TOO_LARGE` (413).
    pub max_request_body_bytes: usize,
    /// Lifetime of access tokens issued with a refresh token, in milliseconds.
    pub refreshable_access_token_lifetime_ms: u64,
    /// Longest `/sync` long-poll a client may ask for, in milliseconds.
    pub max_sync_timeout_ms: u64,
    /// A sliding sync connection unused this long is forgotten (its `pos` gets `M_UNKNOWN_POS`
    /// and the client starts a new one), in milliseconds.
    pub sliding_sync_connection_idle_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_request_body_bytes: 8 * 1024 * 1024,
            refreshable_access_token_lifetime_ms: 5 * 60 * 1000,
            max_sync_timeout_ms: 60_000,
            sliding_sync_connection_idle_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

/// A token bucket: `per_second` refill rate and `burst` capacity. `per_second = 0` disables it.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitsConfig {
    /// Events sent by one user (messages, state, redactions).
    pub messages: RateLimit,
    /// Login attempts per client address.
    pub login: RateLimit,
    /// Registrations per client address.
    pub registration: RateLimit,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        Self {
            messages: RateLimit { per_second: 50.0, burst: 200 },
            login: RateLimit { per_second: 3.0, burst: 30 },
            registration: RateLimit { per_second: 3.0, burst: 30 },
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server_name: "localhost".to_owned(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8008)),
            data_dir: PathBuf::from("data"),
            database: String::new(),
            public_baseurl: String::new(),
            default_room_version: "12".to_owned(),
            log_format: "text".to_owned(),
            log_filter: String::new(),
            trusted_proxies: Vec::new(),
            registration: RegistrationConfig::default(),
            limits: LimitsConfig::default(),
            rate_limits: RateLimitsConfig::default(),
            federation: FederationConfig::default(),
            rtc: RtcConfig::default(),
            media: MediaConfig::default(),
            presence: PresenceConfig::default(),
            turn: TurnConfig::default(),
            support: SupportConfig::default(),
            server_notices: ServerNoticesConfig::default(),
            metrics: MetricsConfig::default(),
            oauth: OAuthConfig::default(),
            appservices: Vec::new(),
            email: EmailConfig::default(),
        }
    }
}

impl Config {
    /// The filesystem blob store's directory, with the default filled in.
    pub fn media_path(&self) -> PathBuf {
        if self.media.path.as_os_str().is_empty() { self.data_dir.join("media") } else { self.media.path.clone() }
    }

    /// The database URL, with the embedded default filled in.
    pub fn database_url(&self) -> String {
        if self.database.is_empty() {
            format!("sqlite:{}", self.data_dir.join("myelin.db").display())
        } else {
            self.database.clone()
        }
    }

    /// The database URL without its password, for logs.
    pub fn database_url_for_logs(&self) -> String {
        let url = self.database_url();
        let Some((scheme, rest)) = url.split_once("://") else { return url };
        match rest.split_once('@') {
            Some((credentials, host)) if credentials.contains(':') => {
                let user = credentials.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}:***@{host}")
            }
            _ => url,
        }
    }

    /// Whether open registration (`m.login.dummy`) is allowed.
    pub fn open_registration(&self) -> bool {
        self.registration.enabled.unwrap_or_else(|| self.listen.ip().is_loopback())
    }

    pub fn base_url(&self) -> String {
        if self.public_baseurl.is_empty() {
            format!("http://{}/", self.listen)
        } else if self.public_baseurl.ends_with('/') {
            self.public_baseurl.clone()
        } else {
            format!("{}/", self.public_baseurl)
        }
    }

    /// Checks values that deserialisation cannot; returns every problem found.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if ruma::ServerName::parse(&self.server_name).is_err() {
            problems.push(format!("server_name {:?} is not a valid Matrix server name", self.server_name));
        }
        let version = ruma::RoomVersionId::try_from(self.default_room_version.as_str());
        if !version.as_ref().is_ok_and(|v| v.rules().is_some()) {
            problems.push(format!("default_room_version {:?} is not supported", self.default_room_version));
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            problems.push(format!("log_format must be \"text\" or \"json\", not {:?}", self.log_format));
        }
        let db = self.database_url();
        if !["sqlite:", "postgres://", "postgresql://"].iter().any(|scheme| db.starts_with(scheme)) {
            problems.push(format!("database {db:?}: expected sqlite:PATH or postgres://USER@HOST/DB"));
        }
        if let Err(err) = crate::proxies::TrustedProxies::parse(&self.trusted_proxies) {
            problems.push(format!("trusted_proxies: {err}"));
        }
        if let Err(err) = crate::proxies::TrustedProxies::parse(&self.federation.ip_range_allowlist) {
            problems.push(format!("federation.ip_range_allowlist: {err}"));
        }
        if self.registration.require_email && !self.email.enabled() {
            problems.push("registration.require_email needs [email] (an smtp_host) to send the links".to_owned());
        }
        if let Some(metrics) = self.metrics.listen
            && (metrics == self.listen || Some(metrics) == self.federation.listen)
        {
            problems.push(format!("metrics.listen {metrics} must be a listener of its own"));
        }
        let notices = &self.server_notices.system_mxid_localpart;
        if !notices.is_empty() && ruma::UserId::parse(format!("@{notices}:{}", self.server_name)).is_err() {
            problems.push(format!("server_notices.system_mxid_localpart {notices:?} is not a valid user name"));
        }
        if self.federation.tls_cert.is_some() != self.federation.tls_key.is_some() {
            problems.push("federation.tls_cert and federation.tls_key go together: set both or neither".to_owned());
        }
        if let Some(livekit) = &self.rtc.livekit {
            if !(livekit.url.starts_with("wss://") || livekit.url.starts_with("ws://")) {
                problems.push(format!("rtc.livekit.url {:?}: expected a ws:// or wss:// URL", livekit.url));
            }
            if livekit.key.is_empty() || livekit.secret.is_empty() {
                problems.push("rtc.livekit.key and rtc.livekit.secret must not be empty".to_owned());
            }
            if let Some(api) = &livekit.api_url
                && !(api.starts_with("https://") || api.starts_with("http://"))
            {
                problems.push(format!("rtc.livekit.api_url {api:?}: expected an http:// or https:// URL"));
            }
            for server in &livekit.full_access_homeservers {
                if server != "*" && ruma::ServerName::parse(server).is_err() {
                    problems.push(format!("rtc.livekit.full_access_homeservers: {server:?} is not a server name"));
                }
            }
        }
        if self.media.upload_limits.iter().any(|l| l.period_ms == 0) {
            problems.push("media.upload_limits: period_ms must be more than 0".to_owned());
        }
        if !matches!(self.email.tls.as_str(), "starttls" | "tls" | "none") {
            problems.push(format!("email.tls must be \"starttls\", \"tls\" or \"none\", not {:?}", self.email.tls));
        }
        for uri in &self.turn.uris {
            if !(uri.starts_with("turn:") || uri.starts_with("turns:") || uri.starts_with("stun:")) {
                problems.push(format!("turn.uris: {uri:?} is not a turn:, turns: or stun: URI"));
            }
        }
        for contact in &self.support.contacts {
            if contact.role.is_empty() || (contact.matrix_id.is_empty() && contact.email_address.is_empty()) {
                problems.push("support.contacts: each needs a role and a matrix_id or an email_address".to_owned());
            }
        }
        if self.presence.idle_after_ms < 1000 || self.presence.offline_after_ms < 1000 {
            problems.push("presence.idle_after_ms and presence.offline_after_ms must be at least 1000".to_owned());
        }
        for (name, limit) in [
            ("messages", self.rate_limits.messages),
            ("login", self.rate_limits.login),
            ("registration", self.rate_limits.registration),
        ] {
            if limit.per_second < 0.0 || !limit.per_second.is_finite() {
                problems.push(format!("rate_limits.{name}.per_second must be a finite number >= 0"));
            }
        }
        problems
    }
}
