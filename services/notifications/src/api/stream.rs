//! The live feed: one task per subscriber follows the ledger's checkpoint, on whichever replica
//! it runs, and sends each of the caller's notifications whose latest change the ledger applied
//! since the last one sent. Rows carry the log checkpoint of their latest change, and the ledger
//! applies the log in checkpoint order, so resuming after a change's position skips nothing and
//! repeats nothing.

use std::time::Duration;

use kith_platform::eventlog::Checkpoint;
use kith_platform::grpc::status_from_platform;
use kith_platform::paging::status_from_db;
use kith_platform::validation::Violations;
use kith_proto::notifications as pb;
use sqlx::Row;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::Api;
use super::queries::{notification, notification_columns};

/// How many changes are read at once.
const BATCH: i64 = 500;
/// How many changes wait for a slow subscriber before the follower waits for it.
const BUFFER: usize = 256;
/// How often the follower looks without a notice (one lost while a listener reconnected).
const RECHECK: Duration = Duration::from_secs(5);

pub(crate) type FeedStream =
    tokio_stream::wrappers::ReceiverStream<Result<pb::StreamNotificationsResponse, Status>>;

impl Api {
    pub(super) async fn stream_notifications(
        &self,
        request: Request<pb::StreamNotificationsRequest>,
    ) -> Result<Response<FeedStream>, Status> {
        let caller = self.caller(&request)?;
        let from = request.get_ref().from_position;
        let mut v = Violations::new();
        if from < 0 {
            v.add("from_position", "must not be negative");
        }
        v.finish()?;
        let start = if from == 0 {
            self.progress
                .applied()
                .await
                .map_err(|err| status_from_platform(&err))?
        } else {
            let known = kith_platform::eventlog::checkpoint_of(&self.pool, from)
                .await
                .map_err(|err| status_from_platform(&err))?;
            let Some(checkpoint) = known else {
                let mut v = Violations::new();
                v.add(
                    "from_position",
                    "is not a position of this service's log (use a received notification's position)",
                );
                v.finish()?;
                return Err(super::incomplete());
            };
            checkpoint
        };
        let (tx, rx) = mpsc::channel(BUFFER);
        tokio::spawn(follow(self.clone(), caller, start, tx));
        Ok(Response::new(FeedStream::new(rx)))
    }

    /// The caller's changes after `after` up to `applied`, in checkpoint order.
    async fn changes(
        &self,
        member: Uuid,
        after: Checkpoint,
        applied: Checkpoint,
    ) -> Result<Vec<(Checkpoint, pb::Notification)>, Status> {
        let rows = sqlx::query(concat!(
            "SELECT changed_tx, ",
            notification_columns!(),
            " FROM notifications
             WHERE recipient_id = $1 AND in_feed
               AND (changed_tx, changed_position) > ($2, $3)
               AND (changed_tx, changed_position) <= ($4, $5)
             ORDER BY changed_tx, changed_position LIMIT $6"
        ))
        .bind(member)
        .bind(after.transaction_id)
        .bind(after.position)
        .bind(applied.transaction_id)
        .bind(applied.position)
        .bind(BATCH)
        .fetch_all(&self.pool)
        .await
        .map_err(status_from_db)?;
        rows.iter()
            .map(|row| {
                let at = Checkpoint {
                    transaction_id: row.try_get("changed_tx")?,
                    position: row.try_get("changed_position")?,
                };
                Ok((at, notification(row)?))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(status_from_db)
    }
}

type Sender = mpsc::Sender<Result<pb::StreamNotificationsResponse, Status>>;

/// Sends the member's changes as the ledger applies them, until the subscriber goes away.
async fn follow(api: Api, member: Uuid, mut after: Checkpoint, tx: Sender) {
    loop {
        let applied = match api.progress.applied().await {
            Ok(applied) => applied,
            Err(err) => {
                let _ = tx.send(Err(status_from_platform(&err))).await;
                return;
            }
        };
        let changes = match api.changes(member, after, applied).await {
            Ok(changes) => changes,
            Err(status) => {
                let _ = tx.send(Err(status)).await;
                return;
            }
        };
        let full = changes.len() as i64 == BATCH;
        if !changes.is_empty() {
            let unread = match api.unread(member).await {
                Ok(unread) => unread,
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            };
            for (at, notification) in changes {
                let sent = tx
                    .send(Ok(pb::StreamNotificationsResponse {
                        notification: Some(notification),
                        unread,
                    }))
                    .await;
                if sent.is_err() {
                    return;
                }
                after = at;
            }
        }
        if full {
            continue;
        }
        after = after.max(applied);
        let deadline = tokio::time::Instant::now() + RECHECK;
        tokio::select! {
            _ = tx.closed() => return,
            waited = api.progress.wait_past(after, deadline) => {
                if let Err(err) = waited {
                    tracing::warn!(error = %err, "feed stream: reading the ledger's progress failed; retrying");
                }
            }
        }
    }
}
