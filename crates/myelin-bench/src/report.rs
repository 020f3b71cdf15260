//! Markdown report: one column per target, plus a ratio column comparing the
//! first target with the second, phrased so that a ratio above 1× means the
//! first target is better.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::call::CallResult;
use crate::delayed::DelayedResult;
use crate::media::MediaResult;
use crate::scenarios::{
    FanoutResult, InitialSyncResult, JoinResult, KeysResult, SendResult, SlidingSyncResult, avg, p50, p99,
};
use crate::search::SearchResult;
use crate::{appservice::AppserviceResult, login::LoginResult, push::PushResult};

/// Outcome of one scenario on one target.
pub enum Outcome<T> {
    NotRun,
    Failed(String),
    Done(T),
}

impl<T> Outcome<T> {
    fn cell(&self, f: impl Fn(&T) -> Option<f64>) -> Cell {
        match self {
            Outcome::NotRun => Cell::NotRun,
            Outcome::Failed(_) => Cell::Failed,
            Outcome::Done(v) => f(v).map_or(Cell::NoData, Cell::Value),
        }
    }
}

/// Everything measured on one target.
pub struct TargetReport {
    pub name: String,
    pub url: String,
    pub rss_idle_mb: Option<f64>,
    pub rss_after_mb: Option<f64>,
    pub send: Outcome<SendResult>,
    pub rooms_send: Outcome<SendResult>,
    pub fanout: Outcome<FanoutResult>,
    pub fanout_wide: Outcome<FanoutResult>,
    pub initial_sync: Outcome<InitialSyncResult>,
    pub keys: Outcome<KeysResult>,
    pub sliding_sync: Outcome<SlidingSyncResult>,
    pub federation: Outcome<FanoutResult>,
    pub join: Outcome<JoinResult>,
    pub delayed: Outcome<DelayedResult>,
    pub call: Outcome<CallResult>,
    pub media: Outcome<MediaResult>,
    pub search: Outcome<SearchResult>,
    pub push: Outcome<PushResult>,
    pub appservice: Outcome<AppserviceResult>,
    pub login: Outcome<LoginResult>,
    pub rate_limit_retries: u64,
}

impl TargetReport {
    pub fn errors(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (scenario, outcome) in [
            ("send", failure(&self.send)),
            ("send, own rooms", failure(&self.rooms_send)),
            ("fan-out", failure(&self.fanout)),
            ("wide fan-out", failure(&self.fanout_wide)),
            ("initial sync", failure(&self.initial_sync)),
            ("keys", failure(&self.keys)),
            ("sliding sync", failure(&self.sliding_sync)),
            ("federation", failure(&self.federation)),
            ("join", failure(&self.join)),
            ("delayed events", failure(&self.delayed)),
            ("call", failure(&self.call)),
            ("media", failure(&self.media)),
            ("search", failure(&self.search)),
            ("push", failure(&self.push)),
            ("application service", failure(&self.appservice)),
            ("login", failure(&self.login)),
        ] {
            if let Some(err) = outcome {
                out.push(format!("{} / {scenario}: {err}", self.name));
            }
        }
        out
    }
}

fn failure<T>(o: &Outcome<T>) -> Option<&str> {
    match o {
        Outcome::Failed(e) => Some(e),
        _ => None,
    }
}

#[derive(Clone, Copy)]
enum Cell {
    NotRun,
    Failed,
    NoData,
    Value(f64),
}

#[derive(Clone, Copy)]
enum Better {
    Higher(&'static str),
    Lower(&'static str),
    Neither,
}

struct Row {
    label: String,
    decimals: usize,
    better: Better,
    cells: Vec<Cell>,
}

fn rows(targets: &[TargetReport], params_rooms: usize) -> Vec<Row> {
    type Getter = Box<dyn Fn(&TargetReport) -> Cell>;
    let specs: Vec<(String, usize, Better, Getter)> = vec![
        (
            "send: throughput (msg/s)".into(),
            1,
            Better::Higher("throughput"),
            Box::new(|t| t.send.cell(|r| Some(r.throughput()))),
        ),
        (
            "send: latency p50 (ms)".into(),
            1,
            Better::Lower("latency"),
            Box::new(|t| t.send.cell(|r| p50(&r.latencies_ms))),
        ),
        (
            "send: latency p99 (ms)".into(),
            1,
            Better::Lower("latency"),
            Box::new(|t| t.send.cell(|r| p99(&r.latencies_ms))),
        ),
        ("send: messages sent".into(), 0, Better::Neither, Box::new(|t| t.send.cell(|r| Some(r.messages as f64)))),
        (
            "send, a room per sender: throughput (msg/s)".into(),
            1,
            Better::Higher("throughput"),
            Box::new(|t| t.rooms_send.cell(|r| Some(r.throughput()))),
        ),
        (
            "send, a room per sender: latency p50 (ms)".into(),
            1,
            Better::Lower("latency"),
            Box::new(|t| t.rooms_send.cell(|r| p50(&r.latencies_ms))),
        ),
        (
            "fan-out: last listener p50 (ms)".into(),
            1,
            Better::Lower("latency"),
            Box::new(|t| t.fanout.cell(|r| p50(&r.last_seen_ms))),
        ),
        (
            "fan-out: last listener p99 (ms)".into(),
            1,
            Better::Lower("latency"),
            Box::new(|t| t.fanout.cell(|r| p99(&r.last_seen_ms))),
        ),
        (
            "fan-out: mean per-listener (ms)".into(),
            1,
            Better::Lower("latency"),
            Box::new(|t| t.fanout.cell(|r| avg(&r.per_listener_ms))),
        ),
        (
            "fan-out: mean per-listener on the sender's process (ms)".into(),
            1,
            Better::Lower("latency"),
            Box::new(|t| {
                t.fanout.cell(|r| {
                    let here = r.per_listener_ms.len().checked_sub(r.per_listener_elsewhere_ms.len())?;
                    let sum = r.per_listener_ms.iter().sum::<f64>() - r.per_listener_elsewhere_ms.iter().sum::<f64>();
                    (here > 0 && !r.per_listener_elsewhere_ms.is_empty()).then(|| sum / here as f64)
                })
            }),
        ),
        (
            "fan-out: mean per-listener on another process (ms)".into(),
            1,
            Better::Lower("latency"),
            Box::new(|t| t.fanout.cell(|r| avg(&r.per_listener_elsewhere_ms))),
        ),
        (
            "fan-out: missed deliveries".into(),
            0,
            Better::Neither,
            Box::new(|t| t.fanout.cell(|r| Some(r.missed as f64))),
        ),
        (
            "wide fan-out: last listener of the room p50 (ms)".into(),
            1,
            Better::Lower("latency"),
            Box::new(|t| t.fanout_wide.cell(|r| p50(&r.last_seen_ms))),
        ),
        (
            "wide fan-out: last listener of the room p99 (ms)".into(),
            1,
            Better::Lower("latency"),
            Box::new(|t| t.fanout_wide.cell(|r| p99(&r.last_seen_ms))),
        ),
        (
            "wide fan-out: mean per-listener (ms)".into(),
            1,
            Better::Lower("latency"),
            Box::new(|t| t.fanout_wide.cell(|r| avg(&r.per_listener_ms))),
        ),
        (
            "wide fan-out: missed deliveries".into(),
            0,
            Better::Neither,
            Box::new(|t| t.fanout_wide.cell(|r| Some(r.missed as f64))),
        ),
        (
            "wide fan-out: RSS with every listener connected (MB)".into(),
            1,
            Better::Lower("memory"),
            Box::new(|t| t.fanout_wide.cell(|r| r.rss_listening_mb)),
        ),
        (
            "wide fan-out: server's sync build time per answer (ms, from its metrics)".into(),
            2,
            Better::Lower("latency"),
            Box::new(|t| t.fanout_wide.cell(|r| r.server_build.map(|(secs, count)| secs * 1000.0 / count))),
        ),
        (
            "across servers: last listener p50 (ms)".into(),
            1,
            Better::Lower("latency"),
            Box::new(|t| t.federation.cell(|r| p50(&r.last_seen_ms))),
        ),
        (
            "across servers: last listener p99 (ms)".into(),
            1,
            Better::Lower("latency"),
            Box::new(|t| t.federation.cell(|r| p99(&r.last_seen_ms))),
        ),
        (
            "across servers: missed deliveries".into(),
            0,
            Better::Neither,
            Box::new(|t| t.federation.cell(|r| Some(r.missed as f64))),
        ),
        (
            "join a big room on another server: /join (ms)".into(),
            0,
            Better::Lower("time"),
            Box::new(|t| t.join.cell(|r| Some(r.join_ms))),
        ),
        (
            "join a big room on another server: until the member list is whole (ms)".into(),
            0,
            Better::Lower("time"),
            Box::new(|t| t.join.cell(|r| Some(r.whole_ms))),
        ),
        (
            "delayed-event timers: lateness p50 (ms)".into(),
            1,
            Better::Lower("lateness"),
            Box::new(|t| t.delayed.cell(|r| p50(&r.lateness_ms))),
        ),
        (
            "delayed-event timers: lateness p99 (ms)".into(),
            1,
            Better::Lower("lateness"),
            Box::new(|t| t.delayed.cell(|r| p99(&r.lateness_ms))),
        ),
        (
            "delayed-event timers: never fired".into(),
            0,
            Better::Neither,
            Box::new(|t| t.delayed.cell(|r| Some(r.missed as f64))),
        ),
        (
            "media upload, 4 MiB files: median (MB/s)".into(),
            1,
            Better::Higher("throughput"),
            Box::new(|t| t.media.cell(|r| p50(&r.upload_mb_s))),
        ),
        (
            "media download (authenticated): median (MB/s)".into(),
            1,
            Better::Higher("throughput"),
            Box::new(|t| t.media.cell(|r| p50(&r.download_mb_s))),
        ),
        (
            "thumbnail 320×240 of a 3 Mpx JPEG, first request: p50 (ms)".into(),
            1,
            Better::Lower("latency"),
            Box::new(|t| t.media.cell(|r| p50(&r.thumbnail_first_ms))),
        ),
        (
            "thumbnail again: p50 (ms)".into(),
            1,
            Better::Lower("latency"),
            Box::new(|t| t.media.cell(|r| p50(&r.thumbnail_again_ms))),
        ),
        (
            "search: filling the room, messages/s".into(),
            0,
            Better::Higher("throughput"),
            Box::new(|t| t.search.cell(|r| Some(r.fill_msgs_per_s))),
        ),
        (
            "search: common word (¼ of messages), by rank: p50 (ms)".into(),
            1,
            Better::Lower("latency"),
            Box::new(|t| t.search.cell(|r| p50(&r.common_rank_ms))),
        ),
        (
            "search: common word, newest first: p50 (ms)".into(),
            1,
            Better::Lower("latency"),
            Box::new(|t| t.search.cell(|r| p50(&r.common_recent_ms))),
        ),
        (
            "search: rare word (1 in 1000): p50 (ms)".into(),
            1,
            Better::Lower("latency"),
            Box::new(|t| t.search.cell(|r| p50(&r.rare_ms))),
        ),
        (
            "search: two-word phrase: p50 (ms)".into(),
            1,
            Better::Lower("latency"),
            Box::new(|t| t.search.cell(|r| p50(&r.phrase_ms))),
        ),
        (
            "fan-out: server's own sync build time per answer (ms, from its metrics)".into(),
            2,
            Better::Lower("latency"),
            Box::new(|t| t.fanout.cell(|r| r.server_build.map(|(secs, count)| secs * 1000.0 / count))),
        ),
        (
            "fan-out: server CPU per message (ms, user + system)".into(),
            1,
            Better::Lower("CPU"),
            Box::new(|t| t.fanout.cell(|r| r.server_cpu_ms.map(|ms| ms / (r.last_seen_ms.len().max(1) as f64)))),
        ),
        (
            "fan-out: benchmark's own CPU per message (ms, its listeners and sender)".into(),
            1,
            Better::Neither,
            Box::new(|t| t.fanout.cell(|r| r.client_cpu_ms.map(|ms| ms / (r.last_seen_ms.len().max(1) as f64)))),
        ),
        (
            "wide fan-out: server CPU per message (ms, user + system)".into(),
            1,
            Better::Lower("CPU"),
            Box::new(|t| t.fanout_wide.cell(|r| r.server_cpu_ms.map(|ms| ms / (r.last_seen_ms.len().max(1) as f64)))),
        ),
        (
            "fan-out: server's sync build time per message, all listeners (ms)".into(),
            1,
            Better::Lower("latency"),
            Box::new(|t| {
                t.fanout.cell(|r| r.server_build.map(|(secs, _)| secs * 1000.0 / (r.last_seen_ms.len().max(1) as f64)))
            }),
        ),
        (
            "login: password login (/login): p50 (ms)".into(),
            1,
            Better::Lower("latency"),
            Box::new(|t| t.login.cell(|r| p50(&r.password_ms))),
        ),
        (
            "login: full OAuth login (register client → pages → token → whoami): p50 (ms)".into(),
            1,
            Better::Lower("latency"),
            Box::new(|t| t.login.cell(|r| if r.oauth_ms.is_empty() { None } else { p50(&r.oauth_ms) })),
        ),
        (
            "login: token refresh: p50 (ms)".into(),
            1,
            Better::Lower("latency"),
            Box::new(|t| t.login.cell(|r| p50(&r.refresh_ms))),
        ),
        (
            "push: send → gateway receives: p50 (ms)".into(),
            1,
            Better::Lower("latency"),
            Box::new(|t| t.push.cell(|r| p50(&r.latencies_ms))),
        ),
        (
            "push: send → gateway receives: p99 (ms)".into(),
            1,
            Better::Lower("latency"),
            Box::new(|t| t.push.cell(|r| p99(&r.latencies_ms))),
        ),
        (
            "application service: messages sent per second (all senders)".into(),
            0,
            Better::Higher("throughput"),
            Box::new(|t| t.appservice.cell(|r| Some(r.messages as f64 / r.send_secs.max(1e-9)))),
        ),
        (
            "application service: messages delivered per second (first send → all received)".into(),
            0,
            Better::Higher("throughput"),
            Box::new(|t| t.appservice.cell(|r| Some(r.messages as f64 / r.drain_secs.max(1e-9)))),
        ),
        (
            "application service: messages lost".into(),
            0,
            Better::Neither,
            Box::new(|t| t.appservice.cell(|r| Some(r.lost as f64))),
        ),
        (
            "application service: messages delivered twice".into(),
            0,
            Better::Neither,
            Box::new(|t| t.appservice.cell(|r| Some(r.duplicated as f64))),
        ),
        (
            "application service: transactions".into(),
            0,
            Better::Neither,
            Box::new(|t| t.appservice.cell(|r| Some(r.transactions as f64))),
        ),
        (
            "call join (OpenID, delayed leave, membership): p50 (ms)".into(),
            1,
            Better::Lower("time"),
            Box::new(|t| t.call.cell(|r| p50(&r.join_ms))),
        ),
        (
            "call join until the other member sees it: p50 (ms)".into(),
            1,
            Better::Lower("time"),
            Box::new(|t| t.call.cell(|r| p50(&r.join_seen_ms))),
        ),
        (
            "call join until the other member sees it: p99 (ms)".into(),
            1,
            Better::Lower("time"),
            Box::new(|t| t.call.cell(|r| p99(&r.join_seen_ms))),
        ),
        (
            "call keep-alive (delayed leave restart): p50 (ms)".into(),
            1,
            Better::Lower("time"),
            Box::new(|t| t.call.cell(|r| p50(&r.restart_ms))),
        ),
        (
            "call hang-up until the other member sees it: p50 (ms)".into(),
            1,
            Better::Lower("time"),
            Box::new(|t| t.call.cell(|r| p50(&r.hangup_seen_ms))),
        ),
        (
            format!("initial sync, {params_rooms} rooms: median (ms)"),
            1,
            Better::Lower("time"),
            Box::new(|t| t.initial_sync.cell(InitialSyncResult::median_ms)),
        ),
        (
            "initial sync: response size (KiB)".into(),
            1,
            Better::Neither,
            Box::new(|t| t.initial_sync.cell(|r| Some(r.response_bytes as f64 / 1024.0))),
        ),
        (
            "initial sync: rooms returned".into(),
            0,
            Better::Neither,
            Box::new(|t| t.initial_sync.cell(|r| Some(r.rooms_seen as f64))),
        ),
        (
            "keys: /keys/claim, one key per device: median (ms)".into(),
            1,
            Better::Lower("time"),
            Box::new(|t| t.keys.cell(KeysResult::claim_median_ms)),
        ),
        (
            "keys: claimed keys/s".into(),
            0,
            Better::Higher("throughput"),
            Box::new(|t| t.keys.cell(|r| r.claim_median_ms().map(|m| r.devices as f64 / (m / 1000.0).max(1e-9)))),
        ),
        (
            "keys: devices (keys handed out)".into(),
            0,
            Better::Neither,
            Box::new(|t| t.keys.cell(|r| Some(r.claimed as f64))),
        ),
        (
            "keys: /sendToDevice to every device: median (ms)".into(),
            1,
            Better::Lower("time"),
            Box::new(|t| t.keys.cell(KeysResult::to_device_median_ms)),
        ),
        (
            "keys: to-device messages/s".into(),
            0,
            Better::Higher("throughput"),
            Box::new(|t| t.keys.cell(|r| r.to_device_median_ms().map(|m| r.devices as f64 / (m / 1000.0).max(1e-9)))),
        ),
        (
            "sliding sync: first [0,19] window, fresh connection: median (ms)".into(),
            1,
            Better::Lower("time"),
            Box::new(|t| t.sliding_sync.cell(SlidingSyncResult::first_window_median_ms)),
        ),
        (
            "sliding sync: rooms the user is in".into(),
            0,
            Better::Neither,
            Box::new(|t| t.sliding_sync.cell(|r| Some(r.rooms as f64))),
        ),
        (
            "sliding sync: rooms in the first window".into(),
            0,
            Better::Neither,
            Box::new(|t| t.sliding_sync.cell(|r| Some(r.window_rooms as f64))),
        ),
        (
            "sliding sync: new message to long-poller: median (ms)".into(),
            1,
            Better::Lower("latency"),
            Box::new(|t| t.sliding_sync.cell(SlidingSyncResult::update_median_ms)),
        ),
        (
            "sliding sync: RSS per idle connection (KiB)".into(),
            1,
            Better::Lower("memory"),
            Box::new(|t| t.sliding_sync.cell(|r| r.kib_per_connection)),
        ),
        (
            "RSS idle, before scenarios (MB)".into(),
            1,
            Better::Lower("memory"),
            Box::new(|t| t.rss_idle_mb.map_or(Cell::NotRun, Cell::Value)),
        ),
        (
            "RSS after all scenarios (MB)".into(),
            1,
            Better::Lower("memory"),
            Box::new(|t| t.rss_after_mb.map_or(Cell::NotRun, Cell::Value)),
        ),
        ("429 retries".into(), 0, Better::Neither, Box::new(|t| Cell::Value(t.rate_limit_retries as f64))),
    ];
    specs
        .into_iter()
        .map(|(label, decimals, better, get)| Row {
            label,
            decimals,
            better,
            cells: targets.iter().map(&get).collect(),
        })
        // Drop rows that no target has anything for (e.g. RSS without --pid).
        .filter(|row| row.cells.iter().any(|c| !matches!(c, Cell::NotRun)))
        .collect()
}

fn format_cell(cell: Cell, decimals: usize) -> String {
    match cell {
        Cell::NotRun => "–".into(),
        Cell::Failed => "error".into(),
        Cell::NoData => "n/a".into(),
        Cell::Value(v) => format!("{v:.decimals$}"),
    }
}

fn ratio(row: &Row, first: &str, second: &str) -> String {
    let (Some(Cell::Value(a)), Some(Cell::Value(b))) = (row.cells.first(), row.cells.get(1)) else {
        return String::new();
    };
    let (a, b) = (*a, *b);
    match row.better {
        Better::Higher(word) if b > 0.0 => format!("{first}/{second} {word} {:.1}×", a / b),
        Better::Lower(word) if a > 0.0 => format!("{second}/{first} {word} {:.1}×", b / a),
        _ => String::new(),
    }
}

/// Renders the markdown table (plus error notes, if any).
pub fn table(targets: &[TargetReport], params_rooms: usize) -> String {
    let mut out = String::new();
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    let with_ratio = targets.len() > 1;
    let (first, second) = (names.first().copied().unwrap_or_default(), names.get(1).copied().unwrap_or_default());

    let mut header = String::from("| Metric |");
    let mut rule = String::from("| --- |");
    for name in &names {
        let _ = write!(header, " {name} |");
        rule.push_str(" ---: |");
    }
    if with_ratio {
        let _ = write!(header, " Ratio (>1× = {first} better) |");
        rule.push_str(" --- |");
    }
    let _ = writeln!(out, "{header}");
    let _ = writeln!(out, "{rule}");
    for row in rows(targets, params_rooms) {
        let mut line = format!("| {} |", row.label);
        for cell in &row.cells {
            let _ = write!(line, " {} |", format_cell(*cell, row.decimals));
        }
        if with_ratio {
            let _ = write!(line, " {} |", ratio(&row, first, second));
        }
        let _ = writeln!(out, "{line}");
    }

    let errors: Vec<String> = targets.iter().flat_map(TargetReport::errors).collect();
    if !errors.is_empty() {
        let _ = writeln!(out, "\nErrors:\n");
        for e in errors {
            let _ = writeln!(out, "- {}", e.replace('\n', " "));
        }
    }
    out
}

/// Current UTC time as `YYYY-MM-DD HH:MM UTC` (no date crate needed).
pub fn utc_now() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rem / 3600, (rem % 3600) / 60)
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (y, u32::try_from(m).unwrap_or(1), u32::try_from(d).unwrap_or(1))
}

/// "N cores, CPU model" from the running machine.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores (nproc), {model}")
}

/// The command line, shell-quoted where needed.
pub fn command_line() -> String {
    std::env::args()
        .map(|a| {
            if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_=./:,@+%".contains(c)) {
                a
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
    }

    fn target(name: &str, throughput_msgs: usize, rss: f64) -> TargetReport {
        TargetReport {
            name: name.into(),
            url: String::new(),
            rss_idle_mb: Some(rss),
            rss_after_mb: None,
            send: Outcome::Done(SendResult {
                messages: throughput_msgs,
                elapsed: std::time::Duration::from_secs(1),
                latencies_ms: vec![10.0, 20.0],
            }),
            rooms_send: Outcome::NotRun,
            fanout: Outcome::NotRun,
            fanout_wide: Outcome::NotRun,
            federation: Outcome::NotRun,
            join: Outcome::NotRun,
            delayed: Outcome::NotRun,
            call: Outcome::NotRun,
            media: Outcome::NotRun,
            search: Outcome::NotRun,
            push: Outcome::NotRun,
            appservice: Outcome::NotRun,
            login: Outcome::NotRun,
            initial_sync: Outcome::Failed("boom".into()),
            keys: Outcome::NotRun,
            sliding_sync: Outcome::NotRun,
            rate_limit_retries: 0,
        }
    }

    #[test]
    fn ratio_phrasing() {
        let t = table(&[target("a", 600, 10.0), target("b", 100, 50.0)], 200);
        assert!(t.contains("a/b throughput 6.0×"), "{t}");
        assert!(t.contains("b/a memory 5.0×"), "{t}");
        assert!(t.contains("| error |"), "{t}");
        assert!(t.contains("- a / initial sync: boom"), "{t}");
        assert!(!t.contains("RSS after"), "{t}");
    }
}
