//! Who is where, from membership's and cohorts' streams, and the rules about people's places:
//!
//! - [`Members`] (membership): each member's role and standing in each community; a join
//!   request notifies the community's owners and hosts; an erasure destroys the key of the
//!   member's email address here.
//! - [`Places`] (cohorts): each cohort's community and who holds which place in it; an
//!   invitation, a promotion from the waitlist, a lost seat and a session scheduled, moved or
//!   cancelled notify those concerned.

use async_trait::async_trait;
use kith_platform::Result;
use kith_platform::eventlog::RecordedEvent;
use kith_platform::projection::Projection;
use kith_platform::wire::{decode_payload, stored_id, stored_opt_id, time_of};
use kith_proto::cohorts as cpb;
use kith_proto::membership as mpb;
use prost::Name;
use sqlx::PgConnection;
use uuid::Uuid;

use super::route::{About, notify};
use crate::domain::{Candidate, Kind, collapse};

const MEMBERSHIP: &str = "membership";
const COHORTS: &str = "cohorts";

const MEMBERS_DDL: &str = "
CREATE TABLE IF NOT EXISTS members (
    community_id uuid NOT NULL,
    member_id    uuid NOT NULL,
    role         text NOT NULL,
    active       bool NOT NULL,
    PRIMARY KEY (community_id, member_id)
);
CREATE INDEX IF NOT EXISTS members_role ON members (community_id, role) WHERE active;
";

fn role_name(value: i32) -> &'static str {
    match mpb::MemberRole::try_from(value) {
        Ok(mpb::MemberRole::Owner) => "owner",
        Ok(mpb::MemberRole::Host) => "host",
        Ok(mpb::MemberRole::Coach) => "coach",
        Ok(mpb::MemberRole::Moderator) => "moderator",
        _ => "member",
    }
}

/// Each member's role and standing in each community.
#[derive(Debug, Default)]
pub struct Members {
    /// Who to wake once what the rules appended has committed.
    pub appended: super::route::Appended,
}

#[async_trait]
impl Projection for Members {
    fn committed(&self) {
        self.appended.wake();
    }

    fn name(&self) -> &'static str {
        "members"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["members"]
    }

    fn ddl(&self) -> &'static str {
        MEMBERS_DDL
    }

    fn reads(&self, stream_type: &str) -> bool {
        stream_type == "community"
    }

    async fn apply(&self, conn: &mut PgConnection, event: &RecordedEvent) -> Result<()> {
        let t = event.event_type.as_str();
        let (community, member, role, active) = if t == mpb::MemberJoined::full_name() {
            let e: mpb::MemberJoined = decode_payload(event)?;
            (e.community_id, e.member_id, Some(role_name(e.role)), true)
        } else if t == mpb::RoleAssigned::full_name() {
            let e: mpb::RoleAssigned = decode_payload(event)?;
            (e.community_id, e.member_id, Some(role_name(e.role)), true)
        } else if t == mpb::RoleRevoked::full_name() {
            let e: mpb::RoleRevoked = decode_payload(event)?;
            (e.community_id, e.member_id, Some("member"), true)
        } else if t == mpb::MemberLeft::full_name() {
            let e: mpb::MemberLeft = decode_payload(event)?;
            (e.community_id, e.member_id, None, false)
        } else if t == mpb::MemberRemoved::full_name() {
            let e: mpb::MemberRemoved = decode_payload(event)?;
            (e.community_id, e.member_id, None, false)
        } else if t == mpb::MemberBanned::full_name() {
            let e: mpb::MemberBanned = decode_payload(event)?;
            (e.community_id, e.member_id, None, false)
        } else if t == mpb::MemberErased::full_name() {
            let e: mpb::MemberErased = decode_payload(event)?;
            // The person asked to be forgotten: the key of their email address here goes with
            // it, in the transaction that records the erasure, so no replay opens it again.
            sqlx::query("DELETE FROM sealing_keys WHERE subject = $1")
                .bind(stored_id(&e.member_id)?.to_string())
                .execute(&mut *conn)
                .await?;
            (e.community_id, e.member_id, None, false)
        } else if t == mpb::JoinRequested::full_name() {
            let e: mpb::JoinRequested = decode_payload(event)?;
            let community = stored_id(&e.community_id)?;
            let requester = stored_id(&e.member_id)?;
            let approvers = with_roles(conn, community, &["owner", "host"]).await?;
            let matched = collapse(
                approvers.into_iter().map(|recipient| Candidate {
                    recipient,
                    kind: Kind::JoinRequest,
                }),
                Some(requester),
            );
            let about = About {
                community: Some(community),
                actor: Some(requester),
                ..About::default()
            };
            notify(conn, MEMBERSHIP, event, &about, &matched).await?;
            return Ok(());
        } else {
            return Ok(());
        };
        let community = stored_id(&community)?;
        let member = stored_id(&member)?;
        match role {
            Some(role) => {
                sqlx::query(
                    "INSERT INTO members (community_id, member_id, role, active)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (community_id, member_id)
                     DO UPDATE SET role = EXCLUDED.role, active = EXCLUDED.active",
                )
                .bind(community)
                .bind(member)
                .bind(role)
                .bind(active)
                .execute(&mut *conn)
                .await?;
            }
            None => {
                sqlx::query(
                    "UPDATE members SET active = false, role = 'member'
                     WHERE community_id = $1 AND member_id = $2",
                )
                .bind(community)
                .bind(member)
                .execute(&mut *conn)
                .await?;
            }
        }
        Ok(())
    }
}

/// The active members of `community` holding one of `roles`.
pub(crate) async fn with_roles(
    conn: &mut PgConnection,
    community: Uuid,
    roles: &[&str],
) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar(
        "SELECT member_id FROM members WHERE community_id = $1 AND active AND role = ANY($2)
         ORDER BY member_id",
    )
    .bind(community)
    .bind(roles)
    .fetch_all(&mut *conn)
    .await?)
}

const PLACES_DDL: &str = "
CREATE TABLE IF NOT EXISTS cohorts (
    cohort_id    uuid PRIMARY KEY,
    community_id uuid NOT NULL
);
CREATE TABLE IF NOT EXISTS places (
    cohort_id uuid NOT NULL,
    member_id uuid NOT NULL,
    place     text NOT NULL,
    PRIMARY KEY (cohort_id, member_id, place)
);
-- Every session to come, for the reminders.
CREATE TABLE IF NOT EXISTS sessions (
    session_id uuid        PRIMARY KEY,
    cohort_id  uuid        NOT NULL,
    starts_at  timestamptz NOT NULL,
    cancelled  bool        NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS sessions_upcoming ON sessions (starts_at) WHERE NOT cancelled;
";

fn place_name(value: i32) -> Option<&'static str> {
    match cpb::Place::try_from(value) {
        Ok(cpb::Place::Seat) => Some("seat"),
        Ok(cpb::Place::Facilitator) => Some("facilitator"),
        Ok(cpb::Place::Waitlist) => Some("waitlist"),
        Ok(cpb::Place::Invitation) => Some("invitation"),
        _ => None,
    }
}

/// Each cohort's community and the places held in it.
#[derive(Debug, Default)]
pub struct Places {
    /// Who to wake once what the rules appended has committed.
    pub appended: super::route::Appended,
}

/// A change of someone's place in a cohort: what they took, what they gave up, and what it
/// notifies them of.
struct Move {
    member: String,
    taken: Option<&'static str>,
    given: Option<&'static str>,
    notice: Option<(Kind, String)>,
}

#[async_trait]
impl Projection for Places {
    fn committed(&self) {
        self.appended.wake();
    }

    fn name(&self) -> &'static str {
        "places"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["cohorts", "places", "sessions"]
    }

    fn ddl(&self) -> &'static str {
        PLACES_DDL
    }

    fn reads(&self, stream_type: &str) -> bool {
        stream_type == "cohort"
    }

    async fn apply(&self, conn: &mut PgConnection, event: &RecordedEvent) -> Result<()> {
        let t = event.event_type.as_str();
        let cohort = stored_id(&event.stream_id)?;
        if t == cpb::CohortCreated::full_name() {
            let e: cpb::CohortCreated = decode_payload(event)?;
            sqlx::query(
                "INSERT INTO cohorts (cohort_id, community_id) VALUES ($1, $2)
                 ON CONFLICT (cohort_id) DO NOTHING",
            )
            .bind(cohort)
            .bind(stored_id(&e.community_id)?)
            .execute(&mut *conn)
            .await?;
            return Ok(());
        }
        if let Some((kind, session, starts_at, actor)) = session_news(event)? {
            track(conn, cohort, kind, session, starts_at).await?;
            // A weekly series is one notice, at its first session; each session is reminded of.
            if t == cpb::SessionScheduled::full_name() && !first_of_series(event)? {
                return Ok(());
            }
            let seated = seated(conn, cohort).await?;
            let matched = collapse(
                seated
                    .into_iter()
                    .map(|recipient| Candidate { recipient, kind }),
                actor,
            );
            let about = About {
                community: community_of(conn, cohort).await?,
                cohort: Some(cohort),
                actor,
                session: Some(session),
                starts_at,
                ..About::default()
            };
            notify(conn, COHORTS, event, &about, &matched).await?;
            return Ok(());
        }
        let Some(change) = place_move(event)? else {
            return Ok(());
        };
        let member = stored_id(&change.member)?;
        if let Some(place) = change.given {
            sqlx::query(
                "DELETE FROM places WHERE cohort_id = $1 AND member_id = $2 AND place = $3",
            )
            .bind(cohort)
            .bind(member)
            .bind(place)
            .execute(&mut *conn)
            .await?;
        }
        if let Some(place) = change.taken {
            if place == "seat" {
                sqlx::query(
                    "DELETE FROM places WHERE cohort_id = $1 AND member_id = $2 AND place = 'invitation'",
                )
                .bind(cohort)
                .bind(member)
                .execute(&mut *conn)
                .await?;
            }
            sqlx::query(
                "INSERT INTO places (cohort_id, member_id, place) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(cohort)
            .bind(member)
            .bind(place)
            .execute(&mut *conn)
            .await?;
        }
        if let Some((kind, actor)) = change.notice {
            let actor = stored_opt_id(&actor)?;
            let matched = collapse(
                [Candidate {
                    recipient: member,
                    kind,
                }],
                actor,
            );
            let about = About {
                community: community_of(conn, cohort).await?,
                cohort: Some(cohort),
                actor,
                ..About::default()
            };
            notify(conn, COHORTS, event, &about, &matched).await?;
        }
        Ok(())
    }
}

/// A session scheduled, moved or cancelled: its kind, session, start and who did it.
#[allow(clippy::type_complexity)]
fn session_news(
    event: &RecordedEvent,
) -> Result<
    Option<(
        Kind,
        Uuid,
        Option<chrono::DateTime<chrono::Utc>>,
        Option<Uuid>,
    )>,
> {
    let t = event.event_type.as_str();
    Ok(if t == cpb::SessionScheduled::full_name() {
        let e: cpb::SessionScheduled = decode_payload(event)?;
        if e.occurrence > 1 {
            return Ok(None);
        }
        Some((
            Kind::SessionScheduled,
            stored_id(&e.session_id)?,
            time_of(e.starts_at.as_ref()),
            stored_opt_id(&e.scheduled_by)?,
        ))
    } else if t == cpb::SessionRescheduled::full_name() {
        let e: cpb::SessionRescheduled = decode_payload(event)?;
        Some((
            Kind::SessionRescheduled,
            stored_id(&e.session_id)?,
            time_of(e.starts_at.as_ref()),
            stored_opt_id(&e.rescheduled_by)?,
        ))
    } else if t == cpb::SessionCancelled::full_name() {
        let e: cpb::SessionCancelled = decode_payload(event)?;
        Some((
            Kind::SessionCancelled,
            stored_id(&e.session_id)?,
            None,
            stored_opt_id(&e.cancelled_by)?,
        ))
    } else {
        None
    })
}

fn place_move(event: &RecordedEvent) -> Result<Option<Move>> {
    let t = event.event_type.as_str();
    let plain = |member: String, taken, given| Move {
        member,
        taken,
        given,
        notice: None,
    };
    Ok(Some(if t == cpb::MemberJoinedCohort::full_name() {
        let e: cpb::MemberJoinedCohort = decode_payload(event)?;
        plain(e.member_id, Some("seat"), None)
    } else if t == cpb::MemberWaitlisted::full_name() {
        let e: cpb::MemberWaitlisted = decode_payload(event)?;
        plain(e.member_id, Some("waitlist"), None)
    } else if t == cpb::WaitlistPromoted::full_name() {
        let e: cpb::WaitlistPromoted = decode_payload(event)?;
        Move {
            notice: Some((Kind::PromotedFromWaitlist, String::new())),
            ..plain(e.member_id, Some("seat"), Some("waitlist"))
        }
    } else if t == cpb::FacilitatorAssigned::full_name() {
        let e: cpb::FacilitatorAssigned = decode_payload(event)?;
        plain(e.member_id, Some("facilitator"), None)
    } else if t == cpb::FacilitatorRemoved::full_name() {
        let e: cpb::FacilitatorRemoved = decode_payload(event)?;
        plain(e.member_id, None, Some("facilitator"))
    } else if t == cpb::MemberInvited::full_name() {
        let e: cpb::MemberInvited = decode_payload(event)?;
        Move {
            notice: Some((Kind::CohortInvitation, e.invited_by)),
            ..plain(e.member_id, Some("invitation"), None)
        }
    } else if t == cpb::InvitationDeclined::full_name() {
        let e: cpb::InvitationDeclined = decode_payload(event)?;
        plain(e.member_id, None, Some("invitation"))
    } else if t == cpb::InvitationRevoked::full_name() {
        let e: cpb::InvitationRevoked = decode_payload(event)?;
        plain(e.member_id, None, Some("invitation"))
    } else if t == cpb::InvitationExpired::full_name() {
        let e: cpb::InvitationExpired = decode_payload(event)?;
        plain(e.member_id, None, Some("invitation"))
    } else if t == cpb::MemberLeftCohort::full_name() {
        let e: cpb::MemberLeftCohort = decode_payload(event)?;
        plain(e.member_id, None, place_name(e.place))
    } else if t == cpb::MemberRemovedFromCohort::full_name() {
        let e: cpb::MemberRemovedFromCohort = decode_payload(event)?;
        let place = place_name(e.place);
        // Losing a seat or a waitlist place is news; a withdrawn invitation was never a place.
        let notice = matches!(place, Some("seat" | "waitlist" | "facilitator"))
            .then(|| (Kind::SeatLost, e.removed_by.clone()));
        Move {
            notice,
            ..plain(e.member_id, None, place)
        }
    } else if t == cpb::MemberReleased::full_name() {
        let e: cpb::MemberReleased = decode_payload(event)?;
        plain(e.member_id, None, place_name(e.place))
    } else {
        return Ok(None);
    }))
}

/// The cohort's community, once its creation has been seen.
pub(crate) async fn community_of(conn: &mut PgConnection, cohort: Uuid) -> Result<Option<Uuid>> {
    Ok(
        sqlx::query_scalar("SELECT community_id FROM cohorts WHERE cohort_id = $1")
            .bind(cohort)
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// Who sits in or facilitates `cohort` and is an active member of its community: those who read
/// its conversation and take part in its sessions.
pub(crate) async fn seated(conn: &mut PgConnection, cohort: Uuid) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT p.member_id
         FROM places p
         JOIN cohorts c ON c.cohort_id = p.cohort_id
         JOIN members m ON m.community_id = c.community_id AND m.member_id = p.member_id AND m.active
         WHERE p.cohort_id = $1 AND p.place IN ('seat', 'facilitator')
         ORDER BY p.member_id",
    )
    .bind(cohort)
    .fetch_all(&mut *conn)
    .await?)
}

/// Whether a SessionScheduled is a one-off or the first of its series.
fn first_of_series(event: &RecordedEvent) -> Result<bool> {
    let e: cpb::SessionScheduled = decode_payload(event)?;
    Ok(e.occurrence <= 1)
}

/// Keeps the session's start (or its cancellation) for the reminders.
async fn track(
    conn: &mut PgConnection,
    cohort: Uuid,
    kind: Kind,
    session: Uuid,
    starts_at: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<()> {
    match (kind, starts_at) {
        (Kind::SessionCancelled, _) => {
            sqlx::query("UPDATE sessions SET cancelled = true WHERE session_id = $1")
                .bind(session)
                .execute(&mut *conn)
                .await?;
        }
        (_, Some(starts_at)) => {
            sqlx::query(
                "INSERT INTO sessions (session_id, cohort_id, starts_at) VALUES ($1, $2, $3)
                 ON CONFLICT (session_id) DO UPDATE SET starts_at = EXCLUDED.starts_at",
            )
            .bind(session)
            .bind(cohort)
            .bind(starts_at)
            .execute(&mut *conn)
            .await?;
        }
        _ => {}
    }
    Ok(())
}
