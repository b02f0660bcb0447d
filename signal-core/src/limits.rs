//! Every protocol limit, documented once. `docs/protocol.md` §Limits refers here.

/// Skipped message keys kept per receiving chain (1:1 and sender-key chains). The
/// 2,001st evicts the oldest.
pub const MAX_SKIPPED_KEYS_PER_CHAIN: usize = 2_000;

/// Largest accepted distance between a sender-key chain's next iteration and a group
/// message's iteration. A message further ahead is refused before any key is derived.
/// (Group messages are signature-checked before any derivation; 1:1 messages, which
/// are not, use the much smaller [`MAX_DECRYPT_DERIVATIONS`].)
pub const MAX_FORWARD_JUMP: u32 = 25_000;

/// Largest message counter (1:1) or iteration (sender key) a chain ever uses. A chain
/// whose next counter is `u32::MAX` is exhausted: sending on it fails with a
/// `ChainExhausted` error, a received counter of `u32::MAX` is refused, and a
/// distribution message at iteration `u32::MAX` is refused, so no chain ever steps past
/// `u32::MAX` (or wraps to 0).
pub const MAX_CHAIN_COUNTER: u32 = u32::MAX - 1;

/// Chain-key derivations one 1:1 decrypt call may make before a message authenticated,
/// shared by every session of the record it tries: the skip on the previous receiving
/// chain (up to `PN`) and the forward jump on the message's chain (up to `N`) count
/// together. A message needing more from a session is `TooFarAhead` there, refused
/// before any key is derived. It equals [`MAX_SKIPPED_KEYS_PER_CHAIN`], so an honest gap
/// whose keys can all be kept still decrypts.
pub const MAX_DECRYPT_DERIVATIONS: u32 = 2_000;

/// The part of [`MAX_DECRYPT_DERIVATIONS`] one archived session may use: messages on a
/// replaced session are late stragglers, not long gaps.
pub const MAX_ARCHIVED_DERIVATIONS: u32 = 100;

/// Archived sessions (newest first) tried for a message whose ratchet key no session of
/// the record knows: each try costs an X25519 agreement before any tag check. A known
/// ratchet key is tried only on the sessions that hold its chain.
pub const MAX_ARCHIVED_RATCHET_TRIALS: usize = 2;

/// Sender-key chain states kept per (group, sender); the oldest is evicted (with its
/// skipped keys) when a distribution message adds one more.
pub const MAX_SENDER_KEY_STATES: usize = 5;

/// Receiving chains kept per session; the oldest is evicted (with its skipped keys).
pub const MAX_RECEIVER_CHAINS: usize = 5;

/// Archived (previous) sessions kept per session record; the oldest is evicted.
pub const MAX_ARCHIVED_SESSIONS: usize = 40;

/// Largest plaintext [`crate::session::encrypt`] accepts (16 MiB).
pub const MAX_PLAINTEXT_LEN: usize = 16 * 1024 * 1024;

/// Largest encoded message any decoder accepts: the plaintext limit plus headers.
pub const MAX_MESSAGE_LEN: usize = MAX_PLAINTEXT_LEN + 4096;

/// Longest user id of an [`crate::Address`], in UTF-8 bytes.
pub const MAX_USER_ID_LEN: usize = 255;

/// Largest encoded session record (256 KiB). Every committed record is trimmed to it
/// (skipped keys of archived sessions first, oldest session first; then the current
/// session's skipped keys, oldest chain and oldest key first; then archived sessions,
/// oldest first), and the decoder refuses larger records.
pub const MAX_SESSION_RECORD_LEN: usize = 256 * 1024;

/// Largest encoded sender-key record the decoder accepts: [`MAX_SENDER_KEY_STATES`]
/// states, each with a signing seed and [`MAX_SKIPPED_KEYS_PER_CHAIN`] skipped keys.
pub const MAX_SENDER_KEY_RECORD_LEN: usize = 2
    + 4
    + MAX_SENDER_KEY_STATES * (4 + 4 + 32 + 32 + 1 + 32 + 4 + MAX_SKIPPED_KEYS_PER_CHAIN * 36);
