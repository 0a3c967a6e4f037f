//! Bearer-token authentication: `authorization: Bearer <JWT>` whose subject is the caller's member
//! id. HS256 with a shared secret for development; RS256 with a public key in production.
//! Authorization (who may do what) is decided in each service's domain, not here.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataMap;
use uuid::Uuid;

/// The claims Kith reads from a token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The member id.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

/// Who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub member_id: Uuid,
}

/// Why a call was not authenticated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing authorization metadata: send `authorization: Bearer <token>`")]
    Missing,
    #[error("authorization must be `Bearer <token>`")]
    Malformed,
    #[error("token expired")]
    Expired,
    #[error("token invalid: {0}")]
    Invalid(String),
    #[error("token subject must be a member id (a UUID)")]
    BadSubject,
}

/// Checks tokens.
#[derive(Clone)]
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Shared-secret tokens (development).
    pub fn hs256(secret: &[u8]) -> Self {
        Self::with(DecodingKey::from_secret(secret), Algorithm::HS256)
    }

    /// Tokens signed by the holder of an RSA private key, checked with its PEM public key.
    pub fn rs256(public_key_pem: &[u8]) -> Result<Self, AuthError> {
        let key = DecodingKey::from_rsa_pem(public_key_pem)
            .map_err(|err| AuthError::Invalid(format!("public key: {err}")))?;
        Ok(Self::with(key, Algorithm::RS256))
    }

    fn with(key: DecodingKey, algorithm: Algorithm) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.leeway = 5;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self { key, validation }
    }

    /// The caller named by the request's bearer token.
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<Caller, AuthError> {
        let value = metadata.get("authorization").ok_or(AuthError::Missing)?;
        let value = value.to_str().map_err(|_| AuthError::Malformed)?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or(AuthError::Malformed)?;
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|err| {
                match err.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                    _ => AuthError::Invalid(err.to_string()),
                }
            })?;
        let member_id = data.claims.sub.parse().map_err(|_| AuthError::BadSubject)?;
        Ok(Caller { member_id })
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Mints an HS256 token for `member_id`, valid for `ttl_secs` (development and tests).
pub fn mint_hs256(secret: &[u8], member_id: Uuid, ttl_secs: u64) -> Result<String, AuthError> {
    let now = now_secs();
    let claims = Claims {
        sub: member_id.to_string(),
        exp: now + ttl_secs,
        iat: now,
        iss: Some("kith-dev".into()),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|err| AuthError::Invalid(err.to_string()))
}

/// Mints a token with arbitrary claims and key (tests of expiry and RS256).
pub fn mint(claims: &Claims, algorithm: Algorithm, key: &EncodingKey) -> Result<String, AuthError> {
    jsonwebtoken::encode(&Header::new(algorithm), claims, key)
        .map_err(|err| AuthError::Invalid(err.to_string()))
}

/// Seconds since the epoch, for building claims.
pub fn unix_now() -> u64 {
    now_secs()
}
