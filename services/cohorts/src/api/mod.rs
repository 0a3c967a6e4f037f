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
use kith_platform::aggregate::Repository;
use kith_platform::auth::Authenticator;
use kith_platform::command::{self, command_key, committed, status_from_rejected};
use kith_platform::grpc::status_from_auth;
use kith_platform::paging::status_from_db;
use kith_platform::projection::Progress;
use kith_proto::platform::Committed;
use sqlx::PgPool;
use tonic::{Request, Status};
use uuid::Uuid;

use crate::codec::CohortCodec;
use crate::domain::{Action, Command, CommunityRole};
use crate::projections::Touched;
use crate::projections::community::{role_from_name, status};
use crate::service::CohortDecider;

/// How long a call waits for a `min_position` or a `community_version`.
const WAIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Namespace of ids derived from a caller's request id, so a retried create returns the same id.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6b69_7468_636f_686f_7274_7300_0000_0001);

/// How many cohort → community pairs stay cached (they never change).
const COMMUNITY_CACHE: usize = 100_000;

/// The cohorts gRPC service.
#[derive(Debug, Clone)]
pub struct Api {
    repository: Arc<Repository<CohortDecider, CohortCodec>>,
    pool: PgPool,
    progress: Progress,
    communities: Arc<Touched>,
    authenticator: Authenticator,
    community_of: Arc<Mutex<HashMap<Uuid, Uuid>>>,
}

impl Api {
    pub(crate) fn new(
        repository: Arc<Repository<CohortDecider, CohortCodec>>,
        pool: PgPool,
        progress: Progress,
        communities: Arc<Touched>,
        authenticator: Authenticator,
    ) -> Self {
        Self {
            repository,
            pool,
            progress,
            communities,
            authenticator,
            community_of: Arc::default(),
        }
    }

    fn caller<T>(&self, request: &Request<T>) -> Result<Uuid, Status> {
        self.authenticator
            .authenticate(request.metadata())
            .map(|caller| caller.member_id)
            .map_err(|err| status_from_auth(&err))
    }

    /// The community a cohort belongs to, from the first event of its stream (so a cohort
    /// created a moment ago is found before the read model has it); `None` if it does not exist.
    async fn community_of(&self, cohort: Uuid) -> Result<Option<Uuid>, Status> {
        if let Some(community) = self
            .community_of
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&cohort)
        {
            return Ok(Some(*community));
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
        let created =
            <kith_proto::cohorts::CohortCreated as prost::Message>::decode(payload.as_slice())
                .map_err(|_| Status::internal("the cohort's first event is unreadable"))?;
        let community: Uuid = created
            .community_id
            .parse()
            .map_err(|_| Status::internal("the cohort's community id is unreadable"))?;
        let mut cache = self.community_of.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= COMMUNITY_CACHE {
            cache.clear();
        }
        cache.insert(cohort, community);
        Ok(Some(community))
    }

    /// Someone's role in a community, if they are an active member of it.
    async fn role_of(
        &self,
        community: Uuid,
        member: Uuid,
    ) -> Result<Option<CommunityRole>, Status> {
        let role: Option<String> = sqlx::query_scalar(
            "SELECT role FROM community_members
             WHERE community_id = $1 AND member_id = $2 AND status = $3",
        )
        .bind(community)
        .bind(member)
        .bind(status::ACTIVE)
        .fetch_optional(&self.pool)
        .await
        .map_err(status_from_db)?;
        Ok(role.as_deref().and_then(role_from_name))
    }

    /// Waits until the membership events of `community` up to `version` have been applied.
    async fn wait_for_community(&self, community: Uuid, version: i64) -> Result<(), Status> {
        if version <= 0 {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + WAIT_TIMEOUT;
        loop {
            // Registered before the read, so an advance between the two is not missed.
            let advanced = self.communities.advanced.notified();
            let seen: Option<i64> =
                sqlx::query_scalar("SELECT version FROM communities WHERE community_id = $1")
                    .bind(community)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(status_from_db)?;
            if seen.is_some_and(|seen| seen >= version) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, advanced).await.is_err() {
                return Err(Status::deadline_exceeded(format!(
                    "the cohorts service has not yet seen version {version} of community {community}'s membership events (seen: {}); retry shortly",
                    seen.unwrap_or(0)
                )));
            }
        }
    }

    /// Waits until the roster includes `min_position`.
    async fn wait(&self, min_position: i64) -> Result<(), Status> {
        self.progress
            .wait_for(min_position, WAIT_TIMEOUT)
            .await
            .map_err(|err| kith_platform::grpc::status_from_platform(&err))
    }

    /// Runs one command on a cohort of `community` (`None` when the cohort does not exist, which
    /// the decider refuses) and answers with where it landed.
    async fn run<T>(
        &self,
        request: &Request<T>,
        caller: Uuid,
        request_id: &str,
        cohort: Uuid,
        community: Option<Uuid>,
        mut action: Action,
    ) -> Result<Committed, Status> {
        let actor_role = match community {
            Some(community) => {
                self.fill_member_role(community, &mut action).await?;
                self.role_of(community, caller).await?
            }
            None => None,
        };
        let key = command_key(caller, request_id);
        let metadata = command::metadata(request, &ID_NAMESPACE, caller, request_id);
        let command = Command {
            actor: caller,
            actor_role,
            now: Utc::now(),
            action,
        };
        let appended = self
            .repository
            .execute(&cohort.to_string(), Some(&key), &metadata, &command)
            .await
            .map_err(|rejected| status_from_rejected(&rejected))?;
        Ok(committed(appended))
    }

    /// Commands about another member carry that member's role in the community.
    async fn fill_member_role(&self, community: Uuid, action: &mut Action) -> Result<(), Status> {
        match action {
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

/// An id derived from the caller's request id, stable across retries.
fn derived_id(caller: Uuid, request_id: &str, kind: &str) -> Uuid {
    command::derived_id(&ID_NAMESPACE, caller, request_id, kind)
}
