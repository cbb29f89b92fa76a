//! The result of a run: one structure, rendered as JSON or as a readable table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::procfs::Sample;
use crate::runner::Errors;

/// Named values in a fixed order.
#[derive(Debug, Default, Clone)]
pub(crate) struct Fields(pub Vec<(&'static str, Value)>);

impl Fields {
    pub(crate) fn put(&mut self, k: &'static str, v: impl Into<Value>) -> &mut Self {
        self.0.push((k, v.into()));
        self
    }
}

impl Serialize for Fields {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Latency {
    samples: u64,
    min: f64,
    mean: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

impl Latency {
    /// From a histogram in nanoseconds (`None` when empty).
    pub(crate) fn from_ns(h: &Histogram<u64>) -> Option<Latency> {
        if h.is_empty() {
            return None;
        }
        let us = |ns: u64| round(ns as f64 / 1000.0, 1);
        Some(Latency {
            samples: h.len(),
            min: us(h.min()),
            mean: round(h.mean() / 1000.0, 1),
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        })
    }
}

/// Rounds to `digits` decimals.
pub(crate) fn round(v: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (v * p).round() / p
}

/// Error counts as reported.
#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct ErrorsOut {
    total: u64,
    kinds: BTreeMap<String, u64>,
}

impl From<&Errors> for ErrorsOut {
    fn from(e: &Errors) -> Self {
        ErrorsOut {
            total: e.total,
            kinds: e.kinds.clone(),
        }
    }
}

/// The result of one run. Serializes to the JSON document; [`Report::table`] renders it for
/// people.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    tool: &'static str,
    version: &'static str,
    pub(crate) scenario: &'static str,
    pub(crate) label: Option<String>,
    pub(crate) target: String,
    pub(crate) parameters: Fields,
    /// Length of the measured window.
    pub(crate) duration_s: f64,
    pub(crate) counts: Fields,
    pub(crate) rates: Fields,
    pub(crate) latency_us: Option<Latency>,
    pub(crate) server_pid: Option<u32>,
    pub(crate) server_cpu_s: Option<f64>,
    /// The headline: `per_server_cpu_s_unit` per server CPU-second.
    pub(crate) per_server_cpu_s: Option<f64>,
    pub(crate) per_server_cpu_s_unit: &'static str,
    pub(crate) rss_kb_before: Option<u64>,
    pub(crate) rss_kb_after: Option<u64>,
    /// The server's peak RSS over its life (`VmHWM`) when the window closed: a fresh server's
    /// peak under the run's load.
    pub(crate) rss_kb_peak: Option<u64>,
    pub(crate) rss_anon_kb_before: Option<u64>,
    pub(crate) rss_anon_kb_after: Option<u64>,
    pub(crate) server_threads: Option<u64>,
    pub(crate) generator_cpu_s: f64,
    /// Generator CPU over the window, in % of one core.
    pub(crate) generator_cpu_pct: f64,
    pub(crate) generator_threads: usize,
    /// CPU-seconds the rest of the machine (neither server nor generator) used in the window:
    /// how noisy the run was.
    pub(crate) other_cpu_s: f64,
    /// Of `other_cpu_s`, the machine's softirq time (loopback TCP work not charged to a process).
    pub(crate) softirq_cpu_s: f64,
    pub(crate) errors: ErrorsOut,
    pub(crate) notes: Vec<String>,
    /// The count whose zero means "no result" (not serialized).
    #[serde(skip)]
    pub(crate) primary: u64,
}

/// Server and generator readings around a window.
pub(crate) struct Window {
    /// Server before / after.
    pub server: Option<(Sample, Sample)>,
    /// Generator before / after.
    pub generator: (Sample, Sample),
}

impl Report {
    /// An empty report for `scenario` against `target`.
    pub(crate) fn new(scenario: &'static str, target: &str, unit: &'static str) -> Report {
        Report {
            tool: "sockhub-bench",
            version: env!("CARGO_PKG_VERSION"),
            scenario,
            label: None,
            target: target.to_string(),
            parameters: Fields::default(),
            duration_s: 0.0,
            counts: Fields::default(),
            rates: Fields::default(),
            latency_us: None,
            server_pid: None,
            server_cpu_s: None,
            per_server_cpu_s: None,
            per_server_cpu_s_unit: unit,
            rss_kb_before: None,
            rss_kb_after: None,
            rss_kb_peak: None,
            rss_anon_kb_before: None,
            rss_anon_kb_after: None,
            server_threads: None,
            generator_cpu_s: 0.0,
            generator_cpu_pct: 0.0,
            generator_threads: 1,
            other_cpu_s: 0.0,
            softirq_cpu_s: 0.0,
            errors: ErrorsOut::default(),
            notes: Vec::new(),
            primary: 0,
        }
    }

    /// Fills the server and generator figures from the readings around the window; `work` is
    /// the count the headline divides by server CPU-seconds.
    pub(crate) fn set_window(&mut self, pid: Option<u32>, w: &Window, work: u64) {
        self.server_pid = pid;
        let (g0, g1) = &w.generator;
        self.generator_cpu_s = round(g1.cpu_s_since(g0), 2);
        let wall = g1.at.saturating_duration_since(g0.at).as_secs_f64();
        if wall > 0.0 {
            self.generator_cpu_pct = round(100.0 * g1.cpu_s_since(g0) / wall, 1);
        }
        let busy = g1.machine_busy_ticks.saturating_sub(g0.machine_busy_ticks) as f64 / 100.0;
        let server_cpu = w.server.as_ref().map_or(0.0, |(a, b)| b.cpu_s_since(a));
        self.other_cpu_s = round((busy - server_cpu - g1.cpu_s_since(g0)).max(0.0), 2);
        self.softirq_cpu_s = round(
            g1.machine_softirq_ticks
                .saturating_sub(g0.machine_softirq_ticks) as f64
                / 100.0,
            2,
        );
        if wall > 0.0 && self.other_cpu_s / wall > 0.25 {
            self.notes.push(format!(
                "the machine was busy with other work ({:.0} % of a core on average): \
                 compare per-CPU figures, not rates or latencies",
                100.0 * self.other_cpu_s / wall
            ));
        }
        if let Some((s0, s1)) = &w.server {
            let cpu = s1.cpu_s_since(s0);
            self.server_cpu_s = Some(round(cpu, 2));
            self.per_server_cpu_s = (cpu > 0.0).then(|| round(work as f64 / cpu, 1));
            self.rss_kb_before = s0.rss_kb;
            self.rss_kb_after = s1.rss_kb;
            self.rss_kb_peak = s1.rss_peak_kb;
            self.rss_anon_kb_before = s0.rss_anon_kb;
            self.rss_anon_kb_after = s1.rss_anon_kb;
            self.server_threads = s1.threads;
            if cpu > 0.0 && cpu < 0.5 {
                self.notes.push(format!(
                    "server CPU was only {cpu:.2} s (10 ms resolution): the per-CPU figure is coarse"
                ));
            }
        } else if pid.is_some() {
            self.notes
                .push("the server could not be sampled (did it exit?)".into());
        }
    }

    /// Adds a note for error kinds with a known cause.
    pub(crate) fn explain_errors(&mut self) {
        const HINTS: [(&str, &str); 5] = [
            (
                "code 1008",
                "the server closed connections for policy (1008): a per-session message rate \
                 limit? (sockhub: --max-messages-per-second 0 for benchmarks)",
            ),
            (
                "code 4100",
                "the server closed slow consumers (4100): the generator fell behind, or the \
                 outbox limits are too small for this load",
            ),
            (
                "503",
                "the server refused connections as full: raise its --max-connections",
            ),
            (
                "os error 24",
                "out of file descriptors: raise `ulimit -n` (for the server too)",
            ),
            (
                "os error 99",
                "out of ephemeral ports: use --per-source-ip to spread over 127.0.0.x",
            ),
        ];
        for (needle, hint) in HINTS {
            if self.errors.kinds.keys().any(|k| k.contains(needle)) {
                self.notes.push(hint.to_string());
            }
        }
    }

    /// The JSON document.
    pub fn json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Whether the run produced nothing (no message, delivery or connection).
    pub fn is_empty(&self) -> bool {
        self.primary == 0
    }

    /// The result as a readable table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "sockhub-bench {}  {}{}",
            self.scenario,
            self.target,
            self.label
                .as_ref()
                .map(|l| format!("  [{l}]"))
                .unwrap_or_default()
        );
        let row = |t: &mut String, k: &str, v: String| {
            let _ = writeln!(t, "  {k:<13} {v}");
        };
        row(&mut t, "parameters", inline(&self.parameters));
        row(&mut t, "window", format!("{:.3} s", self.duration_s));
        row(&mut t, "counts", inline(&self.counts));
        row(&mut t, "rates", inline(&self.rates));
        if let Some(l) = &self.latency_us {
            row(
                &mut t,
                "latency µs",
                format!(
                    "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (mean {}, {} samples)",
                    l.p50, l.p90, l.p99, l.p999, l.max, l.mean, l.samples
                ),
            );
        }
        match self.server_pid {
            Some(pid) => {
                let mut s = format!("pid {pid}");
                if let Some(c) = self.server_cpu_s {
                    let _ = write!(s, "  cpu {c:.2} s");
                }
                if let Some(n) = self.server_threads {
                    let _ = write!(s, "  threads {n}");
                }
                if let (Some(a), Some(b)) = (self.rss_kb_before, self.rss_kb_after) {
                    let _ = write!(s, "  rss {a} → {b} KB");
                }
                if let (Some(a), Some(b)) = (self.rss_anon_kb_before, self.rss_anon_kb_after) {
                    let _ = write!(s, " (anon {a} → {b} KB)");
                }
                if let Some(p) = self.rss_kb_peak {
                    let _ = write!(s, "  peak {p} KB");
                }
                row(&mut t, "server", s);
                row(
                    &mut t,
                    "HEADLINE",
                    match self.per_server_cpu_s {
                        Some(v) => format!(
                            "{} {} per server CPU-second",
                            group(v.round() as u64),
                            self.per_server_cpu_s_unit
                        ),
                        None => "n/a (no server CPU measured)".into(),
                    },
                );
            }
            None => row(&mut t, "server", "not sampled (pass --pid PID)".into()),
        }
        row(
            &mut t,
            "generator",
            format!(
                "cpu {:.2} s ({:.1} % of one core), {} thread{}",
                self.generator_cpu_s,
                self.generator_cpu_pct,
                self.generator_threads,
                if self.generator_threads == 1 { "" } else { "s" }
            ),
        );
        row(
            &mut t,
            "other load",
            format!(
                "{:.2} CPU-s used by other processes in the window (softirq {:.2})",
                self.other_cpu_s, self.softirq_cpu_s
            ),
        );
        let mut e = format!("{}", self.errors.total);
        for (k, v) in &self.errors.kinds {
            let _ = write!(e, "  [{v}× {k}]");
        }
        row(&mut t, "errors", e);
        for n in &self.notes {
            row(&mut t, "note", n.clone());
        }
        t
    }
}

/// `k=v k=v` for a row.
fn inline(f: &Fields) -> String {
    f.0.iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            Value::Number(n) if n.is_f64() => {
                let x = n.as_f64().unwrap_or_default();
                if x.abs() >= 1000.0 {
                    format!("{k}={}", group(x.round() as u64))
                } else {
                    format!("{k}={x}")
                }
            }
            Value::Number(n) => match n.as_u64() {
                Some(u) => format!("{k}={}", group(u)),
                None => format!("{k}={n}"),
            },
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join("  ")
}

/// 1234567 → "1,234,567".
fn group(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_and_fields() {
        assert_eq!(group(0), "0");
        assert_eq!(group(1234567), "1,234,567");
        let mut f = Fields::default();
        f.put("b", 2).put("a", 1.5).put("s", "x");
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            r#"{"b":2,"a":1.5,"s":"x"}"#
        );
        assert_eq!(inline(&f), "b=2  a=1.5  s=x");
    }
}
