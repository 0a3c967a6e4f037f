//! The service's JetStream stream: its name, subjects, configuration and the headers every
//! published event carries.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::{Error, Result};

/// Header names that events carry on the bus, beside `Nats-Msg-Id` (the event id).
pub mod headers {
    pub const EVENT_TYPE: &str = "Kith-Event-Type";
    pub const STREAM_TYPE: &str = "Kith-Stream-Type";
    pub const STREAM_ID: &str = "Kith-Stream-Id";
    pub const VERSION: &str = "Kith-Version";
    pub const POSITION: &str = "Kith-Position";
    pub const RECORDED_AT: &str = "Kith-Recorded-At";
    pub const TRACEPARENT: &str = "traceparent";
}

/// The log identity of a bus message that is a Kith event: its event id (`Nats-Msg-Id`) and
/// log position. `None` for anything else published on the subjects.
pub fn event_identity(map: &async_nats::HeaderMap) -> Option<(uuid::Uuid, i64)> {
    let event_id = map.get("Nats-Msg-Id")?.as_str().parse().ok()?;
    let position = map.get(headers::POSITION)?.as_str().parse().ok()?;
    map.get(headers::EVENT_TYPE)?;
    Some((event_id, position))
}

/// Where a service's events go on the bus.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// The JetStream stream, `KITH_<SERVICE>` (tests add a unique suffix).
    pub name: String,
    /// Subjects are `<subject_prefix>.<stream_type>.<stream_id>`.
    pub subject_prefix: String,
    pub replicas: usize,
    pub duplicate_window: Duration,
}

impl StreamSpec {
    /// The production layout for `service`: stream `KITH_<SERVICE>`, subjects `kith.<service>.>`.
    pub fn for_service(service: &str) -> Self {
        Self {
            name: format!("KITH_{}", service.to_ascii_uppercase()),
            subject_prefix: format!("kith.{service}"),
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
        }
    }

    /// The subject of one event.
    pub fn subject(&self, stream_type: &str, stream_id: &str) -> String {
        format!("{}.{stream_type}.{stream_id}", self.subject_prefix)
    }

    /// Gets the stream, creating it when missing: file storage, kept without age limit so the
    /// whole history can be replayed from the bus.
    /// An existing stream is taken as it is, with a warning if it drops messages by itself.
    pub async fn ensure(&self, js: &jetstream::Context) -> Result<stream::Stream> {
        let stream = js
            .get_or_create_stream(stream::Config {
                name: self.name.clone(),
                subjects: vec![format!("{}.>", self.subject_prefix)],
                storage: stream::StorageType::File,
                retention: stream::RetentionPolicy::Limits,
                num_replicas: self.replicas,
                duplicate_window: self.duplicate_window,
                allow_direct: true,
                ..Default::default()
            })
            .await
            .map_err(Error::nats)?;
        let config = &stream.cached_info().config;
        if config.max_age > Duration::ZERO || config.max_messages > 0 || config.max_bytes > 0 {
            tracing::warn!(
                stream = %self.name,
                max_age = ?config.max_age,
                max_messages = config.max_messages,
                max_bytes = config.max_bytes,
                "the stream drops old events by itself; consumers starting later will refuse it \
                 (remove the limits, then `kith republish`)"
            );
        }
        Ok(stream)
    }
}

/// Connects to NATS with a name that shows in the server's connection list. A user and password
/// in the URL (`nats://kith-membership:<password>@host:4222`, production) log in as that user.
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client> {
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5));
    if let Some((user, password)) = url_credentials(url)? {
        options = options.user_and_password(user, password);
    }
    options.connect(url).await.map_err(Error::nats)
}

/// The user and password of the first server of `url` (a comma-separated list) that names them.
/// async-nats parses them out of the URL but never sends them (nats-io/nats.rs#1623), so they are
/// handed over as connect options, which also apply to the servers the cluster advertises.
fn url_credentials(url: &str) -> Result<Option<(String, String)>> {
    for server in url.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let addr: async_nats::ServerAddr = server.parse().map_err(Error::nats)?;
        if let (Some(user), Some(password)) = (addr.username(), addr.password()) {
            return Ok(Some((user.to_owned(), password.to_owned())));
        }
    }
    Ok(None)
}

/// A JetStream context that lets the relay keep many publishes in flight.
pub fn jetstream(client: async_nats::Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .max_ack_inflight(4096)
        .timeout(Duration::from_secs(10))
        .build(client)
}

/// Deletes every stream of the NATS namespace `namespace` (streams named `<NAMESPACE>_...`), for
/// tests and benchmarks that made their own. Best effort: failures are ignored.
pub async fn delete_namespace(nats_url: &str, namespace: &str) {
    use futures::StreamExt;
    let prefix = format!("{}_", namespace.to_ascii_uppercase());
    if let Ok(client) = async_nats::connect(nats_url).await {
        let js = async_nats::jetstream::new(client);
        let names: Vec<String> = js
            .stream_names()
            .filter_map(|name| async move { name.ok() })
            .collect()
            .await;
        for name in names.into_iter().filter(|name| name.starts_with(&prefix)) {
            let _ = js.delete_stream(&name).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::url_credentials;

    #[test]
    fn credentials_come_from_the_url() {
        assert_eq!(
            url_credentials("nats://kith-cohorts:k0a1b2@nats.nats.svc.cluster.local:4222").unwrap(),
            Some(("kith-cohorts".to_owned(), "k0a1b2".to_owned()))
        );
        assert_eq!(url_credentials("nats://127.0.0.1:4222").unwrap(), None);
        assert_eq!(
            url_credentials("nats://a:4222, nats://u:p@b:4222").unwrap(),
            Some(("u".to_owned(), "p".to_owned()))
        );
    }
}
