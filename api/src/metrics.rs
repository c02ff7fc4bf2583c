//! Prometheus metrics, one registry per app (tests run several in one process).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use crate::state::AppState;

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_latency: HistogramVec,
    pub commands: IntCounterVec,
    pub projection_position: IntGauge,
    pub event_store_head: IntGauge,
    /// Write requests this instance passed on to the active one, by what became of them.
    pub forwarded: IntCounterVec,
    /// 1 while this instance is the elected active one.
    pub active_instance: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("spse_totp".to_owned()), None)?;
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route and status"),
            &["method", "route", "status"],
        )?;
        let http_latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
            ]),
            &["route"],
        )?;
        let commands = IntCounterVec::new(
            Opts::new(
                "commands_total",
                "Account commands by name and outcome (ok or the error code)",
            ),
            &["command", "outcome"],
        )?;
        let projection_position = IntGauge::new(
            "projection_position",
            "Log position every projection has reached",
        )?;
        let event_store_head = IntGauge::new(
            "event_store_head_position",
            "Last position in the event log",
        )?;
        let forwarded = IntCounterVec::new(
            Opts::new(
                "forwarded_requests_total",
                "Write requests passed on to the active instance: answered there, ran here (it was \
                 unreachable), or failed (it did not answer)",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(http_requests.clone()))?;
        let active_instance = IntGauge::new(
            "active_instance",
            "1 while this instance is the one elected to run every write request \
             (SPSE_TOTP_CLUSTER_URL), else 0",
        )?;
        registry.register(Box::new(forwarded.clone()))?;
        registry.register(Box::new(active_instance.clone()))?;
        registry.register(Box::new(http_latency.clone()))?;
        registry.register(Box::new(commands.clone()))?;
        registry.register(Box::new(projection_position.clone()))?;
        registry.register(Box::new(event_store_head.clone()))?;
        Ok(Metrics {
            registry,
            http_requests,
            http_latency,
            commands,
            projection_position,
            event_store_head,
            forwarded,
            active_instance,
        })
    }

    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding our own well-formed families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

/// The methods this service answers; any other is counted as `other`.
const KNOWN_METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::HEAD,
    Method::OPTIONS,
    Method::DELETE,
];

/// A method as a metric label. Labels are series: a client inventing methods must not be able
/// to grow the registry without bound.
fn method_label(method: &Method) -> &'static str {
    KNOWN_METHODS
        .iter()
        .find(|known| *known == method)
        .map_or("other", Method::as_str)
}

/// Counts and times every request by its route template, never by its concrete path (which
/// would carry user ids and tokens into the metrics, and let any client add series): a path no
/// route matches is `unmatched`.
pub async fn track(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    app.metrics
        .http_latency
        .with_label_values(&[route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    app.metrics
        .http_requests
        .with_label_values(&[method, route.as_str(), response.status().as_str()])
        .inc();
    response
}
