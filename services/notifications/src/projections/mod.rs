//! Read models and the rules' consumers.
//!
//! - [`Members`] (membership's stream), [`Places`] (cohorts') and [`Conversations`]
//!   (messaging's) keep what the rules need to know of who is where, and each applies the rules
//!   to its stream's events: an event's matches become one `NotificationsDecided` event in this
//!   service's log, appended in the transaction that advances the consumer's checkpoint ([`route`]), so a
//!   redelivered event decides nothing twice. Live, a run of posts also writes its decisions
//!   into the ledger's tables in that transaction ([`route::Recording`]), which spares the feed
//!   a stage.
//! - [`Ledger`] (this service's own log) is the feed, every decision with its reasons, each
//!   channel's status and the members' preferences. It steps over the decisions the live rules
//!   already wrote, and applies all of them in a rebuild.

pub mod audience;
pub mod conversations;
pub mod ledger;
pub mod route;

pub use audience::{Members, Places};
pub use conversations::Conversations;
pub use ledger::Ledger;
