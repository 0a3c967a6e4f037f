//! The cohorts domain: a cohort's lifecycle, facilitators, seats with a hard capacity, the
//! waitlist and its automatic promotion, invitations that hold seats until they expire, and live
//! sessions with RSVPs and attendance, as a pure decider (`initial`, `decide`, `evolve`). Nothing
//! here does I/O or reads a clock: the gRPC layer parses wire types into these values and brings
//! in what the service knows of the community (roles) with each command.

mod command;
mod decide;
mod error;
mod event;
mod state;
mod values;

#[cfg(test)]
mod tests;

pub use command::{Action, Command, SYSTEM};
pub use decide::{decide, evolve, initial};
pub use error::{DomainError, ErrorKind};
pub use event::{Event, SeatedBy};
pub use state::{Cohort, Invitation, Session};
pub use values::*;
