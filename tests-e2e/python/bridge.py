"""A small bridge on mautrix-python's application service framework (PyPI `mautrix`), the peer of
Myelin's application service tests. It logs every event and ephemeral event it receives (one JSON
line each), joins rooms its bot is invited to, answers "hello …" through a puppet
(`@bridge_alice`), and answers the homeserver's user and alias queries by making the user or a
room with the alias.

Usage: python bridge.py CONFIG_JSON   (homeserver, domain, as_token, hs_token, port, log)
"""
import asyncio
import json
import sys

from mautrix.appservice import AppService
from mautrix.types import EventType, Membership, RoomCreatePreset, UserID

config = json.loads(sys.argv[1])
domain = config["domain"]
log = open(config["log"], "a", buffering=1)


def record(kind, **fields):
    log.write(json.dumps({"kind": kind, **fields}) + "\n")


async def main():
    az = AppService(
        server=config["homeserver"],
        domain=domain,
        as_token=config["as_token"],
        hs_token=config["hs_token"],
        bot_localpart="bridgebot",
        id="testbridge",
        ephemeral_events=True,
    )

    async def query_user(user_id):
        record("query_user", user_id=user_id)
        await az.intent.user(UserID(user_id)).ensure_registered()
        return {"ok": True}

    async def query_alias(alias):
        record("query_alias", alias=alias)
        localpart = alias[1:].split(":", 1)[0]
        await az.intent.create_room(alias_localpart=localpart, preset=RoomCreatePreset.PUBLIC, name="Lobby")
        return {"ok": True}

    az.query_user = query_user
    az.query_alias = query_alias

    @az.matrix_event_handler
    async def on_event(evt):
        content = evt.content.serialize() if hasattr(evt.content, "serialize") else {}
        record(
            "event",
            type=str(evt.type),
            sender=getattr(evt, "sender", None),
            room_id=getattr(evt, "room_id", None),
            state_key=getattr(evt, "state_key", None),
            event_id=getattr(evt, "event_id", None),
            content=content,
        )
        if (
            evt.type == EventType.ROOM_MEMBER
            and evt.state_key == az.bot_mxid
            and evt.content.membership == Membership.INVITE
        ):
            await az.intent.join_room(evt.room_id)
        elif evt.type == EventType.ROOM_MESSAGE and not evt.sender.startswith("@bridge"):
            body = content.get("body", "")
            if body.startswith("hello"):
                puppet = az.intent.user(UserID(f"@bridge_alice:{domain}"))
                await puppet.ensure_registered()
                await puppet.ensure_joined(evt.room_id)
                await puppet.send_text(evt.room_id, f"echo: {body}")

    await az.start(host="127.0.0.1", port=config["port"])
    print("ready", flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
