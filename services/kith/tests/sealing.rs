//! With a key-encryption key, a service stores every sealing key wrapped: the database alone (a
//! backup) holds nothing that opens personal data, and `kith rebuild` needs the KEK too.

use kith_platform::testing::{ServiceProcess, TestEnv, nats_url, with_token};
use kith_proto::membership as pb;
use kith_proto::membership::membership_service_client::MembershipServiceClient;
use uuid::Uuid;

const KITH: &str = env!("CARGO_BIN_EXE_kith");

async fn rebuild(env: &TestEnv, kek: Option<&str>) -> std::process::Output {
    let mut command = tokio::process::Command::new(KITH);
    command
        .args(["rebuild", "--service", "membership"])
        .env("DATABASE_URL", &env.db.url)
        .env("NATS_URL", nats_url())
        .env("RUST_LOG", "warn");
    if let Some(kek) = kek {
        command.env("KITH_SEALING_KEK", kek);
    }
    command.output().await.expect("kith rebuild")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_given_a_kek_stores_only_wrapped_keys() {
    let env = TestEnv::new().await;
    let kek = "5a".repeat(32);
    let kith = ServiceProcess::spawn(KITH, &["up", "--sealing-kek", &kek], &env).await;
    let mut client = MembershipServiceClient::connect(format!("http://{}", kith.grpc))
        .await
        .expect("connect");
    let member = Uuid::new_v4();
    client
        .create_community(with_token(
            &env.token(member),
            pb::CreateCommunityRequest {
                request_id: "sealed".into(),
                name: "Sealed".into(),
                description: String::new(),
                founder: Some(pb::ProfileInput {
                    display_name: "Ada Lovelace".into(),
                    handle: "ada".into(),
                    bio: "analytical engines".into(),
                }),
            },
        ))
        .await
        .expect("create");
    kith.signal("TERM");

    let pool = sqlx::PgPool::connect(&env.db.url).await.expect("connect");
    let keys: Vec<(Vec<u8>, Option<String>)> =
        sqlx::query_as("SELECT key, wrapped_by FROM membership.sealing_keys")
            .fetch_all(&pool)
            .await
            .expect("keys");
    assert!(!keys.is_empty());
    for (key, wrapped_by) in &keys {
        assert!(wrapped_by.is_some(), "a key stored unwrapped");
        assert_eq!(key.len(), 24 + 32 + 16);
    }

    // Rebuilding the read model opens the profiles again: with the KEK only.
    let refused = rebuild(&env, None).await;
    assert!(
        !refused.status.success(),
        "rebuilt without the KEK: {}{}",
        String::from_utf8_lossy(&refused.stdout),
        String::from_utf8_lossy(&refused.stderr)
    );
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("KEK"), "{said}");
    let rebuilt = rebuild(&env, Some(&kek)).await;
    assert!(
        rebuilt.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    let name: Option<String> =
        sqlx::query_scalar("SELECT display_name FROM membership.members WHERE member_id = $1")
            .bind(member)
            .fetch_one(&pool)
            .await
            .expect("member");
    assert_eq!(name.as_deref(), Some("Ada Lovelace"));
    pool.close().await;
}
