//! Signed-model provenance: finds the OpenSSF model signature (model_signing v1.0, a Sigstore
//! bundle holding a DSSE-signed in-toto statement) that covers a model file, checks who signed
//! it against the configured trust, and checks the model's files against the signed digests.
//!
//! - [`bundle`] parses the bundle, the envelope and the statement (hostile input, bounded);
//! - [`trust`] holds the trusted keys and CAs and checks a bundle's signature;
//! - [`keyless`] verifies Sigstore keyless bundles against a configured trusted root;
//! - this file locates signatures ([`Verifier::verify_file`]), compares the model on disk with
//!   the statement, and owns the verdict, the report and the `[artifact.signing]` settings.
//!
//! What is verified offline: the `key` and `certificate` methods completely (signature, chain
//! to a configured CA at the signing certificate's notBefore, identity constraints, every
//! file's SHA-256); Sigstore keyless bundles when a trusted root and identities are configured
//! (see [`keyless`] for what that covers), otherwise they are `untrusted_signer`, never
//! `verified`.

pub mod bundle;
pub mod keyless;
pub mod trust;

use std::{
    collections::BTreeMap,
    fmt, io,
    path::{Component, Path, PathBuf},
};

use serde::{Deserialize, Serialize};

pub use bundle::{Malformed, ParseLimits, Statement};
pub use trust::{Signer, SignerCheck, SignerKind, TrustError, TrustStore, TrustedCaConfig, TrustedKeyConfig};

use crate::size::ByteSize;

/// The file name model_signing writes by default (in the model directory, or in the working
/// directory next to a single-file model).
pub const DEFAULT_SIGNATURE_NAME: &str = "model.sig";
/// How many directories above a model file are searched for the signature of a directory
/// model (the file's own directory and this many parents).
pub const MAX_ANCESTORS: usize = 4;
/// Paths model_signing leaves out of a directory model by default (`--ignore-git-paths`).
const GIT_PATHS: [&str; 4] = [".git", ".gitattributes", ".github", ".gitignore"];

/// The verdict on a model's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureVerdict {
    /// A trusted signer signed exactly these files.
    Verified,
    /// The signature is good but a file differs from, was added to or is missing from what was
    /// signed.
    DigestMismatch,
    /// The signature may be intact but nobody configured as trusted made it (or it could not be
    /// checked offline, like a Sigstore keyless signature).
    UntrustedSigner,
    /// A trusted signer is named but the signature does not verify: altered after signing.
    InvalidSignature,
    /// The signature file cannot be read as a model signature, or the model cannot be checked
    /// against it (an unsupported serialization, a file over a bound, an unreadable file).
    Malformed,
    /// No signature covers the model.
    Unsigned,
}

impl SignatureVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verified => "verified",
            Self::DigestMismatch => "digest_mismatch",
            Self::UntrustedSigner => "untrusted_signer",
            Self::InvalidSignature => "invalid_signature",
            Self::Malformed => "malformed",
            Self::Unsigned => "unsigned",
        }
    }
}

impl fmt::Display for SignatureVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What was found out about a model's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureReport {
    pub verdict: SignatureVerdict,
    /// For people: why this verdict.
    pub reason: String,
    /// The signature file the verdict is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<PathBuf>,
    /// The signed model: the file itself or the directory the signature covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_root: Option<PathBuf>,
    /// Set when the signature verified (also with a digest mismatch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<Signer>,
    /// The file (relative to the model root, `.` for a single-file model) that differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mismatched_file: Option<String>,
    /// How many files the signature lists.
    #[serde(default)]
    pub files: u64,
}

impl SignatureReport {
    fn unsigned(reason: impl Into<String>) -> Self {
        Self {
            verdict: SignatureVerdict::Unsigned,
            reason: reason.into(),
            bundle: None,
            model_root: None,
            signer: None,
            mismatched_file: None,
            files: 0,
        }
    }

    fn about(verdict: SignatureVerdict, reason: impl Into<String>, bundle: &Path, root: &Path) -> Self {
        Self {
            verdict,
            reason: reason.into(),
            bundle: Some(bundle.to_owned()),
            model_root: Some(root.to_owned()),
            signer: None,
            mismatched_file: None,
            files: 0,
        }
    }
}

/// Which models must carry a verified signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureRequirement {
    /// None: verdicts are reported, only a bad signature is a finding.
    #[default]
    None,
    /// Models the manifest approves.
    Approved,
    /// Every model.
    All,
}

/// The `[artifact.signing]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SigningConfig {
    /// Look for model signatures and verify them.
    pub enabled: bool,
    /// Directory with more signatures: `<name>.sig` for a model file or directory `<name>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<PathBuf>,
    /// Which models must carry a verified signature: `none`, `approved` (the manifest's) or
    /// `all`; one that does not is a `signature_required` finding.
    pub require: SignatureRequirement,
    /// The most bytes a signature file may have.
    pub max_bundle_bytes: ByteSize,
    /// The most files a signed directory model may have.
    pub max_files: usize,
    /// Trusted public keys (`[[artifact.signing.keys]]`: `name`, `public_key`).
    pub keys: Vec<TrustedKeyConfig>,
    /// Trusted CAs (`[[artifact.signing.cas]]`: `name`, `certificate`, `identities`).
    pub cas: Vec<TrustedCaConfig>,
    /// Sigstore's `trusted_root.json` (Fulcio CAs, Rekor and CT log keys): keyless signatures
    /// are verified offline against it. Unset: they are `untrusted_signer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sigstore_trusted_root: Option<PathBuf>,
    /// Keyless signers trusted (`[[artifact.signing.sigstore_identities]]`: `identity`,
    /// `issuer`).
    pub sigstore_identities: Vec<keyless::SigstoreIdentityConfig>,
}

impl Default for SigningConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            store: None,
            require: SignatureRequirement::None,
            max_bundle_bytes: ByteSize(16 << 20),
            max_files: 100_000,
            keys: Vec::new(),
            cas: Vec::new(),
            sigstore_trusted_root: None,
            sigstore_identities: Vec::new(),
        }
    }
}

impl SigningConfig {
    /// Checks every value; the error names the key relative to `[artifact]`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if let Some(s) = &self.store
            && s.as_os_str().is_empty()
        {
            return Err(("signing.store".into(), "must not be empty (remove the key for no store)".into()));
        }
        if self.max_bundle_bytes.0 < 4096 || self.max_bundle_bytes.0 > 1 << 30 {
            return Err(("signing.max_bundle_bytes".into(), "must be between 4KiB and 1GiB".into()));
        }
        if self.max_files == 0 || self.max_files > 10_000_000 {
            return Err(("signing.max_files".into(), "must be between 1 and 10000000".into()));
        }
        for (i, k) in self.keys.iter().enumerate() {
            if k.name.trim().is_empty() {
                return Err((format!("signing.keys[{i}].name"), "must not be empty".into()));
            }
        }
        for (i, c) in self.cas.iter().enumerate() {
            if c.name.trim().is_empty() {
                return Err((format!("signing.cas[{i}].name"), "must not be empty".into()));
            }
        }
        for (i, t) in self.sigstore_identities.iter().enumerate() {
            if t.identity.trim().is_empty() || t.issuer.trim().is_empty() {
                return Err((format!("signing.sigstore_identities[{i}]"), "identity and issuer must be set".into()));
            }
        }
        Ok(())
    }

    pub fn parse_limits(&self) -> ParseLimits {
        ParseLimits { max_bundle_bytes: self.max_bundle_bytes.0, max_files: self.max_files }
    }
}

/// Signature verification as the analysis runs it: the verifier and the requirement.
#[derive(Debug)]
pub struct Signing {
    pub verifier: Verifier,
    pub require: SignatureRequirement,
}

/// Computes a file's SHA-256 (hex); the live analyzer passes its digest cache here.
pub type Hasher<'a> = dyn FnMut(&Path) -> io::Result<String> + 'a;

/// Hashes a file from disk.
pub fn hash_file(path: &Path) -> io::Result<String> {
    let mut f = crate::digest::open_readonly(path)?;
    Ok(crate::digest::sha256_reader(&mut f)?.0)
}

/// The signature verifier: trust, store and bounds.
#[derive(Debug)]
pub struct Verifier {
    trust: TrustStore,
    store: Option<PathBuf>,
    limits: ParseLimits,
}

/// A signature file that may cover the model, and the model root it would cover.
struct Candidate {
    bundle: PathBuf,
    /// The model root when the signature is of a directory.
    dir_root: PathBuf,
    /// Whether a single-file signature here must name the file (a `model.sig` shared by a
    /// directory) or covers it by its own name (`<file>.sig`, the store).
    needs_subject_match: bool,
}

impl Verifier {
    pub fn new(trust: TrustStore, store: Option<PathBuf>, limits: ParseLimits) -> Self {
        Self { trust, store, limits }
    }

    /// Loads the trusted keys and CAs of the configuration.
    pub fn from_config(cfg: &SigningConfig) -> Result<Self, TrustError> {
        let mut trust = TrustStore::load(&cfg.keys, &cfg.cas)?;
        if let Some(root) = &cfg.sigstore_trusted_root {
            trust.set_sigstore(keyless::SigstoreTrust::load(root, &cfg.sigstore_identities)?);
        }
        Ok(Self::new(trust, cfg.store.clone(), cfg.parse_limits()))
    }

    /// The signature files that may cover `file`, nearest first: for the file itself
    /// `<file>.sig`, the store's `<name>.sig` and its directory's `model.sig` (when that signs
    /// this one file); then for each directory above it (up to [`MAX_ANCESTORS`]) its
    /// `model.sig`, a `<dir>.sig` beside it and the store's `<dir>.sig`.
    fn candidates(&self, file: &Path) -> Vec<Candidate> {
        let mut out = Vec::new();
        let push = |out: &mut Vec<Candidate>, bundle: PathBuf, root: &Path, needs: bool| {
            out.push(Candidate { bundle, dir_root: root.to_owned(), needs_subject_match: needs });
        };
        if let Some(name) = file.file_name() {
            let mut own = name.to_owned();
            own.push(".sig");
            push(&mut out, file.with_file_name(&own), file, false);
            if let Some(store) = &self.store {
                push(&mut out, store.join(&own), file, false);
            }
        }
        let mut dir = file.parent();
        for _ in 0..MAX_ANCESTORS {
            let Some(d) = dir else { break };
            if d.as_os_str().is_empty() {
                break;
            }
            push(&mut out, d.join(DEFAULT_SIGNATURE_NAME), d, true);
            if let Some(name) = d.file_name() {
                let mut own = name.to_owned();
                own.push(".sig");
                push(&mut out, d.with_file_name(&own), d, false);
                if let Some(store) = &self.store {
                    push(&mut out, store.join(&own), d, false);
                }
            }
            dir = d.parent();
        }
        out
    }

    /// The signature verdict for a model file that was opened (or scanned): finds the
    /// signature that covers it and verifies it (see [`Verifier::verify_bundle`]).
    ///
    /// A signature that no trusted signer made does not hide one further out that a trusted
    /// signer did (a planted `<file>.sig` must not turn a digest mismatch into a mere untrusted
    /// signer): the first signature whose signer verifies decides; failing that, the nearest.
    pub fn verify_file(&self, file: &Path, hasher: &mut Hasher<'_>) -> SignatureReport {
        let file_name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut nearest: Option<SignatureReport> = None;
        for c in self.candidates(file) {
            let bytes = match read_bounded(&c.bundle, self.limits.max_bundle_bytes) {
                Ok(None) => continue,
                Ok(Some(b)) => b,
                Err(e) => {
                    nearest.get_or_insert(SignatureReport::about(SignatureVerdict::Malformed, e, &c.bundle, file));
                    continue;
                }
            };
            // Which model this signature is about is read before verifying, only to choose the
            // root; the verdict below rests on the verified statement alone.
            let stmt = bundle::parse_bundle(&bytes, &self.limits)
                .ok()
                .and_then(|b| bundle::parse_statement(&b.envelope.payload, &self.limits).ok());
            let root = match &stmt {
                Some(s) if s.is_single_file() => {
                    if c.dir_root == file || !c.needs_subject_match || s.model_name == file_name {
                        file.to_owned()
                    } else {
                        // A model.sig of another single file in the same directory.
                        continue;
                    }
                }
                Some(_) if c.dir_root == file => {
                    // `<file>.sig` holding a directory signature: not about this file.
                    continue;
                }
                Some(_) => c.dir_root.clone(),
                None => {
                    if c.dir_root == file || !c.needs_subject_match {
                        file.to_owned()
                    } else {
                        c.dir_root.clone()
                    }
                }
            };
            let report = self.verify_bytes(&bytes, &c.bundle, &root, hasher);
            if report.signer.is_some() {
                return report;
            }
            nearest.get_or_insert(report);
        }
        if let Some(report) = nearest {
            return report;
        }
        SignatureReport::unsigned(format!(
            "no signature found (`{file_name}.sig`, `{DEFAULT_SIGNATURE_NAME}` in its directory or up to {} above{})",
            MAX_ANCESTORS - 1,
            if self.store.is_some() { ", the signature store" } else { "" }
        ))
    }

    /// Verifies the signature in `bundle_path` for the model at `model_root` (a file or a
    /// directory), as `model_signing verify` does.
    pub fn verify_bundle(&self, bundle_path: &Path, model_root: &Path, hasher: &mut Hasher<'_>) -> SignatureReport {
        match read_bounded(bundle_path, self.limits.max_bundle_bytes) {
            Ok(Some(bytes)) => self.verify_bytes(&bytes, bundle_path, model_root, hasher),
            Ok(None) => SignatureReport::unsigned(format!("{} does not exist", bundle_path.display())),
            Err(e) => SignatureReport::about(SignatureVerdict::Malformed, e, bundle_path, model_root),
        }
    }

    fn verify_bytes(&self, bytes: &[u8], bundle_path: &Path, root: &Path, hasher: &mut Hasher<'_>) -> SignatureReport {
        let malformed = |why: String| SignatureReport::about(SignatureVerdict::Malformed, why, bundle_path, root);
        let b = match bundle::parse_bundle(bytes, &self.limits) {
            Ok(b) => b,
            Err(e) => return malformed(e.0),
        };
        let signer = match trust::check_signer(&b, &self.trust) {
            SignerCheck::Verified(s) => s,
            SignerCheck::Untrusted(why) => {
                return SignatureReport::about(SignatureVerdict::UntrustedSigner, why, bundle_path, root);
            }
            SignerCheck::Invalid(why) => {
                return SignatureReport::about(SignatureVerdict::InvalidSignature, why, bundle_path, root);
            }
            SignerCheck::Malformed(why) => return malformed(why),
        };
        let stmt = match bundle::parse_statement(&b.envelope.payload, &self.limits) {
            Ok(s) => s,
            Err(e) => return malformed(format!("signed by {}, but {}", signer.trusted_as, e.0)),
        };
        let mut report = SignatureReport::about(SignatureVerdict::Verified, "", bundle_path, root);
        report.files = stmt.resources.len() as u64;
        match compare(root, bundle_path, &stmt, self.limits.max_files, hasher) {
            Ok(()) => {
                report.reason = format!(
                    "{} file(s) signed by {} ({})",
                    stmt.resources.len(),
                    describe(&signer),
                    signer.kind.as_str()
                );
            }
            Err(CompareError::Mismatch { file, why }) => {
                // model_signing names a single-file model `.`; people know it by its name.
                let file = if file == "." {
                    root.file_name().map_or(file, |n| n.to_string_lossy().into_owned())
                } else {
                    file
                };
                report.verdict = SignatureVerdict::DigestMismatch;
                report.reason = format!("`{file}` {why}; the model signed by {} was altered", describe(&signer));
                report.mismatched_file = Some(file);
            }
            Err(CompareError::Unverifiable(why)) => {
                report.verdict = SignatureVerdict::Malformed;
                report.reason = format!("signed by {}, but the model cannot be checked: {why}", describe(&signer));
            }
        }
        report.signer = Some(signer);
        report
    }
}

/// A short description of a signer for messages.
pub fn describe(s: &Signer) -> String {
    match (&s.identity, &s.issuer) {
        (Some(id), Some(issuer)) => format!("{id} (issued by {issuer}, trusted CA `{}`)", s.trusted_as),
        _ => format!("key `{}` {}", s.trusted_as, s.key_fingerprint),
    }
}

/// Reads a signature file; `None` when it does not exist. A signature is a regular file of
/// bounded size.
fn read_bounded(path: &Path, max: u64) -> Result<Option<Vec<u8>>, String> {
    use std::io::Read as _;
    let mut f = match crate::digest::open_readonly(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) => return Ok(None),
        Err(e) => return Err(format!("cannot open {}: {e}", path.display())),
    };
    let meta = f.metadata().map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
    if meta.is_dir() {
        return Ok(None);
    }
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    if meta.len() > max {
        return Err(format!("{} is larger than {max} bytes", path.display()));
    }
    let mut out = Vec::with_capacity(meta.len() as usize);
    f.by_ref().take(max + 1).read_to_end(&mut out).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if out.len() as u64 > max {
        return Err(format!("{} is larger than {max} bytes", path.display()));
    }
    Ok(Some(out))
}

enum CompareError {
    /// The model differs from what was signed: this file.
    Mismatch { file: String, why: String },
    /// The model could not be compared (too many files, unreadable directory).
    Unverifiable(String),
}

/// The components of a relative path as model_signing compares them (`.` dropped), or `None`
/// for a path that leaves the model (`..`, absolute).
fn components(p: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// Compares the model on disk with the statement the way `model_signing verify` does: the files
/// under the root, less the ignored paths, must be exactly the signed ones with the signed
/// digests. Names are checked before anything is hashed.
fn compare(
    root: &Path,
    bundle_path: &Path,
    stmt: &Statement,
    max_files: usize,
    hasher: &mut Hasher<'_>,
) -> Result<(), CompareError> {
    let mismatch = |file: &str, why: String| Err(CompareError::Mismatch { file: file.to_owned(), why });
    let signed: BTreeMap<&str, &str> =
        stmt.resources.iter().map(|r| (r.name.as_str(), r.sha256_hex.as_str())).collect();
    let meta =
        std::fs::symlink_metadata(root).map_err(|e| CompareError::Unverifiable(format!("{}: {e}", root.display())))?;
    let mut actual: BTreeMap<String, PathBuf> = BTreeMap::new();
    if !meta.is_dir() {
        // model_signing hashes a single file under the name `.`; symlinks are followed only
        // when the signature allows them.
        if meta.file_type().is_symlink() && !stmt.serialization.allow_symlinks {
            return mismatch(".", "is a symbolic link, which the signature does not allow".into());
        }
        actual.insert(".".into(), root.to_owned());
    } else {
        let mut ignored: Vec<Vec<String>> =
            stmt.serialization.ignore_paths.iter().filter_map(|p| components(p)).collect();
        ignored.extend(GIT_PATHS.iter().filter_map(|p| components(p)));
        if let Ok(rel) = bundle_path.strip_prefix(root)
            && let Some(c) = components(&rel.to_string_lossy())
        {
            ignored.push(c);
        }
        ignored.retain(|c| !c.is_empty());
        let is_ignored = |rel: &[String]| ignored.iter().any(|ig| rel.starts_with(ig));
        let mut walk = walkdir::WalkDir::new(root).follow_links(false).max_depth(64).sort_by_file_name().into_iter();
        // Directories and ignored entries count too: a tree of empty directories costs a walk.
        let mut visited = 0usize;
        while let Some(entry) = walk.next() {
            let entry = entry.map_err(|e| CompareError::Unverifiable(format!("cannot list the model: {e}")))?;
            visited += 1;
            if visited > max_files.saturating_mul(4) {
                return Err(CompareError::Unverifiable(format!(
                    "the model directory has more than {} entries",
                    max_files.saturating_mul(4)
                )));
            }
            if entry.depth() == 0 {
                continue;
            }
            let Ok(rel_path) = entry.path().strip_prefix(root) else { continue };
            let Some(rel) = rel_path.to_str() else {
                return mismatch(
                    &rel_path.to_string_lossy(),
                    "has a name that is not UTF-8 and cannot be signed".into(),
                );
            };
            let parts: Vec<String> = rel.split('/').map(str::to_owned).collect();
            let ft = entry.file_type();
            if is_ignored(&parts) {
                if ft.is_dir() {
                    walk.skip_current_dir();
                }
                continue;
            }
            if ft.is_dir() {
                continue;
            }
            if ft.is_symlink() {
                if !stmt.serialization.allow_symlinks {
                    return mismatch(rel, "is a symbolic link, which the signature does not allow".into());
                }
                match std::fs::metadata(entry.path()) {
                    Ok(m) if m.is_file() => {}
                    Ok(_) => return mismatch(rel, "is a symbolic link to something other than a file".into()),
                    Err(e) => return mismatch(rel, format!("is a broken symbolic link ({e})")),
                }
            } else if !ft.is_file() {
                return mismatch(rel, "is not a regular file".into());
            }
            if actual.len() >= max_files {
                return Err(CompareError::Unverifiable(format!("the model has more than {max_files} files")));
            }
            actual.insert(rel.to_owned(), entry.path().to_owned());
        }
    }
    if let Some(extra) = actual.keys().find(|k| !signed.contains_key(k.as_str())) {
        return mismatch(extra, "is not in the signature (a file was added)".into());
    }
    if let Some(missing) = signed.keys().find(|k| !actual.contains_key(**k)) {
        return mismatch(missing, "is signed but missing".into());
    }
    for (name, path) in &actual {
        let want = signed.get(name.as_str()).copied().unwrap_or_default();
        match hasher(path) {
            Ok(got) if got.eq_ignore_ascii_case(want) => {}
            Ok(got) => return mismatch(name, format!("hashes to sha256 {got}, but {want} was signed")),
            Err(e) => return Err(CompareError::Unverifiable(format!("cannot hash {name}: {e}"))),
        }
    }
    Ok(())
}
