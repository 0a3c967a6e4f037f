//! The notifications service's own flags: how email and webhooks go out.

use std::net::SocketAddr;
use std::time::Duration;

use kith_platform::config::Secret;

/// How email and webhooks are delivered.
#[derive(Debug, Clone, clap::Args)]
pub struct DeliveryArgs {
    /// SMTP server emails go through: `smtp://host:port` (plain, for a relay on the same host or
    /// a development sink), `smtp+starttls://host:port` or `smtps://host:port`, with
    /// `user:password@` when it wants a login. Without it no email is sent (the feed and
    /// webhooks still are), and email decisions say NO_ADDRESS.
    #[arg(long, env = "KITH_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<Secret>,
    /// The From of notification emails.
    #[arg(
        long,
        env = "KITH_EMAIL_FROM",
        default_value = "Kith <notifications@kith.localhost>"
    )]
    pub email_from: String,
    /// How long an email waits before it goes: for more to go with it (one email per person
    /// per window) and for the member to read it in the feed first, in which case it never goes.
    /// Seconds, or with a unit: `90s`, `2m`, `1h`.
    #[arg(long, env = "KITH_EMAIL_BATCH_WINDOW", default_value = "2m", value_parser = duration)]
    pub email_batch_window: Duration,
    /// The most emails one member gets per hour; more wait for the next free slot, together.
    #[arg(long, env = "KITH_EMAILS_PER_HOUR", default_value_t = 12,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub emails_per_hour: u32,
    /// The most webhook calls per member per minute; more wait, in order.
    #[arg(long, env = "KITH_WEBHOOKS_PER_MINUTE", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub webhooks_per_minute: u32,
    /// How many times a webhook is tried (backing off exponentially, with jitter, from one
    /// second) before it is parked for the operator (`kith notifications parked`).
    #[arg(long, env = "KITH_WEBHOOK_MAX_ATTEMPTS", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=30))]
    pub webhook_max_attempts: u32,
    /// The first retry's delay; each next one doubles (with jitter), up to an hour.
    #[arg(long, env = "KITH_WEBHOOK_FIRST_RETRY", default_value = "1s", value_parser = duration)]
    pub webhook_first_retry: Duration,
    /// Let webhooks reach loopback and private addresses (10/8, 172.16/12, 192.168/16,
    /// link-local, unique-local); http is then allowed for loopback. Off, a webhook must be
    /// https to a public address, checked again when each call resolves the name.
    #[arg(long, env = "KITH_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: bool,
    /// The address mail clients reach the unsubscribe endpoint at (what `List-Unsubscribe`
    /// links point to), e.g. `https://kith.example.org`; empty: the endpoint's own address.
    #[arg(long, env = "KITH_PUBLIC_URL", default_value = "")]
    pub public_url: String,
    /// Where the one-click unsubscribe endpoint (RFC 8058, `POST /unsubscribe`) listens; port 0
    /// picks one.
    #[arg(
        long,
        env = "KITH_UNSUBSCRIBE_LISTEN",
        default_value = "127.0.0.1:8090"
    )]
    pub unsubscribe_listen: SocketAddr,
    /// Key (64 hex digits) that signs unsubscribe links and derives each webhook's secret.
    /// Without it a built-in key is used (fine on a laptop, public in the source).
    #[arg(long, env = "KITH_NOTIFICATIONS_KEY", hide_env_values = true)]
    pub notifications_key: Option<Secret>,
}

impl Default for DeliveryArgs {
    fn default() -> Self {
        Self {
            smtp_url: None,
            email_from: "Kith <notifications@kith.localhost>".into(),
            email_batch_window: Duration::from_secs(120),
            emails_per_hour: 12,
            webhooks_per_minute: 60,
            webhook_max_attempts: 8,
            webhook_first_retry: Duration::from_secs(1),
            webhook_allow_private: false,
            public_url: String::new(),
            unsubscribe_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            notifications_key: None,
        }
    }
}

/// The key of a deployment that gives none: public in this source.
const BUILT_IN_KEY: &[u8; 32] = b"kith-development-notify-key-0001";

impl DeliveryArgs {
    /// The signing key, checked.
    pub fn key(&self) -> Result<[u8; 32], String> {
        match &self.notifications_key {
            Some(key) => kith_platform::pseudonym::parse_key(key.expose())
                .map_err(|err| format!("--notifications-key (KITH_NOTIFICATIONS_KEY): {err}")),
            None => Ok(*BUILT_IN_KEY),
        }
    }
}

/// A duration: whole seconds, or a number with `ms`, `s`, `m` or `h`.
pub fn duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration (e.g. 90s, 2m, 1h)"))?;
    let seconds = |factor: u64| Duration::from_secs(number.saturating_mul(factor));
    match unit {
        "" | "s" => Ok(seconds(1)),
        "ms" => Ok(Duration::from_millis(number)),
        "m" => Ok(seconds(60)),
        "h" => Ok(seconds(3600)),
        _ => Err(format!(
            "{raw:?}: unknown unit {unit:?} (use ms, s, m or h)"
        )),
    }
}
