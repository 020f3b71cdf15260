//! Route tables. One module per API area; each handler parses, calls a service, serialises.

mod account;
mod admin;
mod appservice;
mod delayed_events;
mod devices;
mod directory;
mod ephemeral;
mod keys;
mod media;
mod oauth;
mod profile;
mod push_rules;
mod rendezvous;
mod rooms;
mod rtc;
mod search;
mod sync;
mod versions;

use std::collections::HashMap;

use axum::{
    Router,
    routing::{delete, get, post, put},
};
use myelin_core::{
    MatrixError,
    types::{OwnedEventId, OwnedRoomId, OwnedTransactionId, OwnedUserId},
};

use crate::AppState;

/// Routes served under `/_matrix/client/v3` and `/_matrix/client/r0`.
pub fn client_routes() -> Router<AppState> {
    Router::new()
        .route("/capabilities", get(versions::capabilities))
        .route("/login", get(account::login_flows).post(account::login))
        .route("/logout", post(account::logout))
        .route("/logout/all", post(account::logout_all))
        .route("/refresh", post(account::refresh))
        .route("/register", post(account::register))
        .route("/register/available", get(account::available))
        .route("/account/whoami", get(account::whoami))
        .route("/account/password", post(account::change_password))
        .route("/account/deactivate", post(account::deactivate))
        .route("/profile/{user_id}", get(profile::get_profile))
        .route(
            "/profile/{user_id}/{field}",
            get(profile::get_field).put(profile::set_field).delete(profile::delete_field),
        )
        .route("/account/3pid", get(account::threepids))
        .route("/account/3pid/add", post(account::add_threepid))
        .route("/account/3pid/delete", post(account::delete_threepid))
        .route("/account/3pid/email/requestToken", post(account::add_email_request_token))
        .route("/account/3pid/msisdn/requestToken", post(account::threepid_request_token))
        .route("/account/password/email/requestToken", post(account::password_email_request_token))
        .route("/account/password/msisdn/requestToken", post(account::threepid_request_token))
        .route("/register/email/requestToken", post(account::register_email_request_token))
        .route("/register/msisdn/requestToken", post(account::threepid_request_token))
        .route("/admin/whois/{user_id}", get(account::whois))
        .route("/thirdparty/protocols", get(directory::thirdparty_protocols))
        .route("/thirdparty/protocol/{protocol}", get(directory::thirdparty_unknown_protocol))
        .route("/thirdparty/location/{protocol}", get(directory::thirdparty_unknown_protocol))
        .route("/thirdparty/user/{protocol}", get(directory::thirdparty_unknown_protocol))
        .route("/thirdparty/location", get(directory::thirdparty_lookup))
        .route("/thirdparty/user", get(directory::thirdparty_lookup))
        .route("/voip/turnServer", get(rtc::turn_server))
        .route("/devices", get(devices::list))
        .route("/devices/{device_id}", get(devices::get).put(devices::update).delete(devices::delete))
        .route("/delete_devices", post(devices::delete_many))
        .route("/keys/upload", post(keys::upload))
        .route("/keys/query", post(keys::query))
        .route("/keys/claim", post(keys::claim))
        .route("/keys/changes", get(keys::changes))
        .route("/keys/device_signing/upload", post(keys::device_signing_upload))
        .route("/keys/signatures/upload", post(keys::signatures_upload))
        .route("/sendToDevice/{event_type}/{txn_id}", put(keys::send_to_device))
        .route("/room_keys/version", get(keys::backup_current).post(keys::backup_create))
        .route(
            "/room_keys/version/{version}",
            get(keys::backup_get).put(keys::backup_update).delete(keys::backup_delete),
        )
        .route(
            "/room_keys/keys",
            get(keys::backup_keys_get).put(keys::backup_keys_put).delete(keys::backup_keys_delete),
        )
        .route(
            "/room_keys/keys/{room_id}",
            get(keys::backup_room_get).put(keys::backup_room_put).delete(keys::backup_room_delete),
        )
        .route(
            "/room_keys/keys/{room_id}/{session_id}",
            get(keys::backup_session_get).put(keys::backup_session_put).delete(keys::backup_session_delete),
        )
        .route("/createRoom", post(rooms::create_room))
        .route("/join/{room}", post(rooms::join_by_id_or_alias))
        .route("/knock/{room}", post(rooms::knock))
        .route("/joined_rooms", get(rooms::joined_rooms))
        .route("/rooms/{room_id}/join", post(rooms::join))
        .route("/rooms/{room_id}/leave", post(rooms::leave))
        .route("/rooms/{room_id}/forget", post(rooms::forget))
        .route("/rooms/{room_id}/invite", post(rooms::invite))
        .route("/rooms/{room_id}/kick", post(rooms::kick))
        .route("/rooms/{room_id}/ban", post(rooms::ban))
        .route("/rooms/{room_id}/unban", post(rooms::unban))
        .route("/rooms/{room_id}/send/{event_type}/{txn_id}", put(rooms::send))
        .route("/rooms/{room_id}/send/{event_type}", post(rooms::send_without_txn))
        .route("/rooms/{room_id}/state", get(rooms::all_state))
        .route("/rooms/{room_id}/state/{event_type}", get(rooms::get_state_empty_key).put(rooms::put_state_empty_key))
        // An empty state key written out as a trailing slash (matrix-sdk does this).
        .route("/rooms/{room_id}/state/{event_type}/", get(rooms::get_state_empty_key).put(rooms::put_state_empty_key))
        .route("/rooms/{room_id}/state/{event_type}/{state_key}", get(rooms::get_state).put(rooms::put_state))
        .route("/rooms/{room_id}/redact/{event_id}/{txn_id}", put(rooms::redact))
        .route("/rooms/{room_id}/upgrade", post(rooms::upgrade))
        .route("/rooms/{room_id}/report/{event_id}", post(rooms::report_event))
        .route("/rooms/{room_id}/report", post(rooms::report_room))
        .route("/users/{user_id}/report", post(rooms::report_user))
        .route("/rooms/{room_id}/messages", get(rooms::messages))
        .route("/rooms/{room_id}/context/{event_id}", get(rooms::context))
        .route("/rooms/{room_id}/event/{event_id}", get(rooms::event))
        .route("/rooms/{room_id}/members", get(rooms::members))
        .route("/rooms/{room_id}/joined_members", get(rooms::joined_members))
        .route("/rooms/{room_id}/aliases", get(directory::room_aliases))
        .route("/rooms/{room_id}/typing/{user_id}", put(ephemeral::typing))
        .route("/rooms/{room_id}/receipt/{receipt_type}/{event_id}", post(ephemeral::receipt))
        .route("/rooms/{room_id}/read_markers", post(ephemeral::read_markers))
        .route(
            "/user/{user_id}/account_data/{data_type}",
            get(ephemeral::get_global_data).put(ephemeral::put_global_data),
        )
        .route(
            "/user/{user_id}/rooms/{room_id}/account_data/{data_type}",
            get(ephemeral::get_room_data).put(ephemeral::put_room_data),
        )
        .route("/user/{user_id}/rooms/{room_id}/tags", get(ephemeral::get_tags))
        .route("/user/{user_id}/rooms/{room_id}/tags/{tag}", put(ephemeral::put_tag).delete(ephemeral::delete_tag))
        .route("/user/{user_id}/filter", post(sync::create_filter))
        .route("/user/{user_id}/openid/request_token", post(account::openid_request_token))
        .route("/user/{user_id}/filter/{filter_id}", get(sync::get_filter))
        .route("/sync", get(sync::sync))
        .route(
            "/directory/room/{alias}",
            get(directory::get_alias).put(directory::put_alias).delete(directory::delete_alias),
        )
        .route("/directory/list/room/{room_id}", get(directory::get_visibility).put(directory::set_visibility))
        .route("/publicRooms", get(directory::public_rooms_get).post(directory::public_rooms_post))
        .route("/user_directory/search", post(directory::user_search))
        .route("/search", post(search::search))
        .route("/pushrules/", get(push_rules::get_all))
        .route("/pushrules/global/", get(push_rules::get_global))
        .route(
            "/pushrules/global/{kind}/{rule_id}",
            get(push_rules::get_rule).put(push_rules::put_rule).delete(push_rules::delete_rule),
        )
        .route("/pushrules/global/{kind}/{rule_id}/enabled", get(push_rules::get_enabled).put(push_rules::put_enabled))
        .route("/pushrules/global/{kind}/{rule_id}/actions", get(push_rules::get_actions).put(push_rules::put_actions))
        .route("/presence/{user_id}/status", get(ephemeral::get_presence).put(ephemeral::put_presence))
        .route("/pushers", get(push_rules::get_pushers))
        .route("/pushers/set", post(push_rules::set_pusher))
        .route("/notifications", get(push_rules::notifications))
}

/// Routes served under `/_matrix/client/v1`.
pub fn v1_routes() -> Router<AppState> {
    Router::new()
        .route("/auth_metadata", get(oauth::auth_metadata))
        .merge(msc4388_routes("/rendezvous"))
        .route("/appservice/{appservice_id}/ping", post(appservice::ping))
        .route("/rooms/{room_id}/hierarchy", get(rooms::hierarchy))
        .route("/room_summary/{room}", get(rooms::room_summary))
        .route("/rooms/{room_id}/relations/{event_id}", get(rooms::relations))
        .route("/rooms/{room_id}/relations/{event_id}/{rel_type}", get(rooms::relations_typed))
        .route("/rooms/{room_id}/relations/{event_id}/{rel_type}/{event_type}", get(rooms::relations_typed_evtype))
        .route("/rooms/{room_id}/threads", get(rooms::threads))
        .route("/rooms/{room_id}/timestamp_to_event", get(rooms::timestamp_to_event))
        .route("/mutual_rooms", get(rooms::mutual_rooms))
        .route("/register/m.login.registration_token/validity", get(account::registration_token_validity))
        .route("/login/get_token", post(account::get_login_token))
        .route("/rtc/transports", get(rtc::transports))
        .route("/media/config", get(media::config))
        .route("/media/download/{server_name}/{media_id}", get(media::download))
        .route("/media/download/{server_name}/{media_id}/{file_name}", get(media::download_named))
        .route("/media/thumbnail/{server_name}/{media_id}", get(media::thumbnail))
        .route("/media/preview_url", get(media::preview_url))
}

/// Uploads, under `/_matrix/media/{v3,r0,v1}`; the unauthenticated downloads there are frozen.
pub fn media_routes() -> Router<AppState> {
    Router::new()
        .route("/upload", post(media::upload))
        .route("/create", post(media::create))
        .route("/upload/{server_name}/{media_id}", put(media::upload_reserved))
        .route("/config", get(media::frozen))
        .route("/preview_url", get(media::frozen))
        .route("/download/{*rest}", get(media::frozen))
        .route("/thumbnail/{*rest}", get(media::frozen))
}

/// Room summaries (MSC3266) under their unstable prefix `/_matrix/client/unstable/im.nheko.summary`.
pub fn msc3266_routes() -> Router<AppState> {
    Router::new()
        .route("/summary/{room}", get(rooms::room_summary))
        .route("/rooms/{room}/summary", get(rooms::room_summary))
}

/// Mutual rooms as MSC2666 first had them, under `/_matrix/client/unstable/uk.half-shot.msc2666`.
pub fn msc2666_routes() -> Router<AppState> {
    Router::new().route("/user/mutual_rooms", get(rooms::mutual_rooms))
}

/// Delayed events (MSC4140), under `/_matrix/client/unstable/org.matrix.msc4140`.
pub fn msc4140_routes() -> Router<AppState> {
    Router::new()
        .route("/delayed_events", get(delayed_events::list))
        .route("/delayed_events/{delay_id}", post(delayed_events::update))
        .route("/delayed_events/{delay_id}/{action}", post(delayed_events::update_action))
}

/// MatrixRTC transports (MSC4143), under `/_matrix/client/unstable/org.matrix.msc4143`.
pub fn msc4143_routes() -> Router<AppState> {
    Router::new().route("/rtc/transports", get(rtc::transports))
}

/// The embedded LiveKit JWT service, under `myelin_service::rtc::LIVEKIT_SERVICE_PATH`.
pub fn livekit_routes() -> Router<AppState> {
    Router::new()
        .route("/sfu/get", post(rtc::sfu_get))
        .route("/get_token", post(rtc::get_token))
        .route("/delegate_delayed_leave", post(rtc::delegate_delayed_leave))
        .route("/sfu_webhook", post(rtc::sfu_webhook))
        .route("/healthz", get(rtc::healthz))
}

/// Dehydrated devices (MSC3814), under `/_matrix/client/unstable/org.matrix.msc3814.v1`.
pub fn msc3814_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/dehydrated_device",
            get(keys::dehydrated_get).put(keys::dehydrated_put).delete(keys::dehydrated_delete),
        )
        .route(
            "/dehydrated_device/{device_id}/events",
            get(keys::dehydrated_events_get).post(keys::dehydrated_events_post),
        )
}

/// Simplified sliding sync (MSC4186), under `/_matrix/client/unstable/org.matrix.simplified_msc3575`.
pub fn sliding_sync_routes() -> Router<AppState> {
    Router::new().route("/sync", post(sync::sliding_sync))
}

/// The admin API, under `/_synapse/admin`.
pub fn admin_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/send_server_notice", post(admin::send_server_notice))
        .route("/v1/send_server_notice/{txn_id}", put(admin::send_server_notice_txn))
        .route("/v1/server_version", get(admin::server_version))
        .route("/v2/users", get(admin::list_users))
        .route("/v2/users/{user_id}", get(admin::user))
        .route("/v1/whois/{user_id}", get(admin::whois))
        .route("/v1/deactivate/{user_id}", post(admin::deactivate))
        .route("/v1/reset_password/{user_id}", post(admin::reset_password))
        .route("/v2/users/{user_id}/devices", get(admin::devices))
        .route(
            "/v2/users/{user_id}/devices/{device_id}",
            get(admin::device).put(admin::rename_device).delete(admin::delete_device),
        )
        .route("/v2/users/{user_id}/delete_devices", post(admin::delete_devices))
        .route("/v1/users/{user_id}/joined_rooms", get(admin::joined_rooms))
        .route("/v1/users/{user_id}/memberships", get(admin::memberships))
        .route("/v1/users/{user_id}/pushers", get(admin::pushers))
        .route("/v1/users/{user_id}/media", get(admin::user_media).delete(admin::delete_user_media))
        .route("/v1/user/{user_id}/media/quarantine", post(admin::quarantine_user_media))
        .route("/v1/rooms", get(admin::list_rooms))
        .route("/v1/rooms/{room_id}", get(admin::room).delete(admin::delete_room_now))
        .route("/v2/rooms/{room_id}", delete(admin::delete_room))
        .route("/v1/rooms/{room_id}/members", get(admin::room_members))
        .route("/v1/rooms/{room_id}/state", get(admin::room_state))
        .route("/v1/rooms/{room_id}/forward_extremities", get(admin::forward_extremities))
        .route("/v1/rooms/{room_id}/block", get(admin::room_block).put(admin::set_room_block))
        .route("/v2/rooms/{room_id}/delete_status", get(admin::room_delete_status))
        .route("/v2/rooms/delete_status/{delete_id}", get(admin::delete_status))
        .route("/v1/room/{room_id}/media", get(admin::room_media))
        .route("/v1/room/{room_id}/media/quarantine", post(admin::quarantine_room_media))
        .route("/v1/media/{server_name}/{media_id}", get(admin::media_info).delete(admin::delete_media))
        .route("/v1/media/quarantine/{server_name}/{media_id}", post(admin::quarantine_media))
        .route("/v1/media/unquarantine/{server_name}/{media_id}", post(admin::unquarantine_media))
        .route("/v1/media/protect/{media_id}", post(admin::protect_media))
        .route("/v1/media/unprotect/{media_id}", post(admin::unprotect_media))
        .route("/v1/media/delete", post(admin::delete_old_media))
        .route("/v1/media/{server_name}/delete", post(admin::delete_old_media))
        .route("/v1/purge_media_cache", post(admin::purge_media_cache))
        .route("/v1/statistics/users/media", get(admin::media_statistics))
        .route("/v1/event_reports", get(admin::event_reports))
        .route("/v1/event_reports/{report_id}", get(admin::event_report).delete(admin::delete_event_report))
        .route("/v1/registration_tokens", get(admin::registration_tokens))
        .route("/v1/registration_tokens/new", post(admin::new_registration_token))
        .route(
            "/v1/registration_tokens/{token}",
            get(admin::registration_token)
                .put(admin::update_registration_token)
                .delete(admin::delete_registration_token),
        )
        .route("/v1/federation/destinations", get(admin::destinations))
        .route("/v1/federation/destinations/{destination}", get(admin::destination_info))
        .route("/v1/federation/destinations/{destination}/reset_connection", post(admin::reset_destination))
}

/// Routes outside the versioned prefixes.
pub fn unversioned_routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/client/versions", get(versions::versions))
        .route("/.well-known/matrix/client", get(versions::well_known))
        .route("/.well-known/matrix/support", get(versions::well_known_support))
        .route("/_myelin/email/validate", get(account::validate_email_link))
        .route("/health", get(|| async { "OK" }))
        .route("/_matrix/client/unstable/org.matrix.msc2965/auth_metadata", get(oauth::auth_metadata))
        .route("/_matrix/client/unstable/org.matrix.msc2965/auth_issuer", get(oauth::auth_issuer))
        .route("/.well-known/openid-configuration", get(oauth::auth_metadata))
        .route("/oauth2/registration", post(oauth::register_client))
        .route("/oauth2/token", post(oauth::token))
        .route("/oauth2/revoke", post(oauth::revoke))
        .route("/oauth2/device_authorization", post(oauth::device_authorization))
        .route("/oauth2/keys.json", get(oauth::jwks))
        .route("/oauth2/userinfo", get(oauth::userinfo))
        .route(rendezvous::MSC4108_PATH, post(rendezvous::msc4108_create))
        .route(
            &format!("{}/{{id}}", rendezvous::MSC4108_PATH),
            get(rendezvous::msc4108_get).put(rendezvous::msc4108_put).delete(rendezvous::msc4108_delete),
        )
        .merge(msc4388_routes("/_matrix/client/unstable/io.element.msc4388/rendezvous"))
}

/// MSC4388's rendezvous API under `base`.
fn msc4388_routes(base: &str) -> Router<AppState> {
    Router::new().route(base, get(rendezvous::msc4388_info).post(rendezvous::msc4388_create)).route(
        &format!("{base}/{{id}}"),
        get(rendezvous::msc4388_get).put(rendezvous::msc4388_put).delete(rendezvous::msc4388_delete),
    )
}

/// Query-string helpers that answer bad values with `M_INVALID_PARAM`.
pub(crate) type QueryMap = HashMap<String, String>;

pub(crate) fn query_u64(q: &QueryMap, key: &str) -> Result<Option<u64>, MatrixError> {
    match q.get(key) {
        None => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .map(Some)
            .map_err(|_| MatrixError::invalid_param(format!("{key} must be a non-negative integer"))),
    }
}

pub(crate) fn query_bool(q: &QueryMap, key: &str) -> Result<bool, MatrixError> {
    query_bool_or(q, key, false)
}

/// A boolean query parameter, `default` when absent.
pub(crate) fn query_bool_or(q: &QueryMap, key: &str, default: bool) -> Result<bool, MatrixError> {
    match q.get(key).map(String::as_str) {
        None => Ok(default),
        Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(_) => Err(MatrixError::invalid_param(format!("{key} must be true or false"))),
    }
}

/// A room id from a path or query (`M_INVALID_PARAM` if malformed).
pub(crate) fn room_id(raw: &str) -> Result<OwnedRoomId, MatrixError> {
    OwnedRoomId::try_from(raw).map_err(|_| MatrixError::invalid_param(format!("Invalid room id {raw:?}")))
}

/// A user id from a path or query.
pub(crate) fn user_id(raw: &str) -> Result<OwnedUserId, MatrixError> {
    OwnedUserId::try_from(raw).map_err(|_| MatrixError::invalid_param(format!("Invalid user id {raw:?}")))
}

/// A transaction id from a path: 1 to 255 bytes.
pub(crate) fn txn_id(raw: &str) -> Result<OwnedTransactionId, MatrixError> {
    // The prefix names the server's own sends of delayed events.
    if raw.is_empty() || raw.len() > 255 || raw.starts_with("org.matrix.msc4140.delay:") {
        return Err(MatrixError::invalid_param("Invalid transaction id"));
    }
    Ok(OwnedTransactionId::from(raw))
}

/// An event id from a path or query.
pub(crate) fn event_id(raw: &str) -> Result<OwnedEventId, MatrixError> {
    OwnedEventId::try_from(raw).map_err(|_| MatrixError::invalid_param(format!("Invalid event id {raw:?}")))
}
