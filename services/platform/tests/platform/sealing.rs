//! Sealing: a sealed field opens while its subject's key exists and never again after erasure,
//! including when the erasure is part of an append.

use kith_platform::eventlog::{Append, Metadata};
use kith_platform::sealing::Sealer;

use crate::helpers::{event, log};

#[tokio::test]
async fn a_sealed_field_opens_until_its_subject_is_erased() {
    let (_db, log) = log().await;
    let sealer = Sealer::new(log.pool().clone());
    let key = sealer.key_for("member-a").await.unwrap();
    let other = sealer.key_for("member-b").await.unwrap();
    let sealed = key.seal("Ada Lovelace");
    let kept = other.seal("Grace Hopper");
    assert_ne!(sealed.ciphertext, b"Ada Lovelace");
    assert_eq!(sealed.subject, "member-a");
    // The same subject keeps its key.
    assert_eq!(
        sealer.key_for("member-a").await.unwrap().seal("x").key_id,
        sealed.key_id
    );

    let mut opener = sealer.opener();
    assert_eq!(
        opener.open(Some(&sealed)).await.unwrap().as_deref(),
        Some("Ada Lovelace")
    );

    let metadata = Metadata::default();
    log.append(Append {
        stream_type: "thing",
        stream_id: "s1",
        expected_version: 0,
        events: vec![event(0)],
        metadata: &metadata,
        command_key: None,
        erase_subjects: &["member-a".to_owned()],
    })
    .await
    .unwrap();

    let mut fresh = sealer.opener();
    assert_eq!(
        fresh.open(Some(&sealed)).await.unwrap(),
        None,
        "erased data must not open"
    );
    assert_eq!(
        fresh.open(Some(&kept)).await.unwrap().as_deref(),
        Some("Grace Hopper")
    );
    // A new key after erasure seals new data readable again, without reviving the old.
    let renewed = sealer.key_for("member-a").await.unwrap().seal("Ada again");
    assert_eq!(
        fresh.open(Some(&renewed)).await.unwrap().as_deref(),
        Some("Ada again")
    );
    assert_eq!(sealer.opener().open(Some(&sealed)).await.unwrap(), None);
}

#[tokio::test]
async fn tampered_ciphertext_does_not_open() {
    let (_db, log) = log().await;
    let sealer = Sealer::new(log.pool().clone());
    let mut sealed = sealer.key_for("member-a").await.unwrap().seal("secret");
    sealed.ciphertext[0] ^= 1;
    assert_eq!(sealer.opener().open(Some(&sealed)).await.unwrap(), None);
}

#[tokio::test]
async fn keys_wrapped_by_a_kek_open_only_with_it_and_rotate_to_a_new_one() {
    use kith_platform::sealing::Keks;
    let (_db, log) = log().await;
    let pool = log.pool().clone();
    let kek1 = "11".repeat(32);
    let kek2 = "22".repeat(32);
    let keks = |keys: &[&str]| Some(Keks::parse(keys.iter().copied()).unwrap());

    // Keys made before any KEK was configured are stored as they are.
    let plain = Sealer::with_keks(pool.clone(), None);
    let old = plain
        .key_for("member-a")
        .await
        .unwrap()
        .seal("Ada Lovelace");
    let raw: Vec<u8> = sqlx::query_scalar("SELECT key FROM sealing_keys")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(raw.len(), 32);

    // The first start with a KEK wraps them; new keys are wrapped from the start.
    let with1 = Sealer::with_keks(pool.clone(), keks(&[&kek1]));
    assert_eq!(with1.rewrap().await.unwrap(), 1);
    assert_eq!(with1.rewrap().await.unwrap(), 0, "once");
    let new = with1
        .key_for("member-b")
        .await
        .unwrap()
        .seal("Grace Hopper");
    let stored: Vec<(Vec<u8>, Option<String>)> =
        sqlx::query_as("SELECT key, wrapped_by FROM sealing_keys")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(stored.len(), 2);
    for (key, wrapped_by) in &stored {
        assert_ne!(key, &raw, "the old key is no longer stored as it is");
        assert_eq!(key.len(), 24 + 32 + 16, "nonce, key, tag");
        assert!(wrapped_by.is_some());
    }
    let mut opener = with1.opener();
    assert_eq!(
        opener.open(Some(&old)).await.unwrap().as_deref(),
        Some("Ada Lovelace")
    );
    assert_eq!(
        opener.open(Some(&new)).await.unwrap().as_deref(),
        Some("Grace Hopper")
    );

    // The database alone (no KEK, or another one) opens nothing, and says why.
    for (what, sealer) in [
        ("no KEK", Sealer::with_keks(pool.clone(), None)),
        (
            "another KEK",
            Sealer::with_keks(pool.clone(), keks(&[&kek2])),
        ),
    ] {
        let refused = sealer.opener().open(Some(&old)).await.unwrap_err();
        assert!(refused.to_string().contains("KEK"), "{what}: {refused}");
        assert!(sealer.key_for("member-a").await.is_err(), "{what}");
    }
    assert!(
        Sealer::with_keks(pool.clone(), None)
            .rewrap()
            .await
            .is_err(),
        "a process without the KEK refuses to start"
    );

    // Rotation: the new KEK first, the old one after; every key moves to the new one.
    let rotating = Sealer::with_keks(pool.clone(), keks(&[&kek2, &kek1]));
    assert_eq!(rotating.rewrap().await.unwrap(), 2);
    let with2 = Sealer::with_keks(pool.clone(), keks(&[&kek2]));
    let mut opener = with2.opener();
    assert_eq!(
        opener.open(Some(&old)).await.unwrap().as_deref(),
        Some("Ada Lovelace")
    );
    assert!(
        Sealer::with_keks(pool.clone(), keks(&[&kek1]))
            .opener()
            .open(Some(&new))
            .await
            .is_err(),
        "the retired KEK opens nothing"
    );

    // A replica still on the old KEK makes a key during the rollout; the new configuration moves
    // it under the new KEK the first time it uses it.
    let straggler = Sealer::with_keks(pool.clone(), keks(&[&kek1]))
        .key_for("member-c")
        .await
        .unwrap()
        .seal("Katherine Johnson");
    let rotated = Sealer::with_keks(pool.clone(), keks(&[&kek2, &kek1]));
    rotated.key_for("member-c").await.unwrap();
    assert_eq!(
        with2
            .opener()
            .open(Some(&straggler))
            .await
            .unwrap()
            .as_deref(),
        Some("Katherine Johnson")
    );

    // A wrapped key is bound to its row: copied onto another key's row, it does not unwrap.
    sqlx::query(
        "UPDATE sealing_keys SET key = (SELECT key FROM sealing_keys WHERE subject = 'member-a')
         WHERE subject = 'member-b'",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert!(with2.opener().open(Some(&new)).await.is_err());

    assert!(Keks::parse(["abc"]).is_err());
    assert!(Keks::parse(["zz".repeat(32).as_str()]).is_err());
}

#[test]
fn a_bad_kek_is_refused_naming_the_flag() {
    use clap::Parser;
    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        sealing: kith_platform::config::SealingArgs,
    }
    let args = Args::try_parse_from(["test", "--sealing-kek", "not-hex"]).unwrap();
    let refused = args.sealing.keks().unwrap_err().to_string();
    assert!(refused.contains("--sealing-kek"), "{refused}");
    assert!(refused.contains("64 hex digits"), "{refused}");
    assert!(
        !refused.contains("not-hex"),
        "the key is not echoed: {refused}"
    );
}

#[tokio::test]
async fn the_key_lookup_is_planned_at_each_call_not_kept_from_when_the_table_was_small() {
    // A plan kept from while sealing_keys was small scans the whole table; without an ANALYZE
    // (autovacuum off or behind) PostgreSQL never replaces it, and each message read then
    // scanned every key. A bench found thousands of such scans a minute.
    let db = kith_platform::testing::TestDatabase::create().await;
    let _migrated = db.pool("plans", &[]).await;
    let schema = kith_platform::db::Schema::parse("plans").unwrap();
    // One connection: the statements it keeps prepared are the ones these calls made.
    let pool = kith_platform::db::connect(&db.url, &schema, 1)
        .await
        .unwrap();
    let sealer = Sealer::new(pool.clone());
    let mut sealed = Vec::new();
    for i in 0..3 {
        let key = sealer.key_for(&format!("member-{i}")).await.unwrap();
        sealed.push(key.seal(&format!("field {i}")));
    }
    let ids: Vec<uuid::Uuid> = sealed.iter().map(|s| s.key_id.parse().unwrap()).collect();
    // More calls than PostgreSQL makes before it settles on a generic plan.
    for _ in 0..8 {
        let mut opener = sealer.opener();
        opener.prefetch(&ids).await.unwrap();
        assert_eq!(
            opener.open(Some(&sealed[2])).await.unwrap().as_deref(),
            Some("field 2")
        );
    }
    let kept = async |pattern: &str| -> Vec<String> {
        sqlx::query_scalar("SELECT statement FROM pg_prepared_statements WHERE statement LIKE $1")
            .bind(pattern)
            .fetch_all(&pool)
            .await
            .unwrap()
    };
    // The connection keeps other statements prepared (so the view shows what it keeps),
    assert!(
        !kept("%FROM sealing_keys WHERE subject = $1%")
            .await
            .is_empty(),
        "the subject lookup is kept prepared"
    );
    // but not the lookup of many keys.
    assert_eq!(
        kept("%FROM sealing_keys WHERE key_id = ANY%").await,
        Vec::<String>::new()
    );
}
