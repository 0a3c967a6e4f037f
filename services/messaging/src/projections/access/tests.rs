//! Access as other services' events leave it, on a real database: the events are the ones
//! membership and cohorts write, applied as the bus consumers apply them.

use chrono::Utc;
use kith_platform::eventlog::RecordedEvent;
use kith_platform::projection::{Projection, create_tables};
use kith_platform::sealing::Sealer;
use kith_platform::testing::TestDatabase;
use kith_proto::cohorts as cpb;
use kith_proto::membership as mpb;
use prost::Name;
use uuid::Uuid;

use super::{Members, Places, standing};
use crate::codec::{member_subject, message_subject};
use crate::domain::Access;

struct World {
    pool: sqlx::PgPool,
    community: Uuid,
    cohort: Uuid,
    community_version: i64,
    cohort_version: i64,
}

fn recorded<M: prost::Message + Name>(
    stream_type: &str,
    stream: Uuid,
    version: i64,
    message: M,
) -> RecordedEvent {
    RecordedEvent {
        position: version,
        transaction_id: 1,
        stream_type: stream_type.to_owned(),
        stream_id: stream.to_string(),
        version,
        event_id: Uuid::new_v4(),
        event_type: M::full_name(),
        payload: message.encode_to_vec(),
        metadata_json: "{}".to_owned(),
        recorded_at: Utc::now(),
    }
}

impl World {
    async fn new() -> (TestDatabase, Self) {
        let db = TestDatabase::create().await;
        let pool = db.pool("messaging", &[]).await;
        // The service creates the messages projection too: an erasure blanks its rows.
        let messages = crate::projections::Messages::new(Sealer::with_keks(pool.clone(), None));
        create_tables(&pool, &messages).await.unwrap();
        create_tables(&pool, &Members).await.unwrap();
        create_tables(&pool, &Places).await.unwrap();
        let world = Self {
            pool,
            community: Uuid::new_v4(),
            cohort: Uuid::new_v4(),
            community_version: 0,
            cohort_version: 0,
        };
        (db, world)
    }

    async fn apply(&self, projection: &dyn Projection, event: RecordedEvent) {
        let mut tx = self.pool.begin().await.unwrap();
        projection.apply(&mut tx, &event).await.unwrap();
        tx.commit().await.unwrap();
    }

    async fn membership<M: prost::Message + Name>(&mut self, message: M) {
        self.community_version += 1;
        let event = recorded("community", self.community, self.community_version, message);
        self.apply(&Members, event).await;
    }

    async fn cohorts<M: prost::Message + Name>(&mut self, message: M) {
        self.cohort_version += 1;
        let event = recorded("cohort", self.cohort, self.cohort_version, message);
        self.apply(&Places, event).await;
    }

    async fn joined(&mut self, member: Uuid, role: mpb::MemberRole) {
        let community_id = self.community.to_string();
        self.membership(mpb::MemberJoined {
            community_id,
            member_id: member.to_string(),
            role: role as i32,
            ..Default::default()
        })
        .await;
    }

    async fn access(&self, member: Uuid) -> Access {
        let (community, standing) = standing(&self.pool, self.cohort, member)
            .await
            .unwrap()
            .expect("the cohort is known");
        assert_eq!(community, self.community);
        standing.access()
    }
}

const READER: Access = Access {
    reader: true,
    facilitator: false,
    moderator: false,
};
const NONE: Access = Access {
    reader: false,
    facilitator: false,
    moderator: false,
};

#[tokio::test]
async fn seated_members_and_facilitators_read_and_leaving_or_a_ban_ends_it() {
    let (_db, mut w) = World::new().await;
    let (coach, seated, waiting, invited, moderator) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    w.joined(coach, mpb::MemberRole::Coach).await;
    for m in [seated, waiting, invited] {
        w.joined(m, mpb::MemberRole::Member).await;
    }
    w.joined(moderator, mpb::MemberRole::Moderator).await;
    let (c, cohort_id) = (w.community.to_string(), w.cohort.to_string());
    w.cohorts(cpb::CohortCreated {
        cohort_id: cohort_id.clone(),
        community_id: c.clone(),
        ..Default::default()
    })
    .await;
    w.cohorts(cpb::FacilitatorAssigned {
        cohort_id: cohort_id.clone(),
        member_id: coach.to_string(),
        ..Default::default()
    })
    .await;
    w.cohorts(cpb::MemberJoinedCohort {
        cohort_id: cohort_id.clone(),
        member_id: seated.to_string(),
        ..Default::default()
    })
    .await;
    w.cohorts(cpb::MemberWaitlisted {
        cohort_id: cohort_id.clone(),
        member_id: waiting.to_string(),
    })
    .await;
    w.cohorts(cpb::MemberInvited {
        cohort_id: cohort_id.clone(),
        member_id: invited.to_string(),
        ..Default::default()
    })
    .await;

    assert_eq!(
        w.access(coach).await,
        Access {
            reader: true,
            facilitator: true,
            moderator: false
        }
    );
    assert_eq!(w.access(seated).await, READER);
    // A waitlisted member reads nothing, nor does an invitation not yet accepted.
    assert_eq!(w.access(waiting).await, NONE);
    assert_eq!(w.access(invited).await, NONE);
    // A moderator of the community moderates without reading.
    assert_eq!(
        w.access(moderator).await,
        Access {
            reader: false,
            facilitator: false,
            moderator: true
        }
    );

    // Promotion and an accepted invitation seat them.
    w.cohorts(cpb::WaitlistPromoted {
        cohort_id: cohort_id.clone(),
        member_id: waiting.to_string(),
    })
    .await;
    w.cohorts(cpb::MemberJoinedCohort {
        cohort_id: cohort_id.clone(),
        member_id: invited.to_string(),
        seated_by: cpb::SeatedBy::Invitation as i32,
    })
    .await;
    assert_eq!(w.access(waiting).await, READER);
    assert_eq!(w.access(invited).await, READER);

    // Leaving the cohort ends it; so does a ban in the community, before cohorts reacts.
    w.cohorts(cpb::MemberLeftCohort {
        cohort_id: cohort_id.clone(),
        member_id: waiting.to_string(),
        place: cpb::Place::Seat as i32,
    })
    .await;
    assert_eq!(w.access(waiting).await, NONE);
    w.membership(mpb::MemberBanned {
        community_id: c.clone(),
        member_id: invited.to_string(),
        ..Default::default()
    })
    .await;
    assert_eq!(w.access(invited).await, NONE);
    // Removing the facilitator leaves the coach outside the conversation.
    w.cohorts(cpb::FacilitatorRemoved {
        cohort_id: cohort_id.clone(),
        member_id: coach.to_string(),
        ..Default::default()
    })
    .await;
    assert_eq!(w.access(coach).await, NONE);
    // A role revoked is a plain member again.
    w.membership(mpb::RoleRevoked {
        community_id: c.clone(),
        member_id: moderator.to_string(),
        ..Default::default()
    })
    .await;
    assert_eq!(w.access(moderator).await, NONE);
    let version: i64 =
        sqlx::query_scalar("SELECT version FROM communities WHERE community_id = $1")
            .bind(w.community)
            .fetch_one(&w.pool)
            .await
            .unwrap();
    assert_eq!(version, w.community_version);
}

#[tokio::test]
async fn erasure_destroys_every_key_of_the_member_in_that_community_and_no_other() {
    let (_db, mut w) = World::new().await;
    let (erased, other) = (Uuid::new_v4(), Uuid::new_v4());
    let elsewhere = Uuid::new_v4();
    let sealer = Sealer::with_keks(w.pool.clone(), None);
    let subjects = [
        member_subject(w.community, erased),
        message_subject(w.community, erased, Uuid::new_v4()),
        message_subject(w.community, erased, Uuid::new_v4()),
        message_subject(w.community, other, Uuid::new_v4()),
        message_subject(elsewhere, erased, Uuid::new_v4()),
    ];
    for subject in &subjects {
        sealer.key_for(subject).await.unwrap();
    }
    w.joined(erased, mpb::MemberRole::Member).await;
    w.membership(mpb::MemberErased {
        community_id: w.community.to_string(),
        member_id: erased.to_string(),
        ..Default::default()
    })
    .await;
    let left: Vec<String> = sqlx::query_scalar("SELECT subject FROM sealing_keys ORDER BY subject")
        .fetch_all(&w.pool)
        .await
        .unwrap();
    let mut expected = vec![subjects[3].clone(), subjects[4].clone()];
    expected.sort();
    assert_eq!(left, expected);
}
