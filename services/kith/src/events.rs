//! `kith events export`: every service's events, merged in recorded order and decoded by their
//! type names from the descriptor set Kith is built with, as JSON lines or CSV for an analyst's
//! own tools. Sealed fields stay as their sealed bytes; an erased subject's can never be opened.

use std::io::Write;
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use sqlx::Row;

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
}

#[derive(Debug, clap::Args)]
pub(crate) struct ExportArgs {
    /// PostgreSQL URL of the services' logs.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "postgres://postgres@127.0.0.1:5432/kith"
    )]
    database_url: String,
    /// What to write.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: Format,
    /// Only events recorded at or after this time (RFC 3339, e.g. 2026-12-01T00:00:00Z).
    #[arg(long)]
    from: Option<DateTime<Utc>>,
    /// Only events recorded before this time (RFC 3339).
    #[arg(long)]
    to: Option<DateTime<Utc>>,
    /// File to write; standard output when absent or `-`.
    #[arg(long, short)]
    output: Option<std::path::PathBuf>,
}

pub(crate) async fn run(events: Events) -> anyhow::Result<()> {
    match events {
        Events::Export(args) => export(args).await,
    }
}

/// One exported event.
struct Exported {
    service: String,
    position: i64,
    recorded_at: DateTime<Utc>,
    stream_type: String,
    stream_id: String,
    version: i64,
    event_id: uuid::Uuid,
    event_type: String,
    event: serde_json::Value,
}

async fn export(args: ExportArgs) -> anyhow::Result<()> {
    if let (Some(from), Some(to)) = (args.from, args.to)
        && from >= to
    {
        anyhow::bail!("--from ({from}) must be before --to ({to})");
    }
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
        eprintln!("no service has a log in this database yet: nothing to export");
        return Ok(());
    }
    let (from, to) = (args.from, args.to);
    let select = |service: &str, n: usize| {
        format!(
            "SELECT '{service}' AS service, {n} AS rank, position, recorded_at, stream_type,
                    stream_id, version, event_id, event_type, payload
             FROM {service}.events
             WHERE ($1::timestamptz IS NULL OR recorded_at >= $1)
               AND ($2::timestamptz IS NULL OR recorded_at < $2)"
        )
    };
    let parts: Vec<String> = present
        .iter()
        .enumerate()
        .map(|(n, service)| select(service, n))
        .collect();
    let counting = format!(
        "SELECT sum(n)::bigint FROM ({}) c",
        present
            .iter()
            .map(|s| format!(
                "SELECT count(*) AS n FROM {s}.events
                 WHERE ($1::timestamptz IS NULL OR recorded_at >= $1)
                   AND ($2::timestamptz IS NULL OR recorded_at < $2)"
            ))
            .collect::<Vec<_>>()
            .join(" UNION ALL ")
    );
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(counting))
        .bind(from)
        .bind(to)
        .fetch_one(&pool)
        .await?;
    // Recorded order across services: time, then service, then each log's own order.
    let query = format!(
        "{} ORDER BY recorded_at, rank, position",
        parts.join(" UNION ALL ")
    );

    let descriptors = DescriptorPool::decode(kith_proto::FILE_DESCRIPTOR_SET)
        .context("the built-in descriptor set does not decode")?;
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false);
    let mut out: Box<dyn Write> = match args.output.as_deref() {
        Some(path) if path != std::path::Path::new("-") => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("--output {}", path.display()))?,
        )),
        _ => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    if args.format == Format::Csv {
        writeln!(
            out,
            "service,position,recorded_at,stream_type,stream_id,version,event_id,event_type,event"
        )?;
    }
    let progress = progress(total);
    let started = Instant::now();
    let mut written = 0u64;
    let mut unknown = 0u64;
    let mut rows = sqlx::query(sqlx::AssertSqlSafe(query))
        .bind(from)
        .bind(to)
        .fetch(&pool);
    while let Some(row) = rows.try_next().await? {
        let event_type: String = row.try_get("event_type")?;
        let payload: Vec<u8> = row.try_get("payload")?;
        // A type this build does not know (a newer version's) is written without its fields.
        let event = match descriptors.get_message_by_name(&event_type) {
            Some(descriptor) => {
                let message = DynamicMessage::decode(descriptor, payload.as_slice())
                    .with_context(|| format!("{event_type} does not decode"))?;
                message.serialize_with_options(serde_json::value::Serializer, &options)?
            }
            None => {
                unknown += 1;
                serde_json::Value::Null
            }
        };
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
        match args.format {
            Format::Jsonl => write_json(&mut out, &record)?,
            Format::Csv => write_csv(&mut out, &record)?,
        }
        written += 1;
        progress.inc(1);
    }
    out.flush()?;
    progress.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "exported {written} events from {} in {seconds:.1}s ({:.0} events/s){}",
        present.join(", "),
        written as f64 / seconds.max(1e-9),
        if unknown > 0 {
            format!("; {unknown} of types this version does not know, without their fields")
        } else {
            String::new()
        }
    );
    Ok(())
}

fn progress(total: i64) -> ProgressBar {
    let bar = ProgressBar::new(u64::try_from(total).unwrap_or(0));
    bar.set_style(
        ProgressStyle::with_template("exporting [{bar:40}] {pos}/{len} {per_sec} {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    bar
}

fn write_json(out: &mut dyn Write, r: &Exported) -> anyhow::Result<()> {
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

fn write_csv(out: &mut dyn Write, r: &Exported) -> anyhow::Result<()> {
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
fn csv_field(value: &str) -> String {
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
