//! Sealing of personal data. A personal field is encrypted (XChaCha20-Poly1305, authenticated)
//! with a key that belongs to one subject and lives only in the owning service's `sealing_keys`
//! table. Erasing the subject deletes its keys: every copy of the field, in the log, on the bus
//! and in every later replay, then reads as erased, while the log stays append-only.
//!
//! With a key-encryption key (KEK) installed ([`install_kek`], from `--sealing-kek` or
//! `--sealing-kek-file`), the subjects' keys are stored wrapped by it, so a copy of the database
//! alone (a backup) opens nothing. The KEK lives outside the database (a Kubernetes Secret).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use kith_proto::platform::Sealed;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{Error, Result};

/// The key-encryption keys of this process: the first wraps new keys and rewraps old ones; the
/// rest (earlier KEKs, during a rotation) only unwrap.
#[derive(Clone)]
pub struct Keks {
    keys: Vec<(String, XChaCha20Poly1305)>,
}

impl std::fmt::Debug for Keks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keks")
            .field(
                "ids",
                &self.keys.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Keks {
    /// KEKs from their hex forms (64 hex digits, 32 bytes each), current first.
    pub fn parse<'a>(hex_keys: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        use sha2::Digest;
        let mut keys = Vec::new();
        for (n, text) in hex_keys.into_iter().enumerate() {
            let bytes = hex::decode(text.trim())
                .ok()
                .filter(|bytes| bytes.len() == 32)
                .ok_or_else(|| {
                    Error::Config(format!(
                        "sealing KEK #{} must be 64 hex digits (32 random bytes, e.g. `openssl rand -hex 32`)",
                        n + 1
                    ))
                })?;
            let id = hex::encode(&sha2::Sha256::digest(&bytes)[..8]);
            let cipher = XChaCha20Poly1305::new_from_slice(&bytes)
                .map_err(|_| Error::Config("sealing KEK: not a 32-byte key".into()))?;
            keys.push((id, cipher));
        }
        if keys.is_empty() {
            return Err(Error::Config("no sealing KEK given".into()));
        }
        Ok(Self { keys })
    }

    /// The id of the KEK that wraps new keys.
    pub fn current_id(&self) -> &str {
        &self.keys[0].0
    }

    /// `key` wrapped by the current KEK, bound to its `key_id` (so a wrapped key copied onto
    /// another row does not unwrap there).
    fn wrap(&self, key_id: Uuid, key: &[u8]) -> Result<(String, Vec<u8>)> {
        use chacha20poly1305::aead::Payload;
        let (id, cipher) = &self.keys[0];
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: key,
                    aad: key_id.as_bytes(),
                },
            )
            .map_err(|_| Error::Config("a sealing key could not be wrapped".into()))?;
        let mut wrapped = nonce.to_vec();
        wrapped.extend(sealed);
        Ok((id.clone(), wrapped))
    }

    fn unwrap(&self, wrapped_by: &str, key_id: Uuid, wrapped: &[u8]) -> Result<Vec<u8>> {
        use chacha20poly1305::aead::Payload;
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(id, _)| id == wrapped_by)
            .ok_or_else(|| unknown_kek(wrapped_by))?;
        if wrapped.len() < 24 {
            return Err(Error::Config(format!(
                "a sealing key wrapped by KEK {wrapped_by} is damaged"
            )));
        }
        let (nonce, ciphertext) = wrapped.split_at(24);
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: key_id.as_bytes(),
                },
            )
            .map_err(|_| {
                Error::Config(format!(
                    "a sealing key does not unwrap with KEK {wrapped_by}: the KEK given is not the one that wrapped it"
                ))
            })
    }
}

fn unknown_kek(wrapped_by: &str) -> Error {
    Error::Config(format!(
        "sealing keys are wrapped by KEK {wrapped_by}, which this process was not given; pass it \
         with --sealing-kek or --sealing-kek-file"
    ))
}

static KEKS: OnceLock<Arc<Keks>> = OnceLock::new();

/// Installs this process's KEKs, once, before the first [`Sealer`] is made (the service binaries
/// and `kith` do it from their flags).
pub fn install_kek(keks: Keks) -> Result<()> {
    KEKS.set(Arc::new(keks))
        .map_err(|_| Error::Config("the sealing KEK was installed twice".into()))
}

fn installed_keks() -> Option<Arc<Keks>> {
    KEKS.get().cloned()
}

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
    keks: Option<Arc<Keks>>,
}

impl Sealer {
    /// Keys in the pool's schema, wrapped by the process's KEK if one is installed.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            keks: installed_keks(),
        }
    }

    /// Keys in the pool's schema, wrapped by `keks` (or stored as they are with `None`).
    pub fn with_keks(pool: PgPool, keks: Option<Keks>) -> Self {
        Self {
            pool,
            keks: keks.map(Arc::new),
        }
    }

    /// The subject's newest key, created on first use.
    pub async fn key_for(&self, subject: &str) -> Result<SealingKey> {
        let existing: Option<(Uuid, Vec<u8>, Option<String>)> = sqlx::query_as(
            "SELECT key_id, key, wrapped_by FROM sealing_keys WHERE subject = $1 \
             ORDER BY created_at DESC LIMIT 1",
        )
        .bind(subject)
        .fetch_optional(&self.pool)
        .await?;
        let (key_id, bytes) = match existing {
            Some((key_id, stored, wrapped_by)) => {
                let bytes = unwrap(self.keks.as_deref(), key_id, &stored, wrapped_by.as_deref())?;
                // A key left under an earlier KEK (or none) by a replica of the previous
                // configuration, during a rollout: moved under the current one as it is used.
                if let Some(keks) = &self.keks
                    && wrapped_by.as_deref() != Some(keks.current_id())
                {
                    let (id, wrapped) = keks.wrap(key_id, &bytes)?;
                    sqlx::query(
                        "UPDATE sealing_keys SET key = $2, wrapped_by = $3
                         WHERE key_id = $1 AND wrapped_by IS NOT DISTINCT FROM $4",
                    )
                    .bind(key_id)
                    .bind(wrapped)
                    .bind(id)
                    .bind(wrapped_by)
                    .execute(&self.pool)
                    .await?;
                }
                (key_id, bytes)
            }
            None => return self.new_key(subject).await,
        };
        Ok(make_key(key_id, subject, &bytes))
    }

    /// A new key for `subject`, without looking for one first: for a subject that is new by
    /// construction (one message's), one statement rather than two. A subject may hold several
    /// keys (a retried command makes another); erasure destroys them all.
    pub async fn new_key(&self, subject: &str) -> Result<SealingKey> {
        let key_id = Uuid::new_v4();
        let bytes = XChaCha20Poly1305::generate_key(&mut OsRng).to_vec();
        let (wrapped_by, stored) = match &self.keks {
            Some(keks) => {
                let (id, wrapped) = keks.wrap(key_id, &bytes)?;
                (Some(id), wrapped)
            }
            None => (None, bytes.clone()),
        };
        sqlx::query(
            "INSERT INTO sealing_keys (key_id, subject, key, wrapped_by) VALUES ($1, $2, $3, $4)",
        )
        .bind(key_id)
        .bind(subject)
        .bind(&stored)
        .bind(wrapped_by)
        .execute(&self.pool)
        .await?;
        Ok(make_key(key_id, subject, &bytes))
    }

    /// Checks, without changing anything, that this process holds every KEK the stored keys are
    /// wrapped by: a reader that is about to open many fields learns at once that it cannot.
    pub async fn check_unwrappable(&self) -> Result<()> {
        let kek_ids: Vec<String> = self
            .keks
            .as_deref()
            .map(|keks| keks.keys.iter().map(|(id, _)| id.clone()).collect())
            .unwrap_or_default();
        let unknown: Option<String> = sqlx::query_scalar(
            "SELECT wrapped_by FROM sealing_keys \
             WHERE wrapped_by IS NOT NULL AND wrapped_by <> ALL($1) LIMIT 1",
        )
        .bind(&kek_ids)
        .fetch_optional(&self.pool)
        .await?;
        match unknown {
            Some(kek) => Err(unknown_kek(&kek)),
            None => Ok(()),
        }
    }

    /// A reader that opens sealed fields, fetching each key once.
    pub fn opener(&self) -> Opener {
        Opener {
            pool: self.pool.clone(),
            keks: self.keks.clone(),
            keys: HashMap::new(),
        }
    }

    /// Brings every stored key under the current KEK: keys stored as they are (from before a KEK
    /// was given) and keys wrapped by an earlier KEK (a rotation) are wrapped again, in one
    /// transaction. Without a KEK, checks that no key needs one. Returns how many were rewrapped.
    pub async fn rewrap(&self) -> Result<u64> {
        let Some(keks) = &self.keks else {
            let wrapped: Option<String> = sqlx::query_scalar(
                "SELECT wrapped_by FROM sealing_keys WHERE wrapped_by IS NOT NULL LIMIT 1",
            )
            .fetch_optional(&self.pool)
            .await?;
            return match wrapped {
                Some(kek) => Err(unknown_kek(&kek)),
                None => Ok(0),
            };
        };
        let mut tx = self.pool.begin().await?;
        let rows: Vec<(Uuid, Vec<u8>, Option<String>)> = sqlx::query_as(
            "SELECT key_id, key, wrapped_by FROM sealing_keys \
             WHERE wrapped_by IS DISTINCT FROM $1 FOR UPDATE",
        )
        .bind(keks.current_id())
        .fetch_all(&mut *tx)
        .await?;
        for (key_id, stored, wrapped_by) in &rows {
            let bytes = unwrap(Some(keks), *key_id, stored, wrapped_by.as_deref())?;
            let (id, wrapped) = keks.wrap(*key_id, &bytes)?;
            sqlx::query("UPDATE sealing_keys SET key = $2, wrapped_by = $3 WHERE key_id = $1")
                .bind(key_id)
                .bind(wrapped)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(rows.len() as u64)
    }
}

/// A stored key as it is used: unwrapped by the KEK named beside it, or as stored.
fn unwrap(
    keks: Option<&Keks>,
    key_id: Uuid,
    stored: &[u8],
    wrapped_by: Option<&str>,
) -> Result<Vec<u8>> {
    match (wrapped_by, keks) {
        (None, _) => Ok(stored.to_vec()),
        (Some(kek), Some(keks)) => keks.unwrap(kek, key_id, stored),
        (Some(kek), None) => Err(unknown_kek(kek)),
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
    keks: Option<Arc<Keks>>,
    keys: HashMap<Uuid, Option<SealingKey>>,
}

impl Opener {
    /// Fetches the keys of `key_ids` not fetched yet in one query, so that a reader about to
    /// open many fields (one message's key each) does not ask for them one at a time. A key
    /// that is gone (erased) is remembered as gone.
    pub async fn prefetch(&mut self, key_ids: &[Uuid]) -> Result<()> {
        let missing: Vec<Uuid> = key_ids
            .iter()
            .filter(|id| !self.keys.contains_key(id))
            .copied()
            .collect::<std::collections::HashSet<_>>()
            .into_iter()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        // Planned at each call: a plan kept from when the table was small scans all of it, and
        // without an ANALYZE (autovacuum off or behind) nothing replaces it as the table grows.
        let stored: Vec<(Uuid, String, Vec<u8>, Option<String>)> = sqlx::query_as(
            "SELECT key_id, subject, key, wrapped_by FROM sealing_keys WHERE key_id = ANY($1)",
        )
        .persistent(false)
        .bind(&missing)
        .fetch_all(&self.pool)
        .await?;
        for id in &missing {
            self.keys.insert(*id, None);
        }
        for (key_id, subject, stored, wrapped_by) in stored {
            let bytes = unwrap(self.keks.as_deref(), key_id, &stored, wrapped_by.as_deref())?;
            self.keys
                .insert(key_id, Some(make_key(key_id, &subject, &bytes)));
        }
        Ok(())
    }

    /// The plaintext, or `None` once the subject was erased (or the field is absent).
    pub async fn open(&mut self, sealed: Option<&Sealed>) -> Result<Option<String>> {
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let Ok(key_id) = sealed.key_id.parse::<Uuid>() else {
            return Ok(None);
        };
        if !self.keys.contains_key(&key_id) {
            let stored: Option<(Vec<u8>, Option<String>)> =
                sqlx::query_as("SELECT key, wrapped_by FROM sealing_keys WHERE key_id = $1")
                    .bind(key_id)
                    .fetch_optional(&self.pool)
                    .await?;
            let key = match stored {
                Some((stored, wrapped_by)) => {
                    let bytes =
                        unwrap(self.keks.as_deref(), key_id, &stored, wrapped_by.as_deref())?;
                    Some(make_key(key_id, &sealed.subject, &bytes))
                }
                None => None,
            };
            self.keys.insert(key_id, key);
        }
        Ok(self
            .keys
            .get(&key_id)
            .and_then(Option::as_ref)
            .and_then(|key| key.open(sealed)))
    }
}
