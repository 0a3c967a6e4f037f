//! The notifications service over real gRPC, beside membership, cohorts and messaging on one
//! server (as `kith up` runs them), on a real PostgreSQL and NATS.

mod batch;
mod delivery;
mod explain;
mod feed;
mod helpers;
mod places;
mod replay;
mod validation;
