//! Handle tokens: how a service learns which member a handle names without the handle itself
//! leaving the service that owns it. Membership seals handles (they are personal data, erased with
//! the member); beside each sealed handle it puts a keyed hash of it, which messaging computes
//! from the `@handle` it reads in a message and looks up.
//!
//! The hash is keyed (HMAC-SHA-256) with a deployment secret shared by the services, so a reader
//! of the log or the bus who lacks it cannot test guesses against a token: a handle is short and
//! guessable, a plain hash of it would not be. Without a key given, a built-in one is used and a
//! warning logged; tokens then only hide handles from a casual look.

use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use crate::{Error, Result};

/// The key of a deployment that gives none: fine for development, public in this source.
const BUILT_IN_KEY: &[u8; 32] = b"kith-development-handle-key-0001";

static KEY: OnceLock<[u8; 32]> = OnceLock::new();

/// Parses a handle key from its hex form (64 hex digits).
pub fn parse_key(hex_key: &str) -> Result<[u8; 32]> {
    hex::decode(hex_key.trim())
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| {
            Error::Config(
                "must be 64 hex digits (32 random bytes, e.g. `openssl rand -hex 32`)".into(),
            )
        })
}

/// Installs this process's handle key, once, before the first token is made. Every service of a
/// deployment must be given the same key; changing it makes mentions of members who have not
/// updated their profile since resolve to nobody.
pub fn install_key(key: [u8; 32]) -> Result<()> {
    KEY.set(key)
        .map_err(|_| Error::Config("the handle key was installed twice".into()))
}

/// The token of `handle` in `community`. `handle` must already be in its canonical form
/// (lowercase, as membership stores it): the token of a differently written handle differs.
pub fn handle_token(community: Uuid, handle: &str) -> Vec<u8> {
    let key = KEY.get().unwrap_or(BUILT_IN_KEY);
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(b"kith handle v1\0");
    mac.update(community.as_bytes());
    mac.update(handle.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_bound_to_its_community_and_its_handle() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        assert_eq!(handle_token(a, "bea"), handle_token(a, "bea"));
        assert_ne!(handle_token(a, "bea"), handle_token(b, "bea"));
        assert_ne!(handle_token(a, "bea"), handle_token(a, "bee"));
        assert_eq!(handle_token(a, "bea").len(), 32);
    }

    #[test]
    fn a_key_must_be_32_bytes_of_hex() {
        assert!(parse_key(&"ab".repeat(32)).is_ok());
        assert!(parse_key("abcd").is_err());
        assert!(parse_key(&"zz".repeat(32)).is_err());
    }
}
