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
    /// A projection failed to apply an event.
    #[error("projection {projection}: {message}")]
    Projection { projection: String, message: String },
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
}

impl Error {
    /// Wraps any NATS error, which async-nats spreads over many types.
    pub fn nats(err: impl std::fmt::Display) -> Self {
        Self::Nats(err.to_string())
    }
}

/// The platform's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
