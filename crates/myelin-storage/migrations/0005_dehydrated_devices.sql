-- Dehydrated devices (MSC3814): at most one per user, a device without access tokens whose
-- encrypted state (`device_data`) a new login rehydrates. Its keys and inbox are those of its
-- row in `devices`.
CREATE TABLE dehydrated_devices (
    user_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    device_data TEXT NOT NULL
);
