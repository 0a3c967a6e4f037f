//! The one mapping from membership refusals to gRPC statuses.

use kith_platform::aggregate::Rejected;
use kith_platform::grpc::status_from_platform;
use tonic::Status;

use crate::domain::{DomainError, ErrorKind};

/// The status a domain refusal answers with; its message says what is wrong.
pub(crate) fn status_from_domain(err: &DomainError) -> Status {
    let message = err.to_string();
    match err.kind() {
        ErrorKind::NotFound => Status::not_found(message),
        ErrorKind::AlreadyExists => Status::already_exists(message),
        ErrorKind::PermissionDenied => Status::permission_denied(message),
        ErrorKind::FailedPrecondition => Status::failed_precondition(message),
        ErrorKind::InvalidArgument => Status::invalid_argument(message),
    }
}

/// The status of a command that did not append.
pub(crate) fn status_from_rejected(rejected: &Rejected<DomainError>) -> Status {
    match rejected {
        Rejected::Domain(err) => status_from_domain(err),
        Rejected::Platform(err) => status_from_platform(err),
    }
}
