//! Cohort refusals as the platform maps them to gRPC statuses.

use kith_platform::command::{ErrorKind, Refusal};

use crate::domain::DomainError;

impl Refusal for DomainError {
    fn kind(&self) -> ErrorKind {
        DomainError::kind(self)
    }

    fn reason(&self) -> &'static str {
        DomainError::reason(self)
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            DomainError::ExpiryNotInFuture | DomainError::ExpiryTooFar => Some("expires_at"),
            DomainError::SessionInPast | DomainError::SessionOutOfRange => Some("starts_at"),
            DomainError::InvalidOccurrences(_) => Some("weekly_occurrences"),
            _ => None,
        }
    }
}
