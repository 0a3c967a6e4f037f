//! `kith events export`: every service's events, merged in recorded order and decoded by their
//! type names from the descriptor set Kith is built with, as JSON lines or CSV for an analyst's
//! own tools. Sealed fields stay as their sealed bytes unless `--open-sealed` names them and the
//! keys are at hand (see [`unseal`]); an erased subject's can never be opened.

use std::io::Write;
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use sqlx::Row;

pub(crate) mod columnar;
mod unseal;

/// The services whose logs are read, in the order that breaks ties between equal times.
const SERVICES: &[&str] = &["membership", "cohorts", "messaging"];

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Events {
    /// Write every service's events, decoded, in recorded order (from the PostgreSQL logs).
    Export(ExportArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// One JSON object per line.
    Jsonl,
    /// A header, then one row per event; the event itself as a JSON column.
    Csv,
    /// Parquet files under the --output directory, one per UTC day (`day=YYYY-MM-DD/`, Hive
    /// style): the common fields typed, the event as JSON text.
    Parquet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Source {
    /// The services' JetStream streams.
    Nats,
    /// The services' event logs in PostgreSQL.
    Postgres,
}

/// Where events are read from.
#[derive(Debug, clap::Args)]
pub(crate) struct ReadArgs {
    /// Where to read the events: both give the same output for the same history.
    #[arg(long, value_enum, default_value = "nats")]
    source: Source,
    #[command(flatten)]
    nats: kith_platform::config::NatsArgs,
    /// PostgreSQL URL of the services' logs (with `--source postgres`).
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "postgres://postgres@127.0.0.1:5432/kith"
    )]
    database_url: String,
}

impl ReadArgs {
    /// The services' logs in the PostgreSQL database at `url`.
    pub(crate) fn postgres(url: &str) -> Self {
        Self {
            source: Source::Postgres,
            // Not read from: the source is PostgreSQL.
            nats: kith_platform::config::NatsArgs {
                nats_url: String::new(),
                stream_replicas: 1,
                duplicate_window_secs: 0,
                nats_namespace: None,
            },
            database_url: url.to_owned(),
        }
    }
}

/// A window of recorded times: from (inclusive) to (exclusive), each open when absent.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Window {
    pub(crate) from: Option<DateTime<Utc>>,
    pub(crate) to: Option<DateTime<Utc>>,
}

impl Window {
    fn holds(&self, at: DateTime<Utc>) -> bool {
        self.from.is_none_or(|from| at >= from) && self.to.is_none_or(|to| at < to)
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    read: ReadArgs,
    /// What to write.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: Format,
    /// Only events recorded at or after this time (RFC 3339, e.g. 2026-12-01T00:00:00Z).
    #[arg(long)]
    from: Option<DateTime<Utc>>,
    /// Only events recorded before this time (RFC 3339).
    #[arg(long)]
    to: Option<DateTime<Utc>>,
    /// File to write; standard output when absent or `-`. With --format parquet, a new or empty
    /// directory (required).
    #[arg(long, short)]
    output: Option<std::path::PathBuf>,
    /// Open these sealed personal fields (names as the export writes them, comma-separated, e.g.
    /// title,body; or all). Needs the services' database (--database-url, whatever the
    /// --source) and, once the keys are wrapped, the KEK: only a role given those may read
    /// them. A field whose member was erased is null.
    #[arg(long, value_delimiter = ',', value_name = "FIELD")]
    open_sealed: Vec<String>,
    #[command(flatten)]
    sealing: kith_platform::config::SealingArgs,
}

pub(crate) async fn run(events: Events) -> anyhow::Result<()> {
    match events {
        Events::Export(args) => export(args).await,
    }
}

/// One exported event.
pub(crate) struct Exported {
    pub(crate) service: String,
    pub(crate) position: i64,
    pub(crate) recorded_at: DateTime<Utc>,
    pub(crate) stream_type: String,
    pub(crate) stream_id: String,
    pub(crate) version: i64,
    pub(crate) event_id: uuid::Uuid,
    pub(crate) event_type: String,
    pub(crate) event: serde_json::Value,
}

async fn export(args: ExportArgs) -> anyhow::Result<()> {
    if let (Some(from), Some(to)) = (args.from, args.to)
        && from >= to
    {
        anyhow::bail!("--from ({from}) must be before --to ({to})");
    }
    let decoder = Decoder::new()?;
    let mut unsealer = if args.open_sealed.is_empty() {
        None
    } else {
        let fields = unseal::Fields::parse(&args.open_sealed, &decoder.pool)?;
        args.sealing.install()?;
        Some(
            unseal::Unsealer::connect(
                &args.read.database_url,
                SERVICES,
                fields,
                decoder.pool.clone(),
            )
            .await?,
        )
    };
    let mut sink = if args.format == Format::Parquet {
        let dir = args
            .output
            .as_deref()
            .filter(|path| *path != std::path::Path::new("-"))
            .context("--format parquet writes a directory of files: name it with --output DIR")?;
        Sink::parquet(columnar::Partitions::create(dir)?)
    } else {
        let out: Box<dyn Write> = match args.output.as_deref() {
            Some(path) if path != std::path::Path::new("-") => Box::new(std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("--output {}", path.display()))?,
            )),
            _ => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
        };
        Sink::new(out, args.format)?
    };
    let started = Instant::now();
    let window = Window {
        from: args.from,
        to: args.to,
    };
    let read = read(&args.read, window, &decoder, unsealer.as_mut(), &mut sink).await?;
    sink.finish()?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "exported {} events from {} in {seconds:.1}s ({:.0} events/s){}{}",
        sink.written,
        if read.is_empty() {
            "no service (none has events yet)".to_owned()
        } else {
            read.join(", ")
        },
        sink.written as f64 / seconds.max(1e-9),
        if decoder.unknown.get() > 0 {
            format!(
                "; {} of types this version does not know, without their fields",
                decoder.unknown.get()
            )
        } else {
            String::new()
        },
        unsealer.as_ref().map_or_else(String::new, |u| format!(
            "; opened {} sealed fields, {} erased (null)",
            u.opened, u.erased
        ))
    );
    Ok(())
}

/// Decodes events by type name from the descriptor set this build carries.
pub(crate) struct Decoder {
    pub(crate) pool: DescriptorPool,
    options: SerializeOptions,
    unknown: std::cell::Cell<u64>,
}

impl Decoder {
    pub(crate) fn new() -> anyhow::Result<Self> {
        Ok(Self {
            pool: DescriptorPool::decode(kith_proto::FILE_DESCRIPTOR_SET)
                .context("the built-in descriptor set does not decode")?,
            options: SerializeOptions::new()
                .use_proto_field_name(true)
                .stringify_64_bit_integers(false),
            unknown: std::cell::Cell::new(0),
        })
    }

    /// The event as JSON; null for a type this build does not know (a newer version's).
    fn decode(&self, event_type: &str, payload: &[u8]) -> anyhow::Result<serde_json::Value> {
        match self.pool.get_message_by_name(event_type) {
            Some(descriptor) => {
                let message = DynamicMessage::decode(descriptor, payload)
                    .with_context(|| format!("{event_type} does not decode"))?;
                Ok(message.serialize_with_options(serde_json::value::Serializer, &self.options)?)
            }
            None => {
                self.unknown.set(self.unknown.get() + 1);
                Ok(serde_json::Value::Null)
            }
        }
    }
}

/// What the readers hand each event to, in recorded order.
pub(crate) trait Take {
    /// How many events are coming, when known.
    fn expect(&self, total: u64);
    fn take(&mut self, record: Exported) -> anyhow::Result<()>;
}

impl Take for Sink {
    fn expect(&self, total: u64) {
        self.progress.set_length(total);
    }

    fn take(&mut self, record: Exported) -> anyhow::Result<()> {
        self.write(&record)
    }
}

/// Where exported events go, in the chosen format, with progress on stderr.
struct Sink {
    out: Box<dyn Write>,
    format: Format,
    /// With --format parquet, the day files (`out` is unused).
    partitions: Option<columnar::Partitions>,
    written: u64,
    progress: ProgressBar,
}

impl Sink {
    fn new(mut out: Box<dyn Write>, format: Format) -> anyhow::Result<Self> {
        if format == Format::Csv {
            writeln!(
                out,
                "service,position,recorded_at,stream_type,stream_id,version,event_id,event_type,event"
            )?;
        }
        Ok(Self {
            out,
            format,
            partitions: None,
            written: 0,
            progress: progress(0),
        })
    }

    fn parquet(partitions: columnar::Partitions) -> Self {
        Self {
            out: Box::new(std::io::sink()),
            format: Format::Parquet,
            partitions: Some(partitions),
            written: 0,
            progress: progress(0),
        }
    }

    fn write(&mut self, record: &Exported) -> anyhow::Result<()> {
        match self.format {
            Format::Jsonl => write_json(&mut self.out, record)?,
            Format::Csv => write_csv(&mut self.out, record)?,
            Format::Parquet => self
                .partitions
                .as_mut()
                .context("no Parquet directory")?
                .write(record)?,
        }
        self.written += 1;
        self.progress.inc(1);
        Ok(())
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        if let Some(partitions) = self.partitions.as_mut() {
            partitions.finish()?;
        }
        self.out.flush()?;
        self.progress.finish_and_clear();
        Ok(())
    }
}

/// Every event in `window`, in recorded order, from the source `args` name, to `sink`; returns
/// the services read.
pub(crate) async fn read(
    args: &ReadArgs,
    window: Window,
    decoder: &Decoder,
    mut unsealer: Option<&mut unseal::Unsealer>,
    sink: &mut dyn Take,
) -> anyhow::Result<Vec<&'static str>> {
    match args.source {
        Source::Postgres => from_postgres(args, window, decoder, &mut unsealer, sink).await,
        Source::Nats => from_nats(args, window, decoder, &mut unsealer, sink).await,
    }
}

/// Every service's log in PostgreSQL, merged by the database in recorded order; returns the
/// services read.
async fn from_postgres(
    args: &ReadArgs,
    window: Window,
    decoder: &Decoder,
    unsealer: &mut Option<&mut unseal::Unsealer>,
    sink: &mut dyn Take,
) -> anyhow::Result<Vec<&'static str>> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&args.database_url)
        .await
        .with_context(|| "cannot connect to --database-url (DATABASE_URL)".to_owned())?;
    let mut present = Vec::new();
    for service in SERVICES {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(format!("{service}.events"))
            .fetch_one(&pool)
            .await?;
        if exists {
            present.push(*service);
        }
    }
    // A service with no log yet contributes nothing.
    if present.is_empty() {
        return Ok(present);
    }
    let within = "($1::timestamptz IS NULL OR recorded_at >= $1)
                  AND ($2::timestamptz IS NULL OR recorded_at < $2)";
    let counting = present
        .iter()
        .map(|s| format!("SELECT count(*) AS n FROM {s}.events WHERE {within}"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT sum(n)::bigint FROM ({counting}) c"
    )))
    .bind(window.from)
    .bind(window.to)
    .fetch_one(&pool)
    .await?;
    sink.expect(u64::try_from(total).unwrap_or(0));
    // Recorded order across services: time, then service, then each log's own order.
    let query = present
        .iter()
        .enumerate()
        .map(|(rank, service)| {
            format!(
                "SELECT '{service}' AS service, {rank} AS rank, position, recorded_at,
                        stream_type, stream_id, version, event_id, event_type, payload
                 FROM {service}.events WHERE {within}"
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let mut rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{query} ORDER BY recorded_at, rank, position"
    )))
    .bind(window.from)
    .bind(window.to)
    .fetch(&pool);
    let mut handing = Handing::new(unsealer.as_deref_mut());
    while let Some(row) = rows.try_next().await? {
        let event_type: String = row.try_get("event_type")?;
        let payload: Vec<u8> = row.try_get("payload")?;
        let event = decoder.decode(&event_type, &payload)?;
        let record = Exported {
            service: row.try_get("service")?,
            position: row.try_get("position")?,
            recorded_at: row.try_get("recorded_at")?,
            stream_type: row.try_get("stream_type")?,
            stream_id: row.try_get("stream_id")?,
            version: row.try_get("version")?,
            event_id: row.try_get("event_id")?,
            event_type,
            event,
        };
        handing.take(record, sink).await?;
    }
    handing.finish(sink).await?;
    Ok(present)
}

/// Every service's JetStream stream, read up to its end when the export started (from a time
/// just before the window's start when it has one, see [`deliver_from`]), then put in
/// the same order as the PostgreSQL source (a stream is in publish order, which is not always
/// the order of recorded times). Messages on the subjects that are not Kith events, and events
/// seen twice (a stream republished), are skipped. Holds the window's events in memory.
async fn from_nats(
    args: &ReadArgs,
    window: Window,
    decoder: &Decoder,
    unsealer: &mut Option<&mut unseal::Unsealer>,
    sink: &mut dyn Take,
) -> anyhow::Result<Vec<&'static str>> {
    use async_nats::jetstream::context::GetStreamErrorKind;
    use async_nats::jetstream::{ErrorCode, consumer};
    let client = kith_platform::bus::connect(&args.nats.nats_url, "kith-events-export")
        .await
        .context("cannot connect to --nats-url (NATS_URL)")?;
    let js = async_nats::jetstream::new(client);
    let mut present = Vec::new();
    let mut records = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (rank, service) in SERVICES.iter().enumerate() {
        let name = args.nats.stream_for(service).name;
        let mut stream = match js.get_stream(&name).await {
            Ok(stream) => stream,
            Err(err)
                if matches!(err.kind(), GetStreamErrorKind::JetStream(e)
                    if e.error_code() == ErrorCode::STREAM_NOT_FOUND) =>
            {
                continue;
            }
            Err(err) => return Err(anyhow::anyhow!("stream {name}: {err}")),
        };
        let (messages, end) = {
            let state = &stream.info().await?.state;
            (state.messages, state.last_sequence)
        };
        present.push(*service);
        // Empty, or purged: an ordered consumer would wait for a message that never comes.
        if messages == 0 {
            continue;
        }
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: deliver_from(window.from),
                ..Default::default()
            })
            .await?;
        // Nothing stored since the start time: there is nothing to wait for.
        if consumer.cached_info().num_pending == 0 {
            continue;
        }
        let mut messages = consumer.messages().await?;
        while let Some(message) = messages.try_next().await? {
            let (sequence, pending) = {
                let info = message.info().map_err(|e| anyhow::anyhow!(e))?;
                (info.stream_sequence, info.pending)
            };
            if let Some(record) = held(&message, service, rank, &mut seen)
                && window.holds(record.recorded_at)
            {
                records.push(record);
            }
            // At the end the export started at, or at the stream's end if that message is gone.
            if sequence >= end || pending == 0 {
                break;
            }
        }
    }
    records.sort_by(|a, b| {
        (a.recorded_at, a.rank, a.position).cmp(&(b.recorded_at, b.rank, b.position))
    });
    sink.expect(records.len() as u64);
    let mut handing = Handing::new(unsealer.as_deref_mut());
    for record in records {
        let record = record.decode(decoder)?;
        handing.take(record, sink).await?;
    }
    handing.finish(sink).await?;
    Ok(present)
}

/// Events whose sealed fields are opened together (their keys fetched in one query).
const OPEN_BATCH: usize = 1_000;

/// Hands exported events to the sink in order, opening their sealed fields first when the
/// export opens any: [`OPEN_BATCH`] at a time, so that their keys come in one query.
struct Handing<'a> {
    unsealer: Option<&'a mut unseal::Unsealer>,
    opening: Vec<Exported>,
}

impl<'a> Handing<'a> {
    fn new(unsealer: Option<&'a mut unseal::Unsealer>) -> Self {
        Self {
            unsealer,
            opening: Vec::new(),
        }
    }

    async fn take(&mut self, record: Exported, sink: &mut dyn Take) -> anyhow::Result<()> {
        if self.unsealer.is_none() {
            return sink.take(record);
        }
        self.opening.push(record);
        if self.opening.len() >= OPEN_BATCH {
            self.open_and_take(sink).await?;
        }
        Ok(())
    }

    /// Hands over what is still waiting to be opened.
    async fn finish(mut self, sink: &mut dyn Take) -> anyhow::Result<()> {
        self.open_and_take(sink).await
    }

    async fn open_and_take(&mut self, sink: &mut dyn Take) -> anyhow::Result<()> {
        let Some(unsealer) = self.unsealer.as_deref_mut() else {
            return Ok(());
        };
        unsealer.open_batch(&mut self.opening).await?;
        for record in self.opening.drain(..) {
            sink.take(record)?;
        }
        Ok(())
    }
}

/// A bus message held for sorting: what orders it and its payload as it came, decoded only
/// once it is its turn, so that the window takes a few times less memory than decoded JSON.
struct Held {
    service: &'static str,
    /// The service's place in [`SERVICES`], which breaks ties between equal times.
    rank: usize,
    position: i64,
    recorded_at: DateTime<Utc>,
    stream_type: String,
    stream_id: String,
    version: i64,
    event_id: uuid::Uuid,
    event_type: String,
    payload: bytes::Bytes,
}

impl Held {
    fn decode(self, decoder: &Decoder) -> anyhow::Result<Exported> {
        let event = decoder.decode(&self.event_type, &self.payload)?;
        Ok(Exported {
            service: self.service.to_owned(),
            position: self.position,
            recorded_at: self.recorded_at,
            stream_type: self.stream_type,
            stream_id: self.stream_id,
            version: self.version,
            event_id: self.event_id,
            event_type: self.event_type,
            event,
        })
    }
}

/// How far before `--from` the bus is read. JetStream stamps a message when it stores it,
/// which is after the event was recorded (the relay publishes what has committed), so an event
/// recorded at or after `--from` is stored at or after it too, as long as the two clocks agree;
/// this allows for them to disagree by as much. Events before `--from` that this lets in are
/// dropped by their recorded time, like any others outside the window.
const CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// Where a stream is read from: its start, or by time a little before `--from`, so that a
/// narrow window over a long history does not read the whole of it.
fn deliver_from(from: Option<DateTime<Utc>>) -> async_nats::jetstream::consumer::DeliverPolicy {
    use async_nats::jetstream::consumer::DeliverPolicy;
    let Some(start) = from.map(|from| from - CLOCK_SKEW) else {
        return DeliverPolicy::All;
    };
    let nanos =
        i128::from(start.timestamp()) * 1_000_000_000 + i128::from(start.timestamp_subsec_nanos());
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(start_time) => DeliverPolicy::ByStartTime { start_time },
        // Outside what the bus can name: read everything, the window still applies.
        Err(_) => DeliverPolicy::All,
    }
}

/// A bus message as held for sorting, `None` for one that is not a Kith event or was seen.
fn held(
    message: &async_nats::jetstream::Message,
    service: &'static str,
    rank: usize,
    seen: &mut std::collections::HashSet<uuid::Uuid>,
) -> Option<Held> {
    use kith_platform::bus::headers;
    let map = message.headers.as_ref()?;
    let (event_id, position) = kith_platform::bus::event_identity(map)?;
    if !seen.insert(event_id) {
        return None;
    }
    let header = |name: &str| map.get(name).map(|v| v.as_str().to_owned());
    Some(Held {
        service,
        rank,
        position,
        recorded_at: header(headers::RECORDED_AT)
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc))?,
        stream_type: header(headers::STREAM_TYPE)?,
        stream_id: header(headers::STREAM_ID)?,
        version: header(headers::VERSION).and_then(|v| v.parse::<i64>().ok())?,
        event_id,
        event_type: header(headers::EVENT_TYPE)?,
        // A copy: the message's own bytes share a buffer with its headers and its neighbours,
        // which holding a slice of them would keep alive for the whole sort.
        payload: bytes::Bytes::copy_from_slice(&message.payload),
    })
}

fn progress(total: i64) -> ProgressBar {
    progress_of("exporting", total)
}

/// A progress bar on stderr for `what` over `total` events.
pub(crate) fn progress_of(what: &str, total: i64) -> ProgressBar {
    let bar = ProgressBar::new(u64::try_from(total).unwrap_or(0));
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{what} [{{bar:40}}] {{pos}}/{{len}} {{per_sec}} {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    bar
}

fn write_json(out: &mut Box<dyn Write>, r: &Exported) -> anyhow::Result<()> {
    let line = serde_json::json!({
        "service": r.service,
        "position": r.position,
        "recorded_at": r.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "stream_type": r.stream_type,
        "stream_id": r.stream_id,
        "version": r.version,
        "event_id": r.event_id,
        "event_type": r.event_type,
        "event": r.event,
    });
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")?;
    Ok(())
}

fn write_csv(out: &mut Box<dyn Write>, r: &Exported) -> anyhow::Result<()> {
    let fields = [
        r.service.clone(),
        r.position.to_string(),
        r.recorded_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        r.stream_type.clone(),
        r.stream_id.clone(),
        r.version.to_string(),
        r.event_id.to_string(),
        r.event_type.clone(),
        r.event.to_string(),
    ];
    let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
    writeln!(out, "{}", line.join(","))?;
    Ok(())
}

/// A CSV field as RFC 4180 has it: quoted when it holds a comma, a quote or a line break, with
/// quotes doubled.
pub(crate) fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_only_when_they_must_be() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }
}
