// matrix-js-sdk (with its Rust crypto) as the invited side of an encrypted room, for the interop
// test in tests-sdk/tests/e2ee.rs.
//
//   NODE22 tests-js/e2ee-peer.mjs BASE_URL USERNAME PASSWORD ROOM_ID EXPECT_TEXT REPLY_TEXT
//
// Logs in (the user must exist), uploads its device keys, joins ROOM_ID (to which it must be
// invited, or already joined), waits until it has decrypted an m.room.message whose body is
// EXPECT_TEXT, sends REPLY_TEXT there (encrypted) and prints "OK" on stdout. Exits 1 with the
// reason on stderr on any failure or after 90 s. Progress goes to stderr. NODE22 is the path
// scripts/js-deps.sh prints.

import { start, progress, fail, succeed, describe, login, startAndSync, waitForOwnDeviceKeys,
    waitForDecryptedText, sendText } from "./common.mjs";

const DEADLINE_SECS = 90;

const args = process.argv.slice(2);
if (args.length !== 6) {
    process.stderr.write("usage: e2ee-peer.mjs BASE_URL USERNAME PASSWORD ROOM_ID EXPECT_TEXT REPLY_TEXT\n");
    process.exit(2);
}
const [baseUrl, username, password, roomId, expectText, replyText] = args;

/** Resolves once this user is invited to (or already in) roomId. */
function waitForInviteOrJoin(sdk, client) {
    return new Promise((resolve) => {
        const check = (room) => {
            if (room?.roomId !== roomId) return false;
            const membership = room.getMyMembership();
            if (membership === "invite" || membership === "join") {
                client.off(sdk.RoomEvent.MyMembership, check);
                resolve(membership);
                return true;
            }
            return false;
        };
        client.on(sdk.RoomEvent.MyMembership, check);
        if (!check(client.getRoom(roomId))) progress(`waiting to be invited to ${roomId}`);
    });
}

async function main() {
    const sdk = await start("e2ee-peer", DEADLINE_SECS);
    const client = await login(sdk, baseUrl, username, password);
    // Listen from the start, so a message that arrives while we are joining is not missed.
    const decrypted = waitForDecryptedText(sdk, client, roomId, expectText);
    await startAndSync(sdk, client);
    // The sender shares the room key with the devices it knows of when we join: upload first.
    await waitForOwnDeviceKeys(client);
    const membership = await waitForInviteOrJoin(sdk, client);
    if (membership === "invite") {
        progress(`invited to ${roomId}; joining`);
        await client.joinRoom(roomId);
        progress(`joined ${roomId}`);
    } else {
        progress(`already in ${roomId}`);
    }
    progress(`waiting to decrypt ${JSON.stringify(expectText)}`);
    await decrypted;
    await sendText(client, roomId, replyText);
    succeed();
}

main().catch((err) => fail(describe(err)));
