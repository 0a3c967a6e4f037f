//! What the decider knows about a cohort: exactly what its decisions need, folded from the
//! cohort's events. Only [`super::evolve`] changes it; everything else reads it.
//!
//! A cohort has at most [`super::MAX_CAPACITY`] seats but its waitlist may grow long, so whoever
//! holds what is indexed by member id beside the ordered seats and queue: every check of who holds
//! a place is O(1), and so are joining, leaving and promoting.

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::event::Event;
use super::values::{Details, Minutes, Place, Rsvp, SessionTitle, Status};

/// A seat held for a member until they accept, decline, or it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    /// Who is invited.
    pub member_id: Uuid,
    /// Who invited them.
    pub invited_by: Uuid,
    /// When the held seat is free again.
    pub expires_at: DateTime<Utc>,
}

impl Invitation {
    /// Whether it has expired at `now` (the expiry instant itself is too late).
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at <= now
    }
}

/// A live session of the cohort.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub session_id: Uuid,
    /// The id of the first session of its weekly series; `None` for a one-off.
    pub series_id: Option<Uuid>,
    /// 1-based place in its series (1 for a one-off).
    pub occurrence: u32,
    pub title: SessionTitle,
    pub starts_at: DateTime<Utc>,
    pub duration: Minutes,
    pub cancelled: bool,
    /// The latest answer of each member who answered, by member id.
    pub rsvps: BTreeMap<Uuid, Rsvp>,
    /// Who attended, as last recorded, in the order recorded.
    pub present: Vec<Uuid>,
}

/// Everything one person holds in the cohort. A member holds one place, except that a waitlisted
/// member may also be invited: the invitation lets them skip the line without losing their turn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Slot {
    pub(super) seat: bool,
    /// The member's waitlist ticket while they wait. Queue entries whose ticket no longer matches
    /// are left behind by people who stopped waiting, and are skipped.
    pub(super) ticket: Option<u64>,
    pub(super) invited: bool,
    pub(super) facilitator: bool,
}

impl Slot {
    pub(super) fn is_empty(self) -> bool {
        !self.seat && self.ticket.is_none() && !self.invited && !self.facilitator
    }

    pub(super) fn holds(self, place: Place) -> bool {
        match place {
            Place::Seat => self.seat,
            Place::Waitlist => self.ticket.is_some(),
            Place::Invitation => self.invited,
            Place::Facilitator => self.facilitator,
        }
    }

    /// The places held, in the order in which refusals and releases name them.
    pub(super) fn places(self) -> impl Iterator<Item = Place> {
        [
            Place::Seat,
            Place::Waitlist,
            Place::Invitation,
            Place::Facilitator,
        ]
        .into_iter()
        .filter(move |place| self.holds(*place))
    }

    /// The strongest place held: running the cohort, then a seat, then a held seat, then a turn.
    fn main_place(self) -> Option<Place> {
        [
            Place::Facilitator,
            Place::Seat,
            Place::Invitation,
            Place::Waitlist,
        ]
        .into_iter()
        .find(|place| self.holds(*place))
    }
}

/// Once the queue holds this many more entries than twice the people waiting, the stale ones are
/// swept out; sweeping costs the length of the queue, so it happens at most once per that many
/// departures.
const QUEUE_SLACK: usize = 32;

/// A cohort as the decider sees it. The default value is a cohort not yet created.
#[derive(Debug, Clone, Default)]
pub struct Cohort {
    created: bool,
    community_id: Option<Uuid>,
    details: Option<Details>,
    status: Status,
    facilitators: Vec<Uuid>,
    /// Seated members in the order they took their seats.
    seats: Vec<Uuid>,
    /// The waitlist as (ticket, member). Leaving the line only clears the member's ticket, so an
    /// entry is live only while its ticket is the member's; the head entry is always live.
    queue: VecDeque<(u64, Uuid)>,
    next_ticket: u64,
    /// How many live entries the queue holds.
    waiting: usize,
    invitations: BTreeMap<Uuid, Invitation>,
    index: HashMap<Uuid, Slot>,
    /// In the order scheduled.
    sessions: Vec<Session>,
    session_index: HashMap<Uuid, usize>,
}

impl Cohort {
    /// Whether the cohort was created.
    pub fn exists(&self) -> bool {
        self.created
    }

    /// The community the cohort belongs to, once created.
    pub fn community_id(&self) -> Option<Uuid> {
        self.community_id
    }

    /// The cohort's details as last set, once created.
    pub fn details(&self) -> Option<&Details> {
        self.details.as_ref()
    }

    /// Where the cohort is in its life ([`Status::Draft`] before it is created).
    pub fn status(&self) -> Status {
        self.status
    }

    /// The facilitators, in the order they were assigned.
    pub fn facilitators(&self) -> &[Uuid] {
        &self.facilitators
    }

    /// The seated members, in the order they took their seats.
    pub fn seated(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.seats.iter().copied()
    }

    /// The waitlisted members, first in line first.
    pub fn waitlist(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.queue
            .iter()
            .filter(|entry| self.is_live(entry))
            .map(|(_, member)| *member)
    }

    /// How many members wait.
    pub fn waitlist_len(&self) -> usize {
        self.waiting
    }

    /// The pending invitations (expired ones too, until their expiry is recorded), by member id.
    pub fn invitations(&self) -> impl Iterator<Item = &Invitation> + '_ {
        self.invitations.values()
    }

    /// The pending invitation of `member`.
    pub fn invitation(&self, member: Uuid) -> Option<&Invitation> {
        self.invitations.get(&member)
    }

    /// Where `member` stands. A waitlisted member who is also invited stands at
    /// [`Place::Invitation`]; [`Cohort::holds`] tells each place apart.
    pub fn place_of(&self, member: Uuid) -> Option<Place> {
        self.slot(member).main_place()
    }

    /// Whether `member` holds `place`.
    pub fn holds(&self, member: Uuid, place: Place) -> bool {
        self.slot(member).holds(place)
    }

    /// Seats taken by seated members plus seats held by invitations.
    pub fn seats_taken(&self) -> u32 {
        count(self.seats.len()).saturating_add(count(self.invitations.len()))
    }

    /// The session with that id.
    pub fn session(&self, id: Uuid) -> Option<&Session> {
        self.session_index
            .get(&id)
            .and_then(|&at| self.sessions.get(at))
    }

    /// The sessions, in the order they were scheduled.
    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.iter()
    }

    pub(super) fn slot(&self, member: Uuid) -> Slot {
        self.index.get(&member).copied().unwrap_or_default()
    }

    pub(super) fn capacity(&self) -> u32 {
        self.details
            .as_ref()
            .map_or(0, |details| details.capacity.get())
    }

    pub(super) fn seated_count(&self) -> u32 {
        count(self.seats.len())
    }

    pub(super) fn invitation_count(&self) -> u32 {
        count(self.invitations.len())
    }

    /// The raw queue entry at `at`, live or not, so that a decision can walk the line once.
    pub(super) fn queue_entry(&self, at: usize) -> Option<(u64, Uuid)> {
        self.queue.get(at).copied()
    }

    fn is_live(&self, (ticket, member): &(u64, Uuid)) -> bool {
        is_live(&self.index, *ticket, *member)
    }

    /// Folds one event into the state. Total: an event that does not fit (about a member never
    /// seen, a place not held, a session unknown) changes what it can and never panics, since the
    /// log is the truth.
    pub(super) fn apply(mut self, event: &Event) -> Self {
        match event {
            Event::CohortCreated {
                community_id,
                details,
                ..
            } => {
                self.created = true;
                self.community_id = Some(*community_id);
                self.details = Some(details.clone());
            }
            Event::CohortUpdated { details, .. } => self.details = Some(details.clone()),
            Event::CohortOpened { .. } => self.status = Status::Open,
            Event::CohortStarted { .. } => self.status = Status::Running,
            Event::CohortClosed { .. } => self.status = Status::Closed,
            Event::CohortGraduated { .. } => self.status = Status::Graduated,
            Event::CohortArchived { .. } => self.status = Status::Archived,
            Event::FacilitatorAssigned { member_id, .. } => self.add_facilitator(*member_id),
            Event::FacilitatorRemoved { member_id, .. } => {
                self.release(*member_id, Place::Facilitator);
            }
            Event::MemberJoinedCohort { member_id, .. } | Event::WaitlistPromoted { member_id } => {
                self.seat(*member_id)
            }
            Event::MemberWaitlisted { member_id } => self.enqueue(*member_id),
            Event::MemberLeftCohort { member_id, place }
            | Event::MemberRemovedFromCohort {
                member_id, place, ..
            }
            | Event::MemberReleased {
                member_id, place, ..
            } => self.release(*member_id, *place),
            Event::MemberInvited {
                member_id,
                invited_by,
                expires_at,
            } => self.invite(*member_id, *invited_by, *expires_at),
            Event::InvitationDeclined { member_id }
            | Event::InvitationRevoked { member_id, .. }
            | Event::InvitationExpired { member_id } => {
                self.release(*member_id, Place::Invitation);
            }
            Event::SessionScheduled {
                session_id,
                series_id,
                occurrence,
                title,
                starts_at,
                duration,
                ..
            } => {
                // A repeated id keeps the first session: ids are never reused by the decider.
                if !self.session_index.contains_key(session_id) {
                    self.session_index.insert(*session_id, self.sessions.len());
                    self.sessions.push(Session {
                        session_id: *session_id,
                        series_id: *series_id,
                        occurrence: *occurrence,
                        title: title.clone(),
                        starts_at: *starts_at,
                        duration: *duration,
                        cancelled: false,
                        rsvps: BTreeMap::new(),
                        present: Vec::new(),
                    });
                }
            }
            Event::SessionRescheduled {
                session_id,
                starts_at,
                duration,
                ..
            } => {
                if let Some(session) = self.session_mut(*session_id) {
                    session.starts_at = *starts_at;
                    session.duration = *duration;
                }
            }
            Event::SessionCancelled { session_id, .. } => {
                if let Some(session) = self.session_mut(*session_id) {
                    session.cancelled = true;
                }
            }
            Event::SessionRsvp {
                session_id,
                member_id,
                response,
            } => {
                if let Some(session) = self.session_mut(*session_id) {
                    session.rsvps.insert(*member_id, *response);
                }
            }
            Event::AttendanceRecorded {
                session_id,
                present,
                ..
            } => {
                if let Some(session) = self.session_mut(*session_id) {
                    session.present.clone_from(present);
                }
            }
        }
        self
    }

    fn session_mut(&mut self, id: Uuid) -> Option<&mut Session> {
        let at = *self.session_index.get(&id)?;
        self.sessions.get_mut(at)
    }

    fn add_facilitator(&mut self, member: Uuid) {
        let slot = self.index.entry(member).or_default();
        if !slot.facilitator {
            slot.facilitator = true;
            self.facilitators.push(member);
        }
    }

    /// Taking a seat ends every other claim to one: the invitation that held it and the turn on
    /// the waitlist.
    fn seat(&mut self, member: Uuid) {
        let slot = self.index.entry(member).or_default();
        if slot.invited {
            slot.invited = false;
            self.invitations.remove(&member);
        }
        if slot.ticket.take().is_some() {
            self.waiting = self.waiting.saturating_sub(1);
        }
        if !slot.seat {
            slot.seat = true;
            self.seats.push(member);
        }
        self.tidy_queue();
    }

    fn enqueue(&mut self, member: Uuid) {
        let slot = self.index.entry(member).or_default();
        if slot.ticket.is_none() {
            let ticket = self.next_ticket;
            self.next_ticket = self.next_ticket.wrapping_add(1);
            slot.ticket = Some(ticket);
            self.queue.push_back((ticket, member));
            self.waiting = self.waiting.saturating_add(1);
        }
    }

    fn invite(&mut self, member: Uuid, invited_by: Uuid, expires_at: DateTime<Utc>) {
        self.index.entry(member).or_default().invited = true;
        let invitation = Invitation {
            member_id: member,
            invited_by,
            expires_at,
        };
        self.invitations.insert(member, invitation);
    }

    /// Takes `place` from `member`, if they hold it.
    fn release(&mut self, member: Uuid, place: Place) {
        let Some(slot) = self.index.get_mut(&member) else {
            return;
        };
        match place {
            Place::Seat => {
                if std::mem::take(&mut slot.seat) {
                    // At most the capacity of seats, so the linear search stays short.
                    self.seats.retain(|seated| *seated != member);
                }
            }
            Place::Waitlist => {
                if slot.ticket.take().is_some() {
                    self.waiting = self.waiting.saturating_sub(1);
                }
            }
            Place::Invitation => {
                if std::mem::take(&mut slot.invited) {
                    self.invitations.remove(&member);
                }
            }
            Place::Facilitator => {
                if std::mem::take(&mut slot.facilitator) {
                    self.facilitators
                        .retain(|facilitator| *facilitator != member);
                }
            }
        }
        if slot.is_empty() {
            self.index.remove(&member);
        }
        self.tidy_queue();
    }

    /// Keeps the head of the queue live, so that the next in line is found at once, and sweeps
    /// out stale entries once they outnumber the live ones by [`QUEUE_SLACK`].
    fn tidy_queue(&mut self) {
        let index = &self.index;
        while let Some(&(ticket, member)) = self.queue.front() {
            if is_live(index, ticket, member) {
                break;
            }
            self.queue.pop_front();
        }
        if self.queue.len() > self.waiting.saturating_mul(2).saturating_add(QUEUE_SLACK) {
            self.queue
                .retain(|&(ticket, member)| is_live(index, ticket, member));
        }
    }
}

fn is_live(index: &HashMap<Uuid, Slot>, ticket: u64, member: Uuid) -> bool {
    index.get(&member).and_then(|slot| slot.ticket) == Some(ticket)
}

fn count(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}
