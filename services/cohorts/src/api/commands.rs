//! The mutating calls: authenticate, validate every field, then run the command. Every call on an
//! existing cohort goes through [`Api::command`]; each handler only says how its fields become an
//! [`Action`].

use kith_platform::validation::Violations;
use kith_proto::cohorts as pb;
use kith_proto::platform::Committed;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::parse::{self, DetailFields};
use super::{Api, derived_id};
use crate::domain::{Action, Place};

type Reply<T> = Result<Response<T>, Status>;

/// A request that runs one command on an existing cohort.
pub(super) trait CohortCommand: prost::Message + prost::Name {
    fn request_id(&self) -> &str;
    fn cohort_id(&self) -> &str;
    /// A membership version of the cohort's community to wait for; 0 waits for nothing.
    fn community_version(&self) -> i64 {
        0
    }
}

macro_rules! cohort_commands {
    ($($request:ty),* $(,)?) => {
        $(impl CohortCommand for $request {
            fn request_id(&self) -> &str {
                &self.request_id
            }
            fn cohort_id(&self) -> &str {
                &self.cohort_id
            }
        })*
    };
}

macro_rules! cohort_commands_with_version {
    ($($request:ty),* $(,)?) => {
        $(impl CohortCommand for $request {
            fn request_id(&self) -> &str {
                &self.request_id
            }
            fn cohort_id(&self) -> &str {
                &self.cohort_id
            }
            fn community_version(&self) -> i64 {
                self.community_version
            }
        })*
    };
}

cohort_commands!(
    pb::UpdateCohortRequest,
    pb::OpenCohortRequest,
    pb::StartCohortRequest,
    pb::CloseCohortRequest,
    pb::GraduateCohortRequest,
    pb::ArchiveCohortRequest,
    pb::RemoveFacilitatorRequest,
    pb::LeaveCohortRequest,
    pb::RemoveFromCohortRequest,
    pb::DeclineCohortInvitationRequest,
    pb::RevokeCohortInvitationRequest,
    pb::ScheduleSessionRequest,
    pb::RescheduleSessionRequest,
    pb::CancelSessionRequest,
    pb::RespondToSessionRequest,
    pb::RecordAttendanceRequest,
);

cohort_commands_with_version!(
    pb::AssignFacilitatorRequest,
    pb::JoinCohortRequest,
    pb::InviteToCohortRequest,
    pb::AcceptCohortInvitationRequest,
);

/// A reply that is only where its command landed.
trait Landed {
    fn landed(committed: Committed) -> Self;
}

macro_rules! committed_replies {
    ($($response:ty),* $(,)?) => {
        $(impl Landed for $response {
            fn landed(committed: Committed) -> Self {
                Self {
                    committed: Some(committed),
                }
            }
        })*
    };
}

committed_replies!(
    pb::UpdateCohortResponse,
    pb::OpenCohortResponse,
    pb::StartCohortResponse,
    pb::CloseCohortResponse,
    pb::GraduateCohortResponse,
    pb::ArchiveCohortResponse,
    pb::AssignFacilitatorResponse,
    pb::RemoveFacilitatorResponse,
    pb::LeaveCohortResponse,
    pb::RemoveFromCohortResponse,
    pb::InviteToCohortResponse,
    pb::AcceptCohortInvitationResponse,
    pb::DeclineCohortInvitationResponse,
    pb::RevokeCohortInvitationResponse,
    pb::RescheduleSessionResponse,
    pb::CancelSessionResponse,
    pb::RespondToSessionResponse,
    pb::RecordAttendanceResponse,
);

fn reply<T>(message: T) -> Reply<T> {
    Ok(Response::new(message))
}

fn incomplete() -> Status {
    Status::internal("request validation was incomplete")
}

impl Api {
    /// Authenticates, validates the request id, the cohort id and whatever `action` reads (all
    /// violations together), waits for the community version asked for, then runs the command.
    async fn command<T: CohortCommand>(
        &self,
        request: &Request<T>,
        action: impl FnOnce(&T, &mut Violations) -> Option<Action>,
    ) -> Result<Committed, Status> {
        let caller = self.caller(request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let request_id = v.request_id(r.request_id());
        let cohort = v.uuid("cohort_id", r.cohort_id());
        let version = parse::community_version(&mut v, r.community_version());
        let action = action(r, &mut v);
        v.finish()?;
        let (Some(request_id), Some(cohort), Some(action)) = (request_id, cohort, action) else {
            return Err(incomplete());
        };
        let origin = self.origin(cohort).await?;
        if let Some(origin) = origin {
            self.wait_for_community(origin.community, version).await?;
        }
        self.run(request, caller, &request_id, cohort, origin, action)
            .await
    }

    /// A command that needs nothing beyond the cohort id.
    async fn simple<T: CohortCommand>(
        &self,
        request: &Request<T>,
        action: Action,
    ) -> Result<Committed, Status> {
        self.command(request, |_, _| Some(action)).await
    }

    /// A command about another member named by the request's `member_id`.
    async fn about_member<T: CohortCommand>(
        &self,
        request: &Request<T>,
        member_id: impl FnOnce(&T) -> &str,
        action: impl FnOnce(Uuid) -> Action,
    ) -> Result<Committed, Status> {
        self.command(request, |r, v| {
            v.uuid("member_id", member_id(r)).map(action)
        })
        .await
    }

    pub(super) async fn create_cohort(
        &self,
        request: Request<pb::CreateCohortRequest>,
    ) -> Reply<pb::CreateCohortResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let request_id = v.request_id(&r.request_id);
        let community = v.uuid("community_id", &r.community_id);
        let version = parse::community_version(&mut v, r.community_version);
        let kind = parse::kind(&mut v, r.kind);
        // The details are checked even when the kind is wrong, so that every bad field is named
        // at once; the kind only picks the default capacity.
        let details = parse::details(
            &mut v,
            DetailFields {
                name: &r.name,
                capacity: r.capacity,
                starts_on: r.starts_on.as_ref(),
                ends_on: r.ends_on.as_ref(),
                time_zone: &r.time_zone,
                goal: &r.goal,
            },
            kind.unwrap_or(crate::domain::Kind::Mastermind),
        )
        .filter(|_| kind.is_some());
        v.finish()?;
        let (Some(request_id), Some(community), Some(details)) = (request_id, community, details)
        else {
            return Err(incomplete());
        };
        self.wait_for_community(community, version).await?;
        // Derived from the request id, so a retry lands on the same cohort and replays.
        let cohort = derived_id(caller, &request_id, "cohort");
        let committed = self
            .run(
                &request,
                caller,
                &request_id,
                cohort,
                Some(super::Origin {
                    community,
                    kind: details.kind,
                }),
                Action::CreateCohort {
                    community_id: community,
                    details,
                },
            )
            .await?;
        reply(pb::CreateCohortResponse {
            cohort_id: cohort.to_string(),
            committed: Some(committed),
        })
    }

    pub(super) async fn update_cohort(
        &self,
        request: Request<pb::UpdateCohortRequest>,
    ) -> Reply<pb::UpdateCohortResponse> {
        // The kind is not changeable; `run` fills in the one the cohort was created as.
        let committed = self
            .command(&request, |r, v| {
                parse::details(
                    v,
                    DetailFields {
                        name: &r.name,
                        capacity: Some(r.capacity),
                        starts_on: r.starts_on.as_ref(),
                        ends_on: r.ends_on.as_ref(),
                        time_zone: &r.time_zone,
                        goal: &r.goal,
                    },
                    crate::domain::Kind::Mastermind,
                )
                .map(|details| Action::UpdateCohort { details })
            })
            .await?;
        reply(Landed::landed(committed))
    }

    pub(super) async fn open_cohort(
        &self,
        request: Request<pb::OpenCohortRequest>,
    ) -> Reply<pb::OpenCohortResponse> {
        let committed = self.simple(&request, Action::OpenCohort).await?;
        reply(Landed::landed(committed))
    }

    pub(super) async fn start_cohort(
        &self,
        request: Request<pb::StartCohortRequest>,
    ) -> Reply<pb::StartCohortResponse> {
        let committed = self.simple(&request, Action::StartCohort).await?;
        reply(Landed::landed(committed))
    }

    pub(super) async fn close_cohort(
        &self,
        request: Request<pb::CloseCohortRequest>,
    ) -> Reply<pb::CloseCohortResponse> {
        let committed = self.simple(&request, Action::CloseCohort).await?;
        reply(Landed::landed(committed))
    }

    pub(super) async fn graduate_cohort(
        &self,
        request: Request<pb::GraduateCohortRequest>,
    ) -> Reply<pb::GraduateCohortResponse> {
        let committed = self.simple(&request, Action::GraduateCohort).await?;
        reply(Landed::landed(committed))
    }

    pub(super) async fn archive_cohort(
        &self,
        request: Request<pb::ArchiveCohortRequest>,
    ) -> Reply<pb::ArchiveCohortResponse> {
        let committed = self.simple(&request, Action::ArchiveCohort).await?;
        reply(Landed::landed(committed))
    }

    pub(super) async fn assign_facilitator(
        &self,
        request: Request<pb::AssignFacilitatorRequest>,
    ) -> Reply<pb::AssignFacilitatorResponse> {
        let committed = self
            .about_member(
                &request,
                |r| &r.member_id,
                |member_id| Action::AssignFacilitator {
                    member_id,
                    member_role: None,
                },
            )
            .await?;
        reply(Landed::landed(committed))
    }

    pub(super) async fn remove_facilitator(
        &self,
        request: Request<pb::RemoveFacilitatorRequest>,
    ) -> Reply<pb::RemoveFacilitatorResponse> {
        let committed = self
            .about_member(
                &request,
                |r| &r.member_id,
                |member_id| Action::RemoveFacilitator { member_id },
            )
            .await?;
        reply(Landed::landed(committed))
    }

    pub(super) async fn join_cohort(
        &self,
        request: Request<pb::JoinCohortRequest>,
    ) -> Reply<pb::JoinCohortResponse> {
        let committed = self.simple(&request, Action::JoinCohort).await?;
        let place = self.place_after(&committed).await?;
        reply(pb::JoinCohortResponse {
            place: crate::codec::place_to_pb(place) as i32,
            committed: Some(committed),
        })
    }

    /// Where a join left the caller, read from the command's last event (the join itself comes
    /// after any expiries it recorded), so a retried call answers the same as the first.
    async fn place_after(&self, committed: &Committed) -> Result<Place, Status> {
        let event = self
            .repository
            .log()
            .event_at(committed.position)
            .await
            .map_err(|err| kith_platform::grpc::status_from_platform(&err))?
            .ok_or_else(|| Status::internal("the join's event is missing"))?;
        match crate::codec::decode_one(&event)
            .map_err(|err| kith_platform::grpc::status_from_platform(&err))?
        {
            crate::domain::Event::MemberWaitlisted { .. } => Ok(Place::Waitlist),
            _ => Ok(Place::Seat),
        }
    }

    pub(super) async fn leave_cohort(
        &self,
        request: Request<pb::LeaveCohortRequest>,
    ) -> Reply<pb::LeaveCohortResponse> {
        let committed = self.simple(&request, Action::LeaveCohort).await?;
        reply(Landed::landed(committed))
    }

    pub(super) async fn remove_from_cohort(
        &self,
        request: Request<pb::RemoveFromCohortRequest>,
    ) -> Reply<pb::RemoveFromCohortResponse> {
        let committed = self
            .about_member(
                &request,
                |r| &r.member_id,
                |member_id| Action::RemoveMember { member_id },
            )
            .await?;
        reply(Landed::landed(committed))
    }

    pub(super) async fn invite_to_cohort(
        &self,
        request: Request<pb::InviteToCohortRequest>,
    ) -> Reply<pb::InviteToCohortResponse> {
        let committed = self
            .command(&request, |r, v| {
                let member_id = v.uuid("member_id", &r.member_id);
                let expires_at = v.time("expires_at", r.expires_at.as_ref());
                Some(Action::InviteMember {
                    member_id: member_id?,
                    member_role: None,
                    expires_at: expires_at?,
                })
            })
            .await?;
        reply(Landed::landed(committed))
    }

    pub(super) async fn accept_cohort_invitation(
        &self,
        request: Request<pb::AcceptCohortInvitationRequest>,
    ) -> Reply<pb::AcceptCohortInvitationResponse> {
        let committed = self.simple(&request, Action::AcceptInvitation).await?;
        reply(Landed::landed(committed))
    }

    pub(super) async fn decline_cohort_invitation(
        &self,
        request: Request<pb::DeclineCohortInvitationRequest>,
    ) -> Reply<pb::DeclineCohortInvitationResponse> {
        let committed = self.simple(&request, Action::DeclineInvitation).await?;
        reply(Landed::landed(committed))
    }

    pub(super) async fn revoke_cohort_invitation(
        &self,
        request: Request<pb::RevokeCohortInvitationRequest>,
    ) -> Reply<pb::RevokeCohortInvitationResponse> {
        let committed = self
            .about_member(
                &request,
                |r| &r.member_id,
                |member_id| Action::RevokeInvitation { member_id },
            )
            .await?;
        reply(Landed::landed(committed))
    }

    pub(super) async fn schedule_session(
        &self,
        request: Request<pb::ScheduleSessionRequest>,
    ) -> Reply<pb::ScheduleSessionResponse> {
        let caller = self.caller(&request)?;
        let session_id = derived_id(caller, &request.get_ref().request_id, "session");
        let mut occurrences = 1;
        let committed = self
            .command(&request, |r, v| {
                let title = v.check("title", crate::domain::SessionTitle::parse(&r.title));
                let starts_at = v.time("starts_at", r.starts_at.as_ref());
                let duration = parse::minutes(v, r.duration_minutes);
                let recurrence = parse::recurrence(v, r.weekly_occurrences);
                if let Some(crate::domain::Recurrence::Weekly { occurrences: n }) = recurrence {
                    occurrences = n;
                }
                Some(Action::ScheduleSession {
                    session_id,
                    title: title?,
                    starts_at: starts_at?,
                    duration: duration?,
                    recurrence: recurrence?,
                })
            })
            .await?;
        let session_ids = (1..=occurrences)
            .map(|k| crate::domain::occurrence_id(session_id, k).to_string())
            .collect();
        reply(pb::ScheduleSessionResponse {
            session_ids,
            committed: Some(committed),
        })
    }

    pub(super) async fn reschedule_session(
        &self,
        request: Request<pb::RescheduleSessionRequest>,
    ) -> Reply<pb::RescheduleSessionResponse> {
        let committed = self
            .command(&request, |r, v| {
                let session_id = v.uuid("session_id", &r.session_id);
                let starts_at = v.time("starts_at", r.starts_at.as_ref());
                let duration = parse::minutes(v, r.duration_minutes);
                Some(Action::RescheduleSession {
                    session_id: session_id?,
                    starts_at: starts_at?,
                    duration: duration?,
                })
            })
            .await?;
        reply(Landed::landed(committed))
    }

    pub(super) async fn cancel_session(
        &self,
        request: Request<pb::CancelSessionRequest>,
    ) -> Reply<pb::CancelSessionResponse> {
        let committed = self
            .command(&request, |r, v| {
                v.uuid("session_id", &r.session_id)
                    .map(|session_id| Action::CancelSession { session_id })
            })
            .await?;
        reply(Landed::landed(committed))
    }

    pub(super) async fn respond_to_session(
        &self,
        request: Request<pb::RespondToSessionRequest>,
    ) -> Reply<pb::RespondToSessionResponse> {
        let committed = self
            .command(&request, |r, v| {
                let session_id = v.uuid("session_id", &r.session_id);
                let response = parse::rsvp(v, r.response);
                Some(Action::RespondToSession {
                    session_id: session_id?,
                    response: response?,
                })
            })
            .await?;
        reply(Landed::landed(committed))
    }

    pub(super) async fn record_attendance(
        &self,
        request: Request<pb::RecordAttendanceRequest>,
    ) -> Reply<pb::RecordAttendanceResponse> {
        let committed = self
            .command(&request, |r, v| {
                let session_id = v.uuid("session_id", &r.session_id);
                let present: Vec<Option<Uuid>> = r
                    .present
                    .iter()
                    .enumerate()
                    .map(|(i, id)| v.uuid(&format!("present[{i}]"), id))
                    .collect();
                Some(Action::RecordAttendance {
                    session_id: session_id?,
                    present: present.into_iter().collect::<Option<Vec<_>>>()?,
                })
            })
            .await?;
        reply(Landed::landed(committed))
    }
}
