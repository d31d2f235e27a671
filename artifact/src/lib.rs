//! Model artifact intelligence: what a model file is, what it contains, whether loading it runs
//! code, who approved it and under which licence.
//!
//! - [`formats`] identifies a file by content and reads its headers (bounded, never panicking):
//!   [`formats::spec`] is the one table of formats (extensions, signature, parser, variants),
//!   one parser file per format beside it, `protobuf` the wire reader ONNX, Core ML and
//!   SavedModel share, and [`formats::Ctx`] the state of one identification;
//! - [`pickle_scan`] walks pickle opcodes statically and judges the imported globals (walker,
//!   legacy torch tar members, allow/deny policy, Python 2 names); `pyint` reads integers the
//!   way CPython does, for the walker and the parsers;
//! - [`digest`] streams SHA-256 and keeps the persistent digest cache; [`verdicts`] the
//!   persistent not-a-model verdicts;
//! - [`manifest`] and [`licence`] hold the approval and licence policies;
//! - [`signature`] finds and verifies a model's OpenSSF model signature (Sigstore bundle);
//! - [`service`] is the live analyzer the sensor feeds with opened files;
//! - [`scan`] is the offline `modelwatch scan` command;
//! - [`report`] is the result, shaped for the collector's protobuf messages; [`io`] the
//!   bounded reader every parser reads through and the [`io::Deadline`] of one analysis (its
//!   wall-time budget and the owner's stop flag, checked by the reader, the pickle walker and
//!   the zip inflater); [`config`] and [`size`] the `[artifact]` configuration.
//!
//! [`analyze_path`] ties them together for one file. Nothing here executes, imports or
//! unpickles anything from an artifact.
//!
//! A new format is a [`Format`] variant, a parser file in `formats/` and one row of
//! [`formats::spec::FORMATS`]: identification, `modelwatch scan` and the collector's default
//! kernel filter (`files.extensions`) all read that table. The collector maps [`Format`] onto
//! its protobuf enum (`sensor-user/src/enrich/artifact.rs`).

pub mod config;
pub mod digest;
pub mod formats;
pub mod io;
pub mod licence;
pub mod manifest;
pub mod pickle_scan;
mod pyint;
pub mod report;
pub mod scan;
pub mod service;
pub mod signature;
pub mod size;
pub mod verdicts;

use std::{
    fs::File,
    io::{Seek, SeekFrom},
    path::{Path, PathBuf},
    sync::{Arc, atomic::AtomicBool},
};

use serde::{Deserialize, Serialize};

pub use config::ArtifactConfig;
pub use licence::LicensePolicy;
pub use manifest::Manifest;
pub use pickle_scan::PicklePolicy;
pub use report::{
    ArtifactReport, Digest, DigestSkipReason, DigestSkipped, DigestState, Finding, Format, LicenseFinding,
    LicenseProblem, ManifestMatch, ModelMetadata, Opset, PickleVerdict, PolicyVerdict, Safety, Severity, ShardInfo,
    codes,
};
pub use size::ByteSize;

/// Bounds on what parsing may read (see [`ArtifactConfig`] for the meaning of each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_parse_bytes: u64,
    pub max_pickle_bytes: u64,
    pub max_zip_entries: usize,
    pub max_zip_ratio: u64,
    pub max_nesting: u32,
    /// Wall time one identification may take, in milliseconds.
    pub max_analysis_ms: u64,
}

impl Limits {
    pub fn analysis_budget(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.max_analysis_ms)
    }
}

impl Default for Limits {
    fn default() -> Self {
        ArtifactConfig::default().limits()
    }
}

/// Which file an analysis is about: what `stat(2)` says, so that a result is tied to one
/// version of one inode. `dev` uses the `st_dev` (userspace) encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_sec: i64,
    /// The nanoseconds of the ctime (a rewrite within the same second changes only these).
    pub ctime_nsec: i64,
}

impl FileIdentity {
    pub fn from_metadata(m: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: m.mtime().saturating_mul(1_000_000_000).saturating_add(m.mtime_nsec()),
            ctime_sec: m.ctime(),
            ctime_nsec: m.ctime_nsec(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("cannot open {}: {source}", path.display())]
    Open { path: PathBuf, source: std::io::Error },
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{} is not a regular file", path.display())]
    NotRegular { path: PathBuf },
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    #[error("artifact config key `{key}`: {message}")]
    Config { key: String, message: String },
    #[error("cannot start the artifact analyzer: {0}")]
    Start(String),
}

/// How [`analyze_path`] works.
#[derive(Debug, Clone)]
pub struct AnalyzeOptions {
    pub limits: Limits,
    /// Compute the SHA-256 (otherwise only a store's claimed digest is reported).
    pub digest: bool,
    /// Which files are hashed.
    pub hash: digest::HashPolicy,
    pub manifest: Option<Arc<Manifest>>,
    pub license: LicensePolicy,
    pub pickle: Arc<PicklePolicy>,
    /// Set by the owner to end an identification early (the live analyzer's shutdown).
    pub stop: Option<Arc<AtomicBool>>,
    /// Model signature verification (`artifact.signing`), unless disabled.
    pub signing: Option<Arc<signature::Signing>>,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            digest: true,
            hash: digest::HashPolicy::default(),
            manifest: None,
            license: LicensePolicy::default(),
            pickle: Arc::new(PicklePolicy::default()),
            stop: None,
            signing: None,
        }
    }
}

impl AnalyzeOptions {
    /// Options from the configuration; loads the manifest when one is configured.
    pub fn from_config(cfg: &ArtifactConfig) -> Result<Self, ArtifactError> {
        cfg.validate().map_err(|(key, message)| ArtifactError::Config { key, message })?;
        let manifest = match &cfg.manifest {
            Some(p) => Some(Arc::new(Manifest::load(p)?)),
            None => None,
        };
        let signing = if cfg.signing.enabled {
            let verifier = signature::Verifier::from_config(&cfg.signing)
                .map_err(|e| ArtifactError::Config { key: "signing".into(), message: e.to_string() })?;
            Some(Arc::new(signature::Signing { verifier, require: cfg.signing.require }))
        } else {
            None
        };
        Ok(Self {
            limits: cfg.limits(),
            digest: true,
            hash: cfg.hash_policy(),
            manifest,
            license: LicensePolicy::new(&cfg.allowed_licenses, cfg.require_license),
            pickle: Arc::new(PicklePolicy::new(&cfg.pickle_allow, &cfg.pickle_deny)),
            stop: None,
            signing,
        })
    }
}

/// Opens `path` for analysis and checks it is a regular file.
pub fn open_artifact(path: &Path) -> Result<(File, std::fs::Metadata), ArtifactError> {
    let file = digest::open_readonly(path).map_err(|source| ArtifactError::Open { path: path.to_owned(), source })?;
    let meta = file.metadata().map_err(|source| ArtifactError::Read { path: path.to_owned(), source })?;
    if !meta.is_file() {
        return Err(ArtifactError::NotRegular { path: path.to_owned() });
    }
    Ok((file, meta))
}

/// Identification and content findings of an open file, without digest or policy, within the
/// time budget of `opts.limits` (and `opts.stop`).
pub fn identify_open(path: &Path, file: &mut File, size: u64, opts: &AnalyzeOptions) -> ArtifactReport {
    let deadline = io::Deadline::after(opts.limits.analysis_budget(), opts.stop.clone());
    let id = formats::identify_until(file, size, &opts.limits, &opts.pickle, deadline);
    let mut metadata = id.metadata;
    if id.format == Format::Safetensors {
        metadata.shard = formats::safetensors::shard_info(path, &opts.limits);
    }
    if let Some(repo) = digest::hf_repo(path) {
        metadata.properties.insert("hf_repo".into(), repo);
    }
    let mut report = ArtifactReport {
        path: path.to_owned(),
        size,
        format: id.format,
        variant: id.variant,
        metadata,
        digest: digest::claimed_digest(path).map(|c| Digest {
            sha256_hex: c.clone(),
            state: DigestState::Claimed,
            claimed_sha256_hex: Some(c),
        }),
        digest_skipped: None,
        pickle: id.pickle,
        policy: PolicyVerdict::Unknown,
        manifest_entry: None,
        license_finding: None,
        signature: None,
        findings: id.findings,
        from_verdict_cache: false,
    };
    report.sort_findings();
    report
}

/// Records a computed digest: verified, or a mismatch (with a critical finding) when the
/// store claimed another one.
pub fn apply_digest(report: &mut ArtifactReport, computed_hex: &str) {
    let claimed = report.digest.as_ref().and_then(|d| d.claimed_sha256_hex.clone());
    let state = match &claimed {
        Some(c) if !c.eq_ignore_ascii_case(computed_hex) => {
            report.findings.push(Finding::new(
                Severity::Critical,
                codes::DIGEST_MISMATCH,
                format!("the store names this file sha256 {c} but its content hashes to {computed_hex}: the blob was altered or replaced"),
            ));
            DigestState::Mismatch
        }
        _ => DigestState::Verified,
    };
    report.digest = Some(Digest { sha256_hex: computed_hex.to_owned(), state, claimed_sha256_hex: claimed });
    report.sort_findings();
}

/// Records that the content will not be hashed, and why (a `digest_skipped` finding). The
/// digest stays what it was (nothing, or a store's claim), so the policy stays `unknown` or,
/// on a claim, can deny but never approve.
pub fn apply_digest_skipped(report: &mut ArtifactReport, skipped: DigestSkipped) {
    report.findings.push(Finding::new(
        Severity::Low,
        codes::DIGEST_SKIPPED,
        format!(
            "digest skipped ({}): {}; the content was not hashed, so the manifest cannot approve it",
            skipped.reason, skipped.detail
        ),
    ));
    report.digest_skipped = Some(skipped);
    report.sort_findings();
}

/// Hashes `file` from its start into `report` (verified or mismatch), unless `opts.hash` skips
/// it (recorded with [`apply_digest_skipped`]).
pub fn digest_open(report: &mut ArtifactReport, file: &mut File, opts: &AnalyzeOptions) -> std::io::Result<()> {
    let meta = file.metadata()?;
    if let Some(skipped) = digest::skip_reason(file, &meta, &opts.hash) {
        apply_digest_skipped(report, skipped);
        return Ok(());
    }
    file.seek(SeekFrom::Start(0))?;
    let (hex, _) = digest::sha256_reader(file)?;
    apply_digest(report, &hex);
    Ok(())
}

/// (Re)computes the policy verdict and the licence finding from the digest, the manifest and
/// the licence policy. Idempotent: the findings it owns are replaced, not added twice.
pub fn evaluate(report: &mut ArtifactReport, manifest: Option<&Manifest>, license: &LicensePolicy) {
    report.findings.retain(|f| !codes::POLICY.contains(&f.code.as_str()));
    report.manifest_entry = None;
    report.license_finding = None;
    if report.format == Format::NotAModel {
        report.policy = if manifest.is_some() { PolicyVerdict::Unknown } else { PolicyVerdict::NoManifest };
        return;
    }
    let (verdict, entry) = match (manifest, report.digest.as_ref()) {
        (None, _) => (PolicyVerdict::NoManifest, None),
        (Some(_), None) => (PolicyVerdict::Unknown, None),
        // A digest named by the path is anyone's to write: it may deny a model (refusing on a
        // false claim costs nothing) but never approve one before the content is hashed.
        (Some(m), Some(d)) if d.state == DigestState::Claimed => match m.verdict(&d.sha256_hex) {
            (PolicyVerdict::Denied, e) => (PolicyVerdict::Denied, e),
            _ => (PolicyVerdict::Unknown, None),
        },
        // Verified, or a mismatch: `sha256_hex` is then what the content hashes to.
        (Some(m), Some(d)) => m.verdict(&d.sha256_hex),
    };
    report.policy = verdict;
    let model = report.format.is_model();
    match verdict {
        PolicyVerdict::Denied => {
            let why = entry.as_ref().and_then(|e| e.notes.clone()).map(|n| format!(": {n}")).unwrap_or_default();
            report.findings.push(Finding::new(
                Severity::High,
                codes::MODEL_DENIED,
                format!("the manifest denies this model{why}"),
            ));
        }
        PolicyVerdict::Unapproved if model => {
            report.findings.push(Finding::new(
                Severity::Medium,
                codes::MODEL_UNAPPROVED,
                "the model is not on the approved-model manifest",
            ));
        }
        _ => {}
    }
    if model {
        let (declared, source) = match (&report.metadata.license, entry.as_ref().and_then(|e| e.license.as_ref())) {
            (Some(l), _) => (Some(l.as_str()), "content"),
            (None, Some(l)) => (Some(l.as_str()), "manifest"),
            (None, None) => (None, "content"),
        };
        if let Some(f) = license.judge(declared, source) {
            let (code, sev, msg) = match f.problem {
                LicenseProblem::Missing => (
                    codes::LICENSE_MISSING,
                    Severity::Low,
                    format!(
                        "the model declares no licence ({} carries none in its content; name it in the manifest)",
                        report.format
                    ),
                ),
                LicenseProblem::NotAllowed => (
                    codes::LICENSE_NOT_ALLOWED,
                    Severity::Medium,
                    format!(
                        "licence `{}` ({source}) is not in the allowed list",
                        f.license.clone().unwrap_or_default()
                    ),
                ),
            };
            report.findings.push(Finding::new(sev, code, msg));
            report.license_finding = Some(f);
        }
    }
    report.manifest_entry = entry;
    report.sort_findings();
}

/// Looks for the model's signature and records its verdict (see [`signature`]), when signing
/// is enabled and the file is a model. `hasher` computes the other files' digests of a
/// directory model; the file's own digest, when verified, is not computed again.
pub fn verify_signature(report: &mut ArtifactReport, opts: &AnalyzeOptions, hasher: &mut signature::Hasher<'_>) {
    let Some(signing) = &opts.signing else { return };
    // A model whose own content is not hashed (too large, sparse) cannot be checked either.
    if !report.format.is_model() || report.digest_skipped.is_some() {
        return;
    }
    let own = report.digest.as_ref().filter(|d| d.state != DigestState::Claimed).map(|d| d.sha256_hex.clone());
    let path = report.path.clone();
    let max = opts.hash.max_bytes;
    let mut hash = |p: &Path| match &own {
        Some(hex) if p == path => Ok(hex.clone()),
        // The other files of a directory model obey the same bound as any hashed file.
        _ => match std::fs::metadata(p) {
            Ok(m) if m.len() > max => {
                Err(std::io::Error::other(format!("it is larger than artifact.max_hash_bytes ({max} bytes)")))
            }
            _ => hasher(p),
        },
    };
    let sig = signing.verifier.verify_file(&path, &mut hash);
    apply_signature(report, sig);
}

/// Records a signature verdict and its finding (replacing an earlier verdict's).
pub fn apply_signature(report: &mut ArtifactReport, sig: signature::SignatureReport) {
    use signature::SignatureVerdict as V;
    report.findings.retain(|f| !codes::SIGNATURE.contains(&f.code.as_str()));
    let finding = match sig.verdict {
        V::Verified | V::Unsigned => None,
        V::DigestMismatch => Some((Severity::Critical, codes::SIGNATURE_DIGEST_MISMATCH)),
        V::InvalidSignature => Some((Severity::High, codes::SIGNATURE_INVALID)),
        V::Malformed => Some((Severity::Medium, codes::SIGNATURE_MALFORMED)),
        V::UntrustedSigner => Some((Severity::Low, codes::SIGNATURE_UNTRUSTED)),
    };
    if let Some((sev, code)) = finding {
        let at = sig.bundle.as_ref().map(|b| format!(" ({})", b.display())).unwrap_or_default();
        report.findings.push(Finding::new(sev, code, format!("signature {}{at}: {}", sig.verdict, sig.reason)));
    }
    report.signature = Some(sig);
    report.sort_findings();
}

/// The policy verdicts: [`evaluate`] (manifest and licence), then the signature requirement
/// (`artifact.signing.require`): a model that must be signed and is not `verified` gets a
/// `signature_required` finding. Idempotent.
pub fn judge(report: &mut ArtifactReport, opts: &AnalyzeOptions) {
    evaluate(report, opts.manifest.as_deref(), &opts.license);
    report.findings.retain(|f| f.code != codes::SIGNATURE_REQUIRED);
    let Some(signing) = &opts.signing else { return };
    let required = match signing.require {
        signature::SignatureRequirement::None => false,
        signature::SignatureRequirement::Approved => report.policy == PolicyVerdict::Approved,
        signature::SignatureRequirement::All => report.format.is_model(),
    };
    let which = if signing.require == signature::SignatureRequirement::Approved {
        "approved models must carry a verified signature"
    } else {
        "every model must carry a verified signature"
    };
    let Some(sig) = &report.signature else {
        // Not checked yet (the digest is pending), unless it never will be.
        if required && let Some(s) = &report.digest_skipped {
            report.findings.push(Finding::new(
                Severity::High,
                codes::SIGNATURE_REQUIRED,
                format!(
                    "{which} (artifact.signing.require); this one's cannot be checked: its digest is skipped ({})",
                    s.reason
                ),
            ));
            report.sort_findings();
        }
        return;
    };
    if required && sig.verdict != signature::SignatureVerdict::Verified {
        report.findings.push(Finding::new(
            Severity::High,
            codes::SIGNATURE_REQUIRED,
            format!("{which} (artifact.signing.require); this one's signature is {}", sig.verdict),
        ));
        report.sort_findings();
    }
}

/// Full analysis of one file: format, metadata, pickle verdict, digest (per `opts`), licence
/// and manifest verdict. Synchronous; reads the whole file when hashing.
pub fn analyze_path(path: &Path, opts: &AnalyzeOptions) -> Result<ArtifactReport, ArtifactError> {
    let (mut file, meta) = open_artifact(path)?;
    let mut report = identify_open(path, &mut file, meta.len(), opts);
    if opts.digest {
        digest_open(&mut report, &mut file, opts)
            .map_err(|source| ArtifactError::Read { path: path.to_owned(), source })?;
    }
    verify_signature(&mut report, opts, &mut signature::hash_file);
    judge(&mut report, opts);
    Ok(report)
}

/// Analysis of bytes in memory (no path, no digest, no policy): what the fuzz targets and the
/// corpus tools use.
pub fn analyze_bytes(bytes: &[u8], opts: &AnalyzeOptions) -> formats::Identified {
    let mut cur = std::io::Cursor::new(bytes);
    formats::identify(&mut cur, bytes.len() as u64, &opts.limits, &opts.pickle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_differing_only_in_ctime_nanoseconds_are_distinct() {
        // A rewrite within one second with the mtime set back changes only the ctime's
        // nanoseconds: that must still be another version (another analysis, another digest).
        let a = FileIdentity { dev: 1, ino: 2, size: 3, mtime_ns: 4, ctime_sec: 5, ctime_nsec: 6 };
        let b = FileIdentity { ctime_nsec: 7, ..a };
        assert_ne!(a, b);
        let set: std::collections::HashSet<FileIdentity> = [a, b, a].into_iter().collect();
        assert_eq!(set.len(), 2);

        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m");
        std::fs::write(&path, b"xyz").expect("write");
        let m = std::fs::metadata(&path).expect("stat");
        let expected = FileIdentity {
            dev: m.dev(),
            ino: m.ino(),
            size: 3,
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            ctime_sec: m.ctime(),
            ctime_nsec: m.ctime_nsec(),
        };
        assert_eq!(FileIdentity::from_metadata(&m), expected);
    }
}
