//! The Prometheus text format: the registry's families and the per-target families,
//! written in pieces so that a scrape of 10,000 targets never sits in memory whole.

use prometheus::proto::{MetricFamily, MetricType};

use super::*;

pub(super) struct TargetCounters {
    /// `vpn="…",tunnel="…",target="…",address="…"`, escaped.
    pub(super) labels: String,
    pub(super) sent: AtomicU64,
    pub(super) replies: AtomicU64,
    /// By [`LOSS_REASONS`].
    pub(super) lost: [AtomicU64; 3],
    /// Per bucket of [`RTT_BUCKETS`], not cumulative; above the last one only in the count.
    pub(super) rtt_buckets: [AtomicU64; RTT_BUCKETS.len()],
    pub(super) rtt_count: AtomicU64,
    pub(super) rtt_sum: AtomicF64,
    pub(super) last_rtt: AtomicF64,
    pub(super) consecutive_lost: AtomicU64,
    pub(super) up: AtomicU64,
}

/// An f64 in an atomic; only the monitor task writes it.
#[derive(Default)]
pub(super) struct AtomicF64(pub(super) AtomicU64);

impl AtomicF64 {
    pub(super) fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
    pub(super) fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    pub(super) fn add(&self, v: f64) {
        self.set(self.get() + v);
    }
}

impl TargetCounters {
    pub(super) fn new(labels: &[(&str, &str)]) -> Self {
        let labels = labels
            .iter()
            .map(|(name, value)| format!("{name}=\"{}\"", escape_label_value(value)))
            .collect::<Vec<_>>()
            .join(",");
        Self {
            labels,
            sent: AtomicU64::new(0),
            replies: AtomicU64::new(0),
            lost: Default::default(),
            rtt_buckets: Default::default(),
            rtt_count: AtomicU64::new(0),
            rtt_sum: AtomicF64::default(),
            last_rtt: AtomicF64::default(),
            consecutive_lost: AtomicU64::new(0),
            up: AtomicU64::new(0),
        }
    }

    pub(super) fn observe_rtt(&self, seconds: f64) {
        if let Some(i) = RTT_BUCKETS.iter().position(|&le| seconds <= le) {
            self.rtt_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.rtt_sum.add(seconds);
        self.rtt_count.fetch_add(1, Ordering::Relaxed);
        self.last_rtt.set(seconds);
    }
}

/// Escapes a label value for the text format: backslash, double quote and newline.
pub(super) fn escape_label_value(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

/// Writes a counter family whose value for `targets[i]` is `values[i]`.
pub(super) fn write_values(
    out: &mut dyn std::fmt::Write,
    name: &str,
    help: &str,
    targets: &[TargetCounters],
    values: &[u64],
) {
    let mut values = values.iter();
    write_family(out, name, "counter", help, targets, |out, t| {
        let value = values.next().copied().unwrap_or_default();
        let _ = writeln!(out, "{name}{{{}}} {value}", t.labels);
    });
}

/// How much rendered text `/metrics` hands on at a time.
pub const RENDER_CHUNK: usize = 256 * 1024;

/// Collects rendered text and hands it on in pieces of about [`RENDER_CHUNK`] bytes.
pub(super) struct Chunks<F: FnMut(String) -> bool> {
    buf: String,
    sink: F,
    /// The sink refused a piece (the client went away): the rest is not rendered.
    closed: bool,
}

impl<F: FnMut(String) -> bool> Chunks<F> {
    pub(super) fn flush(&mut self) {
        if self.closed || self.buf.is_empty() {
            return;
        }
        let piece = std::mem::replace(&mut self.buf, String::with_capacity(RENDER_CHUNK + 4096));
        self.closed = !(self.sink)(piece);
    }
}

impl<F: FnMut(String) -> bool> std::fmt::Write for Chunks<F> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.closed {
            return Err(std::fmt::Error);
        }
        self.buf.push_str(s);
        if self.buf.len() >= RENDER_CHUNK && self.buf.ends_with('\n') {
            self.flush();
        }
        Ok(())
    }
}

/// Writes the families the prometheus crate's registry holds (the process-wide ones, few
/// series each) with the same writer as the per-target families: one text format, one
/// escaping, one place.
pub(super) fn write_gathered(out: &mut dyn std::fmt::Write, families: &[MetricFamily]) {
    for family in families {
        let name = family.name();
        let kind = match family.get_field_type() {
            MetricType::COUNTER => "counter",
            MetricType::GAUGE => "gauge",
            MetricType::HISTOGRAM => "histogram",
            // The daemon registers none of these.
            MetricType::SUMMARY | MetricType::UNTYPED => continue,
        };
        let help = family.help().replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for m in family.get_metric() {
            let labels: Vec<String> = m
                .get_label()
                .iter()
                .map(|l| format!("{}=\"{}\"", l.name(), escape_label_value(l.value())))
                .collect();
            let with = |extra: Option<String>| {
                let all: Vec<&str> = labels
                    .iter()
                    .map(String::as_str)
                    .chain(extra.as_deref())
                    .collect();
                if all.is_empty() {
                    String::new()
                } else {
                    format!("{{{}}}", all.join(","))
                }
            };
            match kind {
                "counter" => {
                    let _ = writeln!(out, "{name}{} {}", with(None), m.get_counter().get_value());
                }
                "gauge" => {
                    let _ = writeln!(out, "{name}{} {}", with(None), m.get_gauge().get_value());
                }
                _ => {
                    let h = m.get_histogram();
                    for b in h.get_bucket() {
                        let le = format!("le=\"{}\"", b.upper_bound());
                        let _ = writeln!(
                            out,
                            "{name}_bucket{} {}",
                            with(Some(le)),
                            b.cumulative_count()
                        );
                    }
                    let count = h.get_sample_count();
                    let inf = Some("le=\"+Inf\"".to_string());
                    let _ = writeln!(out, "{name}_bucket{} {count}", with(inf));
                    let _ = writeln!(out, "{name}_sum{} {}", with(None), h.get_sample_sum());
                    let _ = writeln!(out, "{name}_count{} {count}", with(None));
                }
            }
        }
    }
}

/// Writes the HTTP server's refused connections (a process-wide family).
fn write_http_refused(out: &mut dyn std::fmt::Write) {
    let _ = writeln!(
        out,
        "# HELP tunnelkeeper_http_connections_refused_total Connections closed on accept: \
         too many from one address (per_peer) or in all (total).\n\
         # TYPE tunnelkeeper_http_connections_refused_total counter"
    );
    for (reason, count) in ["per_peer", "total"].iter().zip(&HTTP_REFUSED) {
        let _ = writeln!(
            out,
            "tunnelkeeper_http_connections_refused_total{{reason=\"{reason}\"}} {}",
            count.load(Ordering::Relaxed)
        );
    }
}

/// Writes one family of per-target samples: HELP, TYPE, then a line per target.
pub(super) fn write_family(
    out: &mut dyn std::fmt::Write,
    name: &str,
    kind: &str,
    help: &str,
    targets: &[TargetCounters],
    mut sample: impl FnMut(&mut dyn std::fmt::Write, &TargetCounters),
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for t in targets {
        sample(out, t);
    }
}

impl Metrics {
    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> Vec<u8> {
        let mut text = String::new();
        self.render_to(|chunk| {
            text.push_str(&chunk);
            true
        });
        text.into_bytes()
    }

    /// Renders every metric in the Prometheus text format, handing the text to `sink` in
    /// pieces of about [`RENDER_CHUNK`] bytes, so that a scrape of 10,000 targets (about
    /// 30 MB) never sits in memory whole. Stops early when `sink` returns false; returns
    /// whether every piece was taken.
    pub fn render_to(&self, sink: impl FnMut(String) -> bool) -> bool {
        let mut out = Chunks {
            buf: String::with_capacity(RENDER_CHUNK + 4096),
            sink,
            closed: false,
        };
        write_gathered(&mut out, &self.registry.gather());
        write_http_refused(&mut out);
        self.render_targets(&mut out);
        out.flush();
        !out.closed
    }

    /// Writes the per-target families.
    fn render_targets(&self, out: &mut dyn std::fmt::Write) {
        let targets = &self.targets[..];
        if targets.is_empty() {
            return;
        }
        let counter =
            |out: &mut dyn std::fmt::Write, name: &str, t: &TargetCounters, v: &AtomicU64| {
                let _ = writeln!(out, "{name}{{{}}} {}", t.labels, v.load(Ordering::Relaxed));
            };
        // The outcome counters of each target are read together, answers before requests,
        // so that a scrape shows every request with its answer (at most the one in flight
        // between the two reads differs), never more answers than requests.
        let mut replies = Vec::with_capacity(targets.len());
        let mut lost = Vec::with_capacity(targets.len());
        let mut sent = Vec::with_capacity(targets.len());
        for t in targets {
            replies.push(t.replies.load(Ordering::Acquire));
            lost.push(t.lost.each_ref().map(|l| l.load(Ordering::Acquire)));
            sent.push(t.sent.load(Ordering::Relaxed));
        }
        write_values(
            out,
            "tunnelkeeper_probe_sent_total",
            "Echo requests whose outcome is known.",
            targets,
            &sent,
        );
        write_values(
            out,
            "tunnelkeeper_probe_replies_total",
            "Echo replies received within the timeout.",
            targets,
            &replies,
        );
        let mut i = 0;
        write_family(
            out,
            "tunnelkeeper_probe_lost_total",
            "counter",
            "Echo requests without a reply, by reason.",
            targets,
            |out, t| {
                for (reason, n) in LOSS_REASONS.iter().zip(lost[i]) {
                    let _ = writeln!(
                        out,
                        "tunnelkeeper_probe_lost_total{{{},reason=\"{reason}\"}} {n}",
                        t.labels
                    );
                }
                i += 1;
            },
        );
        write_family(
            out,
            "tunnelkeeper_probe_rtt_seconds",
            "histogram",
            "Round-trip time of echo replies.",
            targets,
            |out, t| {
                let name = "tunnelkeeper_probe_rtt_seconds";
                let mut cumulative = 0;
                for (le, n) in RTT_BUCKETS.iter().zip(&t.rtt_buckets) {
                    cumulative += n.load(Ordering::Relaxed);
                    let _ = writeln!(
                        out,
                        "{name}_bucket{{{},le=\"{le}\"}} {cumulative}",
                        t.labels
                    );
                }
                // Read last and never below the buckets, so the histogram stays monotonic
                // while the monitor writes.
                let count = t.rtt_count.load(Ordering::Relaxed).max(cumulative);
                let _ = writeln!(out, "{name}_bucket{{{},le=\"+Inf\"}} {count}", t.labels);
                let _ = writeln!(out, "{name}_sum{{{}}} {}", t.labels, t.rtt_sum.get());
                let _ = writeln!(out, "{name}_count{{{}}} {count}", t.labels);
            },
        );
        write_family(
            out,
            "tunnelkeeper_probe_last_rtt_seconds",
            "gauge",
            "Round-trip time of the last echo reply.",
            targets,
            |out, t| {
                let _ = writeln!(
                    out,
                    "tunnelkeeper_probe_last_rtt_seconds{{{}}} {}",
                    t.labels,
                    t.last_rtt.get()
                );
            },
        );
        write_family(
            out,
            "tunnelkeeper_probe_consecutive_lost",
            "gauge",
            "Echo requests lost in a row.",
            targets,
            |out, t| {
                counter(
                    out,
                    "tunnelkeeper_probe_consecutive_lost",
                    t,
                    &t.consecutive_lost,
                )
            },
        );
        write_family(
            out,
            "tunnelkeeper_target_up",
            "gauge",
            "1 when the target counts as up, else 0.",
            targets,
            |out, t| counter(out, "tunnelkeeper_target_up", t, &t.up),
        );
    }
}
