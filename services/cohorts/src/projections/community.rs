//! What the cohorts service knows of each community, from the membership service's events on the
//! bus: who is an active member and in which role, and how far each community's stream has been
//! seen (for `community_version` waits). Nothing personal is kept: ids, roles and statuses only.

use std::collections::{BTreeMap, HashMap};
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

/// What one membership event does to a member's row, applied in order to the row as it stands.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// The member's standing; the row is created (as a plain member) if missing.
    Standing(&'static str),
    /// The member's role, if the row exists.
    Role(Option<CommunityRole>),
    /// Out as if removed, if banned.
    Unbanned,
}

/// A member's row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MemberRow {
    role: String,
    status: String,
}

impl Step {
    fn apply(self, row: &mut Option<MemberRow>) {
        match self {
            Step::Standing(standing) => {
                let role = row
                    .take()
                    .map_or_else(|| role_name(CommunityRole::Member).to_owned(), |r| r.role);
                *row = Some(MemberRow {
                    role,
                    status: standing.to_owned(),
                });
            }
            Step::Role(role) => {
                if let Some(row) = row {
                    row.role = role_name(role.unwrap_or(CommunityRole::Member)).to_owned();
                }
            }
            Step::Unbanned => {
                // Membership now says removed; still not a member.
                if let Some(row) = row.as_mut().filter(|row| row.status == status::BANNED) {
                    row.status = status::REMOVED.to_owned();
                }
            }
        }
    }
}

/// What a batch of events does: each community's last version and whether it was archived,
/// and each member's steps in order.
#[derive(Debug, Default)]
struct Changes {
    communities: BTreeMap<Uuid, (i64, bool)>,
    steps: Vec<((Uuid, Uuid), Step)>,
    touched: Vec<Uuid>,
}

impl Changes {
    fn of(events: &[&RecordedEvent]) -> Result<Self> {
        let mut changes = Self::default();
        for event in events {
            changes.add(event)?;
        }
        Ok(changes)
    }

    fn add(&mut self, event: &RecordedEvent) -> Result<()> {
        let Ok(community) = event.stream_id.parse::<Uuid>() else {
            return Ok(());
        };
        let seen = self
            .communities
            .entry(community)
            .or_insert((event.version, false));
        seen.0 = seen.0.max(event.version);
        let t = event.event_type.as_str();
        let mut step = |member: &str, step: Step| -> Result<Uuid> {
            let member = stored_id(member)?;
            self.steps.push(((community, member), step));
            Ok(member)
        };
        if t == pb::CommunityArchived::full_name() {
            seen.1 = true;
        } else if t == pb::MemberJoined::full_name() {
            let e: pb::MemberJoined = decode_payload(event)?;
            step(&e.member_id, Step::Standing(status::ACTIVE))?;
            let member = step(&e.member_id, Step::Role(role_from_pb(e.role)))?;
            self.touched.push(member);
        } else if t == pb::RoleAssigned::full_name() {
            let e: pb::RoleAssigned = decode_payload(event)?;
            step(&e.member_id, Step::Role(role_from_pb(e.role)))?;
        } else if t == pb::MemberUnbanned::full_name() {
            let e: pb::MemberUnbanned = decode_payload(event)?;
            step(&e.member_id, Step::Unbanned)?;
        } else if t == pb::RoleRevoked::full_name() {
            let e: pb::RoleRevoked = decode_payload(event)?;
            step(&e.member_id, Step::Role(None))?;
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
                let member = step(&member, Step::Standing(standing))?;
                self.touched.push(member);
            }
        }
        Ok(())
    }
}

/// The stored rows of `keys` (`None` for a member with no row yet).
async fn member_rows(
    conn: &mut PgConnection,
    keys: &[(Uuid, Uuid)],
) -> Result<HashMap<(Uuid, Uuid), Option<MemberRow>>> {
    let (communities, members): (Vec<Uuid>, Vec<Uuid>) = keys.iter().copied().unzip();
    let stored: Vec<(Uuid, Uuid, String, String)> = sqlx::query_as(
        "SELECT community_id, member_id, role, status FROM community_members
         WHERE (community_id, member_id) IN (SELECT * FROM unnest($1::uuid[], $2::uuid[]))",
    )
    .bind(communities)
    .bind(members)
    .fetch_all(&mut *conn)
    .await?;
    let mut rows: HashMap<(Uuid, Uuid), Option<MemberRow>> =
        keys.iter().map(|key| (*key, None)).collect();
    for (community, member, role, status) in stored {
        rows.insert((community, member), Some(MemberRow { role, status }));
    }
    Ok(rows)
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
        self.apply_batch(conn, &[event]).await
    }

    /// The batch's steps run in memory on the rows they touch, read in one statement; each
    /// table is then written in one statement, whatever the batch's size.
    async fn apply_batch(&self, conn: &mut PgConnection, events: &[&RecordedEvent]) -> Result<()> {
        let changes = Changes::of(events)?;
        if !changes.steps.is_empty() {
            let mut keys: Vec<(Uuid, Uuid)> = changes.steps.iter().map(|(key, _)| *key).collect();
            keys.sort_unstable();
            keys.dedup();
            let before = member_rows(conn, &keys).await?;
            let mut rows = before.clone();
            for (key, step) in &changes.steps {
                if let Some(row) = rows.get_mut(key) {
                    step.apply(row);
                }
            }
            let changed: Vec<(&(Uuid, Uuid), &MemberRow)> = rows
                .iter()
                .filter(|(key, row)| before.get(key) != Some(row))
                .filter_map(|(key, row)| row.as_ref().map(|row| (key, row)))
                .collect();
            if !changed.is_empty() {
                let communities: Vec<Uuid> = changed.iter().map(|((c, _), _)| *c).collect();
                let members: Vec<Uuid> = changed.iter().map(|((_, m), _)| *m).collect();
                let roles: Vec<&str> = changed.iter().map(|(_, row)| row.role.as_str()).collect();
                let statuses: Vec<&str> =
                    changed.iter().map(|(_, row)| row.status.as_str()).collect();
                sqlx::query(
                    "INSERT INTO community_members (community_id, member_id, role, status)
                     SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[])
                     ON CONFLICT (community_id, member_id)
                     DO UPDATE SET role = EXCLUDED.role, status = EXCLUDED.status",
                )
                .bind(communities)
                .bind(members)
                .bind(roles)
                .bind(statuses)
                .execute(&mut *conn)
                .await?;
            }
        }
        if !changes.communities.is_empty() {
            let ids: Vec<Uuid> = changes.communities.keys().copied().collect();
            let versions: Vec<i64> = changes.communities.values().map(|(v, _)| *v).collect();
            let archived: Vec<bool> = changes.communities.values().map(|(_, a)| *a).collect();
            sqlx::query(
                "INSERT INTO communities (community_id, version, archived)
                 SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::boolean[])
                 ON CONFLICT (community_id) DO UPDATE
                 SET version = GREATEST(communities.version, EXCLUDED.version),
                     archived = communities.archived OR EXCLUDED.archived",
            )
            .bind(ids)
            .bind(versions)
            .bind(archived)
            .execute(&mut *conn)
            .await?;
        }
        for member in changes.touched {
            self.touched.touch(member);
        }
        Ok(())
    }

    fn committed(&self) {
        self.touched.commit();
    }
}
