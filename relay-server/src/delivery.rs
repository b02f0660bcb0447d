//! WebSocket delivery. On connect the device's queue is pushed oldest first, then a
//! `queue_empty` frame; new messages follow as they arrive (woken by the [`crate::hub`],
//! by a PostgreSQL notification, or by the periodic catch-up read). The client
//! acknowledges each message by `seq`; only then is it deleted, so anything not
//! acknowledged is pushed again on the next connection.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use crate::api::now;
use crate::auth::Principal;
use crate::hub::CloseReason;
use crate::server::State;
use crate::types::{ClientFrame, ServerFrame};

/// Messages read from the store per query.
const FETCH_BATCH: u32 = 256;

/// Close code sent to the older connection when the same device connects again.
pub const CLOSE_REPLACED: u16 = 4000;
/// Close code sent when the device was removed.
pub const CLOSE_REMOVED: u16 = 4001;
/// Close code sent on shutdown (1012: service restart).
pub const CLOSE_SHUTDOWN: u16 = 1012;
/// Longest wait for the client's close frame after the relay sent its own.
pub const CLOSE_HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(1);

/// An upgraded WebSocket connection (server side).
pub type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

fn frame(f: &ServerFrame) -> Option<Message> {
    serde_json::to_string(f).ok().map(Message::text)
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code: code.into(),
        reason: reason.into(),
    }))
}

/// The text of a text frame (`None` for every other kind).
fn text_of(msg: &Message) -> Option<&str> {
    match msg {
        Message::Text(t) => Some(t.as_str()),
        _ => None,
    }
}

/// Serves one authenticated device's WebSocket until it closes.
pub async fn serve(state: Arc<State>, me: Principal, socket: Socket) {
    let conn = state.hub.register(&me.account, me.device);
    let (mut tx, mut rx) = socket.split();
    // Seqs pushed on this connection and not yet acknowledged. Each read scans the
    // whole unacknowledged queue rather than only `seq > last pushed`: with PostgreSQL,
    // sequence values are taken before commit, so a transaction can commit a *lower*
    // seq after a higher one was already pushed; a high-water mark would skip it.
    let mut pushed: HashSet<i64> = HashSet::new();
    let mut sent_empty = false;
    let mut catch_up = tokio::time::interval(state.config.catch_up_interval);
    catch_up.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ttl = state.config.message_ttl.as_secs();
    let mut fetch = true;

    'conn: loop {
        match conn.close_reason() {
            CloseReason::Open => {}
            reason => {
                let (code, text) = match reason {
                    CloseReason::Replaced => (CLOSE_REPLACED, "replaced by a newer connection"),
                    CloseReason::Removed => (CLOSE_REMOVED, "device removed"),
                    _ => (CLOSE_SHUTDOWN, "relay shutting down; reconnect"),
                };
                if reason == CloseReason::Shutdown
                    && let Some(m) = frame(&ServerFrame::Reconnect)
                {
                    let _ = tx.send(m).await;
                }
                let _ = tx.send(close(code, text)).await;
                // Closing handshake: keep reading until the client's close comes back
                // (bounded), applying the acks still in flight. Closing the TCP
                // connection with unread frames makes the kernel send a reset, and a
                // reset can discard the close frame before the client reads it.
                let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
                    while let Some(Ok(msg)) = rx.next().await {
                        if msg.is_close() {
                            break;
                        }
                        if let Some(text) = text_of(&msg)
                            && let Ok(ClientFrame::Ack { seq }) = serde_json::from_str(text)
                            && let Ok(true) = state.store.ack(&me.account, me.device, seq).await
                        {
                            state.metrics.acked.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
                .await;
                break;
            }
        }
        // Push everything queued after what this connection already sent.
        let mut cursor: i64 = 0;
        while fetch {
            let batch = match state
                .store
                .fetch_messages(
                    &me.account,
                    me.device,
                    cursor,
                    FETCH_BATCH,
                    now().saturating_sub(ttl),
                )
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "queue read failed; closing connection");
                    let _ = tx.send(close(1011, "storage error")).await;
                    break 'conn;
                }
            };
            let n = batch.len();
            for m in batch {
                cursor = m.seq;
                if !pushed.insert(m.seq) {
                    continue;
                }
                let Some(f) = frame(&ServerFrame::Message {
                    seq: m.seq,
                    sender: m.sender,
                    sender_device: m.sender_device,
                    id: m.id,
                    timestamp: m.timestamp,
                    body: m.body,
                }) else {
                    continue;
                };
                if tx.send(f).await.is_err() {
                    break 'conn;
                }
                state.metrics.delivered.fetch_add(1, Ordering::Relaxed);
            }
            if n < FETCH_BATCH as usize {
                fetch = false;
            }
        }
        if !sent_empty {
            sent_empty = true;
            if let Some(f) = frame(&ServerFrame::QueueEmpty)
                && tx.send(f).await.is_err()
            {
                break;
            }
        }
        tokio::select! {
            () = conn.notified() => fetch = true,
            _ = catch_up.tick() => fetch = true,
            incoming = rx.next() => match incoming {
                Some(Ok(msg)) => {
                    if msg.is_close() {
                        break;
                    }
                    if let Some(text) = text_of(&msg) {
                        match serde_json::from_str::<ClientFrame>(text) {
                            Ok(ClientFrame::Ack { seq }) => {
                                pushed.remove(&seq);
                                // Deletes only from this device's own queue.
                                match state.store.ack(&me.account, me.device, seq).await {
                                    Ok(true) => { state.metrics.acked.fetch_add(1, Ordering::Relaxed); }
                                    Ok(false) => {}
                                    Err(e) => tracing::warn!(error = %e, "ack failed"),
                                }
                            }
                            Err(_) => {
                                let _ = tx.send(close(1003, "unknown frame")).await;
                                break;
                            }
                        }
                    }
                }
                Some(Err(_)) | None => break,
            },
        }
    }
    state.hub.unregister(&me.account, me.device, &conn);
}
