//! `relay-server`: starts the relay. With no arguments it listens on 127.0.0.1:8080
//! with an embedded SQLite file `relay.sqlite3` (created on first start); settings come
//! from `config.toml`, `RELAY_*` environment variables and flags (`--help`).

use std::process::ExitCode;

use clap::Parser;
use relay_server::config::{Cli, Config};
use relay_server::telemetry::Telemetry;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("relay-server: {e}");
            return ExitCode::from(2);
        }
    };
    // Outside the runtime: the OTLP exporter's blocking HTTP client must be created
    // and dropped there.
    let telemetry = match Telemetry::init(&config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("relay-server: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("relay-server: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(run(config, telemetry.exporting()));
    drop(runtime);
    telemetry.shutdown();
    code
}

async fn run(config: Config, exporting_traces: bool) -> ExitCode {
    let relay = match relay_server::start(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("relay-server: {e}");
            return ExitCode::from(1);
        }
    };
    if exporting_traces {
        tracing::info!("exporting traces over OTLP");
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    relay.shutdown().await;
    ExitCode::SUCCESS
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
