//! One-to-one sessions: state, records of current and archived sessions, and the
//! encrypt / decrypt entry points that read and commit through a store.

mod cipher;
mod record;
mod state;

pub use cipher::{Decrypted, decrypt, decrypt_and_commit, encrypt, initiate};
pub use record::SessionRecord;
pub use state::{SessionInfo, SessionState};

#[cfg(test)]
pub(crate) mod test_support;
