//! Contract tests of the platform on real PostgreSQL and NATS JetStream. Each test makes its own
//! database and stream names, so they run in parallel and leave nothing behind.

mod auth;
mod command_path;
mod consumer;
mod eventlog;
mod helpers;
mod leader;
mod permissions;
mod rebuild;
mod relay;
mod repository;
mod sealing;
