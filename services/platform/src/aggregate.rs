//! Running commands against deciders. Commands on one stream are serialised inside the process:
//! whoever holds the stream takes every command queued behind it, decides them one after another
//! against the state (kept in memory between commands), and appends all their events in one
//! statement and one commit. A hot stream thus costs one commit per batch, not per command, and
//! never races itself into conflicts.
//!
//! The happy path is one round trip: the cached state is trusted, the append records each
//! command's key in its own statement, and the stream's version guards both. An append decided
//! on a stale state (another process wrote to the stream) loses the race on the version and is
//! decided again on the stream reloaded; a key recorded before (a retry) fails the statement,
//! which appends nothing, and the first result is the answer. What an append does not check is
//! checked apart, on the rare paths that need it: a refusal or a no-op decided on a cached state
//! stands only once the stream is seen not to have moved, and a refused or no-op command with a
//! key answers with the key's first result when it has one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};

use async_trait::async_trait;
use tokio::sync::{Mutex, oneshot};

use crate::eventlog::{Append, Appended, CommandKey, EventLog, Metadata, NewEvent, RecordedEvent};
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
    /// Whether this version knows the event type: by default, whether it is a message of the
    /// Kith protos this build was made with. A stream holding an event it does not know was
    /// written by a newer version and is not decided here.
    fn knows(event_type: &str) -> bool {
        crate::wire::is_known_event_type(event_type)
    }
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
    key: Option<CommandKey>,
    metadata: Metadata,
    command: D::Command,
    reply: oneshot::Sender<Outcome<D>>,
    /// The caller's span: a batch's work is traced under its first command's caller.
    span: tracing::Span,
}

type Outcome<D> = Result<Appended, Rejected<<D as Decider>::Error>>;

/// One stream's state and the commands queued for it.
struct Stream<D: Decider> {
    loaded: Mutex<Option<Loaded<D::State>>>,
    queue: StdMutex<Queue<D>>,
}

/// Commands waiting for their stream, and whether a task is draining them.
struct Queue<D: Decider> {
    waiting: Vec<Queued<D>>,
    draining: bool,
}

impl<D: Decider> Default for Stream<D> {
    fn default() -> Self {
        Self {
            loaded: Mutex::new(None),
            queue: StdMutex::new(Queue {
                waiting: Vec::new(),
                draining: false,
            }),
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
    /// Its key was recorded by an earlier call: that call's result, or the refusal of a
    /// different request under the same key.
    Replayed(Result<Appended>),
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
    inner: Arc<Inner<D, C>>,
}

struct Inner<D: Decider, C> {
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

impl<D: Decider, C: Codec<D> + 'static> Repository<D, C> {
    pub fn new(log: EventLog, codec: C) -> Self {
        Self {
            inner: Arc::new(Inner {
                log,
                codec,
                slots: StdMutex::new(HashMap::new()),
            }),
        }
    }

    /// The log commands append to.
    pub fn log(&self) -> &EventLog {
        &self.inner.log
    }

    /// Runs `command` on `stream_id`. With a `command_key`, a repeat returns the first result,
    /// and the key reused for a different request is refused with [`Error::RequestReused`].
    ///
    /// The command joins its stream's queue; a task of its own (not the caller's) decides and
    /// commits the queue batch by batch, so a caller that goes away mid-call affects no one
    /// else's command, and its own command still completes.
    pub async fn execute(
        &self,
        stream_id: &str,
        command_key: Option<&CommandKey>,
        metadata: &Metadata,
        command: &D::Command,
    ) -> Result<Appended, Rejected<D::Error>> {
        let slot = self.inner.slot(stream_id);
        let (reply, outcome) = oneshot::channel();
        let start_drain = {
            let mut queue = lock(&slot.queue);
            queue.waiting.push(Queued {
                key: command_key.cloned(),
                metadata: metadata.clone(),
                command: command.clone(),
                reply,
                span: tracing::Span::current(),
            });
            !std::mem::replace(&mut queue.draining, true)
        };
        if start_drain {
            let inner = Arc::clone(&self.inner);
            let stream_id = stream_id.to_owned();
            // Not under this caller's span: the task outlives its call, draining the commands
            // of callers after it. Each batch runs under the span of its first command's caller.
            tokio::spawn(async move { inner.drain(&stream_id, &slot).await });
        }
        outcome.await.unwrap_or_else(|_| {
            // The batch's task dropped the reply: it panicked (a bug, logged), or the process
            // is going down.
            Err(Rejected::Platform(Error::Unavailable(
                "the command's batch failed before answering; retry with the same request id"
                    .into(),
            )))
        })
    }
}

impl<D: Decider, C: Codec<D>> Inner<D, C> {
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

    /// Decides and commits the stream's queue, batch by batch, until it is empty.
    async fn drain(&self, stream_id: &str, slot: &Slot<D>) {
        use futures::FutureExt;
        let mut loaded = slot.loaded.lock().await;
        loop {
            let batch: Vec<Queued<D>> = {
                let mut queue = lock(&slot.queue);
                if queue.waiting.is_empty() {
                    queue.draining = false;
                    return;
                }
                let take = queue.waiting.len().min(BATCH_LIMIT);
                queue.waiting.drain(..take).collect()
            };
            // A panic (a bug in a decider or codec) fails its own batch, whose callers then hear
            // the call failed; the stream goes on with the commands queued behind it.
            use tracing::Instrument;
            let span = batch
                .first()
                .map_or_else(tracing::Span::none, |first| first.span.clone());
            let ran = std::panic::AssertUnwindSafe(self.run_batch(stream_id, &mut loaded, batch))
                .catch_unwind()
                .instrument(span)
                .await;
            if ran.is_err() {
                tracing::error!(
                    stream_id,
                    "a command batch panicked; its callers were failed"
                );
                *loaded = None;
            }
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
            // A cached state is trusted without reading the stream (see the module's comment).
            let (loaded, fresh) = match cached.take() {
                Some(loaded) => (loaded, false),
                None => match self.load(stream_id).await {
                    Ok(loaded) => (loaded, true),
                    Err(err) => {
                        fail_all(batch, err);
                        return;
                    }
                },
            };
            let from = loaded.version;
            let Decisions {
                after: Loaded { state, version },
                decided,
                mut planned,
            } = self.decide_batch(stream_id, loaded, &batch).await;
            let unchecked = decided
                .iter()
                .any(|decided| matches!(decided, Decided::Refused(_) | Decided::Unchanged(_)));
            if unchecked && !fresh {
                match self.log.read_stream(stream_id, from).await {
                    Ok(newer) if newer.is_empty() => {}
                    // Moved on under us: decide again on the stream as it is.
                    Ok(_) => continue,
                    Err(err) => {
                        fail_all(batch, err);
                        return;
                    }
                }
            }
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
                        command_key: batch[*command].key.as_ref(),
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
                Ok(results) if batch.len() > 1 && results.iter().any(|done| done.replayed) => {
                    // The one append was a retry's, recorded before: nothing was written, and the
                    // batch's other commands were decided on a state holding its events. Answer
                    // it, and decide the others again on the stream as it is.
                    *cached = None;
                    let appended = decided
                        .iter()
                        .position(|decided| matches!(decided, Decided::Appending(_)));
                    let mut rest = Vec::new();
                    for (index, (queued, decided)) in batch.into_iter().zip(decided).enumerate() {
                        let first = match decided {
                            Decided::Appending(_) => Some(index),
                            Decided::SameAs(first) => Some(first),
                            _ => None,
                        };
                        match (first == appended, results.first()) {
                            (true, Some(done)) => {
                                let _ = queued.reply.send(Ok(Appended {
                                    replayed: true,
                                    ..*done
                                }));
                            }
                            _ => rest.push(queued),
                        }
                    }
                    if !rest.is_empty() {
                        Box::pin(self.run_batch(stream_id, cached, rest)).await;
                    }
                    return;
                }
                Ok(results) => {
                    // A replayed result means another call with the key appended first and ours
                    // did not: the state folded here is not the stream's, so reload next time.
                    *cached = if results.iter().any(|done| done.replayed) {
                        None
                    } else {
                        Some(Loaded { version, state })
                    };
                    let decided = self.replay_recorded_keys(&batch, decided).await;
                    answer(batch, decided, &results);
                    return;
                }
                Err(Error::Conflict { .. }) if lost_races < CONFLICT_RETRIES => {
                    // Another process wrote to the stream: reload it and decide again.
                    lost_races += 1;
                }
                Err(err) => {
                    // Committed after all (the reply was lost)? A command with a key says so.
                    let had = batch.len();
                    let batch = self.settle_committed(batch, &err).await;
                    if had > 1 && !batch.is_empty() && !unreachable(&err) {
                        // One command's trouble (a key recorded meanwhile by another process, a
                        // row the database refuses) must not fail the others: run each alone.
                        tracing::debug!(stream_id, error = %err, "batch failed; running its commands one by one");
                        for queued in batch {
                            Box::pin(self.run_batch(stream_id, cached, vec![queued])).await;
                        }
                        return;
                    }
                    fail_all(batch, err);
                    return;
                }
            }
        }
    }

    /// Answers the commands of a failed batch whose key was recorded anyway (the commit went
    /// through and only its reply was lost) with their result, and returns the others. One
    /// query for the whole batch; when the database is out of reach nobody can tell, and they
    /// are all returned (to be answered UNAVAILABLE: a retry with the same key is safe).
    async fn settle_committed(&self, batch: Vec<Queued<D>>, err: &Error) -> Vec<Queued<D>> {
        if unreachable(err) {
            return batch;
        }
        let keys: Vec<&CommandKey> = batch.iter().filter_map(|q| q.key.as_ref()).collect();
        if keys.is_empty() {
            return batch;
        }
        let Ok(found) = self.log.command_results(&keys).await else {
            return batch;
        };
        // Recorded by this batch when its statement failed on the way back (the commit went
        // through and only the reply was lost); before it (a retry) when the statement itself
        // was refused, on a key or otherwise, and so appended nothing.
        let replayed =
            !matches!(err, Error::Database(_)) || crate::eventlog::key_recorded_before(err);
        let mut rest = Vec::with_capacity(batch.len());
        for queued in batch {
            // Each command checked against the recorded request: the same one committed (its reply
            // was lost), a different one under the same key is refused.
            let settled = queued.key.as_ref().and_then(|key| {
                let (first, fingerprint) = found.get(&key.key)?;
                Some(key.first_result(fingerprint.as_deref(), *first))
            });
            match settled {
                Some(Ok(first)) => {
                    let _ = queued.reply.send(Ok(Appended { replayed, ..first }));
                }
                Some(Err(err)) => {
                    let _ = queued.reply.send(Err(Rejected::Platform(err)));
                }
                None => rest.push(queued),
            }
        }
        rest
    }

    /// A command refused or left unchanged may be the retry of one that appended before: with a
    /// key recorded, its answer is the first result (or, for a different request under the same
    /// key, the refusal of that). One query for the batch, and none when no such command has a
    /// key.
    async fn replay_recorded_keys(
        &self,
        batch: &[Queued<D>],
        decided: Vec<Decided<D::Error>>,
    ) -> Vec<Decided<D::Error>> {
        let unchecked = |decided: &Decided<D::Error>| {
            matches!(decided, Decided::Refused(_) | Decided::Unchanged(_))
        };
        let keys: Vec<&CommandKey> = batch
            .iter()
            .zip(&decided)
            .filter(|(_, decided)| unchecked(decided))
            .filter_map(|(queued, _)| queued.key.as_ref())
            .collect();
        if keys.is_empty() {
            return decided;
        }
        let found = match self.log.command_results(&keys).await {
            Ok(found) => found,
            Err(err) => {
                // Whether these are retries cannot be told: a retry of the call can.
                let shared = err.to_string();
                return batch
                    .iter()
                    .zip(decided)
                    .map(
                        |(queued, decided)| match (&queued.key, unchecked(&decided)) {
                            (Some(_), true) => Decided::Failed(Error::Unavailable(shared.clone())),
                            _ => decided,
                        },
                    )
                    .collect();
            }
        };
        batch
            .iter()
            .zip(decided)
            .map(|(queued, decided)| {
                let recorded = queued
                    .key
                    .as_ref()
                    .filter(|_| unchecked(&decided))
                    .and_then(|key| {
                        let (first, fingerprint) = found.get(&key.key)?;
                        Some(key.first_result(fingerprint.as_deref(), *first))
                    });
                match recorded {
                    Some(result) => Decided::Replayed(result),
                    None => decided,
                }
            })
            .collect()
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
                && let Some(first) = batch[..index].iter().position(|earlier| {
                    earlier
                        .key
                        .as_ref()
                        .is_some_and(|earlier| earlier.key == key.key)
                })
            {
                let same = batch[first]
                    .key
                    .as_ref()
                    .is_some_and(|earlier| earlier.same_request(key));
                decided.push(if same {
                    Decided::SameAs(first)
                } else {
                    Decided::Failed(Error::RequestReused(key.key.clone()))
                });
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

    /// The stream's state at its last version, read from the log.
    async fn load(&self, stream_id: &str) -> Result<Loaded<D::State>> {
        let mut loaded = Loaded::<D::State>::default();
        let recorded = self.log.read_stream(stream_id, 0).await?;
        if let Some(newer) = recorded.iter().find(|event| !D::knows(&event.event_type)) {
            // Written by a newer version: deciding without it would be deciding on a wrong state.
            return Err(Error::UnknownEventType {
                stream_id: stream_id.to_owned(),
                event_type: newer.event_type.clone(),
            });
        }
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
            Decided::Replayed(Ok(first)) => Some(*first),
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
            Decided::Failed(err) | Decided::Replayed(Err(err)) => Err(Rejected::Platform(err)),
            Decided::Replayed(Ok(first)) => Ok(Appended {
                replayed: true,
                ..first
            }),
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

/// Whether the database was out of reach (or a failure shared from one that was).
fn unreachable(err: &Error) -> bool {
    match err {
        Error::Database(db) => crate::error::db_trouble(db) == crate::error::DbTrouble::Unreachable,
        Error::Unavailable(_) => true,
        _ => false,
    }
}

/// Answers every command of a batch with the failure that stopped it.
fn fail_all<D: Decider>(batch: Vec<Queued<D>>, err: Error) {
    let mut err = Some(err);
    let last = batch.len().saturating_sub(1);
    for (index, queued) in batch.into_iter().enumerate() {
        let this = if index == last {
            err.take()
        } else {
            err.as_ref().map(Error::shared)
        };
        let _ = queued
            .reply
            .send(Err(Rejected::Platform(this.unwrap_or(Error::ShuttingDown))));
    }
}

fn lock<T>(mutex: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
