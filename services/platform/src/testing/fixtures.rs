//! Small fixtures shared by tests and benchmarks: a deterministic generator, and a count of the
//! statements sqlx sends.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A linear congruential generator (Knuth's MMIX constants): deterministic, so a run can be
/// replayed from its seed, and enough to stir test data.
#[derive(Debug, Clone)]
pub struct Lcg(pub u64);

impl Lcg {
    /// A number below `n` (which must be positive).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }

    /// One of `items` (which must not be empty).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        let at = usize::try_from(self.below(items.len() as u64)).unwrap_or(0);
        items[at]
    }
}

/// Counts the statements sqlx sends from this thread (each is logged under the `sqlx::query`
/// target when it ends), while the guard [`Statements::count_on_this_thread`] returns is held. On a
/// current-thread runtime that covers the tasks it spawns too.
#[derive(Debug, Clone, Default)]
pub struct Statements(Arc<AtomicUsize>);

impl Statements {
    pub fn count_on_this_thread() -> (Self, tracing::subscriber::DefaultGuard) {
        use tracing_subscriber::layer::SubscriberExt;
        let statements = Self::default();
        let guard = tracing::subscriber::set_default(
            tracing_subscriber::registry().with(statements.clone()),
        );
        (statements, guard)
    }

    /// The statements counted since the last call.
    pub fn taken(&self) -> usize {
        self.0.swap(0, Ordering::SeqCst)
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Statements {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() == "sqlx::query" {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}
