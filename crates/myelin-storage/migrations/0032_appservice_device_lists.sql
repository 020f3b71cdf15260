-- Where each application service's device-list updates (MSC3202) have reached on the stream: the
-- next transaction tells it the device lists that changed after this position.
CREATE TABLE appservice_device_lists (
    appservice_id TEXT PRIMARY KEY,
    pos INTEGER NOT NULL
);
