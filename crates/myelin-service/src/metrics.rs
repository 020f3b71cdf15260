//! What the server counts for Prometheus, under Synapse's metric names where Synapse has the
//! same measure (so existing dashboards work) and `myelin_…` otherwise. Counted as things happen:
//! HTTP requests and their latency (by route template, never by user), events persisted,
//! federation and push transactions. Read when scraped: the process (CPU, memory, file
//! descriptors), the caches, the job queue (depth and lag, from the database, so every
//! process's jobs), the stream position.

use std::time::Duration;

use myelin_core::metrics::{
    Counter, Family, Histogram, LATENCY_BUCKETS, render_counter, render_counter_family, render_counter_value,
    render_gauge, render_gauges, render_histogram_family,
};

use crate::Services;

/// Counters and histograms updated as the server works.
pub struct Metrics {
    /// Requests by method and route template (`servlet`).
    pub http_requests: Family<Counter>,
    /// Responses by method, route template and status code.
    pub http_responses: Family<Counter>,
    pub http_response_time: Family<Histogram>,
    /// Events written (local sends, received PDUs, joins, room creations).
    pub events_persisted: Counter,
    pub federation_sent_transactions: Counter,
    pub federation_sent_pdus: Counter,
    pub federation_sent_edus: Counter,
    pub federation_failed_transactions: Counter,
    pub federation_received_transactions: Counter,
    pub federation_received_pdus: Counter,
    pub federation_received_edus: Counter,
    pub pushes_processed: Counter,
    pub pushes_failed: Counter,
    pub appservice_sent_transactions: Counter,
    pub appservice_sent_events: Counter,
    pub appservice_failed_transactions: Counter,
    /// Time a sync (v2 or sliding, by `api`) spent building its answer once it had something
    /// to say (long-poll waiting excluded).
    pub sync_build_time: Family<Histogram>,
    started_at_s: f64,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl Default for Metrics {
    fn default() -> Self {
        let started_at_s =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        Self {
            http_requests: Family::new(&["method", "servlet"], Counter::default),
            http_responses: Family::new(&["method", "servlet", "code"], Counter::default),
            http_response_time: Family::new(&["method", "servlet", "code"], latency_histogram),
            events_persisted: Counter::default(),
            federation_sent_transactions: Counter::default(),
            federation_sent_pdus: Counter::default(),
            federation_sent_edus: Counter::default(),
            federation_failed_transactions: Counter::default(),
            federation_received_transactions: Counter::default(),
            federation_received_pdus: Counter::default(),
            federation_received_edus: Counter::default(),
            pushes_processed: Counter::default(),
            pushes_failed: Counter::default(),
            appservice_sent_transactions: Counter::default(),
            appservice_sent_events: Counter::default(),
            appservice_failed_transactions: Counter::default(),
            sync_build_time: Family::new(&["api"], latency_histogram),
            started_at_s,
        }
    }
}

impl Metrics {
    /// Records one HTTP request: its route template (`servlet`), status and time taken.
    pub fn http_request(&self, method: &str, servlet: &str, code: u16, took: Duration) {
        self.http_requests.with(&[method, servlet]).inc();
        let code = code.to_string();
        self.http_responses.with(&[method, servlet, &code]).inc();
        self.http_response_time.with(&[method, servlet, &code]).observe(took);
    }
}

/// This process as `/proc/self` tells it (Linux): CPU seconds, resident and virtual memory,
/// open and allowed file descriptors.
#[derive(Debug, Default, PartialEq)]
struct ProcessStats {
    cpu_seconds: f64,
    resident_bytes: f64,
    virtual_bytes: f64,
    open_fds: f64,
    max_fds: f64,
}

/// Clock ticks per second and page size on Linux (x86_64 and aarch64).
const CLOCK_TICKS: f64 = 100.0;
const PAGE_BYTES: f64 = 4096.0;

/// `utime`, `stime`, `vsize` and `rss` from `/proc/self/stat` (fields 14, 15, 23, 24; the
/// command name in parentheses may hold spaces, so fields are counted after its `)`).
fn parse_stat(stat: &str) -> Option<(f64, f64, f64)> {
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state).
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
    let cpu = (field(14)? + field(15)?) / CLOCK_TICKS;
    Some((cpu, field(23)?, field(24)? * PAGE_BYTES))
}

fn process_stats() -> ProcessStats {
    let mut stats = ProcessStats::default();
    if let Some((cpu, virtual_bytes, resident)) =
        std::fs::read_to_string("/proc/self/stat").ok().as_deref().and_then(parse_stat)
    {
        stats.cpu_seconds = cpu;
        stats.virtual_bytes = virtual_bytes;
        stats.resident_bytes = resident;
    }
    stats.open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()) as f64;
    stats.max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|soft| soft.parse::<f64>().ok())
        })
        .unwrap_or(0.0);
    stats
}

impl Services {
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Every metric in Prometheus's text format.
    pub async fn render_metrics(&self) -> String {
        let m = &self.metrics;
        let mut out = String::with_capacity(16 * 1024);
        let p = process_stats();
        render_counter_value(
            &mut out,
            "process_cpu_seconds_total",
            "User and system CPU time, in seconds.",
            p.cpu_seconds,
        );
        render_gauge(&mut out, "process_resident_memory_bytes", "Resident memory, in bytes.", p.resident_bytes);
        render_gauge(&mut out, "process_virtual_memory_bytes", "Virtual memory, in bytes.", p.virtual_bytes);
        render_gauge(&mut out, "process_open_fds", "Open file descriptors.", p.open_fds);
        render_gauge(&mut out, "process_max_fds", "Most open file descriptors allowed.", p.max_fds);
        render_gauge(&mut out, "process_start_time_seconds", "Start time, in seconds since the epoch.", m.started_at_s);
        render_gauges(
            &mut out,
            "myelin_build_info",
            "Myelin's version.",
            &["version"],
            &[(vec![env!("CARGO_PKG_VERSION").to_owned()], 1.0)],
        );

        render_counter_family(
            &mut out,
            "synapse_http_server_requests_received_total",
            "HTTP requests received.",
            &m.http_requests,
        );
        render_counter_family(
            &mut out,
            "synapse_http_server_responses_total",
            "HTTP responses sent.",
            &m.http_responses,
        );
        render_histogram_family(
            &mut out,
            "synapse_http_server_response_time_seconds",
            "Time from a request to its response, in seconds.",
            &m.http_response_time,
        );
        render_histogram_family(
            &mut out,
            "myelin_sync_build_seconds",
            "Time a sync spent building its answer (long-poll waiting excluded), in seconds.",
            &m.sync_build_time,
        );
        render_counter(
            &mut out,
            "synapse_storage_events_persisted_events_total",
            "Events persisted.",
            &m.events_persisted,
        );
        render_counter(
            &mut out,
            "synapse_federation_client_sent_transactions_total",
            "Federation transactions sent and accepted.",
            &m.federation_sent_transactions,
        );
        render_counter(
            &mut out,
            "synapse_federation_client_sent_pdu_destinations_total",
            "PDUs sent, once per destination.",
            &m.federation_sent_pdus,
        );
        render_counter(&mut out, "synapse_federation_client_sent_edus_total", "EDUs sent.", &m.federation_sent_edus);
        render_counter(
            &mut out,
            "myelin_federation_client_failed_transactions_total",
            "Federation transactions that failed (retried later).",
            &m.federation_failed_transactions,
        );
        render_counter(
            &mut out,
            "synapse_federation_server_received_transactions_total",
            "Federation transactions received.",
            &m.federation_received_transactions,
        );
        render_counter(
            &mut out,
            "synapse_federation_server_received_pdus_total",
            "PDUs received.",
            &m.federation_received_pdus,
        );
        render_counter(
            &mut out,
            "synapse_federation_server_received_edus_total",
            "EDUs received.",
            &m.federation_received_edus,
        );
        render_counter(
            &mut out,
            "synapse_http_httppusher_http_pushes_processed_total",
            "Notifications a push gateway accepted.",
            &m.pushes_processed,
        );
        render_counter(
            &mut out,
            "synapse_http_httppusher_http_pushes_failed_total",
            "Notifications a push gateway did not accept.",
            &m.pushes_failed,
        );

        render_counter(
            &mut out,
            "synapse_appservice_api_sent_transactions_total",
            "Transactions application services accepted.",
            &m.appservice_sent_transactions,
        );
        render_counter(
            &mut out,
            "synapse_appservice_api_sent_events_total",
            "Events sent to application services.",
            &m.appservice_sent_events,
        );
        render_counter(
            &mut out,
            "synapse_appservice_api_failed_transactions_total",
            "Transactions to application services that failed (retried later).",
            &m.appservice_failed_transactions,
        );
        let caches: Vec<(&str, crate::cache::CacheStats)> =
            self.caches().iter().map(|c| (c.name(), c.cache_stats())).collect();
        let series = |f: fn(&crate::cache::CacheStats) -> f64| -> Vec<(Vec<String>, f64)> {
            caches.iter().map(|(name, stats)| (vec![(*name).to_owned()], f(stats))).collect()
        };
        render_gauges(
            &mut out,
            "synapse_util_caches_cache_hits",
            "Cache lookups that found an entry.",
            &["name"],
            &series(|s| s.hits as f64),
        );
        render_gauges(
            &mut out,
            "synapse_util_caches_cache",
            "Cache lookups.",
            &["name"],
            &series(|s| s.lookups as f64),
        );
        render_gauges(
            &mut out,
            "synapse_util_caches_cache_size",
            "Cache entries.",
            &["name"],
            &series(|s| s.size as f64),
        );

        render_gauge(
            &mut out,
            "myelin_stream_position",
            "The newest stream position this process has seen.",
            self.store.stream_head().0 as f64,
        );
        match self.store.job_queue_stats(self.now_ms()).await {
            Ok(stats) => {
                let now = self.now_ms();
                let by_kind = |f: &dyn Fn(&myelin_storage::JobQueueStats) -> f64| -> Vec<(Vec<String>, f64)> {
                    stats.iter().map(|s| (vec![s.kind.clone()], f(s))).collect()
                };
                render_gauges(
                    &mut out,
                    "myelin_jobs_queued",
                    "Jobs waiting, due or not, by kind.",
                    &["kind"],
                    &by_kind(&|s| s.queued as f64),
                );
                render_gauges(
                    &mut out,
                    "myelin_jobs_due",
                    "Jobs due and not done, by kind.",
                    &["kind"],
                    &by_kind(&|s| s.due as f64),
                );
                render_gauges(
                    &mut out,
                    "myelin_jobs_lag_seconds",
                    "How long the oldest due job has waited, by kind, in seconds.",
                    &["kind"],
                    &by_kind(&|s| s.oldest_due_ms.map_or(0.0, |due| now.saturating_sub(due) as f64 / 1000.0)),
                );
                render_gauges(
                    &mut out,
                    "myelin_jobs_failed",
                    "Jobs given up, by kind.",
                    &["kind"],
                    &by_kind(&|s| s.failed as f64),
                );
            }
            Err(err) => tracing::warn!(%err, "metrics: cannot read the job queue"),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::parse_stat;

    #[test]
    fn proc_stat_fields_are_read_after_the_command_name() {
        // pid (comm with spaces) state ppid ... utime(14)=250 stime(15)=50 ... vsize(23) rss(24)
        let stat =
            "42 (my el) in) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 1000 8192000 300 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((3.0, 8_192_000.0, 300.0 * 4096.0)));
        assert_eq!(parse_stat("garbage"), None);
    }
}
