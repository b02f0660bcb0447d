//! Prometheus metrics in the text exposition format. Labels are route templates and
//! status codes only: no account, device, key, credential or message id ever becomes a
//! label.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Latency histogram bucket bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The relay's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    latency: Mutex<BTreeMap<&'static str, Histogram>>,
    /// PostgreSQL notifications received.
    pub notifications: AtomicU64,
    /// Messages pushed on WebSockets.
    pub delivered: AtomicU64,
    /// Messages acknowledged.
    pub acked: AtomicU64,
    /// Messages accepted (one per recipient device).
    pub accepted: AtomicU64,
}

/// The route template of a request path (never the path itself, which names accounts).
pub fn route_of(method: &str, path: &str) -> &'static str {
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, seg.as_slice()) {
        (_, ["healthz"]) => "/healthz",
        (_, ["readyz"]) => "/readyz",
        (_, ["metrics"]) => "/metrics",
        (_, ["openapi.json"]) => "/openapi.json",
        ("POST", ["v1", "accounts"]) => "POST /v1/accounts",
        ("GET", ["v1", "accounts", _, "devices"]) => "GET /v1/accounts/{account}/devices",
        ("POST", ["v1", "devices"]) => "POST /v1/devices",
        ("DELETE", ["v1", "devices", _]) => "DELETE /v1/devices/{device}",
        ("PUT", ["v1", "keys"]) => "PUT /v1/keys",
        ("GET", ["v1", "keys", "count"]) => "GET /v1/keys/count",
        ("GET", ["v1", "bundles", _]) => "GET /v1/bundles/{account}",
        ("GET", ["v1", "bundles", _, _]) => "GET /v1/bundles/{account}/{device}",
        ("PUT", ["v1", "messages", _]) => "PUT /v1/messages/{account}",
        ("GET", ["v1", "websocket"]) => "GET /v1/websocket",
        _ => "other",
    }
}

impl Metrics {
    /// Records one finished request.
    pub fn observe(&self, route: &'static str, status: u16, elapsed: Duration) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((route, status))
            .or_default() += 1;
        let secs = elapsed.as_secs_f64();
        let mut lat = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let h = lat.entry(route).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// Renders every metric; `queue_depth` and `connected` are sampled by the caller.
    pub fn render(&self, queue_depth: Option<u64>, connected: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP relay_requests_total HTTP requests by route and status."
        );
        let _ = writeln!(out, "# TYPE relay_requests_total counter");
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "relay_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP relay_request_duration_seconds HTTP request latency by route."
        );
        let _ = writeln!(out, "# TYPE relay_request_duration_seconds histogram");
        for (route, h) in self
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "relay_request_duration_seconds_bucket{{route=\"{route}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "relay_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "relay_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "relay_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
        let gauges = [(
            "relay_connected_devices",
            "WebSocket connections on this replica.",
            connected as u64,
        )];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        if let Some(d) = queue_depth {
            let _ = writeln!(
                out,
                "# HELP relay_queue_depth Messages stored and not yet acknowledged.\n# TYPE relay_queue_depth gauge\nrelay_queue_depth {d}"
            );
        }
        let counters = [
            (
                "relay_notifications_total",
                "PostgreSQL notifications received.",
                &self.notifications,
            ),
            (
                "relay_messages_accepted_total",
                "Messages stored (one per recipient device).",
                &self.accepted,
            ),
            (
                "relay_messages_delivered_total",
                "Messages pushed on WebSockets.",
                &self.delivered,
            ),
            (
                "relay_messages_acked_total",
                "Messages acknowledged and deleted.",
                &self.acked,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_hide_names() {
        assert_eq!(
            route_of("PUT", "/v1/messages/alice"),
            "PUT /v1/messages/{account}"
        );
        assert_eq!(
            route_of("GET", "/v1/bundles/bob/2"),
            "GET /v1/bundles/{account}/{device}"
        );
        let m = Metrics::default();
        m.observe(
            route_of("PUT", "/v1/messages/alice"),
            200,
            Duration::from_millis(3),
        );
        let text = m.render(Some(1), 2);
        assert!(!text.contains("alice"));
        assert!(text.contains(
            "relay_requests_total{route=\"PUT /v1/messages/{account}\",status=\"200\"} 1"
        ));
    }
}
