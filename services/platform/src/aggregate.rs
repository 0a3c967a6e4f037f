//! Running commands against deciders. For each command: return the first result if its key was
//! seen; otherwise queue it on its stream. Commands on one stream are serialised inside the
//! process: whoever holds the stream takes every command queued behind it, decides them one
//! after another against the state (kept in memory between commands and brought up to date from
//! the log), and appends all their events in one statement and one commit. A hot stream thus
//! costs one commit per batch, not per command, and never races itself into conflicts; a
//! conflict with another process reloads the stream and decides the batch again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};

use async_trait::async_trait;
use tokio::sync::{Mutex, oneshot};

use crate::eventlog::{Append, Appended, EventLog, Metadata, NewEvent, RecordedEvent};
use crate::{Error, Result};

/// An aggregate's pure decision logic.
pub trait Decider: Send + Sync + 'static {
    type State: Clone + Default + Send + Sync + 'static;
    type Event: Send + Sync;
    type Command: Clone + Send + Sync + 'static;
    type Error: Send + 'static;
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

/// A command waiting for its stream.
struct Queued<D: Decider> {
    key: Option<String>,
    metadata: Metadata,
    command: D::Command,
    reply: oneshot::Sender<Outcome<D>>,
}

type Outcome<D> = Result<Appended, Rejected<<D as Decider>::Error>>;

/// One stream's state and the commands queued for it.
struct Stream<D: Decider> {
    loaded: Mutex<Option<Loaded<D::State>>>,
    queue: StdMutex<Vec<Queued<D>>>,
}

impl<D: Decider> Default for Stream<D> {
    fn default() -> Self {
        Self {
            loaded: Mutex::new(None),
            queue: StdMutex::new(Vec::new()),
        }
    }
}

type Slot<D> = Arc<Stream<D>>;

/// What became of one command of a batch, before the append.
enum Decided<E> {
    Refused(E),
    Failed(Error),
    /// Decided no events: nothing to write.
    Unchanged(i64),
    /// Its events are the append at this index.
    Appending(usize),
    /// The same key as the command at this index earlier in the batch: the same result.
    SameAs(usize),
}

/// The events one command of a batch appends.
struct Planned {
    /// Its index in the batch.
    command: usize,
    expected: i64,
    events: Vec<NewEvent>,
    erased: Vec<String>,
}

/// A batch decided: the state after it, what became of each command, and the appends.
struct Decisions<D: Decider> {
    after: Loaded<D::State>,
    decided: Vec<Decided<D::Error>>,
    planned: Vec<Planned>,
}

/// The most commands decided and committed together.
const BATCH_LIMIT: usize = 128;

/// How many stream states stay cached before idle ones are dropped.
const CACHE_LIMIT: usize = 10_000;
/// How many times a command is decided again after losing a race to another process.
const CONFLICT_RETRIES: usize = 8;

/// Executes commands of one decider over the log.
pub struct Repository<D: Decider, C> {
    log: EventLog,
    codec: C,
    slots: StdMutex<HashMap<String, Slot<D>>>,
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

    fn slot(&self, stream_id: &str) -> Slot<D> {
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
        let (reply, mut outcome) = oneshot::channel();
        lock(&slot.queue).push(Queued {
            key: command_key.map(str::to_owned),
            metadata: metadata.clone(),
            command: command.clone(),
            reply,
        });
        loop {
            let mut loaded = slot.loaded.lock().await;
            // Whoever held the stream before may have run this command with its own batch.
            match outcome.try_recv() {
                Ok(result) => return result,
                Err(oneshot::error::TryRecvError::Closed) => {
                    return Err(Rejected::Platform(Error::ShuttingDown));
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let batch: Vec<Queued<D>> = {
                let mut queue = lock(&slot.queue);
                let take = queue.len().min(BATCH_LIMIT);
                queue.drain(..take).collect()
            };
            self.run_batch(stream_id, &mut loaded, batch).await;
        }
    }

    /// Decides `batch` in order and commits its events together, answering every command.
    async fn run_batch(
        &self,
        stream_id: &str,
        cached: &mut Option<Loaded<D::State>>,
        batch: Vec<Queued<D>>,
    ) {
        let mut lost_races = 0;
        loop {
            let loaded = match self.catch_up(stream_id, cached.take()).await {
                Ok(loaded) => loaded,
                Err(err) => {
                    let message = err.to_string();
                    for queued in batch {
                        let _ = queued
                            .reply
                            .send(Err(Rejected::Platform(Error::Unavailable(message.clone()))));
                    }
                    return;
                }
            };
            let Decisions {
                after: Loaded { state, version },
                decided,
                mut planned,
            } = self.decide_batch(stream_id, loaded, &batch).await;
            let mut appends: Vec<Append<'_>> = planned
                .iter_mut()
                .map(
                    |Planned {
                         command,
                         expected,
                         events,
                         erased,
                     }| Append {
                        stream_type: D::STREAM_TYPE,
                        stream_id,
                        expected_version: *expected,
                        events: std::mem::take(events),
                        metadata: &batch[*command].metadata,
                        command_key: batch[*command].key.as_deref(),
                        erase_subjects: erased,
                    },
                )
                .collect();
            let written = match appends.len() {
                0 => Ok(Vec::new()),
                // Alone on its stream: the log's group commit shares its commit with other
                // streams' appends instead.
                1 => match appends.pop() {
                    Some(one) => self.log.append(one).await.map(|done| vec![done]),
                    None => Ok(Vec::new()),
                },
                _ => self.log.append_all(&appends).await,
            };
            match written {
                Ok(results) => {
                    // A replayed result means another call with the key appended first and ours
                    // did not: the state folded here is not the stream's, so reload next time.
                    *cached = if results.iter().any(|done| done.replayed) {
                        None
                    } else {
                        Some(Loaded { version, state })
                    };
                    answer(batch, decided, &results);
                    return;
                }
                Err(Error::Conflict { .. }) if lost_races < CONFLICT_RETRIES => {
                    // Another process wrote to the stream: reload it and decide again.
                    lost_races += 1;
                }
                Err(err) if batch.len() > 1 => {
                    // One command's trouble (a key recorded meanwhile by another process, say)
                    // must not fail the others: run each on its own.
                    tracing::debug!(stream_id, error = %err, "batch failed; running its commands one by one");
                    for queued in batch {
                        Box::pin(self.run_batch(stream_id, cached, vec![queued])).await;
                    }
                    return;
                }
                Err(err) => {
                    let queued = batch.into_iter().next();
                    if let Some(queued) = queued {
                        let first = match &queued.key {
                            Some(key) => self.log.command_result(key).await.ok().flatten(),
                            None => None,
                        };
                        let _ = queued.reply.send(match first {
                            Some(first) => Ok(first),
                            None => Err(Rejected::Platform(err)),
                        });
                    }
                    return;
                }
            }
        }
    }

    /// Decides each command against the state the ones before it left, and encodes the events.
    async fn decide_batch(
        &self,
        stream_id: &str,
        loaded: Loaded<D::State>,
        batch: &[Queued<D>],
    ) -> Decisions<D> {
        let Loaded {
            mut state,
            mut version,
        } = loaded;
        let mut decided = Vec::with_capacity(batch.len());
        let mut planned = Vec::new();
        for (index, queued) in batch.iter().enumerate() {
            if let Some(key) = &queued.key
                && let Some(first) = batch[..index]
                    .iter()
                    .position(|earlier| earlier.key.as_deref() == Some(key))
            {
                decided.push(Decided::SameAs(first));
                continue;
            }
            let events = match D::decide(&state, &queued.command) {
                Ok(events) => events,
                Err(err) => {
                    decided.push(Decided::Refused(err));
                    continue;
                }
            };
            if events.is_empty() {
                decided.push(Decided::Unchanged(version));
                continue;
            }
            let encoded = match self.codec.encode(stream_id, &events).await {
                Ok(encoded) => encoded,
                Err(err) => {
                    decided.push(Decided::Failed(err));
                    continue;
                }
            };
            let erased = self.codec.erased_subjects(stream_id, &events);
            let expected = version;
            version += i64::try_from(events.len()).unwrap_or(i64::MAX);
            state = events.iter().fold(state, D::evolve);
            decided.push(Decided::Appending(planned.len()));
            planned.push(Planned {
                command: index,
                expected,
                events: encoded,
                erased,
            });
        }
        Decisions {
            after: Loaded { version, state },
            decided,
            planned,
        }
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

/// Sends each command of a committed batch its answer.
fn answer<D: Decider>(
    batch: Vec<Queued<D>>,
    decided: Vec<Decided<D::Error>>,
    written: &[Appended],
) {
    let results: Vec<Option<Appended>> = decided
        .iter()
        .map(|decided| match decided {
            Decided::Appending(index) => written.get(*index).copied(),
            Decided::Unchanged(version) => Some(Appended {
                version: *version,
                position: 0,
                replayed: false,
            }),
            _ => None,
        })
        .collect();
    let missing = || {
        Rejected::Platform(Error::Unavailable(
            "the same request id was in flight twice and the first did not append; retry".into(),
        ))
    };
    for (index, (queued, decided)) in batch.into_iter().zip(decided).enumerate() {
        let outcome = match decided {
            Decided::Refused(err) => Err(Rejected::Domain(err)),
            Decided::Failed(err) => Err(Rejected::Platform(err)),
            Decided::Unchanged(_) | Decided::Appending(_) => results[index].ok_or_else(missing),
            Decided::SameAs(first) => results[first]
                .map(|first| Appended {
                    replayed: true,
                    ..first
                })
                .ok_or_else(missing),
        };
        let _ = queued.reply.send(outcome);
    }
}

fn lock<T>(mutex: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
