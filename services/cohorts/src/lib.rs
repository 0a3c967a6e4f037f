//! The cohorts service: cohorts inside a community with a hard capacity, a waitlist promoted in
//! order, invitations that hold seats, facilitators, a lifecycle, and live sessions with RSVPs
//! and attendance. It learns community membership from the membership service's events only.
//! `domain` decides, the rest is I/O around it.

mod api;
mod codec;
pub mod domain;
mod error;
mod projections;
pub mod reactions;
pub mod service;

pub use api::Api;
pub use service::{Cohorts, SERVICE, bus_projections, projections, start};
