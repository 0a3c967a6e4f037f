//! Read models. Access (who reads which conversation) comes from membership's and cohorts'
//! streams on the bus.

pub mod access;
pub mod messages;

pub use access::{Members, Places};
pub use messages::Messages;
