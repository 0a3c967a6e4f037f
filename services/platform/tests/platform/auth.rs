//! Bearer tokens: HS256 and RS256 accepted when valid, refused with a reason otherwise.

use jsonwebtoken::Header;
use jsonwebtoken::{Algorithm, EncodingKey};
use kith_platform::auth::{
    AuthError, Authenticator, Claims, mint, mint_hs256, mint_with, unix_now,
};
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
    assert_eq!(
        auth.authenticate(&bearer(&forged)),
        Err(AuthError::BadSignature)
    );
    let expired = mint(
        &Claims {
            sub: Uuid::new_v4().to_string(),
            exp: unix_now() - 600,
            iat: unix_now() - 1200,
            iss: None,
            nbf: None,
            aud: None,
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
            nbf: None,
            aud: None,
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
        nbf: None,
        aud: None,
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

fn claims(member: Uuid) -> Claims {
    Claims::for_member(member, 600)
}

fn hs(claims: &Claims) -> String {
    mint(
        claims,
        Algorithm::HS256,
        &EncodingKey::from_secret(b"s3cret"),
    )
    .unwrap()
}

#[test]
fn issuer_audience_and_not_before_are_checked() {
    let member = Uuid::new_v4();
    let auth = Authenticator::hs256(b"s3cret")
        .with_issuers(vec!["https://id.example".into()])
        .with_audiences(vec!["kith".into()]);
    let good = Claims {
        iss: Some("https://id.example".into()),
        aud: Some("kith".into()),
        ..claims(member)
    };
    assert_eq!(
        auth.authenticate(&bearer(&hs(&good))).unwrap().member_id,
        member
    );
    let cases = [
        (
            Claims {
                iss: Some("https://evil.example".into()),
                ..good.clone()
            },
            AuthError::WrongIssuer,
        ),
        (
            Claims {
                aud: Some("someone-else".into()),
                ..good.clone()
            },
            AuthError::WrongAudience,
        ),
        (
            Claims {
                iss: None,
                ..good.clone()
            },
            AuthError::MissingClaim("iss".into()),
        ),
        (
            Claims {
                nbf: Some(unix_now() + 3600),
                ..good
            },
            AuthError::NotYetValid,
        ),
    ];
    for (claims, refusal) in cases {
        assert_eq!(auth.authenticate(&bearer(&hs(&claims))), Err(refusal));
    }
    // Without issuers or audiences configured, any are accepted; nbf always counts.
    let open = Authenticator::hs256(b"s3cret");
    let elsewhere = Claims {
        iss: Some("https://evil.example".into()),
        aud: Some("other".into()),
        ..claims(member)
    };
    assert!(open.authenticate(&bearer(&hs(&elsewhere))).is_ok());
    let early = Claims {
        nbf: Some(unix_now() + 3600),
        ..claims(member)
    };
    assert_eq!(
        open.authenticate(&bearer(&hs(&early))),
        Err(AuthError::NotYetValid)
    );
}

#[test]
fn refusals_say_what_to_fix_without_echoing_library_internals() {
    use base64::Engine;
    let auth = Authenticator::hs256(b"s3cret");
    let encode = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
    let body = encode(&format!(
        r#"{{"sub":"{}","exp":{}}}"#,
        Uuid::new_v4(),
        unix_now() + 600
    ));
    let unsigned = format!("{}.{body}.", encode(r#"{"alg":"none","typ":"JWT"}"#));
    let garbage_header = format!("{}.{body}.sig", encode("not json"));
    for token in [
        unsigned.as_str(),
        garbage_header.as_str(),
        "a.b.c",
        "nodots",
    ] {
        let refused = auth.authenticate(&bearer(token)).unwrap_err();
        let message = refused.to_string();
        for internal in ["JSON", "variant", "expected one of", "Base64", "base64"] {
            assert!(!message.contains(internal), "{token}: {message}");
        }
    }
    assert_eq!(
        auth.authenticate(&bearer(&unsigned)),
        Err(AuthError::WrongAlgorithm)
    );
}

fn rs_with_kid(member: Uuid, kid: &str, private: &[u8]) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    mint_with(
        &header,
        &claims(member),
        &EncodingKey::from_rsa_pem(private).unwrap(),
    )
    .unwrap()
}

#[test]
fn a_jwks_file_rotates_keys_without_a_restart() {
    const PRIVATE2: &[u8] = include_bytes!("fixtures/test_rsa2_private.pem");
    let dir = std::env::temp_dir().join(format!("kith-jwks-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("jwks.json");
    let fixture = |name: &str| {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/platform/fixtures")
                .join(name),
        )
        .unwrap()
    };
    std::fs::write(&path, fixture("test_jwks_key1.json")).unwrap();
    let auth = Authenticator::jwks_file(&path).unwrap();
    let member = Uuid::new_v4();
    let old = rs_with_kid(member, "key-1", PRIVATE);
    let new = rs_with_kid(member, "key-2", PRIVATE2);
    assert_eq!(auth.authenticate(&bearer(&old)).unwrap().member_id, member);
    assert_eq!(auth.authenticate(&bearer(&new)), Err(AuthError::UnknownKey));
    // A token naming key-1 but signed by key-2 does not verify.
    let mislabelled = rs_with_kid(member, "key-1", PRIVATE2);
    assert_eq!(
        auth.authenticate(&bearer(&mislabelled)),
        Err(AuthError::BadSignature)
    );

    // The operator adds key-2: tokens of both verify, with no restart (an unknown kid makes the
    // authenticator look at the file again, at most once a second).
    std::fs::write(&path, fixture("test_jwks_both.json")).unwrap();
    kith_platform::testing::eventually_sync(std::time::Duration::from_secs(5), || {
        auth.authenticate(&bearer(&new)).is_ok()
    });
    assert!(auth.authenticate(&bearer(&old)).is_ok());

    // Then retires key-1.
    std::fs::write(&path, fixture("test_jwks_key2.json")).unwrap();
    kith_platform::testing::eventually_sync(std::time::Duration::from_secs(10), || {
        auth.authenticate(&bearer(&old)) == Err(AuthError::UnknownKey)
    });
    assert!(auth.authenticate(&bearer(&new)).is_ok());

    // A broken file keeps the keys in force.
    std::fs::write(&path, b"{ not json").unwrap();
    assert!(auth.authenticate(&bearer(&new)).is_ok());
    // A token without a kid is refused: the file has several keys to choose from.
    let no_kid = mint(
        &claims(member),
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(PRIVATE2).unwrap(),
    )
    .unwrap();
    assert_eq!(
        auth.authenticate(&bearer(&no_kid)),
        Err(AuthError::UnknownKey)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_development_secret_serves_only_on_loopback_unless_insecure_is_said() {
    use clap::Parser;
    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        auth: kith_platform::config::AuthArgs,
    }
    let parse = |args: &[&str]| {
        Args::try_parse_from(std::iter::once("test").chain(args.iter().copied()))
            .unwrap()
            .auth
    };
    let loopback: std::net::SocketAddr = "127.0.0.1:50051".parse().unwrap();
    let exposed: std::net::SocketAddr = "0.0.0.0:50051".parse().unwrap();

    let dev = parse(&[]);
    let auth = dev.authenticator().unwrap();
    assert!(auth.is_development());
    assert!(dev.check_exposure(&auth, loopback).is_ok());
    let refused = dev.check_exposure(&auth, exposed).unwrap_err().to_string();
    assert!(refused.contains("--jwt-jwks-file"), "{refused}");
    assert!(refused.contains("--insecure-dev-auth"), "{refused}");

    let insecure = parse(&["--insecure-dev-auth"]);
    let auth = insecure.authenticator().unwrap();
    assert!(insecure.check_exposure(&auth, exposed).is_ok());

    let secret = parse(&["--jwt-secret", "a-real-secret-of-32-bytes-or-so!"]);
    let auth = secret.authenticator().unwrap();
    assert!(!auth.is_development());
    assert!(secret.check_exposure(&auth, exposed).is_ok());

    let short = parse(&["--jwt-secret", "short"]);
    assert!(short.authenticator().is_err());
}

#[test]
fn an_audience_may_be_a_list() {
    use base64::Engine;
    let member = Uuid::new_v4();
    let auth = Authenticator::hs256(b"s3cret").with_audiences(vec!["kith".into()]);
    let encode = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
    let token = |aud: &str| {
        let signing = format!(
            "{}.{}",
            encode(r#"{"alg":"HS256","typ":"JWT"}"#),
            encode(&format!(
                r#"{{"sub":"{member}","exp":{},"aud":{aud}}}"#,
                unix_now() + 600
            ))
        );
        // Signed as the library signs, so only the claims differ from a minted token.
        let signature = jsonwebtoken::crypto::sign(
            signing.as_bytes(),
            &EncodingKey::from_secret(b"s3cret"),
            Algorithm::HS256,
        )
        .unwrap();
        format!("{signing}.{signature}")
    };
    assert_eq!(
        auth.authenticate(&bearer(&token(r#"["account","kith"]"#)))
            .unwrap()
            .member_id,
        member
    );
    assert_eq!(
        auth.authenticate(&bearer(&token(r#"["account","other"]"#))),
        Err(AuthError::WrongAudience)
    );
}
