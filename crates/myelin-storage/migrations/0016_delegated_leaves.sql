-- MatrixRTC delegated leaves (the LiveKit JWT service's `/delegate_delayed_leave`): a call
-- member hands its delayed leave event to the server, which keeps restarting it while the
-- member's LiveKit participant is connected to the SFU and sends it once the participant is
-- gone. A row per (LiveKit room, participant identity); a `delegated_leave` job of the job queue
-- (dedupe key `delegated_leave:<livekit_room> <livekit_identity>`) drives it.
CREATE TABLE delegated_leaves (
    livekit_room TEXT NOT NULL,
    livekit_identity TEXT NOT NULL,
    delay_id TEXT NOT NULL,           -- the member's delayed leave event (delayed_events)
    user_id TEXT NOT NULL,
    connected INTEGER NOT NULL DEFAULT 0, -- 1 once the SFU has seen the participant
    wait_until_ms INTEGER NOT NULL,   -- a participant not connected by then is taken as gone
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (livekit_room, livekit_identity)
);
