//! The full-text index: both backends find the same events for the same terms.

use myelin_storage::*;

use super::{eid, event, open_store, persisted, rid, room_with};

fn term(words: &[&str], prefix: bool, negated: bool) -> SearchTerm {
    SearchTerm { words: words.iter().map(|w| (*w).to_owned()).collect(), prefix, negated }
}

fn query(terms: Vec<SearchTerm>, order: SearchOrder) -> SearchQuery {
    SearchQuery {
        terms,
        rooms: vec![rid("!s:test")],
        keys: vec!["content.body".into(), "content.topic".into()],
        order,
        before: None,
        offset: 0,
        limit: 10,
    }
}

fn ids(hits: &[SearchHit]) -> Vec<String> {
    hits.iter().map(|h| h.event_id.to_string()).collect()
}

/// Words, prefixes, phrases (CJK characters as words), exclusions, both orders, paging, keys,
/// rooms, and redaction removing an event from the index.
pub async fn indexed_events_are_found_by_words_phrases_and_prefixes(url: String) {
    let store = open_store(&url).await;
    let mut prev = room_with(&store, "!s:test", &["@a:test"]).await;
    room_with(&store, "!other:test", &["@a:test"]).await;
    let texts = [
        ("$m1", "content.body", "the cake is a lie"),
        ("$m2", "content.body", "cake cake cake"),
        ("$m3", "content.body", "cakes for everyone"),
        ("$m4", "content.body", "我 喜 欢 蛋 糕"),
        ("$m5", "content.topic", "a room about cake"),
        ("$m6", "content.name", "cake room"),
    ];
    for (id, key, text) in texts {
        let mut ev = event("!s:test", id, "m.room.message", None, &[&prev]);
        ev.search = Some(SearchEntry { key: key.into(), text: text.into() });
        persisted(&store, ev).await;
        prev = id.to_owned();
    }

    // A word, as a prefix too; the name key was not asked for.
    let exact = store.search_events(&query(vec![term(&["cake"], false, false)], SearchOrder::Recent)).await;
    assert_eq!(ids(&exact.expect("search")), ["$m5", "$m2", "$m1"]);
    let prefix = store.search_events(&query(vec![term(&["cake"], true, false)], SearchOrder::Recent)).await;
    assert_eq!(ids(&prefix.expect("search")), ["$m5", "$m3", "$m2", "$m1"]);
    assert_eq!(
        store.count_search(&query(vec![term(&["cake"], true, false)], SearchOrder::Rank)).await.expect("count"),
        4
    );

    // Ranked: the message saying it three times comes first.
    let ranked = store.search_events(&query(vec![term(&["cake"], false, false)], SearchOrder::Rank)).await;
    let ranked = ranked.expect("search");
    assert_eq!(ranked[0].event_id, eid("$m2"));
    assert!(ranked[0].rank > ranked[2].rank, "{ranked:?}");

    // Phrases, exclusions, CJK.
    let phrase = store.search_events(&query(vec![term(&["a", "lie"], false, false)], SearchOrder::Recent)).await;
    assert_eq!(ids(&phrase.expect("search")), ["$m1"]);
    let reversed = store.search_events(&query(vec![term(&["lie", "a"], false, false)], SearchOrder::Recent)).await;
    assert!(reversed.expect("search").is_empty(), "a phrase keeps its order");
    let not = vec![term(&["cake"], false, false), term(&["lie"], false, true)];
    assert_eq!(ids(&store.search_events(&query(not, SearchOrder::Recent)).await.expect("search")), ["$m5", "$m2"]);
    let cjk = store.search_events(&query(vec![term(&["蛋", "糕"], false, false)], SearchOrder::Recent)).await;
    assert_eq!(ids(&cjk.expect("search")), ["$m4"]);
    let apart = store.search_events(&query(vec![term(&["喜", "糕"], false, false)], SearchOrder::Recent)).await;
    assert!(apart.expect("search").is_empty());

    // Paging: below a position, or after an offset.
    let mut page = query(vec![term(&["cake"], true, false)], SearchOrder::Recent);
    page.limit = 2;
    let first = store.search_events(&page).await.expect("search");
    assert_eq!(ids(&first), ["$m5", "$m3"]);
    page.before = Some(first[1].stream_pos);
    assert_eq!(ids(&store.search_events(&page).await.expect("search")), ["$m2", "$m1"]);
    let mut ranked_page = query(vec![term(&["cake"], false, false)], SearchOrder::Rank);
    ranked_page.offset = 1;
    assert_eq!(store.search_events(&ranked_page).await.expect("search").len(), 2);

    // Other keys and rooms.
    let mut names = query(vec![term(&["room"], false, false)], SearchOrder::Recent);
    names.keys = vec!["content.name".into()];
    assert_eq!(ids(&store.search_events(&names).await.expect("search")), ["$m6"]);
    names.rooms = vec![rid("!other:test")];
    assert!(store.search_events(&names).await.expect("search").is_empty());

    // A redaction takes its target out of the index.
    let mut redaction = event("!s:test", "$redact", "m.room.redaction", None, &[&prev]);
    redaction.redacts = Some(eid("$m2"));
    persisted(&store, redaction).await;
    let after = store.search_events(&query(vec![term(&["cake"], false, false)], SearchOrder::Recent)).await;
    assert_eq!(ids(&after.expect("search")), ["$m5", "$m1"]);
}
