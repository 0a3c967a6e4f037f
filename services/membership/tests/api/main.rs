//! The membership service over real gRPC, against real PostgreSQL and NATS. One server per test,
//! each with its own database and NATS namespace.

mod authz;
mod concurrency;
mod erasure;
mod flows;
mod helpers;
mod own_views;
mod rebuild;
mod validation;
