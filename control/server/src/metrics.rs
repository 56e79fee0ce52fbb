//! The control plane's Prometheus metrics, kept in atomics and rendered by hand (the text
//! format is simple, and this keeps the dependency tree small).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        atomic::{AtomicI64, AtomicU64, Ordering},
        Mutex,
    },
    time::Duration,
};

/// Upper bounds in seconds, as Prometheus' default histogram buckets.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {}",
                self.counts[i]
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), Histogram>>,
    pub watches: AtomicI64,
    scheduling: Mutex<Histogram>,
    queue_depth: Mutex<BTreeMap<&'static str, i64>>,
    reconcile_errors: Mutex<BTreeMap<&'static str, u64>>,
    reconciles: Mutex<BTreeMap<&'static str, u64>>,
    pub leader: AtomicU64,
}

impl Metrics {
    pub fn request(&self, verb: &str, code: u16, took: Duration) {
        self.requests
            .lock()
            .expect("metrics lock")
            .entry((verb.to_string(), code))
            .or_default()
            .observe(took.as_secs_f64());
    }

    pub fn scheduled(&self, took: Duration) {
        self.scheduling
            .lock()
            .expect("metrics lock")
            .observe(took.as_secs_f64());
    }

    pub fn queue(&self, controller: &'static str, depth: i64) {
        self.queue_depth
            .lock()
            .expect("metrics lock")
            .insert(controller, depth);
    }

    pub fn reconciled(&self, controller: &'static str, ok: bool) {
        *self
            .reconciles
            .lock()
            .expect("metrics lock")
            .entry(controller)
            .or_default() += 1;
        if !ok {
            *self
                .reconcile_errors
                .lock()
                .expect("metrics lock")
                .entry(controller)
                .or_default() += 1;
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP skiff_api_request_duration_seconds API request latency by verb and code.\n# TYPE skiff_api_request_duration_seconds histogram\n");
        for ((verb, code), h) in self.requests.lock().expect("metrics lock").iter() {
            h.render(
                &mut out,
                "skiff_api_request_duration_seconds",
                &format!("verb=\"{verb}\",code=\"{code}\""),
            );
        }
        let _ = write!(
            out,
            "# HELP skiff_api_watches Open watch streams.\n# TYPE skiff_api_watches gauge\nskiff_api_watches {}\n",
            self.watches.load(Ordering::Relaxed)
        );
        out.push_str("# HELP skiff_scheduling_duration_seconds From pod creation to its binding to a node.\n# TYPE skiff_scheduling_duration_seconds histogram\n");
        self.scheduling.lock().expect("metrics lock").render(
            &mut out,
            "skiff_scheduling_duration_seconds",
            "",
        );
        out.push_str("# HELP skiff_reconcile_queue_depth Changes seen but not yet reconciled, per controller.\n# TYPE skiff_reconcile_queue_depth gauge\n");
        for (c, d) in self.queue_depth.lock().expect("metrics lock").iter() {
            let _ = writeln!(out, "skiff_reconcile_queue_depth{{controller=\"{c}\"}} {d}");
        }
        out.push_str("# HELP skiff_reconciles_total Reconcile passes, per controller.\n# TYPE skiff_reconciles_total counter\n");
        for (c, n) in self.reconciles.lock().expect("metrics lock").iter() {
            let _ = writeln!(out, "skiff_reconciles_total{{controller=\"{c}\"}} {n}");
        }
        out.push_str("# HELP skiff_reconcile_errors_total Reconcile passes that failed, per controller.\n# TYPE skiff_reconcile_errors_total counter\n");
        for (c, n) in self.reconcile_errors.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "skiff_reconcile_errors_total{{controller=\"{c}\"}} {n}"
            );
        }
        let _ = write!(
            out,
            "# HELP skiff_leader Whether this instance runs the scheduler and controllers.\n# TYPE skiff_leader gauge\nskiff_leader {}\n",
            self.leader.load(Ordering::Relaxed)
        );
        out
    }
}
