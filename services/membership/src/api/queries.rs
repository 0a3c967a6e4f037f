//! The read calls: authenticate, validate, wait for `min_position`, check who may see what, and
//! read the directory.

use chrono::{DateTime, Utc};
use kith_platform::command::{ErrorKind, refusal};
use kith_platform::paging::{PageQuery, min_position, page, page_token, status_from_db};
use kith_platform::validation::{Violations, page_size};
use kith_proto::membership as pb;
use sqlx::Row;
use sqlx::postgres::PgRow;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{Api, parse};
use crate::codec::{role_from_pb, role_value};
use crate::domain::Role;
use crate::projections::MemberStatusCode;
use kith_platform::wire::timestamp;

type Reply<T> = Result<Response<T>, Status>;

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 200;

macro_rules! member_columns {
    () => {
        "community_id, member_id, role, status, display_name, handle, bio, joined_at, erased, joined_position"
    };
}

fn member(row: &PgRow) -> Result<pb::Member, sqlx::Error> {
    let community: Uuid = row.try_get(0)?;
    let member: Uuid = row.try_get(1)?;
    Ok(pb::Member {
        community_id: community.to_string(),
        member_id: member.to_string(),
        role: row.try_get(2)?,
        status: row.try_get(3)?,
        profile: Some(pb::Profile {
            display_name: row.try_get::<Option<String>, _>(4)?.unwrap_or_default(),
            handle: row.try_get::<Option<String>, _>(5)?.unwrap_or_default(),
            bio: row.try_get::<Option<String>, _>(6)?.unwrap_or_default(),
        }),
        joined_at: Some(timestamp(row.try_get(7)?)),
        erased: row.try_get(8)?,
    })
}

/// Whether an invitation can still be accepted at `now`, and if not why.
fn invitation_status(
    revoked: bool,
    uses: i32,
    max_uses: i32,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> pb::InvitationStatus {
    if revoked {
        pb::InvitationStatus::Revoked
    } else if uses >= max_uses {
        pb::InvitationStatus::Exhausted
    } else if now >= expires_at {
        pb::InvitationStatus::Expired
    } else {
        pb::InvitationStatus::Active
    }
}

fn join_request(row: &PgRow) -> Result<pb::JoinRequest, sqlx::Error> {
    Ok(pb::JoinRequest {
        community_id: row.try_get::<Uuid, _>(7)?.to_string(),
        member_id: row.try_get::<Uuid, _>(0)?.to_string(),
        profile: Some(pb::Profile {
            display_name: row.try_get::<Option<String>, _>(1)?.unwrap_or_default(),
            handle: row.try_get::<Option<String>, _>(2)?.unwrap_or_default(),
            bio: row.try_get::<Option<String>, _>(3)?.unwrap_or_default(),
        }),
        answers: row.try_get(4)?,
        requested_at: Some(timestamp(row.try_get(5)?)),
    })
}

/// The columns [`join_request`] reads, in order.
const JOIN_REQUEST_COLUMNS: &str =
    "member_id, display_name, handle, bio, answers, requested_at, position, community_id";

fn community_not_found() -> Status {
    refusal(
        ErrorKind::NotFound,
        "COMMUNITY_NOT_FOUND",
        "community not found",
        None,
    )
}

/// A list request that passed validation and authorization.
struct Listing {
    community: Uuid,
    limit: i64,
    /// The position the page token continues from, if any.
    token: Option<i64>,
    query: PageQuery,
}

/// The fields every list request has.
struct ListFields<'a> {
    community_id: &'a str,
    page_size: u32,
    page_token: &'a str,
    min_position: i64,
    /// What the page token must have been issued for.
    query: PageQuery,
}

impl Api {
    /// Validates the common list fields (adding to violations the caller already found), waits
    /// for `min_position`, and checks that the caller may list: an active member holding one of
    /// `roles` (any role when empty), `who` naming them in the refusal.
    async fn listing(
        &self,
        caller: Uuid,
        mut v: Violations,
        fields: ListFields<'_>,
        roles: &[Role],
        who: &str,
    ) -> Result<Listing, Status> {
        let community = v.uuid("community_id", fields.community_id);
        let limit = page_size(&mut v, fields.page_size, DEFAULT_PAGE, MAX_PAGE);
        let token = page_token(&mut v, fields.page_token, &fields.query);
        let min_position = min_position(&mut v, fields.min_position);
        v.finish()?;
        let community =
            community.ok_or_else(|| Status::internal("request validation was incomplete"))?;
        self.wait(min_position).await?;
        self.community_exists(community).await?;
        self.require(community, caller, roles, who).await?;
        Ok(Listing {
            community,
            limit,
            token,
            query: fields.query,
        })
    }

    /// The caller's role if they are an active member of the community.
    async fn role_in(&self, community: Uuid, caller: Uuid) -> Result<Option<Role>, Status> {
        let role: Option<i32> = sqlx::query_scalar(
            "SELECT role FROM members WHERE community_id = $1 AND member_id = $2 AND status = $3",
        )
        .bind(community)
        .bind(caller)
        .bind(MemberStatusCode::ACTIVE)
        .fetch_optional(&self.pool)
        .await
        .map_err(status_from_db)?;
        Ok(role.and_then(role_from_pb))
    }

    /// Refuses callers who are not active members with one of `roles` (any role when empty).
    async fn require(
        &self,
        community: Uuid,
        caller: Uuid,
        roles: &[Role],
        what: &str,
    ) -> Result<Role, Status> {
        match self.role_in(community, caller).await? {
            Some(role) if roles.is_empty() || roles.contains(&role) => Ok(role),
            Some(_) => Err(refusal(
                ErrorKind::PermissionDenied,
                "NOT_PERMITTED",
                format!("only {what} may do this"),
                None,
            )),
            None => Err(refusal(
                ErrorKind::PermissionDenied,
                "NOT_A_MEMBER",
                "only members of the community may see this",
                None,
            )),
        }
    }

    async fn community_exists(&self, community: Uuid) -> Result<(), Status> {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM communities WHERE community_id = $1")
                .bind(community)
                .fetch_optional(&self.pool)
                .await
                .map_err(status_from_db)?;
        found.map(|_| ()).ok_or_else(community_not_found)
    }

    pub(super) async fn get_community(
        &self,
        request: Request<pb::GetCommunityRequest>,
    ) -> Reply<pb::GetCommunityResponse> {
        self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let community = v.uuid("community_id", &r.community_id);
        let min_position = min_position(&mut v, r.min_position);
        v.finish()?;
        let community = community.ok_or_else(|| Status::internal("validation incomplete"))?;
        self.wait(min_position).await?;
        let row = sqlx::query(
            "SELECT name, description, archived, member_count, created_at, version, language
             FROM communities WHERE community_id = $1",
        )
        .bind(community)
        .fetch_optional(&self.pool)
        .await
        .map_err(status_from_db)?
        .ok_or_else(community_not_found)?;
        let read = || -> Result<pb::Community, sqlx::Error> {
            Ok(pb::Community {
                community_id: community.to_string(),
                name: row.try_get(0)?,
                description: row.try_get(1)?,
                archived: row.try_get(2)?,
                member_count: u32::try_from(row.try_get::<i32, _>(3)?).unwrap_or(0),
                created_at: Some(timestamp(row.try_get(4)?)),
                version: row.try_get(5)?,
                language: row.try_get(6)?,
            })
        };
        Ok(Response::new(pb::GetCommunityResponse {
            community: Some(read().map_err(status_from_db)?),
        }))
    }

    pub(super) async fn get_member(
        &self,
        request: Request<pb::GetMemberRequest>,
    ) -> Reply<pb::GetMemberResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let community = v.uuid("community_id", &r.community_id);
        let member_id = v.uuid("member_id", &r.member_id);
        let min_position = min_position(&mut v, r.min_position);
        v.finish()?;
        let (Some(community), Some(member_id)) = (community, member_id) else {
            return Err(Status::internal("validation incomplete"));
        };
        self.wait(min_position).await?;
        self.community_exists(community).await?;
        if caller != member_id {
            self.require(community, caller, &[], "members").await?;
        }
        let row = sqlx::query(concat!(
            "SELECT ",
            member_columns!(),
            " FROM members WHERE community_id = $1 AND member_id = $2"
        ))
        .bind(community)
        .bind(member_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(status_from_db)?
        .ok_or_else(|| {
            refusal(
                ErrorKind::NotFound,
                "MEMBER_NOT_FOUND",
                "member not found",
                None,
            )
        })?;
        Ok(Response::new(pb::GetMemberResponse {
            member: Some(member(&row).map_err(status_from_db)?),
        }))
    }

    pub(super) async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Reply<pb::ListMembersResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let role = if r.role == 0 {
            None
        } else {
            parse::role(&mut v, "role", r.role)
        };
        let Listing {
            community,
            limit,
            token,
            query,
        } = self
            .listing(
                caller,
                v,
                ListFields {
                    community_id: &r.community_id,
                    page_size: r.page_size,
                    page_token: &r.page_token,
                    min_position: r.min_position,
                    query: kith_platform::page_query!(caller, r),
                },
                &[],
                "members",
            )
            .await?;
        let after = token.unwrap_or(0);
        let rows = sqlx::query(concat!(
            "SELECT ",
            member_columns!(),
            " FROM members
             WHERE community_id = $1 AND status = $2 AND joined_position > $3 AND ($4::int IS NULL OR role = $4)
             ORDER BY joined_position LIMIT $5"
        ))
        .bind(community)
        .bind(MemberStatusCode::ACTIVE)
        .bind(after)
        .bind(role.map(role_value))
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(status_from_db)?;
        let (members, next_page_token) = page(&rows, limit, 9, &query, member)?;
        Ok(Response::new(pb::ListMembersResponse {
            members,
            next_page_token,
        }))
    }

    pub(super) async fn list_invitations(
        &self,
        request: Request<pb::ListInvitationsRequest>,
    ) -> Reply<pb::ListInvitationsResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let Listing {
            community,
            limit,
            token,
            query,
        } = self
            .listing(
                caller,
                Violations::new(),
                ListFields {
                    community_id: &r.community_id,
                    page_size: r.page_size,
                    page_token: &r.page_token,
                    min_position: r.min_position,
                    query: kith_platform::page_query!(caller, r),
                },
                &[Role::Owner, Role::Host],
                "owners and hosts",
            )
            .await?;
        let before = token.unwrap_or(i64::MAX);
        let rows = sqlx::query(
            "SELECT invitation_id, created_by, expires_at, max_uses, uses, revoked, created_position
             FROM invitations WHERE community_id = $1 AND created_position < $2
             ORDER BY created_position DESC LIMIT $3",
        )
        .bind(community)
        .bind(before)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(status_from_db)?;
        let now = Utc::now();
        let read = |row: &PgRow| -> Result<pb::Invitation, sqlx::Error> {
            let expires_at: DateTime<Utc> = row.try_get(2)?;
            let max_uses: i32 = row.try_get(3)?;
            let uses: i32 = row.try_get(4)?;
            let status = invitation_status(row.try_get(5)?, uses, max_uses, expires_at, now);
            Ok(pb::Invitation {
                community_id: community.to_string(),
                invitation_id: row.try_get::<Uuid, _>(0)?.to_string(),
                created_by: row.try_get::<Uuid, _>(1)?.to_string(),
                expires_at: Some(timestamp(expires_at)),
                max_uses: u32::try_from(max_uses).unwrap_or(0),
                uses: u32::try_from(uses).unwrap_or(0),
                status: status as i32,
            })
        };
        let (invitations, next_page_token) = page(&rows, limit, 6, &query, read)?;
        Ok(Response::new(pb::ListInvitationsResponse {
            invitations,
            next_page_token,
        }))
    }

    pub(super) async fn list_join_requests(
        &self,
        request: Request<pb::ListJoinRequestsRequest>,
    ) -> Reply<pb::ListJoinRequestsResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let Listing {
            community,
            limit,
            token,
            query,
        } = self
            .listing(
                caller,
                Violations::new(),
                ListFields {
                    community_id: &r.community_id,
                    page_size: r.page_size,
                    page_token: &r.page_token,
                    min_position: r.min_position,
                    query: kith_platform::page_query!(caller, r),
                },
                &[Role::Owner, Role::Host, Role::Moderator],
                "owners, hosts and moderators",
            )
            .await?;
        let after = token.unwrap_or(0);
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {JOIN_REQUEST_COLUMNS}
             FROM join_requests WHERE community_id = $1 AND position > $2
             ORDER BY position LIMIT $3"
        )))
        .bind(community)
        .bind(after)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(status_from_db)?;
        let (join_requests, next_page_token) = page(&rows, limit, 6, &query, join_request)?;
        Ok(Response::new(pb::ListJoinRequestsResponse {
            join_requests,
            next_page_token,
        }))
    }

    pub(super) async fn list_bans(
        &self,
        request: Request<pb::ListBansRequest>,
    ) -> Reply<pb::ListBansResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let Listing {
            community,
            limit,
            token,
            query,
        } = self
            .listing(
                caller,
                Violations::new(),
                ListFields {
                    community_id: &r.community_id,
                    page_size: r.page_size,
                    page_token: &r.page_token,
                    min_position: r.min_position,
                    query: kith_platform::page_query!(caller, r),
                },
                &[Role::Owner, Role::Host, Role::Moderator],
                "owners, hosts and moderators",
            )
            .await?;
        let rows = sqlx::query(
            "SELECT member_id, banned_by, banned_at, reason, was_member, position
             FROM bans WHERE community_id = $1 AND position < $2
             ORDER BY position DESC LIMIT $3",
        )
        .bind(community)
        .bind(token.unwrap_or(i64::MAX))
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(status_from_db)?;
        let read = |row: &PgRow| -> Result<pb::Ban, sqlx::Error> {
            Ok(pb::Ban {
                community_id: community.to_string(),
                member_id: row.try_get::<Uuid, _>(0)?.to_string(),
                banned_by: row.try_get::<Uuid, _>(1)?.to_string(),
                banned_at: Some(timestamp(row.try_get(2)?)),
                reason: row.try_get::<Option<String>, _>(3)?.unwrap_or_default(),
                was_member: row.try_get(4)?,
            })
        };
        let (bans, next_page_token) = page(&rows, limit, 5, &query, read)?;
        Ok(Response::new(pb::ListBansResponse {
            bans,
            next_page_token,
        }))
    }

    pub(super) async fn list_my_communities(
        &self,
        request: Request<pb::ListMyCommunitiesRequest>,
    ) -> Reply<pb::ListMyCommunitiesResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let limit = page_size(&mut v, r.page_size, DEFAULT_PAGE, MAX_PAGE);
        let query = kith_platform::page_query!(caller, r);
        let token = page_token(&mut v, &r.page_token, &query);
        let min_position = min_position(&mut v, r.min_position);
        v.finish()?;
        self.wait(min_position).await?;
        let rows = sqlx::query(
            "SELECT c.community_id, c.name, c.description, c.archived, c.member_count,
                    c.created_at, c.version, m.role, m.joined_at, m.joined_position, c.language
             FROM members m JOIN communities c ON c.community_id = m.community_id
             WHERE m.member_id = $1 AND m.status = $2 AND m.joined_position < $3
             ORDER BY m.joined_position DESC LIMIT $4",
        )
        .bind(caller)
        .bind(MemberStatusCode::ACTIVE)
        .bind(token.unwrap_or(i64::MAX))
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(status_from_db)?;
        let read = |row: &PgRow| -> Result<pb::MyCommunity, sqlx::Error> {
            Ok(pb::MyCommunity {
                community: Some(pb::Community {
                    community_id: row.try_get::<Uuid, _>(0)?.to_string(),
                    name: row.try_get(1)?,
                    description: row.try_get(2)?,
                    archived: row.try_get(3)?,
                    member_count: u32::try_from(row.try_get::<i32, _>(4)?).unwrap_or(0),
                    created_at: Some(timestamp(row.try_get(5)?)),
                    version: row.try_get(6)?,
                    language: row.try_get(10)?,
                }),
                role: row.try_get(7)?,
                joined_at: Some(timestamp(row.try_get(8)?)),
            })
        };
        let (communities, next_page_token) = page(&rows, limit, 9, &query, read)?;
        Ok(Response::new(pb::ListMyCommunitiesResponse {
            communities,
            next_page_token,
        }))
    }

    pub(super) async fn get_invitation_preview(
        &self,
        request: Request<pb::GetInvitationPreviewRequest>,
    ) -> Reply<pb::GetInvitationPreviewResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let invitation = v.uuid("invitation_id", &r.invitation_id);
        let min_position = min_position(&mut v, r.min_position);
        v.finish()?;
        let invitation = invitation.ok_or_else(|| Status::internal("validation incomplete"))?;
        self.wait(min_position).await?;
        let row = sqlx::query(
            "SELECT i.community_id, i.expires_at, i.max_uses, i.uses, i.revoked,
                    c.name, c.description, c.member_count, c.archived,
                    EXISTS (SELECT 1 FROM members m WHERE m.community_id = i.community_id
                            AND m.member_id = $2 AND m.status = $3),
                    EXISTS (SELECT 1 FROM bans b WHERE b.community_id = i.community_id
                            AND b.member_id = $2)
             FROM invitations i JOIN communities c ON c.community_id = i.community_id
             WHERE i.invitation_id = $1",
        )
        .bind(invitation)
        .bind(caller)
        .bind(MemberStatusCode::ACTIVE)
        .fetch_optional(&self.pool)
        .await
        .map_err(status_from_db)?
        .ok_or_else(|| {
            refusal(
                ErrorKind::NotFound,
                "INVITATION_NOT_FOUND",
                "invitation not found",
                None,
            )
        })?;
        let read = || -> Result<pb::GetInvitationPreviewResponse, sqlx::Error> {
            let expires_at: DateTime<Utc> = row.try_get(1)?;
            let status = invitation_status(
                row.try_get(4)?,
                row.try_get(3)?,
                row.try_get(2)?,
                expires_at,
                Utc::now(),
            );
            let mut preview = pb::GetInvitationPreviewResponse {
                community_id: row.try_get::<Uuid, _>(0)?.to_string(),
                status: status as i32,
                expires_at: Some(timestamp(expires_at)),
                name: row.try_get(5)?,
                description: row.try_get(6)?,
                member_count: u32::try_from(row.try_get::<i32, _>(7)?).unwrap_or(0),
                archived: row.try_get(8)?,
                already_member: row.try_get(9)?,
                banned: row.try_get(10)?,
            };
            // An invitation that no longer works opens nothing: it says only that it is dead.
            if status != pb::InvitationStatus::Active {
                preview.name.clear();
                preview.description.clear();
                preview.member_count = 0;
            }
            Ok(preview)
        };
        Ok(Response::new(read().map_err(status_from_db)?))
    }

    pub(super) async fn get_my_join_request(
        &self,
        request: Request<pb::GetMyJoinRequestRequest>,
    ) -> Reply<pb::GetMyJoinRequestResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let community = v.uuid("community_id", &r.community_id);
        let min_position = min_position(&mut v, r.min_position);
        v.finish()?;
        let community = community.ok_or_else(|| Status::internal("validation incomplete"))?;
        self.wait(min_position).await?;
        self.community_exists(community).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {JOIN_REQUEST_COLUMNS} FROM join_requests
             WHERE community_id = $1 AND member_id = $2"
        )))
        .bind(community)
        .bind(caller)
        .fetch_optional(&self.pool)
        .await
        .map_err(status_from_db)?
        .ok_or_else(|| {
            refusal(
                ErrorKind::NotFound,
                "JOIN_REQUEST_NOT_FOUND",
                "you have no pending join request in this community",
                None,
            )
        })?;
        Ok(Response::new(pb::GetMyJoinRequestResponse {
            join_request: Some(join_request(&row).map_err(status_from_db)?),
        }))
    }
}
