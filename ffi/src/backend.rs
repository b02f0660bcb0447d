//! The stores behind a `SignalStore` handle: in memory, SQLCipher, or the
//! application's callbacks.

use std::borrow::Cow;

use session_store::SqlStore;
use session_store::rusqlite::{self, OptionalExtension, params};
use signal_core::group::{GroupId, SenderKeyRecord};
use signal_core::keys::DhPublicKey;
use signal_core::prekey::{KemPreKeyRecord, OneTimePreKeyRecord, PreKeyId, SignedPreKeyRecord};
use signal_core::session::SessionRecord;
use signal_core::store::{
    IdentityStore, InMemoryStore, KemPreKeyStore, PreKeyStore, ProtocolStore, SenderKeyStore,
    SessionCommit, SessionStore, SignedPreKeyStore,
};
use signal_core::{Address, IdentityKey, IdentityKeyPair, StoreError};

/// Every store trait the C API needs, in one object-safe trait.
pub(crate) trait Backend: ProtocolStore + SenderKeyStore + Send {}

impl Backend for InMemoryStore {}

/// `session-store`'s [`SqlStore`] plus the sender-key records, which `SqlStore` does
/// not (yet) store: they live in the application table `app_ffi_sender_keys` of the
/// same SQLCipher database, so they are encrypted and persist with everything else.
pub(crate) struct SqlBackend {
    store: SqlStore,
}

const SENDER_KEY_TABLE: &str = "CREATE TABLE IF NOT EXISTS app_ffi_sender_keys (
    group_id BLOB NOT NULL,
    user TEXT NOT NULL,
    device INTEGER NOT NULL,
    record BLOB NOT NULL,
    PRIMARY KEY (group_id, user, device)
)";

fn sql(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(Box::new(e))
}

impl SqlBackend {
    /// Wraps an opened store, creating the sender-key table if needed.
    pub(crate) fn new(mut store: SqlStore) -> Result<Self, StoreError> {
        store.write(|tx| tx.execute(SENDER_KEY_TABLE, []).map(drop).map_err(sql))?;
        Ok(Self { store })
    }
}

impl Backend for SqlBackend {}

impl IdentityStore for SqlBackend {
    fn local_identity(&self) -> Result<IdentityKeyPair, StoreError> {
        self.store.local_identity()
    }
    fn local_registration_id(&self) -> Result<u32, StoreError> {
        self.store.local_registration_id()
    }
    fn remote_identity(&self, address: &Address) -> Result<Option<IdentityKey>, StoreError> {
        self.store.remote_identity(address)
    }
    fn save_identity(
        &mut self,
        address: &Address,
        identity: &IdentityKey,
    ) -> Result<(), StoreError> {
        self.store.save_identity(address, identity)
    }
}

impl PreKeyStore for SqlBackend {
    fn load_prekey(&self, id: PreKeyId) -> Result<Option<OneTimePreKeyRecord>, StoreError> {
        self.store.load_prekey(id)
    }
    fn store_prekey(&mut self, record: &OneTimePreKeyRecord) -> Result<(), StoreError> {
        self.store.store_prekey(record)
    }
    fn remove_prekey(&mut self, id: PreKeyId) -> Result<(), StoreError> {
        self.store.remove_prekey(id)
    }
    fn prekey_count(&self) -> Result<usize, StoreError> {
        self.store.prekey_count()
    }
}

impl SignedPreKeyStore for SqlBackend {
    fn load_signed_prekey(&self, id: PreKeyId) -> Result<Option<SignedPreKeyRecord>, StoreError> {
        self.store.load_signed_prekey(id)
    }
    fn store_signed_prekey(&mut self, record: &SignedPreKeyRecord) -> Result<(), StoreError> {
        self.store.store_signed_prekey(record)
    }
    fn remove_signed_prekey(&mut self, id: PreKeyId) -> Result<(), StoreError> {
        self.store.remove_signed_prekey(id)
    }
    fn signed_prekey_ids(&self) -> Result<Vec<PreKeyId>, StoreError> {
        self.store.signed_prekey_ids()
    }
}

impl KemPreKeyStore for SqlBackend {
    fn load_kem_prekey(&self, id: PreKeyId) -> Result<Option<KemPreKeyRecord>, StoreError> {
        self.store.load_kem_prekey(id)
    }
    fn store_kem_prekey(&mut self, record: &KemPreKeyRecord) -> Result<(), StoreError> {
        self.store.store_kem_prekey(record)
    }
    fn remove_kem_prekey(&mut self, id: PreKeyId) -> Result<(), StoreError> {
        self.store.remove_kem_prekey(id)
    }
    fn kem_prekey_ids(&self) -> Result<Vec<PreKeyId>, StoreError> {
        self.store.kem_prekey_ids()
    }
    fn last_resort_base_key_seen(
        &self,
        id: PreKeyId,
        base_key: &DhPublicKey,
    ) -> Result<bool, StoreError> {
        self.store.last_resort_base_key_seen(id, base_key)
    }
}

impl SessionStore for SqlBackend {
    fn load_session(&self, address: &Address) -> Result<Option<SessionRecord>, StoreError> {
        self.store.load_session(address)
    }
    fn session_devices(&self, user: &str) -> Result<Vec<u32>, StoreError> {
        self.store.session_devices(user)
    }
    fn delete_session(&mut self, address: &Address) -> Result<(), StoreError> {
        self.store.delete_session(address)
    }
}

impl ProtocolStore for SqlBackend {
    fn commit(&mut self, commit: SessionCommit) -> Result<(), StoreError> {
        self.store.commit(commit)
    }
}

impl SenderKeyStore for SqlBackend {
    fn load_sender_key(
        &self,
        group: &GroupId,
        sender: &Address,
    ) -> Result<Option<Cow<'_, SenderKeyRecord>>, StoreError> {
        let bytes = self
            .store
            .connection()
            .prepare_cached(
                "SELECT record FROM app_ffi_sender_keys WHERE group_id = ?1 AND user = ?2 AND device = ?3",
            )
            .and_then(|mut s| {
                s.query_row(
                    params![&group.as_bytes()[..], sender.user(), sender.device()],
                    |r| r.get::<_, Vec<u8>>(0),
                )
                .optional()
            })
            .map_err(sql)?;
        match bytes {
            None => Ok(None),
            Some(b) => {
                let b = zeroize::Zeroizing::new(b);
                Ok(Some(Cow::Owned(SenderKeyRecord::decode(&b)?)))
            }
        }
    }
    fn store_sender_key(
        &mut self,
        group: &GroupId,
        sender: &Address,
        record: SenderKeyRecord,
    ) -> Result<(), StoreError> {
        let encoded = record.encode();
        self.store.write(|tx| {
            tx.execute(
                "INSERT OR REPLACE INTO app_ffi_sender_keys (group_id, user, device, record) VALUES (?1, ?2, ?3, ?4)",
                params![&group.as_bytes()[..], sender.user(), sender.device(), &encoded[..]],
            )
            .map(drop)
            .map_err(sql)
        })
    }
    fn delete_sender_key(&mut self, group: &GroupId, sender: &Address) -> Result<(), StoreError> {
        self.store.write(|tx| {
            tx.execute(
                "DELETE FROM app_ffi_sender_keys WHERE group_id = ?1 AND user = ?2 AND device = ?3",
                params![&group.as_bytes()[..], sender.user(), sender.device()],
            )
            .map(drop)
            .map_err(sql)
        })
    }
    fn sender_key_senders(&self, group: &GroupId) -> Result<Vec<Address>, StoreError> {
        let conn = self.store.connection();
        let mut stmt = conn
            .prepare_cached(
                "SELECT user, device FROM app_ffi_sender_keys WHERE group_id = ?1 ORDER BY user, device",
            )
            .map_err(sql)?;
        let rows = stmt
            .query_map(params![&group.as_bytes()[..]], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?))
            })
            .map_err(sql)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql)?;
        let mut out = Vec::with_capacity(rows.len());
        for (user, device) in rows {
            out.push(Address::new(user, device)?);
        }
        out.sort_unstable();
        Ok(out)
    }
}
