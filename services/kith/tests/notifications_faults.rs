//! Exactly once per channel when `kith up` dies between sending a notification and recording
//! that it did (aborted at that point, as SIGKILL would), then comes back: the intent was
//! recorded before sending, so the restarted process knows the send may have happened. The SMTP
//! sink gets the email once (an interrupted email is never sent again: email has no idempotency
//! key); the webhook receiver gets the same `webhook-id` again, which is the Standard Webhooks
//! idempotency key a receiver drops duplicates by, so it processes the event once.

use std::time::Duration;

use kith_platform::testing::community::{Community, as_member, rid};
use kith_platform::testing::sinks::{HttpReceiver, SmtpSink};
use kith_platform::testing::{ServiceProcess, TestEnv, eventually};
use kith_proto::messaging as msg;
use kith_proto::messaging::messaging_service_client::MessagingServiceClient;
use kith_proto::notifications as pb;
use kith_proto::notifications::notifications_service_client::NotificationsServiceClient;
use uuid::Uuid;

const KITH: &str = env!("CARGO_BIN_EXE_kith");
const PATIENCE: Duration = Duration::from_secs(30);

/// `kith up` sending through `sink` and to loopback webhooks, aborting after its first send on
/// `fault` when given.
async fn kith(env: &TestEnv, sink: &SmtpSink, fault: Option<&str>) -> ServiceProcess {
    let mut vars = vec![
        ("KITH_SMTP_URL", sink.url()),
        ("KITH_EMAIL_BATCH_WINDOW", "1s".to_owned()),
        ("KITH_WEBHOOK_ALLOW_PRIVATE", "true".to_owned()),
        ("KITH_WEBHOOK_FIRST_RETRY", "100ms".to_owned()),
    ];
    if let Some(channel) = fault {
        vars.push(("KITH_FAULT_ABORT_AFTER_SEND", channel.to_owned()));
    }
    ServiceProcess::spawn_with_vars(KITH, &["up"], env, &vars).await
}

/// A cohort of two in `kith` (the author and the mentioned), the mentioned reached as
/// `email`/`webhook`; returns the notification of a mention of them.
async fn mention(
    env: &TestEnv,
    kith: &ServiceProcess,
    email: &str,
    webhook: &str,
) -> (Community, Uuid, String) {
    let (community, cohort) = pair(env, kith, email, webhook).await;
    let message = post_mention(kith, &community, &cohort).await;
    let mentioned = community.members[1];
    (community, mentioned, message)
}

/// A cohort of two in `kith`: the author (member 0) and the one they mention (member 1), reached
/// as `email`/`webhook`, both seated as far as messaging and notifications know.
async fn pair(
    env: &TestEnv,
    kith: &ServiceProcess,
    email: &str,
    webhook: &str,
) -> (Community, String) {
    let community = Community::create(kith.grpc, 2).await;
    let cohort = community.open_cohort(10).await;
    let [author, mentioned] = [community.members[0], community.members[1]];
    community.join(&cohort, author).await;
    community.join(&cohort, mentioned).await;
    // Messaging must know both seats before the post, or the mention stays plain text; and so
    // must notifications, or the mentioned member reads nothing there.
    let database = sqlx::PgPool::connect(&env.db.url).await.expect("database");
    let cohort_id: Uuid = cohort.parse().expect("cohort id");
    for sql in [
        "SELECT count(*) FROM messaging.cohort_places WHERE cohort_id = $1 AND place = 'seat'",
        "SELECT count(*) FROM notifications.places WHERE cohort_id = $1 AND place = 'seat'",
    ] {
        eventually(
            PATIENCE,
            "both seats to reach messaging and notifications",
            || {
                let database = database.clone();
                async move {
                    let seated: i64 = sqlx::query_scalar(sql)
                        .bind(cohort_id)
                        .fetch_one(&database)
                        .await
                        .unwrap_or(0);
                    (seated == 2).then_some(())
                }
            },
        )
        .await;
    }
    database.close().await;
    let mut notifications = NotificationsServiceClient::connect(format!("http://{}", kith.grpc))
        .await
        .expect("connect");
    let set = notifications
        .set_contact(as_member(
            mentioned,
            pb::SetContactRequest {
                request_id: rid(),
                email: email.into(),
                webhook_url: webhook.into(),
            },
        ))
        .await
        .expect("contact")
        .into_inner();
    notifications
        .get_contact(as_member(
            mentioned,
            pb::GetContactRequest {
                min_position: set.committed.expect("committed").position,
            },
        ))
        .await
        .expect("contact applied");
    (community, cohort)
}

/// Posts, through `kith`, a new thread in `cohort` by member 0 that mentions member 1; returns
/// the message's id.
async fn post_mention(kith: &ServiceProcess, community: &Community, cohort: &str) -> String {
    let author = community.members[0];
    let messaging = MessagingServiceClient::connect(format!("http://{}", kith.grpc))
        .await
        .expect("connect");
    let request = msg::PostMessageRequest {
        request_id: rid(),
        conversation_id: cohort.to_owned(),
        thread_id: String::new(),
        title: String::new(),
        body: format!("@{} over to you", community.handles[1]),
    };
    // Retried (same request id) until messaging knows both seats and the mention resolves.
    let posted = eventually(PATIENCE, "the mention to be posted and resolved", || {
        let mut messaging = messaging.clone();
        let request = request.clone();
        async move {
            let reply = messaging
                .post_message(as_member(author, request))
                .await
                .ok()?;
            Some(reply.into_inner())
        }
    })
    .await;
    posted.message_id
}

/// `kith <args>` as an operator runs it against `env`'s database.
async fn operator(env: &TestEnv, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(KITH)
        .args(args)
        .env("DATABASE_URL", &env.db.url)
        .output()
        .await
        .unwrap_or_else(|err| panic!("run kith {args:?}: {err}"))
}

/// The status of the one delivery on `channel` in `env`'s ledger that was to go (the others,
/// for the cohort's facilitator, are withheld), once it is `wanted`.
async fn status_becomes(env: &TestEnv, channel: pb::Channel, wanted: &str) -> (String, i32) {
    let pool = sqlx::PgPool::connect(&env.db.url).await.expect("database");
    let found = eventually(PATIENCE, "the delivery's status", || {
        let pool = pool.clone();
        async move {
            let row: Option<(String, String, i32)> = sqlx::query_as(
                "SELECT status, reason, attempts FROM notifications.deliveries
                 WHERE channel = $1 AND status <> 'withheld'",
            )
            .bind(channel as i32)
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten();
            row.filter(|(status, _, _)| status == wanted)
                .map(|(_, reason, attempts)| (reason, attempts))
        }
    })
    .await;
    pool.close().await;
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_interrupted_after_sending_is_not_sent_again() {
    let env = TestEnv::new().await;
    let sink = SmtpSink::start().await;
    let dying = kith(&env, &sink, Some("email")).await;
    mention(
        &env,
        &dying,
        &format!("{}@example.org", Uuid::new_v4().simple()),
        "",
    )
    .await;
    let emails = sink.wait_for(1, PATIENCE).await;
    assert_eq!(emails.len(), 1);
    // It died right after the send, before recording it.
    let mut dying = dying;
    let exit = tokio::time::timeout(PATIENCE, dying.child.wait())
        .await
        .expect("the process dies")
        .expect("exit status");
    assert!(!exit.success(), "aborted: {exit:?}");

    let _back = kith(&env, &sink, None).await;
    let (reason, attempts) = status_becomes(&env, pb::Channel::Email, "cancelled").await;
    assert_eq!(reason, "INTERRUPTED_NOT_RESENT");
    assert_eq!(attempts, 1);
    // The restarted worker recorded its decision before anything else: nothing went again.
    assert_eq!(
        sink.emails().len(),
        1,
        "the interrupted email was not sent again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_interrupted_after_sending_goes_again_under_the_same_id() {
    let env = TestEnv::new().await;
    let sink = SmtpSink::start().await;
    let receiver = HttpReceiver::start(0).await;
    let mut dying = kith(&env, &sink, Some("webhook")).await;
    mention(&env, &dying, "", &receiver.url("/kith")).await;
    receiver.wait_for_successes(1, PATIENCE).await;
    let exit = tokio::time::timeout(PATIENCE, dying.child.wait())
        .await
        .expect("the process dies")
        .expect("exit status");
    assert!(!exit.success(), "aborted: {exit:?}");

    let _back = kith(&env, &sink, None).await;
    let (_, attempts) = status_becomes(&env, pb::Channel::Webhook, "sent").await;
    assert_eq!(attempts, 2);
    let requests = receiver.requests();
    assert_eq!(
        requests.len(),
        2,
        "sent before the crash, and again after: {requests:?}"
    );
    let ids: std::collections::BTreeSet<&str> = requests
        .iter()
        .map(|r| r.headers["webhook-id"].as_str())
        .collect();
    assert_eq!(ids.len(), 1, "one webhook-id: a receiver keeps one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_keeps_failing_is_parked_and_listed_for_the_operator() {
    let env = TestEnv::new().await;
    let sink = SmtpSink::start().await;
    let receiver = HttpReceiver::start(usize::MAX).await;
    let vars = [
        ("KITH_SMTP_URL", sink.url()),
        ("KITH_WEBHOOK_ALLOW_PRIVATE", "true".to_owned()),
        ("KITH_WEBHOOK_FIRST_RETRY", "100ms".to_owned()),
        ("KITH_WEBHOOK_MAX_ATTEMPTS", "2".to_owned()),
    ];
    let kith = ServiceProcess::spawn_with_vars(KITH, &["up"], &env, &vars).await;
    let (_, mentioned, _) = mention(&env, &kith, "", &receiver.url("/down")).await;
    let (error, attempts) = status_becomes(&env, pb::Channel::Webhook, "parked").await;
    assert_eq!(attempts, 2);
    assert!(error.contains("503"), "{error}");
    let listed = operator(&env, &["notifications", "parked", "--json"]).await;
    assert!(listed.status.success(), "{listed:?}");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON"))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["member_id"], mentioned.to_string());
    assert_eq!(lines[0]["channel"], "CHANNEL_WEBHOOK");
    assert_eq!(lines[0]["attempts"], 2);
    assert_eq!(lines[0]["kind"], "KIND_MENTION");
    let table = operator(&env, &["notifications", "parked"]).await;
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains(&mentioned.to_string()) && text.contains("1 parked"),
        "{text}"
    );

    // The alert's gauge and the step counter show it.
    let parked_now = |wanted: f64| {
        let kith = &kith;
        eventually(PATIENCE, "the parked gauge", move || async move {
            let page = kith.scrape().await;
            ServiceProcess::series_value(&page, r#"kith_notifications_parked{channel="webhook"}"#)
                .filter(|value| *value == wanted)
        })
    };
    parked_now(1.0).await;
    assert_eq!(
        ServiceProcess::series_value(
            &kith.scrape().await,
            r#"kith_notification_deliveries_total{channel="webhook",outcome="parked"}"#
        ),
        Some(1.0)
    );

    // The endpoint is fixed; the operator sends what was parked on again.
    let unknown = Uuid::new_v4().to_string();
    let refused = operator(&env, &["notifications", "requeue", &unknown]).await;
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains(&unknown),
        "{refused:?}"
    );
    receiver.recover();
    let notification = lines[0]["notification_id"].as_str().expect("an id");
    let requeued = operator(&env, &["notifications", "requeue", notification]).await;
    assert!(requeued.status.success(), "{requeued:?}");
    assert!(
        String::from_utf8_lossy(&requeued.stdout).contains("requeued 1 parked delivery"),
        "{requeued:?}"
    );
    let (reason, attempts) = status_becomes(&env, pb::Channel::Webhook, "sent").await;
    assert_eq!(
        (reason.as_str(), attempts),
        ("SENT", 1),
        "a fresh set of attempts"
    );
    let delivered = receiver
        .wait_for_successes(1, Duration::from_secs(30))
        .await;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 3, "two failures, then the requeued one");
    assert!(
        requests
            .iter()
            .all(|r| r.headers["webhook-id"] == delivered[0].headers["webhook-id"]),
        "one webhook-id throughout"
    );
    let listed = operator(&env, &["notifications", "parked", "--json"]).await;
    assert!(
        listed.stdout.is_empty(),
        "nothing parked any more: {listed:?}"
    );
}

/// Three replicas of notifications on one database and one NATS (a `kith up` of every service
/// and two of notifications alone, as production scales it), two of them killed (SIGKILL) while
/// mentions arrive: every mention is decided once, and every email and webhook goes once. An
/// email a killed replica may have been sending is never sent again; a webhook may be, under the
/// same `webhook-id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_decide_and_deliver_each_mention_once_when_two_are_killed() {
    const MENTIONS: usize = 9;
    let env = TestEnv::new().await;
    let sink = SmtpSink::start().await;
    let receiver = HttpReceiver::start(0).await;
    let vars = [
        ("KITH_SMTP_URL", sink.url()),
        ("KITH_EMAIL_BATCH_WINDOW", "1s".to_owned()),
        ("KITH_WEBHOOK_ALLOW_PRIVATE", "true".to_owned()),
        // Small pools: three processes share the test server's connections with other tests.
        ("DATABASE_MAX_CONNECTIONS", "4".to_owned()),
    ];
    let mut alone = Vec::new();
    for _ in 0..2 {
        alone.push(
            ServiceProcess::spawn_with_vars(
                KITH,
                &["up", "--service", "notifications"],
                &env,
                &vars,
            )
            .await,
        );
    }
    // Started last, so the first of those alone leads delivery, reminders and the relay, and
    // is the first one killed.
    let all = ServiceProcess::spawn_with_vars(KITH, &["up"], &env, &vars).await;
    let address = "mentioned@example.org";
    let (community, cohort) = pair(&env, &all, address, &receiver.url("/hook")).await;
    let mentioned = community.members[1];
    let mut messages = Vec::new();
    for i in 0..MENTIONS {
        // Whichever leads delivery or holds a batch of the rules, it is gone by the end.
        if i == MENTIONS / 3 {
            alone[0].signal("KILL");
        }
        if i == 2 * MENTIONS / 3 {
            alone[1].signal("KILL");
        }
        messages.push(post_mention(&all, &community, &cohort).await);
    }

    // Every email and webhook of the mentions comes to rest.
    let pool = sqlx::PgPool::connect(&env.db.url).await.expect("database");
    let settled: Vec<(Uuid, i32, String, String, Option<Uuid>)> =
        eventually(Duration::from_secs(90), "every delivery to settle", || {
            let pool = pool.clone();
            async move {
                let rows: Vec<(Uuid, i32, String, String, Option<Uuid>)> = sqlx::query_as(
                    "SELECT notification_id, channel, status, reason, batch_id
                     FROM notifications.deliveries WHERE recipient_id = $1",
                )
                .bind(mentioned)
                .fetch_all(&pool)
                .await
                .ok()?;
                let done = rows.len() == 2 * MENTIONS
                    && rows.iter().all(|(_, _, status, reason, _)| {
                        status == "sent"
                            || (status == "cancelled" && reason == "INTERRUPTED_NOT_RESENT")
                    });
                done.then_some(rows)
            }
        })
        .await;

    // Decided once: one notification per mention, no other.
    let decided: Vec<Option<Uuid>> = sqlx::query_scalar(
        "SELECT message_id FROM notifications.notifications WHERE recipient_id = $1",
    )
    .bind(mentioned)
    .fetch_all(&pool)
    .await
    .expect("notifications");
    let mut decided: Vec<String> = decided
        .into_iter()
        .flatten()
        .map(|m| m.to_string())
        .collect();
    decided.sort();
    messages.sort();
    assert_eq!(decided, messages, "one notification per mention");

    // Webhooks: one webhook-id per notification, each delivered.
    let webhook = pb::Channel::Webhook as i32;
    let expected: std::collections::BTreeSet<String> = settled
        .iter()
        .filter(|(_, channel, ..)| *channel == webhook)
        .map(|(id, ..)| {
            kith_notifications::delivery::delivery_id(*id, pb::Channel::Webhook).to_string()
        })
        .collect();
    let received: std::collections::BTreeSet<String> = receiver
        .requests()
        .iter()
        .map(|r| r.headers["webhook-id"].clone())
        .collect();
    assert_eq!(received, expected, "every webhook, under its own id");

    // Emails: each one a batch the ledger sent (or may have sent, when interrupted), and each
    // notification in one email at most.
    let email = pb::Channel::Email as i32;
    let mut batches: std::collections::BTreeMap<Uuid, (usize, bool)> = Default::default();
    for (_, channel, status, _, batch) in &settled {
        if *channel == email {
            let entry = batches
                .entry(batch.expect("an attempted email has a batch"))
                .or_default();
            entry.0 += 1;
            entry.1 |= status == "sent";
        }
    }
    let emails = sink.emails();
    let mut seen = std::collections::BTreeSet::new();
    for one in &emails {
        let id: Uuid = one
            .header("Message-ID")
            .expect("Message-ID")
            .trim_matches(['<', '>'])
            .trim_end_matches("@kith.notifications")
            .parse()
            .expect("a batch id");
        assert!(seen.insert(id), "batch {id} was emailed twice");
        let (count, _) = batches.get(&id).expect("an email the ledger knows");
        assert_eq!(
            one.body().lines().filter(|l| l.starts_with("- ")).count(),
            *count,
            "the email lists its batch's notifications"
        );
    }
    for (batch, (_, sent)) in &batches {
        if *sent {
            assert!(seen.contains(batch), "sent batch {batch} reached the sink");
        }
    }
    pool.close().await;
}
