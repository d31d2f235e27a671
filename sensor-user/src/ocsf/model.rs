//! The OCSF 1.8.0 attributes modelwatch writes, as typed structs: a misspelt attribute is a
//! compile error here rather than an invalid event downstream. Only what the mapping uses is
//! declared; every field is optional and left out when unknown, never written empty.
//!
//! Names and enum values follow the OCSF 1.8.0 dictionary (github.com/ocsf/ocsf-schema, tag
//! 1.8.0); `../shared/ocsf/` holds the compiled schemas the tests validate against.

use serde::Serialize;
use serde_json::{Map, Value};

/// One OCSF event. Class-specific attributes are all here; the mapping sets only those its
/// class defines (the validator rejects the others).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Event {
    pub class_uid: u32,
    pub class_name: &'static str,
    pub category_uid: u32,
    pub category_name: &'static str,
    pub activity_id: u32,
    pub activity_name: &'static str,
    pub type_uid: u32,
    pub type_name: String,
    pub severity_id: u32,
    pub severity: &'static str,
    /// Event time, epoch milliseconds.
    pub time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<i64>,
    /// Milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub metadata: Metadata,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<Process>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<File>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<Module>,
    /// Open flags, platform-native (File System Activity).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_mask: Option<u32>,
    /// Memory Activity: the mapping's address, `0x…`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_address: Option<String>,
    /// Memory Activity: the mapping's length, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Memory Activity: PROT_* bits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_permissions: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual_permissions: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launch_type_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Profile `ai_operation` (Process Activity).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ai_model: Option<AiModel>,
    /// Profile `ai_operation` (Process Activity).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_context: Option<MessageContext>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finding_info: Option<FindingInfo>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub evidences: Vec<Evidence>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub malware: Vec<Malware>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_alert: Option<bool>,
    /// Profile `security_control`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'static str>,
    /// Profile `security_control`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disposition_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disposition: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub observables: Vec<Observable>,
    /// Everything of the source event that has no OCSF attribute, under its proto field names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unmapped: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Metadata {
    pub version: &'static str,
    pub product: Product,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_uid: Option<String>,
    /// The modelwatch event kind (the payload name).
    pub event_code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    /// When the sensor processed the event, epoch milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processed_time: Option<i64>,
    /// `Event.schema_version` of the source event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_version: Option<String>,
    pub profiles: Vec<&'static str>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Product {
    pub name: &'static str,
    pub vendor_name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Device {
    pub type_id: u32,
    pub r#type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Only when neither `hostname` nor `uid` is known (OCSF needs one of them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_uid: Option<String>,
    pub os: Os,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hw_info: Option<HwInfo>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Os {
    pub name: &'static str,
    pub type_id: u32,
    pub r#type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_release: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct HwInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_count: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gpu_info_list: Vec<GpuInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GpuInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor_name: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Actor {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<Process>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    /// For events the sensor itself caused (no process in the source event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_name: Option<&'static str>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Process {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The entity id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd_line: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<File>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    /// The thread, when not the main thread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ptid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminated_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_process: Option<Box<Process>>,
    /// Profile `container`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct User {
    pub uid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Container {
    pub uid: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct File {
    pub name: String,
    pub type_id: u32,
    pub r#type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_folder: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ext: Option<String>,
    /// Bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The inode number (the file system's file id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hashes: Vec<Fingerprint>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Fingerprint {
    pub algorithm_id: u32,
    pub algorithm: &'static str,
    pub value: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Module {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<File>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_address: Option<String>,
    pub load_type_id: u32,
    pub load_type: &'static str,
    pub r#type: &'static str,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AiModel {
    pub name: String,
    pub ai_provider: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MessageContext {
    pub uid: String,
    pub application: Application,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Application {
    pub name: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FindingInfo {
    pub uid: String,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desc: Option<String>,
    pub types: Vec<String>,
    pub analytic: Analytic,
    pub created_time: i64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Analytic {
    pub uid: String,
    pub name: String,
    pub type_id: u32,
    pub r#type: &'static str,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Evidence {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<File>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<Process>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Malware {
    pub name: String,
    pub classification_ids: Vec<u32>,
    pub classifications: Vec<&'static str>,
    pub provider: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<File>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Observable {
    /// The attribute it points at, e.g. `file.path`.
    pub name: &'static str,
    pub type_id: u32,
    pub r#type: &'static str,
    pub value: String,
}
