//! Email and webhooks end to end, through a real SMTP server and a real HTTP server on loopback:
//! one email per mention after the batching window, none when read in the feed first or when
//! the message is deleted, one-click unsubscribe, signed and retried webhooks, parking.

use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use kith_platform::testing::sinks::{HttpReceiver, SmtpSink};
use kith_proto::notifications as pb;
use uuid::Uuid;

use crate::helpers::{App, PATIENCE, as_member, delivering, eventually, rid};

fn address(member: Uuid) -> String {
    format!("m{}@example.org", member.simple())
}

#[tokio::test]
async fn a_mention_sends_one_email_after_the_window_with_a_one_click_unsubscribe_that_works() {
    let sink = SmtpSink::start().await;
    let window = Duration::from_secs(1);
    let app = App::spawn_with(delivering(&sink.url(), window)).await;
    let (community, cohort) = app.cohort(2).await;
    let [author, mentioned] = [community.members[0], community.members[1]];
    app.contact(mentioned, &address(mentioned), "").await;
    let posted = app
        .post(
            author,
            &cohort,
            "",
            &format!("@{} over to you", community.handles[1]),
        )
        .await;
    let feed = app
        .feed_until(mentioned, "the mention", |f| !f.is_empty())
        .await;

    let emails = sink.wait_for(1, PATIENCE).await;
    assert_eq!(emails.len(), 1);
    let email = &emails[0];
    assert_eq!(email.to, vec![address(mentioned)]);
    assert_eq!(
        email.header("Subject").as_deref(),
        Some("You were mentioned")
    );
    let unsubscribe = email.header("List-Unsubscribe").expect("List-Unsubscribe");
    assert_eq!(
        email.header("List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    // Sent once, after the window: the ledger says so.
    let status = app
        .channel_until(
            mentioned,
            &feed[0].notification_id,
            pb::Channel::Email,
            |c| c.status == "sent",
        )
        .await;
    assert_eq!(status.reason, "SENT");
    let pool = app.pool("notifications").await;
    let waited: f64 = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM (changed_at - occurred_at))::float8 FROM deliveries
         WHERE notification_id = $1 AND channel = $2",
    )
    .bind(feed[0].notification_id.parse::<Uuid>().unwrap())
    .bind(pb::Channel::Email as i32)
    .fetch_one(&pool)
    .await
    .expect("delivery");
    assert!(
        waited >= window.as_secs_f64(),
        "sent {waited}s after the event"
    );
    pool.close().await;
    assert_eq!(posted.message_id, feed[0].message_id);

    // The link takes a cookieless POST and turns email off.
    let link = unsubscribe.trim_matches(['<', '>']).to_owned();
    assert!(
        link.starts_with(&format!("http://{}", app.unsubscribe)),
        "{link}"
    );
    let http = reqwest::Client::new();
    let page = http.get(&link).send().await.expect("GET the link");
    assert_eq!(page.status(), 200, "a GET shows a page and changes nothing");
    let forged = http
        .post(link.replace("signature=", "signature=00"))
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .expect("POST a forged link");
    assert_eq!(forged.status(), 403);
    let done = http
        .post(&link)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .expect("POST the link");
    assert_eq!(done.status(), 200);
    let mut client = app.notifications().await;
    let preferences = eventually(PATIENCE, "email to be off", || {
        let mut client = client.clone();
        async move {
            let preferences = client
                .get_preferences(as_member(
                    mentioned,
                    pb::GetPreferencesRequest { min_position: 0 },
                ))
                .await
                .expect("preferences")
                .into_inner()
                .preferences
                .expect("preferences");
            preferences
                .channels_off
                .contains(&(pb::Channel::Email as i32))
                .then_some(preferences)
        }
    })
    .await;
    assert_eq!(preferences.channels_off, vec![pb::Channel::Email as i32]);
    let again = app
        .post(
            author,
            &cohort,
            "",
            &format!("@{} and again", community.handles[1]),
        )
        .await;
    let feed = app
        .feed_until(mentioned, "the second mention", |f| f.len() == 2)
        .await;
    assert_eq!(feed[0].message_id, again.message_id);
    let email = app
        .channel_until(
            mentioned,
            &feed[0].notification_id,
            pb::Channel::Email,
            |_| true,
        )
        .await;
    assert_eq!(
        (email.status.as_str(), email.reason.as_str()),
        ("withheld", "CHANNEL_OFF")
    );
    let contact = client
        .get_contact(as_member(
            mentioned,
            pb::GetContactRequest { min_position: 0 },
        ))
        .await
        .expect("contact")
        .into_inner();
    assert_eq!(contact.email, address(mentioned));
    assert_eq!(sink.emails().len(), 1, "nothing more was sent");
}

#[tokio::test]
async fn reading_in_the_feed_first_or_a_deletion_sends_no_email() {
    let sink = SmtpSink::start().await;
    // A window long enough for the read and the deletion to come first, even on a busy machine.
    let app = App::spawn_with(delivering(&sink.url(), Duration::from_secs(8))).await;
    let (community, cohort) = app.cohort(4).await;
    let [author, reader, deleted, marker] = [
        community.members[0],
        community.members[1],
        community.members[2],
        community.members[3],
    ];
    for member in [reader, deleted, marker] {
        app.contact(member, &address(member), "").await;
    }
    let read_me = app
        .post(
            author,
            &cohort,
            "",
            &format!("@{} read me", community.handles[1]),
        )
        .await;
    let gone = app
        .post(
            author,
            &cohort,
            "",
            &format!("@{} not for long", community.handles[2]),
        )
        .await;
    let mention = app.about(reader, &read_me.message_id).await;
    let mut client = app.notifications().await;
    client
        .mark_read(as_member(
            reader,
            pb::MarkReadRequest {
                request_id: rid(),
                notification_ids: vec![mention.notification_id.clone()],
            },
        ))
        .await
        .expect("mark read");
    let doomed = app.about(deleted, &gone.message_id).await;
    app.messaging()
        .await
        .delete_message(as_member(
            author,
            kith_proto::messaging::DeleteMessageRequest {
                request_id: rid(),
                conversation_id: cohort.clone(),
                message_id: gone.message_id.clone(),
            },
        ))
        .await
        .expect("delete");
    let read = app
        .channel_until(reader, &mention.notification_id, pb::Channel::Email, |c| {
            c.status != "pending"
        })
        .await;
    assert_eq!(
        (read.status.as_str(), read.reason.as_str()),
        ("cancelled", "READ_IN_APP")
    );
    let retracted = app
        .channel_until(deleted, &doomed.notification_id, pb::Channel::Email, |c| {
            c.status != "pending"
        })
        .await;
    assert_eq!(
        (retracted.status.as_str(), retracted.reason.as_str()),
        ("retracted", "MESSAGE_DELETED")
    );
    // A later mention's email arriving shows the worker went past both windows.
    app.post(
        author,
        &cohort,
        "",
        &format!("@{} marker", community.handles[3]),
    )
    .await;
    let emails = sink.wait_for(1, PATIENCE).await;
    assert_eq!(
        emails.iter().map(|e| e.to.clone()).collect::<Vec<_>>(),
        vec![vec![address(marker)]],
        "only the marker's email went"
    );
}

type HmacSha256 = Hmac<sha2::Sha256>;

/// Checks a Standard Webhooks signature as a receiver would.
fn verify(secret: &str, id: &str, timestamp: &str, body: &[u8], signature: &str) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .expect("secret");
    let mut mac = HmacSha256::new_from_slice(&key).expect("key");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    signature
        .split(' ')
        .any(|candidate| candidate.strip_prefix("v1,") == Some(expected.as_str()))
}

#[tokio::test]
async fn webhooks_arrive_signed_and_are_retried_after_the_receiver_fails() {
    let receiver = HttpReceiver::start(2).await;
    let app = App::spawn_with(delivering("smtp://127.0.0.1:1", Duration::from_secs(60))).await;
    let (community, cohort) = app.cohort(2).await;
    let [author, member] = [community.members[0], community.members[1]];
    let secret = app.contact(member, "", &receiver.url("/kith")).await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    app.post(
        author,
        &cohort,
        "",
        &format!("@{} ping", community.handles[1]),
    )
    .await;
    let requests = receiver.wait_for_successes(1, PATIENCE).await;
    assert_eq!(
        requests.len(),
        3,
        "two failures, then the success: {requests:?}"
    );
    assert_eq!(
        requests.iter().map(|r| r.answered).collect::<Vec<_>>(),
        vec![503, 503, 204]
    );
    let id = requests[0].headers["webhook-id"].clone();
    for request in &requests {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/kith");
        assert_eq!(
            request.headers["webhook-id"], id,
            "the same id on every attempt"
        );
        assert!(
            verify(
                &secret,
                &request.headers["webhook-id"],
                &request.headers["webhook-timestamp"],
                &request.body,
                &request.headers["webhook-signature"],
            ),
            "a verifiable signature: {request:?}"
        );
        let timestamp: i64 = request.headers["webhook-timestamp"]
            .parse()
            .expect("seconds");
        assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 300);
    }
    let body: serde_json::Value = serde_json::from_slice(&requests[2].body).expect("JSON");
    assert_eq!(body["type"], "notification.created");
    assert_eq!(body["data"]["kind"], "KIND_MENTION");
    let notification = body["data"]["notification_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let status = app
        .channel_until(member, &notification, pb::Channel::Webhook, |c| {
            c.status == "sent"
        })
        .await;
    assert_eq!(status.reason, "SENT");
    let pool = app.pool("notifications").await;
    let attempts: i32 = sqlx::query_scalar(
        "SELECT attempts FROM deliveries WHERE notification_id = $1 AND channel = $2",
    )
    .bind(notification.parse::<Uuid>().unwrap())
    .bind(pb::Channel::Webhook as i32)
    .fetch_one(&pool)
    .await
    .expect("attempts");
    assert_eq!(attempts, 3);
    pool.close().await;
}

#[tokio::test]
async fn a_webhook_that_keeps_failing_is_parked_after_the_last_attempt() {
    let receiver = HttpReceiver::start(usize::MAX).await;
    let mut delivery = delivering("smtp://127.0.0.1:1", Duration::from_secs(60));
    delivery.webhook_max_attempts = 3;
    let app = App::spawn_with(delivery).await;
    let (community, cohort) = app.cohort(2).await;
    let [author, member] = [community.members[0], community.members[1]];
    app.contact(member, "", &receiver.url("/down")).await;
    app.post(
        author,
        &cohort,
        "",
        &format!("@{} anyone?", community.handles[1]),
    )
    .await;
    let feed = app
        .feed_until(member, "the mention", |f| !f.is_empty())
        .await;
    let parked = app
        .channel_until(
            member,
            &feed[0].notification_id,
            pb::Channel::Webhook,
            |c| c.status == "parked",
        )
        .await;
    assert!(parked.reason.contains("503"), "{parked:?}");
    assert_eq!(receiver.requests().len(), 3);
}

#[tokio::test]
async fn a_webhook_url_must_be_allowed_by_the_deployment() {
    let app = App::spawn().await;
    let member = Uuid::new_v4();
    let mut client = app.notifications().await;
    for (url, why) in [
        (
            "http://127.0.0.1:9/hook",
            "loopback without the operator's leave",
        ),
        ("https://10.1.2.3/hook", "a private address"),
        (
            "http://hooks.example.org/hook",
            "plain http outside loopback",
        ),
        ("ftp://hooks.example.org/", "not http"),
    ] {
        let status = client
            .set_contact(as_member(
                member,
                pb::SetContactRequest {
                    request_id: rid(),
                    email: "not an address".into(),
                    webhook_url: url.into(),
                },
            ))
            .await
            .expect_err(why);
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{why}");
        let mut fields = kith_platform::testing::violated_fields(&status);
        fields.sort();
        assert_eq!(fields, vec!["email", "webhook_url"], "{why}");
    }
}

/// The minute of the day it is now in Kolkata (+05:30), and a whole minute soon after: the next
/// one, or the one after when less than 30 s are left, to leave time for the posts.
fn kolkata_minute_soon() -> (u32, u32) {
    use chrono::Timelike;
    let local = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Kolkata);
    let minute = local.hour() * 60 + local.minute();
    (
        minute,
        (minute + if local.second() < 30 { 1 } else { 2 }) % 1440,
    )
}

#[tokio::test]
async fn quiet_hours_hold_email_and_send_what_was_held_as_one_summary_when_they_end() {
    let sink = SmtpSink::start().await;
    let app = App::spawn_with(delivering(&sink.url(), Duration::from_secs(1))).await;
    let (community, cohort) = app.cohort(2).await;
    let [author, member] = [community.members[0], community.members[1]];
    app.contact(member, &address(member), "").await;
    // Quiet hours in Kolkata (+05:30) that began half an hour ago and end soon.
    let (minute, end) = kolkata_minute_soon();
    app.set_preferences(
        member,
        pb::Preferences {
            time_zone: "Asia/Kolkata".into(),
            quiet_hours: Some(pb::QuietHours {
                start_minute: (minute + 1440 - 30) % 1440,
                end_minute: end,
            }),
            ..Default::default()
        },
    )
    .await;
    app.post(
        author,
        &cohort,
        "",
        &format!("@{} late one", community.handles[1]),
    )
    .await;
    app.post(
        author,
        &cohort,
        "",
        &format!("@{} later one", community.handles[1]),
    )
    .await;
    let feed = app
        .feed_until(member, "both mentions", |f| f.len() == 2)
        .await;
    let held = app
        .channel_until(member, &feed[0].notification_id, pb::Channel::Email, |c| {
            c.status == "held"
        })
        .await;
    assert_eq!(held.reason, "QUIET_HOURS");
    let why = app.why(member, &feed[0].notification_id).await;
    assert!(
        why.reasons
            .iter()
            .any(|r| r.code == "QUIET_HOURS" && r.text.contains("quiet hours")),
        "{why:?}"
    );
    assert!(sink.emails().is_empty(), "nothing goes during quiet hours");

    let emails = sink.wait_for(1, Duration::from_secs(150)).await;
    let pool = app.pool("notifications").await;
    let ledger: Vec<String> = sqlx::query_scalar(
        "SELECT event_type || ' ' || recorded_at::text FROM events ORDER BY position",
    )
    .fetch_all(&pool)
    .await
    .expect("log");
    assert_eq!(emails.len(), 1, "one summary, not one email each");
    assert_eq!(
        emails[0].header("Subject").as_deref(),
        Some("2 new notifications"),
        "{emails:?} {ledger:#?}"
    );
    assert_eq!(
        emails[0].header("Subject").as_deref(),
        Some("2 new notifications")
    );
    assert!(
        emails[0]
            .body()
            .starts_with("While your quiet hours were on"),
        "{}",
        emails[0].body()
    );
    for notification in &feed {
        app.channel_until(
            member,
            &notification.notification_id,
            pb::Channel::Email,
            |c| c.status == "sent",
        )
        .await;
    }
}

#[tokio::test]
async fn a_daily_digest_holds_email_until_the_local_time_and_sends_what_is_still_unread_as_one() {
    use chrono::Timelike;
    let sink = SmtpSink::start().await;
    let app = App::spawn_with(delivering(&sink.url(), Duration::from_secs(1))).await;
    let (community, cohort) = app.cohort(2).await;
    let [author, member] = [community.members[0], community.members[1]];
    app.contact(member, &address(member), "").await;
    // A daily digest in Kolkata (+05:30) soon.
    let zone = chrono_tz::Asia::Kolkata;
    let (_, at) = kolkata_minute_soon();
    app.set_preferences(
        member,
        pb::Preferences {
            time_zone: "Asia/Kolkata".into(),
            digest: pb::DigestFrequency::Daily as i32,
            digest_hour: at / 60,
            digest_minute: at % 60,
            ..Default::default()
        },
    )
    .await;
    let handle = &community.handles[1];
    let first = app
        .post(author, &cohort, "", &format!("@{handle} first"))
        .await;
    let read = app
        .post(author, &cohort, "", &format!("@{handle} read it"))
        .await;
    let second = app
        .post(author, &cohort, "", &format!("@{handle} second"))
        .await;
    // A new thread without a mention: feed only, counted in the digest but not listed.
    app.post(author, &cohort, "", "news for everyone").await;
    let feed = app
        .feed_until(member, "three mentions and a thread", |f| f.len() == 4)
        .await;
    let id = |message: &str| {
        feed.iter()
            .find(|n| n.message_id == message)
            .map(|n| n.notification_id.clone())
            .expect("in the feed")
    };
    app.notifications()
        .await
        .mark_read(as_member(
            member,
            pb::MarkReadRequest {
                request_id: rid(),
                notification_ids: vec![id(&read.message_id)],
            },
        ))
        .await
        .expect("mark read");
    let held = app
        .channel_until(member, &id(&first.message_id), pb::Channel::Email, |c| {
            c.status == "held"
        })
        .await;
    assert_eq!(held.reason, "DIGEST_DAILY");
    let due = held.due_at.expect("due_at");
    let due = chrono::DateTime::from_timestamp(due.seconds, due.nanos as u32).expect("instant");
    let due_local = due.with_timezone(&zone);
    assert_eq!(
        (
            due_local.hour() * 60 + due_local.minute(),
            due_local.second()
        ),
        (at, 0),
        "held until the chosen local time"
    );
    app.channel_until(member, &id(&second.message_id), pb::Channel::Email, |c| {
        c.status == "held"
    })
    .await;
    let why = app.why(member, &id(&second.message_id)).await;
    assert!(
        why.reasons
            .iter()
            .any(|r| r.code == "DIGEST_DAILY" && r.text.contains("daily digest")),
        "{why:?}"
    );
    assert!(sink.emails().is_empty(), "nothing goes before the digest");

    let emails = sink.wait_for(1, Duration::from_secs(150)).await;
    assert_eq!(emails.len(), 1, "one digest, not one email each");
    let email = &emails[0];
    assert_eq!(
        email.header("Subject").as_deref(),
        Some("Your daily digest: 2 notifications")
    );
    let body = email.body();
    assert!(body.starts_with("Since your last daily digest"), "{body}");
    assert_eq!(body.matches("You were mentioned").count(), 2, "{body}");
    assert!(body.contains("And 1 more unread in your feed"), "{body}");
    for message in [&first.message_id, &second.message_id] {
        app.channel_until(member, &id(message), pb::Channel::Email, |c| {
            c.status == "sent"
        })
        .await;
    }
    let read = app
        .channel_until(member, &id(&read.message_id), pb::Channel::Email, |c| {
            c.status == "cancelled"
        })
        .await;
    assert_eq!(read.reason, "READ_IN_APP");
    assert!(
        chrono::Utc::now() >= due,
        "the digest went at or after its time"
    );
}

#[tokio::test]
async fn erasing_a_member_in_membership_destroys_their_email_address_here() {
    let app = App::spawn().await;
    let (community, _) = app.cohort(1).await;
    let member = community.members[0];
    app.contact(member, &address(member), "").await;
    kith_platform::testing::community::membership(app.addr)
        .await
        .erase_member(as_member(
            community.owner,
            kith_proto::membership::EraseMemberRequest {
                request_id: rid(),
                community_id: community.id.clone(),
                member_id: member.to_string(),
            },
        ))
        .await
        .expect("erase");
    let client = app.notifications().await;
    eventually(PATIENCE, "the address to be erased", || {
        let mut client = client.clone();
        async move {
            let contact = client
                .get_contact(as_member(member, pb::GetContactRequest { min_position: 0 }))
                .await
                .expect("contact")
                .into_inner();
            contact.email.is_empty().then_some(())
        }
    })
    .await;
    // Nor can the log open it: its key is gone.
    let pool = app.pool("notifications").await;
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM sealing_keys WHERE subject = $1")
        .bind(member.to_string())
        .fetch_one(&pool)
        .await
        .expect("keys");
    assert_eq!(keys, 0);
    pool.close().await;
}

#[tokio::test]
async fn a_failed_webhook_whose_retry_meets_the_rate_cap_is_held_once() {
    // The first call fails; the second notification's call then uses up the one-a-minute cap,
    // so the first one's retry must wait, held, rather than be tried or recorded again.
    let receiver = HttpReceiver::start(1).await;
    let mut delivery = delivering("smtp://127.0.0.1:1", Duration::from_secs(60));
    delivery.webhooks_per_minute = 1;
    // Time for the second call to go before the first one's retry comes due.
    delivery.webhook_first_retry = Duration::from_secs(4);
    let app = App::spawn_with(delivery).await;
    let (community, cohort) = app.cohort(2).await;
    let [author, member] = [community.members[0], community.members[1]];
    app.contact(member, "", &receiver.url("/kith")).await;
    let first = app
        .post(
            author,
            &cohort,
            "",
            &format!("@{} one", community.handles[1]),
        )
        .await;
    let first = app.about(member, &first.message_id).await;
    app.channel_until(member, &first.notification_id, pb::Channel::Webhook, |c| {
        c.status == "failed"
    })
    .await;
    app.post(
        author,
        &cohort,
        "",
        &format!("@{} two", community.handles[1]),
    )
    .await;
    receiver.wait_for_successes(1, PATIENCE).await;
    let held = app
        .channel_until(member, &first.notification_id, pb::Channel::Webhook, |c| {
            c.status == "held"
        })
        .await;
    assert_eq!(held.reason, "RATE_CAPPED");
    assert!(held.due_at.is_some());
    let pool = app.pool("notifications").await;
    let holds: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'kith.notifications.v1.DeliveryHeld'",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(holds, 1, "held once, not at every round");
    pool.close().await;
}
