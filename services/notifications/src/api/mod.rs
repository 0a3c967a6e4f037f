//! The gRPC API: requests are parsed into domain values here, a member's own commands run
//! through the platform's repository, and queries read the ledger.

mod commands;
mod explain;
mod queries;
mod service;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use kith_platform::aggregate::Repository;
use kith_platform::auth::Authenticator;
use kith_platform::grpc::{status_from_auth, status_from_platform};
use kith_platform::projection::Progress;
use sqlx::PgPool;
use tonic::{Request, Status};
use uuid::Uuid;

use kith_platform::sealing::Sealer;

use crate::codec::MemberCodec;
use crate::config::DeliveryArgs;
use crate::delivery::Keys;
use crate::service::MemberDecider;

/// How long a call waits for a `min_position`.
const WAIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Namespace of the correlation ids of this service's commands.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6b69_7468_6e6f_7469_6679_0000_0000_0001);

/// The notifications gRPC service.
#[derive(Debug, Clone)]
pub struct Api {
    members: Arc<Repository<MemberDecider, MemberCodec>>,
    pool: PgPool,
    progress: Progress,
    authenticator: Authenticator,
    sealer: Sealer,
    keys: Keys,
    delivery: Arc<DeliveryArgs>,
}

impl Api {
    pub(crate) fn new(
        members: Arc<Repository<MemberDecider, MemberCodec>>,
        pool: PgPool,
        progress: Progress,
        authenticator: Authenticator,
        sealer: Sealer,
        keys: Keys,
        delivery: Arc<DeliveryArgs>,
    ) -> Self {
        Self {
            members,
            pool,
            progress,
            authenticator,
            sealer,
            keys,
            delivery,
        }
    }

    fn caller<T>(&self, request: &Request<T>) -> Result<Uuid, Status> {
        self.authenticator
            .authenticate(request.metadata())
            .map(|caller| caller.member_id)
            .map_err(|err| status_from_auth(&err))
    }

    /// Waits until the ledger includes `min_position`.
    async fn wait(&self, min_position: i64) -> Result<(), Status> {
        self.progress
            .wait_for(min_position, WAIT_TIMEOUT)
            .await
            .map_err(|err| status_from_platform(&err))
    }
}

fn incomplete() -> Status {
    Status::internal("request validation was incomplete")
}
