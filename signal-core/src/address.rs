//! Addresses of devices: (user, device).

use crate::error::DecodeError;
use crate::limits::MAX_USER_ID_LEN;

/// One device of one user. Sessions are per address: each device has its own identity
/// and prekeys.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    user: String,
    device: u32,
}

impl Address {
    /// Creates an address. The user id must be 1..=[`MAX_USER_ID_LEN`] bytes of UTF-8.
    pub fn new(user: impl Into<String>, device: u32) -> Result<Self, DecodeError> {
        let user = user.into();
        if user.is_empty() {
            return Err(DecodeError::NonCanonical { field: "user id" });
        }
        if user.len() > MAX_USER_ID_LEN {
            return Err(DecodeError::TooLong {
                length: user.len(),
                limit: MAX_USER_ID_LEN,
            });
        }
        Ok(Self { user, device })
    }

    /// The user id.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The device id.
    pub fn device(&self) -> u32 {
        self.device
    }
}

impl core::fmt::Display for Address {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{}", self.user, self.device)
    }
}

impl core::fmt::Debug for Address {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Address({self})")
    }
}
