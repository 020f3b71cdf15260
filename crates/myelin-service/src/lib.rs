//! Homeserver logic. Knows Matrix semantics (auth rules, sync, push rules) but no HTTP and no SQL:
//! it talks to storage through `myelin_storage::Store` and is driven by the API layer.

pub mod accounts;
pub mod cluster;
pub mod e2ee;
pub mod ephemeral;
pub mod event_cache;
pub mod filter;
pub mod jobs;
pub mod keys;
pub mod locks;
pub mod notifier;
pub mod passwords;
pub mod pdu;
pub mod push;
pub mod ratelimit;
pub mod rooms;
pub mod sliding_sync;
pub mod sync;
pub mod typing;
pub mod uia;

use std::sync::Arc;

use myelin_core::config::Config;
use myelin_storage::Store;

/// Storage record types the API layer receives from services (re-exported so it need not depend on storage).
pub use myelin_storage::{DeviceRecord, Direction};
pub use notifier::{ClusterNotifier, LocalNotifier};

/// Every service, built once at start-up and shared by the HTTP handlers.
pub struct Services {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub keys: keys::ServerKeys,
    pub notifier: Arc<ClusterNotifier>,
    pub typing: typing::Typing,
    pub uia: uia::UiaSessions,
    pub locks: locks::KeyedLocks,
    pub state_cache: rooms::StateCache,
    pub heads: rooms::RoomHeads,
    pub user_rooms: rooms::UserRoomsCache,
    pub event_cache: event_cache::EventCache,
    /// Last `origin_server_ts` given to a create event (see `send.rs`).
    pub last_create_ts: std::sync::atomic::AtomicU64,
    pub push: push::PushRulesCache,
    pub ignored: ephemeral::IgnoredUsersCache,
    pub limits: ratelimit::RateLimiters,
    pub passwords: passwords::PasswordHasher,
    pub server_name: ruma::OwnedServerName,
    /// Other servers' keys and device lists (federation; `Unfederated` until it exists).
    pub remote_keys: Arc<dyn e2ee::remote::RemoteKeys>,
    /// This process's name on the job queue (the holder of its leases).
    pub worker_id: String,
    /// Wakes this process's job runner when a job is queued here.
    pub jobs_queued: Arc<tokio::sync::Notify>,
}

impl Services {
    pub fn new(config: Config, store: Arc<dyn Store>, keys: keys::ServerKeys) -> Result<Arc<Self>, String> {
        let server_name = ruma::ServerName::parse(&config.server_name)
            .map_err(|e| format!("invalid server_name {:?}: {e}", config.server_name))?;
        let limits = ratelimit::RateLimiters::new(&config.rate_limits);
        let services = Arc::new(Self {
            config,
            store: store.clone(),
            keys,
            notifier: Arc::new(ClusterNotifier { local: LocalNotifier::default(), store }),
            typing: typing::Typing::default(),
            uia: uia::UiaSessions::default(),
            locks: locks::KeyedLocks::default(),
            state_cache: rooms::StateCache::default(),
            heads: rooms::RoomHeads::default(),
            user_rooms: rooms::UserRoomsCache::default(),
            event_cache: event_cache::EventCache::default(),
            last_create_ts: std::sync::atomic::AtomicU64::new(0),
            push: push::PushRulesCache::default(),
            ignored: ephemeral::IgnoredUsersCache::default(),
            limits,
            passwords: passwords::PasswordHasher::new(2),
            server_name,
            remote_keys: Arc::new(e2ee::remote::Unfederated),
            worker_id: format!("{}-{}", std::process::id(), myelin_core::random::alphanumeric(8)),
            jobs_queued: Arc::new(tokio::sync::Notify::new()),
        });
        cluster::follow_other_processes(&services);
        notifier::follow_stream_head(&services.notifier);
        Ok(services)
    }

    /// `@localpart:server_name`.
    pub fn user_id(&self, localpart: &str) -> String {
        format!("@{localpart}:{}", self.server_name)
    }

    pub fn is_local_user(&self, user_id: &str) -> bool {
        user_id.rsplit_once(':').is_some_and(|(_, server)| server == self.server_name.as_str())
    }
}
