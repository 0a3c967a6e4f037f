//! The messaging domain as pure deciders, with no I/O and no clock:
//!
//! - a **conversation** (a cohort's, or a direct one between 2 to 9 members of a community):
//!   threads and replies, edits, deletions, hiding, pins, reactions, reports and slow mode;
//! - a **reader** (one member): read cursors, follows and the private-receipts setting.
//!
//! Who may read and write a conversation is not the conversation's to know: the gRPC layer learns
//! it from membership's and cohorts' events and hands it over with each command as [`Access`].

mod command;
pub mod conversation;
mod error;
mod event;
pub mod reader;
mod values;

#[cfg(test)]
mod tests;

pub use command::{Access, Action, Command, Origin, ReaderAction, ReaderCommand};
pub use conversation::{Conversation, ConversationKind, Message, Started};
pub use error::DomainError;
pub use event::{Event, ReaderEvent};
pub use reader::{Reader, ThreadKey};
pub use values::*;
