//! A decision in progress. Each step of a decision (the expiry prelude, the command, the
//! promotions a freed seat triggers) must see the events of the steps before it, but folding them
//! into a copy of the cohort would copy its waitlist, which may be long. The draft instead keeps
//! the few holdings that changed beside a reference to the stored cohort.

use std::collections::HashMap;

use uuid::Uuid;

use super::super::event::Event;
use super::super::state::{Cohort, Invitation, Slot};
use super::super::values::{Place, Status};

#[derive(Debug)]
pub(super) struct Draft<'a> {
    cohort: &'a Cohort,
    events: Vec<Event>,
    /// The holdings of the members whose places changed in this decision, as they stand now.
    changed: HashMap<Uuid, Slot>,
    seated: u32,
    invited: u32,
    capacity: u32,
    /// Whose invitations the prelude recorded as expired, so that acting on one can say so.
    expired: Vec<Uuid>,
    /// Where the search for the next in line resumes: everyone before was promoted or removed in
    /// this decision, or had stopped waiting already.
    cursor: usize,
}

impl<'a> Draft<'a> {
    pub(super) fn new(cohort: &'a Cohort) -> Self {
        Self {
            cohort,
            events: Vec::new(),
            changed: HashMap::new(),
            seated: cohort.seated_count(),
            invited: cohort.invitation_count(),
            capacity: cohort.capacity(),
            expired: Vec::new(),
            cursor: 0,
        }
    }

    /// The stored cohort. Only holdings and capacity change within a decision, so everything
    /// else (status, facilitators' order, sessions) is read from it.
    pub(super) fn cohort(&self) -> &'a Cohort {
        self.cohort
    }

    pub(super) fn status(&self) -> Status {
        self.cohort.status()
    }

    pub(super) fn capacity(&self) -> u32 {
        self.capacity
    }

    pub(super) fn slot(&self, member: Uuid) -> Slot {
        match self.changed.get(&member) {
            Some(slot) => *slot,
            None => self.cohort.slot(member),
        }
    }

    pub(super) fn seats_taken(&self) -> u32 {
        self.seated.saturating_add(self.invited)
    }

    pub(super) fn free_seats(&self) -> u32 {
        self.capacity.saturating_sub(self.seats_taken())
    }

    /// The pending invitation of `member`, unless this decision ended it.
    pub(super) fn invitation(&self, member: Uuid) -> Option<&'a Invitation> {
        if self.slot(member).invited {
            self.cohort.invitation(member)
        } else {
            None
        }
    }

    pub(super) fn expired_in_prelude(&self, member: Uuid) -> bool {
        self.expired.contains(&member)
    }

    pub(super) fn record_expiry(&mut self, member: Uuid) {
        self.expired.push(member);
        self.push(Event::InvitationExpired { member_id: member });
    }

    /// Appends `event`, tracking what later steps of this decision read.
    pub(super) fn push(&mut self, event: Event) {
        match &event {
            Event::MemberJoinedCohort { member_id, .. } | Event::WaitlistPromoted { member_id } => {
                self.seat(*member_id);
            }
            Event::MemberLeftCohort { member_id, place }
            | Event::MemberRemovedFromCohort {
                member_id, place, ..
            }
            | Event::MemberReleased {
                member_id, place, ..
            } => self.take(*member_id, *place),
            Event::InvitationDeclined { member_id }
            | Event::InvitationRevoked { member_id, .. }
            | Event::InvitationExpired { member_id } => self.take(*member_id, Place::Invitation),
            Event::CohortUpdated { details, .. } => self.capacity = details.capacity.get(),
            // The others end a decision, or touch nothing a later step reads.
            _ => {}
        }
        self.events.push(event);
    }

    /// Hands every free seat to the next in line, one [`Event::WaitlistPromoted`] each, while
    /// the status lets seats move.
    pub(super) fn promote(&mut self) {
        if !self.status().seats_move() {
            return;
        }
        while self.free_seats() > 0 {
            let Some(member) = self.next_in_line() else {
                break;
            };
            self.push(Event::WaitlistPromoted { member_id: member });
        }
    }

    pub(super) fn into_events(self) -> Vec<Event> {
        self.events
    }

    fn next_in_line(&mut self) -> Option<Uuid> {
        while let Some((ticket, member)) = self.cohort.queue_entry(self.cursor) {
            self.cursor += 1;
            if self.slot(member).ticket == Some(ticket) {
                return Some(member);
            }
        }
        None
    }

    /// Mirrors the cohort's own seating: the seat ends the invitation and the turn in line.
    fn seat(&mut self, member: Uuid) {
        let mut slot = self.slot(member);
        if std::mem::take(&mut slot.invited) {
            self.invited = self.invited.saturating_sub(1);
        }
        slot.ticket = None;
        if !slot.seat {
            slot.seat = true;
            self.seated = self.seated.saturating_add(1);
        }
        self.changed.insert(member, slot);
    }

    fn take(&mut self, member: Uuid, place: Place) {
        let mut slot = self.slot(member);
        match place {
            Place::Seat => {
                if std::mem::take(&mut slot.seat) {
                    self.seated = self.seated.saturating_sub(1);
                }
            }
            Place::Waitlist => slot.ticket = None,
            Place::Invitation => {
                if std::mem::take(&mut slot.invited) {
                    self.invited = self.invited.saturating_sub(1);
                }
            }
            Place::Facilitator => slot.facilitator = false,
        }
        self.changed.insert(member, slot);
    }
}
