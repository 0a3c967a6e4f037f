//! The member's own commands: setting preferences and marking notifications read.

use kith_platform::aggregate::Rejected;
use kith_platform::command::{self, command_key, committed};
use kith_platform::grpc::status_from_platform;
use kith_platform::paging::status_from_db;
use kith_platform::validation::Violations;
use kith_proto::notifications as pb;
use kith_proto::platform::Committed;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{Api, ID_NAMESPACE, incomplete};
use crate::codec::parse_preferences;
use crate::domain::{Contact, EmailAddress, MemberCommand, WebhookUrl};

type Reply<T> = Result<Response<T>, Status>;

/// The most notifications one MarkRead names.
const MAX_MARK: usize = 500;

impl Api {
    pub(super) async fn set_preferences(
        &self,
        request: Request<pb::SetPreferencesRequest>,
    ) -> Reply<pb::SetPreferencesResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let request_id = v.request_id(&r.request_id);
        let preferences = match v.required("preferences", r.preferences.as_ref()) {
            Some(wire) => parse_preferences(&mut v, "preferences", wire),
            None => None,
        };
        v.finish()?;
        let (Some(request_id), Some(preferences)) = (request_id, preferences) else {
            return Err(incomplete());
        };
        let committed = self
            .member_command(
                &request,
                caller,
                &request_id,
                MemberCommand::SetPreferences(preferences),
            )
            .await?;
        Ok(Response::new(pb::SetPreferencesResponse {
            committed: Some(committed),
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
        if r.notification_ids.len() > MAX_MARK {
            v.add(
                "notification_ids",
                format!("at most {MAX_MARK} at once; send none to mark everything read"),
            );
        }
        let named: Vec<Option<Uuid>> = r
            .notification_ids
            .iter()
            .enumerate()
            .map(|(i, id)| v.uuid(&format!("notification_ids[{i}]"), id))
            .collect();
        v.finish()?;
        let Some(request_id) = request_id else {
            return Err(incomplete());
        };
        let named: Vec<Uuid> = named.into_iter().flatten().collect();
        // What is unread now, of those named (or all): someone else's ids match nothing.
        let unread: Vec<Uuid> = sqlx::query_scalar(
            "SELECT notification_id FROM notifications
             WHERE recipient_id = $1 AND in_feed AND NOT read AND NOT retracted
               AND ($2 OR notification_id = ANY($3))
             ORDER BY decided_position",
        )
        .bind(caller)
        .bind(named.is_empty() && r.notification_ids.is_empty())
        .bind(&named)
        .fetch_all(&self.pool)
        .await
        .map_err(status_from_db)?;
        let marked = unread.len() as i64;
        let committed = self
            .member_command(
                &request,
                caller,
                &request_id,
                MemberCommand::MarkRead(unread),
            )
            .await?;
        Ok(Response::new(pb::MarkReadResponse {
            committed: Some(committed),
            marked: if committed.replayed { 0 } else { marked },
        }))
    }

    pub(super) async fn set_contact(
        &self,
        request: Request<pb::SetContactRequest>,
    ) -> Reply<pb::SetContactResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let request_id = v.request_id(&r.request_id);
        let email = if r.email.is_empty() {
            Some(None)
        } else {
            v.check("email", EmailAddress::parse(&r.email)).map(Some)
        };
        let allow_private = self.delivery.webhook_allow_private;
        let webhook = if r.webhook_url.is_empty() {
            Some(None)
        } else {
            v.check(
                "webhook_url",
                WebhookUrl::parse(&r.webhook_url, allow_private),
            )
            .map(Some)
        };
        v.finish()?;
        let (Some(request_id), Some(email), Some(webhook)) = (request_id, email, webhook) else {
            return Err(incomplete());
        };
        let webhook_secret = webhook
            .as_ref()
            .map(|url| self.keys.webhook_secret_text(caller, url.as_str()))
            .unwrap_or_default();
        let committed = self
            .member_command(
                &request,
                caller,
                &request_id,
                MemberCommand::SetContact(Contact { email, webhook }),
            )
            .await?;
        Ok(Response::new(pb::SetContactResponse {
            committed: Some(committed),
            webhook_secret,
        }))
    }

    async fn member_command<T: prost::Message + prost::Name>(
        &self,
        request: &Request<T>,
        caller: Uuid,
        request_id: &str,
        command: MemberCommand,
    ) -> Result<Committed, Status> {
        let key = command_key(request, caller, request_id);
        let metadata = command::metadata(request, &ID_NAMESPACE, caller, request_id);
        match self
            .members
            .execute(&caller.to_string(), Some(&key), &metadata, &command)
            .await
        {
            Ok(appended) => Ok(committed(appended)),
            Err(Rejected::Platform(err)) => Err(status_from_platform(&err)),
            Err(Rejected::Domain(never)) => match never {},
        }
    }
}
