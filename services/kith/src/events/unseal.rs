//! `--open-sealed`: the sealed personal fields an analyst's role may read, opened in the export.
//!
//! Sealed fields are sealed with keys that live beside each service's log and, in production,
//! are wrapped by the KEK. Whoever is given the KEK and the database holds that role; everyone
//! else gets the fields sealed, as they are on the bus. The fields to open are named, so a role
//! that may read message bodies need not see email addresses. A field whose subject was erased
//! has no key any more: it opens as null, so an erased member's data is gone from the export too.

use std::collections::{BTreeSet, HashMap};

use anyhow::Context;
use base64::Engine;
use prost_reflect::{DescriptorPool, Kind, MessageDescriptor};

use super::Exported;
use kith_platform::sealing::{Opener, Sealer};
use kith_proto::platform::Sealed;

const SEALED: &str = "kith.platform.v1.Sealed";

/// Which sealed fields to open: `all`, or field names as the export writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fields {
    All,
    Named(BTreeSet<String>),
}

impl Fields {
    /// Parses `--open-sealed`, checking each name against the sealed fields the events have.
    pub(crate) fn parse(names: &[String], pool: &DescriptorPool) -> anyhow::Result<Self> {
        if names.iter().any(|name| name == "all") {
            return Ok(Self::All);
        }
        let known = sealed_field_names(pool);
        let unknown: Vec<&String> = names.iter().filter(|n| !known.contains(*n)).collect();
        if !unknown.is_empty() {
            anyhow::bail!(
                "--open-sealed: no event has a sealed field named {}; the sealed fields are: all, {}",
                unknown
                    .iter()
                    .map(|n| format!("{n:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                known.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
        Ok(Self::Named(names.iter().cloned().collect()))
    }

    fn holds(&self, name: &str) -> bool {
        match self {
            Self::All => true,
            Self::Named(names) => names.contains(name),
        }
    }
}

/// The names of every field of type Sealed in the descriptor set.
fn sealed_field_names(pool: &DescriptorPool) -> BTreeSet<String> {
    pool.all_messages()
        .flat_map(|message| message.fields().collect::<Vec<_>>())
        .filter(|field| matches!(field.kind(), Kind::Message(m) if m.full_name() == SEALED))
        .map(|field| field.name().to_owned())
        .collect()
}

/// Where in an event's JSON its sealed fields are: a path of field names, through nested
/// messages (a list along the way applies to each element).
fn sealed_paths(message: &MessageDescriptor, fields: &Fields, depth: usize) -> Vec<Vec<String>> {
    // Deep enough for any event Kith writes; a recursive message type stops here.
    if depth > 6 {
        return Vec::new();
    }
    let mut paths = Vec::new();
    for field in message.fields() {
        let Kind::Message(inner) = field.kind() else {
            continue;
        };
        if inner.full_name() == SEALED {
            if fields.holds(field.name()) {
                paths.push(vec![field.name().to_owned()]);
            }
            continue;
        }
        for mut path in sealed_paths(&inner, fields, depth + 1) {
            path.insert(0, field.name().to_owned());
            paths.push(path);
        }
    }
    paths
}

/// Opens the chosen sealed fields of exported events, with each service's keys.
pub(crate) struct Unsealer {
    fields: Fields,
    pool: DescriptorPool,
    openers: HashMap<String, Opener>,
    paths: HashMap<String, Vec<Vec<String>>>,
    /// Fields opened, and fields whose key is gone (erased).
    pub(crate) opened: u64,
    pub(crate) erased: u64,
}

impl Unsealer {
    /// With the keys of `services` in the database at `url`; the KEK, if the keys are wrapped,
    /// must be installed already.
    pub(crate) async fn connect(
        url: &str,
        services: &[&str],
        fields: Fields,
        pool: DescriptorPool,
    ) -> anyhow::Result<Self> {
        let mut openers = HashMap::new();
        for service in services {
            let schema = kith_platform::db::Schema::parse(service)?;
            let db = kith_platform::db::connect(url, &schema, 1).await.context(
                "--open-sealed reads the sealing keys: cannot connect to --database-url",
            )?;
            let has_keys: bool =
                sqlx::query_scalar("SELECT to_regclass('sealing_keys') IS NOT NULL")
                    .fetch_one(&db)
                    .await?;
            if has_keys {
                let sealer = Sealer::new(db);
                sealer
                    .check_unwrappable()
                    .await
                    .with_context(|| format!("--open-sealed: {service}'s keys"))?;
                openers.insert((*service).to_owned(), sealer.opener());
            }
        }
        Ok(Self {
            fields,
            pool,
            openers,
            paths: HashMap::new(),
            opened: 0,
            erased: 0,
        })
    }

    /// Replaces each chosen sealed field of `records` by its text, or null once erased; the
    /// keys they need are fetched together, one query per service for the whole batch.
    pub(crate) async fn open_batch(&mut self, records: &mut [Exported]) -> anyhow::Result<()> {
        let mut wanted: HashMap<String, Vec<uuid::Uuid>> = HashMap::new();
        for record in records.iter_mut() {
            self.learn(&record.event_type);
            for path in &self.paths[&record.event_type] {
                let mut found = Vec::new();
                collect(&mut record.event, path, &mut found);
                let ids = found
                    .iter()
                    .filter_map(|slot| slot.get("key_id")?.as_str()?.parse::<uuid::Uuid>().ok());
                wanted
                    .entry(record.service.clone())
                    .or_default()
                    .extend(ids);
            }
        }
        for (service, ids) in wanted {
            if let Some(opener) = self.openers.get_mut(&service) {
                opener.prefetch(&ids).await?;
            }
        }
        for record in records {
            self.open(record).await?;
        }
        Ok(())
    }

    /// Where `event_type`'s chosen sealed fields are, worked out once per type.
    fn learn(&mut self, event_type: &str) {
        if !self.paths.contains_key(event_type) {
            let paths = self
                .pool
                .get_message_by_name(event_type)
                .map(|message| sealed_paths(&message, &self.fields, 0))
                .unwrap_or_default();
            self.paths.insert(event_type.to_owned(), paths);
        }
    }

    /// Replaces each chosen sealed field of `record` by its text, or null once erased.
    async fn open(&mut self, record: &mut Exported) -> anyhow::Result<()> {
        self.learn(&record.event_type);
        let Self {
            paths,
            openers,
            opened,
            erased,
            ..
        } = self;
        let paths = &paths[&record.event_type];
        let Some(opener) = openers.get_mut(&record.service) else {
            return Ok(());
        };
        for path in paths {
            let mut found = Vec::new();
            collect(&mut record.event, path, &mut found);
            for slot in found {
                let sealed = sealed_from_json(slot)
                    .with_context(|| format!("a sealed field of {}", record.event_type))?;
                match opener.open(Some(&sealed)).await? {
                    Some(text) => {
                        *slot = serde_json::Value::String(text);
                        *opened += 1;
                    }
                    None => {
                        *slot = serde_json::Value::Null;
                        *erased += 1;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The sealed values at `path` in `value` (every element where the path crosses a list).
fn collect<'v>(
    value: &'v mut serde_json::Value,
    path: &[String],
    found: &mut Vec<&'v mut serde_json::Value>,
) {
    let Some((first, rest)) = path.split_first() else {
        if value.is_object() {
            found.push(value);
        }
        return;
    };
    match value {
        serde_json::Value::Object(map) => {
            if let Some(inner) = map.get_mut(first) {
                match inner {
                    serde_json::Value::Array(items) => {
                        for item in items {
                            collect(item, rest, found);
                        }
                    }
                    other => collect(other, rest, found),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                collect(item, path, found);
            }
        }
        _ => {}
    }
}

/// A Sealed message back from its JSON form (proto field names, bytes in base64).
fn sealed_from_json(value: &serde_json::Value) -> anyhow::Result<Sealed> {
    let text = |name: &str| value.get(name).and_then(|v| v.as_str()).unwrap_or_default();
    let bytes = |name: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(text(name))
            .with_context(|| format!("{name} is not base64"))
    };
    Ok(Sealed {
        subject: text("subject").to_owned(),
        key_id: text("key_id").to_owned(),
        nonce: bytes("nonce")?,
        ciphertext: bytes("ciphertext")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> DescriptorPool {
        DescriptorPool::decode(kith_proto::FILE_DESCRIPTOR_SET).expect("descriptors")
    }

    #[test]
    fn the_sealed_fields_are_found_through_nested_messages() {
        let pool = pool();
        let joined = pool
            .get_message_by_name("kith.membership.v1.MemberJoined")
            .expect("MemberJoined");
        let all = sealed_paths(&joined, &Fields::All, 0);
        assert!(all.contains(&vec!["profile".to_owned(), "display_name".to_owned()]));
        let named = Fields::parse(&["handle".to_owned()], &pool).expect("handle");
        assert_eq!(
            sealed_paths(&joined, &named, 0),
            vec![vec!["profile".to_owned(), "handle".to_owned()]]
        );
        let posted = pool
            .get_message_by_name("kith.messaging.v1.MessagePosted")
            .expect("MessagePosted");
        assert!(sealed_paths(&posted, &Fields::All, 0).contains(&vec!["body".to_owned()]));
    }

    #[test]
    fn a_field_that_is_not_sealed_anywhere_is_refused_with_the_ones_that_are() {
        let error = Fields::parse(&["password".to_owned()], &pool()).expect_err("refused");
        let said = error.to_string();
        assert!(
            said.contains("--open-sealed") && said.contains("\"password\""),
            "{said}"
        );
        assert!(
            said.contains("display_name") && said.contains("body"),
            "{said}"
        );
    }

    #[test]
    fn a_list_along_the_path_opens_each_element() {
        let mut event =
            serde_json::json!({"answers": [{"text": {"key_id": "a"}}, {"text": {"key_id": "b"}}]});
        let mut found = Vec::new();
        collect(
            &mut event,
            &["answers".to_owned(), "text".to_owned()],
            &mut found,
        );
        assert_eq!(found.len(), 2);
    }
}
