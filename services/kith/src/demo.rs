//! `kith demo`: a small mastermind's first day, played through a running Kith's gRPC API the way
//! its members' apps would call it, so that a newcomer has a history to report on and export.
//! Everything it does is an ordinary call: the events it leaves are the services' own.

use anyhow::Context;
use kith_platform::config::AuthArgs;
use kith_proto::cohorts as cpb;
use kith_proto::cohorts::cohorts_service_client::CohortsServiceClient;
use kith_proto::membership as mpb;
use kith_proto::membership::membership_service_client::MembershipServiceClient;
use kith_proto::messaging as msg;
use kith_proto::messaging::messaging_service_client::MessagingServiceClient;
use tonic::transport::Channel;
use uuid::Uuid;

#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// The gRPC address of a running `kith up`.
    #[arg(long, default_value = "127.0.0.1:50051")]
    grpc: String,
    /// Print the ids as one JSON object on stdout instead of shell assignments
    /// (COMMUNITY=..., COHORT=...) and the next step.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    auth: AuthArgs,
}

/// The people of the demo: an owner, a coach who facilitates, and eight founders.
const FOUNDERS: [&str; 8] = ["Ben", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana", "Ivo"];

/// Calls as one member or another, each with their own token.
struct Kith {
    channel: Channel,
    auth: AuthArgs,
}

impl Kith {
    fn as_member<T>(&self, member: Uuid, message: T) -> anyhow::Result<tonic::Request<T>> {
        let token = crate::commands::member_token(&self.auth, member, 3600)?;
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
        Ok(request)
    }

    fn membership(&self) -> MembershipServiceClient<Channel> {
        MembershipServiceClient::new(self.channel.clone())
    }

    fn cohorts(&self) -> CohortsServiceClient<Channel> {
        CohortsServiceClient::new(self.channel.clone())
    }

    fn messaging(&self) -> MessagingServiceClient<Channel> {
        MessagingServiceClient::new(self.channel.clone())
    }

    /// Posts as `member`, retrying while messaging has not yet learnt of the member's seat (it
    /// learns from cohorts' events, a moment later).
    async fn post(
        &self,
        member: Uuid,
        conversation: &str,
        thread: &str,
        title: &str,
        body: &str,
    ) -> anyhow::Result<msg::PostMessageResponse> {
        let request = msg::PostMessageRequest {
            request_id: rid(),
            conversation_id: conversation.into(),
            thread_id: thread.into(),
            title: title.into(),
            body: body.into(),
        };
        crate::bench_messaging::post_as(&mut self.messaging(), request, |request| {
            self.as_member(member, request)
        })
        .await
        .context("posting a message")
    }
}

fn rid() -> String {
    Uuid::new_v4().to_string()
}

fn profile(name: &str) -> mpb::ProfileInput {
    mpb::ProfileInput {
        display_name: name.into(),
        // Unique per run, so that the demo can be played more than once into one Kith.
        handle: format!(
            "{}_{}",
            name.to_lowercase(),
            &Uuid::new_v4().simple().to_string()[..6]
        ),
        bio: String::new(),
    }
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let channel = Channel::from_shared(format!("http://{}", args.grpc))
        .with_context(|| format!("--grpc {}", args.grpc))?
        .connect()
        .await
        .with_context(|| {
            format!(
                "nothing answers at --grpc {}: is `kith up` running?",
                args.grpc
            )
        })?;
    let kith = Kith {
        channel,
        auth: args.auth,
    };
    let owner = Uuid::new_v4();
    let coach = Uuid::new_v4();
    let founders: Vec<Uuid> = FOUNDERS.iter().map(|_| Uuid::new_v4()).collect();
    let say = |line: &str| {
        if !args.json {
            eprintln!("{line}");
        }
    };

    // The community, its coach and its members.
    let mut membership = kith.membership();
    let community = membership
        .create_community(kith.as_member(
            owner,
            mpb::CreateCommunityRequest {
                request_id: rid(),
                name: "Founders Mastermind".into(),
                description: "Twelve founders, every other Tuesday".into(),
                founder: Some(profile("Olive")),
            },
        )?)
        .await
        .map_err(|status| {
            let hint = if status.code() == tonic::Code::Unauthenticated {
                " (kith demo signs its members' tokens with --jwt-secret or KITH_JWT_SECRET: give \
                 it the server's; a server that checks RS256 keys or a JWKS cannot be played)"
            } else {
                ""
            };
            anyhow::Error::from(status).context(format!("creating the community{hint}"))
        })?
        .into_inner()
        .community_id;
    let invitation = membership
        .create_invitation(kith.as_member(
            owner,
            mpb::CreateInvitationRequest {
                request_id: rid(),
                community_id: community.clone(),
                expires_at: Some(kith_platform::wire::timestamp(
                    chrono::Utc::now() + chrono::Duration::days(1),
                )),
                max_uses: 20,
            },
        )?)
        .await?
        .into_inner()
        .invitation_id;
    let mut version = 0;
    for (member, name) in
        std::iter::once((coach, "Ana")).chain(founders.iter().copied().zip(FOUNDERS))
    {
        let joined = membership
            .accept_invitation(kith.as_member(
                member,
                mpb::AcceptInvitationRequest {
                    request_id: rid(),
                    community_id: community.clone(),
                    invitation_id: invitation.clone(),
                    profile: Some(profile(name)),
                },
            )?)
            .await
            .with_context(|| format!("{name} joining the community"))?
            .into_inner();
        version = version.max(joined.committed.map_or(0, |c| c.version));
    }
    let assigned = membership
        .assign_role(kith.as_member(
            owner,
            mpb::AssignRoleRequest {
                request_id: rid(),
                community_id: community.clone(),
                member_id: coach.to_string(),
                role: mpb::MemberRole::Coach as i32,
            },
        )?)
        .await
        .context("making Ana a coach")?
        .into_inner();
    version = version.max(assigned.committed.map_or(0, |c| c.version));
    say(&format!(
        "community {community}: Olive (owner), Ana (coach) and {} founders",
        FOUNDERS.len()
    ));

    // A mastermind of six seats: Olive, who creates it, and Ana facilitate; the seventh to join
    // waits.
    let mut cohorts = kith.cohorts();
    let cohort = cohorts
        .create_cohort(kith.as_member(
            owner,
            cpb::CreateCohortRequest {
                request_id: rid(),
                community_id: community.clone(),
                name: "Spring mastermind".into(),
                kind: cpb::CohortKind::Mastermind as i32,
                capacity: Some(6),
                time_zone: "Europe/Berlin".into(),
                goal: "ship something every week".into(),
                community_version: version,
                ..Default::default()
            },
        )?)
        .await
        .context("creating the cohort")?
        .into_inner()
        .cohort_id;
    cohorts
        .open_cohort(kith.as_member(
            owner,
            cpb::OpenCohortRequest {
                request_id: rid(),
                cohort_id: cohort.clone(),
            },
        )?)
        .await
        .context("opening the cohort")?;
    cohorts
        .assign_facilitator(kith.as_member(
            owner,
            cpb::AssignFacilitatorRequest {
                request_id: rid(),
                cohort_id: cohort.clone(),
                member_id: coach.to_string(),
                community_version: version,
            },
        )?)
        .await
        .context("making Ana the facilitator")?;
    let [ben, chen, dara, eli, fatima, gus, hana, _ivo] = founders[..] else {
        anyhow::bail!("eight founders");
    };
    for member in [ben, chen, dara, eli, fatima, gus, hana] {
        cohorts
            .join_cohort(kith.as_member(
                member,
                cpb::JoinCohortRequest {
                    request_id: rid(),
                    cohort_id: cohort.clone(),
                    community_version: version,
                },
            )?)
            .await
            .context("joining the cohort")?;
    }
    let session = cohorts
        .schedule_session(kith.as_member(
            coach,
            cpb::ScheduleSessionRequest {
                request_id: rid(),
                cohort_id: cohort.clone(),
                title: "Hot seat".into(),
                starts_at: Some(kith_platform::wire::timestamp(
                    chrono::Utc::now() + chrono::Duration::days(2),
                )),
                duration_minutes: 90,
                weekly_occurrences: 0,
            },
        )?)
        .await
        .context("scheduling a session")?
        .into_inner()
        .session_ids
        .into_iter()
        .next()
        .context("scheduling gave no session")?;
    say(&format!(
        "cohort {cohort}: six seats taken, Hana on the waitlist, a session in two days"
    ));

    // A day of conversation in the cohort (its conversation has the cohort's id).
    let threads = [
        (ben, "Launching the beta", "The beta goes out on Thursday."),
        (
            dara,
            "Stuck on pricing",
            "Per seat or flat? I keep going back and forth.",
        ),
        (
            eli,
            "First engineer",
            "Hiring my first engineer: what did you look for?",
        ),
        (
            fatima,
            "Cold email",
            "Has anyone had cold email work lately?",
        ),
    ];
    let mut started = Vec::new();
    for (author, title, body) in threads {
        started.push(kith.post(author, &cohort, "", title, body).await?);
    }
    let replies = [
        (0, chen, "Congratulations! What will you measure?"),
        (
            0,
            coach,
            "Pick one number for the first week and tell us on Tuesday.",
        ),
        (0, ben, "Signups, and who comes back on day two."),
        (1, coach, "Flat until you know who gets the most out of it."),
        (1, eli, "Per seat worked for us once teams were over five."),
        (2, fatima, "Someone who has shipped alone before."),
    ];
    let mut last_seq = 0;
    for (thread, author, body) in replies {
        let reply = kith
            .post(author, &cohort, &started[thread].message_id, "", body)
            .await?;
        last_seq = last_seq.max(reply.seq);
    }
    let mut messaging = kith.messaging();
    for (member, thread, reaction) in [(chen, 0, "🎉"), (gus, 0, "🚀"), (dara, 3, "👀")] {
        messaging
            .add_reaction(kith.as_member(
                member,
                msg::AddReactionRequest {
                    request_id: rid(),
                    conversation_id: cohort.clone(),
                    message_id: started[thread].message_id.clone(),
                    reaction: reaction.into(),
                },
            )?)
            .await
            .context("reacting")?;
    }
    for member in [gus, dara] {
        messaging
            .mark_read(kith.as_member(
                member,
                msg::MarkReadRequest {
                    request_id: rid(),
                    conversation_id: cohort.clone(),
                    thread_id: String::new(),
                    seq: last_seq,
                },
            )?)
            .await
            .context("reading")?;
    }

    // Gus gives up his seat; Hana, first in line, takes it and says yes to the session.
    cohorts
        .leave_cohort(kith.as_member(
            gus,
            cpb::LeaveCohortRequest {
                request_id: rid(),
                cohort_id: cohort.clone(),
            },
        )?)
        .await
        .context("leaving the cohort")?;
    for (member, response) in [
        (ben, cpb::RsvpResponse::Yes),
        (chen, cpb::RsvpResponse::Yes),
        (dara, cpb::RsvpResponse::No),
        (eli, cpb::RsvpResponse::Yes),
        (hana, cpb::RsvpResponse::Yes),
    ] {
        cohorts
            .respond_to_session(kith.as_member(
                member,
                cpb::RespondToSessionRequest {
                    request_id: rid(),
                    cohort_id: cohort.clone(),
                    session_id: session.clone(),
                    response: response as i32,
                },
            )?)
            .await
            .context("answering the session")?;
    }
    kith.post(
        hana,
        &cohort,
        &started[0].message_id,
        "",
        "Just got my seat. Good luck on Thursday!",
    )
    .await?;
    say("conversation: 4 threads, 7 replies, 3 reactions; Gus left and Hana took his seat");

    if args.json {
        println!(
            "{}",
            serde_json::json!({"community_id": community, "cohort_id": cohort, "session_id": session})
        );
    } else {
        let today = chrono::Utc::now().date_naive();
        let from = format!("{today}T00:00:00Z");
        let to = format!("{}T00:00:00Z", today + chrono::Duration::days(7));
        // Shell assignments, so that `eval "$(kith demo)"` names them.
        println!("COMMUNITY={community}");
        println!("COHORT={cohort}");
        eprintln!(
            "\nNext: the engagement report for the week from today, as a page:\n  \
             kith report engagement --community $COMMUNITY --from {from} --to {to} --format html -o engagement.html"
        );
    }
    Ok(())
}
