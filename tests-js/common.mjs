// Shared by the matrix-js-sdk peers of the end-to-end encryption tests.
//
// stdout is kept for the peers' final "OK": everything else, the SDK's own logging included, goes
// to stderr. Set MYELIN_JS_LOG=debug (or info, warn, error, silent) to change how much the SDK says.

import { format } from "node:util";

let tag = "peer";
const started = Date.now();

/** A progress line on stderr, with the peer's name and the seconds since it started. */
export function progress(...args) {
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    process.stderr.write(`[${tag} ${secs}s] ${format(...args)}\n`);
}

/**
 * Sends console output to stderr, loads matrix-js-sdk (after that, so its logger binds to the
 * redirected console) and arms the overall deadline. Returns the SDK module.
 */
export async function start(name, deadlineSecs) {
    tag = name;
    // The SDK's logger looks up console's methods at each call, and sets its own level to debug:
    // the level is applied here instead.
    const levels = ["trace", "debug", "info", "warn", "error", "silent"];
    const wanted = levels.indexOf(process.env.MYELIN_JS_LOG || "warn");
    const threshold = wanted < 0 ? levels.indexOf("warn") : wanted;
    const toStderr = (...args) => process.stderr.write(format(...args) + "\n");
    const ignore = () => {};
    for (const [method, level] of [["trace", 0], ["debug", 1], ["log", 2], ["info", 2], ["warn", 3], ["error", 4]]) {
        console[method] = level >= threshold ? toStderr : ignore;
    }
    logHttp = threshold <= levels.indexOf("debug");
    const timer = setTimeout(() => fail(`timed out after ${deadlineSecs} s`), deadlineSecs * 1000);
    timer.unref();
    process.on("unhandledRejection", (err) => fail(`unhandled rejection: ${describe(err)}`));
    process.on("uncaughtException", (err) => fail(`uncaught exception: ${describe(err)}`));
    return await import("matrix-js-sdk");
}

let logHttp = false;

/**
 * The SDK's fetch: reports every answer that is not a success (method, path, status, body) as
 * progress, so a server's error is in the peer's stderr; with MYELIN_JS_LOG=debug, every request.
 * Exported for peers that make their clients themselves.
 */
export async function loggingFetch(resource, options) {
    const method = options?.method || "GET";
    const url = new URL(resource instanceof Request ? resource.url : String(resource));
    const path = url.pathname;
    const res = await fetch(resource, options);
    if (!res.ok) {
        let body = "";
        try {
            body = (await res.clone().text()).slice(0, 1000);
        } catch (err) {
            body = `(unreadable: ${err})`;
        }
        progress(`HTTP ${method} ${path} -> ${res.status} ${body}`);
    } else if (logHttp) {
        progress(`HTTP ${method} ${path} -> ${res.status}`);
    }
    return res;
}

let client = null;

/** Stops the client's sync loop and crypto, if one was started. */
function stopClient() {
    if (client) {
        try {
            client.stopClient();
        } catch (err) {
            progress(`stopping the client failed: ${describe(err)}`);
        }
        client = null;
    }
}

/** Prints the reason on stderr and exits 1. */
export function fail(reason) {
    process.stderr.write(`[${tag}] FAILED: ${reason}\n`);
    stopClient();
    process.exit(1);
}

/** Prints "OK" on stdout and exits 0 once it is written. */
export function succeed() {
    stopClient();
    process.stdout.write("OK\n", () => process.exit(0));
}

export function describe(err) {
    if (err && typeof err === "object") {
        // MatrixError: the HTTP status and the server's error body say the most.
        if ("httpStatus" in err || "errcode" in err) {
            return `${err.name}: ${err.message} (status ${err.httpStatus}, body ${JSON.stringify(err.data)})`;
        }
        return err.stack || String(err);
    }
    return String(err);
}

/**
 * Logs in with m.login.password on a fresh device, then makes the client that the peer uses, with
 * Rust crypto in memory (nothing is kept between runs). The client is not started yet.
 */
export async function login(sdk, baseUrl, username, password) {
    const anon = sdk.createClient({ baseUrl, fetchFn: loggingFetch });
    const res = await anon.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: username },
        password,
        initial_device_display_name: `matrix-js-sdk peer (${tag})`,
    });
    progress(`logged in as ${res.user_id}, device ${res.device_id}`);
    client = sdk.createClient({
        baseUrl,
        userId: res.user_id,
        deviceId: res.device_id,
        accessToken: res.access_token,
        fetchFn: loggingFetch,
    });
    await client.initRustCrypto({ useIndexedDB: false });
    const keys = await client.getCrypto().getOwnDeviceKeys();
    progress(`Rust crypto initialised (in memory), ed25519 key ${keys.ed25519}`);
    return client;
}

/** Starts syncing and resolves at the first completed sync (state PREPARED). */
export async function startAndSync(sdk, client) {
    const prepared = new Promise((resolve, reject) => {
        const onSync = (state, _prev, data) => {
            if (state === sdk.SyncState.Prepared || state === sdk.SyncState.Syncing) {
                client.off(sdk.ClientEvent.Sync, onSync);
                resolve();
            } else if (state === sdk.SyncState.Error) {
                progress(`sync error: ${describe(data?.error)}`);
            }
        };
        client.on(sdk.ClientEvent.Sync, onSync);
    });
    await client.startClient({ initialSyncLimit: 20, lazyLoadMembers: false });
    await prepared;
    progress("first sync done");
}

/**
 * Waits until the server returns this device's keys from /keys/query, i.e. the crypto's first
 * /keys/upload has gone through: a sender that looks us up from then on finds the device.
 */
export async function waitForOwnDeviceKeys(client) {
    const userId = client.getUserId();
    const deviceId = client.getDeviceId();
    for (let attempt = 0; ; attempt++) {
        const res = await client.http.authedRequest("POST", "/keys/query", undefined, {
            device_keys: { [userId]: [] },
        });
        const keys = res.device_keys?.[userId]?.[deviceId];
        if (keys) {
            progress(`the server has this device's keys (${Object.keys(keys.keys || {}).join(", ")})`);
            return;
        }
        if (attempt % 10 === 0) progress("waiting for the device keys to be uploaded");
        await new Promise((r) => setTimeout(r, 200));
    }
}

/**
 * Resolves with the first m.room.message in roomId whose decrypted body is `body`, whether it was
 * decrypted before this was called (already in the timeline) or later (a room key that came late).
 * Reports messages that could not be decrypted, as progress.
 */
export function waitForDecryptedText(sdk, client, roomId, body) {
    return new Promise((resolve) => {
        const reported = new Set();
        const check = (event) => {
            if (event.getRoomId() !== roomId) return;
            if (event.status !== null) return; // our own message, not sent yet (local echo)
            if (event.isBeingDecrypted()) return; // Event.decrypted follows
            if (event.isDecryptionFailure()) {
                if (!reported.has(event.getId())) {
                    reported.add(event.getId());
                    progress(`could not decrypt ${event.getId()} yet: ${event.decryptionFailureReason}`);
                }
                return;
            }
            if (event.getType() !== "m.room.message") return;
            const text = event.getContent().body;
            if (!event.isEncrypted()) {
                progress(`ignoring an unencrypted message: ${JSON.stringify(text)}`);
                return;
            }
            progress(`decrypted ${event.getId()} from ${event.getSender()}: ${JSON.stringify(text)}`);
            if (text === body) {
                client.off(sdk.RoomEvent.Timeline, onTimeline);
                client.off(sdk.MatrixEventEvent.Decrypted, check);
                resolve(event);
            }
        };
        const onTimeline = (event) => check(event);
        client.on(sdk.RoomEvent.Timeline, onTimeline);
        client.on(sdk.MatrixEventEvent.Decrypted, check);
        for (const event of client.getRoom(roomId)?.getLiveTimeline().getEvents() ?? []) check(event);
    });
}

/** Sends an m.text message (encrypted by the SDK in an encrypted room); resolves with its event id. */
export async function sendText(client, roomId, body) {
    const res = await client.sendMessage(roomId, { msgtype: "m.text", body });
    progress(`sent ${JSON.stringify(body)} as ${res.event_id}`);
    return res.event_id;
}
