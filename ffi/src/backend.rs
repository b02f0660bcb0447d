//! The stores behind a `SignalStore` handle: in memory, SQLCipher, or the
//! application's callbacks.

use session_store::SqlStore;
use signal_core::store::{InMemoryStore, ProtocolStore, SenderKeyStore};

/// Every store trait the C API needs, in one object-safe trait.
pub(crate) trait Backend: ProtocolStore + SenderKeyStore + Send {}

impl Backend for InMemoryStore {}

/// `session-store`'s SQLCipher store: sessions, prekeys, identities and sender keys in
/// one encrypted database.
impl Backend for SqlStore {}
