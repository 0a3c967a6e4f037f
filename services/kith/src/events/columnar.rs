//! Exported events as Parquet, partitioned by UTC day the way Hive lays partitions out
//! (`DIR/day=2026-12-07/events.parquet`), so that DuckDB, Spark, Trino or pandas read a period by
//! reading its days: `read_parquet('DIR/*/*.parquet', hive_partitioning = true)`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use chrono::NaiveDate;
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::Type;

use super::Exported;

/// The columns: the common fields typed, the event itself as JSON text.
const SCHEMA: &str = "
message kith_event {
  REQUIRED BYTE_ARRAY service (UTF8);
  REQUIRED INT64 position;
  REQUIRED INT64 recorded_at (TIMESTAMP(MICROS,true));
  REQUIRED BYTE_ARRAY stream_type (UTF8);
  REQUIRED BYTE_ARRAY stream_id (UTF8);
  REQUIRED INT64 version;
  REQUIRED BYTE_ARRAY event_id (UTF8);
  REQUIRED BYTE_ARRAY event_type (UTF8);
  REQUIRED BYTE_ARRAY event (UTF8);
}
";

/// Rows held before they are written as one row group.
const ROW_GROUP: usize = 64 * 1024;

/// One day's rows, column by column.
#[derive(Default)]
struct Rows {
    service: Vec<ByteArray>,
    position: Vec<i64>,
    recorded_at: Vec<i64>,
    stream_type: Vec<ByteArray>,
    stream_id: Vec<ByteArray>,
    version: Vec<i64>,
    event_id: Vec<ByteArray>,
    event_type: Vec<ByteArray>,
    event: Vec<ByteArray>,
}

impl Rows {
    fn len(&self) -> usize {
        self.position.len()
    }
}

fn text(value: &str) -> ByteArray {
    ByteArray::from(value.as_bytes().to_vec())
}

/// Writes the days' files under one directory, events arriving in recorded order.
pub(crate) struct Partitions {
    dir: PathBuf,
    schema: Arc<Type>,
    properties: Arc<WriterProperties>,
    day: Option<(NaiveDate, SerializedFileWriter<File>)>,
    rows: Rows,
}

impl Partitions {
    /// Writes under `dir`, which must be new or empty (a day left from another export would mix
    /// with this one).
    pub(crate) fn create(dir: &Path) -> anyhow::Result<Self> {
        if dir.exists() {
            let mut entries = std::fs::read_dir(dir)
                .with_context(|| format!("--output {}: not a directory", dir.display()))?;
            if entries.next().is_some() {
                anyhow::bail!(
                    "--output {} already holds files; give Parquet a new or empty directory",
                    dir.display()
                );
            }
        }
        std::fs::create_dir_all(dir).with_context(|| format!("--output {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_owned(),
            schema: Arc::new(parse_message_type(SCHEMA).context("the Parquet schema")?),
            properties: Arc::new(WriterProperties::builder().build()),
            day: None,
            rows: Rows::default(),
        })
    }

    pub(crate) fn write(&mut self, record: &Exported) -> anyhow::Result<()> {
        let day = record.recorded_at.date_naive();
        if self.day.as_ref().is_none_or(|(open, _)| *open != day) {
            self.close_day()?;
            let folder = self.dir.join(format!("day={day}"));
            std::fs::create_dir_all(&folder)
                .with_context(|| format!("creating {}", folder.display()))?;
            let path = folder.join("events.parquet");
            let file =
                File::create(&path).with_context(|| format!("creating {}", path.display()))?;
            let writer = SerializedFileWriter::new(
                file,
                Arc::clone(&self.schema),
                Arc::clone(&self.properties),
            )?;
            self.day = Some((day, writer));
        }
        let rows = &mut self.rows;
        rows.service.push(text(&record.service));
        rows.position.push(record.position);
        rows.recorded_at.push(record.recorded_at.timestamp_micros());
        rows.stream_type.push(text(&record.stream_type));
        rows.stream_id.push(text(&record.stream_id));
        rows.version.push(record.version);
        rows.event_id.push(text(&record.event_id.to_string()));
        rows.event_type.push(text(&record.event_type));
        rows.event.push(text(&record.event.to_string()));
        if rows.len() >= ROW_GROUP {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the rows held as one row group of the open day.
    fn flush(&mut self) -> anyhow::Result<()> {
        let Some((_, writer)) = self.day.as_mut() else {
            return Ok(());
        };
        let rows = std::mem::take(&mut self.rows);
        if rows.len() == 0 {
            return Ok(());
        }
        let mut group = writer.next_row_group()?;
        let mut index = 0;
        while let Some(mut column) = group.next_column()? {
            match index {
                0 => column
                    .typed::<ByteArrayType>()
                    .write_batch(&rows.service, None, None)?,
                1 => column
                    .typed::<Int64Type>()
                    .write_batch(&rows.position, None, None)?,
                2 => column
                    .typed::<Int64Type>()
                    .write_batch(&rows.recorded_at, None, None)?,
                3 => column
                    .typed::<ByteArrayType>()
                    .write_batch(&rows.stream_type, None, None)?,
                4 => column
                    .typed::<ByteArrayType>()
                    .write_batch(&rows.stream_id, None, None)?,
                5 => column
                    .typed::<Int64Type>()
                    .write_batch(&rows.version, None, None)?,
                6 => column
                    .typed::<ByteArrayType>()
                    .write_batch(&rows.event_id, None, None)?,
                7 => column
                    .typed::<ByteArrayType>()
                    .write_batch(&rows.event_type, None, None)?,
                _ => column
                    .typed::<ByteArrayType>()
                    .write_batch(&rows.event, None, None)?,
            };
            column.close()?;
            index += 1;
        }
        group.close()?;
        Ok(())
    }

    fn close_day(&mut self) -> anyhow::Result<()> {
        self.flush()?;
        if let Some((_, writer)) = self.day.take() {
            writer.close()?;
        }
        Ok(())
    }

    /// Writes what is held and closes the last day's file.
    pub(crate) fn finish(&mut self) -> anyhow::Result<()> {
        self.close_day()
    }
}
