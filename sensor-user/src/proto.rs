//! The generated protobuf types of `proto/modelwatch/v1` (prost), their proto3 JSON mapping
//! (pbjson, proto field names) and the tonic service. These types are the sensor's event model:
//! the pipeline builds them directly, so what the sinks write is exactly the schema. Also the
//! schema's names of the event kinds.

/// Generated code: not ours to lint.
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all, unused_qualifications)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/modelwatch.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/modelwatch.v1.serde.rs"));
}

/// Encoded `FileDescriptorSet` of the schema (for reflection and the reference docs).
pub const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/modelwatch_descriptor.bin"));

/// Version of the schema this build writes into `Event.schema_version`.
pub const SCHEMA_VERSION: u32 = 1;

/// Name of an event's payload, as in the proto `oneof` (also the filter's kind names).
pub fn kind_name(ev: &v1::Event) -> &'static str {
    match &ev.payload {
        Some(p) => payload_name(p),
        None => "none",
    }
}

pub fn payload_name(p: &v1::event::Payload) -> &'static str {
    match p {
        v1::event::Payload::ProcessExec(_) => "process_exec",
        v1::event::Payload::ProcessFork(_) => "process_fork",
        v1::event::Payload::ProcessExit(_) => "process_exit",
        v1::event::Payload::ModelFileOpened(_) => "model_file_opened",
        v1::event::Payload::ModelMapped(_) => "model_mapped",
        v1::event::Payload::ArtifactIdentified(_) => "artifact_identified",
        v1::event::Payload::PolicyFinding(_) => "policy_finding",
        v1::event::Payload::ModelRead(_) => "model_read",
        v1::event::Payload::AcceleratorOpened(_) => "accelerator_opened",
        v1::event::Payload::AcceleratorActivity(_) => "accelerator_activity",
        v1::event::Payload::SessionStarted(_) => "session_started",
        v1::event::Payload::SessionUpdated(_) => "session_updated",
        v1::event::Payload::SessionEnded(_) => "session_ended",
        v1::event::Payload::SensorHealth(_) => "sensor_health",
        v1::event::Payload::EventsLost(_) => "events_lost",
    }
}

/// Every payload name, for validating filters.
pub const PAYLOAD_NAMES: [&str; 15] = [
    "process_exec",
    "process_fork",
    "process_exit",
    "model_file_opened",
    "model_mapped",
    "artifact_identified",
    "policy_finding",
    "model_read",
    "accelerator_opened",
    "accelerator_activity",
    "session_started",
    "session_updated",
    "session_ended",
    "sensor_health",
    "events_lost",
];

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    /// The names are the schema's own: the field names of `Event.payload`, in field order.
    #[test]
    fn payload_names_are_the_oneof_fields_of_the_schema() {
        let set = prost_types::FileDescriptorSet::decode(DESCRIPTOR_SET).expect("descriptor set");
        let event = set
            .file
            .iter()
            .filter(|f| f.package() == "modelwatch.v1")
            .flat_map(|f| &f.message_type)
            .find(|m| m.name() == "Event")
            .expect("message Event");
        let oneof = event.oneof_decl.iter().position(|o| o.name() == "payload").expect("oneof payload") as i32;
        let mut fields: Vec<_> = event.field.iter().filter(|f| f.oneof_index == Some(oneof)).collect();
        fields.sort_by_key(|f| f.number());
        let names: Vec<&str> = fields.iter().map(|f| f.name()).collect();
        assert_eq!(names, PAYLOAD_NAMES);
    }
}
