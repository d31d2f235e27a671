//! Parsing of an OpenSSF model signature (model_signing v1.0): the Sigstore bundle, its DSSE
//! envelope, the DSSE pre-authentication encoding and the in-toto statement that lists the
//! model's files. Everything here reads hostile bytes: sizes and counts are bounded by the
//! caller's [`ParseLimits`], and every problem is a [`Malformed`] error, never a panic.
//!
//! Nothing here decides trust: [`parse_statement`] runs on the payload only after the signature
//! over it verified (the locator also reads it beforehand, only to choose which signature
//! applies to a file).

use base64::Engine as _;
use serde::Deserialize;

/// The media type `model_signing` writes (bundle v0.3). Older bundle versions are read too, so
/// that a Sigstore keyless bundle is recognised as such rather than called malformed.
pub const BUNDLE_MEDIA_TYPES: [&str; 4] = [
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
];
/// The DSSE payload type of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
pub const IN_TOTO_STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
/// The model_signing predicate (v1.0). The v0.1 predicate (`https://model_signing/Digests/v0.1`)
/// carries no serialization description and is refused as unsupported.
pub const MODEL_SIGNING_PREDICATE_V1: &str = "https://model_signing/signature/v1.0";

/// Most signatures in one envelope and most certificates in one chain that are looked at.
const MAX_SIGNATURES: usize = 16;
const MAX_CERTIFICATES: usize = 16;
/// A DER certificate or signature larger than this is not a real one.
const MAX_BLOB_BYTES: usize = 64 << 10;
/// Resource names are paths inside the model.
const MAX_NAME_BYTES: usize = 4096;

/// Why a signature could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

fn bad<T>(msg: impl Into<String>) -> Result<T, Malformed> {
    Err(Malformed(msg.into()))
}

/// Bounds on what one signature may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// The most bytes of the bundle file.
    pub max_bundle_bytes: u64,
    /// The most resources (files) the statement may list.
    pub max_files: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        Self { max_bundle_bytes: 16 << 20, max_files: 100_000 }
    }
}

/// What the bundle offers to verify its signature with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Material {
    /// The `key` method: a bare public key, named only by a hint (model_signing writes the
    /// SHA-256 of the key's PEM text; older versions wrote nothing).
    PublicKey { hint: Option<String> },
    /// The `certificate` method: the signing certificate first, then the chain (DER).
    Chain(Vec<Vec<u8>>),
    /// A Sigstore keyless signature: a short-lived certificate (the first of a chain in older
    /// bundles) and transparency-log entries.
    Keyless { certificate: Option<Vec<u8>>, tlog: Vec<TlogEntry> },
}

/// A transparency-log (Rekor) entry of a keyless bundle; nothing in it is trusted yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogEntry {
    /// The entry's index in the whole log (what the signed entry timestamp names).
    pub log_index: u64,
    /// SHA-256 of the log's public key (SubjectPublicKeyInfo, DER).
    pub key_id: Vec<u8>,
    pub kind: String,
    pub version: String,
    /// When the log says it included the entry (seconds since the epoch).
    pub integrated_time: i64,
    /// The log's signed promise of inclusion (signature over the entry and its time).
    pub signed_entry_timestamp: Option<Vec<u8>>,
    pub inclusion_proof: Option<InclusionProof>,
    /// The entry as the log stored it (JSON).
    pub canonicalized_body: Vec<u8>,
}

/// A Merkle inclusion proof with the log's signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// The entry's index in the tree the proof is for (a log shard).
    pub log_index: u64,
    pub root_hash: Vec<u8>,
    pub tree_size: u64,
    pub hashes: Vec<Vec<u8>>,
    /// The signed note that commits to `root_hash` and `tree_size`.
    pub checkpoint: String,
}

/// Most transparency-log entries and proof hashes looked at.
const MAX_TLOG_ENTRIES: usize = 8;
const MAX_PROOF_HASHES: usize = 64;

/// Protobuf JSON writes 64-bit integers as strings; numbers are accepted too.
fn int(v: &serde_json::Value, field: &str) -> Result<i64, Malformed> {
    match v {
        serde_json::Value::String(s) => s.parse().or_else(|_| bad(format!("`{field}` is not an integer"))),
        serde_json::Value::Number(n) => n.as_i64().map_or_else(|| bad(format!("`{field}` is not an integer")), Ok),
        serde_json::Value::Null => Ok(0),
        _ => bad(format!("`{field}` is not an integer")),
    }
}

fn uint(v: &serde_json::Value, field: &str) -> Result<u64, Malformed> {
    u64::try_from(int(v, field)?).or_else(|_| bad(format!("`{field}` is negative")))
}

fn b64_field(v: &serde_json::Value, field: &str, max: usize) -> Result<Vec<u8>, Malformed> {
    match v.as_str() {
        Some(s) => b64(field, s, max),
        None => bad(format!("`{field}` is missing or not a string")),
    }
}

fn parse_tlog_entry(v: &serde_json::Value) -> Result<TlogEntry, Malformed> {
    let proof = match v.get("inclusionProof") {
        None | Some(serde_json::Value::Null) => None,
        Some(p) => {
            let hashes = p.get("hashes").and_then(|h| h.as_array()).map(Vec::as_slice).unwrap_or_default();
            if hashes.len() > MAX_PROOF_HASHES {
                return bad("the inclusion proof has too many hashes");
            }
            let checkpoint = p["checkpoint"]["envelope"].as_str().unwrap_or_default();
            if checkpoint.len() > 16 << 10 {
                return bad("the checkpoint is too long");
            }
            Some(InclusionProof {
                log_index: uint(&p["logIndex"], "inclusionProof.logIndex")?,
                root_hash: b64_field(&p["rootHash"], "inclusionProof.rootHash", 64)?,
                tree_size: uint(&p["treeSize"], "inclusionProof.treeSize")?,
                hashes: hashes.iter().map(|h| b64_field(h, "inclusionProof.hashes", 64)).collect::<Result<_, _>>()?,
                checkpoint: checkpoint.to_owned(),
            })
        }
    };
    let set = match v["inclusionPromise"]["signedEntryTimestamp"].as_str() {
        Some(s) => Some(b64("signedEntryTimestamp", s, MAX_BLOB_BYTES)?),
        None => None,
    };
    Ok(TlogEntry {
        log_index: uint(&v["logIndex"], "logIndex")?,
        key_id: b64_field(&v["logId"]["keyId"], "logId.keyId", 64)?,
        kind: v["kindVersion"]["kind"].as_str().unwrap_or_default().chars().take(64).collect(),
        version: v["kindVersion"]["version"].as_str().unwrap_or_default().chars().take(64).collect(),
        integrated_time: int(&v["integratedTime"], "integratedTime")?,
        signed_entry_timestamp: set,
        inclusion_proof: proof,
        canonicalized_body: b64_field(&v["canonicalizedBody"], "canonicalizedBody", 1 << 20)?,
    })
}

/// The DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub payload_type: String,
    pub payload: Vec<u8>,
    pub signatures: Vec<Vec<u8>>,
}

/// A parsed bundle; nothing in it is trusted yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub media_type: String,
    pub material: Material,
    pub envelope: Envelope,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBundle {
    media_type: Option<String>,
    verification_material: Option<RawMaterial>,
    dsse_envelope: Option<RawEnvelope>,
    message_signature: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMaterial {
    public_key: Option<RawPublicKey>,
    x509_certificate_chain: Option<RawChain>,
    certificate: Option<RawCert>,
    #[serde(default)]
    tlog_entries: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawPublicKey {
    hint: Option<String>,
}

#[derive(Deserialize)]
struct RawChain {
    #[serde(default)]
    certificates: Vec<RawCert>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCert {
    raw_bytes: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEnvelope {
    payload: Option<String>,
    payload_type: Option<String>,
    #[serde(default)]
    signatures: Vec<RawSignature>,
}

#[derive(Deserialize)]
struct RawSignature {
    sig: Option<String>,
}

/// Protobuf's JSON mapping writes bytes as standard base64 but readers must accept the URL-safe
/// alphabet and missing padding too.
fn b64(field: &str, s: &str, max: usize) -> Result<Vec<u8>, Malformed> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const CFG: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, CFG);
    const URL: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, CFG);
    if s.len() / 4 * 3 > max {
        return bad(format!("`{field}` is larger than {max} bytes"));
    }
    STD.decode(s).or_else(|_| URL.decode(s)).or_else(|e| bad(format!("`{field}` is not base64: {e}")))
}

/// Parses a bundle file's bytes.
pub fn parse_bundle(bytes: &[u8], limits: &ParseLimits) -> Result<Bundle, Malformed> {
    if bytes.len() as u64 > limits.max_bundle_bytes {
        return bad(format!("the bundle is larger than {} bytes", limits.max_bundle_bytes));
    }
    let raw: RawBundle =
        serde_json::from_slice(bytes).or_else(|e| bad(format!("not a Sigstore bundle (JSON): {e}")))?;
    let media_type = raw.media_type.unwrap_or_default();
    if !BUNDLE_MEDIA_TYPES.contains(&media_type.as_str()) {
        return bad(format!("unknown bundle media type `{media_type}`"));
    }
    let Some(vm) = raw.verification_material else { return bad("the bundle has no verificationMaterial") };
    let Some(env) = raw.dsse_envelope else {
        if raw.message_signature.is_some() {
            return bad("the bundle signs a message digest, not a DSSE statement: not a model signature");
        }
        return bad("the bundle has no dsseEnvelope");
    };
    let material = if vm.certificate.is_some() || !vm.tlog_entries.is_empty() {
        let raw = vm
            .certificate
            .and_then(|c| c.raw_bytes)
            .or_else(|| vm.x509_certificate_chain.and_then(|c| c.certificates.into_iter().next()?.raw_bytes));
        let certificate = match raw {
            Some(c) => Some(b64("certificate.rawBytes", &c, MAX_BLOB_BYTES)?),
            None => None,
        };
        if vm.tlog_entries.len() > MAX_TLOG_ENTRIES {
            return bad(format!("more than {MAX_TLOG_ENTRIES} transparency-log entries"));
        }
        let tlog = vm.tlog_entries.iter().map(parse_tlog_entry).collect::<Result<_, _>>()?;
        Material::Keyless { certificate, tlog }
    } else if let Some(chain) = vm.x509_certificate_chain {
        if chain.certificates.is_empty() {
            return bad("x509CertificateChain holds no certificate");
        }
        if chain.certificates.len() > MAX_CERTIFICATES {
            return bad(format!("the certificate chain has more than {MAX_CERTIFICATES} certificates"));
        }
        let mut certs = Vec::with_capacity(chain.certificates.len());
        for (i, c) in chain.certificates.into_iter().enumerate() {
            let Some(raw) = c.raw_bytes else { return bad(format!("certificate {i} has no rawBytes")) };
            certs.push(b64("certificates.rawBytes", &raw, MAX_BLOB_BYTES)?);
        }
        Material::Chain(certs)
    } else if let Some(pk) = vm.public_key {
        let hint = pk.hint.filter(|h| !h.is_empty());
        if hint.as_ref().is_some_and(|h| h.len() > 512) {
            return bad("publicKey.hint is too long");
        }
        Material::PublicKey { hint }
    } else {
        return bad("verificationMaterial names no public key, certificate chain or certificate");
    };
    let payload_type = env.payload_type.unwrap_or_default();
    if payload_type.len() > 256 {
        return bad("payloadType is too long");
    }
    let Some(payload) = env.payload else { return bad("the envelope has no payload") };
    let payload = b64("payload", &payload, limits.max_bundle_bytes as usize)?;
    if env.signatures.is_empty() {
        return bad("the envelope holds no signature");
    }
    if env.signatures.len() > MAX_SIGNATURES {
        return bad(format!("the envelope holds more than {MAX_SIGNATURES} signatures"));
    }
    let mut signatures = Vec::with_capacity(env.signatures.len());
    for s in env.signatures {
        let Some(sig) = s.sig else { return bad("a signature has no `sig`") };
        signatures.push(b64("sig", &sig, MAX_BLOB_BYTES)?);
    }
    Ok(Bundle { media_type, material, envelope: Envelope { payload_type, payload, signatures } })
}

/// DSSE v1 pre-authentication encoding: what is actually signed.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

/// How the model was turned into the list of resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serialization {
    /// `files` (one resource per file); `shards` is recognised and refused as unsupported.
    pub method: String,
    pub hash_type: String,
    pub allow_symlinks: bool,
    /// Paths (relative to the model root) that were left out when signing.
    pub ignore_paths: Vec<String>,
}

/// One signed file: its path relative to the model root (`.` when the model is one file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub name: String,
    pub sha256_hex: String,
}

/// The in-toto statement of a model signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The subject's name: the model's file or directory name when it was signed.
    pub model_name: String,
    /// SHA-256 over the resources' digests in their order (checked by [`parse_statement`]).
    pub root_sha256_hex: String,
    pub serialization: Serialization,
    pub resources: Vec<Resource>,
}

impl Statement {
    /// A single-file model is signed as one resource named `.`.
    pub fn is_single_file(&self) -> bool {
        self.resources.len() == 1 && self.resources[0].name == "."
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawStatement {
    #[serde(rename = "_type")]
    type_: Option<String>,
    #[serde(default)]
    subject: Vec<RawSubject>,
    predicate_type: Option<String>,
    predicate: Option<RawPredicate>,
}

#[derive(Deserialize)]
struct RawSubject {
    name: Option<String>,
    digest: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct RawPredicate {
    serialization: Option<RawSerialization>,
    #[serde(default)]
    resources: Vec<RawResource>,
}

#[derive(Deserialize)]
struct RawSerialization {
    method: Option<String>,
    hash_type: Option<String>,
    #[serde(default)]
    allow_symlinks: bool,
    #[serde(default)]
    ignore_paths: Vec<String>,
}

#[derive(Deserialize)]
struct RawResource {
    name: Option<String>,
    algorithm: Option<String>,
    digest: Option<String>,
}

use crate::io::is_sha256_hex;

fn unhex32(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2).unwrap_or("00"), 16).unwrap_or(0);
    }
    out
}

/// Parses and checks the statement: in-toto v1, the model_signing v1.0 predicate, one subject
/// whose digest is the SHA-256 of the resources' digests, `files` serialization with SHA-256,
/// distinct resource names.
pub fn parse_statement(payload: &[u8], limits: &ParseLimits) -> Result<Statement, Malformed> {
    use sha2::Digest as _;
    let raw: RawStatement =
        serde_json::from_slice(payload).or_else(|e| bad(format!("the payload is not an in-toto statement: {e}")))?;
    let t = raw.type_.unwrap_or_default();
    if t != IN_TOTO_STATEMENT_V1 {
        return bad(format!("statement type `{t}` is not {IN_TOTO_STATEMENT_V1}"));
    }
    let pt = raw.predicate_type.unwrap_or_default();
    if pt != MODEL_SIGNING_PREDICATE_V1 {
        return bad(format!("predicate type `{pt}` is not supported (only {MODEL_SIGNING_PREDICATE_V1})"));
    }
    let [subject] =
        <[RawSubject; 1]>::try_from(raw.subject).or_else(|s| bad(format!("{} subjects, expected one", s.len())))?;
    let model_name = subject.name.unwrap_or_default();
    if model_name.len() > MAX_NAME_BYTES {
        return bad("the subject's name is too long");
    }
    let root = subject.digest.and_then(|mut d| d.remove("sha256")).unwrap_or_default().to_ascii_lowercase();
    if !is_sha256_hex(&root) {
        return bad("the subject has no sha256 digest");
    }
    let Some(pred) = raw.predicate else { return bad("the statement has no predicate") };
    let Some(ser) = pred.serialization else { return bad("the predicate has no serialization") };
    let method = ser.method.unwrap_or_default();
    if method != "files" {
        return bad(format!("serialization method `{method}` is not supported (only `files`)"));
    }
    let hash_type = ser.hash_type.unwrap_or_default();
    if hash_type != "sha256" {
        return bad(format!("hash type `{hash_type}` is not supported (only sha256)"));
    }
    if ser.ignore_paths.len() > 1024 || ser.ignore_paths.iter().any(|p| p.len() > MAX_NAME_BYTES) {
        return bad("too many or too long ignore_paths");
    }
    if pred.resources.is_empty() {
        return bad("the predicate lists no resources");
    }
    if pred.resources.len() > limits.max_files {
        return bad(format!("the statement lists more than {} files", limits.max_files));
    }
    let mut h = sha2::Sha256::new();
    let mut names = std::collections::HashSet::with_capacity(pred.resources.len());
    let mut resources = Vec::with_capacity(pred.resources.len());
    for r in pred.resources {
        let name = r.name.unwrap_or_default();
        if name.is_empty() || name.len() > MAX_NAME_BYTES || name.contains('\0') {
            return bad("a resource has an empty, too long or invalid name");
        }
        let alg = r.algorithm.unwrap_or_default();
        if alg != "sha256" {
            return bad(format!("resource `{name}` uses algorithm `{alg}` (only sha256)"));
        }
        let digest = r.digest.unwrap_or_default().to_ascii_lowercase();
        if !is_sha256_hex(&digest) {
            return bad(format!("resource `{name}` has no sha256 digest"));
        }
        h.update(unhex32(&digest));
        if !names.insert(name.clone()) {
            return bad(format!("resource `{name}` is listed twice"));
        }
        resources.push(Resource { name, sha256_hex: digest });
    }
    let computed = crate::io::hex(&h.finalize());
    if computed != root {
        return bad(format!("the subject digest {root} is not the digest of the listed resources ({computed})"));
    }
    Ok(Statement {
        model_name,
        root_sha256_hex: root,
        serialization: Serialization {
            method,
            hash_type,
            allow_symlinks: ser.allow_symlinks,
            ignore_paths: ser.ignore_paths,
        },
        resources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // https://github.com/secure-systems-lab/dsse/blob/v1.0.0/protocol.md
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
    }

    #[test]
    fn hostile_bundles_are_errors_not_panics() {
        let l = ParseLimits::default();
        for input in [
            &b""[..],
            b"{",
            b"[]",
            b"{\"mediaType\": 5}",
            b"{\"mediaType\": \"application/vnd.dev.sigstore.bundle.v0.3+json\"}",
            b"{\"mediaType\": \"application/vnd.dev.sigstore.bundle.v0.3+json\", \"verificationMaterial\": {}, \"dsseEnvelope\": {}}",
            b"{\"mediaType\": \"application/vnd.dev.sigstore.bundle.v0.3+json\", \"verificationMaterial\": {\"publicKey\": {}}, \"dsseEnvelope\": {\"payload\": \"!!\", \"signatures\": [{\"sig\": \"\"}]}}",
        ] {
            assert!(parse_bundle(input, &l).is_err(), "{}", String::from_utf8_lossy(input));
        }
        let tiny = ParseLimits { max_bundle_bytes: 4, max_files: 1 };
        assert!(parse_bundle(b"{\"a\": 1}", &tiny).unwrap_err().0.contains("larger than"));
    }

    #[test]
    fn statement_root_digest_and_duplicates_are_checked() {
        let l = ParseLimits::default();
        let d = "00".repeat(32);
        let stmt = |root: &str, res: &str| {
            format!(
                r#"{{"_type":"https://in-toto.io/Statement/v1","subject":[{{"name":"m","digest":{{"sha256":"{root}"}}}}],
                "predicateType":"https://model_signing/signature/v1.0","predicate":{{"serialization":{{"method":"files","hash_type":"sha256","allow_symlinks":false}},"resources":[{res}]}}}}"#
            )
        };
        let one = format!(r#"{{"name":"a","algorithm":"sha256","digest":"{d}"}}"#);
        let root = crate::digest::sha256_bytes(&[0u8; 32]);
        let ok = parse_statement(stmt(&root, &one).as_bytes(), &l).expect("valid");
        assert_eq!(ok.resources.len(), 1);
        assert!(!ok.is_single_file());
        assert!(parse_statement(stmt(&d, &one).as_bytes(), &l).unwrap_err().0.contains("not the digest"));
        let two = format!("{one},{one}");
        let root2 = crate::digest::sha256_bytes(&[0u8; 64]);
        assert!(parse_statement(stmt(&root2, &two).as_bytes(), &l).unwrap_err().0.contains("listed twice"));
    }
}
