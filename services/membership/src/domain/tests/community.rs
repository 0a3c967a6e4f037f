//! Creating, updating and archiving a community, and profiles.

use super::super::{Action, DomainError, Event, JoinPath, Language, MemberStatus, Role};
use super::{
    CO_OWNER, COACH, HOST, MEMBER, OUTSIDER, OWNER, by, created, description, given, joined, name,
    plus, profile, staffed,
};

fn update() -> Action {
    Action::UpdateCommunity {
        name: name("Trail Runners"),
        description: description("We run off-road."),
    }
}

#[test]
fn creating_a_community_makes_the_founder_its_first_owner() {
    let action = Action::CreateCommunity {
        name: name("Runners"),
        description: description("We run."),
        founder: profile("owner"),
    };
    let after = given(&[]).when(by(OWNER, action)).then(&created());
    assert!(after.state.is_created());
    assert_eq!(after.state.role_of(OWNER), Some(Role::Owner));
    assert_eq!(after.state.owners(), 1);
    let founder = after.state.member(OWNER).unwrap();
    assert_eq!(founder.path, JoinPath::Founder);
    assert_eq!(founder.status, MemberStatus::Active);
}

#[test]
fn a_community_cannot_be_created_twice() {
    let action = Action::CreateCommunity {
        name: name("Runners"),
        description: description(""),
        founder: profile("other"),
    };
    given(&created())
        .when(by(OUTSIDER, action))
        .then_error(DomainError::CommunityExists);
}

#[test]
fn commands_on_a_community_not_created_are_refused() {
    given(&[])
        .when(by(OWNER, Action::Leave))
        .then_error(DomainError::CommunityNotFound);
    given(&[])
        .when(by(OWNER, update()))
        .then_error(DomainError::CommunityNotFound);
}

#[test]
fn commands_on_an_archived_community_are_refused() {
    let archived = plus(staffed(), [Event::CommunityArchived { archived_by: OWNER }]);
    given(&archived)
        .when(by(OWNER, update()))
        .then_error(DomainError::CommunityArchived);
    given(&archived)
        .when(by(MEMBER, Action::Leave))
        .then_error(DomainError::CommunityArchived);
}

#[test]
fn a_member_may_still_be_erased_after_the_community_is_archived() {
    let archived = plus(staffed(), [Event::CommunityArchived { archived_by: OWNER }]);
    given(&archived)
        .when(by(MEMBER, Action::EraseMember { member_id: MEMBER }))
        .then(&[Event::MemberErased {
            member_id: MEMBER,
            erased_by: MEMBER,
            was_member: true,
        }]);
}

#[test]
fn an_owner_may_update_the_community() {
    let after = given(&staffed())
        .when(by(OWNER, update()))
        .then(&[Event::CommunityUpdated {
            name: name("Trail Runners"),
            description: description("We run off-road."),
            updated_by: OWNER,
        }]);
    assert_eq!(after.state.name(), Some(&name("Trail Runners")));
}

#[test]
fn a_host_may_update_the_community() {
    given(&staffed())
        .when(by(HOST, update()))
        .then(&[Event::CommunityUpdated {
            name: name("Trail Runners"),
            description: description("We run off-road."),
            updated_by: HOST,
        }]);
}

#[test]
fn a_coach_cannot_update_the_community() {
    given(&staffed())
        .when(by(COACH, update()))
        .then_error(DomainError::Forbidden(
            "only owners and hosts may update the community".to_owned(),
        ));
}

#[test]
fn an_outsider_cannot_update_the_community() {
    given(&staffed())
        .when(by(OUTSIDER, update()))
        .then_error(DomainError::CallerNotAMember);
}

fn set_language(code: &str) -> Action {
    Action::SetLanguage {
        language: Language::parse(code).expect("a supported code"),
    }
}

#[test]
fn an_owner_or_a_host_may_set_the_language_and_setting_it_again_appends_nothing() {
    let after = given(&staffed())
        .when(by(HOST, set_language("DE ")))
        .then(&[Event::CommunityLanguageSet {
            language: Language::from_stored("de"),
            set_by: HOST,
        }]);
    assert_eq!(after.state.language().as_str(), "de");
    let after = after.when(by(OWNER, set_language("de"))).then(&[]);
    after
        .when(by(OWNER, set_language("")))
        .then(&[Event::CommunityLanguageSet {
            language: Language::from_stored(""),
            set_by: OWNER,
        }]);
}

#[test]
fn a_coach_cannot_set_the_language() {
    given(&staffed())
        .when(by(COACH, set_language("en")))
        .then_error(DomainError::Forbidden(
            "only owners and hosts may update the community".to_owned(),
        ));
}

#[test]
fn only_supported_language_codes_parse() {
    for bad in ["english", "xx", "e", "en-GB", "\u{0}"] {
        assert!(Language::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(Language::parse(" En ").unwrap().as_str(), "en");
}

#[test]
fn an_owner_may_archive_the_community() {
    let after = given(&staffed())
        .when(by(OWNER, Action::ArchiveCommunity))
        .then(&[Event::CommunityArchived { archived_by: OWNER }]);
    assert!(after.state.is_archived());
}

#[test]
fn a_host_cannot_archive_the_community() {
    given(&staffed())
        .when(by(HOST, Action::ArchiveCommunity))
        .then_error(DomainError::Forbidden(
            "only owners may archive the community".to_owned(),
        ));
}

#[test]
fn a_member_may_update_their_profile() {
    let action = Action::UpdateProfile {
        profile: profile("runner"),
    };
    let after = given(&staffed())
        .when(by(MEMBER, action))
        .then(&[Event::ProfileUpdated {
            member_id: MEMBER,
            profile: Some(profile("runner")),
        }]);
    let updated = after.state.member(MEMBER).unwrap();
    assert_eq!(updated.profile, Some(profile("runner")));
    // The old handle is free for others now.
    let freed = super::super::Handle::parse("member").unwrap();
    assert_eq!(after.state.handle_holder(&freed), None);
}

#[test]
fn a_member_may_keep_their_own_handle() {
    let action = Action::UpdateProfile {
        profile: profile("member"),
    };
    given(&staffed())
        .when(by(MEMBER, action))
        .then(&[Event::ProfileUpdated {
            member_id: MEMBER,
            profile: Some(profile("member")),
        }]);
}

#[test]
fn an_outsider_cannot_update_a_profile() {
    let action = Action::UpdateProfile {
        profile: profile("outsider"),
    };
    given(&staffed())
        .when(by(OUTSIDER, action))
        .then_error(DomainError::CallerNotAMember);
}

#[test]
fn a_profile_cannot_take_another_active_members_handle() {
    let action = Action::UpdateProfile {
        profile: profile("Host"),
    };
    given(&staffed())
        .when(by(MEMBER, action))
        .then_error(DomainError::HandleTaken("host".to_owned()));
}

#[test]
fn the_handle_of_a_member_who_left_is_free_again() {
    let events = plus(
        staffed(),
        [
            joined(CO_OWNER, "ada"),
            Event::MemberLeft {
                member_id: CO_OWNER,
            },
        ],
    );
    let action = Action::UpdateProfile {
        profile: profile("ada"),
    };
    given(&events)
        .when(by(MEMBER, action))
        .then(&[Event::ProfileUpdated {
            member_id: MEMBER,
            profile: Some(profile("ada")),
        }]);
}

#[test]
fn event_names_match_the_proto_messages() {
    let events = plus(created(), [Event::MemberLeft { member_id: MEMBER }]);
    let names: Vec<&str> = events.iter().map(Event::name).collect();
    assert_eq!(names, ["CommunityCreated", "MemberJoined", "MemberLeft"]);
}
