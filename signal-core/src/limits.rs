//! Every protocol limit, documented once. `docs/protocol.md` §Limits refers here.

/// Skipped message keys kept per receiving chain (1:1 and sender-key chains). The
/// 2,001st evicts the oldest.
pub const MAX_SKIPPED_KEYS_PER_CHAIN: usize = 2_000;

/// Largest accepted distance between a chain's next counter and a message's counter.
/// A message further ahead is refused before any key is derived.
pub const MAX_FORWARD_JUMP: u32 = 25_000;

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

/// Largest encoded session record a decoder accepts (bounds allocation when reading
/// records from disk).
pub const MAX_SESSION_RECORD_LEN: usize = 32 * 1024 * 1024;
