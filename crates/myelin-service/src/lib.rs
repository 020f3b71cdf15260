//! Homeserver logic. Knows Matrix semantics (auth rules, sync, push rules) but no HTTP and no SQL:
//! it talks to storage through `myelin_storage::Store` and is driven by the API layer, which
//! reaches it only through `Services`' methods.

pub mod accounts;
pub mod admin;
pub mod appservices;
pub mod cache;
pub mod cluster;
pub mod delayed_events;
pub mod e2ee;
pub mod email;
pub mod ephemeral;
pub mod event_cache;
pub mod federation;
pub mod filter;
pub mod jobs;
pub mod keys;
pub mod lazy_members;
pub mod locks;
pub mod media;
pub mod metrics;
pub mod notifier;
pub mod oauth;
pub mod passwords;
pub mod pdu;
pub mod presence;
pub mod push;
pub mod pushers;
pub mod ratelimit;
pub mod rendezvous;
pub mod reports;
pub mod rooms;
pub mod rtc;
pub mod search;
pub mod server_notices;
pub mod shared_reads;
pub mod sliding_sync;
pub mod sticky_events;
pub mod sync;
pub mod typing;
pub mod uia;

use std::{sync::Arc, time::Duration};

use myelin_core::{
    Clock, OsRandom, Random, StateMap, SystemClock,
    config::Config,
    types::{OwnedEventId, OwnedRoomId, OwnedServerName, OwnedUserId, ServerName, UserId},
};
use myelin_storage::{Store, StoredEvent};

/// Storage record types the API layer receives from services (re-exported so it need not depend on storage).
pub use myelin_storage::{DeviceRecord, Direction};
pub use notifier::{ClusterNotifier, LocalNotifier};

/// Entries of the caches (each weighs 1 unless said otherwise).
const STATE_GROUPS_CACHED: usize = 4096;
const RULESETS_CACHED: usize = 10_000;
const IGNORED_LISTS_CACHED: usize = 10_000;
const ROOM_SUMMARIES_CACHED: usize = 20_000;
const DIRECT_ROOMS_CACHED: usize = 10_000;
const ROOM_KINDS_CACHED: usize = 20_000;
const SWEPT_INBOXES_CACHED: usize = 20_000;
const ANSWERED_COUNTS_CACHED: usize = 20_000;
/// Transactions this process sent lately, remembered so that a retry of one is answered without
/// a read (an older one, or one sent through another process, is found when it is written).
const SENT_TXNS_KEPT: usize = 50_000;
const SENT_TXN_KEPT_FOR: Duration = Duration::from_secs(3600);
/// Joined members kept for sending events, counted in members.
const JOINED_MEMBERS_KEPT: usize = 200_000;
/// Bytes of rooms' newest room-wide unread counts (about 100 per member).
const ROOM_UNREAD_CACHED_BYTES: usize = 8 << 20;
/// Live sliding sync timelines remembered for the listeners of the same event (one per room).
const TIMELINES_SHARED: usize = 16;
/// Thumbnails made at once: each decodes a whole image on a blocking thread (2 cores here).
const THUMBNAILS_AT_ONCE: usize = 2;
/// Bytes of event JSON kept by the event cache.
const EVENT_CACHE_BYTES: usize = 32 << 20;
/// Sliding sync connection rows kept per process, in bytes of state (the newest position's).
const SLIDING_CONNECTIONS_CACHED_BYTES: usize = 16 << 20;
/// How long a kept connection row answers for the database: a client that moved its connection
/// on through another process and comes back is read afresh after this.
const SLIDING_CONNECTION_TRUSTED: Duration = Duration::from_secs(60);
/// An event is read again after this long: the backstop for a redaction whose signal never
/// arrived (its process died between the commit and the broadcast).
const EVENT_MAX_AGE: Duration = Duration::from_secs(600);

/// Time and randomness, given to the services so tests can control them.
#[derive(Clone)]
pub struct Env {
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Random>,
}

impl Default for Env {
    /// The machine's clock and the operating system's randomness.
    fn default() -> Self {
        Self { clock: Arc::new(SystemClock), random: Arc::new(OsRandom) }
    }
}

/// Every service, built once at start-up and shared by the HTTP handlers. Its parts are private:
/// the API layer calls its methods.
pub struct Services {
    config: Config,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    keys: keys::ServerKeys,
    notifier: Arc<ClusterNotifier>,
    typing: typing::Typing,
    locks: locks::KeyedLocks,
    /// Resolved state groups (immutable: never invalidated).
    state_groups: cache::Cache<i64, Arc<StateMap>>,
    heads: rooms::RoomHeads,
    user_rooms: rooms::UserRoomsCache,
    /// Events by id (redactions invalidate).
    events_cache: cache::Cache<OwnedEventId, Arc<StoredEvent>>,
    /// Each user's push rules.
    push_rules: cache::Cache<OwnedUserId, Arc<ruma::push::Ruleset>>,
    /// Each user's `m.ignored_user_list`.
    ignored_users: cache::Cache<OwnedUserId, Arc<std::collections::HashSet<OwnedUserId>>>,
    /// Rooms' member counts and first members for sliding sync (good while no membership moved).
    room_members_summaries: cache::Cache<OwnedRoomId, sliding_sync::CachedMembers>,
    /// Each user's `m.direct` rooms, for sliding sync's `is_dm` filter.
    direct_rooms: cache::Cache<OwnedUserId, Arc<std::collections::HashSet<OwnedRoomId>>>,
    /// Rooms' type and encryption for sliding sync's filters, with the position they were read
    /// at (good while no state moved after it).
    room_kinds: cache::Cache<OwnedRoomId, sliding_sync::CachedKind>,
    /// `user|device` → a position at or below which the device's to-device inbox was found empty
    /// (no message acknowledged and left behind); good while no to-device message came after it.
    to_device_swept: cache::Cache<String, myelin_core::StreamPos>,
    /// Sliding sync connections as this process last read or saved them (see
    /// `sliding_sync::Services::sliding_base`: trusted only for a minute, and every save is
    /// still conditional on the stored row).
    sliding_connections: cache::Cache<myelin_storage::ConnectionKey, Arc<myelin_storage::StoredConnection>>,
    /// `user|device` → the `/sync` token last answered to the device and the one-time key
    /// counts that answer had: the counts a long-poll from that token compares with.
    answered_key_counts: cache::Cache<String, Arc<(sync::SyncToken, serde_json::Value)>>,
    /// Each small room's newest room-wide unread counts, with the position they are at: the
    /// next position's read only counts what came after it (`ephemeral::Services::room_unread_at`).
    room_unread_newest: cache::Cache<OwnedRoomId, Arc<ephemeral::RoomUnreadAt>>,
    /// Each room's joined members with the head they were read at, for the events sent to it.
    joined_members: cache::Cache<OwnedRoomId, (myelin_core::StreamPos, Arc<Vec<myelin_storage::MemberRecord>>)>,
    /// (sender, device, transaction id) → the event this process sent for it.
    sent_txns: cache::Cache<String, OwnedEventId>,
    /// A live update's unread counts of every joined member of a small room (room, position).
    room_unread: shared_reads::SharedReads<(OwnedRoomId, myelin_core::StreamPos), ephemeral::RoomUnread>,
    /// A live sliding sync update's one room timeline, read once for the listeners it woke.
    sliding_timelines:
        shared_reads::SharedReads<(myelin_storage::TimelineRequest, myelin_core::StreamPos), Arc<Vec<StoredEvent>>>,
    /// A live `/sync` update's newest page of one room (room, upper, since, events), read once
    /// for the listeners it woke.
    sync_timelines: shared_reads::SharedReads<
        (OwnedRoomId, myelin_core::StreamPos, myelin_core::StreamPos, usize),
        Arc<Vec<StoredEvent>>,
    >,
    /// Last `origin_server_ts` given to a create event (see `send.rs`).
    last_create_ts: std::sync::atomic::AtomicU64,
    limits: ratelimit::RateLimiters,
    trusted_proxies: myelin_core::proxies::TrustedProxies,
    passwords: passwords::PasswordHasher,
    server_name: OwnedServerName,
    /// Outbound federation: the HTTP client and the discovery cache.
    federation: federation::Federation,
    /// This process's name on the job queue (the holder of its leases).
    worker_id: String,
    /// Wake this process's job runner's lanes when a job is queued here (`jobs.rs`).
    jobs_queued: Arc<tokio::sync::Notify>,
    timers_queued: Arc<tokio::sync::Notify>,
    calls_queued: Arc<tokio::sync::Notify>,
    /// Calls to the LiveKit SFU's server API (`rtc/sfu_api.rs`).
    livekit_http: reqwest::Client,
    /// Member events each device was sent under lazy loading (sync v2).
    lazy_members: lazy_members::LazyMembersSent,
    /// Media bytes (`media.rs`).
    blobs: Arc<dyn myelin_storage::blob::BlobStore>,
    /// Thumbnails being made at once (CPU work, off the async threads).
    thumbnailer: tokio::sync::Semaphore,
    /// URL previews by URL (`media/preview.rs`).
    url_previews: cache::Cache<String, Arc<serde_json::Value>>,
    /// What this process last wrote of its users' presence (`presence.rs`).
    presence_seen: presence::PresenceSeen,
    /// Downloads recently recorded (`media/retention.rs`).
    media_accesses: media::retention::MediaAccesses,
    /// What the server counts for Prometheus (`metrics.rs`).
    metrics: metrics::Metrics,
    /// The application services of the registration files (`appservices/`).
    appservices: std::sync::RwLock<Arc<Vec<Arc<appservices::Appservice>>>>,
    /// Transactions, queries and pings to application services (their URLs are the admins'
    /// choice: no outbound address policy).
    appservice_http: reqwest::Client,
}

impl Services {
    /// The services on the machine's clock and the operating system's randomness.
    pub fn new(config: Config, store: Arc<dyn Store>, keys: keys::ServerKeys) -> Result<Arc<Self>, String> {
        Self::with_env(config, store, keys, Env::default())
    }

    /// The services with this clock and random source (tests).
    pub fn with_env(
        config: Config,
        store: Arc<dyn Store>,
        keys: keys::ServerKeys,
        env: Env,
    ) -> Result<Arc<Self>, String> {
        let server_name = ServerName::parse(&config.server_name)
            .map_err(|e| format!("invalid server_name {:?}: {e}", config.server_name))?;
        let Env { clock, random } = env;
        let limits = ratelimit::RateLimiters::new(&config.rate_limits, clock.clone());
        let trusted_proxies = myelin_core::proxies::TrustedProxies::parse(&config.trusted_proxies)
            .map_err(|e| format!("trusted_proxies: {e}"))?;
        let federation = federation::Federation::new(&config.federation)?;
        let worker_id = format!("{}-{}", std::process::id(), random.alphanumeric(8));
        let livekit_http = reqwest::Client::builder()
            .timeout(rtc::SFU_API_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the LiveKit API client: {e}"))?;
        let blobs = myelin_storage::blob::open_blob_store(&config)?;
        let appservices = appservices::load_registrations(&config.appservices, &server_name)
            .map_err(|problems| problems.join("\n"))?
            .into_iter()
            .map(Arc::new)
            .collect::<Vec<_>>();
        let appservices = std::sync::RwLock::new(Arc::new(appservices));
        let appservice_http = reqwest::Client::builder()
            .timeout(appservices::APPSERVICE_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the application service client: {e}"))?;
        let services = Arc::new(Self {
            config,
            store: store.clone(),
            keys,
            notifier: Arc::new(ClusterNotifier { local: LocalNotifier::default(), store }),
            typing: typing::Typing::new(clock.clone()),
            locks: locks::KeyedLocks::default(),
            state_groups: cache::Cache::new("state_groups", STATE_GROUPS_CACHED, None, clock.clone()),
            heads: rooms::RoomHeads::new(clock.clone()),
            user_rooms: rooms::UserRoomsCache::new(clock.clone()),
            events_cache: cache::Cache::new("events", EVENT_CACHE_BYTES, Some(EVENT_MAX_AGE), clock.clone()),
            push_rules: cache::Cache::new("push_rules", RULESETS_CACHED, None, clock.clone()),
            ignored_users: cache::Cache::new("ignored_users", IGNORED_LISTS_CACHED, None, clock.clone()),
            room_members_summaries: cache::Cache::new(
                "room_members_summaries",
                ROOM_SUMMARIES_CACHED,
                None,
                clock.clone(),
            ),
            direct_rooms: cache::Cache::new("direct_rooms", DIRECT_ROOMS_CACHED, None, clock.clone()),
            room_kinds: cache::Cache::new("room_kinds", ROOM_KINDS_CACHED, None, clock.clone()),
            room_unread_newest: cache::Cache::new("room_unread_newest", ROOM_UNREAD_CACHED_BYTES, None, clock.clone()),
            joined_members: cache::Cache::new("joined_members", JOINED_MEMBERS_KEPT, None, clock.clone()),
            sent_txns: cache::Cache::new("sent_txns", SENT_TXNS_KEPT, Some(SENT_TXN_KEPT_FOR), clock.clone()),
            to_device_swept: cache::Cache::new("to_device_swept", SWEPT_INBOXES_CACHED, None, clock.clone()),
            sliding_connections: cache::Cache::new(
                "sliding_connections",
                SLIDING_CONNECTIONS_CACHED_BYTES,
                Some(SLIDING_CONNECTION_TRUSTED),
                clock.clone(),
            ),
            answered_key_counts: cache::Cache::new("answered_key_counts", ANSWERED_COUNTS_CACHED, None, clock.clone()),
            room_unread: shared_reads::SharedReads::new(TIMELINES_SHARED),
            sliding_timelines: shared_reads::SharedReads::new(TIMELINES_SHARED),
            sync_timelines: shared_reads::SharedReads::new(TIMELINES_SHARED),
            last_create_ts: std::sync::atomic::AtomicU64::new(0),
            limits,
            trusted_proxies,
            passwords: passwords::PasswordHasher::new(2),
            server_name,
            federation,
            worker_id,
            jobs_queued: Arc::new(tokio::sync::Notify::new()),
            timers_queued: Arc::new(tokio::sync::Notify::new()),
            calls_queued: Arc::new(tokio::sync::Notify::new()),
            livekit_http,
            lazy_members: lazy_members::LazyMembersSent::default(),
            blobs,
            thumbnailer: tokio::sync::Semaphore::new(THUMBNAILS_AT_ONCE),
            url_previews: cache::Cache::new(
                "url_previews",
                media::preview::PREVIEWS_CACHED,
                Some(media::preview::PREVIEW_MAX_AGE),
                clock.clone(),
            ),
            presence_seen: presence::PresenceSeen::default(),
            media_accesses: media::retention::MediaAccesses::default(),
            metrics: metrics::Metrics::default(),
            appservices,
            appservice_http,
            clock,
            random,
        });
        cluster::follow_other_processes(&services);
        notifier::follow_stream_head(&services.notifier);
        Ok(services)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The reverse proxies whose `X-Forwarded-For` names the client.
    pub fn trusted_proxies(&self) -> &myelin_core::proxies::TrustedProxies {
        &self.trusted_proxies
    }

    pub fn server_name(&self) -> &ServerName {
        &self.server_name
    }

    /// `@localpart:server_name`.
    pub fn user_id(&self, localpart: &str) -> Result<OwnedUserId, myelin_core::MatrixError> {
        UserId::parse_with_server_name(localpart, &self.server_name)
            .map_err(|_| myelin_core::MatrixError::new(myelin_core::ErrorCode::InvalidUsername, "Invalid user id"))
    }

    pub fn is_local_user(&self, user_id: &UserId) -> bool {
        user_id.server_name() == self.server_name
    }

    /// Milliseconds since the epoch, by the services' clock.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
}
