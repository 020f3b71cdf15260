-- The actions of the push rule that made an event notify its recipient (JSON, e.g.
-- `["notify", {"set_tweak": "sound", "value": "default"}]`), kept with the push action so
-- `/notifications` and the push gateway get the tweaks of the rule as it was when the event came.
-- NULL for rows written before this column: `["notify"]` plus their highlight.
ALTER TABLE event_push_actions ADD COLUMN actions TEXT;
