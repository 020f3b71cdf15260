//! Which rooms a connection's lists hold, in which order: the user's rooms (one indexed read,
//! with each room's sort key kept current by the event writer), filtered, sorted by `bump_stamp`,
//! cut to the requested ranges.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
};

use myelin_core::{
    MatrixResult, Membership, StreamPos,
    types::{OwnedRoomId, OwnedUserId, RoomId, StateEventType, UserId},
};
use myelin_storage::{Change, UserRoom};
use ruma::events::{GlobalAccountDataEventType, RoomAccountDataEventType};
use serde_json::Value;

use super::request::{ListFilters, ListRequest};
use crate::Services;

/// The sort key a client sees as `bump_stamp`: the newest bump event of a joined room, the
/// membership change for any other.
pub fn bump_stamp(room: &UserRoom) -> StreamPos {
    if room.membership == Membership::Join {
        if room.bump_pos > StreamPos::ZERO { room.bump_pos } else { room.last_event_pos }
    } else {
        room.membership_pos
    }
}

/// Rooms that belong in lists: joined, invited (not by an ignored user), knocked, kicked or
/// banned (not forgotten), and rooms the user left themself since `since`.
pub fn listed(
    room: &UserRoom,
    user_id: &UserId,
    since: Option<StreamPos>,
    until: StreamPos,
    ignored: &HashSet<OwnedUserId>,
) -> bool {
    if room.membership_pos > until {
        return false; // committed after this response's snapshot
    }
    match room.membership {
        Membership::Join | Membership::Knock => true,
        Membership::Invite => !ignored.contains(&room.membership_sender),
        Membership::Leave | Membership::Ban => {
            !room.forgotten && (room.membership_sender != user_id || since.is_some_and(|s| room.membership_pos > s))
        }
    }
}

/// A room's type (from its create event) and whether it is encrypted.
pub type RoomKind = (Option<String>, bool);

/// A room's kind and the stream head it was read at: good for any later position while no state
/// event came after it (a state event marks [`Change::Membership`] too: it is [`Change::Any`]).
pub(crate) type CachedKind = (StreamPos, RoomKind);

/// What filters need to know about a room beyond its membership row.
#[derive(Default)]
pub struct RoomFacts {
    /// `m.direct` rooms, read only when a filter needs them.
    pub dm_rooms: Option<Arc<HashSet<OwnedRoomId>>>,
    /// room → (room type, encrypted), for rooms a filter asked about.
    pub kinds: HashMap<OwnedRoomId, RoomKind>,
    pub tags: HashMap<OwnedRoomId, HashSet<String>>,
    pub space_children: HashSet<OwnedRoomId>,
}

impl Services {
    /// Room ids in `m.direct` of the user (kept until the user sets `m.direct` again).
    pub(crate) async fn dm_rooms(&self, user_id: &UserId) -> MatrixResult<Arc<HashSet<OwnedRoomId>>> {
        let key = user_id.to_owned();
        if let Some(rooms) = self.direct_rooms.get(&key) {
            return Ok(rooms);
        }
        let epoch = self.direct_rooms.epoch();
        let direct_type = GlobalAccountDataEventType::Direct.to_string();
        let stored = self.store.get_account_data(user_id, None, &direct_type).await?;
        let direct: Value = stored.and_then(|json| serde_json::from_str(&json).ok()).unwrap_or(Value::Null);
        let rooms: Arc<HashSet<OwnedRoomId>> = Arc::new(
            direct
                .as_object()
                .into_iter()
                .flat_map(|m| m.values())
                .filter_map(Value::as_array)
                .flatten()
                .filter_map(Value::as_str)
                .filter_map(|id| OwnedRoomId::try_from(id).ok())
                .collect(),
        );
        self.direct_rooms.insert_if_current(key, rooms.clone(), 1, epoch);
        Ok(rooms)
    }

    /// (room type from the create event, whether the room is encrypted) as of `pos`, a position
    /// the stream head has reached. Kept per room: every listener of a busy room asks it again
    /// after each message, and only a state event can change it.
    pub(crate) async fn room_kind(&self, room_id: &RoomId, pos: StreamPos) -> MatrixResult<RoomKind> {
        if let Some((read_at, kind)) =
            self.room_kinds.get_unchanged(&room_id.to_owned(), self.store.as_ref(), Change::Membership)
            && read_at <= pos
        {
            return Ok(kind);
        }
        let epoch = self.room_kinds.epoch();
        let kind = self.read_room_kind(room_id, pos).await?;
        self.room_kinds.insert_if_current(room_id.to_owned(), (pos, kind.clone()), 1, epoch);
        Ok(kind)
    }

    async fn read_room_kind(&self, room_id: &RoomId, pos: StreamPos) -> MatrixResult<RoomKind> {
        let state = self.state_at(room_id, pos).await?;
        let encrypted = state.contains_key(&(StateEventType::RoomEncryption, String::new()));
        let room_type = match state.get(&(StateEventType::RoomCreate, String::new())) {
            Some(id) => self.event(id).await?.and_then(|ev| {
                let v: Value = serde_json::from_str(&ev.json).ok()?;
                v["content"]["type"].as_str().map(str::to_owned)
            }),
            None => None,
        };
        Ok((room_type, encrypted))
    }

    /// Gathers what the lists' filters need, reading only what some filter uses.
    pub(crate) async fn room_facts(
        &self,
        user_id: &UserId,
        rooms: &[&UserRoom],
        lists: &BTreeMap<String, ListRequest>,
        until: StreamPos,
    ) -> MatrixResult<RoomFacts> {
        let mut facts = RoomFacts::default();
        let filters: Vec<&ListFilters> = lists.values().map(|l| &l.filters).collect();
        if filters.iter().any(|f| f.is_dm.is_some()) {
            facts.dm_rooms = Some(self.dm_rooms(user_id).await?);
        }
        if filters.iter().any(|f| f.needs_state()) {
            for room in rooms {
                let at = if room.membership == Membership::Join { until } else { room.membership_pos.min(until) };
                facts.kinds.insert(room.room_id.clone(), self.room_kind(&room.room_id, at).await?);
            }
        }
        if filters.iter().any(|f| f.needs_tags()) {
            let tag_type = RoomAccountDataEventType::Tag.to_string();
            for data in self.store.account_data_since(user_id, StreamPos::ZERO, until).await? {
                if let Some(room_id) = data.room_id
                    && data.data_type == tag_type
                {
                    let content: Value = serde_json::from_str(&data.content).unwrap_or(Value::Null);
                    let tags = content["tags"].as_object().map(|t| t.keys().cloned().collect()).unwrap_or_default();
                    facts.tags.insert(room_id, tags);
                }
            }
        }
        let spaces: HashSet<&OwnedRoomId> = filters.iter().filter_map(|f| f.spaces.as_ref()).flatten().collect();
        for space in spaces {
            let state = self.state_at(space, until).await?;
            let ids: Vec<_> =
                state.iter().filter(|((t, _), _)| *t == StateEventType::SpaceChild).map(|(_, id)| id.clone()).collect();
            for ev in self.events(&ids).await? {
                let v: Value = serde_json::from_str(&ev.json).unwrap_or(Value::Null);
                // A child link without `via` is a removed one.
                if v["content"]["via"].as_array().is_some_and(|via| !via.is_empty())
                    && let Some(child) = ev.state_key.and_then(|key| OwnedRoomId::try_from(key).ok())
                {
                    facts.space_children.insert(child);
                }
            }
        }
        Ok(facts)
    }
}

/// Whether `room` passes every filter given (absent filters pass everything).
pub fn matches(filters: &ListFilters, room: &UserRoom, facts: &RoomFacts) -> bool {
    if let Some(invite) = filters.is_invite
        && invite != (room.membership == Membership::Invite)
    {
        return false;
    }
    if let Some(dm) = filters.is_dm
        && dm != facts.dm_rooms.as_ref().is_some_and(|d| d.contains(&room.room_id))
    {
        return false;
    }
    let (room_type, encrypted) = facts.kinds.get(&room.room_id).cloned().unwrap_or((None, false));
    if let Some(want) = filters.is_encrypted
        && want != encrypted
    {
        return false;
    }
    if filters.not_room_types.contains(&room_type) {
        return false;
    }
    if let Some(types) = &filters.room_types
        && !types.contains(&room_type)
    {
        return false;
    }
    let tags = facts.tags.get(&room.room_id);
    if filters.not_tags.iter().any(|t| tags.is_some_and(|tags| tags.contains(t))) {
        return false;
    }
    if let Some(wanted) = &filters.tags
        && !wanted.iter().any(|t| tags.is_some_and(|tags| tags.contains(t)))
    {
        return false;
    }
    if filters.spaces.is_some() && !facts.space_children.contains(&room.room_id) {
        return false;
    }
    true
}

/// Indices of `ranges` (inclusive) that exist in a list of `count` rooms.
pub fn in_ranges(ranges: &[(usize, usize)], count: usize) -> impl Iterator<Item = usize> + '_ {
    let mut seen = HashSet::new();
    ranges
        .iter()
        .flat_map(move |&(a, b)| if count == 0 || a >= count { 0..0 } else { a..b.min(count - 1) + 1 })
        .filter(move |i| seen.insert(*i))
}

#[cfg(test)]
mod tests {
    use std::{collections::HashSet, sync::Arc};

    use myelin_core::{Membership, StreamPos, types::OwnedUserId};
    use myelin_storage::UserRoom;
    use ruma::{event_id, room_id, user_id};

    use super::{ListFilters, RoomFacts, bump_stamp, in_ranges, listed, matches};

    fn room(id: &str, membership: Membership, sender: &str, pos: i64) -> UserRoom {
        UserRoom {
            room_id: id.try_into().expect("room id"),
            membership,
            membership_event_id: event_id!("$m").to_owned(),
            membership_pos: StreamPos(pos),
            last_event_pos: StreamPos(pos + 10),
            bump_pos: StreamPos(pos + 5),
            forgotten: false,
            membership_sender: sender.try_into().expect("user id"),
        }
    }

    #[test]
    fn a_joined_room_sorts_by_its_last_bump_others_by_the_membership_change() {
        let joined = room("!a:x", Membership::Join, "@me:x", 100);
        assert_eq!(bump_stamp(&joined), StreamPos(105));
        let never_bumped = UserRoom { bump_pos: StreamPos::ZERO, ..joined.clone() };
        assert_eq!(bump_stamp(&never_bumped), StreamPos(110));
        assert_eq!(bump_stamp(&room("!b:x", Membership::Invite, "@you:x", 100)), StreamPos(100));
    }

    #[test]
    fn lists_hold_current_rooms_and_leaves_the_user_did_not_make_or_just_made() {
        let me = user_id!("@me:x");
        let nobody: HashSet<OwnedUserId> = HashSet::new();
        let now = StreamPos(1_000);
        assert!(listed(&room("!a:x", Membership::Join, "@me:x", 10), me, None, now, &nobody));
        assert!(listed(&room("!a:x", Membership::Knock, "@me:x", 10), me, None, now, &nobody));
        assert!(!listed(&room("!a:x", Membership::Join, "@me:x", 2_000), me, None, now, &nobody), "after the snapshot");
        let invite = room("!a:x", Membership::Invite, "@spammer:x", 10);
        assert!(listed(&invite, me, None, now, &nobody));
        let ignoring: HashSet<OwnedUserId> = [user_id!("@spammer:x").to_owned()].into();
        assert!(!listed(&invite, me, None, now, &ignoring), "invites from ignored users are hidden");
        assert!(listed(&room("!a:x", Membership::Leave, "@admin:x", 10), me, None, now, &nobody), "kicked");
        assert!(listed(&room("!a:x", Membership::Ban, "@admin:x", 10), me, None, now, &nobody), "banned");
        let left = room("!a:x", Membership::Leave, "@me:x", 10);
        assert!(!listed(&left, me, None, now, &nobody), "own leave on a new connection");
        assert!(listed(&left, me, Some(StreamPos(5)), now, &nobody), "own leave since the last response");
        assert!(!listed(&left, me, Some(StreamPos(10)), now, &nobody));
        let forgotten = UserRoom { forgotten: true, ..room("!a:x", Membership::Leave, "@admin:x", 10) };
        assert!(!listed(&forgotten, me, None, now, &nobody));
    }

    #[test]
    fn filters_combine_membership_dm_kind_tags_and_spaces() {
        let dm = room("!dm:x", Membership::Join, "@me:x", 1);
        let space_child = room("!child:x", Membership::Invite, "@you:x", 2);
        let mut facts = RoomFacts { dm_rooms: Some(Arc::new([dm.room_id.clone()].into())), ..RoomFacts::default() };
        facts.kinds.insert(dm.room_id.clone(), (None, true));
        facts.kinds.insert(space_child.room_id.clone(), (Some("m.space".into()), false));
        facts.tags.insert(dm.room_id.clone(), ["m.favourite".to_owned()].into());
        facts.space_children.insert(space_child.room_id.clone());

        let all = ListFilters::default();
        assert!(matches(&all, &dm, &facts) && matches(&all, &space_child, &facts));
        let invites = ListFilters { is_invite: Some(true), ..ListFilters::default() };
        assert!(!matches(&invites, &dm, &facts) && matches(&invites, &space_child, &facts));
        let dms = ListFilters { is_dm: Some(true), ..ListFilters::default() };
        assert!(matches(&dms, &dm, &facts) && !matches(&dms, &space_child, &facts));
        let encrypted = ListFilters { is_encrypted: Some(true), ..ListFilters::default() };
        assert!(matches(&encrypted, &dm, &facts) && !matches(&encrypted, &space_child, &facts));
        let no_spaces = ListFilters { not_room_types: vec![Some("m.space".into())], ..ListFilters::default() };
        assert!(matches(&no_spaces, &dm, &facts) && !matches(&no_spaces, &space_child, &facts));
        let untyped = ListFilters { room_types: Some(vec![None]), ..ListFilters::default() };
        assert!(matches(&untyped, &dm, &facts) && !matches(&untyped, &space_child, &facts));
        let favourites = ListFilters { tags: Some(vec!["m.favourite".into()]), ..ListFilters::default() };
        assert!(matches(&favourites, &dm, &facts) && !matches(&favourites, &space_child, &facts));
        let not_favourites = ListFilters { not_tags: vec!["m.favourite".into()], ..ListFilters::default() };
        assert!(!matches(&not_favourites, &dm, &facts) && matches(&not_favourites, &space_child, &facts));
        let in_space = ListFilters { spaces: Some(vec![room_id!("!space:x").to_owned()]), ..ListFilters::default() };
        assert!(!matches(&in_space, &dm, &facts) && matches(&in_space, &space_child, &facts));
    }

    #[test]
    fn ranges_are_inclusive_clipped_and_deduplicated() {
        let ids = |ranges: &[(usize, usize)], count| in_ranges(ranges, count).collect::<Vec<_>>();
        assert_eq!(ids(&[(0, 2)], 10), vec![0, 1, 2]);
        assert_eq!(ids(&[(8, 20)], 10), vec![8, 9]);
        assert_eq!(ids(&[(0, 1), (1, 3)], 10), vec![0, 1, 2, 3]);
        assert_eq!(ids(&[(12, 20)], 10), Vec::<usize>::new());
        assert_eq!(ids(&[(0, 5)], 0), Vec::<usize>::new());
    }
}
