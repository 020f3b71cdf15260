"""Synapse's push-rule evaluator (from its PyPI package) as an independent oracle.

Reads one JSON document on stdin:
  {"user_id": ..., "display_name": ...,
   "user_rules": [{"rule_id": "global/content/x", "priority_class": 4,
                   "conditions": [...], "actions": [...]}],   # in the order the user has them
   "enabled": {"global/underride/.m.rule.call": false, ...},
   "cases": [{"event": {...client-format event...}, "room_member_count": N,
              "sender_power_level": N, "notification_power_levels": {...}}]}
and prints a JSON list with the actions Synapse's evaluator gives each case, in order.
Run with the Python of the venv `scripts/synapse-venv.sh` installs.
"""

import json
import sys

from synapse.push.bulk_push_rule_evaluator import _flatten_dict
from synapse.synapse_rust.push import FilteredPushRules, PushRule, PushRuleEvaluator, PushRules


def main() -> None:
    request = json.load(sys.stdin)
    user_rules = [
        PushRule.from_db(r["rule_id"], r["priority_class"], json.dumps(r["conditions"]), json.dumps(r["actions"]))
        for r in request["user_rules"]
    ]
    rules = FilteredPushRules(
        PushRules(user_rules),
        request["enabled"],
        False,  # msc1767 (extensible events)
        False,  # msc3381 polls: Synapse's poll rules use unstable event types
        False,  # msc3664 related event match
        False,  # msc4028 push encrypted events
        False,  # msc4075
        True,  # msc4210: the legacy mention rules are gone, as in the spec since v1.17
        False,  # msc4306
    )
    results = []
    for case in request["cases"]:
        event = case["event"]
        evaluator = PushRuleEvaluator(
            _flatten_dict(event),
            "m.mentions" in event.get("content", {}),
            case["room_member_count"],
            case["sender_power_level"],
            case["notification_power_levels"],
            {},
            False,
            [],
            False,
            True,  # msc4210
            False,
        )
        results.append(list(evaluator.run(rules, request["user_id"], request["display_name"], None)))
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
