//! Collecting what is wrong with a request, field by field, into one INVALID_ARGUMENT status with
//! `BadRequest` field violations, so a client learns every problem at once.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};
use uuid::Uuid;

/// The first day a date or time in a command may fall on: nothing Kith schedules happened before.
pub const EARLIEST: chrono::NaiveDate = match chrono::NaiveDate::from_ymd_opt(2000, 1, 1) {
    Some(date) => date,
    None => panic!("2000-01-01 is a date"),
};
/// The last day a date or time in a command may fall on: far enough for any plan a person makes,
/// near enough that every client's date type holds it.
pub const LATEST: chrono::NaiveDate = match chrono::NaiveDate::from_ymd_opt(2199, 12, 31) {
    Some(date) => date,
    None => panic!("2199-12-31 is a date"),
};

/// The problems found in one request.
#[derive(Debug, Default)]
pub struct Violations(Vec<(String, String)>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `field` is wrong, and why. A description is cut short if it is long (one
    /// that quotes what the caller sent, say), so that a reply never grows with the request.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        const MOST: usize = 200;
        let mut description = description.into();
        if let Some((cut, _)) = description.char_indices().nth(MOST) {
            description.truncate(cut);
            description.push('…');
        }
        self.0.push((field.into(), description));
    }

    /// The value of a parse, recording its error under `field`.
    pub fn check<T, E: std::fmt::Display>(
        &mut self,
        field: &str,
        parsed: Result<T, E>,
    ) -> Option<T> {
        match parsed {
            Ok(value) => Some(value),
            Err(err) => {
                self.add(field, err.to_string());
                None
            }
        }
    }

    /// A required UUID.
    pub fn uuid(&mut self, field: &str, value: &str) -> Option<Uuid> {
        if value.is_empty() {
            self.add(field, "is required");
            return None;
        }
        match value.parse::<Uuid>() {
            Ok(id) => Some(id),
            Err(_) => {
                self.add(field, "must be a UUID");
                None
            }
        }
    }

    /// The request id of a mutating call: 1 to 128 characters of one line, under the same text
    /// rules as every other field.
    pub fn request_id(&mut self, value: &str) -> Option<String> {
        if value.is_empty() {
            self.add(
                "request_id",
                "is required: a key unique per command, reused on retry",
            );
            return None;
        }
        self.check(
            "request_id",
            crate::text::parse(value, crate::text::TextRules::line(1, 128)),
        )
    }

    /// A message field that must be present.
    pub fn required<'a, T>(&mut self, field: &str, value: Option<&'a T>) -> Option<&'a T> {
        if value.is_none() {
            self.add(field, "is required");
        }
        value
    }

    /// A required time a person means (a session's start, an expiry): a valid protobuf
    /// Timestamp within [`EARLIEST`] and [`LATEST`].
    pub fn time(
        &mut self,
        field: &str,
        value: Option<&prost_types::Timestamp>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        let value = self.required(field, value)?;
        let time = self.timestamp(field, value)?;
        if time.date_naive() < EARLIEST || time.date_naive() > LATEST {
            self.add(
                field,
                format!("must be between {EARLIEST} and {LATEST} (UTC)"),
            );
            return None;
        }
        Some(time)
    }

    /// Any valid protobuf Timestamp (a filter's bound, a moment to look back at): seconds from
    /// 0001-01-01 to 9999-12-31, nanos from 0 to 999,999,999.
    pub fn timestamp(
        &mut self,
        field: &str,
        value: &prost_types::Timestamp,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        let time = crate::wire::time_of(Some(value));
        if time.is_none() {
            self.add(
                field,
                "is not a valid timestamp (seconds from 0001-01-01 to 9999-12-31, nanos 0 to 999999999)",
            );
        }
        time
    }

    /// A calendar date a person means (a cohort's first or last day), within [`EARLIEST`] and
    /// [`LATEST`].
    pub fn date(
        &mut self,
        field: &str,
        year: i32,
        month: u32,
        day: u32,
    ) -> Option<chrono::NaiveDate> {
        let Some(date) = chrono::NaiveDate::from_ymd_opt(year, month, day) else {
            self.add(
                field,
                format!("{year}-{month:02}-{day:02} is not a calendar date"),
            );
            return None;
        };
        if date < EARLIEST || date > LATEST {
            self.add(field, format!("must be between {EARLIEST} and {LATEST}"));
            return None;
        }
        Some(date)
    }

    /// Ok when nothing was wrong, otherwise the INVALID_ARGUMENT status.
    pub fn finish(self) -> Result<(), Status> {
        if self.0.is_empty() {
            return Ok(());
        }
        let summary = self
            .0
            .iter()
            .map(|(field, description)| format!("{field} {description}"))
            .collect::<Vec<_>>()
            .join("; ");
        let violations = self
            .0
            .into_iter()
            .map(|(field, description)| FieldViolation::new(field, description))
            .collect::<Vec<_>>();
        let mut details = ErrorDetails::with_bad_request(violations);
        details.set_error_info(
            "INVALID_FIELD",
            crate::grpc::ERROR_DOMAIN,
            std::collections::HashMap::new(),
        );
        Err(Status::with_error_details(
            Code::InvalidArgument,
            format!("invalid request: {summary}"),
            details,
        ))
    }
}

/// Page size: 0 means `default`; above `max` is refused.
pub fn page_size(violations: &mut Violations, value: u32, default: u32, max: u32) -> i64 {
    if value > max {
        violations.add("page_size", format!("must be at most {max}"));
    }
    i64::from(if value == 0 { default } else { value.min(max) })
}
