//! The messaging service over real gRPC, against real PostgreSQL and NATS, beside real
//! membership and cohorts services whose events reach messaging through JetStream. One server
//! per test, each with its own database and NATS namespace.

mod access;
mod flows;
mod helpers;
mod live;
mod mentions;
mod model;
mod moderation;
mod paging;
mod rebuild;
mod search;
mod validation;
