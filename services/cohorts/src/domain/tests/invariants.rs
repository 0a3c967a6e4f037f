//! Properties that hold after every step of long deterministic runs: the seats never exceed the
//! capacity, no one holds two places, a free seat never sits beside a waitlist, the waitlist keeps
//! its order however people leave it, and `evolve` takes any event sequence without panicking.

use std::collections::{HashMap, HashSet};

use chrono::TimeDelta;
use uuid::Uuid;

use super::super::{
    Action, Cohort, Command, CommunityRole, Departure, Event, Minutes, Place, Rsvp, SYSTEM,
    SeatedBy, SessionTitle, evolve, initial,
};
use super::{COACH, OTHER_COACH, details, given, joined, member, now, opened, plus, waitlisted};

use kith_platform::testing::Lcg;

/// The seats and waitlist as a naive model folds them, to check the indexed state against.
#[derive(Default)]
struct Model {
    seats: Vec<Uuid>,
    waitlist: Vec<Uuid>,
}

impl Model {
    fn apply(&mut self, event: &Event) {
        match event {
            Event::MemberJoinedCohort { member_id, .. } | Event::WaitlistPromoted { member_id } => {
                self.waitlist.retain(|m| m != member_id);
                if !self.seats.contains(member_id) {
                    self.seats.push(*member_id);
                }
            }
            Event::MemberWaitlisted { member_id } if !self.waitlist.contains(member_id) => {
                self.waitlist.push(*member_id);
            }
            Event::MemberLeftCohort { member_id, place }
            | Event::MemberRemovedFromCohort {
                member_id, place, ..
            }
            | Event::MemberReleased {
                member_id, place, ..
            } => match place {
                Place::Seat => self.seats.retain(|m| m != member_id),
                Place::Waitlist => self.waitlist.retain(|m| m != member_id),
                Place::Invitation | Place::Facilitator => {}
            },
            _ => {}
        }
    }
}

#[track_caller]
fn assert_consistent(cohort: &Cohort, model: &Model, context: &str) {
    let seated: Vec<Uuid> = cohort.seated().collect();
    let waiting: Vec<Uuid> = cohort.waitlist().collect();
    let invited: Vec<Uuid> = cohort.invitations().map(|i| i.member_id).collect();
    let facilitators = cohort.facilitators();
    assert_eq!(seated, model.seats, "seats after {context}");
    assert_eq!(waiting, model.waitlist, "waitlist after {context}");
    assert_eq!(cohort.waitlist_len(), waiting.len(), "{context}");

    let capacity = cohort.details().unwrap().capacity.get();
    assert!(
        cohort.seats_taken() <= capacity,
        "{} seats taken of {capacity} after {context}",
        cohort.seats_taken()
    );
    assert_eq!(
        cohort.seats_taken(),
        u32::try_from(seated.len() + invited.len()).unwrap()
    );
    if cohort.status().seats_move() && cohort.seats_taken() < capacity {
        assert!(
            waiting.is_empty(),
            "a free seat beside a waitlist after {context}"
        );
    }

    let mut places: HashMap<Uuid, Vec<Place>> = HashMap::new();
    let all = [
        (&seated[..], Place::Seat),
        (&waiting[..], Place::Waitlist),
        (&invited[..], Place::Invitation),
        (facilitators, Place::Facilitator),
    ];
    for (members, place) in all {
        for member in members {
            places.entry(*member).or_default().push(place);
        }
    }
    for (member, held) in &places {
        assert_eq!(held.len(), 1, "{member} holds {held:?} after {context}");
        assert_eq!(cohort.place_of(*member), Some(held[0]), "{context}");
    }
}

fn role(rng: &mut Lcg) -> Option<CommunityRole> {
    // Now and then the actor has left the community.
    (rng.below(12) != 0).then_some(CommunityRole::Member)
}

fn random_command(rng: &mut Lcg, cohort: &Cohort, time: chrono::DateTime<chrono::Utc>) -> Command {
    let mut who = member(u128::from(rng.below(14)) + 1);
    let invited: Vec<Uuid> = cohort.invitations().map(|i| i.member_id).collect();
    // Answering an invitation is rare for someone picked at random; favour the invited.
    if !invited.is_empty() && rng.below(2) == 0 {
        who = rng.pick(&invited);
    }
    let coach = |action| Command {
        actor: COACH,
        actor_role: Some(CommunityRole::Coach),
        now: time,
        action,
    };
    let member_does = |rng: &mut Lcg, action| Command {
        actor: who,
        actor_role: role(rng),
        now: time,
        action,
    };
    match rng.below(13) {
        0..=2 => member_does(rng, Action::JoinCohort),
        3 => member_does(rng, Action::LeaveCohort),
        4 => {
            let hours = i64::try_from(rng.below(24 * 5)).unwrap() + 1;
            coach(Action::InviteMember {
                member_id: who,
                member_role: role(rng),
                expires_at: time + TimeDelta::hours(hours),
            })
        }
        5 => member_does(rng, Action::AcceptInvitation),
        6 => member_does(rng, Action::DeclineInvitation),
        7 => coach(Action::RevokeInvitation { member_id: who }),
        8 => Command {
            actor: SYSTEM,
            actor_role: None,
            now: time,
            action: Action::ExpireInvitations,
        },
        9 => coach(Action::RemoveMember { member_id: who }),
        10 => Command {
            actor: SYSTEM,
            actor_role: None,
            now: time,
            action: Action::ReleaseMember {
                member_id: who,
                departure: rng.pick(&[
                    Departure::Left,
                    Departure::Removed,
                    Departure::Banned,
                    Departure::Erased,
                ]),
            },
        },
        11 => {
            let capacity = u32::try_from(rng.below(8)).unwrap() + 1;
            coach(Action::UpdateCohort {
                details: details(capacity),
            })
        }
        _ => {
            if rng.below(2) == 0 {
                coach(Action::AssignFacilitator {
                    member_id: who,
                    member_role: Some(CommunityRole::Coach),
                })
            } else {
                coach(Action::RemoveFacilitator { member_id: who })
            }
        }
    }
}

#[test]
fn seats_stay_within_capacity_and_no_one_holds_two_places_through_a_long_run() {
    let mut rng = Lcg(2025);
    let mut cohort = given(&opened(4)).state;
    let mut model = Model::default();
    let mut time = now();
    let mut seen: HashMap<&'static str, usize> = HashMap::new();
    for step in 0..6_000 {
        time += TimeDelta::minutes(i64::try_from(rng.below(600)).unwrap());
        let command = match step {
            3_000 => Command {
                actor: COACH,
                actor_role: Some(CommunityRole::Coach),
                now: time,
                action: Action::StartCohort,
            },
            5_000 => Command {
                actor: COACH,
                actor_role: Some(CommunityRole::Coach),
                now: time,
                action: Action::CloseCohort,
            },
            _ => random_command(&mut rng, &cohort, time),
        };
        let Ok(events) = super::super::decide(&cohort, &command) else {
            continue;
        };
        for event in &events {
            *seen.entry(event.name()).or_default() += 1;
            model.apply(event);
            cohort = evolve(cohort, event);
        }
        assert_consistent(&cohort, &model, &format!("step {step}: {command:?}"));
    }
    // The run must have exercised every path it is meant to.
    for name in [
        "MemberJoinedCohort",
        "MemberWaitlisted",
        "WaitlistPromoted",
        "MemberLeftCohort",
        "MemberRemovedFromCohort",
        "MemberReleased",
        "MemberInvited",
        "InvitationDeclined",
        "InvitationRevoked",
        "InvitationExpired",
        "CohortUpdated",
        "FacilitatorAssigned",
        "FacilitatorRemoved",
    ] {
        assert!(
            seen.get(name).copied().unwrap_or(0) >= 10,
            "{name}: {seen:?}"
        );
    }
    assert_eq!(seen.get("CohortStarted"), Some(&1));
    assert_eq!(seen.get("CohortClosed"), Some(&1));
}

#[test]
fn ten_thousand_joins_queue_up_in_order_and_the_head_takes_the_next_seat() {
    let mut cohort = given(&opened(30)).state;
    for n in 1..=10_030 {
        let command = Command {
            actor: member(n),
            actor_role: Some(CommunityRole::Member),
            now: now(),
            action: Action::JoinCohort,
        };
        let events = super::super::decide(&cohort, &command).unwrap();
        let expected = if n <= 30 {
            joined(member(n))
        } else {
            waitlisted(member(n))
        };
        assert_eq!(events, [expected]);
        cohort = events.iter().fold(cohort, evolve);
    }
    assert_eq!(cohort.waitlist_len(), 10_000);
    assert_eq!(cohort.place_of(member(5_000)), Some(Place::Waitlist));
    let leave = Command {
        actor: member(7),
        actor_role: Some(CommunityRole::Member),
        now: now(),
        action: Action::LeaveCohort,
    };
    let events = super::super::decide(&cohort, &leave).unwrap();
    assert_eq!(
        events,
        [
            Event::MemberLeftCohort {
                member_id: member(7),
                place: Place::Seat,
            },
            Event::WaitlistPromoted {
                member_id: member(31),
            },
        ]
    );
}

#[test]
fn the_waitlist_keeps_its_order_however_people_leave_it() {
    let mut rng = Lcg(7);
    let mut events = plus(opened(1), [joined(member(0))]);
    events.extend((1..=400).map(|n| waitlisted(member(n))));
    let mut model = Model::default();
    for event in &events {
        model.apply(event);
    }
    let mut cohort = given(&events).state;
    for step in 0..3_000 {
        let who = member(u128::from(rng.below(401)));
        let action = match rng.below(4) {
            0 => Action::JoinCohort,
            _ => Action::LeaveCohort,
        };
        let command = Command {
            actor: who,
            actor_role: Some(CommunityRole::Member),
            now: now(),
            action,
        };
        if let Ok(events) = super::super::decide(&cohort, &command) {
            for event in &events {
                model.apply(event);
                cohort = evolve(cohort, event);
            }
        }
        let waiting: Vec<Uuid> = cohort.waitlist().collect();
        assert_eq!(waiting, model.waitlist, "step {step}");
        assert_eq!(cohort.waitlist_len(), model.waitlist.len());
        let seated: Vec<Uuid> = cohort.seated().collect();
        assert_eq!(seated, model.seats, "step {step}");
    }
}

fn random_event(rng: &mut Lcg) -> Event {
    let who = Uuid::from_u128(u128::from(rng.below(6)));
    let session = Uuid::from_u128(u128::from(rng.below(3)) + 100);
    let place = rng.pick(&[
        Place::Seat,
        Place::Waitlist,
        Place::Invitation,
        Place::Facilitator,
    ]);
    match rng.below(16) {
        0 => Event::CohortCreated {
            community_id: who,
            details: details(u32::try_from(rng.below(30)).unwrap() + 1),
            created_by: who,
        },
        1 => Event::CohortArchived { by: who },
        2 => Event::CohortOpened { by: who },
        3 => Event::FacilitatorAssigned {
            member_id: who,
            assigned_by: who,
        },
        4 => Event::FacilitatorRemoved {
            member_id: who,
            removed_by: who,
        },
        5 => Event::MemberJoinedCohort {
            member_id: who,
            seated_by: SeatedBy::SelfJoin,
        },
        6 => Event::MemberWaitlisted { member_id: who },
        7 => Event::WaitlistPromoted { member_id: who },
        8 => Event::MemberLeftCohort {
            member_id: who,
            place,
        },
        9 => Event::MemberReleased {
            member_id: who,
            place,
            departure: Departure::Erased,
        },
        10 => Event::MemberInvited {
            member_id: who,
            invited_by: who,
            expires_at: now(),
        },
        11 => Event::InvitationExpired { member_id: who },
        12 => Event::SessionScheduled {
            session_id: session,
            series_id: None,
            occurrence: 1,
            title: SessionTitle::parse("x").unwrap(),
            starts_at: now(),
            duration: Minutes::parse(30).unwrap(),
            scheduled_by: who,
        },
        13 => Event::SessionRsvp {
            session_id: session,
            member_id: who,
            response: Rsvp::Yes,
        },
        14 => Event::AttendanceRecorded {
            session_id: session,
            present: vec![who, who],
            recorded_by: who,
        },
        _ => Event::SessionCancelled {
            session_id: session,
            by: who,
        },
    }
}

#[test]
fn evolve_takes_any_event_sequence_and_keeps_its_indexes_consistent() {
    let mut rng = Lcg(99);
    let mut cohort = initial();
    for _ in 0..20_000 {
        let event = random_event(&mut rng);
        cohort = evolve(cohort, &event);
        let seated: Vec<Uuid> = cohort.seated().collect();
        let waiting: Vec<Uuid> = cohort.waitlist().collect();
        assert_eq!(seated.iter().collect::<HashSet<_>>().len(), seated.len());
        assert_eq!(waiting.iter().collect::<HashSet<_>>().len(), waiting.len());
        assert_eq!(cohort.waitlist_len(), waiting.len());
        for member in &seated {
            assert!(cohort.holds(*member, Place::Seat));
        }
        for member in &waiting {
            assert!(cohort.holds(*member, Place::Waitlist));
        }
        for facilitator in cohort.facilitators() {
            assert_eq!(cohort.place_of(*facilitator), Some(Place::Facilitator));
        }
    }
    // Deciding on whatever came of it does not panic either.
    let _ = super::super::decide(
        &cohort,
        &Command {
            actor: OTHER_COACH,
            actor_role: Some(CommunityRole::Host),
            now: now(),
            action: Action::ExpireInvitations,
        },
    );
}
