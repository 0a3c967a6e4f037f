//! Pages of query results. Page tokens are opaque to clients; inside they hold what the next page
//! continues from (the sort key of the last row served) and a digest of the query that issued
//! them, so a token is refused by any other query: another method, another parent, other filters,
//! another caller.

use sqlx::Row;
use sqlx::postgres::PgRow;
use tonic::Status;
use uuid::Uuid;

use crate::validation::Violations;

/// Marks the token format, so a later format can be told apart.
const TOKEN_VERSION: u8 = 1;
const DIGEST_BYTES: usize = 8;

/// What a page token is bound to: the caller and the request with its paging fields cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageQuery([u8; DIGEST_BYTES]);

impl PageQuery {
    /// The query of `request` by `caller`. `clear` resets the fields that may change from page
    /// to page (`page_token`, `page_size`, `min_position`); everything else selects the rows and
    /// binds the token.
    pub fn of<T: prost::Message + prost::Name + Clone>(
        caller: Uuid,
        request: &T,
        clear: impl FnOnce(&mut T),
    ) -> Self {
        use sha2::Digest;
        let mut query = request.clone();
        clear(&mut query);
        let mut hash = sha2::Sha256::new();
        hash.update(T::full_name().as_bytes());
        hash.update([0]);
        hash.update(caller.as_bytes());
        hash.update(query.encode_to_vec());
        let mut digest = [0; DIGEST_BYTES];
        digest.copy_from_slice(&hash.finalize()[..DIGEST_BYTES]);
        Self(digest)
    }
}

/// The [`PageQuery`] of a list request with the usual paging fields (`page_size`, `page_token`,
/// `min_position`), by `caller`.
#[macro_export]
macro_rules! page_query {
    ($caller:expr, $request:expr) => {
        $crate::paging::PageQuery::of($caller, $request, |q| {
            q.page_size = 0;
            q.page_token.clear();
            q.min_position = 0;
        })
    };
}

/// The `N` keys a page token continues from, recording a violation for a token that this query
/// did not issue.
pub fn page_keys<const N: usize>(
    v: &mut Violations,
    token: &str,
    query: &PageQuery,
) -> Option<[i64; N]> {
    if token.is_empty() {
        return None;
    }
    let Some(bytes) = hex::decode(token)
        .ok()
        .filter(|bytes| bytes.len() == 1 + DIGEST_BYTES + 8 * N && bytes[0] == TOKEN_VERSION)
    else {
        v.add("page_token", "is not a token from an earlier reply");
        return None;
    };
    if bytes[1..=DIGEST_BYTES] != query.0 {
        v.add(
            "page_token",
            "was issued for a different query (method, parent, filters or caller); \
             start again without a token",
        );
        return None;
    }
    let mut keys = [0; N];
    for (key, chunk) in keys
        .iter_mut()
        .zip(bytes[1 + DIGEST_BYTES..].chunks_exact(8))
    {
        let mut be = [0; 8];
        be.copy_from_slice(chunk);
        *key = i64::from_be_bytes(be);
    }
    Some(keys)
}

/// The single sort key a page token continues after.
pub fn page_token(v: &mut Violations, token: &str, query: &PageQuery) -> Option<i64> {
    page_keys::<1>(v, token, query).map(|[key]| key)
}

/// The token that continues `query` from `keys`.
pub fn next_page_token(query: &PageQuery, keys: &[i64]) -> String {
    let mut bytes = Vec::with_capacity(1 + DIGEST_BYTES + 8 * keys.len());
    bytes.push(TOKEN_VERSION);
    bytes.extend_from_slice(&query.0);
    for key in keys {
        bytes.extend_from_slice(&key.to_be_bytes());
    }
    hex::encode(bytes)
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
    query: &PageQuery,
    read: impl Fn(&PgRow) -> Result<T, sqlx::Error>,
) -> Result<(Vec<T>, String), Status> {
    page_keyed(
        rows,
        limit,
        query,
        |row| Ok(vec![row.try_get(key_column)?]),
        read,
    )
}

/// [`page`] with the next page's keys taken from the last row by `keys`.
pub fn page_keyed<T>(
    rows: &[PgRow],
    limit: i64,
    query: &PageQuery,
    keys: impl Fn(&PgRow) -> Result<Vec<i64>, sqlx::Error>,
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
            next_page_token(query, &keys(last).map_err(status_from_db)?)
        }
        _ => String::new(),
    };
    Ok((items, next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kith_proto::membership::ListMembersRequest;

    fn query(caller: Uuid, community: &str, role: i32) -> PageQuery {
        let request = ListMembersRequest {
            community_id: community.into(),
            role,
            page_size: 7,
            page_token: "whatever".into(),
            min_position: 3,
        };
        PageQuery::of(caller, &request, |q| {
            q.page_size = 0;
            q.page_token.clear();
            q.min_position = 0;
        })
    }

    #[test]
    fn a_token_continues_only_the_query_that_issued_it() {
        let caller = Uuid::new_v4();
        let issued = query(caller, "c1", 0);
        let token = next_page_token(&issued, &[42]);
        let mut v = Violations::new();
        assert_eq!(
            page_token(&mut v, &token, &query(caller, "c1", 0)),
            Some(42)
        );
        for other in [
            query(caller, "c2", 0),
            query(caller, "c1", 1),
            query(Uuid::new_v4(), "c1", 0),
        ] {
            let mut v = Violations::new();
            assert_eq!(page_token(&mut v, &token, &other), None);
            assert!(v.finish().is_err());
        }
        // Paging fields may change from page to page.
        let mut v = Violations::new();
        let again = PageQuery::of(
            caller,
            &ListMembersRequest {
                community_id: "c1".into(),
                page_size: 100,
                ..Default::default()
            },
            |q| q.page_size = 0,
        );
        assert_eq!(page_token(&mut v, &token, &again), Some(42));
    }

    #[test]
    fn crafted_tokens_are_refused() {
        let issued = query(Uuid::nil(), "c1", 0);
        let token = next_page_token(&issued, &[1, 2]);
        for crafted in [
            "",
            "zz",
            "00",
            &token[..token.len() - 2],
            &format!("{token}00"),
        ] {
            let mut v = Violations::new();
            assert_eq!(page_keys::<2>(&mut v, crafted, &issued), None, "{crafted}");
        }
        // A token of the right shape but another arity.
        let mut v = Violations::new();
        assert_eq!(page_token(&mut v, &token, &issued), None);
        assert!(v.finish().is_err());
    }
}
