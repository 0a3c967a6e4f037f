//! The membership journeys a calling service goes through.

use std::collections::HashSet;

use futures::StreamExt;
use kith_proto::membership as pb;
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{App, assert_code, create_community, in_days, invite_and_join, profile, rid};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_founder_creates_a_community_and_reads_it_back_at_once() {
    let app = App::spawn().await;
    let mut client = app.client().await;
    let owner = Uuid::new_v4();
    let (community, position) = create_community(&app, &mut client, owner, "Founders Circle").await;
    let read = client
        .get_community(app.as_member(
            owner,
            pb::GetCommunityRequest {
                community_id: community.clone(),
                min_position: position,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .community
        .unwrap();
    assert_eq!(read.name, "Founders Circle");
    assert_eq!(read.member_count, 1);
    assert!(!read.archived);
    let me = client
        .get_member(app.as_member(
            owner,
            pb::GetMemberRequest {
                community_id: community,
                member_id: owner.to_string(),
                min_position: position,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    assert_eq!(me.role, pb::MemberRole::Owner as i32);
    assert_eq!(me.status, pb::MemberStatus::Active as i32);
    assert_eq!(me.profile.unwrap().display_name, "Olive Owner");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_command_returns_its_first_result_and_appends_nothing() {
    let app = App::spawn().await;
    let mut client = app.client().await;
    let owner = Uuid::new_v4();
    let request = pb::CreateCommunityRequest {
        request_id: "create-once".into(),
        name: "Once".into(),
        description: String::new(),
        founder: profile("Olive", "olive"),
    };
    let first = client
        .create_community(app.as_member(owner, request.clone()))
        .await
        .unwrap()
        .into_inner();
    let again = client
        .create_community(app.as_member(owner, request))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.community_id, again.community_id);
    let (first, again) = (first.committed.unwrap(), again.committed.unwrap());
    assert!(!first.replayed);
    assert!(again.replayed);
    assert_eq!(
        (first.version, first.position),
        (again.version, again.position)
    );
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app.pool().await)
        .await
        .unwrap();
    assert_eq!(
        events, 2,
        "CommunityCreated and the founder's MemberJoined, once"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_are_listed_oldest_first_in_pages_and_filtered_by_role() {
    let app = App::spawn().await;
    let mut client = app.client().await;
    let owner = Uuid::new_v4();
    let (community, _) = create_community(&app, &mut client, owner, "Paged").await;
    let mut joined = vec![owner];
    let mut last = 0;
    for n in 0..7 {
        let member = Uuid::new_v4();
        last = invite_and_join(
            &app,
            &mut client,
            &community,
            owner,
            member,
            &format!("member{n}"),
        )
        .await;
        joined.push(member);
    }
    let coach = joined[3];
    let assigned = client
        .assign_role(app.as_member(
            owner,
            pb::AssignRoleRequest {
                request_id: rid(),
                community_id: community.clone(),
                member_id: coach.to_string(),
                role: pb::MemberRole::Coach as i32,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .committed
        .unwrap();
    assert!(assigned.position > last);

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_members(app.as_member(
                joined[5],
                pb::ListMembersRequest {
                    community_id: community.clone(),
                    role: 0,
                    page_size: 3,
                    page_token: token.clone(),
                    min_position: assigned.position,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.members.len() <= 3);
        seen.extend(
            page.members
                .iter()
                .map(|m| m.member_id.parse::<Uuid>().unwrap()),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, joined, "every member once, in joining order");

    // A token continues only the query that issued it.
    let first = client
        .list_members(app.as_member(
            owner,
            pb::ListMembersRequest {
                community_id: community.clone(),
                page_size: 1,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let (other, _) = create_community(&app, &mut client, owner, "Other").await;
    let misuses = [
        // Another community.
        client
            .list_members(app.as_member(
                owner,
                pb::ListMembersRequest {
                    community_id: other.clone(),
                    page_token: first.next_page_token.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(|_| ()),
        // Another filter.
        client
            .list_members(app.as_member(
                owner,
                pb::ListMembersRequest {
                    community_id: community.clone(),
                    role: pb::MemberRole::Coach as i32,
                    page_token: first.next_page_token.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(|_| ()),
        // Another method.
        client
            .list_join_requests(app.as_member(
                owner,
                pb::ListJoinRequestsRequest {
                    community_id: community.clone(),
                    page_token: first.next_page_token.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(|_| ()),
        // Another caller.
        client
            .list_members(app.as_member(
                joined[5],
                pb::ListMembersRequest {
                    community_id: community.clone(),
                    page_token: first.next_page_token.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(|_| ()),
    ];
    for (n, misuse) in misuses.into_iter().enumerate() {
        let status = crate::helpers::assert_code(misuse, tonic::Code::InvalidArgument);
        assert_eq!(
            crate::helpers::violated_fields(&status),
            ["page_token"],
            "misuse {n}"
        );
    }
    // The same query with another page size continues.
    let second = client
        .list_members(app.as_member(
            owner,
            pb::ListMembersRequest {
                community_id: community.clone(),
                page_size: 50,
                page_token: first.next_page_token.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.members.len() + 1, joined.len());

    let coaches = client
        .list_members(app.as_member(
            owner,
            pb::ListMembersRequest {
                community_id: community,
                role: pb::MemberRole::Coach as i32,
                page_size: 0,
                page_token: String::new(),
                min_position: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(
        coaches
            .iter()
            .map(|m| m.member_id.clone())
            .collect::<Vec<_>>(),
        vec![coach.to_string()]
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_request_is_listed_for_hosts_and_approval_makes_a_member() {
    let app = App::spawn().await;
    let mut client = app.client().await;
    let owner = Uuid::new_v4();
    let (community, _) = create_community(&app, &mut client, owner, "Screened").await;
    let applicant = Uuid::new_v4();
    let requested = client
        .request_to_join(app.as_member(
            applicant,
            pb::RequestToJoinRequest {
                request_id: rid(),
                community_id: community.clone(),
                profile: profile("Ada Applicant", "ada"),
                answers: vec!["I coach founders".into(), "Weekly".into()],
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .committed
        .unwrap();
    let pending = client
        .list_join_requests(app.as_member(
            owner,
            pb::ListJoinRequestsRequest {
                community_id: community.clone(),
                page_size: 10,
                page_token: String::new(),
                min_position: requested.position,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .join_requests;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].answers, vec!["I coach founders", "Weekly"]);
    assert_eq!(pending[0].profile.as_ref().unwrap().handle, "ada");
    // The applicant cannot see the queue.
    assert_code(
        client
            .list_join_requests(app.as_member(
                applicant,
                pb::ListJoinRequestsRequest {
                    community_id: community.clone(),
                    page_size: 10,
                    page_token: String::new(),
                    min_position: 0,
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    let approved = client
        .approve_join_request(app.as_member(
            owner,
            pb::ApproveJoinRequestRequest {
                request_id: rid(),
                community_id: community.clone(),
                member_id: applicant.to_string(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .committed
        .unwrap();
    let member = client
        .get_member(app.as_member(
            applicant,
            pb::GetMemberRequest {
                community_id: community.clone(),
                member_id: applicant.to_string(),
                min_position: approved.position,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    assert_eq!(member.status, pb::MemberStatus::Active as i32);
    let queue = client
        .list_join_requests(app.as_member(
            owner,
            pb::ListJoinRequestsRequest {
                community_id: community,
                page_size: 10,
                page_token: String::new(),
                min_position: approved.position,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(queue.join_requests.is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_member_cannot_come_back_by_any_path() {
    let app = App::spawn().await;
    let mut client = app.client().await;
    let owner = Uuid::new_v4();
    let (community, _) = create_community(&app, &mut client, owner, "Strict").await;
    let troll = Uuid::new_v4();
    invite_and_join(&app, &mut client, &community, owner, troll, "troll").await;
    client
        .ban_member(app.as_member(
            owner,
            pb::BanMemberRequest {
                request_id: rid(),
                community_id: community.clone(),
                member_id: troll.to_string(),
                reason: "spam".into(),
            },
        ))
        .await
        .unwrap();
    let invitation = client
        .create_invitation(app.as_member(
            owner,
            pb::CreateInvitationRequest {
                request_id: rid(),
                community_id: community.clone(),
                expires_at: Some(in_days(1)),
                max_uses: 5,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_code(
        client
            .accept_invitation(app.as_member(
                troll,
                pb::AcceptInvitationRequest {
                    request_id: rid(),
                    community_id: community.clone(),
                    invitation_id: invitation.invitation_id,
                    profile: profile("Troll", "troll2"),
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    assert_code(
        client
            .request_to_join(app.as_member(
                troll,
                pb::RequestToJoinRequest {
                    request_id: rid(),
                    community_id: community.clone(),
                    profile: profile("Troll", "troll3"),
                    answers: vec![],
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_owner_cannot_leave_and_an_archived_community_takes_no_commands() {
    let app = App::spawn().await;
    let mut client = app.client().await;
    let owner = Uuid::new_v4();
    let (community, _) = create_community(&app, &mut client, owner, "Solo").await;
    let leave = client
        .leave_community(app.as_member(
            owner,
            pb::LeaveCommunityRequest {
                request_id: rid(),
                community_id: community.clone(),
            },
        ))
        .await;
    let status = assert_code(leave, Code::FailedPrecondition);
    assert!(
        status.message().contains("last owner"),
        "{}",
        status.message()
    );
    client
        .archive_community(app.as_member(
            owner,
            pb::ArchiveCommunityRequest {
                request_id: rid(),
                community_id: community.clone(),
            },
        ))
        .await
        .unwrap();
    assert_code(
        client
            .update_community(app.as_member(
                owner,
                pb::UpdateCommunityRequest {
                    request_id: rid(),
                    community_id: community,
                    name: "Renamed".into(),
                    description: String::new(),
                },
            ))
            .await,
        Code::FailedPrecondition,
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_the_membership_stream_with_its_event_id() {
    let app = App::spawn().await;
    let mut client = app.client().await;
    let owner = Uuid::new_v4();
    let (community, _) = create_community(&app, &mut client, owner, "Published").await;
    invite_and_join(
        &app,
        &mut client,
        &community,
        owner,
        Uuid::new_v4(),
        "reader",
    )
    .await;
    let ids: Vec<Uuid> = sqlx::query_scalar("SELECT event_id FROM events ORDER BY position")
        .fetch_all(&app.pool().await)
        .await
        .unwrap();
    assert_eq!(ids.len(), 4);
    let js = async_nats::jetstream::new(kith_platform::testing::nats().await);
    let name = app.env.args.nats.stream_for("membership").name;
    let subject_prefix = app.env.args.nats.stream_for("membership").subject_prefix;
    let stream = kith_platform::testing::eventually(
        std::time::Duration::from_secs(10),
        "the relay",
        || async {
            let mut stream = js.get_stream(&name).await.ok()?;
            (stream.info().await.ok()?.state.messages >= 4).then_some(stream)
        },
    )
    .await;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config::default())
        .await
        .unwrap();
    let mut messages = consumer
        .fetch()
        .max_messages(10)
        .expires(std::time::Duration::from_secs(1))
        .messages()
        .await
        .unwrap();
    let mut published = Vec::new();
    let mut subjects = HashSet::new();
    while let Some(message) = messages.next().await {
        let message = message.unwrap();
        subjects.insert(message.subject.to_string());
        let headers = message.headers.as_ref().unwrap();
        published.push(
            headers
                .get("Nats-Msg-Id")
                .unwrap()
                .as_str()
                .parse::<Uuid>()
                .unwrap(),
        );
    }
    assert_eq!(published, ids);
    assert_eq!(
        subjects,
        HashSet::from([format!("{subject_prefix}.community.{community}")])
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitation_ids_are_random_and_a_retried_create_returns_the_first_one() {
    let app = App::spawn().await;
    let mut client = app.client().await;
    let owner = Uuid::new_v4();
    let (community, _) = create_community(&app, &mut client, owner, "Invites").await;
    let request = pb::CreateInvitationRequest {
        request_id: "invite-1".into(),
        community_id: community.clone(),
        expires_at: Some(in_days(2)),
        max_uses: 2,
    };
    let first = client
        .create_invitation(app.as_member(owner, request.clone()))
        .await
        .unwrap()
        .into_inner();
    let again = client
        .create_invitation(app.as_member(owner, request))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.invitation_id, again.invitation_id);
    assert!(again.committed.unwrap().replayed);
    let other = Uuid::new_v4();
    let (other_community, _) = create_community(&app, &mut client, other, "Elsewhere").await;
    let same_request_id = client
        .create_invitation(app.as_member(
            other,
            pb::CreateInvitationRequest {
                request_id: "invite-1".into(),
                community_id: other_community,
                expires_at: Some(in_days(2)),
                max_uses: 2,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(same_request_id.invitation_id, first.invitation_id);
    let listed = client
        .list_invitations(app.as_member(
            owner,
            pb::ListInvitationsRequest {
                community_id: community,
                page_size: 10,
                page_token: String::new(),
                min_position: first.committed.unwrap().position,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .invitations;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].invitation_id, first.invitation_id);
    assert_eq!(listed[0].status, pb::InvitationStatus::Active as i32);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_trace_context_travels_into_the_log_and_onto_the_bus() {
    let app = App::spawn().await;
    let mut client = app.client().await;
    let owner = Uuid::new_v4();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut request = app.as_member(
        owner,
        pb::CreateCommunityRequest {
            request_id: rid(),
            name: "Traced".into(),
            description: String::new(),
            founder: profile("Tracy", "tracy"),
        },
    );
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    client.create_community(request).await.unwrap();
    let stored: Vec<Option<String>> =
        sqlx::query_scalar("SELECT metadata->>'traceparent' FROM events ORDER BY position")
            .fetch_all(&app.pool().await)
            .await
            .unwrap();
    assert_eq!(stored, vec![Some(traceparent.to_owned()); 2]);
    let js = async_nats::jetstream::new(kith_platform::testing::nats().await);
    let name = app.env.args.nats.stream_for("membership").name;
    let stream = kith_platform::testing::eventually(
        std::time::Duration::from_secs(10),
        "the relay",
        || async {
            let mut stream = js.get_stream(&name).await.ok()?;
            (stream.info().await.ok()?.state.messages >= 2).then_some(stream)
        },
    )
    .await;
    for sequence in 1..=2 {
        let message = stream.get_raw_message(sequence).await.unwrap();
        assert_eq!(
            message.headers.get("traceparent").unwrap().as_str(),
            traceparent
        );
    }
    app.stop().await;
}
