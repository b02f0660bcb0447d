//! Database keys and where they come from.
//!
//! SQLCipher is always given a raw 256-bit key (`PRAGMA key = "x'…'"`), so opening a
//! database never runs SQLCipher's own PBKDF2; a passphrase is stretched with Argon2id
//! by [`PassphraseKey`] instead. Everything else (cipher, page HMAC, page size) is
//! SQLCipher 4's default.
//!
//! [`KeyProvider`] is the hook for an external key manager. A KMS or Vault provider
//! keeps a data key wrapped by the KMS beside the database (or in the KMS itself),
//! asks the KMS to unwrap it in [`KeyProvider::database_key`], and returns the 32
//! plaintext bytes as a [`DatabaseKey`]; see the crate README.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use signal_core::StoreError;
use zeroize::{Zeroize, Zeroizing};

/// Length of a database key in bytes.
pub const DATABASE_KEY_LEN: usize = 32;

/// Length of the Argon2id salt written beside a passphrase-keyed database.
pub const SALT_LEN: usize = 16;

/// Argon2id memory cost in KiB used for new passphrase salts (OWASP's minimum
/// recommendation; the value used is recorded in the salt file).
pub const ARGON2_M_COST: u32 = 19 * 1024;
/// Argon2id iterations used for new passphrase salts.
pub const ARGON2_T_COST: u32 = 2;
/// Argon2id lanes used for new passphrase salts.
pub const ARGON2_P_COST: u32 = 1;

/// A 256-bit SQLCipher key. Secret: zeroized on drop, never printed.
#[derive(Zeroize, zeroize::ZeroizeOnDrop)]
pub struct DatabaseKey([u8; DATABASE_KEY_LEN]);

impl DatabaseKey {
    /// Wraps 32 key bytes.
    pub fn from_bytes(bytes: [u8; DATABASE_KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// A fresh random key from the operating system.
    pub fn generate() -> Result<Self, StoreError> {
        let mut bytes = [0u8; DATABASE_KEY_LEN];
        getrandom::fill(&mut bytes)
            .map_err(|e| KeyError::Randomness(e.to_string()).into_store())?;
        Ok(Self(bytes))
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; DATABASE_KEY_LEN] {
        &self.0
    }

    /// Parses 64 hexadecimal digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self, StoreError> {
        let text = text.trim();
        let mut bytes = [0u8; DATABASE_KEY_LEN];
        if text.len() != 2 * DATABASE_KEY_LEN || !decode_hex(text, &mut bytes) {
            bytes.zeroize();
            return Err(KeyError::BadFormat {
                expected: "64 hexadecimal digits",
            }
            .into_store());
        }
        Ok(Self(bytes))
    }

    /// The SQLCipher raw-key literal `x'…'` (64 hex digits, then `salt` if given).
    pub(crate) fn sqlcipher_literal(&self, salt: Option<&[u8; SALT_LEN]>) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(3 + 2 * (DATABASE_KEY_LEN + SALT_LEN)));
        s.push_str("x'");
        push_hex(&mut s, &self.0);
        if let Some(salt) = salt {
            push_hex(&mut s, salt);
        }
        s.push('\'');
        s
    }
}

impl fmt::Debug for DatabaseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DatabaseKey(..)")
    }
}

/// Why a key is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPurpose {
    /// Opening a database that exists. A provider must not create or change anything.
    Open,
    /// Creating a database, or re-keying one to this provider's key. A provider may
    /// create what it needs (for example a salt file).
    Create,
}

/// Supplies the key of the database at a path.
///
/// Implement this to fetch keys from a KMS, Vault, a hardware keystore or an OS
/// keychain. A provider returns [`StoreError::WrongKey`] when it has no key to give,
/// and [`StoreError::Backend`] when the key source itself failed.
pub trait KeyProvider {
    /// The key for the database at `db_path`.
    fn database_key(&self, db_path: &Path, purpose: KeyPurpose) -> Result<DatabaseKey, StoreError>;
}

/// Failures of the key providers, carried in [`StoreError::Backend`].
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Key material is not in the expected format.
    #[error("key material is malformed: expected {expected}")]
    BadFormat {
        /// What was expected.
        expected: &'static str,
    },
    /// A passphrase-keyed database has no salt file beside it.
    #[error("salt file {path} is missing")]
    MissingSalt {
        /// Where the salt file was expected.
        path: PathBuf,
    },
    /// The salt file does not parse.
    #[error("salt file {path} is malformed")]
    BadSaltFile {
        /// The salt file.
        path: PathBuf,
    },
    /// The environment variable is not set or not valid Unicode.
    #[error("environment variable {name} is not set")]
    MissingEnv {
        /// The variable's name.
        name: String,
    },
    /// Argon2id refused its parameters.
    #[error("Argon2id failed: {0}")]
    Argon2(argon2::Error),
    /// Reading or writing key material failed.
    #[error("key file I/O failed")]
    Io(#[from] std::io::Error),
    /// The operating system random number generator failed.
    #[error("random number generator failed: {0}")]
    Randomness(String),
}

impl KeyError {
    pub(crate) fn into_store(self) -> StoreError {
        StoreError::Backend(Box::new(self))
    }
}

/// A raw 32-byte key held in memory.
#[derive(Debug)]
pub struct RawKey(DatabaseKey);

impl RawKey {
    /// Wraps the key.
    pub fn new(key: DatabaseKey) -> Self {
        Self(key)
    }
}

impl KeyProvider for RawKey {
    fn database_key(&self, _: &Path, _: KeyPurpose) -> Result<DatabaseKey, StoreError> {
        Ok(DatabaseKey(self.0.0))
    }
}

/// A key read from an environment variable holding 64 hex digits, at each open.
#[derive(Debug, Clone)]
pub struct EnvKey {
    name: String,
}

impl EnvKey {
    /// Reads the key from variable `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }
}

impl KeyProvider for EnvKey {
    fn database_key(&self, _: &Path, _: KeyPurpose) -> Result<DatabaseKey, StoreError> {
        let value = Zeroizing::new(std::env::var(&self.name).map_err(|_| {
            KeyError::MissingEnv {
                name: self.name.clone(),
            }
            .into_store()
        })?);
        DatabaseKey::from_hex(&value)
    }
}

/// A key read from a file holding either exactly 32 raw bytes or 64 hex digits
/// (surrounding whitespace allowed), at each open. The file is only read.
#[derive(Debug, Clone)]
pub struct FileKey {
    path: PathBuf,
}

impl FileKey {
    /// Reads the key from the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
}

impl KeyProvider for FileKey {
    fn database_key(&self, _: &Path, _: KeyPurpose) -> Result<DatabaseKey, StoreError> {
        let bytes = Zeroizing::new(fs::read(&self.path).map_err(|e| KeyError::Io(e).into_store())?);
        if let Ok(raw) = <[u8; DATABASE_KEY_LEN]>::try_from(&bytes[..]) {
            return Ok(DatabaseKey(raw));
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            KeyError::BadFormat {
                expected: "32 raw bytes or 64 hexadecimal digits",
            }
            .into_store()
        })?;
        DatabaseKey::from_hex(text)
    }
}

/// Argon2id parameters as recorded in a salt file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory cost in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for Argon2Params {
    fn default() -> Self {
        Self {
            m_cost: ARGON2_M_COST,
            t_cost: ARGON2_T_COST,
            p_cost: ARGON2_P_COST,
        }
    }
}

impl Argon2Params {
    /// Derives a 32-byte key from `passphrase` and `salt` with Argon2id (version 0x13).
    pub fn derive(&self, passphrase: &[u8], salt: &[u8]) -> Result<DatabaseKey, StoreError> {
        let params = argon2::Params::new(
            self.m_cost,
            self.t_cost,
            self.p_cost,
            Some(DATABASE_KEY_LEN),
        )
        .map_err(|e| KeyError::Argon2(e).into_store())?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = [0u8; DATABASE_KEY_LEN];
        argon
            .hash_password_into(passphrase, salt, &mut out)
            .map_err(|e| KeyError::Argon2(e).into_store())?;
        Ok(DatabaseKey(out))
    }
}

/// A passphrase stretched with Argon2id. The random salt and the Argon2id parameters
/// live in `<database>.salt` beside the database (not secret, but needed to open it:
/// back it up with the database). The salt file is created only for
/// [`KeyPurpose::Create`] and is never overwritten.
pub struct PassphraseKey {
    passphrase: Zeroizing<Vec<u8>>,
    params: Argon2Params,
}

impl PassphraseKey {
    /// A passphrase with the default parameters for new salt files.
    pub fn new(passphrase: impl AsRef<[u8]>) -> Self {
        Self::with_params(passphrase, Argon2Params::default())
    }

    /// A passphrase with explicit parameters for a new salt file. An existing salt
    /// file's recorded parameters always win.
    pub fn with_params(passphrase: impl AsRef<[u8]>, params: Argon2Params) -> Self {
        Self {
            passphrase: Zeroizing::new(passphrase.as_ref().to_vec()),
            params,
        }
    }

    /// Where the salt file of the database at `db_path` lives.
    pub fn salt_path(db_path: &Path) -> PathBuf {
        let mut name = db_path.as_os_str().to_owned();
        name.push(".salt");
        PathBuf::from(name)
    }
}

impl fmt::Debug for PassphraseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PassphraseKey")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl KeyProvider for PassphraseKey {
    fn database_key(&self, db_path: &Path, purpose: KeyPurpose) -> Result<DatabaseKey, StoreError> {
        let salt_path = Self::salt_path(db_path);
        let (params, salt) = match fs::read_to_string(&salt_path) {
            Ok(text) => parse_salt_file(&text).ok_or_else(|| {
                KeyError::BadSaltFile {
                    path: salt_path.clone(),
                }
                .into_store()
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match purpose {
                KeyPurpose::Open => {
                    return Err(KeyError::MissingSalt { path: salt_path }.into_store());
                }
                KeyPurpose::Create => {
                    let mut salt = [0u8; SALT_LEN];
                    getrandom::fill(&mut salt)
                        .map_err(|e| KeyError::Randomness(e.to_string()).into_store())?;
                    write_new_file(&salt_path, format_salt_file(&self.params, &salt).as_bytes())?;
                    (self.params, salt)
                }
            },
            Err(e) => return Err(KeyError::Io(e).into_store()),
        };
        params.derive(&self.passphrase, &salt)
    }
}

const SALT_FILE_MAGIC: &str = "session-store salt v1";

fn format_salt_file(p: &Argon2Params, salt: &[u8; SALT_LEN]) -> String {
    let mut hex = String::new();
    push_hex(&mut hex, salt);
    format!(
        "{SALT_FILE_MAGIC}\nalgorithm=argon2id\nversion=19\nm_cost={}\nt_cost={}\np_cost={}\nsalt={hex}\n",
        p.m_cost, p.t_cost, p.p_cost
    )
}

fn parse_salt_file(text: &str) -> Option<(Argon2Params, [u8; SALT_LEN])> {
    let mut lines = text.lines();
    if lines.next()? != SALT_FILE_MAGIC {
        return None;
    }
    let mut field =
        |name: &str| -> Option<&str> { lines.next()?.strip_prefix(name)?.strip_prefix('=') };
    if field("algorithm")? != "argon2id" || field("version")? != "19" {
        return None;
    }
    let params = Argon2Params {
        m_cost: field("m_cost")?.parse().ok()?,
        t_cost: field("t_cost")?.parse().ok()?,
        p_cost: field("p_cost")?.parse().ok()?,
    };
    let mut salt = [0u8; SALT_LEN];
    let hex = field("salt")?;
    (hex.len() == 2 * SALT_LEN && decode_hex(hex, &mut salt)).then_some((params, salt))
}

/// Writes a file that must not exist yet, durably (file and directory synced).
pub(crate) fn write_new_file(path: &Path, contents: &[u8]) -> Result<(), StoreError> {
    let io = |e| KeyError::Io(e).into_store();
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io)?;
    f.write_all(contents).map_err(io)?;
    f.sync_all().map_err(io)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

/// Decodes `text` (exactly `2 * out.len()` hex digits) into `out`.
fn decode_hex(text: &str, out: &mut [u8]) -> bool {
    let digits = text.as_bytes();
    if digits.len() != 2 * out.len() {
        return false;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(hi), Some(lo)) => *o = (hi << 4) | lo,
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects() {
        let key = DatabaseKey::from_bytes([0xab; 32]);
        let lit = key.sqlcipher_literal(None);
        assert_eq!(lit.len(), 67);
        let parsed = DatabaseKey::from_hex(&lit[2..66]).unwrap();
        assert_eq!(parsed.as_bytes(), key.as_bytes());
        assert!(DatabaseKey::from_hex("abcd").is_err());
        assert!(DatabaseKey::from_hex(&"zz".repeat(32)).is_err());
        assert_eq!(format!("{key:?}"), "DatabaseKey(..)");
    }

    #[test]
    fn salt_file_round_trip() {
        let p = Argon2Params {
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
        };
        let text = format_salt_file(&p, &[7; SALT_LEN]);
        assert_eq!(parse_salt_file(&text), Some((p, [7; SALT_LEN])));
        assert_eq!(parse_salt_file(&text.replace("argon2id", "argon2i")), None);
        assert_eq!(parse_salt_file("garbage"), None);
    }
}
