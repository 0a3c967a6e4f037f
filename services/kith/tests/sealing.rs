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

/// Runs `kith <args>` against the environment, the KEK given when `kek` is.
async fn kith(env: &TestEnv, args: &[&str], kek: Option<&str>) -> std::process::Output {
    let mut command = tokio::process::Command::new(KITH);
    command
        .args(args)
        .env("DATABASE_URL", &env.db.url)
        .env("NATS_URL", nats_url())
        .env(
            "KITH_NATS_NAMESPACE",
            env.args.nats.nats_namespace.as_deref().unwrap_or_default(),
        )
        .env("RUST_LOG", "warn");
    if let Some(kek) = kek {
        command.env("KITH_SEALING_KEK", kek);
    }
    command.output().await.expect("kith")
}

/// The MemberJoined events of an export, by member id.
fn joined(jsonl: &[u8]) -> std::collections::HashMap<String, serde_json::Value> {
    String::from_utf8_lossy(jsonl)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("json"))
        .filter(|e| e["event_type"] == "kith.membership.v1.MemberJoined")
        .map(|e| {
            (
                e["event"]["member_id"]
                    .as_str()
                    .expect("member_id")
                    .to_owned(),
                e["event"]["profile"].clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_opens_the_sealed_fields_it_names_only_with_the_kek_and_never_an_erased_ones() {
    use kith_platform::testing::community::Community;
    let env = TestEnv::new().await;
    let kek = "6b".repeat(32);
    let up = ServiceProcess::spawn(KITH, &["up", "--sealing-kek", &kek], &env).await;
    let community = Community::create(up.grpc, 1).await;
    let member = community.members[0];
    let export = [
        "replay",
        "--source",
        "postgres",
        "--open-sealed",
        "display_name",
    ];

    // Without the KEK the keys do not open: refused, and nothing is written.
    let refused = kith(&env, &export, None).await;
    assert!(!refused.status.success());
    assert!(refused.stdout.is_empty());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("KEK"), "{said}");
    // A field no event seals is named back with the ones there are.
    let unknown = kith(&env, &["replay", "--open-sealed", "password"], Some(&kek)).await;
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        !unknown.status.success() && said.contains("--open-sealed") && said.contains("handle"),
        "{said}"
    );

    // With it, the field named opens; the others stay sealed.
    let opened = kith(&env, &export, Some(&kek)).await;
    assert!(
        opened.status.success(),
        "{}",
        String::from_utf8_lossy(&opened.stderr)
    );
    let profiles = joined(&opened.stdout);
    let profile = &profiles[&member.to_string()];
    assert!(
        profile["display_name"]
            .as_str()
            .is_some_and(|name| name.starts_with("Person m")),
        "{profile}"
    );
    assert!(profile["handle"].is_object(), "{profile}");
    let said = String::from_utf8_lossy(&opened.stderr);
    assert!(said.contains("sealed fields, 0 erased (null)"), "{said}");

    // Once the member is erased, their fields are gone from every export: null, not sealed.
    kith_platform::testing::community::membership(up.grpc)
        .await
        .erase_member(community.as_member(
            member,
            kith_proto::membership::EraseMemberRequest {
                request_id: Uuid::new_v4().to_string(),
                community_id: community.id.clone(),
                member_id: member.to_string(),
            },
        ))
        .await
        .expect("erase");
    let after = kith(&env, &export, Some(&kek)).await;
    assert!(
        after.status.success(),
        "{}",
        String::from_utf8_lossy(&after.stderr)
    );
    let profiles = joined(&after.stdout);
    assert!(profiles[&member.to_string()]["display_name"].is_null());
    let said = String::from_utf8_lossy(&after.stderr);
    assert!(!said.contains(", 0 erased"), "{said}");
    assert!(profiles[&community.coach.to_string()]["display_name"].is_string());
    // From the bus too, once the relay has published everything.
    kith_platform::testing::eventually(
        std::time::Duration::from_secs(10),
        "the relay to publish the erasure",
        || async {
            let out = kith(
                &env,
                &[
                    "replay",
                    "--source",
                    "nats",
                    "--open-sealed",
                    "display_name",
                ],
                Some(&kek),
            )
            .await;
            (out.stdout == after.stdout).then_some(())
        },
    )
    .await;
    up.signal("TERM");
}
