//! Configuration: `config.toml` (optional), then `RELAY_*` environment variables, then
//! command-line flags, each overriding the one before. Every setting is documented in
//! the repository's `config.toml`. A missing or invalid setting fails at start with an
//! error that names it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default SQLite database file.
pub const DEFAULT_SQLITE_PATH: &str = "relay.sqlite3";
/// Default maximum number of devices per account (the first device included).
pub const DEFAULT_MAX_DEVICES: u32 = 6;
/// Default maximum size of one ciphertext, in bytes (after base64 decoding).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Default maximum size of one HTTP request body, in bytes.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 4 * 1024 * 1024;
/// Default message time to live: 30 days.
pub const DEFAULT_MESSAGE_TTL_SECS: u64 = 30 * 24 * 3600;
/// Default maximum number of queued messages per device.
pub const DEFAULT_MAX_QUEUE_PER_DEVICE: u64 = 10_000;
/// Default maximum number of open WebSocket connections per replica.
pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;
/// Default interval of the catch-up read a connected device does even without a
/// notification (bounds the delay a lost PostgreSQL notification can add).
pub const DEFAULT_CATCH_UP_SECS: u64 = 5;
/// Default bundle fetches per second per account (token refill rate).
pub const DEFAULT_BUNDLE_RATE: f64 = 20.0;
/// Default bundle-fetch burst per account.
pub const DEFAULT_BUNDLE_BURST: f64 = 200.0;
/// Default message sends per second per account.
pub const DEFAULT_SEND_RATE: f64 = 1000.0;
/// Default message-send burst per account.
pub const DEFAULT_SEND_BURST: f64 = 5000.0;
/// Most one-time prekeys (EC or KEM) accepted in one upload request.
pub const MAX_PREKEYS_PER_UPLOAD: usize = 100;

/// Which storage backend to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    /// Embedded SQLite database file (created on first start).
    Sqlite {
        /// Path of the database file.
        path: PathBuf,
    },
    /// PostgreSQL shared by any number of replicas.
    Postgres {
        /// A libpq-style connection string or URL.
        url: String,
        /// Connection pool size.
        pool_size: usize,
    },
}

/// The validated configuration the relay runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Storage backend.
    pub storage: StorageConfig,
    /// Maximum devices per account.
    pub max_devices: u32,
    /// When set, registration requires this invite token.
    pub invite_token: Option<String>,
    /// Maximum ciphertext size in bytes.
    pub max_message_bytes: usize,
    /// Maximum HTTP request body size in bytes.
    pub max_body_bytes: u64,
    /// Messages older than this are purged.
    pub message_ttl: Duration,
    /// Maximum queued messages per device.
    pub max_queue_per_device: u64,
    /// Maximum concurrent WebSocket connections on this replica.
    pub max_connections: usize,
    /// Interval of the periodic catch-up read per connection.
    pub catch_up_interval: Duration,
    /// Log format: JSON lines (`true`) or human-readable text.
    pub log_json: bool,
    /// Bundle fetches per second per account, and burst.
    pub bundle_rate: (f64, f64),
    /// Message sends per second per account, and burst.
    pub send_rate: (f64, f64),
    /// OTLP/HTTP base URL (`http://host:4318`) spans are exported to; `None`: no export.
    pub otlp_endpoint: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            storage: StorageConfig::Sqlite {
                path: PathBuf::from(DEFAULT_SQLITE_PATH),
            },
            max_devices: DEFAULT_MAX_DEVICES,
            invite_token: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            message_ttl: Duration::from_secs(DEFAULT_MESSAGE_TTL_SECS),
            max_queue_per_device: DEFAULT_MAX_QUEUE_PER_DEVICE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            catch_up_interval: Duration::from_secs(DEFAULT_CATCH_UP_SECS),
            log_json: true,
            bundle_rate: (DEFAULT_BUNDLE_RATE, DEFAULT_BUNDLE_BURST),
            send_rate: (DEFAULT_SEND_RATE, DEFAULT_SEND_BURST),
            otlp_endpoint: None,
        }
    }
}

/// A setting that is missing or invalid; the message names it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML or has an unknown key or wrong type.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong (names the key).
        message: String,
    },
    /// One setting has an invalid value.
    #[error("invalid setting `{key}`: {message}")]
    Invalid {
        /// The setting's name (config key).
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The keys of `config.toml`; every one optional. Unknown keys are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    storage: Option<String>,
    sqlite_path: Option<PathBuf>,
    postgres_url: Option<String>,
    postgres_pool_size: Option<usize>,
    max_devices: Option<u32>,
    invite_token: Option<String>,
    max_message_bytes: Option<usize>,
    max_body_bytes: Option<u64>,
    message_ttl_secs: Option<u64>,
    max_queue_per_device: Option<u64>,
    max_connections: Option<usize>,
    catch_up_secs: Option<u64>,
    log_format: Option<String>,
    bundle_rate: Option<f64>,
    bundle_burst: Option<f64>,
    send_rate: Option<f64>,
    send_burst: Option<f64>,
    otlp_endpoint: Option<String>,
}

/// Command-line flags; each also reads the named `RELAY_*` environment variable.
/// Flags override the environment, which overrides `config.toml`.
#[derive(Debug, Parser)]
#[command(
    name = "relay-server",
    version,
    about = "Signal-protocol relay: prekeys and store-and-forward delivery"
)]
pub struct Cli {
    /// Configuration file; when not given, `config.toml` in the working directory is
    /// read if it exists.
    #[arg(long, env = "RELAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on (`listen`).
    #[arg(long, env = "RELAY_LISTEN")]
    pub listen: Option<String>,
    /// `sqlite` or `postgres` (`storage`).
    #[arg(long, env = "RELAY_STORAGE")]
    pub storage: Option<String>,
    /// SQLite database file (`sqlite_path`).
    #[arg(long, env = "RELAY_SQLITE_PATH")]
    pub sqlite_path: Option<PathBuf>,
    /// PostgreSQL connection URL (`postgres_url`).
    #[arg(long, env = "RELAY_POSTGRES_URL")]
    pub postgres_url: Option<String>,
    /// PostgreSQL pool size (`postgres_pool_size`).
    #[arg(long, env = "RELAY_POSTGRES_POOL_SIZE")]
    pub postgres_pool_size: Option<String>,
    /// Maximum devices per account (`max_devices`).
    #[arg(long, env = "RELAY_MAX_DEVICES")]
    pub max_devices: Option<String>,
    /// Invite token required to register (`invite_token`).
    #[arg(long, env = "RELAY_INVITE_TOKEN", hide_env_values = true)]
    pub invite_token: Option<String>,
    /// Maximum ciphertext size (`max_message_bytes`).
    #[arg(long, env = "RELAY_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<String>,
    /// Maximum request body size (`max_body_bytes`).
    #[arg(long, env = "RELAY_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<String>,
    /// Message time to live in seconds (`message_ttl_secs`).
    #[arg(long, env = "RELAY_MESSAGE_TTL_SECS")]
    pub message_ttl_secs: Option<String>,
    /// Maximum queued messages per device (`max_queue_per_device`).
    #[arg(long, env = "RELAY_MAX_QUEUE_PER_DEVICE")]
    pub max_queue_per_device: Option<String>,
    /// Maximum WebSocket connections (`max_connections`).
    #[arg(long, env = "RELAY_MAX_CONNECTIONS")]
    pub max_connections: Option<String>,
    /// Catch-up read interval in seconds (`catch_up_secs`).
    #[arg(long, env = "RELAY_CATCH_UP_SECS")]
    pub catch_up_secs: Option<String>,
    /// `json` or `text` (`log_format`).
    #[arg(long, env = "RELAY_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Bundle fetches per second per account (`bundle_rate`).
    #[arg(long, env = "RELAY_BUNDLE_RATE")]
    pub bundle_rate: Option<String>,
    /// Bundle-fetch burst per account (`bundle_burst`).
    #[arg(long, env = "RELAY_BUNDLE_BURST")]
    pub bundle_burst: Option<String>,
    /// Message sends per second per account (`send_rate`).
    #[arg(long, env = "RELAY_SEND_RATE")]
    pub send_rate: Option<String>,
    /// Message-send burst per account (`send_burst`).
    #[arg(long, env = "RELAY_SEND_BURST")]
    pub send_burst: Option<String>,
    /// OTLP/HTTP collector base URL for trace export (`otlp_endpoint`).
    #[arg(long, env = "RELAY_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

fn parse_num<T: std::str::FromStr>(key: &'static str, v: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    v.trim().parse().map_err(|e: T::Err| ConfigError::Invalid {
        key,
        message: format!("{e}"),
    })
}

fn positive<T: PartialOrd + Default>(key: &'static str, v: T) -> Result<T, ConfigError> {
    if v > T::default() {
        Ok(v)
    } else {
        Err(ConfigError::Invalid {
            key,
            message: "must be greater than zero".into(),
        })
    }
}

impl Config {
    /// Builds the configuration from the file (if any), the environment (already read by
    /// clap into `cli`) and the flags.
    pub fn load(cli: &Cli) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(path) => Some(read_file(path)?),
            None => {
                let default = Path::new("config.toml");
                if default.exists() {
                    Some(read_file(default)?)
                } else {
                    None
                }
            }
        };
        let f = file.unwrap_or_default();

        let listen = cli
            .listen
            .clone()
            .or(f.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen: SocketAddr = parse_num("listen", &listen)?;

        let storage_kind = cli
            .storage
            .clone()
            .or(f.storage)
            .unwrap_or_else(|| "sqlite".into());
        let storage =
            match storage_kind.as_str() {
                "sqlite" => StorageConfig::Sqlite {
                    path: cli
                        .sqlite_path
                        .clone()
                        .or(f.sqlite_path)
                        .unwrap_or_else(|| PathBuf::from(DEFAULT_SQLITE_PATH)),
                },
                "postgres" => {
                    let url = cli.postgres_url.clone().or(f.postgres_url).ok_or(
                        ConfigError::Invalid {
                            key: "postgres_url",
                            message: "required when storage = \"postgres\"".into(),
                        },
                    )?;
                    let pool_size = match &cli.postgres_pool_size {
                        Some(v) => parse_num("postgres_pool_size", v)?,
                        None => f.postgres_pool_size.unwrap_or(16),
                    };
                    StorageConfig::Postgres {
                        url,
                        pool_size: positive("postgres_pool_size", pool_size)?,
                    }
                }
                other => {
                    return Err(ConfigError::Invalid {
                        key: "storage",
                        message: format!("expected \"sqlite\" or \"postgres\", got {other:?}"),
                    });
                }
            };

        macro_rules! num {
            ($field:ident, $key:literal, $default:expr) => {
                positive(
                    $key,
                    match &cli.$field {
                        Some(v) => parse_num($key, v)?,
                        None => f.$field.unwrap_or($default),
                    },
                )?
            };
        }
        let max_devices: u32 = num!(max_devices, "max_devices", DEFAULT_MAX_DEVICES);
        let max_message_bytes: usize = num!(
            max_message_bytes,
            "max_message_bytes",
            DEFAULT_MAX_MESSAGE_BYTES
        );
        let max_body_bytes: u64 = num!(max_body_bytes, "max_body_bytes", DEFAULT_MAX_BODY_BYTES);
        let message_ttl_secs: u64 = num!(
            message_ttl_secs,
            "message_ttl_secs",
            DEFAULT_MESSAGE_TTL_SECS
        );
        let max_queue_per_device: u64 = num!(
            max_queue_per_device,
            "max_queue_per_device",
            DEFAULT_MAX_QUEUE_PER_DEVICE
        );
        let max_connections: usize =
            num!(max_connections, "max_connections", DEFAULT_MAX_CONNECTIONS);
        let catch_up_secs: u64 = num!(catch_up_secs, "catch_up_secs", DEFAULT_CATCH_UP_SECS);

        let bundle_rate: f64 = num!(bundle_rate, "bundle_rate", DEFAULT_BUNDLE_RATE);
        let bundle_burst: f64 = num!(bundle_burst, "bundle_burst", DEFAULT_BUNDLE_BURST);
        let send_rate: f64 = num!(send_rate, "send_rate", DEFAULT_SEND_RATE);
        let send_burst: f64 = num!(send_burst, "send_burst", DEFAULT_SEND_BURST);

        let invite_token = cli.invite_token.clone().or(f.invite_token);
        if let Some(t) = &invite_token
            && t.len() < 16
        {
            return Err(ConfigError::Invalid {
                key: "invite_token",
                message: "must be at least 16 characters".into(),
            });
        }
        let log_json = match cli
            .log_format
            .clone()
            .or(f.log_format)
            .unwrap_or_else(|| "json".into())
            .as_str()
        {
            "json" => true,
            "text" => false,
            other => {
                return Err(ConfigError::Invalid {
                    key: "log_format",
                    message: format!("expected \"json\" or \"text\", got {other:?}"),
                });
            }
        };
        let otlp_endpoint = cli.otlp_endpoint.clone().or(f.otlp_endpoint);
        if let Some(url) = &otlp_endpoint {
            check_otlp_endpoint(url)?;
        }
        Ok(Self {
            listen,
            storage,
            max_devices,
            invite_token,
            max_message_bytes,
            max_body_bytes,
            message_ttl: Duration::from_secs(message_ttl_secs),
            max_queue_per_device,
            max_connections,
            catch_up_interval: Duration::from_secs(catch_up_secs),
            log_json,
            bundle_rate: (bundle_rate, bundle_burst),
            send_rate: (send_rate, send_burst),
            otlp_endpoint,
        })
    }
}

/// An OTLP/HTTP base URL: `http://host[:port][/prefix]`, without query or fragment.
/// TLS is not built in: export to a collector on the node or in the cluster.
fn check_otlp_endpoint(url: &str) -> Result<(), ConfigError> {
    let invalid = |message: &str| ConfigError::Invalid {
        key: "otlp_endpoint",
        message: message.into(),
    };
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(invalid(
            "expected an http:// URL such as \"http://jaeger-collector:4318\" \
             (https is not built in: export to a collector in the cluster)",
        ));
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || rest.contains(['?', '#', ' ']) {
        return Err(invalid("expected http://host[:port][/path]"));
    }
    Ok(())
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut v = vec!["relay-server"];
        v.extend_from_slice(args);
        Cli::parse_from(v)
    }

    #[test]
    fn invalid_setting_is_named() {
        let err = Config::load(&cli(&[
            "--max-devices",
            "zero",
            "--config",
            "/nonexistent.toml",
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent.toml"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "max_devices = 0\n").unwrap();
        let err = Config::load(&cli(&["--config", p.to_str().unwrap()])).unwrap_err();
        assert!(err.to_string().contains("max_devices"), "{err}");
        std::fs::write(&p, "bogus = 1\n").unwrap();
        let err = Config::load(&cli(&["--config", p.to_str().unwrap()])).unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
        std::fs::write(&p, "storage = \"postgres\"\n").unwrap();
        let err = Config::load(&cli(&["--config", p.to_str().unwrap()])).unwrap_err();
        assert!(err.to_string().contains("postgres_url"), "{err}");
        for bad in [
            "https://collector:4318",
            "collector:4318",
            "http://",
            "http://c?x=1",
        ] {
            std::fs::write(&p, format!("otlp_endpoint = {bad:?}\n")).unwrap();
            let err = Config::load(&cli(&["--config", p.to_str().unwrap()])).unwrap_err();
            assert!(err.to_string().contains("otlp_endpoint"), "{bad}: {err}");
        }
        std::fs::write(&p, "otlp_endpoint = \"http://jaeger:4318\"\n").unwrap();
        let c = Config::load(&cli(&["--config", p.to_str().unwrap()])).unwrap();
        assert_eq!(c.otlp_endpoint.as_deref(), Some("http://jaeger:4318"));
    }

    #[test]
    fn flags_override_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "max_devices = 3\nlisten = \"127.0.0.1:9000\"\n").unwrap();
        let c = Config::load(&cli(&[
            "--config",
            p.to_str().unwrap(),
            "--max-devices",
            "4",
        ]))
        .unwrap();
        assert_eq!(c.max_devices, 4);
        assert_eq!(c.listen.port(), 9000);
    }
}
