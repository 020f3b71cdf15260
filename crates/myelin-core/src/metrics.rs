//! Prometheus metrics: counters, gauges and histograms, with or without labels, rendered in the
//! text exposition format. Updates are atomic adds (a labelled metric takes a read lock to find
//! its series, a write lock only for a new label set). Label values must come from small fixed
//! sets (route templates, status codes, kinds), never from users' ids or content.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

/// Latency buckets in seconds (Synapse's for HTTP responses).
pub const LATENCY_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Observations counted into buckets, with their sum (kept in microseconds).
#[derive(Debug)]
pub struct Histogram {
    buckets: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn new(buckets: &'static [f64]) -> Self {
        Self {
            buckets,
            counts: buckets.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records a duration.
    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        if let Some(i) = self.buckets.iter().position(|b| seconds <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros.fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, name: &str, labels: &str, out: &mut String) {
        let mut cumulative = 0;
        for (bucket, count) in self.buckets.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{}}} {cumulative}", join_labels(labels, &format!("le=\"{bucket}\"")));
        }
        let total = self.count();
        let _ = writeln!(out, "{name}_bucket{{{}}} {total}", join_labels(labels, "le=\"+Inf\""));
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {total}", braces(labels));
    }
}

fn join_labels(labels: &str, more: &str) -> String {
    if labels.is_empty() { more.to_owned() } else { format!("{labels},{more}") }
}

fn braces(labels: &str) -> String {
    if labels.is_empty() { String::new() } else { format!("{{{labels}}}") }
}

/// `a="x",b="y"`, values escaped as the text format asks.
fn label_text(names: &[&str], values: &[String]) -> String {
    names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")))
        .collect::<Vec<_>>()
        .join(",")
}

/// One metric's series by label values.
#[derive(Debug)]
pub struct Family<M> {
    labels: &'static [&'static str],
    series: RwLock<BTreeMap<Vec<String>, Arc<M>>>,
    make: fn() -> M,
}

impl<M> Family<M> {
    pub fn new(labels: &'static [&'static str], make: fn() -> M) -> Self {
        Self { labels, series: RwLock::new(BTreeMap::new()), make }
    }

    /// The series of these label values (as many as the family has names).
    pub fn with(&self, values: &[&str]) -> Arc<M> {
        let key: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        if let Some(found) = self.series.read().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return found.clone();
        }
        let mut series = self.series.write().unwrap_or_else(|p| p.into_inner());
        series.entry(key).or_insert_with(|| Arc::new((self.make)())).clone()
    }

    fn each(&self, mut f: impl FnMut(&str, &M)) {
        let series = self.series.read().unwrap_or_else(|p| p.into_inner());
        for (values, metric) in series.iter() {
            f(&label_text(self.labels, values), metric);
        }
    }
}

/// Writes the `# HELP` and `# TYPE` lines of a metric.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Writes a counter without labels.
pub fn render_counter(out: &mut String, name: &str, help: &str, counter: &Counter) {
    header(out, name, "counter", help);
    let _ = writeln!(out, "{name} {}", counter.get());
}

/// Writes a counter without labels whose value is read when scraped (CPU seconds, say).
pub fn render_counter_value(out: &mut String, name: &str, help: &str, value: f64) {
    header(out, name, "counter", help);
    let _ = writeln!(out, "{name} {value}");
}

/// Writes a gauge without labels.
pub fn render_gauge(out: &mut String, name: &str, help: &str, value: f64) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

/// Writes a gauge's series: (label values, value).
pub fn render_gauges(out: &mut String, name: &str, help: &str, labels: &[&str], series: &[(Vec<String>, f64)]) {
    header(out, name, "gauge", help);
    for (values, value) in series {
        let _ = writeln!(out, "{name}{} {value}", braces(&label_text(labels, values)));
    }
}

/// Writes a labelled counter.
pub fn render_counter_family(out: &mut String, name: &str, help: &str, family: &Family<Counter>) {
    header(out, name, "counter", help);
    family.each(|labels, c| {
        let _ = writeln!(out, "{name}{} {}", braces(labels), c.get());
    });
}

/// Writes a labelled histogram.
pub fn render_histogram_family(out: &mut String, name: &str, help: &str, family: &Family<Histogram>) {
    header(out, name, "histogram", help);
    family.each(|labels, h| h.render(name, labels, out));
}

/// Writes a histogram without labels.
pub fn render_histogram(out: &mut String, name: &str, help: &str, histogram: &Histogram) {
    header(out, name, "histogram", help);
    histogram.render(name, "", out);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn counters_and_histograms_render_in_the_text_format() {
        let family: Family<Counter> = Family::new(&["method", "code"], Counter::default);
        family.with(&["GET", "200"]).inc();
        family.with(&["GET", "200"]).add(2);
        family.with(&["PUT", "4\"0\\0"]).inc();
        let mut out = String::new();
        render_counter_family(&mut out, "requests_total", "Requests.", &family);
        assert!(out.contains("# TYPE requests_total counter\n"));
        assert!(out.contains("requests_total{method=\"GET\",code=\"200\"} 3\n"), "{out}");
        assert!(out.contains("requests_total{method=\"PUT\",code=\"4\\\"0\\\\0\"} 1\n"), "escaped: {out}");

        let h = Histogram::new(&[0.01, 0.1]);
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_secs(1));
        let mut out = String::new();
        render_histogram(&mut out, "took_seconds", "Took.", &h);
        assert!(out.contains("took_seconds_bucket{le=\"0.01\"} 1\n"), "{out}");
        assert!(out.contains("took_seconds_bucket{le=\"0.1\"} 2\n"), "cumulative: {out}");
        assert!(out.contains("took_seconds_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("took_seconds_sum 1.055\n"), "{out}");
        assert!(out.contains("took_seconds_count 3\n"), "{out}");
    }
}
