//! Mapping SQLite failures onto [`StoreError`].

use rusqlite::ErrorCode;
use signal_core::StoreError;

/// Maps a SQLite error after the database was opened: damage is
/// [`StoreError::Corrupt`], anything else [`StoreError::Backend`] with the SQLite
/// error as its source.
pub(crate) fn sql(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            what: "a database page is damaged",
        },
        // SQLCipher reports a page whose HMAC does not verify as "not a database".
        Some(ErrorCode::NotADatabase) => StoreError::Corrupt {
            what: "a database page failed authentication",
        },
        _ => StoreError::Backend(Box::new(e)),
    }
}
