//! Storage conformance suite: what the storage layer must do on every backend, driven through
//! the repository traits. Each test is a function of a fresh database URL, run once per backend
//! (the macro at the bottom): SQLite in a temporary file, PostgreSQL in a new database of the
//! test cluster. Every repository method is exercised by at least one test.

mod accounts;
mod admin;
mod changes;
mod cluster;
mod delayed_events;
mod e2ee;
mod ephemeral;
mod events;
mod federation;
mod jobs;
mod media;
mod oauth;
mod presence;
mod pushers;
mod reports;
mod rooms;
mod search;
mod server_keys;
mod sliding_sync;
mod sticky_events;

use std::sync::Arc;

use myelin_storage::*;
use ruma::{
    OwnedDeviceId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomVersionId,
    events::{StateEventType, TimelineEventType},
};

fn sqlite_db() -> String {
    let dir = std::env::temp_dir().join(format!("myelin-conformance-{}", rand::random::<u64>()));
    format!("sqlite:{}", dir.join("test.db").display())
}

/// A new database in the test cluster: `MYELIN_TEST_POSTGRES` (an admin URL), or the cluster that
/// `scripts/pg-test-cluster.sh` starts (or finds running).
async fn postgres_db() -> String {
    let admin = match std::env::var("MYELIN_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/pg-test-cluster.sh");
            let out = std::process::Command::new("bash").arg(script).output().expect("run pg-test-cluster.sh");
            assert!(out.status.success(), "pg-test-cluster.sh failed: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        }
    };
    let name = format!("conformance_{}", rand::random::<u64>());
    myelin_storage::create_database(&admin, &name).await.expect("create test database")
}

async fn open_store(url: &str) -> Arc<dyn Store> {
    open(url).await.expect("open store")
}

/// A second handle on the same database: another process of a PostgreSQL deployment (SQLite has
/// one process, so the same handle).
async fn another_process(url: &str, first: &Arc<dyn Store>) -> Arc<dyn Store> {
    if url.starts_with("postgres") { open_store(url).await } else { first.clone() }
}

/// Reads with `read` (every 20 ms, for up to 10 s) until `done` holds for what it gives: another
/// process hears of a change through the database's notifications, a moment after its commit.
async fn soon<T: std::fmt::Debug, F: std::future::Future<Output = T>>(
    what: &str,
    mut read: impl FnMut() -> F,
    done: impl Fn(&T) -> bool,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let value = read().await;
        if done(&value) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: still {value:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn uid(id: &str) -> OwnedUserId {
    OwnedUserId::try_from(id).expect("user id")
}

fn rid(id: &str) -> OwnedRoomId {
    OwnedRoomId::try_from(id).expect("room id")
}

fn eid(id: &str) -> OwnedEventId {
    OwnedEventId::try_from(id).expect("event id")
}

fn did(id: &str) -> OwnedDeviceId {
    OwnedDeviceId::from(id)
}

fn pos(p: i64) -> StreamPos {
    StreamPos(p)
}

fn user(id: &str) -> UserRecord {
    UserRecord {
        user_id: uid(id),
        password_hash: Some("hash".into()),
        is_admin: false,
        is_guest: false,
        deactivated: false,
        displayname: None,
        avatar_url: None,
        created_ms: 1,
    }
}

/// A minimal event for `room`, state if `state_key` is given.
fn event(room: &str, id: &str, event_type: &str, state_key: Option<&str>, prev: &[&str]) -> NewEvent {
    NewEvent {
        event_id: eid(id),
        room_id: rid(room),
        sender: uid("@a:test"),
        event_type: TimelineEventType::from(event_type),
        state_key: state_key.map(Into::into),
        origin_server_ts: 1,
        depth: 1,
        json: format!(r#"{{"type":"{event_type}","content":{{}}}}"#),
        prev_events: prev.iter().map(|p| eid(p)).collect(),
        txn: None,
        redacts: None,
        relation: None,
        membership: None,
        join_rule: None,
        new_room: (event_type == "m.room.create")
            .then(|| NewRoom { room_version: RoomVersionId::V12, creator: uid("@a:test") }),
        push_actions: vec![],
        expected_extremities: None,
        state: EventState::Current,
        member_changes: vec![],
        rejection: None,
        destinations: vec![],
        appservices: vec![],
        sticky_until_ms: None,
        search: None,
    }
}

/// An `m.room.member` event setting `user`'s membership.
fn member_event(room: &str, id: &str, user: &str, membership: Membership, prev: &[&str]) -> NewEvent {
    let mut ev = event(room, id, "m.room.member", Some(user), prev);
    ev.sender = uid(user);
    ev.membership = Some(MembershipUpdate {
        user_id: uid(user),
        membership,
        displayname: Some(user.trim_start_matches('@').split(':').next().unwrap_or_default().to_owned()),
        avatar_url: None,
    });
    ev
}

async fn persisted(store: &Arc<dyn Store>, ev: NewEvent) -> StreamPos {
    match store.persist_event(ev).await.expect("persist") {
        PersistOutcome::Persisted { stream_pos } => stream_pos,
        other => panic!("expected a new event, got {other:?}"),
    }
}

/// A room with its create event and these members joined (in order); returns the last event id.
async fn room_with(store: &Arc<dyn Store>, room: &str, members: &[&str]) -> String {
    let mut prev = format!("$create-{}", room.trim_start_matches('!'));
    persisted(store, event(room, &prev, "m.room.create", Some(""), &[])).await;
    for (i, member) in members.iter().enumerate() {
        let id = format!("$join{i}-{}", room.trim_start_matches('!'));
        persisted(store, member_event(room, &id, member, Membership::Join, &[&prev])).await;
        prev = id;
    }
    prev
}

fn state_type(t: &str) -> StateEventType {
    StateEventType::from(t)
}

/// Runs every conformance test against one backend.
macro_rules! backend {
    ($backend:ident, $url:expr, [$($module:ident :: $test:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$module::$test($url).await
                }
            )*
        }
    };
}

/// Every conformance test, once per backend.
macro_rules! all_backends {
    ($($module:ident :: $test:ident),* $(,)?) => {
        backend!(sqlite, super::sqlite_db(), [$($module::$test),*]);
        backend!(postgres, super::postgres_db().await, [$($module::$test),*]);
    };
}

all_backends!(
    accounts::users_are_unique_and_round_trip,
    accounts::profiles_passwords_and_the_user_directory,
    accounts::sessions_tokens_and_refresh,
    accounts::token_owners_follow_changes_made_anywhere,
    accounts::devices_are_listed_renamed_touched_and_deleted,
    accounts::expired_login_tokens_are_cleaned_up,
    accounts::erased_users_are_remembered,
    accounts::users_are_listed_for_the_admins,
    accounts::uia_sessions_remember_their_stages,
    events::events_positions_state_and_extremities,
    events::long_state_chains_resolve_through_snapshots,
    events::transaction_ids_make_sends_idempotent,
    events::old_transaction_ids_are_forgotten,
    events::concurrent_writes_get_distinct_ordered_positions,
    events::a_failing_write_does_not_poison_its_batch,
    events::a_lone_failing_write_commits_nothing_and_holds_no_one_back,
    events::data_survives_reopening,
    events::a_stale_head_writes_nothing,
    events::timelines_relations_threads_and_history_reads,
    events::redactions_mark_their_target,
    rooms::room_list_deltas_and_window_reads,
    rooms::member_counts_follow_membership_changes,
    rooms::summaries_list_the_earliest_members,
    rooms::memberships_state_and_room_mates,
    rooms::forgetting_a_room_is_remembered_until_rejoining,
    rooms::aliases_and_the_public_directory,
    ephemeral::account_data_receipts_and_unread_counts,
    ephemeral::room_wide_unread_counts_are_each_members_own,
    ephemeral::receipts_are_read_per_room_and_thread,
    ephemeral::filters_are_numbered_per_user,
    ephemeral::account_data_compare_and_set,
    e2ee::device_keys_one_time_and_fallback_keys,
    e2ee::key_counts_follow_changes_made_anywhere,
    e2ee::cross_signing_keys_and_device_list_changes,
    e2ee::to_device_inboxes,
    e2ee::key_backup_versions_and_keys,
    e2ee::dehydrated_devices_are_replaced_whole,
    e2ee::remote_device_lists_stream_ids_and_openid_tokens,
    sliding_sync::connections_are_saved_conditionally_and_trimmed,
    sliding_sync::connections_saved_at_once_each_get_their_own_outcome,
    federation::events_with_given_state_fork_and_merge,
    federation::rejected_events_and_outliers_stay_out_of_the_timeline,
    federation::the_outbox_and_the_inbound_transaction_log,
    federation::memberships_of_rooms_this_server_is_not_in,
    federation::backfilled_history_goes_before_the_timeline,
    federation::partial_state_is_completed_without_undoing_later_changes,
    jobs::the_job_queue_hands_each_due_job_to_one_worker,
    jobs::claims_take_the_kinds_asked_for,
    jobs::the_queue_is_counted_per_kind_and_found_by_key,
    delayed_events::delayed_events_have_one_job_each_and_a_limit_per_user,
    delayed_events::firing_a_delayed_event_ends_restarts_and_cancels,
    delayed_events::delegated_leaves_are_one_per_participant_and_taken_once,
    sticky_events::sticky_events_last_until_they_expire,
    changes::quiet_kinds_are_skipped_and_every_write_of_a_kind_is_still_read,
    changes::a_reopened_store_treats_everything_before_its_head_as_news,
    changes::another_process_learns_each_kind_of_change_with_the_head,
    cluster::the_stream_head_reaches_every_process,
    cluster::signals_reach_the_other_processes_only,
    cluster::a_burst_of_signals_arrives_whole_and_in_order,
    cluster::a_second_writer_on_the_same_database_takes_later_positions,
    cluster::side_by_side_writes_reach_every_process_at_once,
    server_keys::server_keys_are_cached_per_server_and_key_id,
    media::media_records_reservations_and_fills,
    media::media_thumbnails_are_kept_per_size_and_method,
    media::unused_media_is_found_and_deleted_with_its_unshared_blobs,
    pushers::pushers_positions_and_push_jobs,
    reports::event_reports_are_listed_filtered_and_deleted,
    reports::server_notice_rooms_are_one_per_user,
    search::indexed_events_are_found_by_words_phrases_and_prefixes,
    presence::presence_changes_take_positions_and_timers_expire_them,
    admin::registration_tokens_are_used_up_atomically,
    admin::media_quarantine_protection_and_lists,
    admin::rooms_are_blocked_listed_and_purged,
    admin::appservice_outboxes_and_their_transactions,
    admin::appservice_device_list_positions,
    oauth::code_grants_are_consented_once_and_exchanged_once,
    oauth::device_grants_are_approved_polled_and_exchanged_once,
    oauth::web_sessions_expire_and_follow_the_account,
    oauth::rendezvous_sessions_are_written_in_turn_and_expire,
    oauth::passkeys_and_their_challenges,
);

/// PostgreSQL with the NOTIFYs between processes held back (`MYELIN_BUS_DELAY_MS`, read when a
/// store opens): the other process's own commit and a refresh surely move its head before the
/// NOTIFY does, and each must bring the change marks with it. The test runs itself again in a
/// child process with the delay set (the variable holds for every store of a process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bus_learns_each_kind_with_the_head() {
    if std::env::var_os("MYELIN_BUS_DELAY_MS").is_some() {
        return changes::learns_each_kind_with_the_head(postgres_db().await, true).await;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let out = std::process::Command::new(exe)
        .env("MYELIN_BUS_DELAY_MS", "500")
        .args(["--exact", "slow_bus_learns_each_kind_with_the_head", "--nocapture"])
        .output()
        .expect("run the test binary again");
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the slow-bus run failed:\n{log}");
    assert!(log.contains("1 passed"), "the slow-bus run ran the test:\n{log}");
}
