//! Comparing uploaded key objects the way clients expect: a re-upload that differs only in its
//! signatures is the same key.

use serde_json::Value;

/// Whether two key JSON objects are the same key, ignoring `signatures` (and `unsigned`).
pub fn same_key(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let strip = |s: &str| -> Option<Value> {
        let mut v: Value = serde_json::from_str(s).ok()?;
        if let Some(o) = v.as_object_mut() {
            o.remove("signatures");
            o.remove("unsigned");
        }
        Some(v)
    };
    matches!((strip(a), strip(b)), (Some(x), Some(y)) if x == y)
}
