//! The cohorts service over real gRPC, against real PostgreSQL and NATS, beside a real membership
//! service whose events reach cohorts through JetStream. One server per test, each with its own
//! database and NATS namespace.

mod batch_apply;
mod capacity;
mod cross_service;
mod error_rule;
mod faults;
mod flows;
mod helpers;
mod rebuild;
mod sessions;
mod validation;
