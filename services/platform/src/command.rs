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
    /// A quota of the actor's is used up for now (slow mode); it passes with time.
    ResourceExhausted,
}

/// A domain's refusal: its message says what is wrong, its kind picks the status code, and its
/// reason (a stable `UPPER_SNAKE_CASE` name) goes to the caller in a `google.rpc.ErrorInfo`, so
/// that callers branch on the reason, never on the message.
///
/// The rule for the kind, the same in every service: a refusal that rests on **who the caller
/// is** (not a member, banned, lacking the role) is `PermissionDenied`; one that rests on **the
/// state of the resource** (full, closed, expired, the member acted on has left) is
/// `FailedPrecondition`; a thing that does not exist is `NotFound`; a thing or state that exists
/// already is `AlreadyExists`; an argument out of range whatever the state is `InvalidArgument`.
pub trait Refusal: std::fmt::Display {
    fn kind(&self) -> ErrorKind;
    /// The stable, machine-readable reason, e.g. `COHORT_FULL` or `NOT_A_MEMBER`.
    fn reason(&self) -> &'static str;
    /// For an argument the domain refused (a range only the decider can check, say an expiry
    /// against the command's clock), the request field it came from.
    fn field(&self) -> Option<&'static str> {
        None
    }
    /// For a refusal that passes with time, how long to wait: sent as a `google.rpc.RetryInfo`.
    fn retry_after(&self) -> Option<std::time::Duration> {
        None
    }
}

/// The status a domain refusal answers with.
pub fn status_from_refusal(err: &impl Refusal) -> Status {
    refusal_status(
        err.kind(),
        err.reason(),
        err.to_string(),
        err.field(),
        err.retry_after(),
    )
}

/// A refusal's status: the code of `kind`, the message, a `google.rpc.ErrorInfo` with `reason`,
/// and for an argument a `BadRequest` naming `field`. Query handlers that refuse on their own
/// (a caller who may not read) answer through this too.
pub fn refusal(
    kind: ErrorKind,
    reason: &str,
    message: impl Into<String>,
    field: Option<&str>,
) -> Status {
    refusal_status(kind, reason, message.into(), field, None)
}

fn refusal_status(
    kind: ErrorKind,
    reason: &str,
    message: String,
    field: Option<&str>,
    retry_after: Option<std::time::Duration>,
) -> Status {
    use tonic::Code;
    use tonic_types::{ErrorDetails, FieldViolation, StatusExt};
    let code = match kind {
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::ResourceExhausted => Code::ResourceExhausted,
    };
    let mut details = match (kind, field) {
        (ErrorKind::InvalidArgument, Some(field)) => {
            ErrorDetails::with_bad_request(vec![FieldViolation::new(field, message.clone())])
        }
        _ => ErrorDetails::new(),
    };
    if let Some(wait) = retry_after {
        details.set_retry_info(Some(wait));
    }
    details.set_error_info(
        reason,
        crate::grpc::ERROR_DOMAIN,
        std::collections::HashMap::new(),
    );
    Status::with_error_details(code, message, details)
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

/// The metadata stored with a command's events: who, which request, and the trace it belongs to.
/// The trace context is the current span's (the call's, which continues the caller's), so what
/// the events cause elsewhere hangs off this server's span; when spans are not recorded, the
/// caller's `traceparent` is passed on as it came, so the trace still joins up downstream.
pub fn metadata<T>(
    request: &Request<T>,
    namespace: &Uuid,
    caller: Uuid,
    request_id: &str,
) -> Metadata {
    let traceparent = telemetry::current_traceparent().or_else(|| {
        request
            .metadata()
            .get("traceparent")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    });
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
