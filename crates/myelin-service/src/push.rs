//! Push rules: the stored ruleset per user (account data `m.push_rules`, the server default until
//! the user changes it), their changes (the push rules API, a read-modify-write that holds across
//! processes), and the evaluation of an event for each recipient, which feeds unread counts.

use std::sync::Arc;

use myelin_core::{
    MatrixError, MatrixResult,
    types::{RoomId, UserId},
};
use ruma::{
    OwnedRoomId, OwnedUserId, UInt,
    events::GlobalAccountDataEventType,
    push::{
        Action, AnyPushRule, FlattenedJson, NewConditionalPushRule, NewPatternedPushRule, NewPushRule,
        NewSimplePushRule, PushCondition, PushConditionPowerLevelsCtx, PushConditionRoomCtx, RuleKind, Ruleset,
    },
    serde::Raw,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{Services, accounts::Requester};

/// Rounds of a push-rule change before giving up on a user whose rules keep changing under it.
const MAX_UPDATE_ATTEMPTS: usize = 10;

/// The account data type push rules are stored under.
pub fn push_rules_type() -> String {
    GlobalAccountDataEventType::PushRules.to_string()
}

/// The stored form: `{"global": ruleset}`.
fn stored(ruleset: &Ruleset) -> String {
    json!({ "global": ruleset }).to_string()
}

fn parse_stored(json: &str) -> Option<Ruleset> {
    let value: Value = serde_json::from_str(json).ok()?;
    serde_json::from_value(value.get("global")?.clone()).ok()
}

/// Who an event is evaluated for.
pub struct EvaluationContext<'a> {
    pub room_id: &'a RoomId,
    pub user_id: &'a UserId,
    pub display_name: &'a str,
    pub member_count: u64,
    pub power_levels: Option<&'a PushConditionPowerLevelsCtx>,
}

/// An event as push rules look at it: flattened once, evaluated for each recipient.
pub struct PushedJson(FlattenedJson);

impl PushedJson {
    /// `None` for JSON that is not an object (it matches no rule).
    pub fn parse(event_json: &str) -> Option<Self> {
        let raw = Raw::<Value>::from_json_string(event_json.to_owned()).ok()?;
        Some(Self(FlattenedJson::from_raw(&raw)))
    }
}

/// The actions of the first rule matching the event for one user (none for their own event), as
/// `Ruleset::get_actions` gives them, without flattening the event again for each user.
pub async fn evaluate_actions(ruleset: &Ruleset, event: &PushedJson, cx: &EvaluationContext<'_>) -> Vec<Action> {
    if event.0.get_str("sender") == Some(cx.user_id.as_str()) {
        return Vec::new();
    }
    let mut ctx = PushConditionRoomCtx::new(
        OwnedRoomId::from(cx.room_id),
        UInt::new_saturating(cx.member_count),
        OwnedUserId::from(cx.user_id),
        cx.display_name.to_owned(),
    );
    if let Some(pl) = cx.power_levels {
        ctx = ctx.with_power_levels(pl.clone());
    }
    for rule in ruleset {
        if rule.applies(&event.0, &ctx).await {
            return rule.actions().to_vec();
        }
    }
    Vec::new()
}

/// A rule as the push rules API sends it (`PUT /pushrules/global/{kind}/{ruleId}`).
#[derive(Clone, Debug, Deserialize)]
pub struct RuleBody {
    pub actions: Vec<Action>,
    #[serde(default)]
    pub conditions: Vec<PushCondition>,
    pub pattern: Option<String>,
}

/// Where a new or moved rule goes among its kind.
#[derive(Clone, Debug, Default)]
pub struct Placement {
    pub before: Option<String>,
    pub after: Option<String>,
}

/// One change of the push rules API.
#[derive(Clone, Debug)]
pub enum RuleChange {
    Put { rule: RuleBody, placement: Placement },
    Delete,
    Enable(bool),
    Actions(Vec<Action>),
}

/// A rule kind from the API path.
pub fn rule_kind(raw: &str) -> MatrixResult<RuleKind> {
    match raw {
        "override" => Ok(RuleKind::Override),
        "underride" => Ok(RuleKind::Underride),
        "sender" => Ok(RuleKind::Sender),
        "room" => Ok(RuleKind::Room),
        "content" => Ok(RuleKind::Content),
        _ => Err(MatrixError::invalid_param(format!("Unknown rule kind {raw:?}"))),
    }
}

/// The rule `rule_id` of `kind`, as the API shows it.
pub fn rule_json(rules: &Ruleset, kind: RuleKind, rule_id: &str) -> MatrixResult<Value> {
    let rule = rules.get(kind, rule_id).ok_or_else(|| MatrixError::not_found("Push rule not found"))?.to_owned();
    let value = match rule {
        AnyPushRule::Override(r) | AnyPushRule::Underride(r) => serde_json::to_value(r),
        AnyPushRule::Content(r) => serde_json::to_value(r),
        AnyPushRule::Room(r) => serde_json::to_value(r),
        AnyPushRule::Sender(r) => serde_json::to_value(r),
        _ => return Err(MatrixError::not_found("Push rule not found")),
    };
    value.map_err(|e| MatrixError::internal(e.to_string()))
}

fn apply(rules: &mut Ruleset, kind: RuleKind, rule_id: &str, change: RuleChange) -> MatrixResult<()> {
    let not_found = |_| MatrixError::not_found("Push rule not found");
    match change {
        RuleChange::Put { rule, placement } => {
            let new = match kind {
                RuleKind::Override => NewPushRule::Override(NewConditionalPushRule::new(
                    rule_id.to_owned(),
                    rule.conditions,
                    rule.actions,
                )),
                RuleKind::Underride => NewPushRule::Underride(NewConditionalPushRule::new(
                    rule_id.to_owned(),
                    rule.conditions,
                    rule.actions,
                )),
                RuleKind::Content => {
                    let pattern = rule.pattern.ok_or_else(|| MatrixError::missing_param("pattern is required"))?;
                    NewPushRule::Content(NewPatternedPushRule::new(rule_id.to_owned(), pattern, rule.actions))
                }
                RuleKind::Room => {
                    let room = OwnedRoomId::try_from(rule_id)
                        .map_err(|_| MatrixError::invalid_param("Room rule ids are room ids"))?;
                    NewPushRule::Room(NewSimplePushRule::new(room, rule.actions))
                }
                RuleKind::Sender => {
                    let user = OwnedUserId::try_from(rule_id)
                        .map_err(|_| MatrixError::invalid_param("Sender rule ids are user ids"))?;
                    NewPushRule::Sender(NewSimplePushRule::new(user, rule.actions))
                }
                _ => return Err(MatrixError::invalid_param("Unknown rule kind")),
            };
            rules
                .insert(new, placement.after.as_deref(), placement.before.as_deref())
                .map_err(|e| MatrixError::bad_json(e.to_string()))
        }
        RuleChange::Delete => rules.remove(kind, rule_id).map_err(|e| match e {
            ruma::push::RemovePushRuleError::ServerDefault => {
                MatrixError::bad_json("Server-default rules cannot be deleted")
            }
            _ => MatrixError::not_found("Push rule not found"),
        }),
        RuleChange::Enable(enabled) => rules.set_enabled(kind, rule_id, enabled).map_err(not_found),
        RuleChange::Actions(actions) => rules.set_actions(kind, rule_id, actions).map_err(not_found),
    }
}

impl Services {
    /// A user's push rules (the server default until the user changes them).
    pub async fn push_ruleset(&self, user_id: &UserId) -> MatrixResult<Arc<Ruleset>> {
        let key = user_id.to_owned();
        if let Some(rules) = self.push_rules.get(&key) {
            return Ok(rules);
        }
        let epoch = self.push_rules.epoch();
        let stored = self.store.get_account_data(user_id, None, &push_rules_type()).await?;
        let ruleset =
            Arc::new(stored.as_deref().and_then(parse_stored).unwrap_or_else(|| Ruleset::server_default(user_id)));
        self.push_rules.insert_if_current(key, ruleset.clone(), 1, epoch);
        Ok(ruleset)
    }

    /// Changes one push rule of the requester, atomically across processes (the rules are read,
    /// changed and written back only if nobody wrote them meanwhile, else read again).
    pub async fn change_push_rule(
        &self,
        requester: &Requester,
        kind: &str,
        rule_id: &str,
        change: RuleChange,
    ) -> MatrixResult<()> {
        let kind = rule_kind(kind)?;
        let user_id = &requester.user_id;
        let data_type = push_rules_type();
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let entry = self.store.account_data_entry(user_id, None, &data_type).await?;
            let mut rules = entry
                .as_ref()
                .and_then(|(json, _)| parse_stored(json))
                .unwrap_or_else(|| Ruleset::server_default(user_id));
            apply(&mut rules, kind.clone(), rule_id, change.clone())?;
            let expected = entry.map(|(_, pos)| pos);
            let written = self.store.put_account_data_if(user_id, None, &data_type, stored(&rules), expected).await?;
            if written.is_some() {
                self.invalidate(&self.push_rules, &user_id.to_owned());
                self.notifier.notify_users(std::slice::from_ref(user_id));
                return Ok(());
            }
        }
        Err(MatrixError::new(myelin_core::ErrorCode::Unknown, "The push rules keep changing; try again")
            .with_status(503))
    }
}

#[cfg(test)]
mod tests {
    use ruma::{
        push::{Action, RuleKind, Ruleset},
        room_id, user_id,
    };

    use super::{EvaluationContext, Placement, PushedJson, RuleBody, RuleChange, apply, evaluate_actions, rule_json};

    /// (notify, highlight) of the actions the rules give.
    async fn evaluate(rules: &Ruleset, event: &str, cx: &EvaluationContext<'_>) -> (bool, bool) {
        let Some(event) = PushedJson::parse(event) else { return (false, false) };
        let actions = evaluate_actions(rules, &event, cx).await;
        (actions.iter().any(|a| a.should_notify()), actions.iter().any(|a| a.is_highlight()))
    }

    #[tokio::test]
    async fn default_rules_notify_on_messages_and_highlight_mentions() {
        let alice = user_id!("@alice:x");
        let rules = Ruleset::server_default(alice);
        let cx = EvaluationContext {
            room_id: room_id!("!r:x"),
            user_id: alice,
            display_name: "Alice",
            member_count: 3,
            power_levels: None,
        };
        let message = r#"{"type":"m.room.message","sender":"@bob:x","room_id":"!r:x","content":{"msgtype":"m.text","body":"hello"}}"#;
        assert_eq!(evaluate(&rules, message, &cx).await, (true, false));
        let mention = r#"{"type":"m.room.message","sender":"@bob:x","room_id":"!r:x","content":{"msgtype":"m.text","body":"hi","m.mentions":{"user_ids":["@alice:x"]}}}"#;
        assert_eq!(evaluate(&rules, mention, &cx).await, (true, true));
        assert_eq!(evaluate(&rules, "not json", &cx).await, (false, false));
        let own = r#"{"type":"m.room.message","sender":"@alice:x","room_id":"!r:x","content":{"msgtype":"m.text","body":"Alice here"}}"#;
        assert_eq!(evaluate(&rules, own, &cx).await, (false, false), "no rule applies to one's own event");
    }

    #[test]
    fn rule_changes_apply_to_a_ruleset() {
        let mut rules = Ruleset::server_default(user_id!("@alice:x"));
        let put = RuleChange::Put {
            rule: RuleBody { actions: vec![Action::Notify], conditions: vec![], pattern: Some("cake".into()) },
            placement: Placement::default(),
        };
        apply(&mut rules, RuleKind::Content, "cakes", put).expect("put");
        assert_eq!(rule_json(&rules, RuleKind::Content, "cakes").expect("rule")["pattern"], "cake");
        apply(&mut rules, RuleKind::Content, "cakes", RuleChange::Enable(false)).expect("disable");
        assert_eq!(rule_json(&rules, RuleKind::Content, "cakes").expect("rule")["enabled"], false);
        apply(&mut rules, RuleKind::Content, "cakes", RuleChange::Delete).expect("delete");
        assert!(rule_json(&rules, RuleKind::Content, "cakes").is_err());
        assert!(apply(&mut rules, RuleKind::Override, ".m.rule.master", RuleChange::Delete).is_err(), "server default");
        let missing = RuleChange::Put {
            rule: RuleBody { actions: vec![], conditions: vec![], pattern: None },
            placement: Placement::default(),
        };
        assert!(apply(&mut rules, RuleKind::Content, "x", missing).is_err(), "content rules need a pattern");
    }
}
