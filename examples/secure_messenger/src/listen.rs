//! The delivery loop behind `listen` and `chat`: one WebSocket to the relay, every
//! message processed and committed before it is acknowledged, reconnection with
//! backoff, and key maintenance on a timer.

use std::time::Duration;

use relay_server::types::ServerFrame;
use tokio::io::AsyncBufReadExt;

use crate::error::{AppError, Result};
use crate::messenger::{Event, Messenger, unreachable};

/// Options of the loop.
#[derive(Debug, Clone)]
pub struct ListenOptions {
    /// Return once the relay reports the queue empty (`listen --until-empty`).
    pub until_empty: bool,
    /// `chat NAME`: send each stdin line to this contact.
    pub chat_with: Option<String>,
    /// Interval of key maintenance while connected.
    pub maintenance_every: Duration,
    /// Print events and connection notices as they happen (the demo prints its own).
    pub print: bool,
}

/// Longest delay between reconnection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(30);

/// Prints an event: conversation lines to stdout, notices to stderr.
pub fn print_event(event: &Event) {
    if event.is_message() {
        println!("{event}");
    } else {
        eprintln!("{event}");
    }
}

/// Connects (retrying with backoff unless `give_up_after` attempts failed).
async fn connect(
    m: &Messenger,
    give_up_after: Option<u32>,
) -> Result<relay_server::client::Delivery> {
    let mut attempt = 0u32;
    let mut delay = Duration::from_millis(500);
    loop {
        match m.relay().connect().await {
            Ok(d) => return Ok(d),
            Err(e) if unreachable(&e) => {
                attempt += 1;
                if give_up_after.is_some_and(|n| attempt >= n) {
                    return Err(AppError::RelayUnreachable {
                        relay: m.account.relay.clone(),
                        attempts: attempt,
                        detail: e.to_string(),
                    });
                }
                eprintln!(
                    "relay unreachable at {}; reconnecting in {:.1} s",
                    m.account.relay,
                    delay.as_secs_f64()
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RECONNECT_DELAY);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Runs the loop until Ctrl-C, end of input (chat), or an empty queue (`until_empty`).
/// Returns the events seen (for `--until-empty` callers such as the demo).
pub async fn run(m: &mut Messenger, options: &ListenOptions) -> Result<Vec<Event>> {
    let mut seen = Vec::new();
    if let Some(s) = m.maintain().await?
        && options.print
    {
        eprintln!("key maintenance: {s}");
    }
    let mut stdin = options
        .chat_with
        .as_ref()
        .map(|_| tokio::io::BufReader::new(tokio::io::stdin()).lines());
    let mut maintenance = tokio::time::interval(options.maintenance_every);
    maintenance.tick().await;
    let give_up = options
        .until_empty
        .then(|| crate::messenger::RetryPolicy::from_env().attempts);
    let mut first = true;
    loop {
        let mut delivery = connect(m, give_up).await?;
        if first && options.print {
            eprintln!(
                "connected to {} as {} (device {}){}",
                m.account.relay,
                m.account.name,
                m.account.device,
                match &options.chat_with {
                    Some(peer) => format!("; chatting with {peer}: type a line and press Enter"),
                    None => "; waiting for messages (Ctrl-C to stop)".into(),
                }
            );
        } else if !first {
            eprintln!("reconnected to {}", m.account.relay);
        }
        first = false;
        let mut announced_empty = false;
        loop {
            tokio::select! {
                frame = delivery.next() => match frame {
                    Ok(ServerFrame::Message { seq, sender, sender_device, id, body, .. }) => {
                        let processed = m.process(&sender, sender_device, &id, &body)?;
                        if options.print {
                            processed.events.iter().for_each(print_event);
                        }
                        seen.extend(processed.events);
                        if processed.ack && delivery.ack(seq).await.is_err() {
                            // Not acknowledged: the relay redelivers it and the
                            // processed-message record makes that a no-op.
                            break;
                        }
                    }
                    Ok(ServerFrame::QueueEmpty) => {
                        if options.until_empty {
                            delivery.close().await;
                            return Ok(seen);
                        }
                        if !announced_empty && options.print {
                            eprintln!("(up to date)");
                            announced_empty = true;
                        }
                    }
                    Ok(ServerFrame::Reconnect) => {
                        eprintln!("the relay is restarting; reconnecting");
                        break;
                    }
                    Err(_) => {
                        eprintln!("connection to the relay lost");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        break;
                    }
                },
                line = next_line(&mut stdin) => match line {
                    Some(line) => {
                        let line = line.trim();
                        if line.is_empty() {
                            continue;
                        }
                        if let Some(peer) = &options.chat_with {
                            match m.send_text(peer, line).await {
                                Ok(_) => println!("you → {peer}: {line}"),
                                Err(e @ AppError::IdentityChanged { .. }) => eprintln!("{e}"),
                                Err(e @ (AppError::RelayUnreachable { .. } | AppError::RateLimited { .. })) => {
                                    eprintln!("not sent: {e}");
                                }
                                Err(e) => return Err(e),
                            }
                        }
                    }
                    None => {
                        delivery.close().await;
                        return Ok(seen);
                    }
                },
                _ = maintenance.tick() => {
                    match m.maintain().await {
                        Ok(Some(s)) => eprintln!("key maintenance: {s}"),
                        Ok(None) => {}
                        Err(e) => eprintln!("key maintenance failed (will retry): {e}"),
                    }
                }
                _ = tokio::signal::ctrl_c() => {
                    delivery.close().await;
                    return Ok(seen);
                }
            }
        }
    }
}

async fn next_line(
    stdin: &mut Option<tokio::io::Lines<tokio::io::BufReader<tokio::io::Stdin>>>,
) -> Option<String> {
    match stdin {
        Some(lines) => lines.next_line().await.ok().flatten(),
        None => std::future::pending().await,
    }
}
