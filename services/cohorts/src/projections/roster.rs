//! The cohorts read model, from the service's own log: each cohort with its details, status and
//! seat counts; everyone's place in each cohort (the waitlist ordered by the log position of the
//! event that put them there); sessions with their RSVPs and attendance.

use kith_platform::text::storable;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kith_platform::Result;
use kith_platform::eventlog::RecordedEvent;
use kith_platform::projection::Projection;
use sqlx::PgConnection;
use uuid::Uuid;

use super::community::Touched;
use crate::codec::decode_one;
use crate::domain::{Details, Event, Kind, Place, Rsvp, Status};

/// The stored name of a status.
pub(crate) fn status_name(status: Status) -> &'static str {
    match status {
        Status::Draft => "draft",
        Status::Open => "open",
        Status::Running => "running",
        Status::Closed => "closed",
        Status::Graduated => "graduated",
        Status::Archived => "archived",
    }
}

pub(crate) fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Mastermind => "mastermind",
        Kind::Coaching => "coaching",
        Kind::Course => "course",
        Kind::Circle => "circle",
    }
}

pub(crate) fn place_name(place: Place) -> &'static str {
    match place {
        Place::Seat => "seat",
        Place::Waitlist => "waitlist",
        Place::Invitation => "invitation",
        Place::Facilitator => "facilitator",
    }
}

pub(crate) fn rsvp_name(rsvp: Rsvp) -> &'static str {
    match rsvp {
        Rsvp::Yes => "yes",
        Rsvp::No => "no",
        Rsvp::Maybe => "maybe",
    }
}

/// The roster projection.
#[derive(Debug)]
pub(crate) struct Roster {
    touched: Arc<Touched>,
}

impl Roster {
    pub(crate) fn new(touched: Arc<Touched>) -> Self {
        Self { touched }
    }
}

const DDL: &str = "
CREATE TABLE IF NOT EXISTS cohorts (
    cohort_id    uuid        PRIMARY KEY,
    community_id uuid        NOT NULL,
    name         text        NOT NULL,
    kind         text        NOT NULL,
    capacity     integer     NOT NULL,
    starts_on    date,
    ends_on      date,
    time_zone    text        NOT NULL,
    goal         text        NOT NULL,
    status       text        NOT NULL,
    seated       integer     NOT NULL DEFAULT 0,
    held         integer     NOT NULL DEFAULT 0,
    waitlisted   integer     NOT NULL DEFAULT 0,
    facilitators integer     NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL,
    created_position bigint  NOT NULL,
    version      bigint      NOT NULL
);
CREATE INDEX IF NOT EXISTS cohorts_by_community ON cohorts (community_id, created_position);
CREATE TABLE IF NOT EXISTS cohort_places (
    cohort_id    uuid        NOT NULL,
    member_id    uuid        NOT NULL,
    community_id uuid        NOT NULL,
    place        text        NOT NULL,
    position     bigint      NOT NULL,
    since        timestamptz NOT NULL,
    expires_at   timestamptz,
    PRIMARY KEY (cohort_id, member_id)
);
CREATE INDEX IF NOT EXISTS cohort_places_in_order ON cohort_places (cohort_id, place, position);
CREATE INDEX IF NOT EXISTS cohort_places_by_member ON cohort_places (member_id, position);
CREATE INDEX IF NOT EXISTS cohort_places_expiring ON cohort_places (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS sessions (
    session_id       uuid        PRIMARY KEY,
    cohort_id        uuid        NOT NULL,
    series_id        uuid,
    occurrence       integer     NOT NULL,
    title            text        NOT NULL,
    starts_at        timestamptz NOT NULL,
    duration_minutes integer     NOT NULL,
    ends_at          timestamptz NOT NULL,
    cancelled        boolean     NOT NULL DEFAULT false,
    present          uuid[]
);
CREATE INDEX IF NOT EXISTS sessions_by_cohort ON sessions (cohort_id, starts_at, session_id);
CREATE TABLE IF NOT EXISTS session_rsvps (
    session_id uuid NOT NULL,
    member_id  uuid NOT NULL,
    response   text NOT NULL,
    position   bigint NOT NULL,
    PRIMARY KEY (session_id, member_id)
);
";

/// The counter column a place is counted in.
fn counter(place: &str) -> Option<&'static str> {
    match place {
        "seat" => Some("seated"),
        "waitlist" => Some("waitlisted"),
        "invitation" => Some("held"),
        "facilitator" => Some("facilitators"),
        _ => None,
    }
}

struct Apply<'a> {
    conn: &'a mut PgConnection,
    cohort: Uuid,
    event: &'a RecordedEvent,
}

impl Apply<'_> {
    /// Moves `member` to `place` (or out of the cohort), keeping the counters in step.
    async fn set_place(
        &mut self,
        member: Uuid,
        place: Option<Place>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let old: Option<String> = sqlx::query_scalar(
            "DELETE FROM cohort_places WHERE cohort_id = $1 AND member_id = $2 RETURNING place",
        )
        .bind(self.cohort)
        .bind(member)
        .fetch_optional(&mut *self.conn)
        .await?;
        if let Some(place) = place {
            sqlx::query(
                "INSERT INTO cohort_places (cohort_id, member_id, community_id, place, position, since, expires_at)
                 SELECT cohort_id, $2, community_id, $3, $4, $5, $6 FROM cohorts WHERE cohort_id = $1",
            )
            .bind(self.cohort)
            .bind(member)
            .bind(place_name(place))
            .bind(self.event.position)
            .bind(self.event.recorded_at)
            .bind(expires_at)
            .execute(&mut *self.conn)
            .await?;
        }
        let minus = old.as_deref().and_then(counter);
        let plus = place.map(place_name).and_then(counter);
        if minus != plus {
            let mut sets = Vec::new();
            if let Some(column) = minus {
                sets.push(format!("{column} = {column} - 1"));
            }
            if let Some(column) = plus {
                sets.push(format!("{column} = {column} + 1"));
            }
            let sql = format!(
                "UPDATE cohorts SET {} WHERE cohort_id = $1",
                sets.join(", ")
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(self.cohort)
                .execute(&mut *self.conn)
                .await?;
        }
        Ok(())
    }

    async fn set_status(&mut self, status: Status) -> Result<()> {
        sqlx::query("UPDATE cohorts SET status = $2 WHERE cohort_id = $1")
            .bind(self.cohort)
            .bind(status_name(status))
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    async fn set_details(&mut self, details: &Details) -> Result<()> {
        sqlx::query(
            "UPDATE cohorts SET name = $2, capacity = $3, starts_on = $4, ends_on = $5,
                    time_zone = $6, goal = $7
             WHERE cohort_id = $1",
        )
        .bind(self.cohort)
        .bind(storable(details.name.as_str()))
        .bind(i32::try_from(details.capacity.get()).unwrap_or(i32::MAX))
        .bind(details.dates.start())
        .bind(details.dates.end())
        .bind(details.time_zone.name())
        .bind(storable(details.goal.as_str()))
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }
}

#[async_trait]
impl Projection for Roster {
    fn name(&self) -> &'static str {
        "roster"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["cohorts", "cohort_places", "sessions", "session_rsvps"]
    }

    fn ddl(&self) -> &'static str {
        DDL
    }

    async fn apply(&self, conn: &mut PgConnection, recorded: &RecordedEvent) -> Result<()> {
        let Ok(cohort) = recorded.stream_id.parse::<Uuid>() else {
            return Ok(());
        };
        let event = decode_one(recorded)?;
        let mut at = Apply {
            conn,
            cohort,
            event: recorded,
        };
        match &event {
            Event::CohortCreated {
                community_id,
                details,
                ..
            } => {
                sqlx::query(
                    "INSERT INTO cohorts (cohort_id, community_id, name, kind, capacity, starts_on,
                        ends_on, time_zone, goal, status, created_at, created_position, version)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'draft', $10, $11, $12)
                     ON CONFLICT (cohort_id) DO NOTHING",
                )
                .bind(cohort)
                .bind(community_id)
                .bind(storable(details.name.as_str()))
                .bind(kind_name(details.kind))
                .bind(i32::try_from(details.capacity.get()).unwrap_or(i32::MAX))
                .bind(details.dates.start())
                .bind(details.dates.end())
                .bind(details.time_zone.name())
                .bind(storable(details.goal.as_str()))
                .bind(recorded.recorded_at)
                .bind(recorded.position)
                .bind(recorded.version)
                .execute(&mut *at.conn)
                .await?;
            }
            Event::CohortUpdated { details, .. } => at.set_details(details).await?,
            Event::CohortOpened { .. } => at.set_status(Status::Open).await?,
            Event::CohortStarted { .. } => at.set_status(Status::Running).await?,
            Event::CohortClosed { .. } => at.set_status(Status::Closed).await?,
            Event::CohortGraduated { .. } => at.set_status(Status::Graduated).await?,
            Event::CohortArchived { .. } => at.set_status(Status::Archived).await?,
            Event::FacilitatorAssigned { member_id, .. } => {
                at.set_place(*member_id, Some(Place::Facilitator), None)
                    .await?;
                self.touched.touch(*member_id);
            }
            Event::MemberJoinedCohort { member_id, .. } | Event::WaitlistPromoted { member_id } => {
                at.set_place(*member_id, Some(Place::Seat), None).await?;
                self.touched.touch(*member_id);
            }
            Event::MemberWaitlisted { member_id } => {
                at.set_place(*member_id, Some(Place::Waitlist), None)
                    .await?;
                self.touched.touch(*member_id);
            }
            Event::MemberInvited {
                member_id,
                expires_at,
                ..
            } => {
                at.set_place(*member_id, Some(Place::Invitation), Some(*expires_at))
                    .await?;
                self.touched.touch(*member_id);
            }
            Event::FacilitatorRemoved { member_id, .. }
            | Event::MemberLeftCohort { member_id, .. }
            | Event::MemberRemovedFromCohort { member_id, .. }
            | Event::MemberReleased { member_id, .. }
            | Event::InvitationDeclined { member_id }
            | Event::InvitationRevoked { member_id, .. }
            | Event::InvitationExpired { member_id } => {
                at.set_place(*member_id, None, None).await?;
            }
            Event::SessionScheduled {
                session_id,
                series_id,
                occurrence,
                title,
                starts_at,
                duration,
                ..
            } => {
                sqlx::query(
                    "INSERT INTO sessions (session_id, cohort_id, series_id, occurrence, title,
                        starts_at, duration_minutes, ends_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $6 + make_interval(mins => $7))
                     ON CONFLICT (session_id) DO NOTHING",
                )
                .bind(session_id)
                .bind(cohort)
                .bind(series_id)
                .bind(i32::try_from(*occurrence).unwrap_or(i32::MAX))
                .bind(storable(title.as_str()))
                .bind(starts_at)
                .bind(i32::try_from(duration.get()).unwrap_or(i32::MAX))
                .execute(&mut *at.conn)
                .await?;
            }
            Event::SessionRescheduled {
                session_id,
                starts_at,
                duration,
                ..
            } => {
                sqlx::query(
                    "UPDATE sessions SET starts_at = $2, duration_minutes = $3,
                        ends_at = $2 + make_interval(mins => $3)
                     WHERE session_id = $1",
                )
                .bind(session_id)
                .bind(starts_at)
                .bind(i32::try_from(duration.get()).unwrap_or(i32::MAX))
                .execute(&mut *at.conn)
                .await?;
            }
            Event::SessionCancelled { session_id, .. } => {
                sqlx::query("UPDATE sessions SET cancelled = true WHERE session_id = $1")
                    .bind(session_id)
                    .execute(&mut *at.conn)
                    .await?;
            }
            Event::SessionRsvp {
                session_id,
                member_id,
                response,
            } => {
                sqlx::query(
                    "INSERT INTO session_rsvps (session_id, member_id, response, position)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (session_id, member_id)
                     DO UPDATE SET response = EXCLUDED.response, position = EXCLUDED.position",
                )
                .bind(session_id)
                .bind(member_id)
                .bind(rsvp_name(*response))
                .bind(recorded.position)
                .execute(&mut *at.conn)
                .await?;
            }
            Event::AttendanceRecorded {
                session_id,
                present,
                ..
            } => {
                sqlx::query("UPDATE sessions SET present = $2 WHERE session_id = $1")
                    .bind(session_id)
                    .bind(present)
                    .execute(&mut *at.conn)
                    .await?;
            }
        }
        sqlx::query("UPDATE cohorts SET version = $2 WHERE cohort_id = $1 AND version < $2")
            .bind(cohort)
            .bind(recorded.version)
            .execute(&mut *at.conn)
            .await?;
        Ok(())
    }

    fn committed(&self) {
        self.touched.commit();
    }
}
