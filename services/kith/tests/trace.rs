//! One command, one trace, across processes: membership and cohorts run as two `kith up`
//! processes exporting to an OTLP receiver of the test's own, as to a collector. A ban sent with
//! a W3C `traceparent` must come back as a single tree: the call's server span, the append, the
//! relay's publish, cohorts' consume and apply, the release it reacts with, that release's own
//! append, publish and roster apply; named and attributed by the OpenTelemetry conventions, and
//! with no span from the libraries underneath.

use std::collections::HashMap;
use std::time::Duration;

use kith_platform::testing::{
    Collector, ReceivedSpan, ServiceProcess, TestEnv, span_kind, with_token,
};
use kith_proto::cohorts as cpb;
use kith_proto::cohorts::cohorts_service_client::CohortsServiceClient;
use kith_proto::membership as mpb;
use kith_proto::membership::membership_service_client::MembershipServiceClient;
use uuid::Uuid;

const KITH: &str = env!("CARGO_BIN_EXE_kith");

/// The spans of one trace, by span id.
struct Trace {
    spans: HashMap<String, ReceivedSpan>,
}

impl Trace {
    fn of(spans: Vec<ReceivedSpan>, trace_id: &str) -> Self {
        Self {
            spans: spans
                .into_iter()
                .filter(|span| span.trace_id == trace_id)
                .map(|span| (span.span_id.clone(), span))
                .collect(),
        }
    }

    fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a ReceivedSpan> + 'a {
        self.spans.values().filter(move |span| span.name == name)
    }

    fn one<'a>(&'a self, name: &str, pick: impl Fn(&ReceivedSpan) -> bool) -> &'a ReceivedSpan {
        let found: Vec<&ReceivedSpan> = self
            .spans
            .values()
            .filter(|span| span.name == name && pick(span))
            .collect();
        assert!(
            !found.is_empty(),
            "no span {name:?} in the trace; it holds {:?}",
            self.summary()
        );
        found[0]
    }

    fn parent(&self, span: &ReceivedSpan) -> Option<&ReceivedSpan> {
        self.spans.get(&span.parent_span_id)
    }

    /// Whether `ancestor` is `span` or above it.
    fn descends(&self, span: &ReceivedSpan, ancestor: &ReceivedSpan) -> bool {
        let mut at = Some(span);
        while let Some(span) = at {
            if span.span_id == ancestor.span_id {
                return true;
            }
            at = self.parent(span);
        }
        false
    }

    fn summary(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .spans
            .values()
            .map(|span| format!("{}:{}", span.service, span.name))
            .collect();
        names.sort();
        names
    }
}

fn as_member<T>(env: &TestEnv, member: Uuid, message: T) -> tonic::Request<T> {
    with_token(&env.token(member), message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_is_one_trace_from_the_call_through_the_bus_into_the_release_and_its_roster() {
    let env = TestEnv::new().await;
    let collector = Collector::start().await;
    let vars = collector.env();
    let membership =
        ServiceProcess::spawn_with_vars(KITH, &["up", "--service", "membership"], &env, &vars)
            .await;
    let cohorts =
        ServiceProcess::spawn_with_vars(KITH, &["up", "--service", "cohorts"], &env, &vars).await;
    let mut members = MembershipServiceClient::connect(format!("http://{}", membership.grpc))
        .await
        .expect("connect to membership");
    let mut cohorts_client = CohortsServiceClient::connect(format!("http://{}", cohorts.grpc))
        .await
        .expect("connect to cohorts");

    // A community, a member, and a cohort the member sits in.
    let owner = Uuid::new_v4();
    let member = Uuid::new_v4();
    let profile = |handle: &str| mpb::ProfileInput {
        display_name: handle.to_uppercase(),
        handle: handle.to_owned(),
        bio: String::new(),
    };
    let community = members
        .create_community(as_member(
            &env,
            owner,
            mpb::CreateCommunityRequest {
                request_id: "community".into(),
                name: "Traced".into(),
                description: String::new(),
                founder: Some(profile("owner")),
            },
        ))
        .await
        .expect("create community")
        .into_inner()
        .community_id;
    let invitation = members
        .create_invitation(as_member(
            &env,
            owner,
            mpb::CreateInvitationRequest {
                request_id: "invitation".into(),
                community_id: community.clone(),
                expires_at: Some(kith_platform::wire::timestamp(
                    chrono::Utc::now() + chrono::Duration::hours(1),
                )),
                max_uses: 5,
            },
        ))
        .await
        .expect("invite")
        .into_inner()
        .invitation_id;
    let version = members
        .accept_invitation(as_member(
            &env,
            member,
            mpb::AcceptInvitationRequest {
                request_id: "accept".into(),
                community_id: community.clone(),
                invitation_id: invitation,
                profile: Some(profile("member")),
            },
        ))
        .await
        .expect("accept")
        .into_inner()
        .committed
        .expect("committed")
        .version;
    let cohort = cohorts_client
        .create_cohort(as_member(
            &env,
            owner,
            cpb::CreateCohortRequest {
                request_id: "cohort".into(),
                community_id: community.clone(),
                name: "Traced cohort".into(),
                kind: cpb::CohortKind::Mastermind as i32,
                capacity: Some(3),
                time_zone: "Europe/Berlin".into(),
                goal: "be traced".into(),
                community_version: version,
                ..Default::default()
            },
        ))
        .await
        .expect("create cohort")
        .into_inner()
        .cohort_id;
    cohorts_client
        .open_cohort(as_member(
            &env,
            owner,
            cpb::OpenCohortRequest {
                request_id: "open".into(),
                cohort_id: cohort.clone(),
            },
        ))
        .await
        .expect("open");
    let joined = cohorts_client
        .join_cohort(as_member(
            &env,
            member,
            cpb::JoinCohortRequest {
                request_id: "join".into(),
                cohort_id: cohort.clone(),
                community_version: version,
            },
        ))
        .await
        .expect("join")
        .into_inner()
        .committed
        .expect("committed")
        .position;
    // The roster has the join before the ban: a roster batch holding the join (another trace)
    // and the release would be linked to both traces rather than a child of either, as the
    // conventions want of a batch. The log's tail waits for every older transaction of the
    // cluster, so under a loaded CI run the roster can lag by that much.
    cohorts_client
        .get_cohort(as_member(
            &env,
            owner,
            cpb::GetCohortRequest {
                cohort_id: cohort.clone(),
                min_position: joined,
            },
        ))
        .await
        .expect("the roster reaches the join");

    // The ban, as a traced caller sends it.
    let trace_id = Uuid::new_v4().simple().to_string();
    let caller_span = &Uuid::new_v4().simple().to_string()[..16];
    let mut ban = as_member(
        &env,
        owner,
        mpb::BanMemberRequest {
            request_id: "ban".into(),
            community_id: community.clone(),
            member_id: member.to_string(),
            reason: String::new(),
        },
    );
    ban.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{caller_span}-01")
            .parse()
            .expect("header"),
    );
    members.ban_member(ban).await.expect("ban");

    // The release's roster apply is the last link of the chain; a span is exported when it
    // ends, so those around it (the release, the call) may come after it: wait until every span
    // of the trace has its parent there too, up to the call's server span.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let trace = loop {
        let trace = Trace::of(collector.spans(), &trace_id);
        let released = trace.named("apply roster").any(|span| {
            span.attribute("kith.event_type")
                .is_some_and(|t| t.contains(".MemberReleased"))
        });
        let orphans: Vec<String> = trace
            .spans
            .values()
            .filter(|span| span.parent_span_id != caller_span && trace.parent(span).is_none())
            .map(|span| format!("{}:{}", span.service, span.name))
            .collect();
        if released && orphans.is_empty() {
            break trace;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after 30 s the trace has {} the roster apply of the release; its spans are {:?}, \
             those whose parent never came {orphans:?}; every span exported: {:?}",
            if released { "reached" } else { "not reached" },
            trace.summary(),
            collector
                .spans()
                .iter()
                .map(|span| format!("{}:{} ({})", span.service, span.name, &span.trace_id[..8]))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("trace {trace_id}: {:#?}", trace.summary());

    // The call: a server span under the caller's, named Service/Method.
    let server = trace.one("kith.membership.v1.MembershipService/BanMember", |_| true);
    assert_eq!(server.kind, span_kind::SERVER);
    assert_eq!(server.service, "kith-membership");
    assert_eq!(server.parent_span_id, caller_span);
    assert_eq!(server.attribute("rpc.system"), Some("grpc"));
    assert_eq!(
        server.attribute("rpc.service"),
        Some("kith.membership.v1.MembershipService")
    );
    assert_eq!(server.attribute("rpc.method"), Some("BanMember"));
    assert_eq!(server.attribute("rpc.grpc.status_code"), Some("0"));
    // Everything in the trace hangs off it: nothing is a second root or under the caller.
    for span in trace.spans.values() {
        assert!(
            trace.descends(span, server),
            "{}:{} is not under the server span",
            span.service,
            span.name
        );
    }

    // The append, a PostgreSQL client span.
    let append = trace.one("INSERT events", |span| span.service == "kith-membership");
    assert_eq!(append.kind, span_kind::CLIENT);
    assert_eq!(append.attribute("db.system.name"), Some("postgresql"));
    assert_eq!(append.attribute("db.operation.name"), Some("INSERT"));
    assert_eq!(append.attribute("db.collection.name"), Some("events"));

    // The relay's publish of the ban, a producer span.
    let membership_stream = env.args.nats.stream_for("membership").name;
    let publish = trace.one(&format!("publish {membership_stream}"), |span| {
        span.attribute("kith.event_type")
            .is_some_and(|t| t.ends_with(".MemberBanned"))
    });
    assert_eq!(publish.kind, span_kind::PRODUCER);
    assert_eq!(publish.service, "kith-membership");
    assert_eq!(publish.attribute("messaging.system"), Some("nats"));
    assert_eq!(publish.attribute("messaging.operation.type"), Some("send"));
    assert!(publish.attribute("messaging.message.id").is_some());

    // Cohorts takes it from the bus: a consumer span under the publish, the apply under that.
    let process = trace.one(&format!("process {membership_stream}"), |span| {
        span.parent_span_id == publish.span_id
    });
    assert_eq!(process.kind, span_kind::CONSUMER);
    assert_eq!(process.service, "kith-cohorts");
    assert_eq!(
        process.attribute("messaging.operation.type"),
        Some("process")
    );
    assert_eq!(
        process.attribute("messaging.consumer.group.name"),
        Some("communities")
    );
    let applied = trace.one("apply communities", |span| {
        span.parent_span_id == process.span_id
    });

    // The release it reacts with, its append, its publish and its roster apply.
    let release = trace.one("release departed member", |span| {
        trace.descends(span, applied)
    });
    assert_eq!(release.service, "kith-cohorts");
    let released_append = trace.one("INSERT events", |span| {
        span.service == "kith-cohorts" && trace.descends(span, release)
    });
    assert_eq!(released_append.kind, span_kind::CLIENT);
    let cohorts_stream = env.args.nats.stream_for("cohorts").name;
    let released_publish = trace.one(&format!("publish {cohorts_stream}"), |span| {
        trace.descends(span, release)
    });
    assert_eq!(released_publish.kind, span_kind::PRODUCER);
    let roster = trace.one("apply roster", |span| {
        span.attribute("kith.event_type")
            .is_some_and(|t| t.contains(".MemberReleased"))
    });
    assert!(trace.descends(roster, release));

    // No transport noise: every span either process exported is Kith's own.
    let all = collector.spans();
    let foreign: Vec<String> = all
        .iter()
        .filter(|span| {
            !span
                .attribute("code.module.name")
                .is_some_and(|module| module.starts_with("kith"))
        })
        .map(|span| {
            format!(
                "{}:{} ({:?})",
                span.service,
                span.name,
                span.attribute("code.module.name")
            )
        })
        .collect();
    assert!(foreign.is_empty(), "spans from outside Kith: {foreign:?}");
}
