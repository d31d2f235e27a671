//! The result of analysing one artifact, shaped to map one-to-one onto protobuf messages:
//! flat structs of strings, numbers, simple enums and repeated fields, no generics. Every enum
//! has a stable lowercase string form (serde and [`std::fmt::Display`] agree) so that text
//! output, JSON output and the wire schema use the same words.

use std::{collections::BTreeMap, fmt, path::PathBuf};

use serde::{Deserialize, Serialize};

/// A model serialisation format, identified from content (never from the file name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Gguf,
    Safetensors,
    /// `torch.save` output: zip (with `*/data.pkl`), legacy tar or legacy raw pickle stream;
    /// TorchScript archives are a `variant`.
    Pytorch,
    /// A plain pickle stream (including joblib, see `variant`).
    Pickle,
    /// NumPy `.npy` (variant `npy`) or `.npz` (variant `npz`).
    Numpy,
    Onnx,
    Tflite,
    /// TensorFlow SavedModel `saved_model.pb`.
    TfSavedmodel,
    /// Keras v3 `.keras` zip.
    Keras,
    /// HDF5 with a Keras model or weights.
    KerasH5,
    /// HDF5 that carries no Keras markers.
    Hdf5,
    Coreml,
    /// Binary content of no known model format.
    Unknown,
    /// Content that is positively not a model (text, empty, a Git LFS pointer, ...).
    NotAModel,
}

impl Format {
    pub const ALL: [Format; 14] = [
        Format::Gguf,
        Format::Safetensors,
        Format::Pytorch,
        Format::Pickle,
        Format::Numpy,
        Format::Onnx,
        Format::Tflite,
        Format::TfSavedmodel,
        Format::Keras,
        Format::KerasH5,
        Format::Hdf5,
        Format::Coreml,
        Format::Unknown,
        Format::NotAModel,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Gguf => "gguf",
            Format::Safetensors => "safetensors",
            Format::Pytorch => "pytorch",
            Format::Pickle => "pickle",
            Format::Numpy => "numpy",
            Format::Onnx => "onnx",
            Format::Tflite => "tflite",
            Format::TfSavedmodel => "tf_savedmodel",
            Format::Keras => "keras",
            Format::KerasH5 => "keras_h5",
            Format::Hdf5 => "hdf5",
            Format::Coreml => "coreml",
            Format::Unknown => "unknown",
            Format::NotAModel => "not_a_model",
        }
    }

    /// Whether the content was recognised as a model (or model-weights) format. Plain HDF5 and
    /// NumPy arrays are data containers first: a `.npy` of features is no model. (What such a
    /// file can still carry — pickled objects — is judged all the same, see `pickle`.)
    pub fn is_model(self) -> bool {
        !matches!(self, Format::Unknown | Format::NotAModel | Format::Hdf5 | Format::Numpy)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing worth telling a security team. `code` is a stable snake_case identifier (see
/// [`codes`]); `message` is for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub severity: Severity,
    pub code: String,
    pub message: String,
}

impl Finding {
    pub fn new(severity: Severity, code: &str, message: impl Into<String>) -> Self {
        Self { severity, code: code.to_owned(), message: message.into() }
    }
}

/// Stable finding codes.
pub mod codes {
    /// The content matched a format's signature but its structure is invalid or truncated.
    pub const MALFORMED: &str = "malformed";
    /// A bound (size, count, nesting, ratio) stopped the analysis early.
    pub const LIMIT_EXCEEDED: &str = "limit_exceeded";
    /// The analysis ran out of its time budget (or was stopped) before the end of the content:
    /// what it did not reach is unseen.
    pub const ANALYSIS_INCOMPLETE: &str = "analysis_incomplete";
    /// The content was not hashed (too large, or a sparse file): the manifest can neither
    /// approve it nor tell it apart from another file.
    pub const DIGEST_SKIPPED: &str = "digest_skipped";
    pub const PICKLE_MALICIOUS: &str = "pickle_malicious";
    pub const PICKLE_SUSPICIOUS: &str = "pickle_suspicious";
    /// The pickle stream could not be walked to its end, so globals past that point are unseen.
    pub const PICKLE_INCOMPLETE: &str = "pickle_incomplete";
    pub const KERAS_LAMBDA: &str = "keras_lambda";
    pub const UNSAFE_OPS: &str = "unsafe_ops";
    pub const CUSTOM_OPS: &str = "custom_ops";
    pub const EXTERNAL_DATA: &str = "external_data";
    pub const ZIP_DUPLICATE_NAMES: &str = "zip_duplicate_names";
    pub const DIGEST_MISMATCH: &str = "digest_mismatch";
    pub const LICENSE_MISSING: &str = "license_missing";
    pub const LICENSE_NOT_ALLOWED: &str = "license_not_allowed";
    pub const MODEL_UNAPPROVED: &str = "model_unapproved";
    pub const MODEL_DENIED: &str = "model_denied";
    pub const NOT_A_MODEL: &str = "not_a_model";
    pub const SHARD_INCOMPLETE: &str = "shard_incomplete";
    /// A trusted signature covers the model but a file differs from what was signed.
    pub const SIGNATURE_DIGEST_MISMATCH: &str = "signature_digest_mismatch";
    /// A trusted signer is named but the signature does not verify.
    pub const SIGNATURE_INVALID: &str = "signature_invalid";
    /// The signature was made by nobody configured as trusted (or cannot be checked offline).
    pub const SIGNATURE_UNTRUSTED: &str = "signature_untrusted";
    /// The signature file cannot be read as a model signature.
    pub const SIGNATURE_MALFORMED: &str = "signature_malformed";
    /// `artifact.signing.require` asks for a verified signature and the model has none.
    pub const SIGNATURE_REQUIRED: &str = "signature_required";
    /// The codes of a signature verdict, replaced whenever the model is verified again.
    pub const SIGNATURE: [&str; 4] =
        [SIGNATURE_DIGEST_MISMATCH, SIGNATURE_INVALID, SIGNATURE_UNTRUSTED, SIGNATURE_MALFORMED];

    /// Codes that [`crate::evaluate`] owns and recomputes whenever the digest or the
    /// manifest changes.
    pub const POLICY: [&str; 4] = [LICENSE_MISSING, LICENSE_NOT_ALLOWED, MODEL_UNAPPROVED, MODEL_DENIED];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestState {
    /// Named by the store (Hugging Face / Ollama blob path), not yet confirmed.
    Claimed,
    /// Computed from the content (and equal to the claim, if there was one).
    Verified,
    /// Computed from the content and different from the store's claim.
    Mismatch,
}

impl DigestState {
    pub fn as_str(self) -> &'static str {
        match self {
            DigestState::Claimed => "claimed",
            DigestState::Verified => "verified",
            DigestState::Mismatch => "mismatch",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// Lowercase hex SHA-256: the computed value when `state` is verified or mismatch, the
    /// store's claim when `state` is claimed.
    pub sha256_hex: String,
    pub state: DigestState,
    /// The store's claim, when the path named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_sha256_hex: Option<String>,
}

/// Why a file's content was not hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DigestSkipReason {
    /// Larger than `max_hash_bytes`.
    TooLarge,
    /// Mostly holes (see `hash_sparse_files`).
    Sparse,
}

impl DigestSkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DigestSkipReason::TooLarge => "too_large",
            DigestSkipReason::Sparse => "sparse",
        }
    }
}

impl fmt::Display for DigestSkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A digest that will not be computed, and why. The report's `digest` then stays empty or the
/// store's claim, so the manifest cannot approve the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestSkipped {
    pub reason: DigestSkipReason,
    /// For people: the sizes that decided it.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Safety {
    /// Only allowlisted globals, and the whole stream was walked.
    Safe,
    /// Globals outside the allowlist, or a stream that could not be walked to its end.
    Suspicious,
    /// Known code-execution globals, or imports hidden from static analysis.
    Malicious,
}

impl Safety {
    pub fn as_str(self) -> &'static str {
        match self {
            Safety::Safe => "safe",
            Safety::Suspicious => "suspicious",
            Safety::Malicious => "malicious",
        }
    }
}

/// The static judgement of every pickle stream in the artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PickleVerdict {
    pub verdict: Safety,
    /// Every global the streams import, as `module.name` (as written in the pickle), sorted.
    pub globals: Vec<String>,
    /// The globals that decided a non-safe verdict.
    pub offending: Vec<String>,
    /// Where the pickles were found (`data.pkl` inside a zip, `<file>` for a raw stream).
    pub streams: Vec<String>,
    /// Whether every stream was walked to its end.
    pub complete: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyVerdict {
    /// The verified (computed) digest is listed as approved in the manifest.
    Approved,
    /// A manifest is configured and the digest is not on it.
    Unapproved,
    /// The digest is on the manifest's deny list.
    Denied,
    /// No verified digest is available yet (not computed, hashing failed, or only the claim
    /// of a store path, which can deny but not approve).
    Unknown,
    /// No manifest is configured, so there is nothing to judge against.
    NoManifest,
}

impl PolicyVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyVerdict::Approved => "approved",
            PolicyVerdict::Unapproved => "unapproved",
            PolicyVerdict::Denied => "denied",
            PolicyVerdict::Unknown => "unknown",
            PolicyVerdict::NoManifest => "no_manifest",
        }
    }
}

/// The manifest entry an artifact matched (approved or denied).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestMatch {
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LicenseProblem {
    /// Neither the content nor the manifest names a licence.
    Missing,
    /// The licence is not in `allowed_licenses`.
    NotAllowed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseFinding {
    pub problem: LicenseProblem,
    /// The licence that was judged (absent when missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// `content` or `manifest`: where the licence came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opset {
    /// Empty for the default ONNX domain.
    pub domain: String,
    pub version: i64,
}

/// One file of a sharded model (`model-00001-of-00005.safetensors`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// 1-based shard number from the file name.
    pub index: u32,
    pub count: u32,
    /// The name shared by all shards: the directory plus the file-name stem before `-NNNNN-of-`.
    pub group: String,
    /// The `*.safetensors.index.json` beside the shard, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_file: Option<String>,
    /// `metadata.total_size` from the index (bytes of tensor data across all shards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_size: Option<u64>,
}

/// What the content says about the model. Every field is optional; which ones are set depends
/// on the format.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelMetadata {
    /// Container version (GGUF version, .npy format version, TFLite schema, Core ML spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format_version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The licence the content itself declares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensor_count: Option<u64>,
    /// Distinct tensor element types, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dtypes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<bool>,
    /// Array shape (.npy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shape: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ir_version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_version: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub opsets: Vec<Opset>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph_name: Option<String>,
    /// Graph nodes / operators / layers, where the format has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_count: Option<u64>,
    /// Operators from non-standard domains (ONNX) or custom operators (TFLite): they load
    /// native code that is not part of the runtime.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_ops: Vec<String>,
    /// Operators that touch the file system or run Python (SavedModel, TFLite Flex).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsafe_ops: Vec<String>,
    /// ONNX external-data locations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_data: Vec<String>,
    /// Keras Lambda layers (serialised Python bytecode).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lambda_layers: Vec<String>,
    /// SavedModel MetaGraph tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Entries of a zip container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardInfo>,
    /// Other key/value metadata the format carries (safetensors `__metadata__`, ONNX
    /// `metadata_props`, Core ML metadata, Hugging Face repository from the path, ...). Bounded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

/// The full analysis of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactReport {
    pub path: PathBuf,
    pub size: u64,
    pub format: Format,
    /// Sub-format: `zip`, `legacy_tar`, `legacy`, `torchscript`, `joblib`, `npy`, `npz`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    pub metadata: ModelMetadata,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// Set when the content is not hashed at all (see [`DigestSkipped`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_skipped: Option<DigestSkipped>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pickle: Option<PickleVerdict>,
    pub policy: PolicyVerdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_entry: Option<ManifestMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_finding: Option<LicenseFinding>,
    /// The model's signature (`artifact.signing`); unset when not looked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<crate::signature::SignatureReport>,
    /// Sorted by severity, highest first.
    pub findings: Vec<Finding>,
    /// The verdict came from the persisted verdict cache (a not-a-model or unknown-format
    /// verdict on this very content version, from an earlier run): the content was not read.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_verdict_cache: bool,
}

impl ArtifactReport {
    /// The highest severity among the findings.
    pub fn max_severity(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    pub(crate) fn sort_findings(&mut self) {
        self.findings.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.code.cmp(&b.code)));
        self.findings.dedup();
    }
}
