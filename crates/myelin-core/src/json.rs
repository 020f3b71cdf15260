//! Building JSON bodies without copies. `serde_json::json!` serialises every interpolated
//! expression into a new `Value` (`to_value(&expr)`), a deep copy of what was already built:
//! for a sync body of timelines and state that is a second pass over all of it. [`object`] moves
//! the values in instead.

use serde_json::{Map, Value};

/// A JSON object of `fields`, moved in (a later duplicate key wins).
pub fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    let mut map = Map::with_capacity(N);
    for (key, value) in fields {
        map.insert(key.to_owned(), value);
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::object;

    #[test]
    fn builds_the_same_object_as_the_macro() {
        let events = vec![json!({ "type": "m.room.message" })];
        let built = object([("events", events.clone().into()), ("limited", true.into())]);
        assert_eq!(built, json!({ "events": events, "limited": true }));
    }
}
