// The other side of e2ee-peer.mjs, also in matrix-js-sdk: for checking the peer (and the server's
// end-to-end encryption endpoints) without the Rust test.
//
//   NODE22 tests-js/e2ee-initiator.mjs BASE_URL USERNAME PASSWORD PEER_USER_ID SEND_TEXT EXPECT_TEXT
//
// Logs in (the user must exist), creates a room encrypted with m.megolm.v1.aes-sha2, invites
// PEER_USER_ID and prints the room id on stdout ("ROOM <id>") at once, waits until the peer has
// joined, sends SEND_TEXT (encrypted), waits until it has decrypted an m.room.message whose body is
// EXPECT_TEXT and prints "OK". Exits 1 with the reason on stderr on failure or after 90 s.

import { start, progress, fail, succeed, describe, login, startAndSync, waitForOwnDeviceKeys,
    waitForDecryptedText, sendText } from "./common.mjs";

const DEADLINE_SECS = 90;

const args = process.argv.slice(2);
if (args.length !== 6) {
    process.stderr.write("usage: e2ee-initiator.mjs BASE_URL USERNAME PASSWORD PEER_USER_ID SEND_TEXT EXPECT_TEXT\n");
    process.exit(2);
}
const [baseUrl, username, password, peerUserId, sendTextBody, expectText] = args;

function waitForJoin(sdk, client, roomId, userId) {
    return new Promise((resolve) => {
        const check = (_event, member) => {
            if (member.roomId === roomId && member.userId === userId && member.membership === "join") {
                client.off(sdk.RoomMemberEvent.Membership, check);
                resolve();
            }
        };
        client.on(sdk.RoomMemberEvent.Membership, check);
        const member = client.getRoom(roomId)?.getMember(userId);
        if (member) check(null, member);
    });
}

async function main() {
    const sdk = await start("e2ee-initiator", DEADLINE_SECS);
    const client = await login(sdk, baseUrl, username, password);
    await startAndSync(sdk, client);
    await waitForOwnDeviceKeys(client);
    const { room_id: roomId } = await client.createRoom({
        invite: [peerUserId],
        initial_state: [
            { type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } },
        ],
    });
    process.stdout.write(`ROOM ${roomId}\n`);
    progress(`created ${roomId}, invited ${peerUserId}`);
    const decrypted = waitForDecryptedText(sdk, client, roomId, expectText);
    // The room appears in our sync after createRoom returns: wait for it before looking at members.
    await waitForJoin(sdk, client, roomId, peerUserId);
    progress(`${peerUserId} joined`);
    await sendText(client, roomId, sendTextBody);
    progress(`waiting to decrypt ${JSON.stringify(expectText)}`);
    await decrypted;
    succeed();
}

main().catch((err) => fail(describe(err)));
