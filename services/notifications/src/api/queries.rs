//! Reading the caller's preferences and feed.

use kith_platform::page_query;
use kith_platform::paging::{min_position, page_keyed, page_token, status_from_db};
use kith_platform::validation::{Violations, page_size};
use kith_platform::wire::timestamp;
use kith_proto::notifications as pb;
use prost::Message;
use sqlx::Row;
use sqlx::postgres::PgRow;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::Api;
use crate::codec::preferences_to_wire;
use crate::domain::Preferences;

type Reply<T> = Result<Response<T>, Status>;

const DEFAULT_PAGE: u32 = 20;
const MAX_PAGE: u32 = 100;

/// The columns [`notification`] reads (a macro, so that queries stay static strings).
macro_rules! notification_columns {
    () => {
        "notification_id, kind, also, community_id, cohort_id, conversation_id, thread_id,
         message_id, actor_id, session_id, starts_at, occurred_at, read, updated, retracted,
         urgent, changed_position, decided_position"
    };
}
pub(super) use notification_columns;

fn text(id: Option<Uuid>) -> String {
    id.map(|id| id.to_string()).unwrap_or_default()
}

/// A notification as its recipient sees it, from a row of [`notification_columns`].
pub(super) fn notification(row: &PgRow) -> Result<pb::Notification, sqlx::Error> {
    let at = |column: &str| -> Result<Option<prost_types::Timestamp>, sqlx::Error> {
        Ok(row
            .try_get::<Option<chrono::DateTime<chrono::Utc>>, _>(column)?
            .map(timestamp))
    };
    Ok(pb::Notification {
        notification_id: row.try_get::<Uuid, _>("notification_id")?.to_string(),
        kind: row.try_get("kind")?,
        also: row.try_get("also")?,
        community_id: text(row.try_get("community_id")?),
        cohort_id: text(row.try_get("cohort_id")?),
        conversation_id: text(row.try_get("conversation_id")?),
        thread_id: text(row.try_get("thread_id")?),
        message_id: text(row.try_get("message_id")?),
        actor_id: text(row.try_get("actor_id")?),
        session_id: text(row.try_get("session_id")?),
        starts_at: at("starts_at")?,
        occurred_at: at("occurred_at")?,
        read: row.try_get("read")?,
        updated: row.try_get("updated")?,
        retracted: row.try_get("retracted")?,
        urgent: row.try_get("urgent")?,
        position: row.try_get("changed_position")?,
    })
}

impl Api {
    pub(super) async fn get_preferences(
        &self,
        request: Request<pb::GetPreferencesRequest>,
    ) -> Reply<pb::GetPreferencesResponse> {
        let caller = self.caller(&request)?;
        let mut v = Violations::new();
        let min = min_position(&mut v, request.get_ref().min_position);
        v.finish()?;
        self.wait(min).await?;
        let stored: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT preferences FROM preferences WHERE member_id = $1")
                .bind(caller)
                .fetch_optional(&self.pool)
                .await
                .map_err(status_from_db)?;
        let (preferences, set) = match stored {
            Some(bytes) => (
                pb::Preferences::decode(bytes.as_slice())
                    .map_err(|_| Status::internal("stored preferences are unreadable"))?,
                true,
            ),
            None => (preferences_to_wire(&Preferences::default()), false),
        };
        Ok(Response::new(pb::GetPreferencesResponse {
            preferences: Some(preferences),
            set,
        }))
    }

    pub(super) async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Reply<pb::ListNotificationsResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let query = page_query!(caller, r);
        let mut v = Violations::new();
        let limit = page_size(&mut v, r.page_size, DEFAULT_PAGE, MAX_PAGE);
        let before = page_token(&mut v, &r.page_token, &query);
        let min = min_position(&mut v, r.min_position);
        v.finish()?;
        self.wait(min).await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            notification_columns!(),
            " FROM notifications
             WHERE recipient_id = $1 AND in_feed AND NOT retracted AND (NOT $2 OR NOT read)
               AND decided_position < $3
             ORDER BY decided_position DESC LIMIT $4"
        ))
        .bind(caller)
        .bind(r.unread_only)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(status_from_db)?;
        let (notifications, next_page_token) = page_keyed(
            &rows,
            limit,
            &query,
            |row| Ok(vec![row.try_get("decided_position")?]),
            notification,
        )?;
        Ok(Response::new(pb::ListNotificationsResponse {
            notifications,
            next_page_token,
        }))
    }

    pub(super) async fn get_unread_count(
        &self,
        request: Request<pb::GetUnreadCountRequest>,
    ) -> Reply<pb::GetUnreadCountResponse> {
        let caller = self.caller(&request)?;
        let mut v = Violations::new();
        let min = min_position(&mut v, request.get_ref().min_position);
        v.finish()?;
        self.wait(min).await?;
        let unread = self.unread(caller).await?;
        Ok(Response::new(pb::GetUnreadCountResponse { unread }))
    }

    pub(super) async fn get_contact(
        &self,
        request: Request<pb::GetContactRequest>,
    ) -> Reply<pb::GetContactResponse> {
        let caller = self.caller(&request)?;
        let mut v = Violations::new();
        let min = min_position(&mut v, request.get_ref().min_position);
        v.finish()?;
        self.wait(min).await?;
        let row: Option<(Option<Vec<u8>>, Option<String>)> =
            sqlx::query_as("SELECT email, webhook_url FROM contacts WHERE member_id = $1")
                .bind(caller)
                .fetch_optional(&self.pool)
                .await
                .map_err(status_from_db)?;
        let (email, webhook_url) = row.unwrap_or_default();
        let sealed = email
            .map(|bytes| kith_proto::platform::Sealed::decode(bytes.as_slice()))
            .transpose()
            .map_err(|_| Status::internal("a stored email address is unreadable"))?;
        let email = self
            .sealer
            .opener()
            .open(sealed.as_ref())
            .await
            .map_err(|err| kith_platform::grpc::status_from_platform(&err))?
            .unwrap_or_default();
        let webhook_url = webhook_url.unwrap_or_default();
        let webhook_secret = if webhook_url.is_empty() {
            String::new()
        } else {
            self.keys.webhook_secret_text(caller, &webhook_url)
        };
        Ok(Response::new(pb::GetContactResponse {
            email,
            webhook_url,
            webhook_secret,
        }))
    }

    /// How many notifications in `member`'s feed are unread.
    pub(super) async fn unread(&self, member: Uuid) -> Result<i64, Status> {
        sqlx::query_scalar(
            "SELECT count(*) FROM notifications
             WHERE recipient_id = $1 AND in_feed AND NOT read AND NOT retracted",
        )
        .bind(member)
        .fetch_one(&self.pool)
        .await
        .map_err(status_from_db)
    }
}
