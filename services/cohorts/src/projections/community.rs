//! What the cohorts service knows of each community, from the membership service's events on the
//! bus: who is an active member and in which role, and how far each community's stream has been
//! seen (for `community_version` waits). Nothing personal is kept: ids, roles and statuses only.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use kith_platform::Result;
use kith_platform::eventlog::RecordedEvent;
use kith_platform::projection::Projection;
use kith_platform::wire::{decode_payload, stored_id};
use kith_proto::membership as pb;
use prost::Name;
use sqlx::PgConnection;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::domain::{CommunityRole, Departure};

/// A member's standing in a community, as stored.
pub(crate) mod status {
    pub(crate) const ACTIVE: &str = "active";
    pub(crate) const LEFT: &str = "left";
    pub(crate) const REMOVED: &str = "removed";
    pub(crate) const BANNED: &str = "banned";
    pub(crate) const ERASED: &str = "erased";
}

/// The departure a stored status stands for; `None` for active members.
pub(crate) fn departure_of(stored: &str) -> Option<Departure> {
    match stored {
        status::LEFT => Some(Departure::Left),
        status::REMOVED => Some(Departure::Removed),
        status::BANNED => Some(Departure::Banned),
        status::ERASED => Some(Departure::Erased),
        _ => None,
    }
}

pub(crate) fn role_name(role: CommunityRole) -> &'static str {
    match role {
        CommunityRole::Owner => "owner",
        CommunityRole::Host => "host",
        CommunityRole::Coach => "coach",
        CommunityRole::Moderator => "moderator",
        CommunityRole::Member => "member",
    }
}

pub(crate) fn role_from_name(name: &str) -> Option<CommunityRole> {
    Some(match name {
        "owner" => CommunityRole::Owner,
        "host" => CommunityRole::Host,
        "coach" => CommunityRole::Coach,
        "moderator" => CommunityRole::Moderator,
        "member" => CommunityRole::Member,
        _ => return None,
    })
}

fn role_from_pb(value: i32) -> Option<CommunityRole> {
    Some(match pb::MemberRole::try_from(value).ok()? {
        pb::MemberRole::Owner => CommunityRole::Owner,
        pb::MemberRole::Host => CommunityRole::Host,
        pb::MemberRole::Coach => CommunityRole::Coach,
        pb::MemberRole::Moderator => CommunityRole::Moderator,
        pb::MemberRole::Member => CommunityRole::Member,
        pb::MemberRole::Unspecified => return None,
    })
}

/// The projection of membership's events. Members whose standing changed in a batch are handed
/// to the releaser once the batch commits.
#[derive(Debug)]
pub(crate) struct Communities {
    touched: Arc<Touched>,
}

impl Communities {
    pub(crate) fn new(touched: Arc<Touched>) -> Self {
        Self { touched }
    }
}

/// Members whose places may need releasing, collected while a batch is applied and handed over
/// after it commits (a scan before the commit would not see the batch). Each projection has its
/// own, so one projection's commit never hands over another's uncommitted batch. Each member
/// comes with the trace of the event that touched them, so that the release it causes joins the
/// trace of the command that caused it.
#[derive(Debug)]
pub(crate) struct Touched {
    pending: Mutex<Vec<Touch>>,
    committed: Mutex<Vec<Touch>>,
    /// Wakes the releaser; shared by every projection that feeds it.
    releaser: Arc<Notify>,
}

/// A member touched, and the W3C trace context of the apply that touched them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Touch {
    pub(crate) member: Uuid,
    pub(crate) traceparent: Option<String>,
}

impl Touched {
    pub(crate) fn new(releaser: Arc<Notify>) -> Self {
        Self {
            pending: Mutex::default(),
            committed: Mutex::default(),
            releaser,
        }
    }

    /// Called from a projection's apply, whose span is the current one.
    pub(crate) fn touch(&self, member: Uuid) {
        lock(&self.pending).push(Touch {
            member,
            traceparent: kith_platform::telemetry::current_traceparent(),
        });
    }

    /// Called after a batch commits: what it touched becomes visible to the releaser.
    pub(crate) fn commit(&self) {
        let pending = std::mem::take(&mut *lock(&self.pending));
        if !pending.is_empty() {
            lock(&self.committed).extend(pending);
            self.releaser.notify_one();
        }
    }

    /// The members touched by committed batches since the last call, once each (with the
    /// trace of the last touch).
    pub(crate) fn take(&self) -> Vec<Touch> {
        let mut touches = std::mem::take(&mut *lock(&self.committed));
        touches.reverse();
        touches.sort_by_key(|touch| touch.member);
        touches.dedup_by_key(|touch| touch.member);
        touches
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

const DDL: &str = "
CREATE TABLE IF NOT EXISTS communities (
    community_id uuid    PRIMARY KEY,
    archived     boolean NOT NULL DEFAULT false,
    version      bigint  NOT NULL
);
CREATE TABLE IF NOT EXISTS community_members (
    community_id uuid NOT NULL,
    member_id    uuid NOT NULL,
    role         text NOT NULL,
    status       text NOT NULL,
    PRIMARY KEY (community_id, member_id)
);
";

async fn set_standing(
    conn: &mut PgConnection,
    community: Uuid,
    member: Uuid,
    standing: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO community_members (community_id, member_id, role, status)
         VALUES ($1, $2, 'member', $3)
         ON CONFLICT (community_id, member_id) DO UPDATE SET status = EXCLUDED.status",
    )
    .bind(community)
    .bind(member)
    .bind(standing)
    .execute(conn)
    .await?;
    Ok(())
}

async fn set_role(
    conn: &mut PgConnection,
    community: Uuid,
    member: Uuid,
    role: Option<CommunityRole>,
) -> Result<()> {
    let role = role.unwrap_or(CommunityRole::Member);
    sqlx::query(
        "UPDATE community_members SET role = $3 WHERE community_id = $1 AND member_id = $2",
    )
    .bind(community)
    .bind(member)
    .bind(role_name(role))
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl Projection for Communities {
    fn name(&self) -> &'static str {
        "communities"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["communities", "community_members"]
    }

    fn ddl(&self) -> &'static str {
        DDL
    }

    fn reads(&self, stream_type: &str) -> bool {
        // Only communities say who belongs where; another kind of stream that membership adds
        // later cannot change that.
        stream_type == "community"
    }

    async fn apply(&self, conn: &mut PgConnection, event: &RecordedEvent) -> Result<()> {
        let Ok(community) = event.stream_id.parse::<Uuid>() else {
            return Ok(());
        };
        let t = event.event_type.as_str();
        sqlx::query(
            "INSERT INTO communities (community_id, version) VALUES ($1, $2)
             ON CONFLICT (community_id) DO UPDATE SET version = GREATEST(communities.version, EXCLUDED.version)",
        )
        .bind(community)
        .bind(event.version)
        .execute(&mut *conn)
        .await?;
        if t == pb::CommunityArchived::full_name() {
            sqlx::query("UPDATE communities SET archived = true WHERE community_id = $1")
                .bind(community)
                .execute(&mut *conn)
                .await?;
        } else if t == pb::MemberJoined::full_name() {
            let e: pb::MemberJoined = decode_payload(event)?;
            let member = stored_id(&e.member_id)?;
            set_standing(conn, community, member, status::ACTIVE).await?;
            set_role(conn, community, member, role_from_pb(e.role)).await?;
            self.touched.touch(member);
        } else if t == pb::RoleAssigned::full_name() {
            let e: pb::RoleAssigned = decode_payload(event)?;
            set_role(
                conn,
                community,
                stored_id(&e.member_id)?,
                role_from_pb(e.role),
            )
            .await?;
        } else if t == pb::MemberUnbanned::full_name() {
            // Out as if removed, as membership now says; still not a member.
            let e: pb::MemberUnbanned = decode_payload(event)?;
            sqlx::query(
                "UPDATE community_members SET status = $3
                 WHERE community_id = $1 AND member_id = $2 AND status = $4",
            )
            .bind(community)
            .bind(stored_id(&e.member_id)?)
            .bind(status::REMOVED)
            .bind(status::BANNED)
            .execute(&mut *conn)
            .await?;
        } else if t == pb::RoleRevoked::full_name() {
            let e: pb::RoleRevoked = decode_payload(event)?;
            set_role(conn, community, stored_id(&e.member_id)?, None).await?;
        } else {
            let departure = if t == pb::MemberLeft::full_name() {
                Some((
                    decode_payload::<pb::MemberLeft>(event)?.member_id,
                    status::LEFT,
                ))
            } else if t == pb::MemberRemoved::full_name() {
                Some((
                    decode_payload::<pb::MemberRemoved>(event)?.member_id,
                    status::REMOVED,
                ))
            } else if t == pb::MemberBanned::full_name() {
                Some((
                    decode_payload::<pb::MemberBanned>(event)?.member_id,
                    status::BANNED,
                ))
            } else if t == pb::MemberErased::full_name() {
                Some((
                    decode_payload::<pb::MemberErased>(event)?.member_id,
                    status::ERASED,
                ))
            } else {
                None
            };
            if let Some((member, standing)) = departure {
                let member = stored_id(&member)?;
                set_standing(conn, community, member, standing).await?;
                self.touched.touch(member);
            }
        }
        Ok(())
    }

    fn committed(&self) {
        self.touched.commit();
    }
}
