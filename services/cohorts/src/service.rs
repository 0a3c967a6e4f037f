//! Wiring: the cohorts service on a runtime (its schema, log, relay, projections and the
//! reactions to membership's events), and the standalone binary's server.

use std::sync::Arc;

use kith_platform::aggregate::{Decider, Repository};
use kith_platform::config::NatsArgs;
use kith_platform::projection::{BusSource, FromBus, Projection};
use kith_platform::runtime::Runtime;
use kith_proto::cohorts::cohorts_service_server::CohortsServiceServer;
use tokio::sync::Notify;

use crate::api::Api;
use crate::codec::CohortCodec;
use crate::domain::{self, Cohort, Command, DomainError, Event};
use crate::projections::{Communities, Roster, Touched};
use crate::reactions::Reactions;

/// The service's name: its schema, its stream (`KITH_COHORTS`) and its subjects.
pub const SERVICE: &str = "cohorts";
/// The gRPC service's full name, for health and reflection.
pub const GRPC_SERVICE: &str = "kith.cohorts.v1.CohortsService";
/// The service whose events tell who belongs to a community.
const MEMBERSHIP: &str = "membership";

/// A cohort is one stream, `cohort/<id>`.
#[derive(Debug)]
pub struct CohortDecider;

impl Decider for CohortDecider {
    type State = Cohort;
    type Event = Event;
    type Command = Command;
    type Error = DomainError;
    const STREAM_TYPE: &'static str = "cohort";

    fn evolve(state: Cohort, event: &Event) -> Cohort {
        domain::evolve(state, event)
    }

    fn decide(state: &Cohort, command: &Command) -> Result<Vec<Event>, DomainError> {
        domain::decide(state, command)
    }
}

/// The running service: hand its gRPC server to a router.
#[derive(Debug)]
pub struct Cohorts {
    pub server: CohortsServiceServer<Api>,
}

/// Migrates the schema, starts the relay, the projections (its own log, and membership's stream
/// on the bus) and the reactions, and returns the gRPC service.
pub async fn start(runtime: &Runtime) -> kith_platform::Result<Cohorts> {
    let (schema, pool) = runtime.database(SERVICE, &[]).await?;
    let log = runtime.event_log(SERVICE, &pool);
    let wake = Arc::new(Notify::new());
    let from_roster = Arc::new(Touched::new(Arc::clone(&wake)));
    let from_communities = Arc::new(Touched::new(Arc::clone(&wake)));

    let progress = runtime
        .spawn_log_projection(&log, Arc::new(Roster::new(Arc::clone(&from_roster))))
        .await?;
    // Membership's stream is membership's to create (in production cohorts may not): until it
    // exists the consumer waits and says so.
    let communities = runtime
        .spawn_bus_projection(
            &pool,
            communities_source(&runtime.args.nats),
            Arc::new(Communities::new(Arc::clone(&from_communities))),
        )
        .await?;
    runtime.spawn_relay(SERVICE, &schema, &log).await?;

    let repository = Arc::new(Repository::new(log, CohortCodec));
    let reactions = Arc::new(Reactions::new(
        pool.clone(),
        Arc::clone(&repository),
        vec![from_roster, from_communities],
        wake,
    ));
    runtime
        .tasks
        .spawn(Arc::clone(&reactions).release_touched(runtime.background.clone()));
    runtime
        .tasks
        .spawn(reactions.sweep(runtime.background.clone()));
    let api = Api::new(
        repository,
        pool,
        progress,
        communities,
        runtime.authenticator.clone(),
    );
    Ok(Cohorts {
        server: CohortsServiceServer::new(api),
    })
}

/// Where the communities projection reads membership's events.
fn communities_source(nats: &NatsArgs) -> BusSource {
    BusSource {
        durable: format!("{SERVICE}-communities"),
        stream: nats.stream_for(MEMBERSHIP).name,
        batch_size: 1000,
        service: SERVICE.to_owned(),
    }
}

/// The projections fed from other services' streams, with their sources, for `kith rebuild`.
pub fn bus_projections(nats: &NatsArgs) -> Vec<FromBus> {
    let touched = Arc::new(Touched::new(Arc::new(Notify::new())));
    vec![(
        communities_source(nats),
        Arc::new(Communities::new(touched)),
    )]
}

/// The projections of the service's own log, for `kith rebuild`.
pub fn projections(_pool: &sqlx::PgPool) -> Vec<Arc<dyn Projection>> {
    let touched = Arc::new(Touched::new(Arc::new(Notify::new())));
    vec![Arc::new(Roster::new(touched))]
}
