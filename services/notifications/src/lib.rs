//! The notifications service: each member's feed of what needs their attention, decided from
//! membership's, cohorts' and messaging's events by rules and the member's preferences, with the
//! reason for every decision kept in one ledger so that "why was I (not) notified" has an answer.
//! `domain` decides, the rest is I/O around it.

mod api;
pub mod codec;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod projections;
pub mod reminders;
pub mod service;
mod unsubscribe;

pub use api::Api;
pub use config::DeliveryArgs;
pub use service::{
    GRPC_SERVICE, Notifications, SERVICE, bus_projections, projections, start, start_with,
};
