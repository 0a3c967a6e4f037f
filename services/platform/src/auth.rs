//! Bearer-token authentication: `authorization: Bearer <JWT>` whose subject is the caller's member
//! id. Tokens are checked with an HS256 shared secret (development), one RS256 public key, or a
//! JWKS file of several keys picked by the token's `kid` (production: keys rotate by editing the
//! file, no restart). `exp` and `nbf` are always checked; `iss` and `aud` when configured.
//! Authorization (who may do what) is decided in each service's domain, not here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
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
    /// Not valid before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

impl Claims {
    /// Claims for `member_id`, valid from now for `ttl_secs`.
    pub fn for_member(member_id: Uuid, ttl_secs: u64) -> Self {
        let now = now_secs();
        Self {
            sub: member_id.to_string(),
            exp: now + ttl_secs,
            iat: now,
            iss: None,
            nbf: None,
            aud: None,
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub member_id: Uuid,
}

/// Why a call was not authenticated. The messages go to callers: they say what to fix, never
/// what a library said.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing authorization metadata: send `authorization: Bearer <token>`")]
    Missing,
    #[error("authorization must be `Bearer <token>`")]
    Malformed,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet (nbf is in the future)")]
    NotYetValid,
    #[error("token issuer is not one this server accepts")]
    WrongIssuer,
    #[error("token audience is not this server")]
    WrongAudience,
    #[error("token signature does not verify with any key this server holds")]
    BadSignature,
    #[error("token is signed with an algorithm this server does not accept")]
    WrongAlgorithm,
    #[error("token names a key (kid) this server does not hold")]
    UnknownKey,
    #[error("token lacks the {0} claim")]
    MissingClaim(String),
    #[error("token is not a well-formed JWT")]
    Invalid,
    #[error("token subject must be a member id (a UUID)")]
    BadSubject,
}

impl AuthError {
    /// The stable reason callers branch on.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "TOKEN_MISSING",
            Self::Malformed | Self::Invalid | Self::BadSubject | Self::MissingClaim(_) => {
                "TOKEN_MALFORMED"
            }
            Self::Expired => "TOKEN_EXPIRED",
            Self::NotYetValid => "TOKEN_NOT_YET_VALID",
            Self::WrongIssuer => "TOKEN_WRONG_ISSUER",
            Self::WrongAudience => "TOKEN_WRONG_AUDIENCE",
            Self::BadSignature | Self::WrongAlgorithm | Self::UnknownKey => "TOKEN_BAD_SIGNATURE",
        }
    }
}

/// Why a key could not be loaded (configuration, not a caller's fault).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

/// Where keys come from.
#[derive(Clone)]
enum Keys {
    /// One key, for every token.
    Single(Arc<DecodingKey>, Algorithm),
    /// A JWKS file, re-read when it changes.
    Jwks(Arc<JwksFile>),
}

/// The keys of a JWKS file, by `kid`, and when the file was last looked at.
struct JwksFile {
    path: PathBuf,
    state: RwLock<JwksState>,
}

struct JwksState {
    keys: HashMap<String, (Arc<DecodingKey>, Algorithm)>,
    modified: Option<SystemTime>,
    checked: Instant,
}

/// How often a JWKS file is looked at for changes, at most.
const JWKS_RECHECK: Duration = Duration::from_secs(2);

/// Checks tokens.
#[derive(Clone)]
pub struct Authenticator {
    keys: Keys,
    issuers: Vec<String>,
    audiences: Vec<String>,
    development: bool,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = match &self.keys {
            Keys::Single(_, algorithm) => format!("{algorithm:?}"),
            Keys::Jwks(file) => format!("JWKS {}", file.path.display()),
        };
        f.debug_struct("Authenticator")
            .field("keys", &keys)
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Shared-secret tokens.
    pub fn hs256(secret: &[u8]) -> Self {
        Self::single(DecodingKey::from_secret(secret), Algorithm::HS256)
    }

    /// Tokens signed by the holder of an RSA private key, checked with its PEM public key.
    pub fn rs256(public_key_pem: &[u8]) -> Result<Self, KeyError> {
        let key = DecodingKey::from_rsa_pem(public_key_pem)
            .map_err(|err| KeyError(format!("not an RSA public key in PEM: {err}")))?;
        Ok(Self::single(key, Algorithm::RS256))
    }

    /// Tokens signed by any key of the JWKS file at `path`, chosen by the token's `kid`. The file
    /// is read now (and must hold at least one usable key) and again whenever it changes.
    pub fn jwks_file(path: &Path) -> Result<Self, KeyError> {
        let (keys, modified) = read_jwks(path)?;
        if keys.is_empty() {
            return Err(KeyError(format!(
                "{} holds no key with a kid that can check signatures",
                path.display()
            )));
        }
        Ok(Self {
            keys: Keys::Jwks(Arc::new(JwksFile {
                path: path.to_owned(),
                state: RwLock::new(JwksState {
                    keys,
                    modified,
                    checked: Instant::now(),
                }),
            })),
            issuers: Vec::new(),
            audiences: Vec::new(),
            development: false,
        })
    }

    fn single(key: DecodingKey, algorithm: Algorithm) -> Self {
        Self {
            keys: Keys::Single(Arc::new(key), algorithm),
            issuers: Vec::new(),
            audiences: Vec::new(),
            development: false,
        }
    }

    /// Accepts only tokens whose `iss` is one of `issuers` (none: any issuer).
    pub fn with_issuers(mut self, issuers: Vec<String>) -> Self {
        self.issuers = issuers;
        self
    }

    /// Accepts only tokens whose `aud` names one of `audiences` (none: any audience).
    pub fn with_audiences(mut self, audiences: Vec<String>) -> Self {
        self.audiences = audiences;
        self
    }

    /// Marks this authenticator as holding the well-known development secret.
    pub fn development(mut self) -> Self {
        self.development = true;
        self
    }

    /// Whether it accepts tokens anyone can mint (the well-known development secret).
    pub fn is_development(&self) -> bool {
        self.development
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
        let header = jsonwebtoken::decode_header(token).map_err(|err| {
            tracing::debug!(error = %err, "unreadable token header");
            match err.kind() {
                jsonwebtoken::errors::ErrorKind::Json(_)
                | jsonwebtoken::errors::ErrorKind::InvalidAlgorithmName => {
                    AuthError::WrongAlgorithm
                }
                _ => AuthError::Invalid,
            }
        })?;
        let (key, algorithm) = self.key_for(&header)?;
        if header.alg != algorithm {
            return Err(AuthError::WrongAlgorithm);
        }
        // Only the subject is read here; the library checks exp, nbf, iss and aud from the raw
        // claims (an `aud` may be a string or a list).
        #[derive(Deserialize)]
        struct Subject {
            sub: String,
        }
        let data = jsonwebtoken::decode::<Subject>(token, &key, &self.validation(algorithm))
            .map_err(|err| {
                tracing::debug!(error = %err, "token refused");
                refusal(&err)
            })?;
        let member_id = data.claims.sub.parse().map_err(|_| AuthError::BadSubject)?;
        Ok(Caller { member_id })
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.leeway = 5;
        validation.validate_nbf = true;
        validation.validate_exp = true;
        let mut required = vec!["exp", "sub"];
        if self.issuers.is_empty() {
            validation.iss = None;
        } else {
            validation.set_issuer(&self.issuers);
            required.push("iss");
        }
        if self.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.audiences);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        validation
    }

    /// The key that checks a token with this header.
    fn key_for(&self, header: &Header) -> Result<(Arc<DecodingKey>, Algorithm), AuthError> {
        match &self.keys {
            Keys::Single(key, algorithm) => Ok((Arc::clone(key), *algorithm)),
            Keys::Jwks(file) => {
                let kid = header.kid.as_deref().ok_or(AuthError::UnknownKey)?;
                file.refresh(false);
                if let Some(found) = file.find(kid) {
                    return Ok(found);
                }
                // A key added a moment ago: look at the file now rather than at the next check.
                file.refresh(true);
                file.find(kid).ok_or(AuthError::UnknownKey)
            }
        }
    }
}

impl JwksFile {
    fn find(&self, kid: &str) -> Option<(Arc<DecodingKey>, Algorithm)> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state
            .keys
            .get(kid)
            .map(|(key, algorithm)| (Arc::clone(key), *algorithm))
    }

    /// Re-reads the file if it changed; at most every [`JWKS_RECHECK`] unless `now`, and never
    /// more than once a second. A file that cannot be read or parsed keeps the keys in force.
    fn refresh(&self, now: bool) {
        {
            let state = self.state.read().unwrap_or_else(|p| p.into_inner());
            let since = state.checked.elapsed();
            if since < Duration::from_secs(1) || (!now && since < JWKS_RECHECK) {
                return;
            }
        }
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        state.checked = Instant::now();
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if modified.is_some() && modified == state.modified {
            return;
        }
        match read_jwks(&self.path) {
            Ok((keys, modified)) if !keys.is_empty() => {
                tracing::info!(path = %self.path.display(), keys = keys.len(), "JWKS file reloaded");
                state.keys = keys;
                state.modified = modified;
            }
            Ok(_) => {
                tracing::warn!(path = %self.path.display(), "JWKS file holds no usable key; keeping the keys in force")
            }
            Err(err) => {
                tracing::warn!(path = %self.path.display(), error = %err, "JWKS file unreadable; keeping the keys in force")
            }
        }
    }
}

type KeyMap = HashMap<String, (Arc<DecodingKey>, Algorithm)>;

/// The usable keys of a JWKS file (those with a `kid` and an algorithm that verifies), and the
/// file's modification time.
fn read_jwks(path: &Path) -> Result<(KeyMap, Option<SystemTime>), KeyError> {
    // The time first: a file replaced between the two is then read again at the next check.
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let text = std::fs::read_to_string(path)
        .map_err(|err| KeyError(format!("{}: {err}", path.display())))?;
    let set: JwkSet = serde_json::from_str(&text)
        .map_err(|err| KeyError(format!("{} is not a JWKS document: {err}", path.display())))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        if jwk
            .common
            .public_key_use
            .as_ref()
            .is_some_and(|usage| *usage != jsonwebtoken::jwk::PublicKeyUse::Signature)
        {
            continue;
        }
        let Some(kid) = jwk.common.key_id.clone() else {
            tracing::warn!(path = %path.display(), "a JWKS key without a kid is ignored");
            continue;
        };
        match (DecodingKey::from_jwk(jwk), algorithm_of(jwk)) {
            (Ok(key), Some(algorithm)) => {
                keys.insert(kid, (Arc::new(key), algorithm));
            }
            _ => {
                tracing::warn!(path = %path.display(), %kid, "a JWKS key that cannot check signatures is ignored")
            }
        }
    }
    Ok((keys, modified))
}

/// The algorithm a JWK checks: its `alg`, or the usual one for its key type.
fn algorithm_of(jwk: &Jwk) -> Option<Algorithm> {
    if let Some(alg) = jwk.common.key_algorithm {
        return Algorithm::try_from(alg).ok();
    }
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Some(Algorithm::ES256),
            EllipticCurve::P384 => Some(Algorithm::ES384),
            _ => None,
        },
        AlgorithmParameters::OctetKeyPair(_) => Some(Algorithm::EdDSA),
        AlgorithmParameters::OctetKey(_) => Some(Algorithm::HS256),
        _ => None,
    }
}

/// A caller-facing refusal for a library error.
fn refusal(err: &jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind;
    match err.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => AuthError::WrongAlgorithm,
        ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(claim.clone()),
        _ => AuthError::Invalid,
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Mints an HS256 token for `member_id`, valid for `ttl_secs` (development and tests).
pub fn mint_hs256(secret: &[u8], member_id: Uuid, ttl_secs: u64) -> Result<String, KeyError> {
    let claims = Claims {
        iss: Some("kith-dev".into()),
        ..Claims::for_member(member_id, ttl_secs)
    };
    mint(&claims, Algorithm::HS256, &EncodingKey::from_secret(secret))
}

/// Mints a token with arbitrary claims and key (tests of expiry and RS256).
pub fn mint(claims: &Claims, algorithm: Algorithm, key: &EncodingKey) -> Result<String, KeyError> {
    mint_with(&Header::new(algorithm), claims, key)
}

/// Mints a token with an arbitrary header (a `kid`, say).
pub fn mint_with(header: &Header, claims: &Claims, key: &EncodingKey) -> Result<String, KeyError> {
    jsonwebtoken::encode(header, claims, key).map_err(|err| KeyError(err.to_string()))
}

/// Seconds since the epoch, for building claims.
pub fn unix_now() -> u64 {
    now_secs()
}
