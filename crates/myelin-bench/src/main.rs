//! `myelin-bench`: drives any Matrix homeserver over the client-server API (v3)
//! and prints side-by-side figures as a markdown table.
//!
//! ```text
//! myelin-bench --target myelin=http://127.0.0.1:8008 --target synapse=http://127.0.0.1:8448 \
//!     [--pid myelin=PID --pid synapse=PID] \
//!     [--scenario all|send|rooms-send|fanout|initial-sync|keys|sliding-sync|federation|join|delayed|call|media|search|fanout-wide|...] \
//!     [--output docs/benchmarks.md]
//! ```
//!
//! Targets need open registration (m.login.dummy) and should have rate limits
//! off; 429 answers are nevertheless retried after `retry_after_ms` and counted.

mod appservice;
mod call;
mod client;
mod delayed;
mod login;
mod media;
mod push;
mod report;
mod scenarios;
mod search;
mod stats;

use std::collections::HashSet;
use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher;
use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};

use client::Server;
use report::{Outcome, TargetReport};
use scenarios::Params;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    All,
    Send,
    RoomsSend,
    Fanout,
    InitialSync,
    Keys,
    SlidingSync,
    /// Cross-server latency; needs `--peer` for the target.
    Federation,
    /// Joining a big room that lives on another server; needs `--join-host`.
    Join,
    /// Delayed-event timers (MSC4140): how late many concurrent timers fire.
    Delayed,
    /// Call joins (MatrixRTC): the Matrix side of joining, keeping alive and hanging up.
    Call,
    /// Media: upload and download throughput, thumbnail latency.
    Media,
    /// Search: query latency over a room of many messages.
    Search,
    /// Push: send → push gateway latency.
    Push,
    /// Application services: many messages through a slow service; needs `--appservice`.
    Appservice,
    /// Signing in: password login, a full OAuth login through the pages, a token refresh.
    Login,
    /// Fan-out over many rooms: --wide-listeners listeners spread over --wide-rooms rooms.
    FanoutWide,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FanoutApi {
    /// `GET /sync?since=…&timeout=30000`.
    V2,
    /// `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync?pos=…&timeout=30000` (MSC4186).
    Sliding,
}

/// Benchmark Matrix homeservers side by side over the client-server API.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Homeserver to benchmark, as NAME=BASE_URL (repeatable; the first two are compared).
    /// BASE_URL may list several processes of one deployment, comma-separated: the rooms-send
    /// scenario spreads its senders over them, the others use the first.
    #[arg(long = "target", value_name = "NAME=URL", required = true)]
    targets: Vec<String>,
    /// Process id of a target's server, as NAME=PID, to report its RSS (repeatable).
    #[arg(long = "pid", value_name = "NAME=PID")]
    pids: Vec<String>,
    /// A target's Prometheus endpoint, as NAME=URL (repeatable): the fan-out scenario reads the
    /// server's own sync build time from it (`myelin_sync_build_seconds`) around its measurement.
    #[arg(long = "metrics", value_name = "NAME=URL")]
    metrics: Vec<String>,
    /// Which scenario(s) to run.
    #[arg(long, value_enum, default_value_t = Scenario::All)]
    scenario: Scenario,
    /// Send scenario: messages per sender.
    #[arg(long, default_value_t = 100)]
    count: usize,
    /// Send scenario: number of concurrent senders (all joined to one room).
    #[arg(long, default_value_t = 20)]
    senders: usize,
    /// Fan-out scenario: number of listeners long-polling /sync.
    #[arg(long, default_value_t = 50)]
    listeners: usize,
    /// Fan-out scenario: number of measured messages, sent one at a time.
    #[arg(long = "fanout-messages", default_value_t = 20)]
    fanout_messages: usize,
    /// Initial-sync scenario: number of rooms the user is in.
    #[arg(long, default_value_t = 200)]
    rooms: usize,
    /// Initial-sync scenario: number of timed initial syncs (median is reported).
    #[arg(long = "sync-repeats", default_value_t = 3)]
    sync_repeats: usize,
    /// Keys scenario: devices a room key is shared with.
    #[arg(long = "key-devices", default_value_t = 500)]
    key_devices: usize,
    /// Keys scenario: timed repetitions of the claim and the to-device send.
    #[arg(long = "key-repeats", default_value_t = 3)]
    key_repeats: usize,
    /// Federation scenario: the server whose users listen, for a target, as
    /// NAME=LISTENER_URL@TARGET_SERVER_NAME (the target's server name is what the listeners join
    /// through). Repeatable, one per target.
    #[arg(long = "peer", value_name = "NAME=URL@SERVER_NAME")]
    peers: Vec<String>,
    /// Federation scenario: listeners on the peer server.
    #[arg(long = "federation-listeners", default_value_t = 5)]
    federation_listeners: usize,
    /// Federation scenario: measured messages, sent one at a time.
    #[arg(long = "federation-messages", default_value_t = 30)]
    federation_messages: usize,
    /// Join scenario: the server the big room lives on, as URL@SERVER_NAME (every target's
    /// user joins it through that server name).
    #[arg(long = "join-host", value_name = "URL@SERVER_NAME")]
    join_host: Option<String>,
    /// Join scenario: members of the big room.
    #[arg(long = "join-members", default_value_t = 2000)]
    join_members: usize,
    /// Join scenario: state events of the big room (members included).
    #[arg(long = "join-state-events", default_value_t = 10_000)]
    join_state_events: usize,
    /// Delayed scenario: concurrent delayed events (timers), due over three seconds.
    #[arg(long = "delayed-timers", default_value_t = 1000)]
    delayed_timers: usize,
    /// Call scenario: calls joined and hung up, one after another, each in its own room.
    #[arg(long = "calls", default_value_t = 50)]
    calls: usize,
    /// Media scenario: files uploaded then downloaded, of --media-mb MiB each.
    #[arg(long = "media-files", default_value_t = 10)]
    media_files: usize,
    #[arg(long = "media-mb", default_value_t = 4)]
    media_mb: usize,
    /// Media scenario: photos (2000×1500 JPEG) thumbnailed.
    #[arg(long = "media-photos", default_value_t = 10)]
    media_photos: usize,
    /// Search scenario: messages in the searched room.
    #[arg(long = "search-messages", default_value_t = 20_000)]
    search_messages: usize,
    /// Push scenario: messages sent one at a time, each awaited at the push gateway.
    #[arg(long = "push-messages", default_value_t = 200)]
    push_messages: usize,
    /// Appservice scenario: the service of a target, as NAME=PORT:AS_TOKEN (its registration
    /// file, given to the server, names http://127.0.0.1:PORT and that token).
    #[arg(long = "appservice")]
    appservices: Vec<String>,
    /// Appservice scenario: messages sent (by --senders senders).
    #[arg(long = "appservice-messages", default_value_t = 10_000)]
    appservice_messages: usize,
    /// Appservice scenario: how long the service takes to answer each transaction, in ms.
    #[arg(long = "appservice-delay-ms", default_value_t = 50)]
    appservice_delay_ms: u64,
    /// Login scenario: timed logins and refreshes of each kind.
    #[arg(long = "login-runs", default_value_t = 30)]
    login_runs: usize,
    /// Search scenario: timed repetitions of each query.
    #[arg(long = "search-repeats", default_value_t = 20)]
    search_repeats: usize,
    /// Sliding-sync scenario: rooms the user is in (the first window is [0,19]; live updates
    /// reuse --fanout-messages, repeats --sync-repeats).
    #[arg(long = "ss-rooms", default_value_t = 1000)]
    ss_rooms: usize,
    /// Fan-out scenarios: what the listeners long-poll, `/sync` (v2) or simplified sliding sync.
    #[arg(long = "fanout-api", value_enum, default_value_t = FanoutApi::V2)]
    fanout_api: FanoutApi,
    /// Wide fan-out scenario: rooms the listeners are spread over.
    #[arg(long = "wide-rooms", default_value_t = 100)]
    wide_rooms: usize,
    /// Wide fan-out scenario: listeners in all (the messages are --fanout-messages).
    #[arg(long = "wide-listeners", default_value_t = 5000)]
    wide_listeners: usize,
    /// Parallelism of setup work (registration, joins, room creation).
    #[arg(long = "setup-concurrency", default_value_t = 8)]
    setup_concurrency: usize,
    /// Fan-out: seconds to wait for all listeners to see one message.
    #[arg(long = "delivery-timeout", default_value_t = 30)]
    delivery_timeout_secs: u64,
    /// Timeout of one ordinary HTTP request, in seconds.
    #[arg(long = "request-timeout", default_value_t = 60)]
    request_timeout_secs: u64,
    /// Upper bound on one scenario on one target, in seconds.
    #[arg(long = "scenario-timeout", default_value_t = 1200)]
    scenario_timeout_secs: u64,
    /// Append a dated section (machine, command line, table) to this markdown file.
    #[arg(long, value_name = "FILE")]
    output: Option<std::path::PathBuf>,
}

fn split_pair<'a>(s: &'a str, what: &str) -> Result<(&'a str, &'a str)> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() && !value.is_empty() => Ok((name, value)),
        _ => bail!("{what} must look like NAME=VALUE, got {s:?}"),
    }
}

/// CPU time a process has used, user and system, in seconds (`/proc/PID/stat`; `PID` may be
/// `self`). Clock ticks are taken to be 100 a second, as on every Linux this runs on.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: the fields counted from after its closing parenthesis.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some((ticks(11)? + ticks(12)?) as f64 / 100.0)
}

/// Resident set size of a process in MB (VmRSS from /proc/PID/status).
fn rss_mb(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .context("no VmRSS line")?
        .parse()
        .context("VmRSS is not a number")?;
    Ok(kb / 1024.0)
}

/// Lowercase random user-name prefix, different on every run.
fn random_prefix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let h = RandomState::new().hash_one((nanos, std::process::id()));
    format!("mb{:010x}", h & 0xff_ffff_ffff)
}

async fn run_scenario<T, F>(name: &str, target: &str, limit: Duration, fut: F) -> Outcome<T>
where
    F: Future<Output = Result<T>>,
{
    eprintln!("[{target}] {name} ...");
    let started = std::time::Instant::now();
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => {
            eprintln!("[{target}] {name} done in {:.1}s", started.elapsed().as_secs_f64());
            Outcome::Done(v)
        }
        Ok(Err(err)) => {
            eprintln!("[{target}] {name} FAILED: {err:#}");
            Outcome::Failed(format!("{err:#}"))
        }
        Err(_) => {
            eprintln!("[{target}] {name} TIMED OUT after {limit:?}");
            Outcome::Failed(format!("timed out after {limit:?}"))
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();

    let mut targets = Vec::new();
    let mut seen = HashSet::new();
    for t in &args.targets {
        let (name, url) = split_pair(t, "--target")?;
        if !seen.insert(name.to_owned()) {
            bail!("target name {name:?} given twice");
        }
        targets.push((name.to_owned(), url.to_owned()));
    }
    let mut pids = std::collections::HashMap::new();
    for p in &args.pids {
        let (name, pid) = split_pair(p, "--pid")?;
        if !seen.contains(name) {
            bail!("--pid {name}=... names no --target");
        }
        let pid: u32 = pid.parse().with_context(|| format!("--pid {name}: {pid:?} is not a process id"))?;
        pids.insert(name.to_owned(), pid);
    }

    let mut metrics = std::collections::HashMap::new();
    for m in &args.metrics {
        let (name, url) = split_pair(m, "--metrics")?;
        if !seen.contains(name) {
            bail!("--metrics {name}=... names no --target");
        }
        metrics.insert(name.to_owned(), url.to_owned());
    }

    let params = Params {
        prefix: random_prefix(),
        senders: args.senders,
        count: args.count,
        listeners: args.listeners,
        fanout_messages: args.fanout_messages,
        rooms: args.rooms,
        sync_repeats: args.sync_repeats,
        setup_concurrency: args.setup_concurrency,
        delivery_timeout: Duration::from_secs(args.delivery_timeout_secs.max(1)),
        key_devices: args.key_devices.max(1),
        key_repeats: args.key_repeats.max(1),
        ss_rooms: args.ss_rooms.max(20),
        wide_rooms: args.wide_rooms.max(1),
        wide_listeners: args.wide_listeners.max(1),
        fanout_sliding: args.fanout_api == FanoutApi::Sliding,
        federation_listeners: args.federation_listeners.max(1),
        federation_messages: args.federation_messages.max(1),
    };
    let mut appservices = std::collections::HashMap::new();
    for a in &args.appservices {
        let (name, value) = split_pair(a, "--appservice")?;
        let (port, token) =
            value.split_once(':').with_context(|| format!("--appservice {name}: expected PORT:AS_TOKEN"))?;
        let port: u16 = port.parse().with_context(|| format!("--appservice {name}: {port:?} is not a port"))?;
        appservices.insert(name.to_owned(), (port, token.to_owned()));
    }
    let request_timeout = Duration::from_secs(args.request_timeout_secs.max(1));
    let mut peers = std::collections::HashMap::new();
    for p in &args.peers {
        let (name, value) = split_pair(p, "--peer")?;
        let (url, server_name) = value
            .rsplit_once('@')
            .with_context(|| format!("--peer {name}: expected URL@SERVER_NAME, got {value:?}"))?;
        peers.insert(name.to_owned(), (Server::new(url, request_timeout)?, server_name.to_owned()));
    }
    let limit = Duration::from_secs(args.scenario_timeout_secs.max(1));
    let run = |s: Scenario| args.scenario == Scenario::All || args.scenario == s;
    eprintln!("user-name prefix for this run: {}", params.prefix);

    // The join scenario's room, built once on its host for every target.
    let big_room = match (args.scenario == Scenario::Join, &args.join_host) {
        (true, Some(host)) => {
            let (url, host_name) = host
                .rsplit_once('@')
                .with_context(|| format!("--join-host: expected URL@SERVER_NAME, got {host:?}"))?;
            let host_server = Server::new(url, request_timeout)?;
            let params = Params { prefix: format!("{}host_", params.prefix), ..params.clone() };
            let room = scenarios::big_room(&host_server, &params, args.join_members, args.join_state_events).await?;
            Some((room, host_name.to_owned()))
        }
        (true, None) => bail!("--scenario join needs --join-host URL@SERVER_NAME"),
        (false, _) => None,
    };

    let mut reports = Vec::new();
    for (index, (name, url)) in targets.iter().enumerate() {
        // Per-target prefix, so two targets may even point at the same server.
        let params = Params { prefix: format!("{}t{index}_", params.prefix), ..params.clone() };
        let mut servers = Vec::new();
        for base in url.split(',') {
            let server = Server::new(base, request_timeout)?;
            server.versions().await.with_context(|| format!("target {name} ({base}) does not answer /versions"))?;
            servers.push(server);
        }
        let server = servers.first().cloned().context("a target needs a URL")?.with_metrics(metrics.get(name).cloned());
        // The first process is the one whose metrics are read.
        if let Some(first) = servers.first_mut() {
            *first = server.clone();
        }
        let pid = pids.get(name).copied();
        let rss = |when: &str| {
            pid.and_then(|pid| match rss_mb(pid) {
                Ok(mb) => Some(mb),
                Err(err) => {
                    eprintln!("[{name}] RSS {when}: {err:#}");
                    None
                }
            })
        };
        let rss_idle_mb = rss("idle");

        let send = if run(Scenario::Send) {
            run_scenario("send", name, limit, scenarios::send(&server, &params)).await
        } else {
            Outcome::NotRun
        };
        let rooms_send = if run(Scenario::RoomsSend) {
            run_scenario("rooms-send", name, limit, scenarios::rooms_send(&servers, &params)).await
        } else {
            Outcome::NotRun
        };
        let fanout = if run(Scenario::Fanout) {
            run_scenario("fanout", name, limit, scenarios::fanout(&servers, &params, pid)).await
        } else {
            Outcome::NotRun
        };
        let initial_sync = if run(Scenario::InitialSync) {
            run_scenario("initial-sync", name, limit, scenarios::initial_sync(&server, &params)).await
        } else {
            Outcome::NotRun
        };
        let keys = if run(Scenario::Keys) {
            run_scenario("keys", name, limit, scenarios::keys(&server, &params)).await
        } else {
            Outcome::NotRun
        };
        let sliding_sync = if run(Scenario::SlidingSync) {
            run_scenario("sliding-sync", name, limit, scenarios::sliding_sync_scenario(&server, &params, pid)).await
        } else {
            Outcome::NotRun
        };
        // Not part of "all": it needs a peer server.
        let federation = match (args.scenario == Scenario::Federation, peers.get(name)) {
            (true, Some((peer, sender_name))) => {
                let fut = scenarios::federation_fanout(&server, sender_name, peer, &params);
                run_scenario("federation", name, limit, fut).await
            }
            (true, None) => Outcome::Failed(format!("--scenario federation needs --peer {name}=URL@SERVER_NAME")),
            (false, _) => Outcome::NotRun,
        };
        let join = match &big_room {
            Some((room, host_name)) => {
                run_scenario("join", name, limit, scenarios::join_big_room(&server, host_name, room, &params)).await
            }
            None => Outcome::NotRun,
        };
        let delayed = if run(Scenario::Delayed) {
            run_scenario("delayed", name, limit, delayed::delayed_timers(&server, &params, args.delayed_timers.max(1)))
                .await
        } else {
            Outcome::NotRun
        };
        let call = if run(Scenario::Call) {
            run_scenario("call", name, limit, call::call_joins(&server, &params, args.calls.max(1))).await
        } else {
            Outcome::NotRun
        };
        let media = if run(Scenario::Media) {
            let files = args.media_files.max(1);
            run_scenario(
                "media",
                name,
                limit,
                media::media(&params, &server, files, args.media_mb.max(1), args.media_photos),
            )
            .await
        } else {
            Outcome::NotRun
        };
        // Not part of "all": filling the room takes minutes on slower servers.
        let search = if args.scenario == Scenario::Search {
            let fut = search::search_latency(&params, &server, args.search_messages.max(1), args.search_repeats.max(1));
            run_scenario("search", name, limit, fut).await
        } else {
            Outcome::NotRun
        };
        let push = if run(Scenario::Push) {
            run_scenario("push", name, limit, push::push_latency(&params, &server, args.push_messages.max(1))).await
        } else {
            Outcome::NotRun
        };
        // Not part of "all": it needs a registration file on the server.
        let appservice = if args.scenario == Scenario::Appservice {
            match appservices.get(name) {
                Some((port, token)) => {
                    let fut = appservice::appservice_load(
                        &params,
                        &server,
                        *port,
                        token,
                        args.appservice_messages.max(1),
                        Duration::from_millis(args.appservice_delay_ms),
                    );
                    run_scenario("appservice", name, limit, fut).await
                }
                None => Outcome::Failed(format!("no --appservice {name}=PORT:AS_TOKEN")),
            }
        } else {
            Outcome::NotRun
        };
        let login = if run(Scenario::Login) {
            run_scenario("login", name, limit, login::login_latency(&params, &server, args.login_runs.max(1))).await
        } else {
            Outcome::NotRun
        };
        // Not part of "all": thousands of listeners take minutes to set up.
        let fanout_wide = if args.scenario == Scenario::FanoutWide {
            run_scenario("fanout-wide", name, limit, scenarios::fanout_wide(&server, &params, pid)).await
        } else {
            Outcome::NotRun
        };
        let rss_after_mb = rss("after");
        reports.push(TargetReport {
            name: name.clone(),
            url: url.clone(),
            rss_idle_mb,
            rss_after_mb,
            send,
            rooms_send,
            fanout,
            fanout_wide,
            initial_sync,
            keys,
            sliding_sync,
            federation,
            join,
            delayed,
            call,
            media,
            search,
            push,
            appservice,
            login,
            rate_limit_retries: server.rate_limit_retries(),
        });
    }

    let table = report::table(&reports, args.rooms);
    let settings = format!(
        "Settings: send {} senders × {} messages; fan-out {} listeners, {} messages; \
         initial sync {} rooms, {} runs; keys {} devices, {} runs; sliding sync {} rooms; \
         federation {} listeners on the peer, {} messages; join a room of {} members, {} state events{}; \
         {} delayed-event timers; {} calls; media {} files of {} MiB, {} photos of 2000×1500; \
         search over {} messages, {} runs per query; push {} messages; application service {} messages, \
         answered after {} ms each; {} logins and refreshes of each kind; wide fan-out {} listeners \
         over {} rooms; fan-out listeners long-poll {}. Targets: {}.",
        args.senders,
        args.count,
        args.listeners,
        args.fanout_messages,
        args.rooms,
        args.sync_repeats,
        args.key_devices,
        args.key_repeats,
        args.ss_rooms,
        args.federation_listeners,
        args.federation_messages,
        args.join_members,
        args.join_state_events,
        args.join_host.as_deref().map(|h| format!(" on {h}")).unwrap_or_default(),
        args.delayed_timers,
        args.calls,
        args.media_files,
        args.media_mb,
        args.media_photos,
        args.search_messages,
        args.search_repeats,
        args.push_messages,
        args.appservice_messages,
        args.appservice_delay_ms,
        args.login_runs,
        args.wide_listeners,
        args.wide_rooms,
        match args.fanout_api {
            FanoutApi::V2 => "/sync",
            FanoutApi::Sliding => "simplified sliding sync",
        },
        reports
            .iter()
            .map(|r| match peers.get(&r.name) {
                Some((_, via)) => format!("{} = {} (peer joining through {via})", r.name, r.url),
                None => format!("{} = {}", r.name, r.url),
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("{settings}\n\n{table}");

    if let Some(path) = &args.output {
        let section = format!(
            "\n### Run of {}\n\n- Machine: {}\n- Command: `{}`\n- {}\n\n{}",
            report::utc_now(),
            report::machine(),
            report::command_line(),
            settings,
            table
        );
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        file.write_all(section.as_bytes()).with_context(|| format!("appending to {}", path.display()))?;
        eprintln!("appended results to {}", path.display());
    }

    if reports.iter().any(|r| !r.errors().is_empty()) {
        bail!("some scenarios failed (see the Errors list above)");
    }
    Ok(())
}
