"""A small bridge on mautrix-python's application service framework (PyPI `mautrix`), the peer of
Myelin's application service tests. It logs every event and ephemeral event it receives (one JSON
line each), joins rooms its bot is invited to, answers "hello …" through a puppet
(`@bridge_alice`), and answers the homeserver's user and alias queries by making the user or a
room with the alias.

With "e2ee": true it is an encrypted bridge as mautrix bridges are: its bot has a device it makes
itself (MSC4190, `PUT /devices`), uploads that device's keys, and follows to-device messages,
device lists and one-time key counts through its transactions (MSC2409, MSC3202), with
mautrix's OlmMachine; it decrypts what is sent in its rooms and logs it ("decrypted").

Usage: python bridge.py CONFIG_JSON   (homeserver, domain, as_token, hs_token, port, log[, e2ee])
"""
import asyncio
import json
import sys

from mautrix.appservice import AppService
from mautrix.client import Client
from mautrix.client.state_store import MemoryStateStore
from mautrix.crypto import MemoryCryptoStore, OlmMachine
from mautrix.crypto.store import StateStore as CryptoStateStore
from mautrix.errors import SessionNotFound
from mautrix.types import (
    EncryptionAlgorithm,
    EventType,
    Membership,
    RoomCreatePreset,
    RoomEncryptionStateEventContent,
    UserID,
)

config = json.loads(sys.argv[1])
domain = config["domain"]
log = open(config["log"], "a", buffering=1)


def record(kind, **fields):
    log.write(json.dumps({"kind": kind, **fields}) + "\n")


class RoomsStateStore(CryptoStateStore):
    """The crypto state the OlmMachine asks about: every room is taken as encrypted and shared."""

    def __init__(self):
        self.rooms = set()

    async def is_encrypted(self, room_id):
        return True

    async def get_encryption_info(self, room_id):
        return RoomEncryptionStateEventContent(algorithm=EncryptionAlgorithm.MEGOLM_V1)

    async def find_shared_rooms(self, user_id):
        return list(self.rooms)


async def start_crypto(az):
    """The bot's own device (MSC4190) with its keys uploaded, fed by the transactions."""
    store = MemoryCryptoStore("testbridge", "pickle-key")
    client = Client(base_url=config["homeserver"], mxid=az.bot_mxid, sync_store=store, state_store=MemoryStateStore())
    crypto = OlmMachine(client, store, RoomsStateStore())
    az.otk_handler = crypto.handle_as_otk_counts
    az.device_list_handler = crypto.handle_as_device_lists
    az.to_device_handler = crypto.handle_as_to_device_event
    client.api.token = az.as_token
    await client.create_device_msc4190(device_id="BRIDGEBOT", initial_display_name="Test bridge")
    await crypto.load()
    await crypto.share_keys()
    record("crypto_ready", device_id=client.device_id)
    return crypto


async def main():
    az = AppService(
        server=config["homeserver"],
        domain=domain,
        as_token=config["as_token"],
        hs_token=config["hs_token"],
        bot_localpart="bridgebot",
        id="testbridge",
        ephemeral_events=True,
        encryption_events=bool(config.get("e2ee")),
    )
    crypto = await start_crypto(az) if config.get("e2ee") else None

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
        if crypto is not None and evt.type == EventType.ROOM_ENCRYPTED:
            try:
                decrypted = await crypto.decrypt_megolm_event(evt)
            except SessionNotFound as e:
                await crypto.wait_for_session(evt.room_id, e.session_id, timeout=10)
                decrypted = await crypto.decrypt_megolm_event(evt)
            record("decrypted", event_id=evt.event_id, sender=evt.sender, body=decrypted.content.body)
        elif (
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
