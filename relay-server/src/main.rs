//! `relay-server`: starts the relay. With no arguments it listens on 127.0.0.1:8080
//! with an embedded SQLite file `relay.sqlite3` (created on first start); settings come
//! from `config.toml`, `RELAY_*` environment variables and flags (`--help`).

use clap::Parser;
use relay_server::config::{Cli, Config};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("relay-server: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RELAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if config.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let relay = match relay_server::start(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("relay-server: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    shutdown_signal().await;
    tracing::info!("shutting down");
    relay.shutdown().await;
    std::process::ExitCode::SUCCESS
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
