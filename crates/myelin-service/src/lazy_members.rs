//! The member events each device was sent under lazy loading (sync v2 with `lazy_load_members`),
//! so that an incremental sync leaves out those it already has ("redundant members"), unless the
//! filter asks for them (`include_redundant_members`). Like Synapse's, the record is in memory
//! and bounded: a device it forgets, or one served by another process, is sent a member event
//! again, which is harmless; an initial sync starts the device's record afresh.

use std::{collections::HashSet, sync::Mutex};

use myelin_core::{
    lru::Lru,
    types::{DeviceId, OwnedDeviceId, OwnedEventId, OwnedUserId, UserId},
};

/// Member events remembered at most, over all devices.
const CAPACITY: usize = 200_000;
/// A device's record beyond this is started again (its client then gets repeats).
const MAX_PER_DEVICE: usize = 20_000;

type Device = (OwnedUserId, OwnedDeviceId);

pub struct LazyMembersSent {
    sent: Mutex<Lru<Device, HashSet<OwnedEventId>>>,
}

impl Default for LazyMembersSent {
    fn default() -> Self {
        Self { sent: Mutex::new(Lru::new(CAPACITY)) }
    }
}

impl LazyMembersSent {
    fn with<T>(&self, f: impl FnOnce(&mut Lru<Device, HashSet<OwnedEventId>>) -> T) -> T {
        let mut lru = self.sent.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut lru)
    }

    /// The device starts from nothing (an initial sync).
    pub fn forget_device(&self, user: &UserId, device: &DeviceId) {
        let device = (user.to_owned(), device.to_owned());
        self.with(|lru| lru.remove(&device));
    }

    /// Those of `ids` the device was not sent.
    pub fn unsent(&self, user: &UserId, device: &DeviceId, ids: Vec<OwnedEventId>) -> Vec<OwnedEventId> {
        if ids.is_empty() {
            return ids;
        }
        let device = (user.to_owned(), device.to_owned());
        self.with(|lru| match lru.get(&device) {
            Some(sent) => ids.into_iter().filter(|id| !sent.contains(id)).collect(),
            None => ids,
        })
    }

    /// The device was sent these member events.
    pub fn record(&self, user: &UserId, device: &DeviceId, ids: impl IntoIterator<Item = OwnedEventId>) {
        let mut ids = ids.into_iter().peekable();
        if ids.peek().is_none() {
            return;
        }
        let device = (user.to_owned(), device.to_owned());
        self.with(|lru| {
            let mut sent = lru.remove(&device).unwrap_or_default();
            if sent.len() >= MAX_PER_DEVICE {
                sent.clear();
            }
            sent.extend(ids);
            let weight = sent.len().max(1);
            lru.insert_weighted(device, sent, weight);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> OwnedUserId {
        OwnedUserId::try_from("@a:test").expect("user")
    }

    fn ids(list: &[&str]) -> Vec<OwnedEventId> {
        list.iter().map(|id| OwnedEventId::try_from(*id).expect("event id")).collect()
    }

    #[test]
    fn a_device_is_not_sent_a_member_event_twice() {
        let sent = LazyMembersSent::default();
        let (user, phone, laptop) = (user(), OwnedDeviceId::from("PHONE"), OwnedDeviceId::from("LAPTOP"));
        assert_eq!(sent.unsent(&user, &phone, ids(&["$m1", "$m2"])), ids(&["$m1", "$m2"]));
        sent.record(&user, &phone, ids(&["$m1"]));
        assert_eq!(sent.unsent(&user, &phone, ids(&["$m1", "$m2"])), ids(&["$m2"]));
        assert_eq!(sent.unsent(&user, &laptop, ids(&["$m1"])), ids(&["$m1"]), "per device");
        sent.forget_device(&user, &phone);
        assert_eq!(sent.unsent(&user, &phone, ids(&["$m1"])), ids(&["$m1"]), "after an initial sync");
    }
}
