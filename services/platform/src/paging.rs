//! Pages of query results. Page tokens are opaque to clients; inside they hold the sort key of
//! the last row served, so a page continues after it however rows were added meanwhile.

use sqlx::Row;
use sqlx::postgres::PgRow;
use tonic::Status;

use crate::validation::Violations;

/// The sort key a page token continues after, recording a violation for a token that was not
/// issued by [`next_page_token`].
pub fn page_token(v: &mut Violations, token: &str) -> Option<i64> {
    if token.is_empty() {
        return None;
    }
    let key = hex::decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix("p:").and_then(|p| p.parse::<i64>().ok()));
    if key.is_none() {
        v.add("page_token", "is not a token from an earlier reply");
    }
    key
}

/// The token that continues after the row with sort key `key`.
pub fn next_page_token(key: i64) -> String {
    hex::encode(format!("p:{key}"))
}

/// A `min_position`: zero or a position from an earlier reply.
pub fn min_position(v: &mut Violations, value: i64) -> i64 {
    if value < 0 {
        v.add("min_position", "must not be negative");
    }
    value
}

/// The status of a failed read.
pub fn status_from_db(err: sqlx::Error) -> Status {
    crate::grpc::status_from_platform(&crate::Error::Database(err))
}

/// One page of `rows` (fetched with `limit + 1` to learn whether more follow), read with `read`,
/// and the token of the next page: the sort key in column `key_column` of its last row.
pub fn page<T>(
    rows: &[PgRow],
    limit: i64,
    key_column: usize,
    read: impl Fn(&PgRow) -> Result<T, sqlx::Error>,
) -> Result<(Vec<T>, String), Status> {
    let size = rows.len().min(usize::try_from(limit).unwrap_or(0));
    let page = &rows[..size];
    let items = page
        .iter()
        .map(read)
        .collect::<Result<Vec<_>, _>>()
        .map_err(status_from_db)?;
    let next = match page.last() {
        Some(last) if rows.len() > size => {
            next_page_token(last.try_get(key_column).map_err(status_from_db)?)
        }
        _ => String::new(),
    };
    Ok((items, next))
}
