//! The messaging service: each cohort's conversation (threads, replies, edits with their
//! history, deletions, pins, reactions, mentions), direct messages between two to nine members,
//! read cursors and unread counts, and moderation (hide, report, slow mode). It learns who may
//! read what from membership's and cohorts' events only. `domain` decides, the rest is I/O
//! around it.

mod api;
pub mod codec;
pub mod domain;
pub mod projections;
pub mod service;

pub use api::Api;
pub use service::{Messaging, SERVICE, bus_projections, projections, start};
