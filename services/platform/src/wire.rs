//! Small conversions every service's codec and API share: protobuf timestamps, ids stored as
//! strings, and decoding a stored event's payload.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::eventlog::RecordedEvent;
use crate::{Error, Result};

/// The earliest and latest instants a `google.protobuf.Timestamp` may hold
/// (0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z); clients refuse anything else.
pub const TIMESTAMP_MIN_SECONDS: i64 = -62_135_596_800;
pub const TIMESTAMP_MAX_SECONDS: i64 = 253_402_300_799;

/// The wire form of a time. A time outside what a Timestamp may hold (only an event written
/// before the rules of [`crate::validation`] can carry one) is clamped to the nearest end, so
/// that a reply never holds a value its client cannot parse.
pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    let seconds = at.timestamp();
    if seconds > TIMESTAMP_MAX_SECONDS {
        return prost_types::Timestamp {
            seconds: TIMESTAMP_MAX_SECONDS,
            nanos: 999_999_999,
        };
    }
    if seconds < TIMESTAMP_MIN_SECONDS {
        return prost_types::Timestamp {
            seconds: TIMESTAMP_MIN_SECONDS,
            nanos: 0,
        };
    }
    prost_types::Timestamp {
        seconds,
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// A time from its wire form; `None` when absent or not a valid protobuf Timestamp.
pub fn time_of(at: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    let at = at?;
    if !(TIMESTAMP_MIN_SECONDS..=TIMESTAMP_MAX_SECONDS).contains(&at.seconds)
        || !(0..1_000_000_000).contains(&at.nanos)
    {
        return None;
    }
    DateTime::from_timestamp(at.seconds, u32::try_from(at.nanos).ok()?)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_valid_protobuf_timestamps_are_read_and_replies_never_hold_others() {
        let at = |seconds, nanos| prost_types::Timestamp { seconds, nanos };
        assert!(time_of(Some(&at(TIMESTAMP_MAX_SECONDS, 999_999_999))).is_some());
        assert!(time_of(Some(&at(TIMESTAMP_MIN_SECONDS, 0))).is_some());
        assert!(time_of(Some(&at(TIMESTAMP_MAX_SECONDS + 1, 0))).is_none());
        assert!(time_of(Some(&at(TIMESTAMP_MIN_SECONDS - 1, 0))).is_none());
        assert!(time_of(Some(&at(0, -1))).is_none());
        assert!(time_of(Some(&at(0, 1_000_000_000))).is_none());

        // chrono holds years beyond 9999; the wire form does not.
        let year_10000 = DateTime::from_timestamp(TIMESTAMP_MAX_SECONDS + 86_400, 5).unwrap();
        assert_eq!(
            timestamp(year_10000),
            at(TIMESTAMP_MAX_SECONDS, 999_999_999)
        );
        let now = DateTime::from_timestamp(1_900_000_000, 7).unwrap();
        assert_eq!(time_of(Some(&timestamp(now))), Some(now));
    }
}
