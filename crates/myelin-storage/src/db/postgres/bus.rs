//! Signals between processes over `LISTEN`/`NOTIFY` (channel `myelin`). Payloads are JSON:
//! `{"o": origin, "head": N, "marks": [...]}` from a stream writer after its commit (the safe head
//! it read and the change marks up to it: `changes.rs`), or `{"o": origin, "s": Signal}`. A writer publishes the head before it answers its callers, and
//! PostgreSQL delivers notifications in commit order, so a process hears of the head a write
//! moved before any wake-up sent after that write.
//!
//! The keeper (`keep_head`) reads the safe head every second as a backstop for lost
//! notifications, deletes the reservations of writers whose database backend has ended (a
//! process killed in the middle of a batch), which would otherwise hold every reader back, and
//! prunes the change rows no mark needs any more.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};

use super::{PgConn, head_payload_sql};
use crate::{
    Signal, StorageResult, StreamPos,
    db::{Conn, StreamHead, advisory_key, changes::HeadMarks},
};

/// How often the keeper reads the head and looks for abandoned reservations.
const KEEPER_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);
/// A reservation older than this is checked for a living owner.
const RESERVATION_SUSPECT_MS: i64 = 1_000;

/// NOTIFY payloads must stay under 8000 bytes; wake-ups for big rooms are split.
const MAX_PAYLOAD: usize = 7_000;

#[derive(Serialize, Deserialize)]
struct Payload {
    #[serde(default)]
    o: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    head: Option<StreamPos>,
    /// With `head`: each asked kind's highest position at or below it (`changes.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    marks: Option<Vec<Option<i64>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<Signal>,
}

impl Payload {
    /// The head and its marks, if this payload brings a head. Marks of another length count as
    /// none: every kind may have changed. (That is no way to mix versions: a process that wrote
    /// no `stream_changes` rows would have its writes skipped by the others' syncs. The
    /// processes of one deployment run one version: `docs/operations.md`.)
    fn head_news(&self) -> Option<(StreamPos, Option<HeadMarks>)> {
        let marks = self.marks.as_deref().and_then(|m| HeadMarks::try_from(m).ok());
        Some((self.head?, marks))
    }
}

/// The head and marks in a head payload's text (from [`head_payload_sql`]).
pub(crate) fn head_news(payload: &str) -> Option<(StreamPos, Option<HeadMarks>)> {
    serde_json::from_str::<Payload>(payload).ok()?.head_news()
}

/// Moves `head` to the one in a head payload's text, with its marks; returns the head after.
pub(crate) fn take_head(head: &StreamHead, payload: &str) -> Option<StreamPos> {
    let (pos, marks) = head_news(payload)?;
    Some(head.advance_learning(pos, marks.as_ref()))
}

pub struct Bus {
    outbound: mpsc::UnboundedSender<Outbound>,
    inbound: broadcast::Sender<Signal>,
}

/// What the publisher is asked to do, in order.
enum Outbound {
    Send(Signal),
    /// Answer once everything queued before has been sent (or given up).
    Flush(tokio::sync::oneshot::Sender<()>),
}

impl Bus {
    /// Starts listening (returns once `LISTEN` is in place) and the publisher.
    pub async fn start(config: Config, head: Arc<StreamHead>, origin: String) -> StorageResult<Self> {
        let (inbound, _) = broadcast::channel(4096);
        let listener = listen(&config).await?;
        tokio::spawn(receive(config.clone(), listener, head.clone(), origin.clone(), inbound.clone()));
        tokio::spawn(keep_head(config.clone(), head, origin.clone()));
        let (outbound, rx) = mpsc::unbounded_channel();
        tokio::spawn(publish(config, rx, origin));
        Ok(Self { outbound, inbound })
    }
}

impl Bus {
    pub fn broadcast(&self, signal: Signal) {
        let _ = self.outbound.send(Outbound::Send(signal));
    }

    /// Waits until every signal broadcast so far has been sent (each is retried a few times
    /// before it is given up, so this ends).
    pub async fn flush(&self) {
        let (done, sent) = tokio::sync::oneshot::channel();
        if self.outbound.send(Outbound::Flush(done)).is_ok() {
            let _ = sent.await;
        }
    }

    pub fn signals(&self) -> broadcast::Receiver<Signal> {
        self.inbound.subscribe()
    }
}

/// A listening connection: its client (kept alive) and the notification payloads it receives;
/// the channel closes when the connection does.
type Listener = (Client, mpsc::UnboundedReceiver<String>);

/// `MYELIN_BUS_DELAY_MS` (for tests): hold every incoming notification this long, as a slow
/// network between processes would.
fn link_delay() -> Option<std::time::Duration> {
    let ms: u64 = std::env::var("MYELIN_BUS_DELAY_MS").ok()?.parse().ok()?;
    (ms > 0).then(|| std::time::Duration::from_millis(ms))
}

async fn listen(config: &Config) -> StorageResult<Listener> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    // With a link delay, notifications pass through a queue that releases each one `delay` after
    // it arrived (in order, without adding up).
    let tx = match link_delay() {
        None => tx,
        Some(delay) => {
            let (delayed_tx, mut delayed_rx) = mpsc::unbounded_channel::<(tokio::time::Instant, String)>();
            tokio::spawn(async move {
                while let Some((due, payload)) = delayed_rx.recv().await {
                    tokio::time::sleep_until(due).await;
                    if tx.send(payload).is_err() {
                        break;
                    }
                }
            });
            let (stamp_tx, mut stamp_rx) = mpsc::unbounded_channel::<String>();
            tokio::spawn(async move {
                while let Some(payload) = stamp_rx.recv().await {
                    if delayed_tx.send((tokio::time::Instant::now() + delay, payload)).is_err() {
                        break;
                    }
                }
            });
            stamp_tx
        }
    };
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        break;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => {
                    tracing::warn!(%err, "LISTEN connection lost");
                    break;
                }
                None => break,
            }
        }
    });
    client.batch_execute("LISTEN myelin").await?;
    Ok((client, rx))
}

async fn receive(
    config: Config,
    mut listener: Listener,
    head: Arc<StreamHead>,
    origin: String,
    inbound: broadcast::Sender<Signal>,
) {
    loop {
        while let Some(payload) = listener.1.recv().await {
            let Ok(payload) = serde_json::from_str::<Payload>(&payload) else {
                tracing::warn!("ignoring a malformed notification");
                continue;
            };
            if let Some((pos, marks)) = payload.head_news() {
                head.advance_learning(pos, marks.as_ref());
            }
            if payload.o == origin {
                continue;
            }
            if let Some(signal) = payload.s {
                let _ = inbound.send(signal);
            }
        }
        // Lost: reconnect, catch up with the stream head, and tell the services to resync.
        listener = loop {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            match listen(&config).await {
                Ok(l) => break l,
                Err(err) => tracing::warn!(%err, "cannot re-establish LISTEN"),
            }
        };
        if let Ok(row) = listener.0.query_one(&head_payload_sql(""), &[]).await
            && let Ok(payload) = row.try_get::<_, &str>(0)
        {
            take_head(&head, payload);
        }
        let _ = inbound.send(Signal::Resync);
    }
}

/// Sends queued signals in order on a connection of its own. What has queued up while the last
/// statement was out goes in the next one, together: one transaction, so the other processes
/// receive the signals at once and in order (a message's cache invalidation and its wake-up
/// cost one round trip, not two). PostgreSQL delivers identical payloads of one transaction
/// once; every signal is idempotent, so that loses nothing.
async fn publish(config: Config, mut rx: mpsc::UnboundedReceiver<Outbound>, origin: String) {
    let mut conn: Option<PgConn> = None;
    let mut payloads_out = Vec::new();
    let mut flushed = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(outbound) = next.take().or_else(|| rx.try_recv().ok()) {
            match outbound {
                Outbound::Send(signal) => payloads_out.extend(payloads(&origin, signal)),
                Outbound::Flush(done) => flushed.push(done),
            }
            if payloads_out.len() >= MAX_SIGNALS_PER_STATEMENT {
                break;
            }
        }
        if !payloads_out.is_empty() {
            notify_all(&config, &mut conn, &payloads_out).await;
            payloads_out.clear();
        }
        for done in flushed.drain(..) {
            let _ = done.send(());
        }
    }
}

/// At most this many payloads go in one NOTIFY statement (a burst of wake-ups is sent in
/// several, so none waits for the whole burst to be encoded).
const MAX_SIGNALS_PER_STATEMENT: usize = 64;

/// Sends `payloads` in one statement, in order (a few attempts, reconnecting after a failure).
async fn notify_all(config: &Config, conn: &mut Option<PgConn>, payloads: &[String]) {
    for attempt in 0..3 {
        if conn.as_ref().is_none_or(PgConn::is_closed) {
            *conn = signal_connection(config).await;
        }
        let Some(c) = conn.as_mut() else {
            tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
            continue;
        };
        match c.execute("SELECT pg_notify('myelin', p) FROM unnest($1::text[]) AS p", &[&payloads]).await {
            Ok(_) => return,
            Err(err) => {
                tracing::warn!(%err, "NOTIFY failed");
                *conn = None;
            }
        }
    }
}

/// The publisher's connection. Its transactions only notify: they need not wait for the disk
/// (a notification is never replayed from it, and a crash of PostgreSQL drops every listener's
/// connection, which makes every process resynchronise).
async fn signal_connection(config: &Config) -> Option<PgConn> {
    let mut conn = PgConn::connect(config).await.ok()?;
    conn.batch("SET synchronous_commit = off").await.ok()?;
    Some(conn)
}

/// The payloads for one signal: one, or several for a wake-up of many users.
fn payloads(origin: &str, signal: Signal) -> Vec<String> {
    let encode =
        |s: Signal| serde_json::to_string(&Payload { o: origin.to_owned(), head: None, marks: None, s: Some(s) });
    let Ok(whole) = encode(signal.clone()) else { return Vec::new() };
    if whole.len() <= MAX_PAYLOAD {
        return vec![whole];
    }
    let Signal::Wake { users, pos } = signal else {
        tracing::warn!("dropping an oversized signal");
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut chunk = Vec::new();
    let mut size = 0;
    for user in users {
        if size + user.as_str().len() + 3 > MAX_PAYLOAD - 100 && !chunk.is_empty() {
            out.extend(encode(Signal::Wake { users: std::mem::take(&mut chunk), pos }));
            size = 0;
        }
        size += user.as_str().len() + 3;
        chunk.push(user);
    }
    if !chunk.is_empty() {
        out.extend(encode(Signal::Wake { users: chunk, pos }));
    }
    out
}

/// Every [`KEEPER_PERIOD`]: reads the safe head with its marks (a backstop for a lost
/// notification); if a reservation has been open for a while, deletes the ones whose writer's
/// backend no longer exists (its transaction was rolled back with it) and publishes the head that
/// frees; prunes the change rows below each kind's newest one under the safe head.
async fn keep_head(config: Config, head: Arc<StreamHead>, origin: String) {
    let sql = Keeper {
        head: format!(
            "SELECT p, (SELECT MIN(created_ms) FROM stream_reservations) < {} - $1 FROM ({}) AS x(p)",
            super::DB_NOW_MS,
            head_payload_sql(&origin)
        ),
        publish: super::publish_head_sql(&origin),
    };
    let mut conn: Option<PgConn> = None;
    let mut tick = tokio::time::interval(KEEPER_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if conn.as_ref().is_none_or(PgConn::is_closed) {
            conn = PgConn::connect(&config).await.ok();
        }
        let Some(c) = conn.as_mut() else { continue };
        if let Err(err) = keep_head_once(c, &head, &sql).await {
            tracing::debug!(%err, "stream head keeper");
            conn = None;
        }
    }
}

/// The keeper's statements, built once.
struct Keeper {
    head: String,
    publish: String,
}

/// Deletes, for each kind, the change rows below its newest one at or below the safe head `$1`:
/// every head read from now on is at least that safe head, so its marks are that row or newer.
/// One process at a time (concurrent deletes of the same rows could deadlock).
const PRUNE_CHANGES: &str = "WITH turn AS (SELECT pg_try_advisory_xact_lock($2) AS mine) \
     DELETE FROM stream_changes c \
     USING (SELECT kind, MAX(pos) AS keep FROM stream_changes WHERE pos <= $1 GROUP BY kind) k, turn \
     WHERE turn.mine AND c.kind = k.kind AND c.pos < k.keep";

async fn keep_head_once(c: &mut PgConn, head: &StreamHead, sql: &Keeper) -> StorageResult<()> {
    let (payload, suspect): (String, Option<bool>) = Conn::postgres(c)
        .query_one(&sql.head, &[&RESERVATION_SUSPECT_MS], |r| Ok((r.get(0)?, r.get::<Option<i64>>(1)?.map(|v| v != 0))))
        .await?;
    if let Some(safe) = take_head(head, &payload) {
        c.execute(PRUNE_CHANGES, &[&safe.get(), &advisory_key("stream_changes prune")]).await?;
    }
    if suspect == Some(true) {
        let freed = c
            .execute("DELETE FROM stream_reservations WHERE owner_pid NOT IN (SELECT pid FROM pg_stat_activity)", &[])
            .await?;
        if freed > 0 {
            tracing::warn!(freed, "deleted stream reservations of writers that are gone");
            if let Some(payload) = c.batch_first_value(&sql.publish).await? {
                take_head(head, &payload);
            }
        }
    }
    Ok(())
}
