//! Push rules: the stored ruleset per user (account data `m.push_rules`, server default until the
//! user changes it) and evaluation of an event for each recipient, which feeds unread counts.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use myelin_core::MatrixResult;
use myelin_storage::Store;
use ruma::{
    OwnedRoomId, OwnedUserId, UInt,
    push::{PushConditionPowerLevelsCtx, PushConditionRoomCtx, Ruleset},
    serde::Raw,
};
use serde_json::Value;

pub const PUSH_RULES_TYPE: &str = "m.push_rules";

#[derive(Default)]
pub struct PushRulesCache {
    rulesets: Mutex<HashMap<String, Arc<Ruleset>>>,
}

impl PushRulesCache {
    pub async fn ruleset(&self, store: &dyn Store, user_id: &str) -> MatrixResult<Arc<Ruleset>> {
        if let Some(rules) = self.rulesets.lock().ok().and_then(|m| m.get(user_id).cloned()) {
            return Ok(rules);
        }
        let stored = store.get_account_data(user_id, "", PUSH_RULES_TYPE).await?;
        let ruleset = match stored.and_then(|json| serde_json::from_str::<Value>(&json).ok()) {
            Some(v) => v.get("global").and_then(|g| serde_json::from_value::<Ruleset>(g.clone()).ok()),
            None => None,
        };
        let ruleset = match ruleset {
            Some(r) => r,
            None => match ruma::UserId::parse(user_id) {
                Ok(uid) => Ruleset::server_default(&uid),
                Err(_) => Ruleset::default(),
            },
        };
        let ruleset = Arc::new(ruleset);
        if let Ok(mut m) = self.rulesets.lock() {
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert(user_id.to_owned(), ruleset.clone());
        }
        Ok(ruleset)
    }

    /// Stores a changed ruleset and drops the cached copy.
    pub async fn save(&self, store: &dyn Store, user_id: &str, ruleset: &Ruleset) -> MatrixResult<i64> {
        let content = serde_json::json!({ "global": ruleset }).to_string();
        let pos = store.put_account_data(user_id, "", PUSH_RULES_TYPE, content).await?;
        self.invalidate(user_id);
        store.broadcast(myelin_storage::Signal::AccountData { user_id: user_id.to_owned() });
        Ok(pos)
    }

    pub fn invalidate(&self, user_id: &str) {
        if let Ok(mut m) = self.rulesets.lock() {
            m.remove(user_id);
        }
    }

    pub fn clear(&self) {
        if let Ok(mut m) = self.rulesets.lock() {
            m.clear();
        }
    }
}

/// What the rules say about one event for one user: (notify, highlight).
pub async fn evaluate(
    ruleset: &Ruleset,
    event_json: &str,
    room_id: &str,
    user_id: &str,
    display_name: &str,
    member_count: u64,
    power_levels: Option<&PushConditionPowerLevelsCtx>,
) -> (bool, bool) {
    let (Ok(room_id), Ok(user_id), Ok(raw)) = (
        OwnedRoomId::try_from(room_id),
        OwnedUserId::try_from(user_id),
        Raw::<Value>::from_json_string(event_json.to_owned()),
    ) else {
        return (false, false);
    };
    let mut ctx =
        PushConditionRoomCtx::new(room_id, UInt::new_saturating(member_count), user_id, display_name.to_owned());
    if let Some(pl) = power_levels {
        ctx = ctx.with_power_levels(pl.clone());
    }
    let actions = ruleset.get_actions(&raw, &ctx).await;
    (actions.iter().any(|a| a.should_notify()), actions.iter().any(|a| a.is_highlight()))
}
