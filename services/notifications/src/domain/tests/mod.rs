//! Given / when / then over the pure decisions.

mod decisions;
mod rules;
mod schedule;

use uuid::Uuid;

/// A readable id for a test person or place.
fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}
