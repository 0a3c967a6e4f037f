//! The pure decisions of notifications, no I/O: which rules match an event for whom
//! ([`rules`]), what a member's preferences make of each match ([`decision`]), and when quiet
//! hours end and digests go out in the member's own time zone ([`schedule`]).

pub mod contact;
pub mod decision;
pub mod member;
pub mod preferences;
pub mod rules;
pub mod schedule;
mod values;

pub use contact::{Contact, EmailAddress, WebhookUrl};
pub use decision::{ChannelDecision, Decision, Place, decide};
pub use member::{Member, MemberCommand, MemberEvent};
pub use preferences::{Digest, LevelSource, Preferences, QuietHours, Scope};
pub use rules::{Candidate, Edit, Matched, Post, collapse, edit_candidates, post_candidates};
pub use values::{Channel, Kind, Level};

#[cfg(test)]
mod tests;
