//! What of a modelwatch event has no OCSF attribute: the event's proto3 JSON form (proto field
//! names, as `--format json` writes it) minus the fields the mapping put into OCSF attributes.
//! Working from the whole event rather than from a list of fields to keep means that a field
//! added to the schema later lands in `unmapped` by itself instead of being dropped.
//!
//! The proto3 JSON mapping writes 64-bit integers as strings and timestamps as RFC 3339; OCSF
//! wants numbers, so both are converted (timestamps to epoch milliseconds) by walking the
//! schema's descriptors alongside the JSON.

use std::{collections::HashMap, sync::OnceLock};

use prost::Message as _;
use prost_types::{
    DescriptorProto, FieldDescriptorProto, FileDescriptorSet,
    field_descriptor_proto::{Label, Type},
};
use serde_json::{Map, Value};

use crate::proto::{DESCRIPTOR_SET, v1::Event};

const TIMESTAMP: &str = ".google.protobuf.Timestamp";
pub(crate) const EVENT: &str = ".modelwatch.v1.Event";

/// Messages of the schema by full name (`.modelwatch.v1.FileRef`), nested ones (map entries)
/// included.
fn messages() -> &'static HashMap<String, DescriptorProto> {
    static INDEX: OnceLock<HashMap<String, DescriptorProto>> = OnceLock::new();
    INDEX.get_or_init(|| {
        // The set is this build's own schema, compiled by build.rs: it always decodes. Were it
        // ever not to, numbers would stay strings, which is visible rather than lost.
        let set = FileDescriptorSet::decode(DESCRIPTOR_SET).unwrap_or_default();
        let mut index = HashMap::new();
        for file in &set.file {
            for msg in &file.message_type {
                add(&mut index, &format!(".{}", file.package()), msg);
            }
        }
        index
    })
}

fn add(index: &mut HashMap<String, DescriptorProto>, scope: &str, msg: &DescriptorProto) {
    let name = format!("{scope}.{}", msg.name());
    for nested in &msg.nested_type {
        add(index, &name, nested);
    }
    index.insert(name, msg.clone());
}

fn field<'a>(msg: &'a DescriptorProto, name: &str) -> Option<&'a FieldDescriptorProto> {
    msg.field.iter().find(|f| f.name() == name)
}

fn map_value_field(f: &FieldDescriptorProto) -> Option<&'static FieldDescriptorProto> {
    if f.label() != Label::Repeated || f.r#type() != Type::Message {
        return None;
    }
    let entry = messages().get(f.type_name())?;
    if !entry.options.as_ref().is_some_and(prost_types::MessageOptions::map_entry) {
        return None;
    }
    field(entry, "value")
}

/// Turns the 64-bit integers and timestamps of `value` (the JSON of message `msg`) into numbers.
pub(crate) fn normalize(value: &mut Value, msg: &str) {
    let Some(desc) = messages().get(msg) else { return };
    let Value::Object(obj) = value else { return };
    for f in &desc.field {
        let Some(v) = obj.get_mut(f.name()) else { continue };
        if let Some(value_field) = map_value_field(f) {
            if let Value::Object(entries) = v {
                entries.values_mut().for_each(|e| normalize_one(e, value_field));
            }
        } else if let (Label::Repeated, Value::Array(items)) = (f.label(), &mut *v) {
            items.iter_mut().for_each(|e| normalize_one(e, f));
        } else {
            normalize_one(v, f);
        }
    }
}

fn normalize_one(v: &mut Value, f: &FieldDescriptorProto) {
    match f.r#type() {
        Type::Int64 | Type::Sint64 | Type::Sfixed64 => {
            if let Some(n) = v.as_str().and_then(|s| s.parse::<i64>().ok()) {
                *v = n.into();
            }
        }
        Type::Uint64 | Type::Fixed64 => {
            if let Some(n) = v.as_str().and_then(|s| s.parse::<u64>().ok()) {
                *v = n.into();
            }
        }
        Type::Message if f.type_name() == TIMESTAMP => {
            if let Ok(ts) = serde_json::from_value::<pbjson_types::Timestamp>(v.clone()) {
                *v = super::millis(&ts).into();
            }
        }
        Type::Message => normalize(v, f.type_name()),
        _ => {}
    }
}

/// Removes the field at `path` (proto field names joined by `.`), and the messages it leaves
/// empty.
fn remove(obj: &mut Map<String, Value>, path: &[&str]) {
    match path {
        [] => {}
        [last] => {
            obj.remove(*last);
        }
        [first, rest @ ..] => {
            if let Some(Value::Object(child)) = obj.get_mut(*first) {
                remove(child, rest);
                if child.is_empty() {
                    obj.remove(*first);
                }
            }
        }
    }
}

/// The part of `ev` the mapping did not consume: `consumed` are paths from the event's root
/// (`model_file_opened.file.path`). `None` when nothing is left.
pub(crate) fn leftover(ev: &Event, consumed: &[&str]) -> Option<Map<String, Value>> {
    // pbjson serialises generated types into a Value without I/O; it cannot fail.
    let mut value = serde_json::to_value(ev).ok()?;
    normalize(&mut value, EVENT);
    let Value::Object(mut obj) = value else { return None };
    for path in consumed {
        remove(&mut obj, &path.split('.').collect::<Vec<_>>());
    }
    (!obj.is_empty()).then_some(obj)
}

/// Whether `path` names a field of message `msg`, following message-typed fields (tests:
/// every consumed path is a real field, so a typo cannot drop anything).
#[cfg(test)]
pub(crate) fn path_exists(msg: &str, path: &str) -> bool {
    let mut current = msg.to_owned();
    for part in path.split('.') {
        let Some(f) = messages().get(&current).and_then(|m| field(m, part)) else { return false };
        current = f.type_name().to_owned();
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::{EventsLost, FileRef, ModelFileOpened, event::Payload};

    #[test]
    fn numbers_are_numbers_and_consumed_fields_are_gone() {
        let ev = Event {
            seq: 7,
            event_time: Some(pbjson_types::Timestamp { seconds: 1_795_000_000, nanos: 123_456_789 }),
            payload: Some(Payload::ModelFileOpened(ModelFileOpened {
                file: Some(FileRef { path: "/m.gguf".into(), inode: 42, size: 1 << 40, ..Default::default() }),
                fd: 3,
                ..Default::default()
            })),
            ..Default::default()
        };
        let left = leftover(&ev, &["model_file_opened.file.path", "model_file_opened.file.size"]).unwrap();
        let want = serde_json::json!({
            "seq": 7,
            "event_time": 1_795_000_000_123_i64,
            "model_file_opened": {"file": {"inode": 42}, "fd": 3}
        });
        assert_eq!(Value::Object(left), want);
        // A message left empty by the removal goes too.
        let left = leftover(&ev, &["seq", "event_time", "model_file_opened.file.path", "model_file_opened.file.size"])
            .unwrap();
        assert_eq!(Value::Object(left), serde_json::json!({"model_file_opened": {"file": {"inode": 42}, "fd": 3}}));
        let all = [
            "seq",
            "event_time",
            "model_file_opened.file.path",
            "model_file_opened.file.size",
            "model_file_opened.file.inode",
            "model_file_opened.fd",
        ];
        assert_eq!(leftover(&ev, &all), None);
    }

    #[test]
    fn map_values_are_numbers() {
        let ev = Event {
            payload: Some(Payload::EventsLost(EventsLost {
                by_kind: [("file_open".to_owned(), u64::MAX)].into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        let left = leftover(&ev, &[]).unwrap();
        assert_eq!(left["events_lost"]["by_kind"]["file_open"], serde_json::json!(u64::MAX));
    }

    #[test]
    fn paths_are_checked_against_the_schema() {
        assert!(path_exists(EVENT, "model_file_opened.file.path"));
        assert!(path_exists(EVENT, "process.start_time"));
        assert!(!path_exists(EVENT, "model_file_opened.file.pth"));
        assert!(!path_exists(EVENT, "nope"));
    }
}
