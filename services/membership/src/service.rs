//! Wiring: the membership service on a runtime (its schema, log, relay and projections), and the
//! standalone binary's server.

use std::sync::Arc;

use kith_platform::aggregate::{Decider, Repository};
use kith_platform::runtime::Runtime;
use kith_platform::sealing::Sealer;
use kith_proto::membership::membership_service_server::MembershipServiceServer;

use crate::api::Api;
use crate::codec::MembershipCodec;
use crate::domain::{self, Command, Community, DomainError, Event};
use crate::projections::Directory;

/// The service's name: its schema, its stream (`KITH_MEMBERSHIP`) and its subjects.
pub const SERVICE: &str = "membership";

/// A community is one stream, `community/<id>`.
#[derive(Debug)]
pub struct CommunityDecider;

impl Decider for CommunityDecider {
    type State = Community;
    type Event = Event;
    type Command = Command;
    type Error = DomainError;
    const STREAM_TYPE: &'static str = "community";

    fn evolve(state: Community, event: &Event) -> Community {
        domain::evolve(state, event)
    }

    fn decide(state: &Community, command: &Command) -> Result<Vec<Event>, DomainError> {
        domain::decide(state, command)
    }
}

/// The running service: hand its gRPC server to a router.
#[derive(Debug)]
pub struct Membership {
    pub server: MembershipServiceServer<Api>,
}

/// Migrates the schema, starts the relay and the projections, and returns the gRPC service.
pub async fn start(runtime: &Runtime) -> kith_platform::Result<Membership> {
    let (schema, pool) = runtime.database(SERVICE, &[]).await?;
    let log = runtime.event_log(SERVICE, &pool);
    let sealer = Sealer::new(pool.clone());
    let rewrapped = sealer.rewrap().await?;
    if rewrapped > 0 {
        tracing::info!(keys = rewrapped, "sealing keys wrapped by the current KEK");
    }
    let codec = MembershipCodec::new(sealer);
    let directory = Arc::new(Directory::new(codec.clone()));
    let progress = runtime.spawn_log_projection(&log, directory).await?;
    runtime.spawn_relay(SERVICE, &schema, &log).await?;
    let repository = Repository::new(log, codec);
    let api = Api::new(repository, pool, progress, runtime.authenticator.clone());
    Ok(Membership {
        server: MembershipServiceServer::new(api),
    })
}

/// The projections of the service, for `kith rebuild`.
pub fn projections(pool: &sqlx::PgPool) -> Vec<Arc<dyn kith_platform::projection::Projection>> {
    let codec = MembershipCodec::new(Sealer::new(pool.clone()));
    vec![Arc::new(Directory::new(codec))]
}

/// The projections fed from other services' streams: none (membership consumes nothing).
pub fn bus_projections(
    _nats: &kith_platform::config::NatsArgs,
) -> Vec<kith_platform::projection::FromBus> {
    Vec::new()
}
