//! Sealing of personal data. A personal field is encrypted (XChaCha20-Poly1305, authenticated)
//! with a key that belongs to one subject and lives only in the owning service's `sealing_keys`
//! table. Erasing the subject deletes its keys: every copy of the field, in the log, on the bus
//! and in every later replay, then reads as erased, while the log stays append-only.

use std::collections::HashMap;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use kith_proto::platform::Sealed;
use sqlx::PgPool;
use uuid::Uuid;

use crate::Result;

/// One subject's key.
#[derive(Clone)]
pub struct SealingKey {
    key_id: Uuid,
    subject: String,
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealingKey")
            .field("key_id", &self.key_id)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl SealingKey {
    /// Seals one field.
    pub fn seal(&self, plaintext: &str) -> Sealed {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        // Encryption with a valid key and nonce cannot fail for in-memory buffers.
        let ciphertext = self
            .cipher
            .encrypt(&nonce, plaintext.as_bytes())
            .unwrap_or_default();
        Sealed {
            subject: self.subject.clone(),
            key_id: self.key_id.to_string(),
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    fn open(&self, sealed: &Sealed) -> Option<String> {
        if sealed.nonce.len() != 24 {
            return None;
        }
        let nonce = XNonce::from_slice(&sealed.nonce);
        let plain = self
            .cipher
            .decrypt(nonce, sealed.ciphertext.as_slice())
            .ok()?;
        String::from_utf8(plain).ok()
    }
}

/// The keys of a service, in its schema.
#[derive(Debug, Clone)]
pub struct Sealer {
    pool: PgPool,
}

impl Sealer {
    /// Keys in the pool's schema.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The subject's newest key, created on first use.
    pub async fn key_for(&self, subject: &str) -> Result<SealingKey> {
        let existing: Option<(Uuid, Vec<u8>)> = sqlx::query_as(
            "SELECT key_id, key FROM sealing_keys WHERE subject = $1 ORDER BY created_at DESC LIMIT 1",
        )
        .bind(subject)
        .fetch_optional(&self.pool)
        .await?;
        let (key_id, bytes) = match existing {
            Some(found) => found,
            None => {
                let key_id = Uuid::new_v4();
                let bytes = XChaCha20Poly1305::generate_key(&mut OsRng).to_vec();
                sqlx::query("INSERT INTO sealing_keys (key_id, subject, key) VALUES ($1, $2, $3)")
                    .bind(key_id)
                    .bind(subject)
                    .bind(&bytes)
                    .execute(&self.pool)
                    .await?;
                (key_id, bytes)
            }
        };
        Ok(make_key(key_id, subject, &bytes))
    }

    /// A reader that opens sealed fields, fetching each key once.
    pub fn opener(&self) -> Opener {
        Opener {
            pool: self.pool.clone(),
            keys: HashMap::new(),
        }
    }
}

fn make_key(key_id: Uuid, subject: &str, bytes: &[u8]) -> SealingKey {
    let cipher = XChaCha20Poly1305::new_from_slice(bytes)
        .unwrap_or_else(|_| XChaCha20Poly1305::new(&Default::default()));
    SealingKey {
        key_id,
        subject: subject.to_owned(),
        cipher,
    }
}

/// Opens sealed fields; a field whose key is gone (erased) opens as `None`.
#[derive(Debug)]
pub struct Opener {
    pool: PgPool,
    keys: HashMap<Uuid, Option<SealingKey>>,
}

impl Opener {
    /// The plaintext, or `None` once the subject was erased (or the field is absent).
    pub async fn open(&mut self, sealed: Option<&Sealed>) -> Result<Option<String>> {
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let Ok(key_id) = sealed.key_id.parse::<Uuid>() else {
            return Ok(None);
        };
        if !self.keys.contains_key(&key_id) {
            let bytes: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT key FROM sealing_keys WHERE key_id = $1")
                    .bind(key_id)
                    .fetch_optional(&self.pool)
                    .await?;
            let key = bytes.map(|bytes| make_key(key_id, &sealed.subject, &bytes));
            self.keys.insert(key_id, key);
        }
        Ok(self
            .keys
            .get(&key_id)
            .and_then(Option::as_ref)
            .and_then(|key| key.open(sealed)))
    }
}
