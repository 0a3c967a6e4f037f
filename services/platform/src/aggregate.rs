//! Running commands against deciders. For each command: return the first result if its key was
//! seen; otherwise load the stream's state (kept in memory between commands and brought up to
//! date from the log), decide, seal and append at the expected version. Commands on one stream are
//! serialised inside the process, so they do not race each other into conflicts; a conflict with
//! another process reloads and decides again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};

use async_trait::async_trait;
use tokio::sync::Mutex;

use crate::eventlog::{Append, Appended, EventLog, Metadata, NewEvent, RecordedEvent};
use crate::{Error, Result};

/// An aggregate's pure decision logic.
pub trait Decider: Send + Sync + 'static {
    type State: Clone + Default + Send + Sync + 'static;
    type Event: Send + Sync;
    type Command: Send + Sync;
    type Error: Send;
    /// The `stream_type` of its streams.
    const STREAM_TYPE: &'static str;
    fn evolve(state: Self::State, event: &Self::Event) -> Self::State;
    fn decide(
        state: &Self::State,
        command: &Self::Command,
    ) -> Result<Vec<Self::Event>, Self::Error>;
}

/// Turns domain events into log events and back; the place where personal fields are sealed and
/// opened.
#[async_trait]
pub trait Codec<D: Decider>: Send + Sync {
    async fn encode(&self, stream_id: &str, events: &[D::Event]) -> Result<Vec<NewEvent>>;
    async fn decode(&self, events: &[RecordedEvent]) -> Result<Vec<D::Event>>;
    /// Subjects whose sealing keys these events destroy (erasures).
    fn erased_subjects(&self, stream_id: &str, events: &[D::Event]) -> Vec<String>;
}

/// Why a command did not append.
#[derive(Debug)]
pub enum Rejected<E> {
    /// The domain refused it.
    Domain(E),
    /// The platform failed.
    Platform(Error),
}

impl<E> From<Error> for Rejected<E> {
    fn from(err: Error) -> Self {
        Self::Platform(err)
    }
}

/// The in-memory state of a stream, at a version.
#[derive(Debug, Default)]
struct Loaded<S> {
    version: i64,
    state: S,
}

type Slot<S> = Arc<Mutex<Option<Loaded<S>>>>;

/// How many stream states stay cached before idle ones are dropped.
const CACHE_LIMIT: usize = 10_000;
/// How many times a command is decided again after losing a race to another process.
const CONFLICT_RETRIES: usize = 8;

/// Executes commands of one decider over the log.
pub struct Repository<D: Decider, C> {
    log: EventLog,
    codec: C,
    slots: StdMutex<HashMap<String, Slot<D::State>>>,
}

impl<D: Decider, C> std::fmt::Debug for Repository<D, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("stream_type", &D::STREAM_TYPE)
            .finish_non_exhaustive()
    }
}

impl<D: Decider, C: Codec<D>> Repository<D, C> {
    pub fn new(log: EventLog, codec: C) -> Self {
        Self {
            log,
            codec,
            slots: StdMutex::new(HashMap::new()),
        }
    }

    /// The log commands append to.
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    fn slot(&self, stream_id: &str) -> Slot<D::State> {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if slots.len() >= CACHE_LIMIT {
            slots.retain(|_, slot| Arc::strong_count(slot) > 1);
        }
        Arc::clone(slots.entry(stream_id.to_owned()).or_default())
    }

    /// Runs `command` on `stream_id`. With a `command_key`, a repeat returns the first result.
    pub async fn execute(
        &self,
        stream_id: &str,
        command_key: Option<&str>,
        metadata: &Metadata,
        command: &D::Command,
    ) -> Result<Appended, Rejected<D::Error>> {
        if let Some(key) = command_key
            && let Some(first) = self.log.command_result(key).await?
        {
            return Ok(first);
        }
        let slot = self.slot(stream_id);
        let mut guard = slot.lock().await;
        for _ in 0..CONFLICT_RETRIES {
            let loaded = self.catch_up(stream_id, guard.take()).await?;
            let events = match D::decide(&loaded.state, command) {
                Ok(events) => events,
                Err(err) => {
                    *guard = Some(loaded);
                    return Err(Rejected::Domain(err));
                }
            };
            let encoded = self.codec.encode(stream_id, &events).await?;
            let erased = self.codec.erased_subjects(stream_id, &events);
            let appended = self
                .log
                .append(Append {
                    stream_type: D::STREAM_TYPE,
                    stream_id,
                    expected_version: loaded.version,
                    events: encoded,
                    metadata,
                    command_key,
                    erase_subjects: &erased,
                })
                .await;
            match appended {
                Ok(done) if done.replayed => {
                    *guard = Some(loaded);
                    return Ok(done);
                }
                Ok(done) => {
                    let state = events.iter().fold(loaded.state, D::evolve);
                    *guard = Some(Loaded {
                        version: done.version,
                        state,
                    });
                    return Ok(done);
                }
                Err(Error::Conflict { .. }) => {
                    *guard = Some(loaded);
                    continue;
                }
                Err(err) => return Err(err.into()),
            }
        }
        Err(Rejected::Platform(Error::Conflict {
            stream_id: stream_id.to_owned(),
            expected: guard.as_ref().map_or(0, |loaded| loaded.version),
        }))
    }

    /// Brings a cached state (or a fresh one) up to the stream's last version.
    async fn catch_up(
        &self,
        stream_id: &str,
        cached: Option<Loaded<D::State>>,
    ) -> Result<Loaded<D::State>> {
        let mut loaded = cached.unwrap_or_default();
        let recorded = self.log.read_stream(stream_id, loaded.version).await?;
        if let Some(last) = recorded.last() {
            let events = self.codec.decode(&recorded).await?;
            loaded.state = events.iter().fold(loaded.state, D::evolve);
            loaded.version = last.version;
        }
        Ok(loaded)
    }
}
