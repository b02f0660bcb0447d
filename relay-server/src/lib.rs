//! `relay-server`: the relay operators run. It distributes prekey bundles (verifying
//! every signature with `signal-core` and handing each one-time key out once) and
//! stores ciphertext until the recipient device acknowledges it over a WebSocket. It
//! never sees plaintext.
//!
//! Storage is embedded SQLite by default ([`store::sqlite`]) or PostgreSQL shared by
//! replicas ([`store::postgres`]). The HTTP API is specified in `docs/relay-api.md` and
//! served as OpenAPI 3 at `/openapi.json`; [`client::RelayClient`] is a typed client for
//! all of it.

// The nested filter types of `server::routes` overflow the default limit (128) when the
// optimiser inlines them in release builds (E0275 on `Unpin`); debug builds are not
// affected.
#![recursion_limit = "256"]

pub mod api;
pub mod auth;
pub mod client;
pub mod config;
pub mod delivery;
pub mod hub;
pub mod metrics;
pub mod rate_limit;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod types;

pub use client::RelayClient;
pub use config::Config;
pub use server::{RelayHandle, start};
