//! Every RPC of every service, sent every class of bad input, field by field, by a client that
//! knows only the published descriptors (no project helpers build the requests): each answer is
//! INVALID_ARGUMENT naming the field, nothing is appended to any log, and every read model is
//! still current afterwards. Then random bytes as requests: never an internal error, and the
//! server goes on serving.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Buf, BufMut};
use kith_platform::testing::{ServiceProcess, TestEnv, eventually};
use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};
use rand::{Rng, SeedableRng};
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic_types::StatusExt;
use uuid::Uuid;

const KITH: &str = env!("CARGO_BIN_EXE_kith");
/// How long a call may go unanswered: a good request to a streaming RPC opens a stream that
/// stays open.
const STREAM_OPEN: Duration = Duration::from_secs(3);

/// Requests and replies as raw protobuf bytes, so that any message can be sent.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Self::Error> {
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

/// One field set to one value, in protobuf wire form.
fn encode_field(out: &mut Vec<u8>, number: i32, value: &Value) {
    let tag = |wire: u64| (u64::try_from(number).unwrap_or(0) << 3) | wire;
    match value {
        Value::Varint(v) => {
            prost::encoding::encode_varint(tag(0), out);
            prost::encoding::encode_varint(*v, out);
        }
        Value::Bytes(bytes) => {
            prost::encoding::encode_varint(tag(2), out);
            prost::encoding::encode_varint(bytes.len() as u64, out);
            out.extend_from_slice(bytes);
        }
    }
}

#[derive(Debug, Clone)]
enum Value {
    Varint(u64),
    Bytes(Vec<u8>),
}

/// The classes of bad text: each must be refused in every string field of every request.
fn bad_strings() -> Vec<(&'static str, String)> {
    vec![
        ("NUL", "a\u{0}b".to_owned()),
        ("control character", "a\u{7}b".to_owned()),
        ("bidi override", "abc\u{202E}def".to_owned()),
        ("bidi isolate", "abc\u{2066}def".to_owned()),
        ("only invisible", "\u{200B}\u{2060}".to_owned()),
        ("noncharacter", "a\u{FFFF}b".to_owned()),
        ("far too long", "x".repeat(200_000)),
    ]
}

/// A bad value for a field, its class, and the field path the answer must name.
struct Case {
    class: String,
    path: String,
    request: Vec<u8>,
}

struct Descriptors {
    messages: BTreeMap<String, DescriptorProto>,
}

impl Descriptors {
    /// The messages, and every RPC as (path, input type, name, whether it streams replies).
    fn load() -> (Self, Vec<(String, String, String, bool)>) {
        let set = FileDescriptorSet::decode(kith_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
        let mut messages = BTreeMap::new();
        let mut rpcs = Vec::new();
        for file in &set.file {
            let package = file.package();
            for message in &file.message_type {
                messages.insert(format!(".{package}.{}", message.name()), message.clone());
            }
            for service in &file.service {
                for method in &service.method {
                    rpcs.push((
                        format!("/{package}.{}/{}", service.name(), method.name()),
                        method.input_type().to_owned(),
                        method.name().to_owned(),
                        method.server_streaming(),
                    ));
                }
            }
        }
        (Self { messages }, rpcs)
    }

    /// Every case of bad input for the message `type_name`, with paths under `prefix`.
    fn cases(&self, type_name: &str, prefix: &str) -> Vec<Case> {
        let Some(message) = self.messages.get(type_name) else {
            return Vec::new();
        };
        let mut cases = Vec::new();
        for field in &message.field {
            let path = format!("{prefix}{}", field.name());
            let mut push = |class: &str, value: Value| {
                let mut request = Vec::new();
                encode_field(&mut request, field.number(), &value);
                cases.push(Case {
                    class: class.to_owned(),
                    path: path.clone(),
                    request,
                });
            };
            match field.r#type() {
                Type::String => {
                    for (class, bad) in bad_strings() {
                        push(class, Value::Bytes(bad.into_bytes()));
                    }
                }
                Type::Enum => push("unknown enum value", Value::Varint(977)),
                Type::Int64
                    if field.name().ends_with("position")
                        || field.name() == "community_version" =>
                {
                    push("negative", Value::Varint(-1i64 as u64));
                }
                Type::Uint32 if field.name() == "page_size" => {
                    push("page too large", Value::Varint(1_000_000));
                }
                Type::Message if field.type_name() == ".google.protobuf.Timestamp" => {
                    let mut year_10000 = Vec::new();
                    encode_field(&mut year_10000, 1, &Value::Varint(253_402_300_800));
                    push("timestamp past year 9999", Value::Bytes(year_10000));
                    let mut bad_nanos = Vec::new();
                    encode_field(&mut bad_nanos, 1, &Value::Varint(1_900_000_000));
                    encode_field(&mut bad_nanos, 2, &Value::Varint(-1i64 as u64));
                    push("negative nanos", Value::Bytes(bad_nanos));
                }
                Type::Message if field.label() != Label::Repeated => {
                    for inner in self.cases(field.type_name(), &format!("{path}.")) {
                        let mut request = Vec::new();
                        encode_field(&mut request, field.number(), &Value::Bytes(inner.request));
                        cases.push(Case {
                            class: inner.class,
                            path: inner.path,
                            request,
                        });
                    }
                }
                _ => {}
            }
        }
        cases
    }
}

fn field_is_named(status: &tonic::Status, path: &str) -> bool {
    status.get_details_bad_request().is_some_and(|bad| {
        bad.field_violations.iter().any(|v| {
            v.field == path
                || v.field.starts_with(&format!("{path}."))
                || v.field.starts_with(&format!("{path}["))
        })
    })
}

async fn count_events(pool: &sqlx::PgPool) -> (i64, i64, i64, i64) {
    let count = |schema: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {schema}.events"
            )))
            .fetch_one(&pool)
            .await
            .expect("count events")
        }
    };
    (
        count("membership").await,
        count("cohorts").await,
        count("messaging").await,
        count("notifications").await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_refuses_every_class_of_bad_input_naming_the_field_and_writes_nothing() {
    let env = TestEnv::new().await;
    let log = std::env::temp_dir().join(format!("kith-hostile-{}.log", Uuid::new_v4()));
    let kith = ServiceProcess::spawn_logging_to(KITH, &["up"], &env, &log).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", kith.grpc))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let token = env.token(Uuid::new_v4());
    let call = |path: String, body: Vec<u8>| {
        let channel = channel.clone();
        let token = token.clone();
        async move {
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready().await.expect("ready");
            let mut request = tonic::Request::new(body);
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().expect("header"),
            );
            grpc.unary(request, path.parse().expect("path"), RawCodec)
                .await
        }
    };
    let pool = sqlx::PgPool::connect(&env.db.url).await.expect("database");
    let before = count_events(&pool).await;

    let (descriptors, rpcs) = Descriptors::load();
    let mut sent = 0;
    let mut failures = Vec::new();
    for (path, input, _, _) in rpcs
        .iter()
        .filter(|(path, _, _, _)| path.starts_with("/kith."))
    {
        let cases = descriptors.cases(input, "");
        assert!(!cases.is_empty(), "{path}: no field to test");
        for case in cases {
            sent += 1;
            match call(path.clone(), case.request).await {
                Err(status)
                    if status.code() == Code::InvalidArgument
                        && field_is_named(&status, &case.path) => {}
                other => failures.push(format!(
                    "{path} {} = {}: {:?}",
                    case.path,
                    case.class,
                    other
                        .map(|_| "OK")
                        .map_err(|s| (s.code(), s.message().to_owned()))
                )),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {sent} bad requests were not refused naming their field:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(count_events(&pool).await, before, "nothing appended");
    println!(
        "{sent} bad requests over {} RPCs: each refused naming its field",
        rpcs.iter()
            .filter(|(path, _, _, _)| path.starts_with("/kith."))
            .count()
    );

    // Random bytes as requests: refused as bad input, never an internal error.
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    for (path, _, _, streams) in rpcs
        .iter()
        .filter(|(path, _, _, _)| path.starts_with("/kith."))
    {
        for _ in 0..25 {
            let len = rng.random_range(0..64);
            let body: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let answer = tokio::time::timeout(STREAM_OPEN, call(path.clone(), body.clone())).await;
            // Bytes that happen to decode as a good request open a stream that stays open.
            let answer = match answer {
                Ok(answer) => answer,
                Err(_) if *streams => continue,
                Err(_) => panic!("{path} with {body:02x?}: no answer in {STREAM_OPEN:?}"),
            };
            if let Err(status) = answer {
                assert!(
                    !matches!(
                        status.code(),
                        Code::Internal | Code::Unknown | Code::Unavailable | Code::DataLoss
                    ),
                    "{path} with {body:02x?}: {status:?}"
                );
            }
        }
    }
    assert_eq!(
        count_events(&pool).await,
        before,
        "nothing appended by random bytes"
    );

    // Every read model is still current: nothing stalled, and each checkpoint is at its head.
    let stalled: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM membership.projection_checkpoints WHERE stalled_position IS NOT NULL)
              + (SELECT count(*) FROM cohorts.projection_checkpoints WHERE stalled_position IS NOT NULL)
              + (SELECT count(*) FROM messaging.projection_checkpoints WHERE stalled_position IS NOT NULL)
              + (SELECT count(*) FROM notifications.projection_checkpoints WHERE stalled_position IS NOT NULL)",
    )
    .fetch_one(&pool)
    .await
    .expect("stalls");
    assert_eq!(stalled, 0);
    eventually(
        Duration::from_secs(10),
        "projections at the log's head",
        || {
            let pool = pool.clone();
            async move {
                let behind: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM (
                     SELECT c.position FROM membership.projection_checkpoints c
                     WHERE c.source = 'log'
                       AND c.position < (SELECT coalesce(max(position), 0) FROM membership.events)
                     UNION ALL
                     SELECT c.position FROM cohorts.projection_checkpoints c
                     WHERE c.source = 'log'
                       AND c.position < (SELECT coalesce(max(position), 0) FROM cohorts.events)
                     UNION ALL
                     SELECT c.position FROM messaging.projection_checkpoints c
                     WHERE c.source = 'log'
                       AND c.position < (SELECT coalesce(max(position), 0) FROM messaging.events)
                     UNION ALL
                     SELECT c.position FROM notifications.projection_checkpoints c
                     WHERE c.source = 'log'
                       AND c.position < (SELECT coalesce(max(position), 0) FROM notifications.events)
                 ) behind",
                )
                .fetch_one(&pool)
                .await
                .expect("checkpoints");
                (behind == 0).then_some(())
            }
        },
    )
    .await;
    pool.close().await;

    // A caller's mistakes are not the operator's errors: nothing logged at ERROR, and nothing the
    // callers sent (the bad text) echoed into the log.
    let logged = std::fs::read_to_string(&log).expect("the server's log");
    assert!(logged.contains("INFO"), "the log was captured:\n{logged}");
    let errors: Vec<&str> = logged
        .lines()
        .filter(|line| line.contains("ERROR"))
        .collect();
    assert!(errors.is_empty(), "logged at ERROR:\n{}", errors.join("\n"));
    assert!(
        !logged.contains("abc\u{202E}def"),
        "a caller's text in the log"
    );
    kith.signal("TERM");
    let _ = std::fs::remove_file(&log);
}
