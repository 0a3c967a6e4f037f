//! Membership events between the domain and the log: protobuf on the wire, personal fields sealed
//! with the member's key in that community (subject `<community_id>/<member_id>`), so erasing a
//! member in one community destroys exactly their data there.

use async_trait::async_trait;
use kith_platform::aggregate::Codec;
use kith_platform::eventlog::{NewEvent, RecordedEvent};
use kith_platform::pseudonym::handle_token;
use kith_platform::sealing::{Opener, Sealer};
use kith_platform::wire::{decode_payload, stored_id, stored_opt_id, stored_time, timestamp};
use kith_platform::{Error, Result};
use kith_proto::membership as pb;
use prost::Name;
use uuid::Uuid;

use crate::domain::{
    Answer, Bio, CommunityName, Description, DisplayName, Event, Handle, JoinPath, Language,
    Profile, Reason, Role,
};
use crate::service::CommunityDecider;

/// The sealing subject of a member's personal data in a community.
pub(crate) fn subject(community_id: &str, member_id: Uuid) -> String {
    format!("{community_id}/{member_id}")
}

/// Seals and opens membership events.
#[derive(Debug, Clone)]
pub(crate) struct MembershipCodec {
    sealer: Sealer,
}

impl MembershipCodec {
    pub(crate) fn new(sealer: Sealer) -> Self {
        Self { sealer }
    }

    async fn seal_profile(
        &self,
        community_id: &str,
        member_id: Uuid,
        profile: Option<&Profile>,
    ) -> Result<Option<pb::SealedProfile>> {
        let Some(profile) = profile else {
            return Ok(None);
        };
        let key = self
            .sealer
            .key_for(&subject(community_id, member_id))
            .await?;
        Ok(Some(pb::SealedProfile {
            display_name: Some(key.seal(profile.display_name.as_str())),
            handle: Some(key.seal(profile.handle.as_str())),
            bio: (!profile.bio.as_str().is_empty()).then(|| key.seal(profile.bio.as_str())),
            handle_token: handle_token(stored_id(community_id)?, profile.handle.as_str()),
        }))
    }

    /// Decodes one event, opening its personal fields with `opener`.
    pub(crate) async fn decode_one(
        &self,
        opener: &mut Opener,
        event: &RecordedEvent,
    ) -> Result<Event> {
        decode(opener, event).await
    }

    /// A reason sealed with the member's key; none when there is no reason.
    async fn seal_reason(
        &self,
        community: &str,
        member_id: Uuid,
        reason: &Reason,
    ) -> Result<Option<kith_proto::platform::Sealed>> {
        if reason.as_str().is_empty() {
            return Ok(None);
        }
        let key = self.sealer.key_for(&subject(community, member_id)).await?;
        Ok(Some(key.seal(reason.as_str())))
    }

    /// A reader of sealed fields.
    pub(crate) fn opener(&self) -> Opener {
        self.sealer.opener()
    }
}

fn role_to_pb(role: Role) -> pb::MemberRole {
    match role {
        Role::Owner => pb::MemberRole::Owner,
        Role::Host => pb::MemberRole::Host,
        Role::Coach => pb::MemberRole::Coach,
        Role::Moderator => pb::MemberRole::Moderator,
        Role::Member => pb::MemberRole::Member,
    }
}

/// The domain role of a wire role; `None` for UNSPECIFIED or unknown values.
pub(crate) fn role_from_pb(value: i32) -> Option<Role> {
    match pb::MemberRole::try_from(value).ok()? {
        pb::MemberRole::Owner => Some(Role::Owner),
        pb::MemberRole::Host => Some(Role::Host),
        pb::MemberRole::Coach => Some(Role::Coach),
        pb::MemberRole::Moderator => Some(Role::Moderator),
        pb::MemberRole::Member => Some(Role::Member),
        pb::MemberRole::Unspecified => None,
    }
}

/// The wire value of a role.
pub(crate) fn role_value(role: Role) -> i32 {
    role_to_pb(role) as i32
}

fn path_to_pb(path: JoinPath) -> pb::JoinPath {
    match path {
        JoinPath::Founder => pb::JoinPath::Founder,
        JoinPath::Invitation => pb::JoinPath::Invitation,
        JoinPath::JoinRequest => pb::JoinPath::JoinRequest,
    }
}

fn message<M: prost::Message + Name>(message: M) -> NewEvent {
    NewEvent::from_message(&message)
}

#[async_trait]
impl Codec<CommunityDecider> for MembershipCodec {
    async fn encode(&self, stream_id: &str, events: &[Event]) -> Result<Vec<NewEvent>> {
        let community_id = stream_id.to_owned();
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            let c = community_id.clone();
            out.push(match event {
                Event::CommunityCreated {
                    name,
                    description,
                    created_by,
                } => message(pb::CommunityCreated {
                    community_id: c,
                    name: name.as_str().to_owned(),
                    description: description.as_str().to_owned(),
                    created_by: created_by.to_string(),
                }),
                Event::CommunityUpdated {
                    name,
                    description,
                    updated_by,
                } => message(pb::CommunityUpdated {
                    community_id: c,
                    name: name.as_str().to_owned(),
                    description: description.as_str().to_owned(),
                    updated_by: updated_by.to_string(),
                }),
                Event::CommunityLanguageSet { language, set_by } => {
                    message(pb::CommunityLanguageSet {
                        community_id: c,
                        language: language.as_str().to_owned(),
                        set_by: set_by.to_string(),
                    })
                }
                Event::CommunityArchived { archived_by } => message(pb::CommunityArchived {
                    community_id: c,
                    archived_by: archived_by.to_string(),
                }),
                Event::MemberJoined {
                    member_id,
                    role,
                    path,
                    profile,
                    invitation_id,
                } => message(pb::MemberJoined {
                    profile: self.seal_profile(&c, *member_id, profile.as_ref()).await?,
                    community_id: c,
                    member_id: member_id.to_string(),
                    role: role_value(*role),
                    path: path_to_pb(*path) as i32,
                    invitation_id: invitation_id.map(|i| i.to_string()).unwrap_or_default(),
                }),
                Event::ProfileUpdated { member_id, profile } => message(pb::ProfileUpdated {
                    profile: self.seal_profile(&c, *member_id, profile.as_ref()).await?,
                    community_id: c,
                    member_id: member_id.to_string(),
                }),
                Event::RoleAssigned {
                    member_id,
                    role,
                    previous_role,
                    assigned_by,
                } => message(pb::RoleAssigned {
                    community_id: c,
                    member_id: member_id.to_string(),
                    role: role_value(*role),
                    previous_role: role_value(*previous_role),
                    assigned_by: assigned_by.to_string(),
                }),
                Event::RoleRevoked {
                    member_id,
                    role,
                    revoked_by,
                } => message(pb::RoleRevoked {
                    community_id: c,
                    member_id: member_id.to_string(),
                    role: role_value(*role),
                    revoked_by: revoked_by.to_string(),
                }),
                Event::InvitationCreated {
                    invitation_id,
                    created_by,
                    expires_at,
                    max_uses,
                } => message(pb::InvitationCreated {
                    community_id: c,
                    invitation_id: invitation_id.to_string(),
                    created_by: created_by.to_string(),
                    expires_at: Some(timestamp(*expires_at)),
                    max_uses: *max_uses,
                }),
                Event::InvitationRevoked {
                    invitation_id,
                    revoked_by,
                } => message(pb::InvitationRevoked {
                    community_id: c,
                    invitation_id: invitation_id.to_string(),
                    revoked_by: revoked_by.to_string(),
                }),
                Event::JoinRequested {
                    member_id,
                    profile,
                    answers,
                } => {
                    let sealed_answers = match answers {
                        Some(answers) if !answers.is_empty() => {
                            let key = self.sealer.key_for(&subject(&c, *member_id)).await?;
                            answers.iter().map(|a| key.seal(a.as_str())).collect()
                        }
                        _ => Vec::new(),
                    };
                    message(pb::JoinRequested {
                        profile: self.seal_profile(&c, *member_id, profile.as_ref()).await?,
                        community_id: c,
                        member_id: member_id.to_string(),
                        answers: sealed_answers,
                    })
                }
                Event::JoinRequestApproved {
                    member_id,
                    approved_by,
                } => message(pb::JoinRequestApproved {
                    community_id: c,
                    member_id: member_id.to_string(),
                    approved_by: approved_by.to_string(),
                }),
                Event::JoinRequestRejected {
                    member_id,
                    rejected_by,
                    reason,
                } => message(pb::JoinRequestRejected {
                    sealed_reason: self.seal_reason(&c, *member_id, reason).await?,
                    community_id: c,
                    member_id: member_id.to_string(),
                    rejected_by: rejected_by.to_string(),
                    reason: String::new(),
                }),
                Event::MemberLeft { member_id } => message(pb::MemberLeft {
                    community_id: c,
                    member_id: member_id.to_string(),
                }),
                Event::MemberRemoved {
                    member_id,
                    removed_by,
                    reason,
                } => message(pb::MemberRemoved {
                    sealed_reason: self.seal_reason(&c, *member_id, reason).await?,
                    community_id: c,
                    member_id: member_id.to_string(),
                    removed_by: removed_by.to_string(),
                    reason: String::new(),
                }),
                Event::MemberBanned {
                    member_id,
                    banned_by,
                    reason,
                    was_member,
                } => message(pb::MemberBanned {
                    sealed_reason: self.seal_reason(&c, *member_id, reason).await?,
                    community_id: c,
                    member_id: member_id.to_string(),
                    banned_by: banned_by.to_string(),
                    reason: String::new(),
                    was_member: *was_member,
                }),
                Event::MemberUnbanned {
                    member_id,
                    unbanned_by,
                } => message(pb::MemberUnbanned {
                    community_id: c,
                    member_id: member_id.to_string(),
                    unbanned_by: unbanned_by.to_string(),
                }),
                Event::JoinRequestWithdrawn { member_id } => message(pb::JoinRequestWithdrawn {
                    community_id: c,
                    member_id: member_id.to_string(),
                }),
                Event::MemberErased {
                    member_id,
                    erased_by,
                    was_member,
                } => message(pb::MemberErased {
                    community_id: c,
                    member_id: member_id.to_string(),
                    erased_by: erased_by.to_string(),
                    was_member: *was_member,
                }),
            });
        }
        Ok(out)
    }

    async fn decode(&self, events: &[RecordedEvent]) -> Result<Vec<Event>> {
        let mut opener = self.sealer.opener();
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            out.push(decode(&mut opener, event).await?);
        }
        Ok(out)
    }

    fn erased_subjects(&self, stream_id: &str, events: &[Event]) -> Vec<String> {
        events
            .iter()
            .filter_map(|event| match event {
                Event::MemberErased { member_id, .. } => Some(subject(stream_id, *member_id)),
                _ => None,
            })
            .collect()
    }
}

async fn open_profile(
    opener: &mut Opener,
    sealed: Option<&pb::SealedProfile>,
) -> Result<Option<Profile>> {
    let Some(sealed) = sealed else {
        return Ok(None);
    };
    let display_name = opener.open(sealed.display_name.as_ref()).await?;
    let handle = opener.open(sealed.handle.as_ref()).await?;
    let bio = opener.open(sealed.bio.as_ref()).await?.unwrap_or_default();
    let (Some(display_name), Some(handle)) = (display_name, handle) else {
        return Ok(None);
    };
    Ok(Some(Profile {
        display_name: DisplayName::from_stored(display_name),
        handle: Handle::from_stored(handle),
        bio: Bio::from_stored(bio),
    }))
}

/// A reason as stored: sealed (empty once the member is erased), or in plain text in events
/// written before reasons were sealed.
async fn open_reason(
    opener: &mut Opener,
    plain: &str,
    sealed: Option<&kith_proto::platform::Sealed>,
) -> Result<Reason> {
    Ok(match sealed {
        Some(sealed) => Reason::from_stored(opener.open(Some(sealed)).await?.unwrap_or_default()),
        None => Reason::from_stored(plain),
    })
}

fn role(value: i32) -> Result<Role> {
    role_from_pb(value).ok_or_else(|| Error::Codec(format!("unknown role {value}")))
}

/// Decodes one stored membership event into the domain.
pub(crate) async fn decode(opener: &mut Opener, event: &RecordedEvent) -> Result<Event> {
    let t = event.event_type.as_str();
    Ok(if t == pb::CommunityCreated::full_name() {
        let e: pb::CommunityCreated = decode_payload(event)?;
        Event::CommunityCreated {
            name: CommunityName::from_stored(e.name),
            description: Description::from_stored(e.description),
            created_by: stored_id(&e.created_by)?,
        }
    } else if t == pb::CommunityUpdated::full_name() {
        let e: pb::CommunityUpdated = decode_payload(event)?;
        Event::CommunityUpdated {
            name: CommunityName::from_stored(e.name),
            description: Description::from_stored(e.description),
            updated_by: stored_id(&e.updated_by)?,
        }
    } else if t == pb::CommunityLanguageSet::full_name() {
        let e: pb::CommunityLanguageSet = decode_payload(event)?;
        Event::CommunityLanguageSet {
            language: Language::from_stored(e.language),
            set_by: stored_id(&e.set_by)?,
        }
    } else if t == pb::CommunityArchived::full_name() {
        let e: pb::CommunityArchived = decode_payload(event)?;
        Event::CommunityArchived {
            archived_by: stored_id(&e.archived_by)?,
        }
    } else if t == pb::MemberJoined::full_name() {
        let e: pb::MemberJoined = decode_payload(event)?;
        let path = match pb::JoinPath::try_from(e.path) {
            Ok(pb::JoinPath::Founder) => JoinPath::Founder,
            Ok(pb::JoinPath::Invitation) => JoinPath::Invitation,
            Ok(pb::JoinPath::JoinRequest) => JoinPath::JoinRequest,
            _ => return Err(Error::Codec(format!("unknown join path {}", e.path))),
        };
        Event::MemberJoined {
            member_id: stored_id(&e.member_id)?,
            role: role(e.role)?,
            path,
            profile: open_profile(opener, e.profile.as_ref()).await?,
            invitation_id: stored_opt_id(&e.invitation_id)?,
        }
    } else if t == pb::ProfileUpdated::full_name() {
        let e: pb::ProfileUpdated = decode_payload(event)?;
        Event::ProfileUpdated {
            member_id: stored_id(&e.member_id)?,
            profile: open_profile(opener, e.profile.as_ref()).await?,
        }
    } else if t == pb::RoleAssigned::full_name() {
        let e: pb::RoleAssigned = decode_payload(event)?;
        Event::RoleAssigned {
            member_id: stored_id(&e.member_id)?,
            role: role(e.role)?,
            previous_role: role(e.previous_role)?,
            assigned_by: stored_id(&e.assigned_by)?,
        }
    } else if t == pb::RoleRevoked::full_name() {
        let e: pb::RoleRevoked = decode_payload(event)?;
        Event::RoleRevoked {
            member_id: stored_id(&e.member_id)?,
            role: role(e.role)?,
            revoked_by: stored_id(&e.revoked_by)?,
        }
    } else if t == pb::InvitationCreated::full_name() {
        let e: pb::InvitationCreated = decode_payload(event)?;
        Event::InvitationCreated {
            invitation_id: stored_id(&e.invitation_id)?,
            created_by: stored_id(&e.created_by)?,
            expires_at: stored_time(e.expires_at.as_ref())?,
            max_uses: e.max_uses,
        }
    } else if t == pb::InvitationRevoked::full_name() {
        let e: pb::InvitationRevoked = decode_payload(event)?;
        Event::InvitationRevoked {
            invitation_id: stored_id(&e.invitation_id)?,
            revoked_by: stored_id(&e.revoked_by)?,
        }
    } else if t == pb::JoinRequested::full_name() {
        let e: pb::JoinRequested = decode_payload(event)?;
        let mut answers = Vec::with_capacity(e.answers.len());
        let mut readable = true;
        for sealed in &e.answers {
            match opener.open(Some(sealed)).await? {
                Some(answer) => answers.push(Answer::from_stored(answer)),
                None => readable = false,
            }
        }
        Event::JoinRequested {
            member_id: stored_id(&e.member_id)?,
            profile: open_profile(opener, e.profile.as_ref()).await?,
            answers: readable.then_some(answers),
        }
    } else if t == pb::JoinRequestApproved::full_name() {
        let e: pb::JoinRequestApproved = decode_payload(event)?;
        Event::JoinRequestApproved {
            member_id: stored_id(&e.member_id)?,
            approved_by: stored_id(&e.approved_by)?,
        }
    } else if t == pb::JoinRequestRejected::full_name() {
        let e: pb::JoinRequestRejected = decode_payload(event)?;
        Event::JoinRequestRejected {
            member_id: stored_id(&e.member_id)?,
            rejected_by: stored_id(&e.rejected_by)?,
            reason: open_reason(opener, &e.reason, e.sealed_reason.as_ref()).await?,
        }
    } else if t == pb::MemberLeft::full_name() {
        let e: pb::MemberLeft = decode_payload(event)?;
        Event::MemberLeft {
            member_id: stored_id(&e.member_id)?,
        }
    } else if t == pb::MemberRemoved::full_name() {
        let e: pb::MemberRemoved = decode_payload(event)?;
        Event::MemberRemoved {
            member_id: stored_id(&e.member_id)?,
            removed_by: stored_id(&e.removed_by)?,
            reason: open_reason(opener, &e.reason, e.sealed_reason.as_ref()).await?,
        }
    } else if t == pb::MemberBanned::full_name() {
        let e: pb::MemberBanned = decode_payload(event)?;
        Event::MemberBanned {
            member_id: stored_id(&e.member_id)?,
            banned_by: stored_id(&e.banned_by)?,
            reason: open_reason(opener, &e.reason, e.sealed_reason.as_ref()).await?,
            was_member: e.was_member,
        }
    } else if t == pb::MemberUnbanned::full_name() {
        let e: pb::MemberUnbanned = decode_payload(event)?;
        Event::MemberUnbanned {
            member_id: stored_id(&e.member_id)?,
            unbanned_by: stored_id(&e.unbanned_by)?,
        }
    } else if t == pb::JoinRequestWithdrawn::full_name() {
        let e: pb::JoinRequestWithdrawn = decode_payload(event)?;
        Event::JoinRequestWithdrawn {
            member_id: stored_id(&e.member_id)?,
        }
    } else if t == pb::MemberErased::full_name() {
        let e: pb::MemberErased = decode_payload(event)?;
        Event::MemberErased {
            member_id: stored_id(&e.member_id)?,
            erased_by: stored_id(&e.erased_by)?,
            was_member: e.was_member,
        }
    } else {
        return Err(Error::Codec(format!("unknown membership event type {t}")));
    })
}
