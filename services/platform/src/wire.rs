//! Small conversions every service's codec and API share: protobuf timestamps, ids stored as
//! strings, and decoding a stored event's payload.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::eventlog::RecordedEvent;
use crate::{Error, Result};

/// The wire form of a time.
pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// A time from its wire form; `None` when absent or out of range.
pub fn time_of(at: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    at.and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?))
}

/// A time stored in an event; missing or bad is a codec error.
pub fn stored_time(at: Option<&prost_types::Timestamp>) -> Result<DateTime<Utc>> {
    time_of(at).ok_or_else(|| Error::Codec("missing or bad timestamp".into()))
}

/// An id stored in an event.
pub fn stored_id(value: &str) -> Result<Uuid> {
    value
        .parse()
        .map_err(|_| Error::Codec(format!("bad id {value:?} in event")))
}

/// An optional id stored in an event (empty when absent).
pub fn stored_opt_id(value: &str) -> Result<Option<Uuid>> {
    if value.is_empty() {
        Ok(None)
    } else {
        stored_id(value).map(Some)
    }
}

/// Decodes a stored event's payload as `M`.
pub fn decode_payload<M: prost::Message + Default>(event: &RecordedEvent) -> Result<M> {
    M::decode(event.payload.as_slice()).map_err(|err| {
        Error::Codec(format!(
            "{} at position {}: {err}",
            event.event_type, event.position
        ))
    })
}

/// Whether this build knows the event type `full_name` (a message of the Kith protos it was
/// built with). An unknown type was written by a newer version of some service.
pub fn is_known_event_type(full_name: &str) -> bool {
    use prost::Message;
    use std::collections::HashSet;
    use std::sync::OnceLock;
    static KNOWN: OnceLock<HashSet<String>> = OnceLock::new();
    KNOWN
        .get_or_init(|| {
            let set = prost_types::FileDescriptorSet::decode(kith_proto::FILE_DESCRIPTOR_SET)
                .unwrap_or_default();
            set.file
                .iter()
                .flat_map(|file| {
                    let package = file.package().to_owned();
                    file.message_type
                        .iter()
                        .map(move |message| format!("{package}.{}", message.name()))
                })
                .collect()
        })
        .contains(full_name)
}
