//! The platform's error type. Services map it to `tonic::Status` through
//! [`crate::grpc::status_from_platform`], so every service answers the same way.

/// Anything the platform can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another writer appended to the stream first; reload and decide again.
    #[error("stream {stream_id} moved past expected version {expected}")]
    Conflict { stream_id: String, expected: i64 },
    /// The database failed or refused.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// NATS or JetStream failed.
    #[error("nats: {0}")]
    Nats(String),
    /// An event could not be encoded or decoded.
    #[error("codec: {0}")]
    Codec(String),
    /// Configuration that cannot work.
    #[error("config: {0}")]
    Config(String),
    /// A position that no event of this log has.
    #[error("no event at position {0}")]
    UnknownPosition(i64),
    /// Waited for a position past the deadline.
    #[error("timed out waiting for position {0}")]
    WaitTimeout(i64),
    /// A transient failure worth retrying, passed on to every command it touched.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The process is shutting down.
    #[error("shutting down")]
    ShuttingDown,
    /// Work that cannot go on until an operator acts; the message says what to do.
    #[error("{0}")]
    Stuck(String),
    /// An event type this build does not know, written by a newer version of a service.
    #[error("stream {stream_id} holds an event of type {event_type}, unknown to this version")]
    UnknownEventType {
        stream_id: String,
        event_type: String,
    },
    /// A read waited for a projection that is stopped at an event it cannot apply.
    #[error("projection {projection} is stopped at {at}: {reason}")]
    ProjectionStalled {
        projection: String,
        /// The event: its log position or stream sequence, and id.
        at: String,
        reason: String,
    },
    /// A request id already used by the same caller for a different request.
    #[error("request id {0} was already used for a different request")]
    RequestReused(String),
    /// An event larger than the bus can carry.
    #[error("an event of {bytes} bytes is more than the {limit} bytes an event may have")]
    EventTooLarge { bytes: usize, limit: usize },
}

/// What kind of trouble a database error is, for callers deciding whether to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbTrouble {
    /// The database could not be reached or refused the connection (down, restarting, out of
    /// connection slots, pool exhausted): retry later.
    Unreachable,
    /// The transaction lost a serialization or deadlock race: retry now.
    Contention,
    /// Anything else: a bug or bad data, not worth retrying.
    Other,
}

/// Classifies a database error by what a caller can do about it.
pub fn db_trouble(err: &sqlx::Error) -> DbTrouble {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => DbTrouble::Unreachable,
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // serialization_failure, deadlock_detected
            Some("40001" | "40P01") => DbTrouble::Contention,
            // connection exceptions, too many connections, operator intervention (shutdown,
            // crash, cannot connect now), query canceled by a timeout
            Some(code)
                if code.starts_with("08")
                    || code.starts_with("57P")
                    || code == "53300"
                    || code == "53000"
                    || code == "57014" =>
            {
                DbTrouble::Unreachable
            }
            _ => DbTrouble::Other,
        },
        _ => DbTrouble::Other,
    }
}

impl Error {
    /// Wraps any NATS error, which async-nats spreads over many types.
    pub fn nats(err: impl std::fmt::Display) -> Self {
        Self::Nats(err.to_string())
    }

    /// The same failure for another command that shared it (errors are not `Clone`): the kinds
    /// a caller acts on are kept, the rest become [`Error::Unavailable`] with the message.
    pub fn shared(&self) -> Self {
        match self {
            Self::Conflict {
                stream_id,
                expected,
            } => Self::Conflict {
                stream_id: stream_id.clone(),
                expected: *expected,
            },
            Self::UnknownEventType {
                stream_id,
                event_type,
            } => Self::UnknownEventType {
                stream_id: stream_id.clone(),
                event_type: event_type.clone(),
            },
            Self::EventTooLarge { bytes, limit } => Self::EventTooLarge {
                bytes: *bytes,
                limit: *limit,
            },
            Self::ShuttingDown => Self::ShuttingDown,
            Self::RequestReused(key) => Self::RequestReused(key.clone()),
            other => Self::Unavailable(other.to_string()),
        }
    }

    /// Whether trying again later may succeed (the database or the bus was unreachable, a race
    /// was lost), as opposed to a failure that repeats.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Database(err) => db_trouble(err) != DbTrouble::Other,
            Self::Conflict { .. }
            | Self::Nats(_)
            | Self::Unavailable(_)
            | Self::ShuttingDown
            | Self::WaitTimeout(_)
            | Self::ProjectionStalled { .. }
            | Self::UnknownEventType { .. } => true,
            _ => false,
        }
    }
}

/// The platform's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
