//! The read calls: authenticate, validate, wait for `min_position`, check who may see what, then
//! read the roster projection (or, for a past moment, the log).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use kith_platform::command::{ErrorKind, refusal};
use kith_platform::paging::{
    min_position, page, page_keyed, page_keys, page_token, status_from_db,
};
use kith_platform::validation::{Violations, page_size};
use kith_platform::wire::timestamp;
use kith_proto::cohorts as pb;
use sqlx::Row;
use sqlx::postgres::PgRow;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::Api;
use crate::codec::{date_to_pb, decode_one, kind_from_pb, place_to_pb};
use crate::domain::{self, Cohort, CommunityRole, Event, Place, Status as CohortStatus};
use crate::projections::roster::{kind_name, status_name};

type Reply<T> = Result<Response<T>, Status>;

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 200;

fn incomplete() -> Status {
    Status::internal("request validation was incomplete")
}

pub(crate) fn status_to_pb(status: CohortStatus) -> pb::CohortStatus {
    match status {
        CohortStatus::Draft => pb::CohortStatus::Draft,
        CohortStatus::Open => pb::CohortStatus::Open,
        CohortStatus::Running => pb::CohortStatus::Running,
        CohortStatus::Closed => pb::CohortStatus::Closed,
        CohortStatus::Graduated => pb::CohortStatus::Graduated,
        CohortStatus::Archived => pb::CohortStatus::Archived,
    }
}

fn status_from_pb(value: i32) -> Option<CohortStatus> {
    Some(match pb::CohortStatus::try_from(value).ok()? {
        pb::CohortStatus::Draft => CohortStatus::Draft,
        pb::CohortStatus::Open => CohortStatus::Open,
        pb::CohortStatus::Running => CohortStatus::Running,
        pb::CohortStatus::Closed => CohortStatus::Closed,
        pb::CohortStatus::Graduated => CohortStatus::Graduated,
        pb::CohortStatus::Archived => CohortStatus::Archived,
        pb::CohortStatus::Unspecified => return None,
    })
}

fn stored_status(name: &str) -> pb::CohortStatus {
    match name {
        "draft" => pb::CohortStatus::Draft,
        "open" => pb::CohortStatus::Open,
        "running" => pb::CohortStatus::Running,
        "closed" => pb::CohortStatus::Closed,
        "graduated" => pb::CohortStatus::Graduated,
        "archived" => pb::CohortStatus::Archived,
        _ => pb::CohortStatus::Unspecified,
    }
}

fn stored_kind(name: &str) -> pb::CohortKind {
    match name {
        "mastermind" => pb::CohortKind::Mastermind,
        "coaching" => pb::CohortKind::Coaching,
        "course" => pb::CohortKind::Course,
        "circle" => pb::CohortKind::Circle,
        _ => pb::CohortKind::Unspecified,
    }
}

fn stored_place(name: &str) -> pb::Place {
    match name {
        "seat" => pb::Place::Seat,
        "waitlist" => pb::Place::Waitlist,
        "invitation" => pb::Place::Invitation,
        "facilitator" => pb::Place::Facilitator,
        _ => pb::Place::Unspecified,
    }
}

fn stored_rsvp(name: &str) -> pb::RsvpResponse {
    match name {
        "yes" => pb::RsvpResponse::Yes,
        "no" => pb::RsvpResponse::No,
        "maybe" => pb::RsvpResponse::Maybe,
        _ => pb::RsvpResponse::Unspecified,
    }
}

fn non_negative(value: i32) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

/// Columns of `cohorts` that [`cohort`] reads, qualified by `c`.
const COHORT_COLUMNS: &str = "c.cohort_id, c.community_id, c.name, c.kind, c.capacity, c.starts_on, \
     c.ends_on, c.time_zone, c.goal, c.status, c.seated, c.held, c.waitlisted, c.facilitators, \
     c.created_at, c.version, c.created_position";

fn cohort(row: &PgRow) -> Result<pb::Cohort, sqlx::Error> {
    let cohort: Uuid = row.try_get(0)?;
    let community: Uuid = row.try_get(1)?;
    let capacity: i32 = row.try_get(4)?;
    let seated: i32 = row.try_get(10)?;
    let held: i32 = row.try_get(11)?;
    Ok(pb::Cohort {
        cohort_id: cohort.to_string(),
        community_id: community.to_string(),
        details: Some(pb::CohortDetails {
            name: row.try_get(2)?,
            kind: stored_kind(row.try_get::<&str, _>(3)?) as i32,
            capacity: non_negative(capacity),
            starts_on: row
                .try_get::<Option<chrono::NaiveDate>, _>(5)?
                .map(date_to_pb),
            ends_on: row
                .try_get::<Option<chrono::NaiveDate>, _>(6)?
                .map(date_to_pb),
            time_zone: row.try_get(7)?,
            goal: row.try_get(8)?,
        }),
        status: stored_status(row.try_get::<&str, _>(9)?) as i32,
        seated: non_negative(seated),
        held: non_negative(held),
        available: non_negative(capacity - seated - held),
        waitlisted: non_negative(row.try_get(12)?),
        facilitators: non_negative(row.try_get(13)?),
        created_at: Some(timestamp(row.try_get(14)?)),
        version: row.try_get(15)?,
    })
}

/// Sort rank of places in a roster: facilitators, seats, invitations, then the waitlist.
const PLACE_RANK: &str = "(CASE place WHEN 'facilitator' THEN 0 WHEN 'seat' THEN 1 \
     WHEN 'invitation' THEN 2 ELSE 3 END)::bigint * 1000000000000000 + position";

/// Who is asking about a cohort, and what they may see.
struct Viewer {
    role: Option<CommunityRole>,
    place: Option<String>,
}

impl Viewer {
    fn member_of_community(&self) -> bool {
        self.role.is_some()
    }

    /// The roster and sessions are for the cohort's people and the community's owners and hosts.
    fn sees_roster(&self) -> bool {
        self.place.is_some() || self.role.is_some_and(CommunityRole::manages_cohorts)
    }
}

impl Api {
    async fn viewer(&self, cohort: Uuid, caller: Uuid) -> Result<Viewer, Status> {
        let community = self
            .community_of(cohort)
            .await?
            .ok_or_else(cohort_not_found)?;
        let role = self.role_of(community, caller).await?;
        let place: Option<String> = sqlx::query_scalar(
            "SELECT place FROM cohort_places WHERE cohort_id = $1 AND member_id = $2",
        )
        .bind(cohort)
        .bind(caller)
        .fetch_optional(&self.pool)
        .await
        .map_err(status_from_db)?;
        Ok(Viewer { role, place })
    }

    /// The viewer, refused unless they may see the roster.
    async fn roster_viewer(&self, cohort: Uuid, caller: Uuid) -> Result<Viewer, Status> {
        let viewer = self.viewer(cohort, caller).await?;
        if !viewer.member_of_community() {
            return Err(not_a_member());
        }
        if !viewer.sees_roster() {
            return Err(refusal(
                ErrorKind::PermissionDenied,
                "NOT_PERMITTED",
                "only the cohort's facilitators and members, and the community's owners and hosts, see its roster and sessions",
                None,
            ));
        }
        Ok(viewer)
    }

    pub(super) async fn get_cohort(
        &self,
        request: Request<pb::GetCohortRequest>,
    ) -> Reply<pb::GetCohortResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let cohort_id = v.uuid("cohort_id", &r.cohort_id);
        let min = min_position(&mut v, r.min_position);
        v.finish()?;
        let cohort_id = cohort_id.ok_or_else(incomplete)?;
        self.wait(min).await?;
        let viewer = self.viewer(cohort_id, caller).await?;
        if !viewer.member_of_community() {
            return Err(not_a_member());
        }
        let read = || async {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COHORT_COLUMNS} FROM cohorts c WHERE c.cohort_id = $1"
            )))
            .bind(cohort_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(status_from_db)
        };
        let row = match read().await? {
            Some(row) => row,
            None => {
                // The cohort exists (its stream was found) but the read model has not applied
                // its creation yet: wait for that rather than answer NOT_FOUND.
                let created: Option<i64> = sqlx::query_scalar(
                    "SELECT position FROM events WHERE stream_id = $1 AND version = 1",
                )
                .bind(cohort_id.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(status_from_db)?;
                self.wait(created.unwrap_or(0)).await?;
                read().await?.ok_or_else(cohort_not_found)?
            }
        };
        Ok(Response::new(pb::GetCohortResponse {
            cohort: Some(cohort(&row).map_err(status_from_db)?),
        }))
    }

    pub(super) async fn list_cohorts(
        &self,
        request: Request<pb::ListCohortsRequest>,
    ) -> Reply<pb::ListCohortsResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let community = v.uuid("community_id", &r.community_id);
        let kind = match r.kind {
            0 => None,
            value => {
                let kind = kind_from_pb(value);
                if kind.is_none() {
                    v.add("kind", "must be a CohortKind value or unspecified");
                }
                kind
            }
        };
        let status = match r.status {
            0 => None,
            value => {
                let status = status_from_pb(value);
                if status.is_none() {
                    v.add("status", "must be a CohortStatus value or unspecified");
                }
                status
            }
        };
        let limit = page_size(&mut v, r.page_size, DEFAULT_PAGE, MAX_PAGE);
        let query = kith_platform::page_query!(caller, r);
        let token = page_token(&mut v, &r.page_token, &query);
        let min = min_position(&mut v, r.min_position);
        v.finish()?;
        let community = community.ok_or_else(incomplete)?;
        self.wait(min).await?;
        if self.role_of(community, caller).await?.is_none() {
            return Err(not_a_member());
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COHORT_COLUMNS} FROM cohorts c
             WHERE c.community_id = $1 AND c.created_position > $2
               AND ($3::text IS NULL OR c.kind = $3) AND ($4::text IS NULL OR c.status = $4)
             ORDER BY c.created_position LIMIT $5"
        )))
        .bind(community)
        .bind(token.unwrap_or(0))
        .bind(kind.map(kind_name))
        .bind(status.map(status_name))
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(status_from_db)?;
        let (cohorts, next_page_token) = page(&rows, limit, 16, &query, cohort)?;
        Ok(Response::new(pb::ListCohortsResponse {
            cohorts,
            next_page_token,
        }))
    }

    pub(super) async fn list_roster(
        &self,
        request: Request<pb::ListRosterRequest>,
    ) -> Reply<pb::ListRosterResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let cohort_id = v.uuid("cohort_id", &r.cohort_id);
        let limit = page_size(&mut v, r.page_size, DEFAULT_PAGE, MAX_PAGE);
        let query = kith_platform::page_query!(caller, r);
        let token = page_token(&mut v, &r.page_token, &query);
        let min = min_position(&mut v, r.min_position);
        v.finish()?;
        let cohort_id = cohort_id.ok_or_else(incomplete)?;
        self.wait(min).await?;
        self.roster_viewer(cohort_id, caller).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT member_id, place, line, since, expires_at, key FROM (
                 SELECT member_id, place, since, expires_at, {PLACE_RANK} AS key,
                        CASE WHEN place = 'waitlist'
                             THEN row_number() OVER (PARTITION BY place ORDER BY position)
                             ELSE 0 END AS line
                 FROM cohort_places WHERE cohort_id = $1
             ) roster
             WHERE key > $2 ORDER BY key LIMIT $3"
        )))
        .bind(cohort_id)
        .bind(token.unwrap_or(-1))
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(status_from_db)?;
        let (entries, next_page_token) = page(&rows, limit, 5, &query, |row| {
            let member: Uuid = row.try_get(0)?;
            let expires_at: Option<DateTime<Utc>> = row.try_get(4)?;
            Ok(pb::RosterEntry {
                member_id: member.to_string(),
                place: stored_place(row.try_get::<&str, _>(1)?) as i32,
                waitlist_position: u32::try_from(row.try_get::<i64, _>(2)?).unwrap_or(0),
                since: Some(timestamp(row.try_get(3)?)),
                expires_at: expires_at.map(timestamp),
            })
        })?;
        Ok(Response::new(pb::ListRosterResponse {
            entries,
            next_page_token,
        }))
    }

    pub(super) async fn get_roster_at(
        &self,
        request: Request<pb::GetRosterAtRequest>,
    ) -> Reply<pb::GetRosterAtResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let cohort_id = v.uuid("cohort_id", &r.cohort_id);
        let moment = match &r.moment {
            None => {
                v.add("moment", "is required: set `at` or `session_id`");
                None
            }
            Some(pb::get_roster_at_request::Moment::At(at)) => {
                v.timestamp("at", at).map(Moment::At)
            }
            Some(pb::get_roster_at_request::Moment::SessionId(id)) => {
                v.uuid("session_id", id).map(Moment::Session)
            }
        };
        v.finish()?;
        let (Some(cohort_id), Some(moment)) = (cohort_id, moment) else {
            return Err(incomplete());
        };
        self.roster_viewer(cohort_id, caller).await?;
        let recorded = self
            .repository
            .log()
            .read_stream(&cohort_id.to_string(), 0)
            .await
            .map_err(|err| kith_platform::grpc::status_from_platform(&err))?;
        let events = recorded
            .iter()
            .map(|e| decode_one(e).map(|event| (e.recorded_at, e.version, event)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| kith_platform::grpc::status_from_platform(&err))?;
        let as_of = match moment {
            Moment::At(at) => at,
            Moment::Session(session) => {
                let now = events
                    .iter()
                    .fold(domain::initial(), |state, (_, _, event)| {
                        domain::evolve(state, event)
                    });
                now.session(session).map(|s| s.starts_at).ok_or_else(|| {
                    refusal(
                        ErrorKind::NotFound,
                        "SESSION_NOT_FOUND",
                        "session not found in this cohort",
                        None,
                    )
                })?
            }
        };
        let past = RosterAt::fold(events.iter().filter(|(at, _, _)| *at <= as_of));
        Ok(Response::new(pb::GetRosterAtResponse {
            as_of: Some(timestamp(as_of)),
            version: past.version,
            status: status_to_pb(past.state.status()) as i32,
            entries: past.entries(),
        }))
    }

    pub(super) async fn list_member_cohorts(
        &self,
        request: Request<pb::ListMemberCohortsRequest>,
    ) -> Reply<pb::ListMemberCohortsResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let member = if r.member_id.is_empty() {
            Some(caller)
        } else {
            v.uuid("member_id", &r.member_id)
        };
        let community = if r.community_id.is_empty() {
            None
        } else {
            v.uuid("community_id", &r.community_id)
        };
        if member.is_some_and(|m| m != caller) && r.community_id.is_empty() {
            v.add(
                "community_id",
                "is required when asking about someone else's cohorts",
            );
        }
        let limit = page_size(&mut v, r.page_size, DEFAULT_PAGE, MAX_PAGE);
        let query = kith_platform::page_query!(caller, r);
        let token = page_token(&mut v, &r.page_token, &query);
        let min = min_position(&mut v, r.min_position);
        v.finish()?;
        let member = member.ok_or_else(incomplete)?;
        self.wait(min).await?;
        if member != caller {
            let community = community.ok_or_else(incomplete)?;
            let role = self.role_of(community, caller).await?;
            if !role.is_some_and(CommunityRole::manages_cohorts) {
                return Err(match role {
                    None => not_a_member(),
                    Some(_) => refusal(
                        ErrorKind::PermissionDenied,
                        "NOT_PERMITTED",
                        "only the member themselves, or the community's owners and hosts, list a member's cohorts",
                        None,
                    ),
                });
            }
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COHORT_COLUMNS}, p.place, p.position FROM cohort_places p
             JOIN cohorts c ON c.cohort_id = p.cohort_id
             WHERE p.member_id = $1 AND ($2::uuid IS NULL OR p.community_id = $2)
               AND p.position > $3
             ORDER BY p.position LIMIT $4"
        )))
        .bind(member)
        .bind(community)
        .bind(token.unwrap_or(0))
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(status_from_db)?;
        let (cohorts, next_page_token) = page(&rows, limit, 18, &query, |row| {
            Ok(pb::MemberCohort {
                cohort: Some(cohort(row)?),
                place: stored_place(row.try_get::<&str, _>(17)?) as i32,
            })
        })?;
        Ok(Response::new(pb::ListMemberCohortsResponse {
            cohorts,
            next_page_token,
        }))
    }

    pub(super) async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Reply<pb::ListSessionsResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let cohort_id = v.uuid("cohort_id", &r.cohort_id);
        let from = match r.from.as_ref() {
            None => Some(Utc::now()),
            Some(at) => v.timestamp("from", at),
        };
        let limit = page_size(&mut v, r.page_size, DEFAULT_PAGE, MAX_PAGE);
        // Sessions are few per cohort; the token holds the number already served, and the start
        // the first page used, so that a default start ("now") does not move between pages.
        let query = kith_platform::page_query!(caller, r);
        let (from, offset) = match page_keys::<2>(&mut v, &r.page_token, &query) {
            // The start must be one a request could have given (a forged one must not reach the
            // database as a time it cannot hold).
            Some([micros, offset])
                if offset >= 0
                    && DateTime::from_timestamp_micros(micros).is_some_and(|from| {
                        kith_platform::wire::time_of(Some(&timestamp(from))) == Some(from)
                    }) =>
            {
                (DateTime::from_timestamp_micros(micros), offset)
            }
            Some(_) => {
                v.add("page_token", "is not a token from an earlier reply");
                (None, 0)
            }
            None => (from, 0),
        };
        let min = min_position(&mut v, r.min_position);
        v.finish()?;
        let (Some(cohort_id), Some(from)) = (cohort_id, from) else {
            return Err(incomplete());
        };
        self.wait(min).await?;
        self.roster_viewer(cohort_id, caller).await?;
        let rows = sqlx::query(
            "SELECT session_id, series_id, occurrence, title, starts_at, duration_minutes,
                    cancelled, present,
                    row_number() OVER (ORDER BY starts_at, session_id) AS served
             FROM sessions
             WHERE cohort_id = $1 AND ends_at > $2 AND ($3 OR NOT cancelled)
             ORDER BY starts_at, session_id OFFSET $4 LIMIT $5",
        )
        .bind(cohort_id)
        .bind(from)
        .bind(r.include_cancelled)
        .bind(offset)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(status_from_db)?;
        let ids: Vec<Uuid> = rows
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(status_from_db)?;
        let rsvp_rows = sqlx::query(
            "SELECT session_id, member_id, response FROM session_rsvps
             WHERE session_id = ANY($1) ORDER BY position",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await
        .map_err(status_from_db)?;
        let mut rsvps: HashMap<Uuid, Vec<pb::Rsvp>> = HashMap::new();
        for row in &rsvp_rows {
            let session: Uuid = row.try_get(0).map_err(status_from_db)?;
            let member: Uuid = row.try_get(1).map_err(status_from_db)?;
            let response: &str = row.try_get(2).map_err(status_from_db)?;
            rsvps.entry(session).or_default().push(pb::Rsvp {
                member_id: member.to_string(),
                response: stored_rsvp(response) as i32,
            });
        }
        let next = |row: &sqlx::postgres::PgRow| Ok(vec![from.timestamp_micros(), row.try_get(8)?]);
        let (sessions, next_page_token) = page_keyed(&rows, limit, &query, next, |row| {
            let session: Uuid = row.try_get(0)?;
            let series: Option<Uuid> = row.try_get(1)?;
            let present: Option<Vec<Uuid>> = row.try_get(7)?;
            let rsvps = rsvps.get(&session).cloned().unwrap_or_default();
            let count = |response: pb::RsvpResponse| {
                u32::try_from(
                    rsvps
                        .iter()
                        .filter(|r| r.response == response as i32)
                        .count(),
                )
                .unwrap_or(u32::MAX)
            };
            Ok(pb::Session {
                cohort_id: cohort_id.to_string(),
                session_id: session.to_string(),
                series_id: series.map(|s| s.to_string()).unwrap_or_default(),
                occurrence: non_negative(row.try_get(2)?),
                title: row.try_get(3)?,
                starts_at: Some(timestamp(row.try_get(4)?)),
                duration_minutes: non_negative(row.try_get(5)?),
                cancelled: row.try_get(6)?,
                yes: count(pb::RsvpResponse::Yes),
                no: count(pb::RsvpResponse::No),
                maybe: count(pb::RsvpResponse::Maybe),
                rsvps,
                present: present
                    .unwrap_or_default()
                    .iter()
                    .map(Uuid::to_string)
                    .collect(),
            })
        })?;
        Ok(Response::new(pb::ListSessionsResponse {
            sessions,
            next_page_token,
        }))
    }
}

fn cohort_not_found() -> Status {
    refusal(
        ErrorKind::NotFound,
        "COHORT_NOT_FOUND",
        "cohort not found",
        None,
    )
}

/// The refusal of a caller outside the community: who they are, not the cohort's state.
fn not_a_member() -> Status {
    refusal(
        ErrorKind::PermissionDenied,
        "NOT_A_MEMBER",
        "only active members of the community see its cohorts",
        None,
    )
}

enum Moment {
    At(DateTime<Utc>),
    Session(Uuid),
}

/// A cohort folded up to a past moment, with when each person took the place they held then.
struct RosterAt {
    state: Cohort,
    version: i64,
    since: HashMap<Uuid, DateTime<Utc>>,
}

impl RosterAt {
    fn fold<'a>(events: impl Iterator<Item = &'a (DateTime<Utc>, i64, Event)>) -> Self {
        let mut past = Self {
            state: domain::initial(),
            version: 0,
            since: HashMap::new(),
        };
        for (at, version, event) in events {
            let member = event.member();
            let before = member.and_then(|m| past.state.place_of(m));
            past.state = domain::evolve(std::mem::take(&mut past.state), event);
            past.version = *version;
            if let Some(member) = member
                && past.state.place_of(member) != before
            {
                past.since.insert(member, *at);
            }
        }
        past
    }

    fn entries(&self) -> Vec<pb::RosterEntry> {
        let entry = |member: Uuid, place: Place, line: u32| pb::RosterEntry {
            member_id: member.to_string(),
            place: place_to_pb(place) as i32,
            waitlist_position: line,
            since: self.since.get(&member).copied().map(timestamp),
            expires_at: None,
        };
        let mut entries: Vec<pb::RosterEntry> = Vec::new();
        entries.extend(
            self.state
                .facilitators()
                .iter()
                .map(|m| entry(*m, Place::Facilitator, 0)),
        );
        entries.extend(self.state.seated().map(|m| entry(m, Place::Seat, 0)));
        entries.extend(self.state.invitations().map(|i| pb::RosterEntry {
            expires_at: Some(timestamp(i.expires_at)),
            ..entry(i.member_id, Place::Invitation, 0)
        }));
        entries.extend(
            self.state
                .waitlist()
                .zip(1u32..)
                .map(|(m, line)| entry(m, Place::Waitlist, line)),
        );
        entries
    }
}
