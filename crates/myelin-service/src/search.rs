//! Full-text search of room history (`POST /search`).
//!
//! What is indexed: an accepted event's `content.body` (`m.room.message`), `content.name`
//! (`m.room.name`) and `content.topic` (`m.room.topic`), written in the event's own transaction
//! ([`search_entry`] builds the row) and dropped when the event is redacted. Encrypted events are
//! never indexed: the server cannot read them.
//!
//! One normalisation ([`normalise`]) serves the index and the query, so both backends see the
//! same words: lowercase alphanumeric runs, and every CJK character a word of its own. A CJK
//! word in a query is then a phrase of its characters, found wherever they stand together —
//! without a dictionary, on SQLite's FTS5 and PostgreSQL's `simple` configuration alike.
//!
//! Queries: words (each also matching words it begins), `"quoted phrases"`, `-excluded` words;
//! every term must match. Results are what the searcher may see: rooms they are in, rooms they
//! left up to their leave, each event under its own history visibility.

use std::collections::{HashMap, HashSet};

use myelin_core::{
    MatrixError, MatrixResult, Membership, StreamPos,
    types::{OwnedEventId, OwnedRoomId, OwnedUserId, TimelineEventType},
};
use myelin_storage::{SearchEntry, SearchHit, SearchOrder, SearchQuery, SearchTerm, StoredEvent};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{
    Services,
    accounts::Requester,
    filter::RoomEventFilter,
    pdu::{ClientFormat, Viewer},
    rooms::MessagesRequest,
};

/// The fields that can be searched.
pub const SEARCH_KEYS: [&str; 3] = ["content.body", "content.name", "content.topic"];
/// Longest search term, in bytes.
const MAX_TERM_BYTES: usize = 2048;
/// Most terms of one query (the rest are ignored).
const MAX_TERMS: usize = 16;
/// Results per page: the default and the most.
const DEFAULT_LIMIT: u64 = 10;
const MAX_LIMIT: u64 = 100;
/// Most events of context on each side of a result.
const MAX_CONTEXT: u64 = 20;
/// Index pages one request reads at most while visibility rules drop hits; past that, the page
/// ends early with a `next_batch` to go on from.
const MAX_SCANS: usize = 10;

/// Whether a character is written without spaces between words (Han, kana, Hangul): each is
/// indexed as a word of its own.
fn is_cjk(c: char) -> bool {
    matches!(u32::from(c),
        0x1100..=0x11FF          // Hangul Jamo
        | 0x3040..=0x30FF        // Hiragana, Katakana
        | 0x3130..=0x318F        // Hangul compatibility Jamo
        | 0x31F0..=0x31FF        // Katakana phonetic extensions
        | 0x3400..=0x4DBF        // CJK extension A
        | 0x4E00..=0x9FFF        // CJK unified ideographs
        | 0xAC00..=0xD7AF        // Hangul syllables
        | 0xF900..=0xFAFF        // CJK compatibility ideographs
        | 0xFF66..=0xFF9F        // half-width Katakana
        | 0x20000..=0x2FA1F) // CJK extensions B–F, compatibility supplement
}

/// Text as the index holds it: lowercase alphanumeric words separated by single spaces, every
/// CJK character a word of its own; everything else separates words.
pub fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut gap = true;
    for c in text.chars() {
        if is_cjk(c) {
            if !gap {
                out.push(' ');
            }
            out.push(c);
            out.push(' ');
            gap = true;
        } else if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
            gap = false;
        } else if !gap {
            out.push(' ');
            gap = true;
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

/// The searchable text of an event, if it has any.
pub fn search_entry(event_type: &TimelineEventType, content: &Value) -> Option<SearchEntry> {
    let (key, field) = match event_type {
        TimelineEventType::RoomMessage => ("content.body", "body"),
        TimelineEventType::RoomName => ("content.name", "name"),
        TimelineEventType::RoomTopic => ("content.topic", "topic"),
        _ => return None,
    };
    let text = normalise(content.get(field)?.as_str()?);
    (!text.is_empty()).then(|| SearchEntry { key: key.to_owned(), text })
}

/// A search term's terms: words and `"phrases"`, `-` before one excludes it.
pub fn parse_query(input: &str) -> Vec<SearchTerm> {
    let mut terms = Vec::new();
    let mut rest = input.trim_start();
    while !rest.is_empty() && terms.len() < MAX_TERMS {
        let negated = rest.len() > 1 && rest.starts_with('-');
        if negated {
            rest = &rest[1..];
        }
        let (raw, quoted, after) = match rest.strip_prefix('"') {
            Some(inner) => match inner.find('"') {
                Some(end) => (&inner[..end], true, &inner[end + 1..]),
                None => (inner, true, ""),
            },
            None => {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                (&rest[..end], false, &rest[end..])
            }
        };
        rest = after.trim_start();
        let words: Vec<String> = normalise(raw).split(' ').filter(|w| !w.is_empty()).map(str::to_owned).collect();
        let Some(last) = words.last() else { continue };
        // A word typed so far also finds the words it begins; a CJK character is a whole word.
        let prefix = !quoted && !last.chars().any(is_cjk);
        terms.push(SearchTerm { words, prefix, negated });
    }
    terms
}

/// The words clients highlight in results: each wanted term as it reads.
fn highlights(terms: &[SearchTerm]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for term in terms.iter().filter(|t| !t.negated) {
        let cjk = term.words.iter().all(|w| w.chars().all(is_cjk));
        let text = term.words.join(if cjk { "" } else { " " });
        if !out.contains(&text) {
            out.push(text);
        }
    }
    out
}

/// `POST /search`'s body.
#[derive(Debug, Deserialize)]
pub struct SearchRequest {
    pub search_categories: SearchCategories,
}

#[derive(Debug, Deserialize)]
pub struct SearchCategories {
    #[serde(default)]
    pub room_events: Option<RoomEventsCriteria>,
}

#[derive(Debug, Deserialize)]
pub struct RoomEventsCriteria {
    pub search_term: String,
    #[serde(default)]
    pub keys: Option<Vec<String>>,
    /// A `RoomEventFilter`, which must be an object (an array would read as an empty filter).
    #[serde(default)]
    pub filter: Option<Value>,
    #[serde(default)]
    pub order_by: Option<String>,
    #[serde(default)]
    pub event_context: Option<EventContext>,
    #[serde(default)]
    pub include_state: bool,
    #[serde(default)]
    pub groupings: Option<Groupings>,
}

#[derive(Debug, Deserialize)]
pub struct EventContext {
    #[serde(default)]
    pub before_limit: Option<u64>,
    #[serde(default)]
    pub after_limit: Option<u64>,
    #[serde(default)]
    pub include_profile: bool,
}

#[derive(Debug, Deserialize)]
pub struct Groupings {
    #[serde(default)]
    pub group_by: Vec<Group>,
}

#[derive(Debug, Deserialize)]
pub struct Group {
    pub key: String,
}

/// Where the next page starts: an offset into the ranking, or below a position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cursor {
    Rank(usize),
    Recent(StreamPos),
}

impl Cursor {
    fn parse(token: &str, order: SearchOrder) -> MatrixResult<Self> {
        let bad = || MatrixError::invalid_param("Invalid next_batch token");
        match (order, token.split_once(':')) {
            (SearchOrder::Rank, Some(("rank", offset))) => Ok(Self::Rank(offset.parse().map_err(|_| bad())?)),
            (SearchOrder::Recent, Some(("recent", pos))) => {
                Ok(Self::Recent(StreamPos(pos.parse().map_err(|_| bad())?)))
            }
            _ => Err(bad()),
        }
    }

    fn token(self) -> String {
        match self {
            Self::Rank(offset) => format!("rank:{offset}"),
            Self::Recent(pos) => format!("recent:{pos}"),
        }
    }
}

impl Services {
    /// `POST /search`.
    pub async fn search(
        &self,
        requester: &Requester,
        request: SearchRequest,
        next_batch: Option<&str>,
    ) -> MatrixResult<Value> {
        let Some(criteria) = request.search_categories.room_events else {
            return Ok(json!({ "search_categories": {} }));
        };
        Ok(
            json!({ "search_categories": { "room_events": self.search_room_events(requester, criteria, next_batch).await? } }),
        )
    }

    async fn search_room_events(
        &self,
        requester: &Requester,
        criteria: RoomEventsCriteria,
        next_batch: Option<&str>,
    ) -> MatrixResult<Value> {
        let user_id = &requester.user_id;
        if criteria.search_term.len() > MAX_TERM_BYTES {
            return Err(MatrixError::invalid_param(format!("search_term is longer than {MAX_TERM_BYTES} bytes")));
        }
        let keys = match criteria.keys {
            Some(keys) if keys.is_empty() => return Err(MatrixError::invalid_param("keys must not be empty")),
            Some(keys) => {
                if let Some(bad) = keys.iter().find(|k| !SEARCH_KEYS.contains(&k.as_str())) {
                    return Err(MatrixError::invalid_param(format!("{bad} cannot be searched")));
                }
                keys
            }
            None => SEARCH_KEYS.iter().map(|k| (*k).to_owned()).collect(),
        };
        let order = match criteria.order_by.as_deref() {
            None | Some("rank") => SearchOrder::Rank,
            Some("recent") => SearchOrder::Recent,
            Some(other) => return Err(MatrixError::invalid_param(format!("unknown order_by {other:?}"))),
        };
        if let Some(bad) = criteria
            .groupings
            .iter()
            .flat_map(|g| &g.group_by)
            .find(|g| !matches!(g.key.as_str(), "room_id" | "sender"))
        {
            return Err(MatrixError::invalid_param(format!("unknown group_by key {:?}", bad.key)));
        }
        let mut cursor = match next_batch {
            Some(token) => Cursor::parse(token, order)?,
            None if order == SearchOrder::Rank => Cursor::Rank(0),
            None => Cursor::Recent(StreamPos::MAX),
        };
        let filter: RoomEventFilter = match criteria.filter {
            None | Some(Value::Null) => RoomEventFilter::default(),
            Some(value @ Value::Object(_)) => {
                serde_json::from_value(value).map_err(|e| MatrixError::bad_json(format!("Invalid filter: {e}")))?
            }
            Some(_) => return Err(MatrixError::bad_json("filter must be an object")),
        };
        let limit = filter.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT) as usize;
        let terms = parse_query(&criteria.search_term);

        // The rooms to look in: joined ones whole, left ones up to the leave.
        let mut rooms: Vec<OwnedRoomId> = Vec::new();
        let mut caps: HashMap<OwnedRoomId, StreamPos> = HashMap::new();
        for room in self.store.rooms_for_user(user_id).await? {
            if !filter.room_allowed(room.room_id.as_str()) {
                continue;
            }
            match room.membership {
                Membership::Join => rooms.push(room.room_id),
                m if m.is_gone() && !room.forgotten => {
                    caps.insert(room.room_id.clone(), room.membership_pos);
                    rooms.push(room.room_id);
                }
                _ => {}
            }
        }
        let mut query = SearchQuery { terms, rooms, keys, order, before: None, offset: 0, limit: (limit * 2).max(20) };
        let count = self.store.count_search(&query).await?;

        let mut found: Vec<(SearchHit, StoredEvent)> = Vec::new();
        let mut more = false;
        'scan: for _ in 0..MAX_SCANS {
            match cursor {
                Cursor::Rank(offset) => query.offset = offset,
                Cursor::Recent(pos) => query.before = Some(pos),
            }
            let hits = self.store.search_events(&query).await?;
            let exhausted = hits.len() < query.limit;
            let ids: Vec<OwnedEventId> = hits.iter().map(|h| h.event_id.clone()).collect();
            let events: HashMap<OwnedEventId, StoredEvent> =
                self.events(&ids).await?.into_iter().map(|e| (e.event_id.clone(), e)).collect();
            let candidates: Vec<StoredEvent> = hits
                .iter()
                .filter(|h| caps.get(&h.room_id).is_none_or(|cap| h.stream_pos <= *cap))
                .filter_map(|h| events.get(&h.event_id))
                .filter(|e| e.redacted_by.is_none() && filter.matches(e))
                .cloned()
                .collect();
            let visible: HashMap<OwnedEventId, StoredEvent> =
                self.filter_visible(user_id, candidates).await?.into_iter().map(|e| (e.event_id.clone(), e)).collect();
            for hit in hits {
                cursor = match cursor {
                    Cursor::Rank(offset) => Cursor::Rank(offset + 1),
                    Cursor::Recent(_) => Cursor::Recent(hit.stream_pos),
                };
                if let Some(ev) = visible.get(&hit.event_id) {
                    found.push((hit, ev.clone()));
                    if found.len() == limit {
                        // More hits may follow this one.
                        more = true;
                        break 'scan;
                    }
                }
            }
            if exhausted {
                break;
            }
            more = true;
        }

        let viewer = Viewer { user_id, device_id: &requester.device_id };
        let events: Vec<StoredEvent> = found.iter().map(|(_, e)| e.clone()).collect();
        let serialised = self.client_events(&events, ClientFormat::Client, Some(viewer)).await?;
        let mut results = Vec::with_capacity(found.len());
        for ((hit, ev), json) in found.iter().zip(serialised) {
            let mut result = json!({ "rank": hit.rank, "result": json });
            if let Some(context) = &criteria.event_context {
                result["context"] = self.search_context(requester, ev, context).await?;
            }
            results.push(result);
        }

        let mut out = json!({
            "count": count,
            "highlights": highlights(&query.terms),
            "results": results,
        });
        if more {
            out["next_batch"] = cursor.token().into();
        }
        if criteria.include_state {
            let mut state = Map::new();
            let mut seen = HashSet::new();
            for (hit, _) in &found {
                if seen.insert(hit.room_id.clone()) {
                    let events = self.room_state(user_id, &hit.room_id).await?;
                    state.insert(
                        hit.room_id.to_string(),
                        self.client_events(&events, ClientFormat::Client, None).await?.into(),
                    );
                }
            }
            out["state"] = state.into();
        }
        if let Some(groupings) = &criteria.groupings {
            let mut groups = Map::new();
            for group in &groupings.group_by {
                let of = |ev: &StoredEvent| match group.key.as_str() {
                    "room_id" => ev.room_id.to_string(),
                    _ => ev.sender.to_string(),
                };
                let mut by: Map<String, Value> = Map::new();
                for (_, ev) in &found {
                    let key = of(ev);
                    let order = by.len();
                    let entry = by.entry(key).or_insert_with(|| json!({ "results": [], "order": order + 1 }));
                    if let Some(list) = entry["results"].as_array_mut() {
                        list.push(ev.event_id.to_string().into());
                    }
                    if more {
                        entry["next_batch"] = cursor.token().into();
                    }
                }
                groups.insert(group.key.clone(), by.into());
            }
            out["groups"] = groups.into();
        }
        Ok(out)
    }

    /// A result's surroundings: events before and after it that the searcher may see, and the
    /// senders' profiles if asked.
    async fn search_context(
        &self,
        requester: &Requester,
        ev: &StoredEvent,
        context: &EventContext,
    ) -> MatrixResult<Value> {
        let before_n = context.before_limit.unwrap_or(5).min(MAX_CONTEXT) as usize;
        let after_n = context.after_limit.unwrap_or(5).min(MAX_CONTEXT) as usize;
        let page = |from: StreamPos, backward: bool, n: usize| MessagesRequest {
            from: Some(from),
            to: None,
            backward,
            limit: n.max(1),
            filter: RoomEventFilter::default(),
        };
        let (before, start) = if before_n == 0 {
            (Vec::new(), ev.stream_pos.prev())
        } else {
            let page = self.messages(requester, &ev.room_id, page(ev.stream_pos.prev(), true, before_n)).await?;
            (page.chunk, page.end.unwrap_or(StreamPos::ZERO))
        };
        let (after, end) = if after_n == 0 {
            (Vec::new(), ev.stream_pos)
        } else {
            let page = self.messages(requester, &ev.room_id, page(ev.stream_pos, false, after_n)).await?;
            (page.chunk, page.end.unwrap_or(self.store.stream_head()))
        };
        let before: Vec<Value> = before.into_iter().take(before_n).collect();
        let after: Vec<Value> = after.into_iter().take(after_n).collect();
        let mut out = json!({
            "events_before": before,
            "events_after": after,
            "start": crate::sync::pagination_token(start),
            "end": crate::sync::pagination_token(end),
        });
        if context.include_profile {
            let mut senders: Vec<OwnedUserId> = vec![ev.sender.clone()];
            for e in before.iter().chain(&after) {
                if let Some(sender) = e.get("sender").and_then(Value::as_str).and_then(|s| s.parse().ok())
                    && !senders.contains(&sender)
                {
                    senders.push(sender);
                }
            }
            let mut profiles = Map::new();
            for sender in senders {
                let mut profile = Map::new();
                if let Some(member) = self.store.membership(&ev.room_id, &sender).await? {
                    if let Some(name) = member.displayname {
                        profile.insert("displayname".into(), name.into());
                    }
                    if let Some(avatar) = member.avatar_url {
                        profile.insert("avatar_url".into(), avatar.into());
                    }
                }
                profiles.insert(sender.to_string(), profile.into());
            }
            out["profile_info"] = profiles.into();
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::{highlights, normalise, parse_query, search_entry};
    use myelin_core::types::TimelineEventType;
    use serde_json::json;

    #[test]
    fn text_is_normalised_into_lowercase_words_and_cjk_characters() {
        assert_eq!(normalise("Hello, World! It's 3.14"), "hello world it s 3 14");
        assert_eq!(normalise("我喜欢蛋糕 and Café"), "我 喜 欢 蛋 糕 and café");
        assert_eq!(normalise("東京タワーへ行く"), "東 京 タ ワ ー へ 行 く");
        assert_eq!(normalise("  ...  "), "");
    }

    #[test]
    fn queries_have_words_phrases_and_exclusions() {
        let terms = parse_query(r#"cake "the lie" -portal 蛋糕 - "#);
        let words: Vec<(Vec<&str>, bool, bool)> =
            terms.iter().map(|t| (t.words.iter().map(String::as_str).collect(), t.prefix, t.negated)).collect();
        assert_eq!(
            words,
            vec![
                (vec!["cake"], true, false),
                (vec!["the", "lie"], false, false),
                (vec!["portal"], true, true),
                (vec!["蛋", "糕"], false, false),
            ]
        );
        assert_eq!(highlights(&terms), vec!["cake", "the lie", "蛋糕"]);
        assert!(parse_query("  !!! ").is_empty());
        assert_eq!(parse_query("\"unterminated phrase").len(), 1);
    }

    #[test]
    fn messages_names_and_topics_are_indexed() {
        let entry = search_entry(&TimelineEventType::RoomMessage, &json!({ "body": "Hi There" }));
        assert_eq!(entry.map(|e| (e.key, e.text)), Some(("content.body".to_owned(), "hi there".to_owned())));
        assert!(search_entry(&TimelineEventType::RoomTopic, &json!({ "topic": "Cats" })).is_some());
        assert!(search_entry(&TimelineEventType::RoomMessage, &json!({ "body": 5 })).is_none());
        assert!(search_entry(&TimelineEventType::RoomEncrypted, &json!({ "ciphertext": "x" })).is_none());
    }
}
