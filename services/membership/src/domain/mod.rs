//! The membership domain: communities, their members and roles, invitations, join requests, bans
//! and erasure, as a pure decider (`initial`, `decide`, `evolve`) over parsed values. Nothing here
//! does I/O or reads a clock; the gRPC layer parses wire types into these values, and the event
//! store seals and unseals the personal fields of [`Event`]s around it.

mod command;
mod decide;
mod error;
mod event;
mod role;
mod state;
mod values;

#[cfg(test)]
mod tests;

pub use command::{Action, Command};
pub use decide::{decide, evolve, initial};
pub use error::{DomainError, ErrorKind};
pub use event::Event;
pub use role::{JoinPath, Role};
pub use state::{Community, Invitation, JoinRequest, Member, MemberStatus};
pub use values::*;
