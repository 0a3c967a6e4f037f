//! The mutating calls: authenticate, validate every field (all violations at once), then run the
//! command with the caller's access.

use chrono::Utc;
use kith_platform::aggregate::Rejected;
use kith_platform::command::{self, command_key, committed, status_from_rejected};
use kith_platform::eventlog::Appended;
use kith_platform::grpc::status_from_platform;
use kith_platform::paging::status_from_db;
use kith_platform::pseudonym::handle_token;
use kith_platform::validation::Violations;
use kith_proto::messaging as pb;
use kith_proto::platform::Committed;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{Api, ID_NAMESPACE, derived_id, direct_id};
use crate::domain::{
    Action, Body, Command, ConversationKind, DomainError, MAX_DIRECT_PARTICIPANTS, MAX_MENTIONS,
    Mentions, Reaction, ReaderAction, ReaderCommand, Title, WrittenMentions,
};

type Reply<T> = Result<Response<T>, Status>;

fn incomplete() -> Status {
    Status::internal("request validation was incomplete")
}

/// Checks a text field with the domain's parser, naming the field.
fn text<T>(
    v: &mut Violations,
    field: &str,
    raw: &str,
    parse: impl FnOnce(&str) -> Result<T, crate::domain::InvalidValue>,
) -> Option<T> {
    v.check(field, parse(raw))
}

/// An optional title: empty means none.
fn title(v: &mut Violations, raw: &str) -> Option<Option<Title>> {
    if raw.is_empty() {
        Some(None)
    } else {
        text(v, "title", raw, Title::parse).map(Some)
    }
}

/// An optional id: empty means none.
fn optional_id(v: &mut Violations, field: &str, raw: &str) -> Option<Option<Uuid>> {
    if raw.is_empty() {
        Some(None)
    } else {
        v.uuid(field, raw).map(Some)
    }
}

/// A body, and the mentions written in it (at most [`MAX_MENTIONS`] handles).
fn body_with_mentions(v: &mut Violations, raw: &str) -> Option<(Body, WrittenMentions)> {
    let body = text(v, "body", raw, Body::parse)?;
    let written = v.check(
        "body",
        WrittenMentions::find(&body).map_err(DomainError::TooManyMentions),
    )?;
    Some((body, written))
}

impl Api {
    /// Who `written` mentions: everyone for `@cohort`, and each handle that names someone other
    /// than the author who reads the conversation now, in the order first written. A handle that
    /// names nobody who reads it stays plain text. Costs nothing when no handle is written.
    async fn mentioned(
        &self,
        conversation: Uuid,
        author: Uuid,
        written: &WrittenMentions,
    ) -> Result<Mentions, Status> {
        let mut mentions = Mentions {
            members: Vec::new(),
            everyone: written.everyone,
        };
        if written.handles.is_empty() {
            return Ok(mentions);
        }
        // Unknown: the command is refused for it in a moment.
        let Some(known) = self.known_soon(conversation).await? else {
            return Ok(mentions);
        };
        let token = |handle: &str| handle_token(known.community, handle);
        let tokens: Vec<Vec<u8>> = written.lookups().map(token).collect();
        let named: Vec<(Uuid, Vec<u8>)> = sqlx::query_as(
            "SELECT m.member_id, m.handle_token FROM community_members m
             WHERE m.community_id = $1 AND m.active AND m.handle_token = ANY($2)
               AND m.member_id <> $3
               AND CASE WHEN $4 THEN EXISTS (
                        SELECT 1 FROM cohort_places p
                        WHERE p.cohort_id = $5 AND p.member_id = m.member_id
                          AND p.place IN ('seat', 'facilitator'))
                   ELSE m.member_id = ANY($6) END",
        )
        .bind(known.community)
        .bind(&tokens)
        .bind(author)
        .bind(known.kind == ConversationKind::Cohort)
        .bind(conversation)
        .bind(&known.participants)
        .fetch_all(&self.pool)
        .await
        .map_err(status_from_db)?;
        for forms in &written.handles {
            let member = forms.iter().find_map(|form| {
                let wanted = token(form);
                named.iter().find(|(_, t)| *t == wanted).map(|(id, _)| *id)
            });
            if let Some(member) = member
                && !mentions.members.contains(&member)
            {
                mentions.members.push(member);
            }
        }
        debug_assert!(mentions.members.len() <= MAX_MENTIONS);
        Ok(mentions)
    }

    /// Runs a conversation command for `caller`: its access as this replica knows it, and once
    /// more after a short grace when refused for who the caller is and that is changing.
    async fn converse<T: prost::Message + prost::Name>(
        &self,
        request: &Request<T>,
        caller: Uuid,
        request_id: &str,
        conversation: Uuid,
        action: Action,
    ) -> Result<Appended, Status> {
        let key = command_key(request, caller, request_id);
        let metadata = command::metadata(request, &ID_NAMESPACE, caller, request_id);
        let known = self.known_soon(conversation).await?;
        let mut access = match &known {
            Some(known) => self.access_now(conversation, known, caller).await?,
            None => Default::default(),
        };
        // A new message's key, written before the command joins its conversation's queue; only
        // for a reader, so that refused posts write nothing.
        if let (Action::Post { message_id, .. }, Some(known), true) =
            (&action, &known, access.reader)
        {
            self.codec
                .prepare_message_key(known.community, caller, *message_id)
                .await
                .map_err(|err| status_from_platform(&err))?;
        }
        let mut retried = false;
        loop {
            let command = Command {
                actor: caller,
                access,
                origin: known.as_ref().and_then(|k| Self::origin(conversation, k)),
                now: Utc::now(),
                action: action.clone(),
            };
            match self
                .conversations
                .execute(&conversation.to_string(), Some(&key), &metadata, &command)
                .await
            {
                Ok(appended) => return Ok(appended),
                Err(Rejected::Domain(DomainError::NotAReader | DomainError::Forbidden(_)))
                    if !retried
                        && let Some(known) = &known
                        && let Some(now) = self
                            .access_changes(conversation, known, caller, access)
                            .await? =>
                {
                    retried = true;
                    access = now;
                }
                Err(rejected) => return Err(status_from_rejected(&rejected)),
            }
        }
    }

    pub(super) async fn post_message(
        &self,
        request: Request<pb::PostMessageRequest>,
    ) -> Reply<pb::PostMessageResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let request_id = v.request_id(&r.request_id);
        let conversation = v.uuid("conversation_id", &r.conversation_id);
        let thread = optional_id(&mut v, "thread_id", &r.thread_id);
        let title = title(&mut v, &r.title);
        let body = body_with_mentions(&mut v, &r.body);
        v.finish()?;
        let (
            Some(request_id),
            Some(conversation),
            Some(thread),
            Some(title),
            Some((body, written)),
        ) = (request_id, conversation, thread, title, body)
        else {
            return Err(incomplete());
        };
        let message_id = derived_id(caller, &request_id, "message");
        let mentions = self.mentioned(conversation, caller, &written).await?;
        let appended = self
            .converse(
                &request,
                caller,
                &request_id,
                conversation,
                Action::Post {
                    message_id,
                    thread,
                    title,
                    body,
                    mentions,
                },
            )
            .await?;
        Ok(Response::new(pb::PostMessageResponse {
            seq: appended.version,
            committed: Some(committed(appended)),
            message_id: message_id.to_string(),
        }))
    }

    pub(super) async fn edit_message(
        &self,
        request: Request<pb::EditMessageRequest>,
    ) -> Reply<pb::EditMessageResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let request_id = v.request_id(&r.request_id);
        let conversation = v.uuid("conversation_id", &r.conversation_id);
        let message_id = v.uuid("message_id", &r.message_id);
        let title = title(&mut v, &r.title);
        let body = body_with_mentions(&mut v, &r.body);
        v.finish()?;
        let (
            Some(request_id),
            Some(conversation),
            Some(message_id),
            Some(title),
            Some((body, written)),
        ) = (request_id, conversation, message_id, title, body)
        else {
            return Err(incomplete());
        };
        let mentions = self.mentioned(conversation, caller, &written).await?;
        let appended = self
            .converse(
                &request,
                caller,
                &request_id,
                conversation,
                Action::Edit {
                    message_id,
                    title,
                    body,
                    mentions,
                },
            )
            .await?;
        Ok(Response::new(pb::EditMessageResponse {
            committed: Some(committed(appended)),
        }))
    }

    pub(super) async fn delete_message(
        &self,
        request: Request<pb::DeleteMessageRequest>,
    ) -> Reply<pb::DeleteMessageResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let request_id = v.request_id(&r.request_id);
        let conversation = v.uuid("conversation_id", &r.conversation_id);
        let message_id = v.uuid("message_id", &r.message_id);
        v.finish()?;
        let (Some(request_id), Some(conversation), Some(message_id)) =
            (request_id, conversation, message_id)
        else {
            return Err(incomplete());
        };
        let appended = self
            .converse(
                &request,
                caller,
                &request_id,
                conversation,
                Action::Delete { message_id },
            )
            .await?;
        Ok(Response::new(pb::DeleteMessageResponse {
            committed: Some(committed(appended)),
        }))
    }

    /// Adding and removing a reaction: the same fields, another action.
    async fn reaction<T: prost::Message + prost::Name>(
        &self,
        request: &Request<T>,
        fields: (&str, &str, &str, &str),
        action: impl FnOnce(Uuid, Reaction) -> Action,
    ) -> Result<Committed, Status> {
        let caller = self.caller(request)?;
        let (request_id, conversation, message_id, reaction) = fields;
        let mut v = Violations::new();
        let request_id = v.request_id(request_id);
        let conversation = v.uuid("conversation_id", conversation);
        let message_id = v.uuid("message_id", message_id);
        let reaction = text(&mut v, "reaction", reaction, Reaction::parse);
        v.finish()?;
        let (Some(request_id), Some(conversation), Some(message_id), Some(reaction)) =
            (request_id, conversation, message_id, reaction)
        else {
            return Err(incomplete());
        };
        self.converse(
            request,
            caller,
            &request_id,
            conversation,
            action(message_id, reaction),
        )
        .await
        .map(committed)
    }

    pub(super) async fn add_reaction(
        &self,
        request: Request<pb::AddReactionRequest>,
    ) -> Reply<pb::AddReactionResponse> {
        let r = request.get_ref();
        let fields = (
            r.request_id.as_str(),
            r.conversation_id.as_str(),
            r.message_id.as_str(),
            r.reaction.as_str(),
        );
        let committed = self
            .reaction(&request, fields, |message_id, reaction| Action::React {
                message_id,
                reaction,
            })
            .await?;
        Ok(Response::new(pb::AddReactionResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn remove_reaction(
        &self,
        request: Request<pb::RemoveReactionRequest>,
    ) -> Reply<pb::RemoveReactionResponse> {
        let r = request.get_ref();
        let fields = (
            r.request_id.as_str(),
            r.conversation_id.as_str(),
            r.message_id.as_str(),
            r.reaction.as_str(),
        );
        let committed = self
            .reaction(&request, fields, |message_id, reaction| Action::Unreact {
                message_id,
                reaction,
            })
            .await?;
        Ok(Response::new(pb::RemoveReactionResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn open_direct_conversation(
        &self,
        request: Request<pb::OpenDirectConversationRequest>,
    ) -> Reply<pb::OpenDirectConversationResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let request_id = v.request_id(&r.request_id);
        let community = v.uuid("community_id", &r.community_id);
        let mut others = Vec::new();
        for (i, id) in r.participant_ids.iter().enumerate() {
            if let Some(id) = v.uuid(&format!("participant_ids[{i}]"), id) {
                others.push(id);
            }
        }
        if r.participant_ids.is_empty() || r.participant_ids.len() >= MAX_DIRECT_PARTICIPANTS {
            v.add(
                "participant_ids",
                format!(
                    "names 1 to {} others (a direct conversation is 2 to {MAX_DIRECT_PARTICIPANTS} people)",
                    MAX_DIRECT_PARTICIPANTS - 1
                ),
            );
        }
        v.finish()?;
        let (Some(request_id), Some(community)) = (request_id, community) else {
            return Err(incomplete());
        };
        let mut participants = others;
        participants.push(caller);
        participants.sort();
        let conversation = direct_id(community, &participants);
        let mut not_members = Vec::new();
        for participant in &participants {
            if self.role_in(community, *participant).await?.is_none() {
                not_members.push(*participant);
            }
        }
        // Someone who joined a moment ago is not refused while the event is on its way.
        if !not_members.is_empty() {
            let deadline = tokio::time::Instant::now() + super::STANDING_GRACE;
            let found = self
                .members
                .wait_until(deadline, || async {
                    for participant in &not_members {
                        let active: Option<bool> = sqlx::query_scalar(
                            "SELECT active FROM community_members WHERE community_id = $1 AND member_id = $2",
                        )
                        .bind(community)
                        .bind(participant)
                        .fetch_optional(&self.pool)
                        .await?;
                        if active != Some(true) {
                            return Ok(None);
                        }
                    }
                    Ok(Some(()))
                })
                .await
                .map_err(|err| kith_platform::grpc::status_from_platform(&err))?;
            if found.is_some() {
                not_members.clear();
            }
        }
        let key = command_key(&request, caller, &request_id);
        let metadata = command::metadata(&request, &ID_NAMESPACE, caller, &request_id);
        let command = Command {
            actor: caller,
            access: crate::domain::Access {
                reader: true,
                ..Default::default()
            },
            origin: None,
            now: Utc::now(),
            action: Action::OpenDirect {
                community_id: community,
                participants,
                not_members,
            },
        };
        let appended = self
            .conversations
            .execute(&conversation.to_string(), Some(&key), &metadata, &command)
            .await
            .map_err(|rejected| status_from_rejected(&rejected))?;
        Ok(Response::new(pb::OpenDirectConversationResponse {
            committed: Some(committed(appended)),
            conversation_id: conversation.to_string(),
        }))
    }

    pub(super) async fn mark_read(
        &self,
        request: Request<pb::MarkReadRequest>,
    ) -> Reply<pb::MarkReadResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let request_id = v.request_id(&r.request_id);
        let conversation = v.uuid("conversation_id", &r.conversation_id);
        let thread = optional_id(&mut v, "thread_id", &r.thread_id);
        if r.seq < 1 {
            v.add("seq", "must be the seq of a message (1 or more)");
        }
        v.finish()?;
        let (Some(request_id), Some(conversation), Some(thread)) =
            (request_id, conversation, thread)
        else {
            return Err(incomplete());
        };
        let known = self.reader_of(conversation, caller).await?;
        let stream = conversation.to_string();
        let last = kith_platform::eventlog::versions(&self.pool, std::slice::from_ref(&stream))
            .await
            .map_err(|err| status_from_platform(&err))?
            .get(&stream)
            .copied();
        let mut v = Violations::new();
        if r.seq > last.unwrap_or(0) {
            v.add("seq", "is past the conversation's latest message");
        }
        if thread.is_some() && known.kind == crate::domain::ConversationKind::Direct {
            v.add(
                "thread_id",
                "a direct conversation has no threads; leave it empty",
            );
        }
        v.finish()?;
        if let Some(thread) = thread
            && known.kind == crate::domain::ConversationKind::Cohort
        {
            self.require_thread(conversation, thread).await?;
        }
        let committed = self
            .reader_command(
                &request,
                caller,
                &request_id,
                ReaderAction::MoveCursor {
                    conversation_id: conversation,
                    thread,
                    seq: r.seq,
                },
            )
            .await?;
        Ok(Response::new(pb::MarkReadResponse {
            committed: Some(committed),
        }))
    }
}

/// The fields of a command on one thing of a conversation (a message, a thread, a report).
struct OnOne<'a> {
    request_id: &'a str,
    conversation_id: &'a str,
    field: &'a str,
    id: &'a str,
}

impl Api {
    /// A conversation command about one thing named by id.
    async fn on_one<T: prost::Message + prost::Name>(
        &self,
        request: &Request<T>,
        fields: OnOne<'_>,
        action: impl FnOnce(Uuid) -> Action,
    ) -> Result<Committed, Status> {
        let caller = self.caller(request)?;
        let mut v = Violations::new();
        let request_id = v.request_id(fields.request_id);
        let conversation = v.uuid("conversation_id", fields.conversation_id);
        let id = v.uuid(fields.field, fields.id);
        v.finish()?;
        let (Some(request_id), Some(conversation), Some(id)) = (request_id, conversation, id)
        else {
            return Err(incomplete());
        };
        self.converse(request, caller, &request_id, conversation, action(id))
            .await
            .map(committed)
    }

    pub(super) async fn hide_message(
        &self,
        request: Request<pb::HideMessageRequest>,
    ) -> Reply<pb::HideMessageResponse> {
        let r = request.get_ref();
        let fields = OnOne {
            request_id: &r.request_id,
            conversation_id: &r.conversation_id,
            field: "message_id",
            id: &r.message_id,
        };
        let committed = self
            .on_one(&request, fields, |message_id| Action::Hide { message_id })
            .await?;
        Ok(Response::new(pb::HideMessageResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn unhide_message(
        &self,
        request: Request<pb::UnhideMessageRequest>,
    ) -> Reply<pb::UnhideMessageResponse> {
        let r = request.get_ref();
        let fields = OnOne {
            request_id: &r.request_id,
            conversation_id: &r.conversation_id,
            field: "message_id",
            id: &r.message_id,
        };
        let committed = self
            .on_one(&request, fields, |message_id| Action::Unhide { message_id })
            .await?;
        Ok(Response::new(pb::UnhideMessageResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn pin_thread(
        &self,
        request: Request<pb::PinThreadRequest>,
    ) -> Reply<pb::PinThreadResponse> {
        let r = request.get_ref();
        let fields = OnOne {
            request_id: &r.request_id,
            conversation_id: &r.conversation_id,
            field: "thread_id",
            id: &r.thread_id,
        };
        let committed = self
            .on_one(&request, fields, |thread_id| Action::Pin { thread_id })
            .await?;
        Ok(Response::new(pb::PinThreadResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn unpin_thread(
        &self,
        request: Request<pb::UnpinThreadRequest>,
    ) -> Reply<pb::UnpinThreadResponse> {
        let r = request.get_ref();
        let fields = OnOne {
            request_id: &r.request_id,
            conversation_id: &r.conversation_id,
            field: "thread_id",
            id: &r.thread_id,
        };
        let committed = self
            .on_one(&request, fields, |thread_id| Action::Unpin { thread_id })
            .await?;
        Ok(Response::new(pb::UnpinThreadResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn resolve_report(
        &self,
        request: Request<pb::ResolveReportRequest>,
    ) -> Reply<pb::ResolveReportResponse> {
        let r = request.get_ref();
        let fields = OnOne {
            request_id: &r.request_id,
            conversation_id: &r.conversation_id,
            field: "report_id",
            id: &r.report_id,
        };
        let committed = self
            .on_one(&request, fields, |report_id| Action::ResolveReport {
                report_id,
            })
            .await?;
        Ok(Response::new(pb::ResolveReportResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn report_message(
        &self,
        request: Request<pb::ReportMessageRequest>,
    ) -> Reply<pb::ReportMessageResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let request_id = v.request_id(&r.request_id);
        let conversation = v.uuid("conversation_id", &r.conversation_id);
        let message_id = v.uuid("message_id", &r.message_id);
        let reason = text(
            &mut v,
            "reason",
            &r.reason,
            crate::domain::ReportReason::parse,
        );
        v.finish()?;
        let (Some(request_id), Some(conversation), Some(message_id), Some(reason)) =
            (request_id, conversation, message_id, reason)
        else {
            return Err(incomplete());
        };
        let report_id = derived_id(caller, &request_id, "report");
        let appended = self
            .converse(
                &request,
                caller,
                &request_id,
                conversation,
                Action::Report {
                    report_id,
                    message_id,
                    reason,
                },
            )
            .await?;
        Ok(Response::new(pb::ReportMessageResponse {
            committed: Some(committed(appended)),
            report_id: report_id.to_string(),
        }))
    }

    pub(super) async fn set_slow_mode(
        &self,
        request: Request<pb::SetSlowModeRequest>,
    ) -> Reply<pb::SetSlowModeResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let request_id = v.request_id(&r.request_id);
        let conversation = v.uuid("conversation_id", &r.conversation_id);
        let interval = v.check(
            "interval_seconds",
            crate::domain::SlowMode::parse(r.interval_seconds),
        );
        v.finish()?;
        let (Some(request_id), Some(conversation), Some(interval)) =
            (request_id, conversation, interval)
        else {
            return Err(incomplete());
        };
        let appended = self
            .converse(
                &request,
                caller,
                &request_id,
                conversation,
                Action::SetSlowMode { interval },
            )
            .await?;
        Ok(Response::new(pb::SetSlowModeResponse {
            committed: Some(committed(appended)),
        }))
    }

    /// Runs a command on the caller's own read state.
    async fn reader_command<T: prost::Message + prost::Name>(
        &self,
        request: &Request<T>,
        caller: Uuid,
        request_id: &str,
        action: ReaderAction,
    ) -> Result<Committed, Status> {
        let key = command_key(request, caller, request_id);
        let metadata = command::metadata(request, &ID_NAMESPACE, caller, request_id);
        let command = ReaderCommand {
            actor: caller,
            action,
        };
        self.readers
            .execute(&caller.to_string(), Some(&key), &metadata, &command)
            .await
            .map(committed)
            .map_err(|rejected| status_from_rejected(&rejected))
    }

    /// Follow and unfollow: the caller reads the conversation and the thread is one.
    async fn follow<T: prost::Message + prost::Name>(
        &self,
        request: &Request<T>,
        fields: OnOne<'_>,
        action: impl FnOnce(Uuid, Uuid) -> ReaderAction,
    ) -> Result<Committed, Status> {
        let caller = self.caller(request)?;
        let mut v = Violations::new();
        let request_id = v.request_id(fields.request_id);
        let conversation = v.uuid("conversation_id", fields.conversation_id);
        let thread = v.uuid(fields.field, fields.id);
        v.finish()?;
        let (Some(request_id), Some(conversation), Some(thread)) =
            (request_id, conversation, thread)
        else {
            return Err(incomplete());
        };
        self.reader_of(conversation, caller).await?;
        self.require_thread(conversation, thread).await?;
        self.reader_command(request, caller, &request_id, action(conversation, thread))
            .await
    }

    /// INVALID_ARGUMENT on `thread_id` unless it names a thread of `conversation`.
    async fn require_thread(&self, conversation: Uuid, thread: Uuid) -> Result<(), Status> {
        let is_thread: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM messages
                            WHERE conversation_id = $1 AND message_id = $2 AND thread_key = $2)",
        )
        .bind(conversation)
        .bind(thread)
        .fetch_one(&self.pool)
        .await
        .map_err(kith_platform::paging::status_from_db)?;
        if is_thread {
            return Ok(());
        }
        let mut v = Violations::new();
        v.add(
            "thread_id",
            format!("no thread {thread} in this conversation"),
        );
        v.finish()?;
        Err(incomplete())
    }

    pub(super) async fn follow_thread(
        &self,
        request: Request<pb::FollowThreadRequest>,
    ) -> Reply<pb::FollowThreadResponse> {
        let r = request.get_ref();
        let fields = OnOne {
            request_id: &r.request_id,
            conversation_id: &r.conversation_id,
            field: "thread_id",
            id: &r.thread_id,
        };
        let committed = self
            .follow(&request, fields, |conversation_id, thread_id| {
                ReaderAction::Follow {
                    conversation_id,
                    thread_id,
                }
            })
            .await?;
        Ok(Response::new(pb::FollowThreadResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn unfollow_thread(
        &self,
        request: Request<pb::UnfollowThreadRequest>,
    ) -> Reply<pb::UnfollowThreadResponse> {
        let r = request.get_ref();
        let fields = OnOne {
            request_id: &r.request_id,
            conversation_id: &r.conversation_id,
            field: "thread_id",
            id: &r.thread_id,
        };
        let committed = self
            .follow(&request, fields, |conversation_id, thread_id| {
                ReaderAction::Unfollow {
                    conversation_id,
                    thread_id,
                }
            })
            .await?;
        Ok(Response::new(pb::UnfollowThreadResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn set_read_receipts(
        &self,
        request: Request<pb::SetReadReceiptsRequest>,
    ) -> Reply<pb::SetReadReceiptsResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let request_id = v.request_id(&r.request_id);
        v.finish()?;
        let Some(request_id) = request_id else {
            return Err(incomplete());
        };
        let committed = self
            .reader_command(
                &request,
                caller,
                &request_id,
                ReaderAction::SetPrivateReceipts { private: r.private },
            )
            .await?;
        Ok(Response::new(pb::SetReadReceiptsResponse {
            committed: Some(committed),
        }))
    }
}
