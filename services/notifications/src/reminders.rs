//! Session reminders, 24 hours and 1 hour before each session, to those seated in its cohort.
//! One replica at a time sends them (a leader lock); each reminder's id derives from the
//! session, its start and the member, and is recorded like any notification, so a restart, a
//! second replica or a replay never reminds twice, and a moved session is reminded of anew.
//! After a pause, a reminder whose moment passed still goes while the session is to come, unless
//! the next one is due already (no 24-hour reminder ten minutes before).

use std::time::Duration;

use chrono::{DateTime, Utc};
use kith_platform::Result;
use kith_platform::eventlog::RecordedEvent;
use kith_platform::leader::LeaderLock;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::{Candidate, Kind, collapse};
use crate::projections::audience::{community_of, seated};
use crate::projections::route::{About, Appended, notify};

/// How often the scheduler looks for reminders due.
const EVERY: Duration = Duration::from_secs(15);
/// Namespace of the reminders' source ids.
const NAMESPACE: Uuid = Uuid::from_u128(0x6b69_7468_7265_6d69_6e64_6572_0000_0001);

/// The reminders, latest first: how long before the start, its name, whether it is urgent
/// (passes quiet hours when the member lets it).
const OFFSETS: [(chrono::TimeDelta, &str, bool); 2] = [
    (chrono::TimeDelta::hours(1), "1h", true),
    (chrono::TimeDelta::hours(24), "24h", false),
];

/// The source of a reminder: a stand-in for the event that caused it, the same every time it
/// is worked out.
fn source(
    session: Uuid,
    starts_at: DateTime<Utc>,
    offset: &str,
    at: DateTime<Utc>,
) -> RecordedEvent {
    RecordedEvent {
        position: 0,
        transaction_id: 0,
        stream_type: "session".into(),
        stream_id: session.to_string(),
        version: 0,
        event_id: Uuid::new_v5(
            &NAMESPACE,
            format!("{session}:{}:{offset}", starts_at.timestamp()).as_bytes(),
        ),
        event_type: format!("kith.notifications.v1.SessionReminder{offset}"),
        payload: Vec::new(),
        metadata_json: "{}".into(),
        recorded_at: at,
    }
}

/// Sends reminders while this replica leads them, until `shutdown`.
pub(crate) async fn run(pool: PgPool, appended: Appended, shutdown: CancellationToken) {
    let lock = LeaderLock::new(&pool, "notifications.reminders");
    loop {
        let Some(leadership) = lock.campaign(&shutdown).await else {
            return;
        };
        while !leadership.is_lost() && !shutdown.is_cancelled() {
            match remind(&pool, Utc::now()).await {
                Ok(0) => {}
                Ok(_) => appended.wake(),
                Err(err) => tracing::warn!(error = %err, "session reminders failed; retrying"),
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = leadership.lost() => break,
                () = tokio::time::sleep(EVERY) => {}
            }
        }
        leadership.release().await;
        if shutdown.is_cancelled() {
            return;
        }
    }
}

/// Sends every reminder due at `now`; returns how many sessions were reminded of.
pub async fn remind(pool: &PgPool, now: DateTime<Utc>) -> Result<usize> {
    let sessions: Vec<(Uuid, Uuid, DateTime<Utc>)> = sqlx::query_as(
        "SELECT session_id, cohort_id, starts_at FROM sessions
         WHERE NOT cancelled AND starts_at > $1 AND starts_at <= $1 + interval '24 hours'
         ORDER BY starts_at",
    )
    .bind(now)
    .fetch_all(pool)
    .await?;
    let mut reminded = 0;
    for (session, cohort, starts_at) in sessions {
        // The latest reminder whose moment has come: only that one goes now.
        let Some((offset, name, urgent)) = OFFSETS
            .iter()
            .find(|(offset, _, _)| starts_at - *offset <= now)
        else {
            continue;
        };
        let at = starts_at - *offset;
        let mut tx = pool.begin().await?;
        let matched = collapse(
            seated(&mut tx, cohort)
                .await?
                .into_iter()
                .map(|recipient| Candidate {
                    recipient,
                    kind: Kind::SessionReminder,
                }),
            None,
        );
        let about = About {
            community: community_of(&mut tx, cohort).await?,
            cohort: Some(cohort),
            session: Some(session),
            starts_at: Some(starts_at),
            urgent: *urgent,
            ..About::default()
        };
        notify(
            &mut tx,
            "cohorts",
            &source(session, starts_at, name, at),
            &about,
            &matched,
        )
        .await?;
        tx.commit().await?;
        reminded += 1;
    }
    Ok(reminded)
}
