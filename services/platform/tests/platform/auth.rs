//! Bearer tokens: HS256 and RS256 accepted when valid, refused with a reason otherwise.

use jsonwebtoken::{Algorithm, EncodingKey};
use kith_platform::auth::{AuthError, Authenticator, Claims, mint, mint_hs256, unix_now};
use tonic::metadata::MetadataMap;
use uuid::Uuid;

// A key pair made for these tests only.
const PRIVATE: &[u8] = include_bytes!("fixtures/test_rsa_private.pem");
const PUBLIC: &[u8] = include_bytes!("fixtures/test_rsa_public.pem");

fn bearer(token: &str) -> MetadataMap {
    let mut map = MetadataMap::new();
    map.insert("authorization", format!("Bearer {token}").parse().unwrap());
    map
}

#[test]
fn a_valid_hs256_token_names_the_caller() {
    let member = Uuid::new_v4();
    let token = mint_hs256(b"s3cret", member, 60).unwrap();
    let caller = Authenticator::hs256(b"s3cret")
        .authenticate(&bearer(&token))
        .unwrap();
    assert_eq!(caller.member_id, member);
}

#[test]
fn tokens_are_refused_with_the_reason() {
    let auth = Authenticator::hs256(b"s3cret");
    assert_eq!(
        auth.authenticate(&MetadataMap::new()),
        Err(AuthError::Missing)
    );
    let mut basic = MetadataMap::new();
    basic.insert("authorization", "Basic abc".parse().unwrap());
    assert_eq!(auth.authenticate(&basic), Err(AuthError::Malformed));
    let forged = mint_hs256(b"other", Uuid::new_v4(), 60).unwrap();
    assert!(matches!(
        auth.authenticate(&bearer(&forged)),
        Err(AuthError::Invalid(_))
    ));
    let expired = mint(
        &Claims {
            sub: Uuid::new_v4().to_string(),
            exp: unix_now() - 600,
            iat: unix_now() - 1200,
            iss: None,
        },
        Algorithm::HS256,
        &EncodingKey::from_secret(b"s3cret"),
    )
    .unwrap();
    assert_eq!(
        auth.authenticate(&bearer(&expired)),
        Err(AuthError::Expired)
    );
    let not_a_member = mint(
        &Claims {
            sub: "alice".into(),
            exp: unix_now() + 600,
            iat: unix_now(),
            iss: None,
        },
        Algorithm::HS256,
        &EncodingKey::from_secret(b"s3cret"),
    )
    .unwrap();
    assert_eq!(
        auth.authenticate(&bearer(&not_a_member)),
        Err(AuthError::BadSubject)
    );
}

#[test]
fn rs256_tokens_are_checked_with_the_public_key() {
    let member = Uuid::new_v4();
    let claims = Claims {
        sub: member.to_string(),
        exp: unix_now() + 600,
        iat: unix_now(),
        iss: Some("idp".into()),
    };
    let token = mint(
        &claims,
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(PRIVATE).unwrap(),
    )
    .unwrap();
    let auth = Authenticator::rs256(PUBLIC).unwrap();
    assert_eq!(
        auth.authenticate(&bearer(&token)).unwrap().member_id,
        member
    );
    // An HS256 token signed with the public key as secret (algorithm confusion) is refused.
    let confused = mint(&claims, Algorithm::HS256, &EncodingKey::from_secret(PUBLIC)).unwrap();
    assert!(auth.authenticate(&bearer(&confused)).is_err());
}
