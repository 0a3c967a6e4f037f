//! The report as tidy rows, `section,key,metric,value`, built from its JSON form so that every
//! figure is in every tabular format: CSV for a spreadsheet, Parquet for a dataframe or an
//! engine.

use std::sync::Arc;

use anyhow::Context;
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

use super::Engagement;
use crate::events::csv_field;

/// One row: the section (`summary` for the single figures), the key that names the row within
/// it (a week, a member; empty for the summary), the metric and its value as text (empty when
/// there is none).
type Row = [String; 4];

pub(super) fn rows(r: &Engagement) -> anyhow::Result<Vec<Row>> {
    let value = serde_json::to_value(r)?;
    let Some(object) = value.as_object() else {
        anyhow::bail!("the report did not serialize as an object");
    };
    let scalar = |v: &serde_json::Value| match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut rows: Vec<Row> = Vec::new();
    for (name, v) in object {
        match v {
            serde_json::Value::Array(items) => {
                for item in items {
                    let Some(fields) = item.as_object() else {
                        continue;
                    };
                    // The first text field names the row (a week, a member).
                    let key = fields
                        .iter()
                        .find(|(_, f)| f.is_string())
                        .map(|(k, f)| (k.clone(), scalar(f)));
                    for (metric, f) in fields {
                        if key.as_ref().is_some_and(|(k, _)| k == metric) {
                            continue;
                        }
                        let key = key.as_ref().map(|(_, v)| v.clone()).unwrap_or_default();
                        match f {
                            serde_json::Value::Array(values) => {
                                for (i, one) in values.iter().enumerate() {
                                    rows.push([
                                        name.clone(),
                                        key.clone(),
                                        format!("{metric}_{i}"),
                                        scalar(one),
                                    ]);
                                }
                            }
                            other => rows.push([name.clone(), key, metric.clone(), scalar(other)]),
                        }
                    }
                }
            }
            _ if name == "definitions" => {}
            other => rows.push(["summary".into(), String::new(), name.clone(), scalar(other)]),
        }
    }
    rows.push([
        "definitions".into(),
        String::new(),
        "text".into(),
        r.definitions.clone(),
    ]);
    Ok(rows)
}

/// The rows as CSV (RFC 4180), with a header.
pub(super) fn csv(r: &Engagement) -> anyhow::Result<String> {
    let mut out = String::from("section,key,metric,value\n");
    for row in rows(r)? {
        let fields: Vec<String> = row.iter().map(|f| csv_field(f)).collect();
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    Ok(out)
}

/// The columns of the Parquet form: a figure's value as a number in `value`, and in `text`
/// when it is not one (the definitions); both empty where the CSV's value is empty.
const SCHEMA: &str = "
message kith_engagement {
  REQUIRED BYTE_ARRAY section (UTF8);
  REQUIRED BYTE_ARRAY key (UTF8);
  REQUIRED BYTE_ARRAY metric (UTF8);
  OPTIONAL DOUBLE value;
  OPTIONAL BYTE_ARRAY text (UTF8);
}
";

/// The rows as one Parquet file (one row group) written to `out`.
pub(super) fn parquet(r: &Engagement, out: impl std::io::Write + Send) -> anyhow::Result<()> {
    let rows = rows(r)?;
    let schema = Arc::new(parse_message_type(SCHEMA).context("the report's Parquet schema")?);
    let mut writer =
        SerializedFileWriter::new(out, schema, Arc::new(WriterProperties::builder().build()))?;
    let text = |s: &str| ByteArray::from(s.as_bytes().to_vec());
    let mut group = writer.next_row_group()?;
    let mut index = 0;
    while let Some(mut column) = group.next_column()? {
        match index {
            0..=2 => {
                let values: Vec<ByteArray> = rows.iter().map(|row| text(&row[index])).collect();
                column
                    .typed::<ByteArrayType>()
                    .write_batch(&values, None, None)?;
            }
            3 => {
                let numbers: Vec<Option<f64>> =
                    rows.iter().map(|row| row[3].parse::<f64>().ok()).collect();
                let levels: Vec<i16> = numbers.iter().map(|n| i16::from(n.is_some())).collect();
                let values: Vec<f64> = numbers.into_iter().flatten().collect();
                column
                    .typed::<DoubleType>()
                    .write_batch(&values, Some(&levels), None)?;
            }
            _ => {
                let texts: Vec<Option<&str>> = rows
                    .iter()
                    .map(|row| {
                        let value = row[3].as_str();
                        (!value.is_empty() && value.parse::<f64>().is_err()).then_some(value)
                    })
                    .collect();
                let levels: Vec<i16> = texts.iter().map(|t| i16::from(t.is_some())).collect();
                let values: Vec<ByteArray> = texts.into_iter().flatten().map(text).collect();
                column
                    .typed::<ByteArrayType>()
                    .write_batch(&values, Some(&levels), None)?;
            }
        }
        column.close()?;
        index += 1;
    }
    group.close()?;
    writer.close()?;
    Ok(())
}
