//! Cohort refusals as the platform maps them to gRPC statuses.

use kith_platform::command::{ErrorKind, Refusal};

use crate::domain::DomainError;

impl Refusal for DomainError {
    fn kind(&self) -> ErrorKind {
        DomainError::kind(self)
    }
}
