//! What every service's gRPC layer does around a command: the idempotency key and event
//! metadata of a call, the reply's `Committed`, and the one mapping from refusals to statuses.

use tonic::{Request, Status};
use uuid::Uuid;

use crate::aggregate::Rejected;
use crate::eventlog::{Appended, CommandKey, Metadata};
use crate::grpc::status_from_platform;
use crate::telemetry;
use kith_proto::platform::Committed;

/// The class of a domain refusal, one per gRPC status code a domain can lead to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The thing acted on does not exist.
    NotFound,
    /// The thing to create exists already, or the state asked for holds already.
    AlreadyExists,
    /// The actor may not do this.
    PermissionDenied,
    /// The aggregate is not in a state that allows this.
    FailedPrecondition,
    /// An argument is out of range, whatever the state.
    InvalidArgument,
}

/// A domain's refusal: its message says what is wrong, its kind picks the status code.
pub trait Refusal: std::fmt::Display {
    fn kind(&self) -> ErrorKind;
    /// For an argument the domain refused (a range only the decider can check, say an expiry
    /// against the command's clock), the request field it came from.
    fn field(&self) -> Option<&'static str> {
        None
    }
}

/// The status a domain refusal answers with.
pub fn status_from_refusal(err: &impl Refusal) -> Status {
    let message = err.to_string();
    match err.kind() {
        ErrorKind::NotFound => Status::not_found(message),
        ErrorKind::AlreadyExists => Status::already_exists(message),
        ErrorKind::PermissionDenied => Status::permission_denied(message),
        ErrorKind::FailedPrecondition => Status::failed_precondition(message),
        ErrorKind::InvalidArgument => match err.field() {
            // The same shape as every other bad input: BadRequest naming the field.
            Some(field) => {
                let mut violations = crate::validation::Violations::new();
                violations.add(field, message.clone());
                violations
                    .finish()
                    .err()
                    .unwrap_or_else(|| Status::invalid_argument(message))
            }
            None => Status::invalid_argument(message),
        },
    }
}

/// The status of a command that did not append.
pub fn status_from_rejected<E: Refusal>(rejected: &Rejected<E>) -> Status {
    match rejected {
        Rejected::Domain(err) => status_from_refusal(err),
        Rejected::Platform(err) => status_from_platform(err),
    }
}

/// Idempotency keys are scoped per caller, so two callers cannot collide on a request id.
fn key_text(caller: Uuid, request_id: &str) -> String {
    format!("{caller}:{request_id}")
}

/// The idempotency key of a call: the caller's request id, with a fingerprint of the request (its
/// message type and every field, as encoded) so that the same id sent with a different request is
/// refused rather than answered with the first one's result (AIP-155).
pub fn command_key<T: prost::Message + prost::Name>(
    request: &Request<T>,
    caller: Uuid,
    request_id: &str,
) -> CommandKey {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    hash.update(T::full_name().as_bytes());
    hash.update([0]);
    hash.update(request.get_ref().encode_to_vec());
    CommandKey::new(key_text(caller, request_id), hash.finalize().to_vec())
}

/// An id derived from the caller's request id, stable across retries of the same request.
pub fn derived_id(namespace: &Uuid, caller: Uuid, request_id: &str, kind: &str) -> Uuid {
    Uuid::new_v5(
        namespace,
        format!("{kind}:{}", key_text(caller, request_id)).as_bytes(),
    )
}

/// The metadata stored with a command's events: who, which request, and the trace it belongs to
/// (from the call's `traceparent`, or the current span's).
pub fn metadata<T>(
    request: &Request<T>,
    namespace: &Uuid,
    caller: Uuid,
    request_id: &str,
) -> Metadata {
    let traceparent = request
        .metadata()
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .or_else(telemetry::current_traceparent);
    Metadata {
        actor: Some(caller.to_string()),
        command_id: Some(request_id.to_owned()),
        correlation_id: Some(Uuid::new_v5(
            namespace,
            key_text(caller, request_id).as_bytes(),
        )),
        traceparent,
        ..Default::default()
    }
}

/// The reply's record of where a command landed.
pub fn committed(appended: Appended) -> Committed {
    Committed {
        version: appended.version,
        position: appended.position,
        replayed: appended.replayed,
    }
}
