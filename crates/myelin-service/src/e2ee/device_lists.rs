//! Device-list tracking: which users' devices a user must re-query (`changed`) or may forget
//! (`left`) between two stream positions, following room sharing (invariants 7, 8 of the E2EE
//! research note). Used by sync and `/keys/changes`.

use std::collections::BTreeSet;

use myelin_core::MatrixResult;
use myelin_storage::{StreamPos, UserRoom};

use crate::Services;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct DeviceListDelta {
    pub changed: BTreeSet<String>,
    pub left: BTreeSet<String>,
}

impl DeviceListDelta {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.left.is_empty()
    }
}

impl Services {
    /// Users whose device lists `user_id` must hear about for `(since, until]`.
    pub async fn device_list_delta(
        &self,
        user_id: &str,
        rooms: &[UserRoom],
        since: StreamPos,
        until: StreamPos,
    ) -> MatrixResult<DeviceListDelta> {
        let mut candidates: BTreeSet<String> =
            self.store.device_list_changes(since, until).await?.into_iter().collect();
        let mut departed: BTreeSet<String> = BTreeSet::new();
        // Membership changes in the user's rooms: newly shared users have changed device lists
        // from this user's point of view; users gone may have left entirely.
        // Only rooms with news can have membership changes; of those, only the changed members
        // are read, except in a room the user joined or left now, where every member counts.
        for room in rooms.iter().filter(|r| r.last_event_pos > since) {
            let own_change = room.membership_pos > since && room.membership_pos <= until;
            if room.membership != "join" && !own_change {
                continue;
            }
            let members = if own_change {
                self.store.room_members(&room.room_id, None).await?
            } else {
                self.store.membership_changes(&room.room_id, since, until).await?
            };
            for member in members {
                match member.membership.as_str() {
                    "join" | "invite" if room.membership == "join" => {
                        candidates.insert(member.user_id);
                    }
                    _ => {
                        departed.insert(member.user_id);
                    }
                }
            }
        }
        let mut everyone: Vec<String> = candidates.iter().chain(departed.iter()).cloned().collect();
        everyone.sort();
        everyone.dedup();
        everyone.retain(|u| u != user_id);
        let sharing: BTreeSet<String> = self.store.sharing_rooms_with(user_id, &everyone).await?.into_iter().collect();
        let mut delta = DeviceListDelta::default();
        for user in candidates {
            if user == user_id || sharing.contains(&user) {
                delta.changed.insert(user);
            }
        }
        for user in departed {
            if user != user_id && !sharing.contains(&user) {
                delta.left.insert(user);
            }
        }
        delta.changed.retain(|u| !delta.left.contains(u));
        Ok(delta)
    }
}

impl Services {
    /// Deletes devices (tokens, keys, inbox) and tells everyone sharing a room with the user.
    pub async fn delete_devices(&self, user_id: &str, device_ids: &[String]) -> MatrixResult<()> {
        self.store.delete_devices(user_id, device_ids).await?;
        self.announce_device_change(user_id).await
    }

    /// Deletes every device of the user but `keep`, as `delete_devices` does.
    pub async fn delete_all_devices(&self, user_id: &str, keep: Option<&str>) -> MatrixResult<()> {
        self.store.delete_all_devices(user_id, keep).await?;
        self.announce_device_change(user_id).await
    }
}
