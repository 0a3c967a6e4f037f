//! Wire requests to domain values, with a field violation for everything wrong.

use kith_platform::validation::Violations;
use kith_proto::membership as pb;

use crate::codec::role_from_pb;
use crate::domain::{Answer, Bio, DisplayName, Handle, MAX_ANSWERS, Profile, Role};

/// A profile from its wire form; violations are named under `field`.
pub(super) fn profile(
    v: &mut Violations,
    field: &str,
    input: Option<&pb::ProfileInput>,
) -> Option<Profile> {
    let input = v.required(field, input)?;
    let display_name = v.check(
        &format!("{field}.display_name"),
        DisplayName::parse(&input.display_name),
    );
    let handle = v.check(&format!("{field}.handle"), Handle::parse(&input.handle));
    let bio = v.check(&format!("{field}.bio"), Bio::parse(&input.bio));
    Some(Profile {
        display_name: display_name?,
        handle: handle?,
        bio: bio?,
    })
}

/// A role that must be specified.
pub(super) fn role(v: &mut Violations, field: &str, value: i32) -> Option<Role> {
    let role = role_from_pb(value);
    if role.is_none() {
        v.add(
            field,
            "must be one of OWNER, HOST, COACH, MODERATOR, MEMBER",
        );
    }
    role
}

/// Screening answers: at most five, each 1 to 1000 characters.
pub(super) fn answers(v: &mut Violations, values: &[String]) -> Vec<Answer> {
    if values.len() > MAX_ANSWERS {
        v.add(
            "answers",
            format!("at most {MAX_ANSWERS} answers are allowed"),
        );
    }
    values
        .iter()
        .enumerate()
        .filter_map(|(i, answer)| v.check(&format!("answers[{i}]"), Answer::parse(answer)))
        .collect()
}

/// A `min_position`: zero or a position from an earlier reply.
pub(super) fn min_position(v: &mut Violations, value: i64) -> i64 {
    if value < 0 {
        v.add("min_position", "must not be negative");
    }
    value
}

/// Page tokens are opaque to clients; inside they are the position to continue after.
pub(super) fn page_token(v: &mut Violations, token: &str) -> Option<i64> {
    if token.is_empty() {
        return None;
    }
    let position = hex::decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix("p:").and_then(|p| p.parse::<i64>().ok()));
    if position.is_none() {
        v.add("page_token", "is not a token from an earlier reply");
    }
    position
}

/// The token that continues after `position`.
pub(super) fn next_page_token(position: i64) -> String {
    hex::encode(format!("p:{position}"))
}
