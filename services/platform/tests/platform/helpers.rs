//! Fixtures shared by the platform tests.

use async_trait::async_trait;
use kith_platform::eventlog::{Append, Appended, EventLog, Metadata, NewEvent, RecordedEvent};
use kith_platform::projection::Projection;
use kith_platform::testing::TestDatabase;
use sqlx::PgConnection;
use uuid::Uuid;

pub(crate) const SCHEMA: &str = "svc";

/// A database with a migrated log.
pub(crate) async fn log() -> (TestDatabase, EventLog) {
    let db = TestDatabase::create().await;
    let pool = db.pool(SCHEMA, &[]).await;
    (db, EventLog::new(pool))
}

pub(crate) fn event(n: usize) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "kith.test.v1.Happened".into(),
        payload: format!("event {n}").into_bytes(),
    }
}

/// Appends `count` events one command at a time to `stream_id`, starting at `from_version`.
pub(crate) async fn append_n(
    log: &EventLog,
    stream_id: &str,
    from_version: i64,
    count: usize,
) -> Appended {
    let metadata = Metadata::default();
    let mut last = None;
    for n in 0..count {
        last = Some(
            log.append(Append {
                stream_type: "thing",
                stream_id,
                expected_version: from_version + n as i64,
                events: vec![event(n)],
                metadata: &metadata,
                command_key: None,
                erase_subjects: &[],
            })
            .await
            .expect("append"),
        );
    }
    last.expect("at least one event")
}

/// Counts events per stream; applying an event twice would count it twice.
#[derive(Debug)]
pub(crate) struct Counting;

#[async_trait]
impl Projection for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["counted"]
    }

    fn knows(&self, event_type: &str) -> bool {
        event_type.starts_with("kith.test.v1.")
    }

    fn ddl(&self) -> &'static str {
        "CREATE TABLE IF NOT EXISTS counted (
            stream_id text PRIMARY KEY,
            events bigint NOT NULL,
            last_version bigint NOT NULL,
            last_payload bytea NOT NULL)"
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &RecordedEvent,
    ) -> kith_platform::Result<()> {
        sqlx::query(
            "INSERT INTO counted (stream_id, events, last_version, last_payload) VALUES ($1, 1, $2, $3)
             ON CONFLICT (stream_id) DO UPDATE
             SET events = counted.events + 1, last_version = $2, last_payload = $3",
        )
        .bind(&event.stream_id)
        .bind(event.version)
        .bind(&event.payload)
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// The counted rows, ordered.
pub(crate) async fn counted(pool: &sqlx::PgPool) -> Vec<(String, i64, i64)> {
    sqlx::query_as("SELECT stream_id, events, last_version FROM counted ORDER BY stream_id")
        .fetch_all(pool)
        .await
        .expect("read counted")
}

/// A relay of `log` to the stream of `spec`, running until the token is cancelled.
pub(crate) fn spawn_relay(
    log: &EventLog,
    js: &async_nats::jetstream::Context,
    spec: &kith_platform::bus::StreamSpec,
) -> (
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let relay = tokio::spawn(kith_platform::relay::run(
        kith_platform::relay::RelayConfig {
            schema: kith_platform::db::Schema::parse(SCHEMA).expect("schema"),
            stream: spec.clone(),
            batch_size: 100,
            poll_interval: std::time::Duration::from_millis(10),
            published: Default::default(),
        },
        log.clone(),
        js.clone(),
        shutdown.clone(),
    ));
    (shutdown, relay)
}
