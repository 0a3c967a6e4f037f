//! The gRPC API: wire types are parsed into domain values here, what the service knows of the
//! caller's standing in the conversation (from membership's and cohorts' events) is looked up and
//! handed to the decider as [`Access`], commands run through the platform's repository, and
//! queries read the projections.

mod commands;
mod live;
mod queries;
mod service;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kith_platform::aggregate::Repository;
use kith_platform::auth::Authenticator;
use kith_platform::grpc::{status_from_auth, status_from_platform};
use kith_platform::paging::status_from_db;
use kith_platform::projection::{CheckpointWatch, Progress};
use sqlx::PgPool;
use tonic::{Request, Status};
use uuid::Uuid;

use crate::codec::{ConversationCodec, ReaderCodec};
use crate::domain::{Access, ConversationKind, Origin};
use crate::projections::access::{role, standing};
use crate::service::{ConversationDecider, ReaderDecider};

/// How long a call waits for a `min_position`.
const WAIT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a refusal for someone's standing waits for membership's and cohorts' events: a
/// member seated a moment ago is not refused because the event is still on its way.
const STANDING_GRACE: Duration = Duration::from_secs(1);
/// Namespace of ids derived from request ids and of direct conversations' ids.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6b69_7468_6d65_7373_6167_696e_6700_0001);
/// How many conversations' origins stay cached (they never change).
const ORIGIN_CACHE: usize = 100_000;

/// What a conversation is, from its first event (or, for a cohort conversation not yet started,
/// from cohorts' events). Never changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Known {
    pub(crate) kind: ConversationKind,
    pub(crate) community: Uuid,
    /// A direct conversation's people, sorted.
    pub(crate) participants: Vec<Uuid>,
}

/// The messaging gRPC service.
#[derive(Debug, Clone)]
pub struct Api {
    conversations: Arc<Repository<ConversationDecider, ConversationCodec>>,
    /// The conversations' codec, shared with their repository (for keys made ahead of a post).
    codec: ConversationCodec,
    readers: Arc<Repository<ReaderDecider, ReaderCodec>>,
    pool: PgPool,
    progress: Progress,
    members: CheckpointWatch,
    places: CheckpointWatch,
    authenticator: Authenticator,
    origins: Arc<Mutex<HashMap<Uuid, Known>>>,
}

impl Api {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        conversations: Arc<Repository<ConversationDecider, ConversationCodec>>,
        codec: ConversationCodec,
        readers: Arc<Repository<ReaderDecider, ReaderCodec>>,
        pool: PgPool,
        progress: Progress,
        members: CheckpointWatch,
        places: CheckpointWatch,
        authenticator: Authenticator,
    ) -> Self {
        Self {
            conversations,
            codec,
            readers,
            pool,
            progress,
            members,
            places,
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

    /// Waits until the messages projection includes `min_position`.
    async fn wait(&self, min_position: i64) -> Result<(), Status> {
        self.progress
            .wait_for(min_position, WAIT_TIMEOUT)
            .await
            .map_err(|err| status_from_platform(&err))
    }

    /// What `conversation` is: from its first event in the log, else (a cohort conversation not
    /// started yet) from the cohort as cohorts' events told; `None` when neither knows it.
    async fn known(&self, conversation: Uuid) -> Result<Option<Known>, Status> {
        if let Some(known) = lock(&self.origins).get(&conversation) {
            return Ok(Some(known.clone()));
        }
        let payload: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT payload FROM events WHERE stream_id = $1 AND version = 1")
                .bind(conversation.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(status_from_db)?;
        if let Some(payload) = payload {
            let unreadable = || Status::internal("the conversation's first event is unreadable");
            let started = <kith_proto::messaging::ConversationStarted as prost::Message>::decode(
                payload.as_slice(),
            )
            .map_err(|_| unreadable())?;
            let kind = match kith_proto::messaging::ConversationKind::try_from(started.kind) {
                Ok(kith_proto::messaging::ConversationKind::Direct) => ConversationKind::Direct,
                Ok(kith_proto::messaging::ConversationKind::Cohort) => ConversationKind::Cohort,
                _ => return Err(unreadable()),
            };
            let known = Known {
                kind,
                community: started.community_id.parse().map_err(|_| unreadable())?,
                participants: started
                    .participant_ids
                    .iter()
                    .map(|id| id.parse().map_err(|_| unreadable()))
                    .collect::<Result<_, _>>()?,
            };
            let mut cache = lock(&self.origins);
            if cache.len() >= ORIGIN_CACHE {
                cache.clear();
            }
            cache.insert(conversation, known.clone());
            return Ok(Some(known));
        }
        let community: Option<Uuid> =
            sqlx::query_scalar("SELECT community_id FROM cohorts WHERE cohort_id = $1")
                .bind(conversation)
                .fetch_optional(&self.pool)
                .await
                .map_err(status_from_db)?;
        Ok(community.map(|community| Known {
            kind: ConversationKind::Cohort,
            community,
            participants: Vec::new(),
        }))
    }

    /// [`Api::known`], waiting up to [`STANDING_GRACE`] for a cohort created a moment ago whose
    /// event is still on its way from cohorts.
    async fn known_soon(&self, conversation: Uuid) -> Result<Option<Known>, Status> {
        if let Some(known) = self.known(conversation).await? {
            return Ok(Some(known));
        }
        let deadline = tokio::time::Instant::now() + STANDING_GRACE;
        self.places
            .wait_until(deadline, || async {
                self.known(conversation).await.map_err(|status| {
                    kith_platform::Error::Unavailable(status.message().to_owned())
                })
            })
            .await
            .map_err(|err| status_from_platform(&err))
    }

    /// `member`'s access to a conversation as this replica knows it now.
    async fn access_now(
        &self,
        conversation: Uuid,
        known: &Known,
        member: Uuid,
    ) -> Result<Access, Status> {
        match known.kind {
            ConversationKind::Cohort => Ok(standing(&self.pool, conversation, member)
                .await
                .map_err(|err| status_from_platform(&err))?
                .map(|(_, standing)| standing.access())
                .unwrap_or_default()),
            ConversationKind::Direct => {
                let role = self.role_in(known.community, member).await?;
                Ok(Access {
                    reader: role.is_some() && known.participants.contains(&member),
                    facilitator: false,
                    moderator: matches!(
                        role.as_deref(),
                        Some(role::OWNER | role::HOST | role::MODERATOR)
                    ),
                })
            }
        }
    }

    /// `member`'s role in `community` while an active member of it.
    async fn role_in(&self, community: Uuid, member: Uuid) -> Result<Option<String>, Status> {
        sqlx::query_scalar(
            "SELECT role FROM community_members WHERE community_id = $1 AND member_id = $2 AND active",
        )
        .bind(community)
        .bind(member)
        .fetch_optional(&self.pool)
        .await
        .map_err(status_from_db)
    }

    /// PERMISSION_DENIED (NOT_A_MEMBER) unless `member` is an active member of `community`.
    async fn member_of(&self, community: Uuid, member: Uuid) -> Result<(), Status> {
        if self.role_in(community, member).await?.is_none() {
            return Err(kith_platform::command::refusal(
                kith_platform::command::ErrorKind::PermissionDenied,
                "NOT_A_MEMBER",
                "you are not a member of the community",
                None,
            ));
        }
        Ok(())
    }

    /// Access that differs from `before` now or within [`STANDING_GRACE`]: membership's or
    /// cohorts' events on their way when a command was refused.
    async fn access_changes(
        &self,
        conversation: Uuid,
        known: &Known,
        member: Uuid,
        before: Access,
    ) -> Result<Option<Access>, Status> {
        let deadline = tokio::time::Instant::now() + STANDING_GRACE;
        let check = || async {
            let now = self
                .access_now(conversation, known, member)
                .await
                .map_err(|status| kith_platform::Error::Unavailable(status.message().to_owned()))?;
            Ok((now != before).then_some(now))
        };
        let watch = match known.kind {
            ConversationKind::Cohort => &self.places,
            ConversationKind::Direct => &self.members,
        };
        let changed = tokio::select! {
            changed = watch.wait_until(deadline, check) => changed,
            changed = self.members.wait_until(deadline, check) => changed,
        };
        changed.map_err(|err| status_from_platform(&err))
    }

    /// Whether `member` reads `conversation` now, for queries; PERMISSION_DENIED or NOT_FOUND
    /// otherwise.
    async fn reader_of(&self, conversation: Uuid, member: Uuid) -> Result<Known, Status> {
        use kith_platform::command::{ErrorKind, refusal};
        let Some(known) = self.known_soon(conversation).await? else {
            return Err(refusal(
                ErrorKind::NotFound,
                "CONVERSATION_NOT_FOUND",
                "conversation not found",
                None,
            ));
        };
        if !self.access_now(conversation, &known, member).await?.reader {
            return Err(refusal(
                ErrorKind::PermissionDenied,
                "NOT_A_READER",
                "you cannot read or write this conversation",
                None,
            ));
        }
        Ok(known)
    }

    fn origin(conversation: Uuid, known: &Known) -> Option<Origin> {
        (known.kind == ConversationKind::Cohort).then_some(Origin::Cohort {
            community_id: known.community,
            cohort_id: conversation,
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An id derived from the caller's request id, stable across retries.
fn derived_id(caller: Uuid, request_id: &str, kind: &str) -> Uuid {
    kith_platform::command::derived_id(&ID_NAMESPACE, caller, request_id, kind)
}

/// The id of the direct conversation of `participants` (sorted) in `community`: the same set
/// always finds the same conversation.
pub(crate) fn direct_id(community: Uuid, participants: &[Uuid]) -> Uuid {
    let mut name = format!("direct:{community}");
    for participant in participants {
        name.push(':');
        name.push_str(&participant.to_string());
    }
    Uuid::new_v5(&ID_NAMESPACE, name.as_bytes())
}
