//! The state before an event: the resolution of the states after its prev events (state
//! resolution v2; v2.1 in room version 12), with ruma's algorithm. Everything the algorithm reads
//! (the state events and their auth chains) is loaded before it runs: it is synchronous.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use myelin_core::{
    MatrixError, MatrixResult, StateMap,
    types::{EventId, OwnedEventId},
};
use ruma::{
    room_version_rules::RoomVersionRules,
    state_res::{self, utils::event_id_set::EventIdSet},
};

use crate::{Services, pdu::Pdu};

/// Events loaded for one resolution, by id.
pub(crate) type LoadedEvents = HashMap<OwnedEventId, Pdu>;

impl Services {
    /// Loads `roots` and every event reachable from them through `auth_events` into `into`
    /// (events not stored are skipped: the caller checks what it needs).
    pub(crate) async fn load_auth_closure(
        &self,
        roots: impl IntoIterator<Item = OwnedEventId>,
        into: &mut LoadedEvents,
    ) -> MatrixResult<()> {
        let mut frontier: Vec<OwnedEventId> = roots.into_iter().filter(|id| !into.contains_key(id)).collect();
        frontier.sort();
        frontier.dedup();
        while !frontier.is_empty() {
            let mut next: HashSet<OwnedEventId> = HashSet::new();
            for ev in self.events(&frontier).await? {
                let pdu = Pdu::from_stored(&ev)?;
                next.extend(pdu.auth_events.iter().filter(|a| !into.contains_key(*a)).cloned());
                into.insert(ev.event_id.clone(), pdu);
            }
            frontier = next.into_iter().filter(|id| !into.contains_key(id)).collect();
        }
        Ok(())
    }

    /// The state after several events merged: ruma's state resolution over their state maps.
    /// `unstored` is an event the states may name that is not stored yet (the one being placed).
    pub(crate) async fn resolve_states(
        &self,
        rules: &RoomVersionRules,
        states: &[Arc<StateMap>],
        unstored: Option<&Pdu>,
    ) -> MatrixResult<StateMap> {
        match states {
            [] => return Ok(StateMap::new()),
            [one] => return Ok((**one).clone()),
            [first, rest @ ..] if rest.iter().all(|s| s == first) => return Ok((**first).clone()),
            _ => {}
        }
        let v2_rules = rules
            .state_res
            .v2_rules()
            .ok_or_else(|| MatrixError::internal("room version 1 state resolution is not supported"))?;
        let mut loaded = LoadedEvents::new();
        if let Some(pdu) = unstored {
            loaded.insert(pdu.event_id.clone(), pdu.clone());
        }
        let roots = states
            .iter()
            .flat_map(|s| s.values().cloned())
            .chain(unstored.into_iter().flat_map(|p| p.auth_events.clone()));
        self.load_auth_closure(roots, &mut loaded).await?;
        let auth_chains: Vec<EventIdSet<OwnedEventId>> =
            states.iter().map(|s| auth_chain(s.values(), &loaded).into_iter().collect()).collect();
        let resolved = state_res::resolve(
            &rules.authorization,
            v2_rules,
            states.iter().map(|s| s.as_ref()),
            auth_chains,
            |id: &EventId| loaded.get(id).cloned(),
            |conflicted| Some(conflicted_subgraph(conflicted.values().flatten(), &loaded)),
        )
        .map_err(|e| MatrixError::internal(format!("state resolution failed: {e}")))?;
        Ok(resolved)
    }
}

/// The auth chain of `events`: every event reachable through `auth_events` (not the events
/// themselves, unless one is an auth event of another).
pub(crate) fn auth_chain<'a>(
    events: impl IntoIterator<Item = &'a OwnedEventId>,
    loaded: &LoadedEvents,
) -> HashSet<OwnedEventId> {
    let mut chain = HashSet::new();
    let mut stack: Vec<&OwnedEventId> =
        events.into_iter().filter_map(|id| loaded.get(id)).flat_map(|p| p.auth_events.iter()).collect();
    while let Some(id) = stack.pop() {
        if chain.insert(id.clone())
            && let Some(pdu) = loaded.get(id)
        {
            stack.extend(pdu.auth_events.iter());
        }
    }
    chain
}

/// The conflicted state subgraph (room v12, MSC4297): the events on an auth path from one
/// conflicted event to another, the conflicted events included.
pub(crate) fn conflicted_subgraph<'a>(
    conflicted: impl Iterator<Item = &'a OwnedEventId>,
    loaded: &LoadedEvents,
) -> EventIdSet<OwnedEventId> {
    let conflicted: HashSet<&OwnedEventId> = conflicted.collect();
    // Does an event reach a conflicted event through its auth events (itself excluded)?
    let mut reaches: HashMap<&OwnedEventId, bool> = HashMap::new();
    fn visit<'b>(
        id: &'b OwnedEventId,
        conflicted: &HashSet<&OwnedEventId>,
        loaded: &'b LoadedEvents,
        reaches: &mut HashMap<&'b OwnedEventId, bool>,
    ) -> bool {
        if let Some(known) = reaches.get(id) {
            return *known;
        }
        // Cycles cannot happen in a valid auth DAG; mark before descending all the same.
        reaches.insert(id, false);
        let mut found = false;
        if let Some(pdu) = loaded.get(id) {
            for parent in &pdu.auth_events {
                let parent_reaches = visit(parent, conflicted, loaded, reaches);
                if conflicted.contains(parent) || parent_reaches {
                    found = true;
                }
            }
        }
        reaches.insert(id, found);
        found
    }
    let mut subgraph: EventIdSet<OwnedEventId> = EventIdSet::new();
    for start in &conflicted {
        subgraph.insert((*start).clone());
        // Walk down from each conflicted event; keep what still leads to a conflicted event.
        let mut stack: Vec<&OwnedEventId> = vec![start];
        let mut seen: HashSet<&OwnedEventId> = HashSet::new();
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            let Some(pdu) = loaded.get(id) else { continue };
            for parent in &pdu.auth_events {
                if conflicted.contains(parent) || visit(parent, &conflicted, loaded, &mut reaches) {
                    subgraph.insert(parent.clone());
                    stack.push(parent);
                }
            }
        }
    }
    subgraph
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdu(id: &str, auth: &[&str]) -> (OwnedEventId, Pdu) {
        let json = serde_json::json!({
            "room_id": "!r:x", "sender": "@a:x", "origin_server_ts": 1, "type": "m.room.member",
            "state_key": "@a:x", "content": {"membership": "join"},
            "prev_events": [], "auth_events": auth,
        });
        let id = OwnedEventId::try_from(id).expect("id");
        (id.clone(), Pdu::from_json(&id, &json.to_string()).expect("pdu"))
    }

    fn loaded(events: &[(&str, &[&str])]) -> LoadedEvents {
        events.iter().map(|(id, auth)| pdu(id, auth)).collect()
    }

    fn ids(set: impl IntoIterator<Item = OwnedEventId>) -> Vec<String> {
        let mut v: Vec<String> = set.into_iter().map(|e| e.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn an_auth_chain_follows_auth_events_transitively() {
        let l = loaded(&[("$c", &[]), ("$p", &["$c"]), ("$j", &["$c", "$p"]), ("$m", &["$j", "$p"])]);
        let m = OwnedEventId::try_from("$m").expect("id");
        assert_eq!(ids(auth_chain([&m], &l)), vec!["$c", "$j", "$p"]);
    }

    #[test]
    fn the_conflicted_subgraph_holds_the_paths_between_conflicted_events() {
        // $c ← $p1 ← $x ← $p2 ; $c ← $other. Conflicted: $p1 and $p2 → the path $p1..$p2.
        let l = loaded(&[("$c", &[]), ("$p1", &["$c"]), ("$x", &["$p1"]), ("$p2", &["$x"]), ("$other", &["$c"])]);
        let (p1, p2) = (OwnedEventId::try_from("$p1").expect("id"), OwnedEventId::try_from("$p2").expect("id"));
        let sub = conflicted_subgraph([&p1, &p2].into_iter(), &l);
        assert_eq!(ids(sub), vec!["$p1", "$p2", "$x"]);
    }
}
