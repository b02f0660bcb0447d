//! Logs and traces: JSON (or text) log lines through `tracing`, and, when
//! `otlp_endpoint` is configured, every span exported over OTLP/HTTP (protobuf) to an
//! OpenTelemetry collector or Jaeger (which ingests OTLP on port 4318).
//!
//! What spans carry is what log lines carry: route templates (`PUT
//! /v1/messages/{account}`), status codes and durations — never an account or device
//! name, a credential, a key, a message id or a ciphertext.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::Config;

/// The OTLP/HTTP path of the trace signal, appended to `otlp_endpoint`.
pub const OTLP_TRACES_PATH: &str = "/v1/traces";

/// The log and span filter when `RELAY_LOG` is unset: `info`, but warp's two events
/// per request only for 4xx/5xx responses (the request span itself stays).
pub const DEFAULT_FILTER: &str = "info,warp::filters::trace=warn";

/// The `service.name` resource attribute of exported spans.
pub const SERVICE_NAME: &str = "relay-server";

/// Telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built from `otlp_endpoint`.
    #[error("invalid setting `otlp_endpoint`: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// A global `tracing` subscriber was already installed.
    #[error("a tracing subscriber is already installed: {0}")]
    Subscriber(#[from] tracing_subscriber::util::TryInitError),
}

/// The installed telemetry; [`Telemetry::shutdown`] flushes the spans not yet
/// exported.
///
/// Create it before the async runtime and shut it down after the runtime is gone: the
/// exporter uses a blocking HTTP client on the batch processor's own thread, which must
/// not be created or dropped inside the runtime.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Installs the global subscriber: the log filter from `RELAY_LOG` (default [`DEFAULT_FILTER`]),
    /// log lines in the configured format, and the OTLP span exporter when
    /// `config.otlp_endpoint` is set.
    pub fn init(config: &Config) -> Result<Self, TelemetryError> {
        let filter =
            || EnvFilter::try_from_env("RELAY_LOG").unwrap_or_else(|_| DEFAULT_FILTER.into());
        let logs = if config.log_json {
            tracing_subscriber::fmt::layer().json().boxed()
        } else {
            tracing_subscriber::fmt::layer().boxed()
        };
        let provider = match &config.otlp_endpoint {
            Some(base) => Some(provider(base)?),
            None => None,
        };
        let traces = provider.as_ref().map(|p| {
            tracing_opentelemetry::layer()
                .with_tracer(p.tracer(SERVICE_NAME))
                .with_filter(filter())
        });
        tracing_subscriber::registry()
            .with(logs.with_filter(filter()))
            .with(traces)
            .try_init()?;
        Ok(Self { provider })
    }

    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans still buffered and stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            eprintln!("relay-server: flushing traces failed: {e}");
        }
    }
}

/// The tracer provider exporting to `{base}/v1/traces` in batches.
fn provider(base: &str) -> Result<SdkTracerProvider, TelemetryError> {
    let endpoint = format!("{}{OTLP_TRACES_PATH}", base.trim_end_matches('/'));
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(SERVICE_NAME).build())
        .build())
}
