//! The generated protobuf types of `proto/modelwatch/v1` (prost), their proto3 JSON mapping
//! (pbjson, proto field names) and the tonic service. These types are the sensor's event model:
//! the pipeline builds them directly, so what the sinks write is exactly the schema.
#![allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all, unused_qualifications)]

pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/modelwatch.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/modelwatch.v1.serde.rs"));
}

/// Encoded `FileDescriptorSet` of the schema (for reflection and the reference docs).
pub const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/modelwatch_descriptor.bin"));

/// Version of the schema this build writes into `Event.schema_version`.
pub const SCHEMA_VERSION: u32 = 1;
