//! The messenger's own tables, inside the same SQLCipher database as the protocol
//! state (so a received message and the session state it advanced commit together).
//! Every table is prefixed `app_`.

use session_store::SqlStore;
use session_store::rusqlite::{self, OptionalExtension, Transaction, params};
use signal_core::StoreError;
use signal_core::group::GroupId;

/// Schema of the messenger's tables (version 1).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS app_account (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    relay TEXT NOT NULL,
    name TEXT NOT NULL,
    device INTEGER NOT NULL,
    credential TEXT NOT NULL,
    registered_at INTEGER NOT NULL,
    keys_uploaded INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS app_pending_join (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    relay TEXT NOT NULL,
    name TEXT NOT NULL,
    credential TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS app_verified (
    user TEXT NOT NULL,
    device INTEGER NOT NULL,
    identity BLOB NOT NULL,
    verified_at INTEGER NOT NULL,
    PRIMARY KEY (user, device)
);
CREATE TABLE IF NOT EXISTS app_identity_changes (
    user TEXT NOT NULL,
    device INTEGER NOT NULL,
    identity BLOB NOT NULL,
    seen_at INTEGER NOT NULL,
    PRIMARY KEY (user, device)
);
CREATE TABLE IF NOT EXISTS app_inbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sender TEXT NOT NULL,
    sender_device INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    group_id BLOB,
    recipient TEXT,
    body TEXT NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS app_processed (
    sender TEXT NOT NULL,
    sender_device INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    processed_at INTEGER NOT NULL,
    PRIMARY KEY (sender, sender_device, message_id)
);
CREATE TABLE IF NOT EXISTS app_groups (
    id BLOB PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    members TEXT NOT NULL,
    active INTEGER NOT NULL,
    needs_rotation INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS app_chain_sent (
    group_id BLOB NOT NULL,
    user TEXT NOT NULL,
    device INTEGER NOT NULL,
    chain_id INTEGER NOT NULL,
    PRIMARY KEY (group_id, user, device)
);
";

fn sql(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(Box::new(e))
}

/// Creates the messenger's tables if they are missing.
pub fn migrate(store: &mut SqlStore) -> Result<(), StoreError> {
    store.write(|tx| tx.execute_batch(SCHEMA).map_err(sql))
}

/// This device's registration with a relay.
#[derive(Clone)]
pub struct Account {
    /// Relay base URL.
    pub relay: String,
    /// Account name.
    pub name: String,
    /// This device's id.
    pub device: u32,
    /// This device's relay credential (secret).
    pub credential: String,
    /// Whether the identity and the current prekeys have been uploaded.
    pub keys_uploaded: bool,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("relay", &self.relay)
            .field("name", &self.name)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

/// The registration, if any.
pub fn account(store: &SqlStore) -> Result<Option<Account>, StoreError> {
    store
        .connection()
        .query_row(
            "SELECT relay, name, device, credential, keys_uploaded FROM app_account WHERE id = 0",
            [],
            |r| {
                Ok(Account {
                    relay: r.get(0)?,
                    name: r.get(1)?,
                    device: r.get(2)?,
                    credential: r.get(3)?,
                    keys_uploaded: r.get(4)?,
                })
            },
        )
        .optional()
        .map_err(sql)
}

/// Records the registration (and forgets a pending join).
pub fn save_account(store: &mut SqlStore, a: &Account, now: u64) -> Result<(), StoreError> {
    store.write(|tx| {
        tx.execute(
            "INSERT INTO app_account (id, relay, name, device, credential, registered_at)
             VALUES (0, ?1, ?2, ?3, ?4, ?5)",
            params![a.relay, a.name, a.device, a.credential, now as i64],
        )
        .map_err(sql)?;
        tx.execute("DELETE FROM app_pending_join", [])
            .map_err(sql)?;
        Ok(())
    })
}

/// Records that the identity and current prekeys are on the relay.
pub fn set_keys_uploaded(store: &mut SqlStore) -> Result<(), StoreError> {
    store.write(|tx| {
        tx.execute("UPDATE app_account SET keys_uploaded = 1 WHERE id = 0", [])
            .map(|_| ())
            .map_err(sql)
    })
}

/// A pending `devices join`: (relay, account, credential).
pub fn pending_join(store: &SqlStore) -> Result<Option<(String, String, String)>, StoreError> {
    store
        .connection()
        .query_row(
            "SELECT relay, name, credential FROM app_pending_join WHERE id = 0",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(sql)
}

/// Records a pending join, replacing an earlier one.
pub fn save_pending_join(
    store: &mut SqlStore,
    relay: &str,
    name: &str,
    credential: &str,
) -> Result<(), StoreError> {
    store.write(|tx| {
        tx.execute(
            "INSERT OR REPLACE INTO app_pending_join (id, relay, name, credential)
             VALUES (0, ?1, ?2, ?3)",
            params![relay, name, credential],
        )
        .map(|_| ())
        .map_err(sql)
    })
}

/// The identity a device was verified with, if it was.
pub fn verified_identity(
    store: &SqlStore,
    user: &str,
    device: u32,
) -> Result<Option<Vec<u8>>, StoreError> {
    store
        .connection()
        .query_row(
            "SELECT identity FROM app_verified WHERE user = ?1 AND device = ?2",
            params![user, device],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql)
}

/// Marks `identity` verified for a device and clears its pending change.
pub fn mark_verified(
    tx: &Transaction<'_>,
    user: &str,
    device: u32,
    identity: &[u8],
    now: u64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT OR REPLACE INTO app_verified (user, device, identity, verified_at)
         VALUES (?1, ?2, ?3, ?4)",
        params![user, device, identity, now as i64],
    )
    .map_err(sql)?;
    tx.execute(
        "DELETE FROM app_identity_changes WHERE user = ?1 AND device = ?2",
        params![user, device],
    )
    .map_err(sql)?;
    Ok(())
}

/// Records that a device presented an identity other than the trusted one.
pub fn record_identity_change(
    store: &mut SqlStore,
    user: &str,
    device: u32,
    identity: &[u8],
    now: u64,
) -> Result<(), StoreError> {
    store.write(|tx| {
        tx.execute(
            "INSERT OR REPLACE INTO app_identity_changes (user, device, identity, seen_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![user, device, identity, now as i64],
        )
        .map(|_| ())
        .map_err(sql)
    })
}

/// Devices of `user` with an unverified identity change.
pub fn identity_changes(store: &SqlStore, user: &str) -> Result<Vec<u32>, StoreError> {
    let mut stmt = store
        .connection()
        .prepare("SELECT device FROM app_identity_changes WHERE user = ?1 ORDER BY device")
        .map_err(sql)?;
    let rows = stmt
        .query_map([user], |r| r.get(0))
        .map_err(sql)?
        .collect::<Result<Vec<u32>, _>>()
        .map_err(sql)?;
    Ok(rows)
}

/// Whether a relay message was already processed.
pub fn processed(
    store: &SqlStore,
    sender: &str,
    sender_device: u32,
    message_id: &str,
) -> Result<bool, StoreError> {
    store
        .connection()
        .query_row(
            "SELECT 1 FROM app_processed WHERE sender = ?1 AND sender_device = ?2 AND message_id = ?3",
            params![sender, sender_device, message_id],
            |_| Ok(()),
        )
        .optional()
        .map(|r| r.is_some())
        .map_err(sql)
}

/// Marks a relay message processed (inside the transaction that applied it).
pub fn mark_processed(
    tx: &Transaction<'_>,
    sender: &str,
    sender_device: u32,
    message_id: &str,
    now: u64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT OR IGNORE INTO app_processed (sender, sender_device, message_id, processed_at)
         VALUES (?1, ?2, ?3, ?4)",
        params![sender, sender_device, message_id, now as i64],
    )
    .map(|_| ())
    .map_err(sql)
}

/// One received message as stored.
#[derive(Debug, Clone)]
pub struct InboxEntry {
    /// Sender account.
    pub sender: String,
    /// Group name, for group messages.
    pub group: Option<String>,
    /// For copies of our own sent messages: the recipient.
    pub recipient: Option<String>,
    /// The text.
    pub body: String,
    /// When it was received (seconds since the epoch).
    pub received_at: u64,
}

/// Stores a received message (inside the transaction that decrypted it).
#[allow(clippy::too_many_arguments)]
pub fn insert_inbox(
    tx: &Transaction<'_>,
    sender: &str,
    sender_device: u32,
    message_id: &str,
    group: Option<&GroupId>,
    recipient: Option<&str>,
    body: &str,
    now: u64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO app_inbox (sender, sender_device, message_id, group_id, recipient, body, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            sender,
            sender_device,
            message_id,
            group.map(|g| g.as_bytes().to_vec()),
            recipient,
            body,
            now as i64
        ],
    )
    .map_err(sql)?;
    mark_processed(tx, sender, sender_device, message_id, now)
}

/// The last `limit` received messages, oldest first, optionally only those with `peer`.
pub fn history(
    store: &SqlStore,
    peer: Option<&str>,
    limit: u32,
) -> Result<Vec<InboxEntry>, StoreError> {
    let mut stmt = store
        .connection()
        .prepare(
            "SELECT * FROM (
                 SELECT i.sender, g.name, i.recipient, i.body, i.received_at, i.seq
                 FROM app_inbox i LEFT JOIN app_groups g ON g.id = i.group_id
                 WHERE ?1 IS NULL OR i.sender = ?1 OR i.recipient = ?1
                 ORDER BY i.seq DESC LIMIT ?2
             ) ORDER BY seq",
        )
        .map_err(sql)?;
    let rows = stmt
        .query_map(params![peer, limit], |r| {
            Ok(InboxEntry {
                sender: r.get(0)?,
                group: r.get(1)?,
                recipient: r.get(2)?,
                body: r.get(3)?,
                received_at: r.get::<_, i64>(4)?.max(0) as u64,
            })
        })
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    Ok(rows)
}

/// A group as this device knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Group id.
    pub id: GroupId,
    /// Display name (unique in this store).
    pub name: String,
    /// Member accounts, sorted, ourselves included.
    pub members: Vec<String>,
    /// False once we were removed.
    pub active: bool,
    /// A member was removed since we last sent: rotate our chain before sending.
    pub needs_rotation: bool,
}

fn group_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Group> {
    let id: Vec<u8> = r.get(0)?;
    let members: String = r.get(2)?;
    let mut bytes = [0u8; 32];
    if id.len() == 32 {
        bytes.copy_from_slice(&id);
    }
    Ok(Group {
        id: GroupId::from_bytes(bytes),
        name: r.get(1)?,
        members: members
            .split(',')
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect(),
        active: r.get(3)?,
        needs_rotation: r.get(4)?,
    })
}

const GROUP_COLUMNS: &str = "id, name, members, active, needs_rotation";

/// A group by name.
pub fn group_by_name(store: &SqlStore, name: &str) -> Result<Option<Group>, StoreError> {
    store
        .connection()
        .query_row(
            &format!("SELECT {GROUP_COLUMNS} FROM app_groups WHERE name = ?1"),
            [name],
            group_from_row,
        )
        .optional()
        .map_err(sql)
}

/// A group by id.
pub fn group_by_id(store: &SqlStore, id: &GroupId) -> Result<Option<Group>, StoreError> {
    store
        .connection()
        .query_row(
            &format!("SELECT {GROUP_COLUMNS} FROM app_groups WHERE id = ?1"),
            [&id.as_bytes()[..]],
            group_from_row,
        )
        .optional()
        .map_err(sql)
}

/// Every group, by name.
pub fn groups(store: &SqlStore) -> Result<Vec<Group>, StoreError> {
    let mut stmt = store
        .connection()
        .prepare(&format!(
            "SELECT {GROUP_COLUMNS} FROM app_groups ORDER BY name"
        ))
        .map_err(sql)?;
    let rows = stmt
        .query_map([], group_from_row)
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    Ok(rows)
}

/// Inserts or replaces a group. A name already used by another group gets a suffix
/// (`name-2`, …) so names stay unique in this store; the stored name is returned.
pub fn save_group(tx: &Transaction<'_>, group: &Group) -> Result<String, StoreError> {
    let mut members = group.members.clone();
    members.sort();
    members.dedup();
    let mut name = group.name.clone();
    for n in 2..100 {
        let taken: Option<Vec<u8>> = tx
            .query_row("SELECT id FROM app_groups WHERE name = ?1", [&name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql)?;
        match taken {
            Some(id) if id != group.id.as_bytes() => name = format!("{}-{n}", group.name),
            _ => break,
        }
    }
    tx.execute(
        "INSERT INTO app_groups (id, name, members, active, needs_rotation)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, members = excluded.members,
             active = excluded.active, needs_rotation = excluded.needs_rotation",
        params![
            &group.id.as_bytes()[..],
            name,
            members.join(","),
            group.active,
            group.needs_rotation
        ],
    )
    .map_err(sql)?;
    Ok(name)
}

/// The chain id last sent to each device of `user` in `group`.
pub fn chains_sent(
    store: &SqlStore,
    group: &GroupId,
    user: &str,
) -> Result<Vec<(u32, u32)>, StoreError> {
    let mut stmt = store
        .connection()
        .prepare("SELECT device, chain_id FROM app_chain_sent WHERE group_id = ?1 AND user = ?2")
        .map_err(sql)?;
    let rows = stmt
        .query_map(params![&group.as_bytes()[..], user], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    Ok(rows)
}

/// Records that `chain_id` was sent to these devices.
pub fn mark_chain_sent(
    store: &mut SqlStore,
    group: &GroupId,
    user: &str,
    devices: &[u32],
    chain_id: u32,
) -> Result<(), StoreError> {
    store.write(|tx| {
        for d in devices {
            tx.execute(
                "INSERT OR REPLACE INTO app_chain_sent (group_id, user, device, chain_id)
                 VALUES (?1, ?2, ?3, ?4)",
                params![&group.as_bytes()[..], user, d, chain_id],
            )
            .map_err(sql)?;
        }
        Ok(())
    })
}
