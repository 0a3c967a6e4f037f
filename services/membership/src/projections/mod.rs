//! The membership read models, fed from the service's own log.

mod directory;

pub(crate) use directory::{Directory, MemberStatusCode};
