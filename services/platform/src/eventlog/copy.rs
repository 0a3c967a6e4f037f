//! The tail's transport: `COPY (SELECT …) TO STDOUT` in PostgreSQL's binary format, parsed here.
//! Tailing is the hot path of the relay, projections, rebuilds and replays, and this skips the
//! per-row and per-column bookkeeping of the general query path (about half of the client's work
//! per event). The row layout is fixed by [`super::tail`]'s column list.

use bytes::{Buf, BytesMut};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::PgConnection;
use uuid::Uuid;

use super::RecordedEvent;
use crate::{Error, Result};

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
const COLUMNS: i16 = 10;
/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

fn bad(what: &str) -> Error {
    Error::Codec(format!("unexpected COPY data: {what}"))
}

/// Runs `statement` (a `COPY (…) TO STDOUT (FORMAT binary)` of the tail's columns) and parses
/// its rows.
pub(super) async fn copy_events(
    conn: &mut PgConnection,
    statement: &str,
    capacity: usize,
) -> Result<Vec<RecordedEvent>> {
    let mut stream = conn.copy_out_raw(statement).await?;
    let mut buffer = BytesMut::new();
    let mut events = Vec::with_capacity(capacity);
    let mut header_done = false;
    let mut finished = false;
    while let Some(chunk) = stream.try_next().await? {
        buffer.extend_from_slice(&chunk);
        if !header_done {
            if buffer.len() < SIGNATURE.len() + 8 {
                continue;
            }
            if &buffer[..SIGNATURE.len()] != SIGNATURE {
                return Err(bad("signature"));
            }
            buffer.advance(SIGNATURE.len() + 4);
            let extension = usize::try_from(buffer.get_u32()).map_err(|_| bad("header"))?;
            if buffer.len() < extension {
                return Err(bad("header extension"));
            }
            buffer.advance(extension);
            header_done = true;
        }
        while let Some(row) = next_row(&mut buffer, &mut finished)? {
            events.push(row);
        }
    }
    if !finished || !buffer.is_empty() {
        return Err(bad("truncated"));
    }
    Ok(events)
}

/// Where each field of a row lies in the buffer: (start, end) byte offsets.
type Fields = [(usize, usize); COLUMNS as usize];

/// The end of one complete row and its fields, or `None` when the buffer holds only part of it.
fn split_row(buffer: &[u8]) -> Result<Option<(usize, Fields)>> {
    let mut at = 2;
    let mut fields: Fields = [(0, 0); COLUMNS as usize];
    for field in &mut fields {
        let Some(length) = buffer.get(at..at + 4) else {
            return Ok(None);
        };
        let length = i32::from_be_bytes(length.try_into().map_err(|_| bad("length"))?);
        let length = usize::try_from(length).map_err(|_| bad("null in a required column"))?;
        at += 4;
        if buffer.len() < at + length {
            return Ok(None);
        }
        *field = (at, at + length);
        at += length;
    }
    Ok(Some((at, fields)))
}

fn next_row(buffer: &mut BytesMut, finished: &mut bool) -> Result<Option<RecordedEvent>> {
    if buffer.len() < 2 {
        return Ok(None);
    }
    let count = i16::from_be_bytes([buffer[0], buffer[1]]);
    if count == -1 {
        buffer.advance(2);
        *finished = true;
        return Ok(None);
    }
    if count != COLUMNS {
        return Err(bad("column count"));
    }
    let Some((end, f)) = split_row(buffer)? else {
        return Ok(None);
    };
    let field = |i: usize| &buffer[f[i].0..f[i].1];
    let int8 = |i: usize| -> Result<i64> {
        Ok(i64::from_be_bytes(
            field(i).try_into().map_err(|_| bad("int8"))?,
        ))
    };
    let text = |i: usize| -> Result<String> {
        String::from_utf8(field(i).to_vec()).map_err(|_| bad("text"))
    };
    let metadata = match field(8) {
        [1, json @ ..] => String::from_utf8(json.to_vec()).map_err(|_| bad("jsonb"))?,
        _ => return Err(bad("jsonb version")),
    };
    let recorded_at = DateTime::<Utc>::from_timestamp_micros(int8(9)? + PG_EPOCH_MICROS)
        .ok_or_else(|| bad("timestamp"))?;
    let event = RecordedEvent {
        position: int8(0)?,
        transaction_id: int8(1)?,
        stream_type: text(2)?,
        stream_id: text(3)?,
        version: int8(4)?,
        event_id: Uuid::from_slice(field(5)).map_err(|_| bad("uuid"))?,
        event_type: text(6)?,
        payload: field(7).to_vec(),
        metadata_json: metadata,
        recorded_at,
    };
    buffer.advance(end);
    Ok(Some(event))
}
