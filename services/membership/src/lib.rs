//! The membership service: communities, members with profiles and handles, roles, invitations,
//! join requests, leaving, removal, bans and erasure. `domain` decides, the rest is I/O around it.

mod api;
mod codec;
pub mod domain;
mod error;
mod projections;
pub mod service;

pub use api::Api;
pub use service::{Membership, SERVICE, bus_projections, projections, start};
