//! What every Kith service stands on: the append-only event log and its tailing reader, the relay
//! to NATS JetStream, consumers and projections, sealing of personal data, auth, telemetry, the
//! gRPC server bootstrap and configuration. Each service crate reuses these; none re-implements
//! them.

pub mod aggregate;
pub mod auth;
pub mod bus;
pub mod command;
pub mod config;
pub mod db;
pub mod error;
pub mod eventlog;
pub mod grpc;
pub mod lag;
pub mod language;
pub mod leader;
pub mod local_time;
pub mod metrics;
pub mod paging;
pub mod projection;
pub mod pseudonym;
pub mod relay;
pub mod runtime;
pub mod sealing;
pub mod telemetry;
pub mod testing;
pub mod text;
pub mod validation;
pub mod wire;

pub use error::{Error, Result};
