//! Who may read which conversation, learnt from other services' events only:
//!
//! - [`Members`], from membership's stream: each member's standing and role in each community.
//!   An erasure also destroys every sealing key of the member in that community (their message
//!   bodies and report reasons), in the same transaction as the checkpoint.
//! - [`Places`], from cohorts' stream: each cohort's community and who holds which place in it
//!   (seat, facilitator, waitlist, invitation).
//!
//! A cohort's conversation is read by its seated members and facilitators who are active
//! members of the community.

use async_trait::async_trait;
use kith_platform::Result;
use kith_platform::eventlog::RecordedEvent;
use kith_platform::projection::Projection;
use kith_platform::wire::{decode_payload, stored_id};
use kith_proto::cohorts as cpb;
use kith_proto::membership as mpb;
use prost::Name;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::codec::member_subject;

/// A member's role in a community, as the access rules use it.
pub mod role {
    pub const OWNER: &str = "owner";
    pub const HOST: &str = "host";
    pub const COACH: &str = "coach";
    pub const MODERATOR: &str = "moderator";
    pub const MEMBER: &str = "member";
}

/// Places in a cohort.
pub mod place {
    pub const SEAT: &str = "seat";
    pub const FACILITATOR: &str = "facilitator";
    pub const WAITLIST: &str = "waitlist";
    pub const INVITATION: &str = "invitation";
}

fn role_name(value: i32) -> &'static str {
    match mpb::MemberRole::try_from(value) {
        Ok(mpb::MemberRole::Owner) => role::OWNER,
        Ok(mpb::MemberRole::Host) => role::HOST,
        Ok(mpb::MemberRole::Coach) => role::COACH,
        Ok(mpb::MemberRole::Moderator) => role::MODERATOR,
        _ => role::MEMBER,
    }
}

fn place_name(value: i32) -> Option<&'static str> {
    match cpb::Place::try_from(value) {
        Ok(cpb::Place::Seat) => Some(place::SEAT),
        Ok(cpb::Place::Facilitator) => Some(place::FACILITATOR),
        Ok(cpb::Place::Waitlist) => Some(place::WAITLIST),
        Ok(cpb::Place::Invitation) => Some(place::INVITATION),
        _ => None,
    }
}

const MEMBERS_DDL: &str = "
CREATE TABLE IF NOT EXISTS community_members (
    community_id uuid   NOT NULL,
    member_id    uuid   NOT NULL,
    role         text   NOT NULL,
    active       bool   NOT NULL,
    -- Erased from the community: their messages read as erased, whatever was applied first.
    erased       bool   NOT NULL DEFAULT false,
    -- The keyed hash of the member's handle (kith_platform::pseudonym), to resolve mentions.
    handle_token bytea,
    PRIMARY KEY (community_id, member_id)
);
ALTER TABLE community_members ADD COLUMN IF NOT EXISTS handle_token bytea;
CREATE INDEX IF NOT EXISTS community_members_handle
    ON community_members (community_id, handle_token) WHERE handle_token IS NOT NULL;
CREATE TABLE IF NOT EXISTS communities (
    community_id  uuid   PRIMARY KEY,
    version       bigint NOT NULL,
    -- The text search configuration of the community's language (kith_platform::language).
    search_config text   NOT NULL DEFAULT 'simple'
);
ALTER TABLE communities ADD COLUMN IF NOT EXISTS search_config text NOT NULL DEFAULT 'simple';
";

/// Standing and role of each member in each community.
#[derive(Debug, Default)]
pub struct Members;

#[async_trait]
impl Projection for Members {
    fn name(&self) -> &'static str {
        "members"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["community_members", "communities"]
    }

    fn ddl(&self) -> &'static str {
        MEMBERS_DDL
    }

    fn reads(&self, stream_type: &str) -> bool {
        stream_type == "community"
    }

    async fn apply(&self, conn: &mut PgConnection, event: &RecordedEvent) -> Result<()> {
        let t = event.event_type.as_str();
        let (community, member, change) = if t == mpb::MemberJoined::full_name() {
            let e: mpb::MemberJoined = decode_payload(event)?;
            let token = handle_token(e.profile.as_ref());
            (
                e.community_id,
                e.member_id,
                Change::Active(role_name(e.role), token),
            )
        } else if t == mpb::ProfileUpdated::full_name() {
            let e: mpb::ProfileUpdated = decode_payload(event)?;
            let token = handle_token(e.profile.as_ref());
            (e.community_id, e.member_id, Change::Profile(token))
        } else if t == mpb::RoleAssigned::full_name() {
            let e: mpb::RoleAssigned = decode_payload(event)?;
            (e.community_id, e.member_id, Change::Role(role_name(e.role)))
        } else if t == mpb::RoleRevoked::full_name() {
            let e: mpb::RoleRevoked = decode_payload(event)?;
            (e.community_id, e.member_id, Change::Role(role::MEMBER))
        } else if t == mpb::MemberLeft::full_name() {
            let e: mpb::MemberLeft = decode_payload(event)?;
            (e.community_id, e.member_id, Change::Gone)
        } else if t == mpb::MemberRemoved::full_name() {
            let e: mpb::MemberRemoved = decode_payload(event)?;
            (e.community_id, e.member_id, Change::Gone)
        } else if t == mpb::MemberBanned::full_name() {
            let e: mpb::MemberBanned = decode_payload(event)?;
            (e.community_id, e.member_id, Change::Gone)
        } else if t == mpb::CommunityLanguageSet::full_name() {
            let e: mpb::CommunityLanguageSet = decode_payload(event)?;
            let community = stored_id(&e.community_id)?;
            // Make sure the row exists, then change it; a code this version does not know (a
            // later version's) searches words as written.
            self.advance(conn, event).await?;
            let config = kith_platform::language::search_config(&e.language)
                .unwrap_or(kith_platform::language::NO_LANGUAGE_CONFIG);
            return super::messages::set_search_config(conn, community, config).await;
        } else if t == mpb::MemberErased::full_name() {
            let e: mpb::MemberErased = decode_payload(event)?;
            (e.community_id, e.member_id, Change::Erased)
        } else {
            return self.advance(conn, event).await;
        };
        let (community, member) = (stored_id(&community)?, stored_id(&member)?);
        let erased = matches!(change, Change::Erased);
        match change {
            Change::Active(role, token) => {
                sqlx::query(
                    "INSERT INTO community_members (community_id, member_id, role, active, handle_token)
                     VALUES ($1, $2, $3, true, $4)
                     ON CONFLICT (community_id, member_id)
                     DO UPDATE SET role = EXCLUDED.role, active = true,
                         handle_token = EXCLUDED.handle_token",
                )
                .bind(community)
                .bind(member)
                .bind(role)
                .bind(token)
                .execute(&mut *conn)
                .await?;
            }
            Change::Profile(token) => {
                sqlx::query(
                    "UPDATE community_members SET handle_token = $3
                     WHERE community_id = $1 AND member_id = $2 AND NOT erased",
                )
                .bind(community)
                .bind(member)
                .bind(token)
                .execute(&mut *conn)
                .await?;
            }
            Change::Role(role) => {
                sqlx::query(
                    "UPDATE community_members SET role = $3
                     WHERE community_id = $1 AND member_id = $2",
                )
                .bind(community)
                .bind(member)
                .bind(role)
                .execute(&mut *conn)
                .await?;
            }
            Change::Gone => {
                sqlx::query(
                    "UPDATE community_members SET active = false
                     WHERE community_id = $1 AND member_id = $2",
                )
                .bind(community)
                .bind(member)
                .execute(&mut *conn)
                .await?;
            }
            Change::Erased => {
                // Someone banned before they ever joined may be erased: they get a row too.
                sqlx::query(
                    "INSERT INTO community_members (community_id, member_id, role, active, erased)
                     VALUES ($1, $2, $3, false, true)
                     ON CONFLICT (community_id, member_id)
                     DO UPDATE SET active = false, erased = true, handle_token = NULL",
                )
                .bind(community)
                .bind(member)
                .bind(role::MEMBER)
                .execute(&mut *conn)
                .await?;
            }
        }
        if erased {
            super::messages::erasure_lock(conn, community, member).await?;
            erase(conn, community, member).await?;
            super::messages::blank_erased(conn, community, member).await?;
        }
        self.advance(conn, event).await
    }
}

impl Members {
    /// The community's version, for calls that wait for membership's events.
    async fn advance(&self, conn: &mut PgConnection, event: &RecordedEvent) -> Result<()> {
        let Some(community) = event
            .stream_id
            .parse::<Uuid>()
            .ok()
            .filter(|_| event.stream_type == "community")
        else {
            return Ok(());
        };
        sqlx::query(
            "INSERT INTO communities (community_id, version) VALUES ($1, $2)
             ON CONFLICT (community_id) DO UPDATE SET version = GREATEST(communities.version, EXCLUDED.version)",
        )
        .bind(community)
        .bind(event.version)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

enum Change {
    Active(&'static str, Option<Vec<u8>>),
    Profile(Option<Vec<u8>>),
    Role(&'static str),
    Gone,
    Erased,
}

/// The handle token of a profile; none from events written before tokens existed.
fn handle_token(profile: Option<&mpb::SealedProfile>) -> Option<Vec<u8>> {
    profile
        .map(|p| p.handle_token.clone())
        .filter(|token| !token.is_empty())
}

/// Destroys every sealing key of `member` in `community`: the member's own subject (report
/// reasons) and each of their messages' (`<community>/<member>/<message>`). The log keeps the
/// sealed bytes; no replay can open them again.
async fn erase(conn: &mut PgConnection, community: Uuid, member: Uuid) -> Result<()> {
    let subject = member_subject(community, member);
    sqlx::query("DELETE FROM sealing_keys WHERE subject = $1 OR subject LIKE $2")
        .bind(&subject)
        .bind(format!("{subject}/%"))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

const PLACES_DDL: &str = "
CREATE TABLE IF NOT EXISTS cohorts (
    cohort_id    uuid   PRIMARY KEY,
    community_id uuid   NOT NULL,
    version      bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS cohort_places (
    cohort_id uuid NOT NULL,
    member_id uuid NOT NULL,
    place     text NOT NULL,
    PRIMARY KEY (cohort_id, member_id, place)
);
CREATE INDEX IF NOT EXISTS cohort_places_member ON cohort_places (member_id);
";

/// Each cohort's community and the places held in it.
#[derive(Debug, Default)]
pub struct Places;

#[async_trait]
impl Projection for Places {
    fn name(&self) -> &'static str {
        "places"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["cohorts", "cohort_places"]
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
                "INSERT INTO cohorts (cohort_id, community_id, version) VALUES ($1, $2, $3)
                 ON CONFLICT (cohort_id) DO NOTHING",
            )
            .bind(cohort)
            .bind(stored_id(&e.community_id)?)
            .bind(event.version)
            .execute(&mut *conn)
            .await?;
        }
        let (member, taken, given) = if t == cpb::MemberJoinedCohort::full_name() {
            let e: cpb::MemberJoinedCohort = decode_payload(event)?;
            (e.member_id, Some(place::SEAT), None)
        } else if t == cpb::MemberWaitlisted::full_name() {
            let e: cpb::MemberWaitlisted = decode_payload(event)?;
            (e.member_id, Some(place::WAITLIST), None)
        } else if t == cpb::WaitlistPromoted::full_name() {
            let e: cpb::WaitlistPromoted = decode_payload(event)?;
            (e.member_id, Some(place::SEAT), Some(place::WAITLIST))
        } else if t == cpb::FacilitatorAssigned::full_name() {
            let e: cpb::FacilitatorAssigned = decode_payload(event)?;
            (e.member_id, Some(place::FACILITATOR), None)
        } else if t == cpb::FacilitatorRemoved::full_name() {
            let e: cpb::FacilitatorRemoved = decode_payload(event)?;
            (e.member_id, None, Some(place::FACILITATOR))
        } else if t == cpb::MemberInvited::full_name() {
            let e: cpb::MemberInvited = decode_payload(event)?;
            (e.member_id, Some(place::INVITATION), None)
        } else if t == cpb::InvitationDeclined::full_name() {
            let e: cpb::InvitationDeclined = decode_payload(event)?;
            (e.member_id, None, Some(place::INVITATION))
        } else if t == cpb::InvitationRevoked::full_name() {
            let e: cpb::InvitationRevoked = decode_payload(event)?;
            (e.member_id, None, Some(place::INVITATION))
        } else if t == cpb::InvitationExpired::full_name() {
            let e: cpb::InvitationExpired = decode_payload(event)?;
            (e.member_id, None, Some(place::INVITATION))
        } else if t == cpb::MemberLeftCohort::full_name() {
            let e: cpb::MemberLeftCohort = decode_payload(event)?;
            (e.member_id, None, place_name(e.place))
        } else if t == cpb::MemberRemovedFromCohort::full_name() {
            let e: cpb::MemberRemovedFromCohort = decode_payload(event)?;
            (e.member_id, None, place_name(e.place))
        } else if t == cpb::MemberReleased::full_name() {
            let e: cpb::MemberReleased = decode_payload(event)?;
            (e.member_id, None, place_name(e.place))
        } else {
            return advance_cohort(conn, cohort, event.version).await;
        };
        let member = stored_id(&member)?;
        if let Some(place) = given {
            sqlx::query(
                "DELETE FROM cohort_places WHERE cohort_id = $1 AND member_id = $2 AND place = $3",
            )
            .bind(cohort)
            .bind(member)
            .bind(place)
            .execute(&mut *conn)
            .await?;
        }
        if let Some(place) = taken {
            // An accepted invitation becomes a seat: the invitation place goes with it.
            if place == place::SEAT {
                sqlx::query(
                    "DELETE FROM cohort_places WHERE cohort_id = $1 AND member_id = $2 AND place = $3",
                )
                .bind(cohort)
                .bind(member)
                .bind(place::INVITATION)
                .execute(&mut *conn)
                .await?;
            }
            sqlx::query(
                "INSERT INTO cohort_places (cohort_id, member_id, place) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(cohort)
            .bind(member)
            .bind(place)
            .execute(&mut *conn)
            .await?;
        }
        advance_cohort(conn, cohort, event.version).await
    }
}

async fn advance_cohort(conn: &mut PgConnection, cohort: Uuid, version: i64) -> Result<()> {
    sqlx::query("UPDATE cohorts SET version = GREATEST(version, $2) WHERE cohort_id = $1")
        .bind(cohort)
        .bind(version)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// What the access rules need of someone in a cohort's conversation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Standing {
    pub seated: bool,
    pub facilitator: bool,
    /// Active in the community, with this role.
    pub role: Option<&'static str>,
}

/// `member`'s standing in `cohort`'s conversation, and the cohort's community (`None` when the
/// cohort is not known here yet).
pub async fn standing(
    pool: &sqlx::PgPool,
    cohort: Uuid,
    member: Uuid,
) -> Result<Option<(Uuid, Standing)>> {
    let row: Option<(Uuid, Option<String>, Vec<String>)> = sqlx::query_as(
        "SELECT c.community_id,
                (SELECT m.role FROM community_members m
                  WHERE m.community_id = c.community_id AND m.member_id = $2 AND m.active),
                ARRAY(SELECT p.place FROM cohort_places p WHERE p.cohort_id = $1 AND p.member_id = $2)
         FROM cohorts c WHERE c.cohort_id = $1",
    )
    .bind(cohort)
    .bind(member)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(community, role, places)| {
        let role = role.as_deref().map(|r| match r {
            role::OWNER => role::OWNER,
            role::HOST => role::HOST,
            role::COACH => role::COACH,
            role::MODERATOR => role::MODERATOR,
            _ => role::MEMBER,
        });
        (
            community,
            Standing {
                seated: places.iter().any(|p| p == place::SEAT),
                facilitator: places.iter().any(|p| p == place::FACILITATOR),
                role,
            },
        )
    }))
}

impl Standing {
    /// As the deciders take it: readers are seated members and facilitators who are active in
    /// the community; moderators are its owners, hosts and moderators.
    pub fn access(self) -> crate::domain::Access {
        let active = self.role.is_some();
        crate::domain::Access {
            reader: active && (self.seated || self.facilitator),
            facilitator: active && self.facilitator,
            moderator: matches!(self.role, Some(role::OWNER | role::HOST | role::MODERATOR)),
        }
    }
}

#[cfg(test)]
mod tests;
