//! Domain values to and from their protobuf form, for events and for the wire. Requests are
//! parsed strictly (every bad field named); stored events leniently, since an old event may hold
//! what today's rules refuse and must still be read.

use kith_platform::validation::Violations;
use kith_proto::notifications as pb;
use uuid::Uuid;

use crate::domain::preferences::{MAX_LEVELS, MAX_MUTED_THREADS};
use crate::domain::{Channel, Digest, Kind, Level, Preferences, QuietHours, Scope};

pub fn level_to_wire(level: Level) -> pb::Level {
    match level {
        Level::All => pb::Level::All,
        Level::MentionsAndReplies => pb::Level::MentionsAndReplies,
        Level::Muted => pb::Level::Muted,
    }
}

fn level_from_wire(value: i32) -> Option<Level> {
    match pb::Level::try_from(value).ok()? {
        pb::Level::All => Some(Level::All),
        pb::Level::MentionsAndReplies => Some(Level::MentionsAndReplies),
        pb::Level::Muted => Some(Level::Muted),
        pb::Level::Unspecified => None,
    }
}

pub fn channel_to_wire(channel: Channel) -> pb::Channel {
    match channel {
        Channel::InApp => pb::Channel::InApp,
        Channel::Email => pb::Channel::Email,
        Channel::Webhook => pb::Channel::Webhook,
    }
}

pub fn channel_from_wire(value: i32) -> Option<Channel> {
    match pb::Channel::try_from(value).ok()? {
        pb::Channel::InApp => Some(Channel::InApp),
        pb::Channel::Email => Some(Channel::Email),
        pb::Channel::Webhook => Some(Channel::Webhook),
        pb::Channel::Unspecified => None,
    }
}

pub fn kind_to_wire(kind: Kind) -> pb::Kind {
    match kind {
        Kind::Mention => pb::Kind::Mention,
        Kind::Reply => pb::Kind::Reply,
        Kind::NewThread => pb::Kind::NewThread,
        Kind::DirectMessage => pb::Kind::DirectMessage,
        Kind::CohortInvitation => pb::Kind::CohortInvitation,
        Kind::JoinRequest => pb::Kind::JoinRequest,
        Kind::PromotedFromWaitlist => pb::Kind::PromotedFromWaitlist,
        Kind::SeatLost => pb::Kind::SeatLost,
        Kind::SessionScheduled => pb::Kind::SessionScheduled,
        Kind::SessionRescheduled => pb::Kind::SessionRescheduled,
        Kind::SessionCancelled => pb::Kind::SessionCancelled,
        Kind::SessionReminder => pb::Kind::SessionReminder,
        Kind::ReportFiled => pb::Kind::ReportFiled,
    }
}

pub fn kind_from_wire(value: i32) -> Option<Kind> {
    Some(match pb::Kind::try_from(value).ok()? {
        pb::Kind::Mention => Kind::Mention,
        pb::Kind::Reply => Kind::Reply,
        pb::Kind::NewThread => Kind::NewThread,
        pb::Kind::DirectMessage => Kind::DirectMessage,
        pb::Kind::CohortInvitation => Kind::CohortInvitation,
        pb::Kind::JoinRequest => Kind::JoinRequest,
        pb::Kind::PromotedFromWaitlist => Kind::PromotedFromWaitlist,
        pb::Kind::SeatLost => Kind::SeatLost,
        pb::Kind::SessionScheduled => Kind::SessionScheduled,
        pb::Kind::SessionRescheduled => Kind::SessionRescheduled,
        pb::Kind::SessionCancelled => Kind::SessionCancelled,
        pb::Kind::SessionReminder => Kind::SessionReminder,
        pb::Kind::ReportFiled => Kind::ReportFiled,
        pb::Kind::Unspecified => return None,
    })
}

/// The wire form of preferences, in a canonical order (so equal preferences encode equally).
pub fn preferences_to_wire(preferences: &Preferences) -> pb::Preferences {
    let (digest, digest_hour, digest_minute) = match preferences.digest {
        Digest::None => (pb::DigestFrequency::None, 0, 0),
        Digest::Daily { hour, minute } => (pb::DigestFrequency::Daily, hour, minute),
        Digest::Weekly { hour, minute } => (pb::DigestFrequency::Weekly, hour, minute),
    };
    pb::Preferences {
        time_zone: preferences.time_zone.name().to_owned(),
        levels: preferences
            .levels
            .iter()
            .map(|(scope, level)| {
                let (community_id, cohort_id) = match scope {
                    Scope::Community(id) => (id.to_string(), String::new()),
                    Scope::Cohort(id) => (String::new(), id.to_string()),
                };
                pb::ScopeLevel {
                    community_id,
                    cohort_id,
                    level: level_to_wire(*level).into(),
                }
            })
            .collect(),
        muted_thread_ids: preferences
            .muted_threads
            .iter()
            .map(Uuid::to_string)
            .collect(),
        channels_off: preferences
            .channels_off
            .iter()
            .map(|c| channel_to_wire(*c).into())
            .collect(),
        digest: digest.into(),
        digest_hour: u32::from(digest_hour),
        digest_minute: u32::from(digest_minute),
        quiet_hours: preferences.quiet_hours.map(|quiet| pb::QuietHours {
            start_minute: quiet.start(),
            end_minute: quiet.end(),
        }),
        urgent_passes_quiet_hours: preferences.urgent_passes_quiet_hours,
    }
}

/// Parses a request's preferences, naming every bad field under `field` (`preferences`).
pub fn parse_preferences(
    v: &mut Violations,
    field: &str,
    wire: &pb::Preferences,
) -> Option<Preferences> {
    read_preferences(Some(v), field, wire)
}

/// Reads stored preferences, keeping what is readable of them.
pub fn stored_preferences(wire: &pb::Preferences) -> Preferences {
    read_preferences(None, "", wire).unwrap_or_default()
}

fn read_preferences(
    mut v: Option<&mut Violations>,
    field: &str,
    wire: &pb::Preferences,
) -> Option<Preferences> {
    let mut bad = |name: &str, message: String| {
        if let Some(v) = v.as_deref_mut() {
            v.add(format!("{field}.{name}"), message);
        }
    };
    let mut out = Preferences::default();
    if !wire.time_zone.is_empty() {
        match kith_platform::local_time::parse_zone(&wire.time_zone) {
            Ok(zone) => out.time_zone = zone,
            Err(message) => bad("time_zone", message),
        }
    }
    if wire.levels.len() > MAX_LEVELS {
        bad("levels", format!("at most {MAX_LEVELS} levels"));
    }
    for (i, entry) in wire.levels.iter().enumerate() {
        let at = |name: &str| format!("levels[{i}].{name}");
        let scope = match (entry.community_id.is_empty(), entry.cohort_id.is_empty()) {
            (false, true) => entry.community_id.parse().ok().map(Scope::Community),
            (_, false) => entry.cohort_id.parse().ok().map(Scope::Cohort),
            (true, true) => None,
        };
        let Some(scope) = scope else {
            let name = if entry.cohort_id.is_empty() {
                "community_id"
            } else {
                "cohort_id"
            };
            bad(
                &at(name),
                "name a community or a cohort by its id (a UUID)".to_owned(),
            );
            continue;
        };
        let Some(level) = level_from_wire(entry.level) else {
            bad(
                &at("level"),
                "must be LEVEL_ALL, LEVEL_MENTIONS_AND_REPLIES or LEVEL_MUTED".to_owned(),
            );
            continue;
        };
        if out.levels.insert(scope, level).is_some() {
            bad(
                &at(if entry.cohort_id.is_empty() {
                    "community_id"
                } else {
                    "cohort_id"
                }),
                "is given a level twice".to_owned(),
            );
        }
    }
    if wire.muted_thread_ids.len() > MAX_MUTED_THREADS {
        bad(
            "muted_thread_ids",
            format!("at most {MAX_MUTED_THREADS} threads"),
        );
    }
    for (i, thread) in wire.muted_thread_ids.iter().enumerate() {
        match thread.parse::<Uuid>() {
            Ok(thread) => {
                out.muted_threads.insert(thread);
            }
            Err(_) => bad(
                &format!("muted_thread_ids[{i}]"),
                "must be a thread id (a UUID)".to_owned(),
            ),
        }
    }
    for (i, channel) in wire.channels_off.iter().enumerate() {
        match channel_from_wire(*channel) {
            Some(channel) => {
                out.channels_off.insert(channel);
            }
            None => bad(
                &format!("channels_off[{i}]"),
                "must be CHANNEL_IN_APP, CHANNEL_EMAIL or CHANNEL_WEBHOOK".to_owned(),
            ),
        }
    }
    let hour = u8::try_from(wire.digest_hour).ok().filter(|h| *h < 24);
    if hour.is_none() {
        bad(
            "digest_hour",
            "must be an hour of the day, 0 to 23".to_owned(),
        );
    }
    let hour = hour.unwrap_or(0);
    let minute = u8::try_from(wire.digest_minute).ok().filter(|m| *m < 60);
    if minute.is_none() {
        bad(
            "digest_minute",
            "must be a minute of the hour, 0 to 59".to_owned(),
        );
    }
    let minute = minute.unwrap_or(0);
    out.digest = match pb::DigestFrequency::try_from(wire.digest) {
        Ok(pb::DigestFrequency::Daily) => Digest::Daily { hour, minute },
        Ok(pb::DigestFrequency::Weekly) => Digest::Weekly { hour, minute },
        Ok(pb::DigestFrequency::None | pb::DigestFrequency::Unspecified) => Digest::None,
        Err(_) => {
            bad(
                "digest",
                "must be DIGEST_FREQUENCY_NONE, _DAILY or _WEEKLY".to_owned(),
            );
            Digest::None
        }
    };
    if let Some(quiet) = &wire.quiet_hours {
        match QuietHours::new(quiet.start_minute, quiet.end_minute) {
            Ok(quiet) => out.quiet_hours = Some(quiet),
            Err(message) => {
                let name = if quiet.start_minute >= crate::domain::preferences::DAY_MINUTES {
                    "quiet_hours.start_minute"
                } else {
                    "quiet_hours.end_minute"
                };
                bad(name, message.to_owned());
            }
        }
    }
    out.urgent_passes_quiet_hours = wire.urgent_passes_quiet_hours;
    Some(out)
}

/// Encodes and decodes a member's stream, sealing the email address with the member's key.
#[derive(Debug, Clone)]
pub struct MemberCodec {
    sealer: kith_platform::sealing::Sealer,
    /// Whether webhooks may reach loopback and private addresses: stored endpoints are read
    /// back under the same rule.
    allow_private: bool,
}

impl MemberCodec {
    pub fn new(sealer: kith_platform::sealing::Sealer, allow_private: bool) -> Self {
        Self {
            sealer,
            allow_private,
        }
    }
}

#[async_trait::async_trait]
impl kith_platform::aggregate::Codec<crate::service::MemberDecider> for MemberCodec {
    async fn encode(
        &self,
        stream_id: &str,
        events: &[crate::domain::MemberEvent],
    ) -> kith_platform::Result<Vec<kith_platform::eventlog::NewEvent>> {
        use crate::domain::MemberEvent;
        use kith_platform::eventlog::NewEvent;
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            out.push(match event {
                MemberEvent::PreferencesSet(preferences) => {
                    NewEvent::from_message(&pb::PreferencesSet {
                        member_id: stream_id.to_owned(),
                        preferences: Some(preferences_to_wire(preferences)),
                    })
                }
                MemberEvent::ContactSet(contact) => {
                    let email = match &contact.email {
                        Some(email) => {
                            Some(self.sealer.key_for(stream_id).await?.seal(email.as_str()))
                        }
                        None => None,
                    };
                    NewEvent::from_message(&pb::ContactSet {
                        member_id: stream_id.to_owned(),
                        email,
                        webhook_url: contact
                            .webhook
                            .as_ref()
                            .map(|url| url.as_str().to_owned())
                            .unwrap_or_default(),
                    })
                }
                MemberEvent::NotificationsRead(ids) => {
                    NewEvent::from_message(&pb::NotificationsRead {
                        member_id: stream_id.to_owned(),
                        notification_ids: ids.iter().map(Uuid::to_string).collect(),
                    })
                }
            });
        }
        Ok(out)
    }

    async fn decode(
        &self,
        events: &[kith_platform::eventlog::RecordedEvent],
    ) -> kith_platform::Result<Vec<crate::domain::MemberEvent>> {
        use crate::domain::{Contact, EmailAddress, MemberEvent, WebhookUrl};
        use kith_platform::wire::{decode_payload, stored_id};
        let mut opener = self.sealer.opener();
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            let t = event.event_type.as_str();
            if t == <pb::PreferencesSet as prost::Name>::full_name() {
                let e: pb::PreferencesSet = decode_payload(event)?;
                out.push(MemberEvent::PreferencesSet(stored_preferences(
                    &e.preferences.unwrap_or_default(),
                )));
            } else if t == <pb::ContactSet as prost::Name>::full_name() {
                let e: pb::ContactSet = decode_payload(event)?;
                // An erased address reads as none; one today's rules refuse, too.
                let email = opener
                    .open(e.email.as_ref())
                    .await?
                    .and_then(|raw| EmailAddress::parse(&raw).ok());
                let webhook = (!e.webhook_url.is_empty())
                    .then(|| WebhookUrl::parse(&e.webhook_url, self.allow_private).ok())
                    .flatten();
                out.push(MemberEvent::ContactSet(Contact { email, webhook }));
            } else if t == <pb::NotificationsRead as prost::Name>::full_name() {
                let e: pb::NotificationsRead = decode_payload(event)?;
                let ids = e
                    .notification_ids
                    .iter()
                    .map(|id| stored_id(id))
                    .collect::<kith_platform::Result<Vec<_>>>()?;
                out.push(MemberEvent::NotificationsRead(ids));
            }
        }
        Ok(out)
    }

    fn erased_subjects(&self, _: &str, _: &[crate::domain::MemberEvent]) -> Vec<String> {
        Vec::new()
    }
}
