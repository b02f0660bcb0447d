//! The Double Ratchet's key schedule: root key, chain keys, message keys, and receiving
//! chains with their skipped message keys.

pub(crate) mod chain_key;
pub(crate) mod message_key;
pub(crate) mod receiver_chain;
pub(crate) mod root_key;

pub(crate) use chain_key::ChainKey;
pub(crate) use message_key::MessageKeySeed;
pub(crate) use receiver_chain::ReceiverChain;
pub(crate) use root_key::RootKey;
