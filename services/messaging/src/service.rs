//! Wiring: the messaging service on a runtime (its schema, log, relay, the projection of its
//! own log and those of membership's and cohorts' streams), its deciders, and the lists of
//! projections `kith rebuild` replays.

use std::sync::Arc;

use kith_platform::aggregate::{Decider, Repository};
use kith_platform::config::NatsArgs;
use kith_platform::projection::{BusSource, FromBus, Projection};
use kith_platform::runtime::Runtime;
use kith_platform::sealing::Sealer;
use kith_proto::messaging::messaging_service_server::MessagingServiceServer;

use crate::api::Api;
use crate::codec::{ConversationCodec, ReaderCodec};
use crate::domain::{
    self, Command, Conversation, DomainError, Event, Reader, ReaderCommand, ReaderEvent,
};
use crate::projections::{Members, Messages, Places};

/// The service's name: its schema, its stream (`KITH_MESSAGING`) and its subjects.
pub const SERVICE: &str = "messaging";
/// The gRPC service's full name, for health and reflection.
pub const GRPC_SERVICE: &str = "kith.messaging.v1.MessagingService";

/// The service whose events tell who belongs to a community.
const MEMBERSHIP: &str = "membership";
/// The service whose events tell who sits in a cohort.
const COHORTS: &str = "cohorts";

/// The running service: hand its gRPC server to a router.
#[derive(Debug)]
pub struct Messaging {
    pub server: MessagingServiceServer<Api>,
}

/// Migrates the schema, starts the projections (its own log first: an erasure from the bus blanks
/// its rows), the consumers of membership's and cohorts' streams and the relay, and returns the
/// gRPC service.
pub async fn start(runtime: &Runtime) -> kith_platform::Result<Messaging> {
    let (schema, pool) = runtime.database(SERVICE, &[]).await?;
    let log = runtime.event_log(SERVICE, &pool);
    let sealer = Sealer::new(pool.clone());
    let progress = runtime
        .spawn_log_projection(&log, Arc::new(Messages::new(sealer.clone())))
        .await?;
    // The other services' streams are theirs to create: until they exist the consumers wait
    // and say so.
    let members = runtime
        .spawn_bus_projection(&pool, members_source(&runtime.args.nats), Arc::new(Members))
        .await?;
    let places = runtime
        .spawn_bus_projection(&pool, places_source(&runtime.args.nats), Arc::new(Places))
        .await?;
    runtime.spawn_relay(SERVICE, &schema, &log).await?;
    let codec = ConversationCodec::new(pool.clone(), sealer);
    let conversations = Arc::new(Repository::new(log.clone(), codec.clone()));
    let readers = Arc::new(Repository::new(log, ReaderCodec));
    let api = Api::new(
        conversations,
        codec,
        readers,
        pool,
        progress,
        members,
        places,
        runtime.authenticator.clone(),
    );
    Ok(Messaging {
        server: MessagingServiceServer::new(api),
    })
}

fn members_source(nats: &NatsArgs) -> BusSource {
    BusSource {
        durable: format!("{SERVICE}-members"),
        stream: nats.stream_for(MEMBERSHIP).name,
        batch_size: 1000,
        service: SERVICE.to_owned(),
    }
}

fn places_source(nats: &NatsArgs) -> BusSource {
    BusSource {
        durable: format!("{SERVICE}-places"),
        stream: nats.stream_for(COHORTS).name,
        batch_size: 1000,
        service: SERVICE.to_owned(),
    }
}

/// The projections fed from other services' streams, with their sources, for `kith rebuild`.
pub fn bus_projections(nats: &NatsArgs) -> Vec<FromBus> {
    vec![
        (members_source(nats), Arc::new(Members)),
        (places_source(nats), Arc::new(Places)),
    ]
}

/// The projections of the service's own log, for `kith rebuild`.
pub fn projections(pool: &sqlx::PgPool) -> Vec<Arc<dyn Projection>> {
    vec![Arc::new(Messages::new(Sealer::new(pool.clone())))]
}

/// A conversation is one stream, `conversation/<id>`.
#[derive(Debug)]
pub struct ConversationDecider;

impl Decider for ConversationDecider {
    type State = Conversation;
    type Event = Event;
    type Command = Command;
    type Error = DomainError;
    const STREAM_TYPE: &'static str = "conversation";

    fn evolve(state: Conversation, event: &Event) -> Conversation {
        domain::conversation::evolve(state, event)
    }

    fn decide(state: &Conversation, command: &Command) -> Result<Vec<Event>, DomainError> {
        domain::conversation::decide(state, command)
    }
}

/// A member's read state is one stream, `reader/<member_id>`.
#[derive(Debug)]
pub struct ReaderDecider;

impl Decider for ReaderDecider {
    type State = Reader;
    type Event = ReaderEvent;
    type Command = ReaderCommand;
    type Error = DomainError;
    const STREAM_TYPE: &'static str = "reader";

    fn evolve(state: Reader, event: &ReaderEvent) -> Reader {
        domain::reader::evolve(state, event)
    }

    fn decide(state: &Reader, command: &ReaderCommand) -> Result<Vec<ReaderEvent>, DomainError> {
        domain::reader::decide(state, command)
    }
}
