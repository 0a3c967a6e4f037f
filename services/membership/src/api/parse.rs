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
