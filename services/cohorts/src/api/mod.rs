//! The gRPC API: wire types are parsed into domain values here, what the service knows of the
//! community (roles) is looked up and handed to the decider with each command, commands run
//! through the platform's repository, and queries read the roster projection.

mod commands;
mod parse;
mod queries;
mod service;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use kith_platform::aggregate::{Rejected, Repository};
use kith_platform::auth::Authenticator;
use kith_platform::command::{self, command_key, committed, status_from_rejected};
use kith_platform::grpc::status_from_auth;
use kith_platform::paging::status_from_db;
use kith_platform::projection::{CheckpointWatch, Progress};
use kith_proto::platform::Committed;
use sqlx::PgPool;
use tonic::{Request, Status};
use uuid::Uuid;

use crate::codec::CohortCodec;
use crate::domain::{Action, Command, CommunityRole};
use crate::projections::community::{role_from_name, status};
use crate::service::CohortDecider;

/// How long a call waits for a `min_position` or a `community_version`.
const WAIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Namespace of ids derived from a caller's request id, so a retried create returns the same id.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6b69_7468_636f_686f_7274_7300_0000_0001);

/// How long a refusal that rests on community membership waits for membership's events.
const MEMBERSHIP_GRACE: Duration = Duration::from_secs(1);

/// How many cohort origins stay cached (they never change).
const COMMUNITY_CACHE: usize = 100_000;

/// What a cohort was created as: its community and kind, which never change.
#[derive(Debug, Clone, Copy)]
pub(super) struct Origin {
    community: Uuid,
    kind: crate::domain::Kind,
}

/// The cohorts gRPC service.
#[derive(Debug, Clone)]
pub struct Api {
    repository: Arc<Repository<CohortDecider, CohortCodec>>,
    pool: PgPool,
    progress: Progress,
    /// Advances of the communities projection, on whichever replica consumes membership.
    communities: CheckpointWatch,
    authenticator: Authenticator,
    origins: Arc<Mutex<HashMap<Uuid, Origin>>>,
}

impl Api {
    pub(crate) fn new(
        repository: Arc<Repository<CohortDecider, CohortCodec>>,
        pool: PgPool,
        progress: Progress,
        communities: CheckpointWatch,
        authenticator: Authenticator,
    ) -> Self {
        Self {
            repository,
            pool,
            progress,
            communities,
            authenticator,
            origins: Arc::default(),
        }
    }

    fn caller<T>(&self, request: &Request<T>) -> Result<Uuid, Status> {
        self.authenticator
            .authenticate(request.metadata())
            .map(|caller| caller.member_id)
            .map_err(|err| status_from_auth(&err))
    }

    /// The community a cohort belongs to.
    async fn community_of(&self, cohort: Uuid) -> Result<Option<Uuid>, Status> {
        Ok(self.origin(cohort).await?.map(|origin| origin.community))
    }

    /// What a cohort was created as, from the first event of its stream (so a cohort created a
    /// moment ago is found before the read model has it); `None` if it does not exist. Neither
    /// part ever changes, so it is cached.
    async fn origin(&self, cohort: Uuid) -> Result<Option<Origin>, Status> {
        if let Some(origin) = self
            .origins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&cohort)
        {
            return Ok(Some(*origin));
        }
        let payload: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT payload FROM events WHERE stream_id = $1 AND version = 1")
                .bind(cohort.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(status_from_db)?;
        let Some(payload) = payload else {
            return Ok(None);
        };
        let unreadable = || Status::internal("the cohort's first event is unreadable");
        let created =
            <kith_proto::cohorts::CohortCreated as prost::Message>::decode(payload.as_slice())
                .map_err(|_| unreadable())?;
        let origin = Origin {
            community: created.community_id.parse().map_err(|_| unreadable())?,
            kind: created
                .details
                .and_then(|d| crate::codec::kind_from_pb(d.kind))
                .ok_or_else(unreadable)?,
        };
        let mut cache = self.origins.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= COMMUNITY_CACHE {
            cache.clear();
        }
        cache.insert(cohort, origin);
        Ok(Some(origin))
    }

    /// Someone's role in a community, if they are an active member of it.
    async fn role_of(
        &self,
        community: Uuid,
        member: Uuid,
    ) -> Result<Option<CommunityRole>, Status> {
        self.role_of_in_pool(community, member)
            .await
            .map_err(|err| kith_platform::grpc::status_from_platform(&err))
    }

    async fn role_of_in_pool(
        &self,
        community: Uuid,
        member: Uuid,
    ) -> kith_platform::Result<Option<CommunityRole>> {
        let role: Option<String> = sqlx::query_scalar(
            "SELECT role FROM community_members
             WHERE community_id = $1 AND member_id = $2 AND status = $3",
        )
        .bind(community)
        .bind(member)
        .bind(status::ACTIVE)
        .fetch_optional(&self.pool)
        .await?;
        Ok(role.as_deref().and_then(role_from_name))
    }

    /// Waits until the membership events of `community` up to `version` have been applied.
    async fn wait_for_community(&self, community: Uuid, version: i64) -> Result<(), Status> {
        if version <= 0 {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + WAIT_TIMEOUT;
        let seen = std::sync::atomic::AtomicI64::new(0);
        let reached = self
            .communities
            .wait_until(deadline, || async {
                let now = sqlx::query_scalar::<_, i64>(
                    "SELECT version FROM communities WHERE community_id = $1",
                )
                .bind(community)
                .fetch_optional(&self.pool)
                .await?
                .unwrap_or(0);
                seen.store(now, std::sync::atomic::Ordering::Relaxed);
                Ok((now >= version).then_some(()))
            })
            .await
            .map_err(|err| kith_platform::grpc::status_from_platform(&err))?;
        reached.ok_or_else(|| {
            Status::deadline_exceeded(format!(
                "the cohorts service has not yet seen version {version} of community {community}'s membership events (seen: {}); retry shortly",
                seen.load(std::sync::atomic::Ordering::Relaxed)
            ))
        })
    }

    /// Waits until the roster includes `min_position`.
    async fn wait(&self, min_position: i64) -> Result<(), Status> {
        self.progress
            .wait_for(min_position, WAIT_TIMEOUT)
            .await
            .map_err(|err| kith_platform::grpc::status_from_platform(&err))
    }

    /// Runs one command on a cohort of `origin` (`None` when the cohort does not exist, which
    /// the decider refuses) and answers with where it landed.
    async fn run<T: prost::Message + prost::Name>(
        &self,
        request: &Request<T>,
        caller: Uuid,
        request_id: &str,
        cohort: Uuid,
        origin: Option<Origin>,
        mut action: Action,
    ) -> Result<Committed, Status> {
        let key = command_key(request, caller, request_id);
        let metadata = command::metadata(request, &ID_NAMESPACE, caller, request_id);
        let mut caught_up = false;
        loop {
            let actor_role = match origin {
                Some(origin) => {
                    self.complete(origin, &mut action).await?;
                    self.role_of(origin.community, caller).await?
                }
                None => None,
            };
            let command = Command {
                actor: caller,
                actor_role,
                now: Utc::now(),
                action: action.clone(),
            };
            match self
                .repository
                .execute(&cohort.to_string(), Some(&key), &metadata, &command)
                .await
            {
                Ok(appended) => return Ok(committed(appended)),
                // Refused for who someone is in the community, as this service knows it: a
                // member who joined (or was promoted) a moment ago may not have reached it yet.
                // Give membership's events a moment to arrive and decide once more, so callers
                // need not pass `community_version` to read their own writes across services.
                Err(Rejected::Domain(err))
                    if !caught_up
                        && let Some(origin) = origin
                        && let Some(subject) = err.membership_subject(caller)
                        && self
                            .membership_changes(
                                origin.community,
                                subject,
                                if subject == caller {
                                    actor_role
                                } else {
                                    member_role(&action)
                                },
                            )
                            .await? =>
                {
                    caught_up = true;
                }
                Err(rejected) => return Err(status_from_rejected(&rejected)),
            }
        }
    }

    /// Whether `member`'s standing in `community` differs from `before` (what the refused
    /// decision saw), now or within [`MEMBERSHIP_GRACE`] (the
    /// relay and the consumer take milliseconds, so a change on its way arrives well within it).
    async fn membership_changes(
        &self,
        community: Uuid,
        member: Uuid,
        before: Option<CommunityRole>,
    ) -> Result<bool, Status> {
        let deadline = tokio::time::Instant::now() + MEMBERSHIP_GRACE;
        let changed = self
            .communities
            .wait_until(deadline, || async {
                let now = self.role_of_in_pool(community, member).await?;
                Ok((now != before).then_some(()))
            })
            .await
            .map_err(|err| kith_platform::grpc::status_from_platform(&err))?;
        Ok(changed.is_some())
    }

    /// Fills in what the caller does not send: the role in the community of the member a
    /// command is about, and the kind an update keeps.
    async fn complete(&self, origin: Origin, action: &mut Action) -> Result<(), Status> {
        let community = origin.community;
        match action {
            Action::UpdateCohort { details } => details.kind = origin.kind,
            Action::AssignFacilitator {
                member_id,
                member_role,
            }
            | Action::InviteMember {
                member_id,
                member_role,
                ..
            } => {
                *member_role = self.role_of(community, *member_id).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// The community role an action carries for the member it is about.
fn member_role(action: &Action) -> Option<CommunityRole> {
    match action {
        Action::AssignFacilitator { member_role, .. }
        | Action::InviteMember { member_role, .. } => *member_role,
        _ => None,
    }
}

/// An id derived from the caller's request id, stable across retries.
fn derived_id(caller: Uuid, request_id: &str, kind: &str) -> Uuid {
    command::derived_id(&ID_NAMESPACE, caller, request_id, kind)
}
