//! The connected devices of this replica: wakes a device's delivery loop when a message
//! for it arrives, closes the older connection when a device connects twice, and tells
//! every connection to go away on shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Why a connection must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Still open.
    Open,
    /// The same device connected again; this is the older connection.
    Replaced,
    /// The relay is shutting down.
    Shutdown,
    /// The device was removed.
    Removed,
}

/// The signal one connection waits on.
#[derive(Debug)]
pub struct Connection {
    id: u64,
    wake: Notify,
    state: AtomicU8,
}

impl Connection {
    /// Waits for a new message or a close request.
    pub async fn notified(&self) {
        self.wake.notified().await;
    }

    /// Whether (and why) this connection must close.
    pub fn close_reason(&self) -> CloseReason {
        match self.state.load(Ordering::Acquire) {
            1 => CloseReason::Replaced,
            2 => CloseReason::Shutdown,
            3 => CloseReason::Removed,
            _ => CloseReason::Open,
        }
    }

    fn close(&self, reason: CloseReason) {
        let v = match reason {
            CloseReason::Open => 0,
            CloseReason::Replaced => 1,
            CloseReason::Shutdown => 2,
            CloseReason::Removed => 3,
        };
        // The first reason sticks.
        let _ = self
            .state
            .compare_exchange(0, v, Ordering::AcqRel, Ordering::Acquire);
        self.wake.notify_one();
    }
}

/// The registry of this replica's connections.
#[derive(Debug, Default)]
pub struct Hub {
    conns: Mutex<HashMap<(String, u32), Arc<Connection>>>,
    next_id: AtomicU64,
    shutting_down: std::sync::atomic::AtomicBool,
}

impl Hub {
    /// Registers a connection of `(account, device)`, closing the device's older one.
    pub fn register(&self, account: &str, device: u32) -> Arc<Connection> {
        let conn = Arc::new(Connection {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            wake: Notify::new(),
            state: AtomicU8::new(0),
        });
        if self.shutting_down.load(Ordering::Acquire) {
            conn.close(CloseReason::Shutdown);
        }
        let old = self
            .lock()
            .insert((account.to_owned(), device), Arc::clone(&conn));
        if let Some(old) = old {
            old.close(CloseReason::Replaced);
        }
        conn
    }

    /// Removes a connection (only if it is still the registered one).
    pub fn unregister(&self, account: &str, device: u32, conn: &Connection) {
        let mut map = self.lock();
        let key = (account.to_owned(), device);
        if map.get(&key).is_some_and(|c| c.id == conn.id) {
            map.remove(&key);
        }
    }

    /// Wakes the device's connection, if it is connected here.
    pub fn notify(&self, account: &str, device: u32) {
        if let Some(c) = self.lock().get(&(account.to_owned(), device)) {
            c.wake.notify_one();
        }
    }

    /// Closes the device's connection (the device was removed).
    pub fn remove_device(&self, account: &str, device: u32) {
        if let Some(c) = self.lock().remove(&(account.to_owned(), device)) {
            c.close(CloseReason::Removed);
        }
    }

    /// Tells every connection to reconnect elsewhere; new ones are refused.
    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        for c in self.lock().values() {
            c.close(CloseReason::Shutdown);
        }
    }

    /// Number of connected devices.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no device is connected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u32), Arc<Connection>>> {
        // A panic while holding this lock cannot leave the map inconsistent (each
        // operation is a single insert or remove), so a poisoned lock is still usable.
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_connection_closes_first() {
        let hub = Hub::default();
        let a = hub.register("alice", 1);
        let b = hub.register("alice", 1);
        assert_eq!(a.close_reason(), CloseReason::Replaced);
        assert_eq!(b.close_reason(), CloseReason::Open);
        hub.unregister("alice", 1, &a);
        assert_eq!(hub.len(), 1);
        hub.shutdown();
        assert_eq!(b.close_reason(), CloseReason::Shutdown);
    }
}
