//! What can go wrong, as the user sees it. Every variant maps to an exit code
//! (README, "Exit codes").

use std::path::PathBuf;

use relay_server::client::ClientError;
use signal_core::{GroupError, MaintenanceError, SessionError, StoreError};

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The passphrase does not open the store. Nothing was changed.
    #[error("wrong passphrase for {path} (nothing was changed)")]
    WrongPassphrase {
        /// The store.
        path: PathBuf,
    },
    /// `init` has not been run for this home directory.
    #[error("no account in {home}: run `secure_messenger init` first")]
    NotInitialised {
        /// The home directory.
        home: PathBuf,
    },
    /// `init` was run twice.
    #[error("{path} already exists: this home already has an account")]
    AlreadyInitialised {
        /// The store.
        path: PathBuf,
    },
    /// The account is not registered with a relay yet.
    #[error("not registered with a relay: run `secure_messenger register --relay URL --name NAME`")]
    NotRegistered,
    /// The account is already registered.
    #[error("already registered as {name} (device {device}) at {relay}")]
    AlreadyRegistered {
        /// Account name.
        name: String,
        /// Device id.
        device: u32,
        /// Relay URL.
        relay: String,
    },
    /// The relay could not be reached after retrying.
    #[error("relay unreachable at {relay} after {attempts} attempts: {detail}")]
    RelayUnreachable {
        /// Relay URL.
        relay: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        detail: String,
    },
    /// The relay kept answering 429 after waiting as it asked.
    #[error("rate-limited by the relay (still limited after waiting {waited_secs} s)")]
    RateLimited {
        /// Seconds waited in total.
        waited_secs: u64,
    },
    /// The relay refused the request.
    #[error("the relay refused the request: {0}")]
    Relay(ClientError),
    /// No account of this name on the relay.
    #[error("unknown contact {name}: no such account on the relay")]
    UnknownContact {
        /// The name.
        name: String,
    },
    /// A contact's identity key changed; sending is blocked until it is verified again.
    #[error(
        "SAFETY NUMBER CHANGED for {name} (device {devices}): their identity key is not the one you had.\n\
         Sending to {name} is blocked. Compare the new safety number with {name} \
         (`secure_messenger safety-number {name}`), then run `secure_messenger verify {name}`."
    )]
    IdentityChanged {
        /// The contact.
        name: String,
        /// The devices whose identity changed, comma-separated.
        devices: String,
    },
    /// No such group in this store.
    #[error("unknown group {0}: `secure_messenger group list` shows your groups")]
    UnknownGroup(String),
    /// A group of that name exists already.
    #[error("a group named {0} exists already")]
    GroupExists(String),
    /// The group is no longer usable (we were removed).
    #[error("you are no longer a member of group {0}")]
    NotAMember(String),
    /// A command-line argument is invalid.
    #[error("{0}")]
    Usage(String),
    /// Linking a device failed.
    #[error("{0}")]
    Link(String),
    /// The encrypted store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A session operation failed.
    #[error("session: {0}")]
    Session(#[from] SessionError),
    /// A group operation failed.
    #[error("group: {0}")]
    Group(#[from] GroupError),
    /// Key maintenance failed.
    #[error("key maintenance: {0}")]
    Maintenance(#[from] MaintenanceError),
    /// Reading the terminal or a file failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// `selftest` found a failing check.
    #[error("selftest: {0} check(s) failed")]
    SelftestFailed(usize),
}

impl AppError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Usage(_) => 2,
            Self::WrongPassphrase { .. } => 3,
            Self::IdentityChanged { .. } => 4,
            Self::RelayUnreachable { .. } => 5,
            Self::UnknownContact { .. } | Self::UnknownGroup(_) => 6,
            Self::NotInitialised { .. } | Self::NotRegistered => 7,
            Self::RateLimited { .. } => 8,
            _ => 1,
        }
    }
}

impl From<ClientError> for AppError {
    fn from(e: ClientError) -> Self {
        Self::Relay(e)
    }
}

/// Shorthand.
pub type Result<T, E = AppError> = std::result::Result<T, E>;
