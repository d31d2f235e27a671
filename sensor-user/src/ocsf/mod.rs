//! OCSF output: a pure mapping from a `modelwatch.v1.Event` to one OCSF 1.8.0 event, for the
//! `ocsf` output format of stdout, the JSON-lines file and `modelwatch tail`. The mapping
//! table, with the reasons for each choice, is `docs/ocsf.md`; this module owns it.
//!
//! Rules the mapping keeps: every source field either becomes an OCSF attribute or stays,
//! under its proto field name, in `unmapped` (computed from the whole event, so fields added to
//! the schema later are kept too); unknown values are left out, never written as empty strings;
//! numbers are JSON numbers (sizes, counts, epoch-millisecond times), never strings.

pub mod model;
mod unmapped;

use std::borrow::Cow;

use modelwatch_artifact::report::codes;
use serde_json::Value;

use crate::proto::{
    kind_name,
    v1::{
        Accelerator, AcceleratorKind, ArtifactSummary, DigestState, Event, FileRef, HealthState, MatchReason,
        SessionModel, event::Payload,
    },
};
use model::{
    Actor, AiModel, Analytic, Application, Container, Device, Evidence, FindingInfo, Fingerprint, GpuInfo, HwInfo,
    Malware, MessageContext, Metadata, Module, Observable, Os, Process, Product, User,
};

/// The OCSF version written into `metadata.version`.
pub const VERSION: &str = "1.8.0";

/// Name of the sensor in `metadata.product` and as the actor of what it does itself.
const PRODUCT: &str = "modelwatch";

/// `ai_model.ai_provider` is required by OCSF, but a model file on disk names no provider the
/// sensor could trust.
const UNKNOWN_PROVIDER: &str = "Unknown";

/// One JSON line (no trailing newline).
pub fn json_line(ev: &Event) -> String {
    // Serialising these structs into a String cannot fail (no maps with non-string keys, no
    // I/O); fall back to an error object rather than panicking, in case that ever changes.
    serde_json::to_string(&event(ev)).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// The OCSF event as a JSON value.
pub fn to_value(ev: &Event) -> Value {
    serde_json::to_value(event(ev)).unwrap_or(Value::Null)
}

/// The OCSF classes modelwatch writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    FileActivity,
    MemoryActivity,
    ModuleActivity,
    ProcessActivity,
    DetectionFinding,
    InventoryInfo,
}

impl Class {
    fn uid(self) -> u32 {
        match self {
            Class::FileActivity => 1001,
            Class::MemoryActivity => 1004,
            Class::ModuleActivity => 1005,
            Class::ProcessActivity => 1007,
            Class::DetectionFinding => 2004,
            Class::InventoryInfo => 5001,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Class::FileActivity => "File System Activity",
            Class::MemoryActivity => "Memory Activity",
            Class::ModuleActivity => "Module Activity",
            Class::ProcessActivity => "Process Activity",
            Class::DetectionFinding => "Detection Finding",
            Class::InventoryInfo => "Device Inventory Info",
        }
    }

    fn category(self) -> (u32, &'static str) {
        match self {
            Class::DetectionFinding => (2, "Findings"),
            Class::InventoryInfo => (5, "Discovery"),
            _ => (1, "System Activity"),
        }
    }
}

/// An activity: its id and caption (for `99` Other, modelwatch's own name).
type Activity = (u32, &'static str);

const OPEN: Activity = (14, "Open");
const READ: Activity = (2, "Read");
const IDENTIFY: Activity = (99, "Identify");
const IOCTL: Activity = (99, "Ioctl");
const MAP_VIEW: Activity = (9, "Map View");
const LOAD: Activity = (1, "Load");
const LAUNCH: Activity = (1, "Launch");
const TERMINATE: Activity = (2, "Terminate");
const SESSION_START: Activity = (99, "Inference Session Start");
const SESSION_UPDATE: Activity = (99, "Inference Session Update");
const SESSION_END: Activity = (99, "Inference Session End");
const CREATE: Activity = (1, "Create");
const COLLECT: Activity = (2, "Collect");
const UNKNOWN: Activity = (0, "Unknown");

/// Envelope fields every mapping puts into OCSF attributes (metadata, time, severity, device,
/// the process block).
const ENVELOPE: &[&str] = &[
    "schema_version",
    "event_id",
    "seq",
    "event_time",
    "observed_time",
    "severity",
    "host.host_id",
    "host.hostname",
    "host.boot_id",
    "host.agent_version",
    "host.kernel",
    "process.entity_id",
    "process.pid",
    "process.ppid",
    "process.uid",
    "process.user",
    "process.exe",
    "process.cmdline",
    "process.start_time",
    "process.parent_entity_id",
    "process.comm",
    "process.tid",
    "process.container_id",
];

/// Payload fields each mapping consumes, relative to the payload (`file.path` of
/// `model_file_opened`). Whatever is not listed stays in `unmapped`.
const FILE_REF: [&str; 3] = ["file.path", "file.size", "file.inode"];
const CONSUMED_EXEC: &[&str] = &[];
const CONSUMED_FORK: &[&str] = &["child_entity_id", "child_pid"];
const CONSUMED_EXIT: &[&str] = &["exit_code", "duration_ns"];
const CONSUMED_OPEN: &[&str] = &[FILE_REF[0], FILE_REF[1], FILE_REF[2], "flags", "repeats"];
/// The bytes read, the interval and the path they came through have no File Activity attribute.
const CONSUMED_READ: &[&str] = &FILE_REF;
const CONSUMED_MAP_VIEW: &[&str] = &["address", "length", "prot"];
const CONSUMED_MODULE: &[&str] = &[FILE_REF[0], FILE_REF[1], FILE_REF[2], "address", "runtime_library"];
const CONSUMED_IDENTIFIED: &[&str] = &FILE_REF;
const CONSUMED_FINDING: &[&str] =
    &[FILE_REF[0], FILE_REF[1], FILE_REF[2], "finding.code", "finding.message", "finding.severity"];
const CONSUMED_ACCEL_OPEN: &[&str] = &["device.path", "flags"];
const CONSUMED_ACCEL_ACTIVITY: &[&str] = &["device.path", "total", "interval_ns"];
const CONSUMED_SESSION_START: &[&str] = &["session_id"];
const CONSUMED_SESSION_UPDATE: &[&str] = &["session_id", "elapsed_ns"];
const CONSUMED_SESSION_END: &[&str] = &["session_id", "start_time", "duration_ns"];
const CONSUMED_HEALTH: &[&str] = &["message"];
const CONSUMED_LOST: &[&str] = &["count", "detail"];

/// Every list above with its payload name (tests check each path against the schema).
#[cfg(test)]
const ALL_CONSUMED: &[(&str, &[&str])] = &[
    ("process_exec", CONSUMED_EXEC),
    ("process_fork", CONSUMED_FORK),
    ("process_exit", CONSUMED_EXIT),
    ("model_file_opened", CONSUMED_OPEN),
    ("model_read", CONSUMED_READ),
    ("model_mapped", CONSUMED_MAP_VIEW),
    ("model_mapped", CONSUMED_MODULE),
    ("artifact_identified", CONSUMED_IDENTIFIED),
    ("policy_finding", CONSUMED_FINDING),
    ("accelerator_opened", CONSUMED_ACCEL_OPEN),
    ("accelerator_activity", CONSUMED_ACCEL_ACTIVITY),
    ("session_started", CONSUMED_SESSION_START),
    ("session_updated", CONSUMED_SESSION_UPDATE),
    ("session_ended", CONSUMED_SESSION_END),
    ("sensor_health", CONSUMED_HEALTH),
    ("events_lost", CONSUMED_LOST),
];

/// Epoch milliseconds of a protobuf timestamp.
pub(crate) fn millis(ts: &pbjson_types::Timestamp) -> i64 {
    ts.seconds.saturating_mul(1000).saturating_add(i64::from(ts.nanos) / 1_000_000)
}

fn ms(ts: Option<&pbjson_types::Timestamp>) -> Option<i64> {
    ts.map(millis)
}

fn ns_to_ms(ns: u64) -> u64 {
    ns / 1_000_000
}

fn some(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

fn severity(v: i32) -> (u32, &'static str) {
    match v {
        0 => (0, "Unknown"),
        1 => (1, "Informational"),
        2 => (2, "Low"),
        3 => (3, "Medium"),
        4 => (4, "High"),
        5 => (5, "Critical"),
        _ => (99, "Other"),
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// argv as one string a shell would split back into the same arguments: arguments with
/// blanks or quotes are single-quoted, so the boundaries survive.
fn cmd_line(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            let plain =
                !a.is_empty() && a.chars().all(|c| !c.is_whitespace() && !matches!(c, '\'' | '"' | '\\' | '$' | '`'));
            if plain { Cow::Borrowed(a.as_str()) } else { Cow::Owned(format!("'{}'", a.replace('\'', r"'\''"))) }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// OCSF file type from the st_mode type bits.
fn file_type(mode: u32) -> (u32, &'static str) {
    match mode & 0o170_000 {
        0o100_000 => (1, "Regular File"),
        0o040_000 => (2, "Folder"),
        0o020_000 => (3, "Character Device"),
        0o060_000 => (4, "Block Device"),
        0o140_000 => (5, "Local Socket"),
        0o010_000 => (6, "Named Pipe"),
        0o120_000 => (7, "Symbolic Link"),
        _ => (0, "Unknown"),
    }
}

/// A file named by `path` (name, folder, extension).
fn file_at(path: &str, (type_id, type_name): (u32, &'static str)) -> model::File {
    let name = file_name(path);
    let ext = name.rsplit_once('.').filter(|(stem, ext)| !stem.is_empty() && !ext.is_empty()).map(|(_, e)| e);
    let parent = path.rsplit_once('/').map(|(dir, _)| if dir.is_empty() { "/" } else { dir });
    model::File {
        // OCSF requires a name; a path-less report (never sent by the sensor) says so.
        name: if name.is_empty() { "(unknown)".into() } else { name.to_owned() },
        type_id,
        r#type: type_name,
        path: some(path),
        parent_folder: parent.filter(|_| path.starts_with('/')).map(str::to_owned),
        ext: ext.map(str::to_owned),
        ..Default::default()
    }
}

/// A FileRef as an OCSF file, with the SHA-256 when it was computed from the content.
fn file(f: Option<&FileRef>, artifact: Option<&ArtifactSummary>) -> model::File {
    let f = f.cloned().unwrap_or_default();
    let mut out = file_at(&f.path, file_type(f.mode));
    out.size = (f.size > 0).then_some(f.size);
    out.uid = (f.inode != 0).then(|| f.inode.to_string());
    out.hashes = hashes(artifact);
    out
}

/// SHA-256 in OCSF `hashes` only once computed from the content; a digest a store merely
/// claims stays in `unmapped` (with its state).
fn hashes(a: Option<&ArtifactSummary>) -> Vec<Fingerprint> {
    let Some(a) = a else { return Vec::new() };
    let computed = a.digest_state == DigestState::Verified as i32 || a.digest_state == DigestState::Mismatch as i32;
    if !computed || a.sha256.is_empty() {
        return Vec::new();
    }
    vec![Fingerprint { algorithm_id: 3, algorithm: "SHA-256", value: a.sha256.clone() }]
}

fn device(ev: &Event) -> Device {
    let h = ev.host.clone().unwrap_or_default();
    let hostname = some(&h.hostname);
    let uid = some(&h.host_id);
    Device {
        type_id: 0,
        r#type: "Unknown",
        name: (hostname.is_none() && uid.is_none()).then(|| "unknown".to_owned()),
        hostname,
        uid,
        boot_uid: some(&h.boot_id),
        os: Os { name: "Linux", type_id: 200, r#type: "Linux", kernel_release: some(&h.kernel) },
        hw_info: None,
    }
}

fn user(p: &crate::proto::v1::Process) -> User {
    User { uid: p.uid.to_string(), name: some(&p.user) }
}

/// The envelope's process block as an OCSF process.
fn process(ev: &Event) -> Option<Process> {
    let p = ev.process.as_ref()?;
    if p.pid == 0 && p.entity_id.is_empty() {
        return None;
    }
    let name = if p.comm.is_empty() { file_name(&p.exe) } else { &p.comm };
    let parent = (p.ppid != 0 || !p.parent_entity_id.is_empty()).then(|| {
        Box::new(Process { pid: (p.ppid != 0).then_some(p.ppid), uid: some(&p.parent_entity_id), ..Default::default() })
    });
    Some(Process {
        pid: (p.pid != 0).then_some(p.pid),
        uid: some(&p.entity_id),
        name: some(name),
        cmd_line: (!p.cmdline.is_empty()).then(|| cmd_line(&p.cmdline)),
        // An executable's "extension" (python3.11) is part of its name, not a file type.
        file: (!p.exe.is_empty()).then(|| model::File { ext: None, ..file_at(&p.exe, (1, "Regular File")) }),
        user: Some(user(p)),
        ptid: (p.tid != 0).then_some(p.tid),
        created_time: ms(p.start_time.as_ref()),
        terminated_time: None,
        parent_process: parent,
        container: some(&p.container_id).map(|uid| Container { uid }),
    })
}

/// The `process` of the classes that require one. Every such event the sensor emits has its
/// process block; a hand-made one without gets an explicit placeholder (OCSF needs a pid or uid).
fn process_or_unknown(p: &Option<Process>) -> Process {
    identified(p.clone().unwrap_or_default())
}

fn identified(mut p: Process) -> Process {
    if p.pid.is_none() && p.uid.is_none() {
        p.uid = Some("unknown".into());
    }
    p
}

/// Who did it: the process, or the sensor itself when the event names none.
fn actor(ev: &Event, process: Option<&Process>) -> Actor {
    match process {
        Some(p) => Actor { process: Some(p.clone()), user: ev.process.as_ref().map(user), app_name: None },
        None => Actor { app_name: Some(PRODUCT), ..Default::default() },
    }
}

fn display_name(p: Option<&Process>) -> String {
    match p {
        Some(Process { name: Some(n), .. }) => n.clone(),
        Some(Process { pid: Some(pid), .. }) => format!("pid {pid}"),
        _ => "a process".into(),
    }
}

fn vendor(v: &str) -> String {
    match v {
        "nvidia" => "NVIDIA".into(),
        "amd" => "AMD".into(),
        "intel" => "Intel".into(),
        "qualcomm" => "Qualcomm".into(),
        "habana" => "Habana Labs".into(),
        other => other.to_owned(),
    }
}

/// The GPUs and NPUs among `accelerators`, one entry per card (a card's render and compute
/// nodes share its PCI slot); control and display nodes are not separate processors.
fn gpus(accelerators: &[Accelerator]) -> (u32, Vec<GpuInfo>) {
    let mut slots: Vec<&str> = Vec::new();
    let mut count = 0;
    let mut list = Vec::new();
    for a in accelerators {
        let processor = [AcceleratorKind::Gpu, AcceleratorKind::Npu, AcceleratorKind::Configured]
            .iter()
            .any(|k| *k as i32 == a.kind);
        if !processor || (!a.pci_slot.is_empty() && slots.contains(&a.pci_slot.as_str())) {
            continue;
        }
        if !a.pci_slot.is_empty() {
            slots.push(&a.pci_slot);
        }
        count += 1;
        let info = GpuInfo { model: some(&a.model), vendor_name: some(&a.vendor).map(|v| vendor(&v)) };
        if info != GpuInfo::default() {
            list.push(info);
        }
    }
    (count, list)
}

fn with_gpus(device: &mut Device, accelerators: &[Accelerator], with_count: bool) {
    let (count, list) = gpus(accelerators);
    if list.is_empty() && !(with_count && count > 0) {
        return;
    }
    device.hw_info = Some(HwInfo { gpu_count: with_count.then_some(count), gpu_info_list: list });
}

/// The model a session is mostly about: the one with most bytes mapped (the first on a tie).
fn ai_model(models: &[SessionModel]) -> Option<AiModel> {
    let mut best: Option<&SessionModel> = None;
    for m in models {
        if best.is_none_or(|b| m.bytes_mapped > b.bytes_mapped) {
            best = Some(m);
        }
    }
    let m = best?;
    let artifact = m.artifact.clone().unwrap_or_default();
    let path = m.file.as_ref().map(|f| f.path.as_str()).unwrap_or_default();
    let name = some(&artifact.name).or_else(|| some(file_name(path)))?;
    Some(AiModel { name, ai_provider: UNKNOWN_PROVIDER, uid: some(&artifact.artifact_id) })
}

fn artifact_id(a: Option<&ArtifactSummary>) -> Option<String> {
    a.and_then(|a| some(&a.artifact_id))
}

/// Titles of the analyzer's finding codes; an unknown code is its own title.
fn finding_title(code: &str) -> Cow<'static, str> {
    Cow::Borrowed(match code {
        codes::PICKLE_MALICIOUS => "Malicious pickle in model file",
        codes::PICKLE_SUSPICIOUS => "Suspicious pickle in model file",
        codes::PICKLE_INCOMPLETE => "Pickle stream not fully analysed",
        codes::KERAS_LAMBDA => "Keras model with Lambda layers (arbitrary Python)",
        codes::UNSAFE_OPS => "Model with operators that touch files or run code",
        codes::CUSTOM_OPS => "Model with custom operators (native code)",
        codes::EXTERNAL_DATA => "Model with external data references",
        codes::ZIP_DUPLICATE_NAMES => "Model archive with duplicate entry names",
        codes::DIGEST_MISMATCH => "Model digest differs from the store's claim",
        codes::LICENSE_MISSING => "Model without a licence",
        codes::LICENSE_NOT_ALLOWED => "Model licence not allowed",
        codes::MODEL_UNAPPROVED => "Unapproved model",
        codes::MODEL_DENIED => "Denied model",
        codes::MALFORMED => "Malformed model file",
        codes::LIMIT_EXCEEDED => "Model analysis stopped at a limit",
        codes::NOT_A_MODEL => "File named like a model is not one",
        codes::SHARD_INCOMPLETE => "Sharded model with missing shards",
        other => return Cow::Owned(other.to_owned()),
    })
}

/// The event, with the class-independent parts (metadata, time, severity, device) filled in.
fn base(ev: &Event, class: Class, (activity_id, activity_name): Activity) -> model::Event {
    let (category_uid, category_name) = class.category();
    let (severity_id, severity) = severity(ev.severity);
    let host = ev.host.clone().unwrap_or_default();
    model::Event {
        class_uid: class.uid(),
        class_name: class.name(),
        category_uid,
        category_name,
        activity_id,
        activity_name,
        type_uid: class.uid() * 100 + activity_id,
        type_name: format!("{}: {activity_name}", class.name()),
        severity_id,
        severity,
        // Every event the sensor emits has its time; a hand-made one falls back to when the
        // sensor processed it, then to the epoch (OCSF requires a time).
        time: ms(ev.event_time.as_ref()).or_else(|| ms(ev.observed_time.as_ref())).unwrap_or(0),
        metadata: Metadata {
            version: VERSION,
            product: Product {
                name: PRODUCT,
                vendor_name: PRODUCT,
                version: some(&host.agent_version).or_else(|| Some(env!("CARGO_PKG_VERSION").to_owned())),
            },
            uid: some(&ev.event_id),
            correlation_uid: None,
            event_code: kind_name(ev),
            sequence: (ev.seq != 0).then_some(ev.seq),
            processed_time: ms(ev.observed_time.as_ref()),
            log_version: (ev.schema_version != 0).then(|| ev.schema_version.to_string()),
            profiles: Vec::new(),
        },
        device: Some(device(ev)),
        ..Default::default()
    }
}

/// The OCSF form of `ev`.
pub fn event(ev: &Event) -> model::Event {
    let proc_ = process(ev);
    let who = display_name(proc_.as_ref());
    let (mut out, consumed): (model::Event, &[&str]) = match &ev.payload {
        Some(Payload::ProcessExec(x)) => {
            let mut o = base(ev, Class::ProcessActivity, LAUNCH);
            o.launch_type_id = Some(3);
            o.launch_type = Some("Exec");
            // As OCSF producers report a launch: the parent is the actor. A process whose
            // parent is unknown launched itself.
            let parent = proc_.as_ref().and_then(|p| p.parent_process.as_deref().cloned());
            o.actor = Some(match parent {
                Some(pp) => Actor { process: Some(pp), ..Default::default() },
                None => actor(ev, proc_.as_ref()),
            });
            let exe = ev.process.as_ref().map(|p| p.exe.as_str()).filter(|e| !e.is_empty()).unwrap_or(&x.filename);
            o.message = Some(format!("{who} executed {exe}"));
            o.process = Some(process_or_unknown(&proc_));
            (o, CONSUMED_EXEC)
        }
        Some(Payload::ProcessFork(f)) => {
            let mut o = base(ev, Class::ProcessActivity, LAUNCH);
            o.launch_type_id = Some(2);
            o.launch_type = Some("Fork");
            // The child starts as a copy of its parent: same program, arguments and user.
            let parent = proc_.clone().unwrap_or_default();
            o.process = Some(identified(Process {
                pid: (f.child_pid != 0).then_some(f.child_pid),
                uid: some(&f.child_entity_id),
                name: parent.name.clone(),
                cmd_line: parent.cmd_line.clone(),
                file: parent.file.clone(),
                user: parent.user.clone(),
                created_time: Some(o.time),
                container: parent.container.clone(),
                parent_process: proc_.clone().map(Box::new),
                ..Default::default()
            }));
            o.actor = Some(actor(ev, proc_.as_ref()));
            o.message = Some(format!("{who} forked child {}", f.child_pid));
            (o, CONSUMED_FORK)
        }
        Some(Payload::ProcessExit(x)) => {
            let mut o = base(ev, Class::ProcessActivity, TERMINATE);
            // A killed process has no exit code; its signal stays in `unmapped`.
            o.exit_code = (x.signal == 0).then_some(x.exit_code);
            o.duration = (x.duration_ns > 0).then(|| ns_to_ms(x.duration_ns));
            o.actor = Some(actor(ev, proc_.as_ref()));
            o.process = Some(Process { terminated_time: Some(o.time), ..process_or_unknown(&proc_) });
            o.message = Some(if x.signal == 0 {
                format!("{who} exited with code {}", x.exit_code)
            } else {
                format!("{who} was killed by signal {}", x.signal)
            });
            (o, CONSUMED_EXIT)
        }
        Some(Payload::ModelFileOpened(x)) => {
            let mut o = base(ev, Class::FileActivity, OPEN);
            let f = file(x.file.as_ref(), x.artifact.as_ref());
            let access = if x.access.is_empty() { String::new() } else { format!(" for {}", x.access) };
            o.message = Some(format!("{who} opened {}{access}", f.path.as_deref().unwrap_or("?")));
            o.file = Some(f);
            o.access_mask = Some(x.flags);
            // Opens folded into this one: the event stands for 1 + repeats opens.
            o.count = (x.repeats > 0).then(|| u64::from(x.repeats) + 1);
            o.actor = Some(actor(ev, proc_.as_ref()));
            o.metadata.correlation_uid = artifact_id(x.artifact.as_ref());
            (o, CONSUMED_OPEN)
        }
        Some(Payload::ModelRead(x)) => {
            let mut o = base(ev, Class::FileActivity, READ);
            let f = file(x.file.as_ref(), x.artifact.as_ref());
            let via = if x.via.is_empty() { String::new() } else { format!(" through {}", x.via) };
            o.message = Some(format!("{who} read {} bytes of {}{via}", x.bytes, f.path.as_deref().unwrap_or("?")));
            o.file = Some(f);
            o.actor = Some(actor(ev, proc_.as_ref()));
            o.metadata.correlation_uid = artifact_id(x.artifact.as_ref());
            (o, CONSUMED_READ)
        }
        Some(Payload::ModelMapped(x)) => {
            let library = x.reasons.contains(&(MatchReason::RuntimeLibrary as i32)) || !x.runtime_library.is_empty();
            let address = format!("{:#x}", x.address);
            let path = x.file.as_ref().map(|f| f.path.clone()).unwrap_or_default();
            if library {
                let mut o = base(ev, Class::ModuleActivity, LOAD);
                o.module = Some(Module {
                    file: Some(file(x.file.as_ref(), x.artifact.as_ref())),
                    base_address: Some(address),
                    load_type_id: 1,
                    load_type: "Standard",
                    r#type: "Shared Library",
                });
                o.actor = Some(actor(ev, proc_.as_ref()));
                o.message = Some(format!("{who} loaded {path}"));
                (o, CONSUMED_MODULE)
            } else {
                let mut o = base(ev, Class::MemoryActivity, MAP_VIEW);
                o.base_address = Some(address);
                o.size = Some(x.length);
                // mmap(2) grants exactly the protection asked for, or fails.
                o.requested_permissions = Some(x.prot);
                o.actual_permissions = Some(x.prot);
                o.actor = Some(actor(ev, proc_.as_ref()));
                o.process = Some(process_or_unknown(&proc_));
                o.metadata.correlation_uid = artifact_id(x.artifact.as_ref());
                o.message = Some(format!("{who} mapped {} bytes of {path}", x.length));
                (o, CONSUMED_MAP_VIEW)
            }
        }
        Some(Payload::ArtifactIdentified(x)) => {
            let mut o = base(ev, Class::FileActivity, IDENTIFY);
            let f = file(x.file.as_ref(), x.artifact.as_ref());
            let art = x.artifact.clone().unwrap_or_default();
            let format = crate::output::format_name(art.format);
            let name = x.metadata.as_ref().map(|m| m.name.as_str()).filter(|n| !n.is_empty()).unwrap_or(&art.name);
            o.message = Some(match name {
                "" => format!("{} identified as {format}", f.path.as_deref().unwrap_or("?")),
                n => format!("{} identified as {format} model \"{n}\"", f.path.as_deref().unwrap_or("?")),
            });
            o.file = Some(f);
            o.actor = Some(actor(ev, proc_.as_ref()));
            o.metadata.correlation_uid = some(&art.artifact_id);
            (o, CONSUMED_IDENTIFIED)
        }
        Some(Payload::PolicyFinding(x)) => {
            let mut o = base(ev, Class::DetectionFinding, CREATE);
            let finding = x.finding.clone().unwrap_or_default();
            let sev = severity(ev.severity.max(finding.severity));
            (o.severity_id, o.severity) = sev;
            let f = file(x.file.as_ref(), x.artifact.as_ref());
            let art = artifact_id(x.artifact.as_ref());
            // One finding per code and file version: the same uid when it is reported again.
            let uid = match (&art, some(&ev.event_id)) {
                (Some(a), _) => format!("{}:{a}", finding.code),
                (None, Some(id)) => id,
                (None, None) => format!("{}:{}", finding.code, f.path.as_deref().unwrap_or("")),
            };
            o.finding_info = Some(FindingInfo {
                uid,
                title: finding_title(&finding.code).into_owned(),
                desc: some(&finding.message),
                types: vec![finding.code.clone()],
                analytic: Analytic {
                    uid: finding.code.clone(),
                    name: finding.code.clone(),
                    type_id: 1,
                    r#type: "Rule",
                },
                created_time: o.time,
            });
            if finding.code == codes::PICKLE_MALICIOUS {
                o.malware = vec![Malware {
                    name: "Malicious pickle (code execution on load)".into(),
                    classification_ids: vec![99],
                    classifications: vec!["Malicious Model File"],
                    provider: PRODUCT,
                    files: vec![f.clone()],
                }];
            }
            o.evidences = vec![Evidence { file: Some(f), process: proc_.clone() }];
            o.actor = proc_.as_ref().map(|p| actor(ev, Some(p)));
            o.is_alert = Some(true);
            o.status_id = Some(1);
            o.status = Some("New");
            // The sensor observes; it blocks nothing.
            o.action_id = Some(3);
            o.action = Some("Observed");
            o.disposition_id = Some(15);
            o.disposition = Some("Detected");
            o.message = some(&finding.message).or_else(|| some(&finding.code));
            o.metadata.correlation_uid = art;
            (o, CONSUMED_FINDING)
        }
        Some(Payload::AcceleratorOpened(x)) => {
            let mut o = base(ev, Class::FileActivity, OPEN);
            let dev = x.device.clone().unwrap_or_default();
            o.file = Some(file_at(&dev.path, (3, "Character Device")));
            o.access_mask = Some(x.flags);
            o.actor = Some(actor(ev, proc_.as_ref()));
            if let Some(d) = &mut o.device {
                with_gpus(d, std::slice::from_ref(&dev), false);
            }
            o.message = Some(format!("{who} opened accelerator {}", dev.path));
            (o, CONSUMED_ACCEL_OPEN)
        }
        Some(Payload::AcceleratorActivity(x)) => {
            let mut o = base(ev, Class::FileActivity, IOCTL);
            let dev = x.device.clone().unwrap_or_default();
            o.file = Some(file_at(&dev.path, (3, "Character Device")));
            o.count = (x.total > 0).then_some(x.total);
            if x.interval_ns > 0 {
                o.start_time = Some(o.time.saturating_sub(ns_to_ms(x.interval_ns) as i64));
                o.end_time = Some(o.time);
            }
            o.actor = Some(actor(ev, proc_.as_ref()));
            if let Some(d) = &mut o.device {
                with_gpus(d, std::slice::from_ref(&dev), false);
            }
            o.message = Some(if x.first_use {
                let c = x.first_command.clone().unwrap_or_default();
                let name = if c.name.is_empty() { format!("{:#x}", c.cmd) } else { c.name };
                format!("{who} first used accelerator {} ({name})", dev.path)
            } else {
                format!("{who} issued {} ioctls on accelerator {}", x.total, dev.path)
            });
            (o, CONSUMED_ACCEL_ACTIVITY)
        }
        Some(Payload::SessionStarted(x)) => {
            let mut o = session(ev, &proc_, SESSION_START, &x.session_id, &x.models);
            o.start_time = Some(o.time);
            if let Some(d) = &mut o.device {
                with_gpus(d, &x.accelerators, false);
            }
            let on = if x.accelerators.is_empty() {
                "the CPU".to_owned()
            } else {
                x.accelerators.iter().map(|a| a.path.as_str()).collect::<Vec<_>>().join(", ")
            };
            o.message = Some(match &o.ai_model {
                Some(m) => format!("{who} started inference with {} on {on}", m.name),
                None => format!("{who} started inference on {on}"),
            });
            (o, CONSUMED_SESSION_START)
        }
        Some(Payload::SessionUpdated(x)) => {
            let mut o = session(ev, &proc_, SESSION_UPDATE, &x.session_id, &x.models);
            if x.elapsed_ns > 0 {
                o.start_time = Some(o.time.saturating_sub(ns_to_ms(x.elapsed_ns) as i64));
                o.duration = Some(ns_to_ms(x.elapsed_ns));
            }
            o.message = Some(format!("{who}: inference session running for {} s", x.elapsed_ns / 1_000_000_000));
            (o, CONSUMED_SESSION_UPDATE)
        }
        Some(Payload::SessionEnded(x)) => {
            let mut o = session(ev, &proc_, SESSION_END, &x.session_id, &x.models);
            o.start_time = ms(x.start_time.as_ref());
            o.end_time = Some(o.time);
            o.duration = Some(ns_to_ms(x.duration_ns));
            if let Some(d) = &mut o.device {
                with_gpus(d, &x.accelerators, false);
            }
            o.message = Some(format!("{who}: inference session ended after {} s", x.duration_ns / 1_000_000_000));
            (o, CONSUMED_SESSION_END)
        }
        Some(Payload::SensorHealth(x)) => {
            let mut o = base(ev, Class::InventoryInfo, COLLECT);
            if let Some(d) = &mut o.device {
                with_gpus(d, &x.accelerators, true);
            }
            if let Some(p) = &proc_ {
                o.actor = Some(actor(ev, Some(p)));
            }
            let state = HealthState::try_from(x.state).map_or("unknown", |s| match s {
                HealthState::Ok => "ok",
                HealthState::Degraded => "degraded",
                HealthState::Starting => "starting",
                HealthState::Stopping => "stopping",
                HealthState::Unspecified => "unknown",
            });
            o.message = Some(match x.message.as_str() {
                "" => format!("modelwatch sensor {state}, {} accelerator devices watched", x.devices_watched),
                m => format!("modelwatch sensor {state}: {m}"),
            });
            (o, CONSUMED_HEALTH)
        }
        Some(Payload::EventsLost(x)) => {
            let mut o = base(ev, Class::DetectionFinding, CREATE);
            o.finding_info = Some(FindingInfo {
                uid: some(&ev.event_id).unwrap_or_else(|| format!("events_lost:{}", ev.seq)),
                title: "Sensor events lost".into(),
                desc: some(&x.detail),
                types: vec!["Sensor Telemetry Gap".into()],
                analytic: Analytic {
                    uid: "events_lost".into(),
                    name: "events_lost".into(),
                    type_id: 1,
                    r#type: "Rule",
                },
                created_time: o.time,
            });
            o.count = Some(x.count);
            o.is_alert = Some(ev.severity >= crate::proto::v1::Severity::Medium as i32);
            o.status_id = Some(1);
            o.status = Some("New");
            o.actor = proc_.as_ref().map(|p| actor(ev, Some(p)));
            o.message = Some(format!("{} events lost: {}", x.count, x.detail));
            (o, CONSUMED_LOST)
        }
        None => {
            // A payload this build does not know (a newer sensor's): the envelope is still
            // worth reporting, and what it carries stays in `unmapped`.
            let mut o = base(ev, Class::InventoryInfo, UNKNOWN);
            o.actor = proc_.as_ref().map(|p| actor(ev, Some(p)));
            o.message = Some("an event of a kind this modelwatch build does not know".into());
            (o, &[])
        }
    };
    let kind = kind_name(ev);
    let mut paths: Vec<String> = ENVELOPE.iter().map(|p| (*p).to_owned()).collect();
    paths.extend(consumed.iter().map(|p| format!("{kind}.{p}")));
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    out.unmapped = unmapped::leftover(ev, &paths);
    out.metadata.profiles = profiles(&out);
    out.observables = observables(&out);
    out
}

/// A session event: Process Activity with the `ai_operation` profile's model and context.
fn session(
    ev: &Event,
    proc_: &Option<Process>,
    activity: Activity,
    session_id: &str,
    models: &[SessionModel],
) -> model::Event {
    let mut o = base(ev, Class::ProcessActivity, activity);
    o.actor = Some(actor(ev, proc_.as_ref()));
    o.process = Some(process_or_unknown(proc_));
    o.ai_model = ai_model(models);
    // OCSF's AI context is a conversation; for local inference the session is the context and
    // the process serving it the application.
    let app = proc_.as_ref().and_then(|p| p.name.clone());
    o.message_context =
        some(session_id).zip(app).map(|(uid, name)| MessageContext { uid, application: Application { name } });
    o.metadata.correlation_uid = some(session_id);
    o
}

/// The profiles whose attributes `e` uses: `host` (device, actor) always.
fn profiles(e: &model::Event) -> Vec<&'static str> {
    let mut out = vec!["host"];
    let procs = [
        e.process.as_ref(),
        e.actor.as_ref().and_then(|a| a.process.as_ref()),
        e.evidences.first().and_then(|ev| ev.process.as_ref()),
    ];
    let in_container = procs
        .iter()
        .flatten()
        .any(|p| p.container.is_some() || p.parent_process.as_ref().is_some_and(|pp| pp.container.is_some()));
    if in_container {
        out.push("container");
    }
    if e.ai_model.is_some() || e.message_context.is_some() {
        out.push("ai_operation");
    }
    if e.action_id.is_some() || e.disposition_id.is_some() {
        out.push("security_control");
    }
    out
}

/// The values a SIEM indexes: host, user, process, file path and hash.
fn observables(e: &model::Event) -> Vec<Observable> {
    let mut out = Vec::new();
    let mut add = |name: &'static str, type_id: u32, r#type: &'static str, value: Option<&String>| {
        if let Some(v) = value {
            out.push(Observable { name, type_id, r#type, value: v.clone() });
        }
    };
    add("device.hostname", 1, "Hostname", e.device.as_ref().and_then(|d| d.hostname.as_ref()));
    let actor = e.actor.as_ref();
    add("actor.user.name", 4, "User Name", actor.and_then(|a| a.user.as_ref()).and_then(|u| u.name.as_ref()));
    add("actor.process.name", 9, "Process Name", actor.and_then(|a| a.process.as_ref()).and_then(|p| p.name.as_ref()));
    if let Some(p) = &e.process {
        add("process.name", 9, "Process Name", p.name.as_ref());
        add("process.cmd_line", 13, "Command Line", p.cmd_line.as_ref());
    }
    if let Some(f) = &e.file {
        add("file.path", 45, "File Path", f.path.as_ref());
        add("file.hashes.value", 8, "Hash", f.hashes.first().map(|h| &h.value));
    }
    if let Some(f) = e.module.as_ref().and_then(|m| m.file.as_ref()) {
        add("module.file.path", 45, "File Path", f.path.as_ref());
    }
    if let Some(f) = e.evidences.first().and_then(|ev| ev.file.as_ref()) {
        add("evidences.file.path", 45, "File Path", f.path.as_ref());
        add("evidences.file.hashes.value", 8, "Hash", f.hashes.first().map(|h| &h.value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_consumed_path_is_a_field_of_the_schema() {
        for path in ENVELOPE {
            assert!(unmapped::path_exists(unmapped::EVENT, path), "envelope: {path}");
        }
        for (kind, paths) in ALL_CONSUMED {
            for p in *paths {
                assert!(unmapped::path_exists(unmapped::EVENT, &format!("{kind}.{p}")), "{kind}.{p}");
            }
        }
        // Every payload kind has its list.
        for kind in crate::proto::PAYLOAD_NAMES {
            assert!(ALL_CONSUMED.iter().any(|(k, _)| *k == kind), "{kind} has no consumed list");
        }
    }

    #[test]
    fn command_lines_keep_argument_boundaries() {
        let args = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(cmd_line(&args(&["llama-cli", "-m", "/m.gguf"])), "llama-cli -m /m.gguf");
        assert_eq!(cmd_line(&args(&["sh", "-c", "echo it's"])), r"sh -c 'echo it'\''s'");
        assert_eq!(cmd_line(&args(&["a", ""])), "a ''");
    }

    #[test]
    fn file_names_folders_and_extensions() {
        let f = file_at("/srv/models/llama.Q4.gguf", (1, "Regular File"));
        assert_eq!(
            (f.name.as_str(), f.parent_folder.as_deref(), f.ext.as_deref()),
            ("llama.Q4.gguf", Some("/srv/models"), Some("gguf"))
        );
        let f = file_at("/.hidden", (1, "Regular File"));
        assert_eq!((f.name.as_str(), f.parent_folder.as_deref(), f.ext), (".hidden", Some("/"), None));
        let f = file_at("blob", (0, "Unknown"));
        assert_eq!((f.name.as_str(), f.parent_folder, f.ext), ("blob", None, None));
        assert_eq!(file_at("", (0, "Unknown")).name, "(unknown)");
    }

    #[test]
    fn one_gpu_per_card() {
        let node = |path: &str, kind: AcceleratorKind, slot: &str| Accelerator {
            path: path.into(),
            kind: kind as i32,
            pci_slot: slot.into(),
            vendor: "amd".into(),
            model: "Radeon".into(),
            ..Default::default()
        };
        let devs = [
            node("/dev/dri/renderD128", AcceleratorKind::Gpu, "0000:03:00.0"),
            node("/dev/dri/card0", AcceleratorKind::Display, "0000:03:00.0"),
            node("/dev/kfd", AcceleratorKind::Control, ""),
            node("/dev/dri/renderD129", AcceleratorKind::Gpu, "0000:04:00.0"),
            node("/dev/accel/accel0", AcceleratorKind::Npu, ""),
        ];
        let (count, list) = gpus(&devs);
        assert_eq!(count, 3);
        assert_eq!(list[0], GpuInfo { model: Some("Radeon".into()), vendor_name: Some("AMD".into()) });
    }
}
