//! The home directory, the passphrase, and opening the SQLCipher store.

use std::path::{Path, PathBuf};

use session_store::{PassphraseKey, SqlStore};
use signal_core::{IdentityKeyPair, StoreError};
use zeroize::Zeroizing;

use crate::appdb;
use crate::error::{AppError, Result};
use crate::messenger::Messenger;

/// The environment variable a script can set instead of typing the passphrase.
pub const PASSPHRASE_ENV: &str = "SECURE_MESSENGER_PASSPHRASE";

/// A home directory holding one device's store.
#[derive(Debug, Clone)]
pub struct Home {
    /// The directory.
    pub dir: PathBuf,
}

impl Home {
    /// `dir`, or `~/.secure_messenger`.
    pub fn resolve(dir: Option<PathBuf>) -> Result<Self> {
        let dir = match dir {
            Some(d) => d,
            None => std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".secure_messenger"))
                .ok_or_else(|| AppError::Usage("set --home or HOME".into()))?,
        };
        Ok(Self { dir })
    }

    /// The SQLCipher database.
    pub fn db_path(&self) -> PathBuf {
        self.dir.join("account.db")
    }

    /// Whether `init` has run here.
    pub fn exists(&self) -> bool {
        self.db_path().exists()
    }
}

/// The passphrase from [`PASSPHRASE_ENV`] or typed at the terminal without echo
/// (twice when `confirm`).
pub fn passphrase(path: &Path, confirm: bool) -> Result<Zeroizing<String>> {
    if let Ok(p) = std::env::var(PASSPHRASE_ENV)
        && !p.is_empty()
    {
        return Ok(Zeroizing::new(p));
    }
    let first = Zeroizing::new(rpassword::prompt_password(format!(
        "passphrase for {}: ",
        path.display()
    ))?);
    if first.is_empty() {
        return Err(AppError::Usage("the passphrase must not be empty".into()));
    }
    if confirm {
        let again = Zeroizing::new(rpassword::prompt_password("repeat the passphrase: ")?);
        if *again != *first {
            return Err(AppError::Usage(
                "the passphrases differ; nothing was created".into(),
            ));
        }
    }
    Ok(first)
}

/// A random registration id in 1..=16380.
fn registration_id() -> Result<u32> {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).map_err(|e| AppError::Io(std::io::Error::other(e.to_string())))?;
    Ok(u32::from_le_bytes(b) % 16380 + 1)
}

/// Creates the home directory (mode 0700) and a new identity in a new store.
pub fn init(home: &Home, passphrase: &str) -> Result<SqlStore> {
    let path = home.db_path();
    if home.exists() {
        return Err(AppError::AlreadyInitialised { path });
    }
    std::fs::create_dir_all(&home.dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&home.dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let identity = IdentityKeyPair::generate().map_err(|e| AppError::Usage(e.to_string()))?;
    let mut store = SqlStore::create(
        &path,
        &PassphraseKey::new(passphrase.as_bytes()),
        &identity,
        registration_id()?,
    )?;
    appdb::migrate(&mut store)?;
    Ok(store)
}

/// Opens the store; a wrong passphrase is [`AppError::WrongPassphrase`].
pub fn open(home: &Home, passphrase: &str) -> Result<SqlStore> {
    let path = home.db_path();
    if !home.exists() {
        return Err(AppError::NotInitialised {
            home: home.dir.clone(),
        });
    }
    let mut store = match SqlStore::open(&path, &PassphraseKey::new(passphrase.as_bytes())) {
        Ok(s) => s,
        Err(StoreError::WrongKey) => return Err(AppError::WrongPassphrase { path }),
        Err(e) => return Err(e.into()),
    };
    appdb::migrate(&mut store)?;
    Ok(store)
}

/// Opens the store, asking for the passphrase.
pub fn open_prompted(home: &Home) -> Result<SqlStore> {
    if !home.exists() {
        return Err(AppError::NotInitialised {
            home: home.dir.clone(),
        });
    }
    let pass = passphrase(&home.db_path(), false)?;
    open(home, &pass)
}

/// Opens the store of a registered device.
pub fn messenger(home: &Home) -> Result<Messenger> {
    let store = open_prompted(home)?;
    let account = appdb::account(&store)?.ok_or(AppError::NotRegistered)?;
    Messenger::new(store, account)
}
