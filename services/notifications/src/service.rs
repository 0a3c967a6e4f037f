//! Wiring: the notifications service on a runtime (its schema, log, relay, the ledger over its
//! own log, and the rules' consumers of membership's, cohorts' and messaging's streams), and the
//! lists of projections `kith rebuild` replays.

use std::sync::Arc;

use kith_platform::aggregate::{Decider, Repository};
use kith_platform::config::NatsArgs;
use kith_platform::projection::{BusSource, FromBus, Projection};
use kith_platform::runtime::Runtime;
use kith_proto::notifications::notifications_service_server::NotificationsServiceServer;

use kith_platform::sealing::Sealer;

use crate::api::Api;
use crate::codec::MemberCodec;
use crate::config::DeliveryArgs;
use crate::delivery::{Deliverer, Keys};
use crate::domain::{self, Member, MemberCommand, MemberEvent};
use crate::projections::route::Appended;
use crate::projections::{Conversations, Ledger, Members, Places};
use crate::unsubscribe::Unsubscribe;

/// The service's name: its schema, its stream (`KITH_NOTIFICATIONS`) and its subjects.
pub const SERVICE: &str = "notifications";
/// The gRPC service's full name, for health and reflection.
pub const GRPC_SERVICE: &str = "kith.notifications.v1.NotificationsService";

const MEMBERSHIP: &str = "membership";
const COHORTS: &str = "cohorts";
const MESSAGING: &str = "messaging";

/// The running service: hand its gRPC server to a router.
#[derive(Debug)]
pub struct Notifications {
    pub server: NotificationsServiceServer<Api>,
    /// Where the one-click unsubscribe endpoint listens.
    pub unsubscribe_addr: std::net::SocketAddr,
}

/// [`start_with`] the default delivery settings (no SMTP server: email is not sent).
pub async fn start(runtime: &Runtime) -> kith_platform::Result<Notifications> {
    start_with(runtime, DeliveryArgs::default()).await
}

/// Migrates the schema, starts the ledger over its own log first (the rules read the
/// preferences it keeps), then the consumers of the other services' streams, the relay, the
/// delivery of email and webhooks and the unsubscribe endpoint, and returns the gRPC service.
pub async fn start_with(
    runtime: &Runtime,
    delivery: DeliveryArgs,
) -> kith_platform::Result<Notifications> {
    let keys = Keys::new(delivery.key().map_err(kith_platform::Error::Config)?);
    let (schema, pool) = runtime.database(SERVICE, &[]).await?;
    let log = runtime.event_log(SERVICE, &pool);
    let progress = runtime.spawn_log_projection(&log, Arc::new(Ledger)).await?;
    for (source, projection) in rules(&runtime.args.nats, Appended::of(&log)) {
        // The other services' streams are theirs to create: until they exist the consumers
        // wait and say so.
        runtime
            .spawn_bus_projection(&pool, source, projection)
            .await?;
    }
    runtime.spawn_relay(SERVICE, &schema, &log).await?;
    let sealer = Sealer::new(pool.clone());
    let codec = MemberCodec::new(sealer.clone(), delivery.webhook_allow_private);
    let members = Arc::new(Repository::new(log.clone(), codec));
    let unsubscribe_addr = Unsubscribe {
        members: Arc::clone(&members),
        keys: keys.clone(),
    }
    .serve(delivery.unsubscribe_listen, runtime.background.clone())
    .await?;
    let public_url = if delivery.public_url.is_empty() {
        format!("http://{unsubscribe_addr}")
    } else {
        delivery.public_url.clone()
    };
    tracing::info!(listen = %unsubscribe_addr, %public_url, "one-click unsubscribe endpoint is serving");
    let delivery = Arc::new(delivery);
    let reminded = Appended::of(&log);
    let deliverer = Deliverer::new(
        pool.clone(),
        log,
        progress.clone(),
        Arc::clone(&delivery),
        keys.clone(),
        public_url,
    )?;
    runtime
        .tasks
        .spawn(deliverer.run(runtime.background.clone()));
    runtime.tasks.spawn(crate::delivery::count_parked(
        pool.clone(),
        runtime.background.clone(),
    ));
    runtime.tasks.spawn(crate::reminders::run(
        pool.clone(),
        reminded,
        runtime.background.clone(),
    ));
    let api = Api::new(
        members,
        pool,
        progress,
        runtime.authenticator.clone(),
        sealer,
        keys,
        delivery,
    );
    Ok(Notifications {
        server: NotificationsServiceServer::new(api),
        unsubscribe_addr,
    })
}

fn source(nats: &NatsArgs, service: &str, what: &str) -> BusSource {
    BusSource {
        durable: format!("{SERVICE}-{what}"),
        stream: nats.stream_for(service).name,
        batch_size: 1000,
        service: SERVICE.to_owned(),
    }
}

/// The projections fed from other services' streams, with their sources, for `kith rebuild`.
/// Rebuilding them decides nothing twice: a notification already in the log is not written
/// again.
pub fn bus_projections(nats: &NatsArgs) -> Vec<FromBus> {
    rules(nats, Appended::default())
}

/// The rules' consumers, waking `appended` after each batch they commit.
fn rules(nats: &NatsArgs, appended: Appended) -> Vec<FromBus> {
    vec![
        (
            source(nats, MEMBERSHIP, "members"),
            Arc::new(Members {
                appended: appended.clone(),
            }),
        ),
        (
            source(nats, COHORTS, "places"),
            Arc::new(Places {
                appended: appended.clone(),
            }),
        ),
        (
            source(nats, MESSAGING, "conversations"),
            Arc::new(Conversations { appended }),
        ),
    ]
}

/// The projections of the service's own log, for `kith rebuild`.
pub fn projections(_pool: &sqlx::PgPool) -> Vec<Arc<dyn Projection>> {
    vec![Arc::new(Ledger)]
}

/// A member's stream is `member/<member_id>`.
#[derive(Debug)]
pub struct MemberDecider;

impl Decider for MemberDecider {
    type State = Member;
    type Event = MemberEvent;
    type Command = MemberCommand;
    type Error = std::convert::Infallible;
    const STREAM_TYPE: &'static str = "member";

    fn evolve(state: Member, event: &MemberEvent) -> Member {
        domain::member::evolve(state, event)
    }

    fn decide(state: &Member, command: &MemberCommand) -> Result<Vec<MemberEvent>, Self::Error> {
        domain::member::decide(state, command)
    }
}
