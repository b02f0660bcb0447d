//! Building and running the relay: storage, routes, background tasks, graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tracing::Instrument;
use warp::Filter;
use warp::http::StatusCode;
use warp::http::header::{CONNECTION, HeaderValue, SEC_WEBSOCKET_ACCEPT, UPGRADE};
use warp::reply::{Reply, Response};

use crate::api::{self, ApiError, respond};
use crate::config::{Config, StorageConfig};
use crate::hub::Hub;
use crate::metrics::{Metrics, route_of};
use crate::rate_limit::RateLimiter;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Storage, StoreError};

/// The OpenAPI 3 document served at `/openapi.json` (kept in step with `docs/relay-api.md`).
pub const OPENAPI: &str = include_str!("openapi.json");

/// Longest time [`RelayHandle::shutdown`] waits for the WebSockets to be closed (a
/// socket whose peer stopped reading could otherwise hold the shutdown).
pub const SOCKET_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Everything a handler needs.
pub struct State {
    /// The store.
    pub store: Arc<dyn Storage>,
    /// This replica's connections.
    pub hub: Arc<Hub>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Configuration.
    pub config: Config,
    /// Set when shutdown begins (`/readyz` fails from then on).
    pub shutting_down: AtomicBool,
    /// Bundle-fetch limiter.
    pub bundle_limiter: RateLimiter,
    /// Message-send limiter.
    pub send_limiter: RateLimiter,
}

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The storage could not be opened or migrated.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A running relay.
pub struct RelayHandle {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
}

impl RelayHandle {
    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Graceful shutdown: `/readyz` fails, every WebSocket is told to reconnect
    /// elsewhere and closed, new connections are refused, and in-flight requests
    /// (including their storage writes) finish before this returns. It also waits, at
    /// most [`SOCKET_CLOSE_GRACE`], until every WebSocket has been sent its `reconnect`
    /// frame and close code: the sockets are not tracked by the HTTP server, and a
    /// process that exits right after this would otherwise drop some of them unclosed.
    pub async fn shutdown(mut self) {
        self.state.shutting_down.store(true, Ordering::Release);
        self.state.hub.shutdown();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.server).await;
        let deadline = tokio::time::Instant::now() + SOCKET_CLOSE_GRACE;
        while !self.state.hub.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for b in &self.background {
            b.abort();
        }
    }
}

/// Opens the configured storage (running migrations).
pub async fn open_store(config: &Config) -> Result<Arc<dyn Storage>, StoreError> {
    Ok(match &config.storage {
        StorageConfig::Sqlite { path } => {
            let path = path.clone();
            Arc::new(
                tokio::task::spawn_blocking(move || SqliteStore::open(&path))
                    .await
                    .map_err(|_| StoreError::Task)??,
            )
        }
        StorageConfig::Postgres { url, pool_size } => {
            Arc::new(PostgresStore::connect(url, *pool_size).await?)
        }
    })
}

/// Starts the relay on `config.listen` and returns once it accepts connections.
pub async fn start(config: Config) -> Result<RelayHandle, StartError> {
    let store = open_store(&config).await?;
    let hub = Arc::new(Hub::default());
    let metrics = Arc::new(Metrics::default());
    {
        let (hub, metrics) = (Arc::clone(&hub), Arc::clone(&metrics));
        store
            .start_listener(Arc::new(move |account: &str, device: u32| {
                metrics.notifications.fetch_add(1, Ordering::Relaxed);
                hub.notify(account, device);
            }))
            .await?;
    }
    let state = Arc::new(State {
        store,
        hub,
        metrics,
        bundle_limiter: RateLimiter::new(config.bundle_rate.0, config.bundle_rate.1),
        send_limiter: RateLimiter::new(config.send_rate.0, config.send_rate.1),
        shutting_down: AtomicBool::new(false),
        config,
    });
    let listener = tokio::net::TcpListener::bind(state.config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: state.config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: state.config.listen,
        source,
    })?;

    let (stop, stopped) = oneshot::channel::<()>();
    // Boxed, so that the deeply nested filter types stop here: a crate that inlines
    // `start` (the binary, in release builds) otherwise overflows the compiler's
    // recursion limit evaluating them (E0275). One dynamic call per request.
    let routes = routes(Arc::clone(&state)).map(Reply::into_response).boxed();
    let server = warp::serve(routes).incoming(listener).graceful(async move {
        let _ = stopped.await;
    });
    let server = tokio::spawn(server.run());

    let purge = {
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                let cutoff = api::now().saturating_sub(state.config.message_ttl.as_secs());
                match state.store.purge_expired(cutoff).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(purged = n, "expired messages purged"),
                    Err(e) => tracing::warn!(error = %e, "purge failed"),
                }
                state.bundle_limiter.prune();
                state.send_limiter.prune();
            }
        })
    };
    tracing::info!(%addr, "relay listening");
    Ok(RelayHandle {
        addr,
        state,
        stop: Some(stop),
        server,
        background: vec![purge],
    })
}

fn with_state(
    state: Arc<State>,
) -> impl Filter<Extract = (Arc<State>,), Error = std::convert::Infallible> + Clone {
    warp::any().map(move || Arc::clone(&state))
}

/// Every route, with body limits, JSON error bodies for rejections, and metrics.
pub fn routes(
    state: Arc<State>,
) -> impl Filter<Extract = (impl Reply,), Error = std::convert::Infallible> + Clone {
    let s = || with_state(Arc::clone(&state));
    let auth = || warp::header::optional::<String>("authorization");
    let body =
        || warp::body::content_length_limit(state.config.max_body_bytes).and(warp::body::bytes());

    let register = warp::post()
        .and(warp::path!("v1" / "accounts"))
        .and(s())
        .and(body())
        .then(|st, b| respond(api::register(st, b)));
    let link = warp::post()
        .and(warp::path!("v1" / "devices"))
        .and(s())
        .and(auth())
        .and(body())
        .then(|st, a, b| respond(api::link_device(st, a, b)));
    let remove = warp::delete()
        .and(warp::path!("v1" / "devices" / u32))
        .and(s())
        .and(auth())
        .then(|d, st, a| respond(api::remove_device(st, d, a)));
    let devices = warp::get()
        .and(warp::path!("v1" / "accounts" / String / "devices"))
        .and(s())
        .and(auth())
        .then(|acc, st, a| respond(api::list_devices(st, acc, a)));
    let keys = warp::put()
        .and(warp::path!("v1" / "keys"))
        .and(s())
        .and(auth())
        .and(body())
        .then(|st, a, b| respond(api::upload_keys(st, a, b)));
    let counts = warp::get()
        .and(warp::path!("v1" / "keys" / "count"))
        .and(s())
        .and(auth())
        .then(|st, a| respond(api::key_counts(st, a)));
    let bundle_one = warp::get()
        .and(warp::path!("v1" / "bundles" / String / u32))
        .and(s())
        .and(auth())
        .then(|acc, d, st, a| respond(api::bundles(st, acc, Some(d), a)));
    let bundle_all = warp::get()
        .and(warp::path!("v1" / "bundles" / String))
        .and(s())
        .and(auth())
        .then(|acc, st, a| respond(api::bundles(st, acc, None, a)));
    let send = warp::put()
        .and(warp::path!("v1" / "messages" / String))
        .and(s())
        .and(auth())
        .and(body())
        .then(|acc, st, a, b| respond(api::send(st, acc, a, b)));
    let ws = warp::get()
        .and(warp::path!("v1" / "websocket"))
        .and(s())
        .and(auth())
        // A clone of the connection's upgrade handle, taken before `warp::ws()` (which
        // checks the handshake headers) moves the original into its `Ws`.
        .and(warp::ext::optional::<hyper::upgrade::OnUpgrade>())
        .and(warp::ws())
        .and(warp::header::<String>("sec-websocket-key"))
        .then(websocket);
    let healthz = warp::get()
        .and(warp::path!("healthz"))
        .map(|| warp::reply::json(&serde_json::json!({ "status": "alive" })).into_response());
    let readyz = warp::get()
        .and(warp::path!("readyz"))
        .and(s())
        .then(api::ready);
    let metrics = warp::get()
        .and(warp::path!("metrics"))
        .and(s())
        .then(api::metrics);
    let openapi = warp::get().and(warp::path!("openapi.json")).map(|| {
        warp::reply::with_header(OPENAPI, "content-type", "application/json").into_response()
    });

    let observed = Arc::clone(&state.metrics);
    register
        .or(link)
        .unify()
        .or(remove)
        .unify()
        .or(devices)
        .unify()
        .or(keys)
        .unify()
        .or(counts)
        .unify()
        .or(bundle_one)
        .unify()
        .or(bundle_all)
        .unify()
        .or(send)
        .unify()
        .or(ws)
        .unify()
        .or(healthz)
        .unify()
        .or(readyz)
        .unify()
        .or(metrics)
        .unify()
        .or(openapi)
        .unify()
        .recover(rejection)
        .unify()
        .with(warp::log::custom(move |info| {
            observed.observe(
                route_of(info.method().as_str(), info.path()),
                info.status().as_u16(),
                info.elapsed(),
            );
        }))
        // One span per request, named by its route template (never the path, which
        // names accounts); exported over OTLP when configured.
        .with(warp::trace(|info| {
            tracing::info_span!(
                "request",
                method = %info.method(),
                route = route_of(info.method().as_str(), info.path()),
            )
        }))
}

/// Capacity of a WebSocket's read buffer. tungstenite allocates and zero-fills the
/// whole buffer up front (128 KiB by default), which made it most of an idle
/// connection's memory; client frames are small acknowledgements, and a larger frame
/// still grows the buffer as far as the message limit allows.
pub const WS_READ_BUFFER: usize = 4 * 1024;

/// Completes the WebSocket handshake itself rather than through `Ws::on_upgrade`, which
/// offers no way to size the read buffer ([`WS_READ_BUFFER`]).
async fn websocket(
    state: Arc<State>,
    header: Option<String>,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
    ws: warp::ws::Ws,
    key: String,
) -> Response {
    // `ws` only validated the request; its handle is the same upgrade as `upgrade`.
    drop(ws);
    let me = match crate::auth::authenticate(state.store.as_ref(), header.as_deref()).await {
        Ok(p) => p,
        Err(e) => return ApiError::from(e).into_response(),
    };
    if state.shutting_down.load(Ordering::Acquire) {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "reconnect elsewhere",
        )
        .into_response();
    }
    if state.hub.len() >= state.config.max_connections {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            "connection cap reached",
        )
        .into_response();
    }
    let Some(upgrade) = upgrade else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_upgradable",
            "this connection cannot be upgraded to a WebSocket",
        )
        .into_response();
    };
    // Base64, so always a valid header value; refused rather than unwrapped all the same.
    let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_websocket_key",
            "invalid sec-websocket-key",
        )
        .into_response();
    };
    let max = state
        .config
        .max_message_bytes
        .saturating_mul(2)
        .max(64 * 1024);
    let config = WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    // hyper hands over the connection once the 101 below is written. The
    // connection's lifetime is one span, detached from the upgrade request.
    tokio::spawn(
        async move {
            let upgraded = match upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!(error = %e, "websocket upgrade failed");
                    return;
                }
            };
            let socket = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(config),
            )
            .await;
            crate::delivery::serve(state, me, socket).await;
        }
        .instrument(tracing::info_span!(parent: None, "websocket")),
    );
    let mut res = warp::reply().into_response();
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(SEC_WEBSOCKET_ACCEPT, accept);
    res
}

async fn rejection(r: warp::Rejection) -> Result<Response, std::convert::Infallible> {
    let e = if r.is_not_found() {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
    } else if r.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "request body too large",
        )
    } else if r.find::<warp::reject::LengthRequired>().is_some() {
        ApiError::new(
            StatusCode::LENGTH_REQUIRED,
            "length_required",
            "send a content-length",
        )
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed",
        )
    } else {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", "bad request")
    };
    Ok(e.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The OpenAPI document lists exactly the routes the server serves.
    #[test]
    fn openapi_matches_routes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let mut documented = std::collections::BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                let concrete = path.replace("{account}", "alice").replace("{device}", "2");
                let route = route_of(&method.to_uppercase(), &concrete);
                assert_ne!(route, "other", "{method} {path} is not served");
                documented.insert(route);
            }
        }
        let served = [
            "POST /v1/accounts",
            "POST /v1/devices",
            "DELETE /v1/devices/{device}",
            "GET /v1/accounts/{account}/devices",
            "PUT /v1/keys",
            "GET /v1/keys/count",
            "GET /v1/bundles/{account}",
            "GET /v1/bundles/{account}/{device}",
            "PUT /v1/messages/{account}",
            "GET /v1/websocket",
            "/healthz",
            "/readyz",
            "/metrics",
            "/openapi.json",
        ];
        assert_eq!(documented, served.into_iter().collect());
    }
}
