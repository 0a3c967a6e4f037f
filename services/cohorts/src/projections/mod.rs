//! The cohorts service's read models: what it knows of communities (from membership's events)
//! and the cohorts themselves (from its own log).

pub(crate) mod community;
pub(crate) mod roster;

pub(crate) use community::{Communities, Touch, Touched};
pub(crate) use roster::Roster;
