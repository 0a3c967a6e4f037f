//! The directory: communities, members with their profiles, invitations and pending join
//! requests, as the queries read them. Personal fields are stored opened; erasure blanks them here
//! in the same transaction that records the erasure as applied, and a rebuild after an erasure
//! cannot open them again.

use async_trait::async_trait;
use kith_platform::Result;
use kith_platform::eventlog::RecordedEvent;
use kith_platform::projection::Projection;
use kith_platform::text::storable;
use kith_proto::membership as pb;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::codec::{MembershipCodec, role_value};
use crate::domain::{Event, Profile, Role};

/// A member's status as stored (the wire enum's value).
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemberStatusCode;

impl MemberStatusCode {
    pub(crate) const ACTIVE: i32 = pb::MemberStatus::Active as i32;
    pub(crate) const LEFT: i32 = pb::MemberStatus::Left as i32;
    pub(crate) const REMOVED: i32 = pb::MemberStatus::Removed as i32;
    pub(crate) const BANNED: i32 = pb::MemberStatus::Banned as i32;
    pub(crate) const ERASED: i32 = pb::MemberStatus::Erased as i32;
}

/// The directory projection.
#[derive(Debug)]
pub(crate) struct Directory {
    codec: MembershipCodec,
}

impl Directory {
    pub(crate) fn new(codec: MembershipCodec) -> Self {
        Self { codec }
    }
}

const DDL: &str = "
CREATE TABLE IF NOT EXISTS communities (
    community_id uuid PRIMARY KEY,
    name         text        NOT NULL,
    description  text        NOT NULL,
    archived     boolean     NOT NULL DEFAULT false,
    member_count integer     NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL,
    version      bigint      NOT NULL
);
-- Added after the first release: every community then had no language, so no rebuild is needed.
ALTER TABLE communities ADD COLUMN IF NOT EXISTS language text NOT NULL DEFAULT '';
CREATE TABLE IF NOT EXISTS members (
    community_id    uuid        NOT NULL,
    member_id       uuid        NOT NULL,
    role            integer     NOT NULL,
    status          integer     NOT NULL,
    display_name    text,
    handle          text,
    bio             text,
    erased          boolean     NOT NULL DEFAULT false,
    joined_at       timestamptz NOT NULL,
    joined_position bigint      NOT NULL,
    PRIMARY KEY (community_id, member_id)
);
CREATE INDEX IF NOT EXISTS members_by_join ON members (community_id, joined_position, member_id);
CREATE INDEX IF NOT EXISTS members_by_member ON members (member_id, joined_position);
CREATE TABLE IF NOT EXISTS invitations (
    invitation_id    uuid        PRIMARY KEY,
    community_id     uuid        NOT NULL,
    created_by       uuid        NOT NULL,
    expires_at       timestamptz NOT NULL,
    max_uses         integer     NOT NULL,
    uses             integer     NOT NULL DEFAULT 0,
    revoked          boolean     NOT NULL DEFAULT false,
    created_position bigint      NOT NULL
);
CREATE INDEX IF NOT EXISTS invitations_by_community ON invitations (community_id, created_position);
CREATE TABLE IF NOT EXISTS join_requests (
    community_id uuid        NOT NULL,
    member_id    uuid        NOT NULL,
    display_name text,
    handle       text,
    bio          text,
    answers      text[]      NOT NULL DEFAULT '{}',
    requested_at timestamptz NOT NULL,
    position     bigint      NOT NULL,
    PRIMARY KEY (community_id, member_id)
);
CREATE INDEX IF NOT EXISTS join_requests_by_position ON join_requests (community_id, position);
CREATE TABLE IF NOT EXISTS bans (
    community_id uuid        NOT NULL,
    member_id    uuid        NOT NULL,
    banned_by    uuid        NOT NULL,
    banned_at    timestamptz NOT NULL,
    reason       text,
    was_member   boolean     NOT NULL,
    position     bigint      NOT NULL,
    PRIMARY KEY (community_id, member_id)
);
CREATE INDEX IF NOT EXISTS bans_by_position ON bans (community_id, position);
";

fn profile_fields(profile: Option<&Profile>) -> (Option<String>, Option<String>, Option<String>) {
    match profile {
        Some(p) => (
            Some(storable(p.display_name.as_str()).into_owned()),
            Some(storable(p.handle.as_str()).into_owned()),
            Some(storable(p.bio.as_str()).into_owned()),
        ),
        None => (None, None, None),
    }
}

async fn set_status(
    conn: &mut PgConnection,
    community: Uuid,
    member: Uuid,
    status: i32,
) -> Result<()> {
    let left = sqlx::query(
        "UPDATE members SET status = $3 WHERE community_id = $1 AND member_id = $2 AND status = $4",
    )
    .bind(community)
    .bind(member)
    .bind(status)
    .bind(MemberStatusCode::ACTIVE)
    .execute(&mut *conn)
    .await?;
    if left.rows_affected() > 0 {
        sqlx::query(
            "UPDATE communities SET member_count = member_count - 1 WHERE community_id = $1",
        )
        .bind(community)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn drop_request(conn: &mut PgConnection, community: Uuid, member: Uuid) -> Result<()> {
    sqlx::query("DELETE FROM join_requests WHERE community_id = $1 AND member_id = $2")
        .bind(community)
        .bind(member)
        .execute(conn)
        .await?;
    Ok(())
}

#[async_trait]
impl Projection for Directory {
    fn name(&self) -> &'static str {
        "directory"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "communities",
            "members",
            "invitations",
            "join_requests",
            "bans",
        ]
    }

    fn ddl(&self) -> &'static str {
        DDL
    }

    async fn apply(&self, conn: &mut PgConnection, recorded: &RecordedEvent) -> Result<()> {
        let Ok(community) = recorded.stream_id.parse::<Uuid>() else {
            return Ok(());
        };
        let mut opener = self.codec.opener();
        let event = self.codec.decode_one(&mut opener, recorded).await?;
        sqlx::query("UPDATE communities SET version = $2 WHERE community_id = $1")
            .bind(community)
            .bind(recorded.version)
            .execute(&mut *conn)
            .await?;
        match event {
            Event::CommunityCreated {
                name, description, ..
            } => {
                sqlx::query(
                    "INSERT INTO communities (community_id, name, description, created_at, version)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .bind(community)
                .bind(storable(name.as_str()))
                .bind(storable(description.as_str()))
                .bind(recorded.recorded_at)
                .bind(recorded.version)
                .execute(&mut *conn)
                .await?;
            }
            Event::CommunityUpdated {
                name, description, ..
            } => {
                sqlx::query(
                    "UPDATE communities SET name = $2, description = $3 WHERE community_id = $1",
                )
                .bind(community)
                .bind(storable(name.as_str()))
                .bind(storable(description.as_str()))
                .execute(&mut *conn)
                .await?;
            }
            Event::CommunityLanguageSet { language, .. } => {
                sqlx::query("UPDATE communities SET language = $2 WHERE community_id = $1")
                    .bind(community)
                    .bind(storable(language.as_str()))
                    .execute(&mut *conn)
                    .await?;
            }
            Event::CommunityArchived { .. } => {
                sqlx::query("UPDATE communities SET archived = true WHERE community_id = $1")
                    .bind(community)
                    .execute(&mut *conn)
                    .await?;
            }
            Event::MemberJoined {
                member_id,
                role,
                profile,
                invitation_id,
                ..
            } => {
                let (display_name, handle, bio) = profile_fields(profile.as_ref());
                sqlx::query(
                    "INSERT INTO members (community_id, member_id, role, status, display_name, handle, bio,
                                          erased, joined_at, joined_position)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, false, $8, $9)
                     ON CONFLICT (community_id, member_id) DO UPDATE SET
                        role = $3, status = $4, display_name = $5, handle = $6, bio = $7, erased = false,
                        joined_at = $8, joined_position = $9",
                )
                .bind(community)
                .bind(member_id)
                .bind(role_value(role))
                .bind(MemberStatusCode::ACTIVE)
                .bind(display_name)
                .bind(handle)
                .bind(bio)
                .bind(recorded.recorded_at)
                .bind(recorded.position)
                .execute(&mut *conn)
                .await?;
                sqlx::query("UPDATE communities SET member_count = member_count + 1 WHERE community_id = $1")
                    .bind(community)
                    .execute(&mut *conn)
                    .await?;
                if let Some(invitation) = invitation_id {
                    sqlx::query("UPDATE invitations SET uses = uses + 1 WHERE invitation_id = $1")
                        .bind(invitation)
                        .execute(&mut *conn)
                        .await?;
                }
                drop_request(conn, community, member_id).await?;
            }
            Event::ProfileUpdated { member_id, profile } => {
                let (display_name, handle, bio) = profile_fields(profile.as_ref());
                sqlx::query(
                    "UPDATE members SET display_name = $3, handle = $4, bio = $5
                     WHERE community_id = $1 AND member_id = $2",
                )
                .bind(community)
                .bind(member_id)
                .bind(display_name)
                .bind(handle)
                .bind(bio)
                .execute(&mut *conn)
                .await?;
            }
            Event::RoleAssigned {
                member_id, role, ..
            } => {
                set_role(conn, community, member_id, role).await?;
            }
            Event::RoleRevoked { member_id, .. } => {
                set_role(conn, community, member_id, Role::Member).await?;
            }
            Event::InvitationCreated {
                invitation_id,
                created_by,
                expires_at,
                max_uses,
            } => {
                sqlx::query(
                    "INSERT INTO invitations (invitation_id, community_id, created_by, expires_at, max_uses, created_position)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                )
                .bind(invitation_id)
                .bind(community)
                .bind(created_by)
                .bind(expires_at)
                .bind(i32::try_from(max_uses).unwrap_or(i32::MAX))
                .bind(recorded.position)
                .execute(&mut *conn)
                .await?;
            }
            Event::InvitationRevoked { invitation_id, .. } => {
                sqlx::query("UPDATE invitations SET revoked = true WHERE invitation_id = $1")
                    .bind(invitation_id)
                    .execute(&mut *conn)
                    .await?;
            }
            Event::JoinRequested {
                member_id,
                profile,
                answers,
            } => {
                let (display_name, handle, bio) = profile_fields(profile.as_ref());
                let answers: Vec<String> = answers
                    .unwrap_or_default()
                    .into_iter()
                    .map(|a| storable(a.as_str()).into_owned())
                    .collect();
                sqlx::query(
                    "INSERT INTO join_requests (community_id, member_id, display_name, handle, bio, answers, requested_at, position)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (community_id, member_id) DO UPDATE SET
                        display_name = $3, handle = $4, bio = $5, answers = $6, requested_at = $7, position = $8",
                )
                .bind(community)
                .bind(member_id)
                .bind(display_name)
                .bind(handle)
                .bind(bio)
                .bind(answers)
                .bind(recorded.recorded_at)
                .bind(recorded.position)
                .execute(&mut *conn)
                .await?;
            }
            Event::JoinRequestApproved { member_id, .. }
            | Event::JoinRequestRejected { member_id, .. }
            | Event::JoinRequestWithdrawn { member_id } => {
                drop_request(conn, community, member_id).await?;
            }
            Event::MemberUnbanned { member_id, .. } => {
                sqlx::query("DELETE FROM bans WHERE community_id = $1 AND member_id = $2")
                    .bind(community)
                    .bind(member_id)
                    .execute(&mut *conn)
                    .await?;
                // Out, as if removed; or erased, if their data went while they were banned.
                sqlx::query(
                    "UPDATE members SET status = CASE WHEN erased THEN $4 ELSE $3 END
                     WHERE community_id = $1 AND member_id = $2 AND status = $5",
                )
                .bind(community)
                .bind(member_id)
                .bind(MemberStatusCode::REMOVED)
                .bind(MemberStatusCode::ERASED)
                .bind(MemberStatusCode::BANNED)
                .execute(&mut *conn)
                .await?;
            }
            Event::MemberLeft { member_id } => {
                set_status(conn, community, member_id, MemberStatusCode::LEFT).await?;
            }
            Event::MemberRemoved { member_id, .. } => {
                set_status(conn, community, member_id, MemberStatusCode::REMOVED).await?;
            }
            Event::MemberBanned {
                member_id,
                banned_by,
                reason,
                was_member,
            } => {
                let reason =
                    (!reason.as_str().is_empty()).then(|| storable(reason.as_str()).into_owned());
                sqlx::query(
                    "INSERT INTO bans (community_id, member_id, banned_by, banned_at, reason, was_member, position)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (community_id, member_id) DO UPDATE SET
                        banned_by = $3, banned_at = $4, reason = $5, was_member = $6, position = $7",
                )
                .bind(community)
                .bind(member_id)
                .bind(banned_by)
                .bind(recorded.recorded_at)
                .bind(reason)
                .bind(was_member)
                .bind(recorded.position)
                .execute(&mut *conn)
                .await?;
                set_status(conn, community, member_id, MemberStatusCode::BANNED).await?;
                sqlx::query(
                    "UPDATE members SET status = $3 WHERE community_id = $1 AND member_id = $2",
                )
                .bind(community)
                .bind(member_id)
                .bind(MemberStatusCode::BANNED)
                .execute(&mut *conn)
                .await?;
                drop_request(conn, community, member_id).await?;
            }
            Event::MemberErased { member_id, .. } => {
                set_status(conn, community, member_id, MemberStatusCode::ERASED).await?;
                sqlx::query(
                    "UPDATE bans SET reason = NULL WHERE community_id = $1 AND member_id = $2",
                )
                .bind(community)
                .bind(member_id)
                .execute(&mut *conn)
                .await?;
                sqlx::query(
                    "UPDATE members SET erased = true, display_name = NULL, handle = NULL, bio = NULL
                     WHERE community_id = $1 AND member_id = $2",
                )
                .bind(community)
                .bind(member_id)
                .execute(&mut *conn)
                .await?;
                drop_request(conn, community, member_id).await?;
            }
        }
        Ok(())
    }
}

async fn set_role(
    conn: &mut PgConnection,
    community: Uuid,
    member: Uuid,
    role: Role,
) -> Result<()> {
    sqlx::query("UPDATE members SET role = $3 WHERE community_id = $1 AND member_id = $2")
        .bind(community)
        .bind(member)
        .bind(role_value(role))
        .execute(conn)
        .await?;
    Ok(())
}
