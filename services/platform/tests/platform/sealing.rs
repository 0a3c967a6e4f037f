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
