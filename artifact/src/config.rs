//! The `[artifact]` table of the sensor configuration. Every key has a documented default so
//! that an absent table means "defaults"; [`ArtifactConfig::validate`] names the offending key
//! relative to the table so the sensor's config loader can prefix it with `artifact.`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::size::ByteSize;

/// Licences allowed when `allowed_licenses` is not set: permissive SPDX ids only. Models under
/// custom terms (llama3.x, gemma, cc-by-nc-*, openrail variants) must be allowed explicitly.
pub const DEFAULT_ALLOWED_LICENSES: [&str; 11] = [
    "Apache-2.0",
    "MIT",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "ISC",
    "CC0-1.0",
    "CC-BY-4.0",
    "Unlicense",
    "Zlib",
    "BSL-1.0",
    "0BSD",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArtifactConfig {
    /// Approved-model manifest (TOML or JSON, see `artifact::manifest`). Unset: no approval
    /// policy, every artifact's policy verdict is `no_manifest`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<PathBuf>,
    /// How often the manifest's file is checked for changes, in seconds (0: only on SIGHUP).
    pub manifest_poll_secs: u64,
    /// SPDX licence ids a model may carry (case-insensitive; SPDX expressions with `OR`, `AND`,
    /// `WITH` and parentheses are understood). Default: [`DEFAULT_ALLOWED_LICENSES`].
    pub allowed_licenses: Vec<String>,
    /// Flag models that declare no licence (neither in their content nor in the manifest).
    pub require_license: bool,
    /// Threads that identify files (format, metadata, pickle verdict), at nice 5. Several, so
    /// that a file that takes its whole time budget does not hold up the next one.
    pub analysis_workers: usize,
    /// Wall time one identification may take, in milliseconds. An analysis that runs out stops
    /// where it is, with an `analysis_incomplete` finding, and a pickle it did not walk to the
    /// end is judged `suspicious`, never `safe`. (Hashing is not bounded by it: see
    /// `max_hash_bytes`.)
    pub max_analysis_ms: u64,
    /// Threads that compute SHA-256 digests (at idle I/O priority and nice 10). One of them
    /// takes files over 1 GiB, one at a time; the others only smaller ones, so a long digest
    /// never holds up the short ones.
    pub hash_workers: usize,
    /// Files larger than this are not hashed: their report says `digest_skipped` (too large)
    /// and the manifest cannot approve them.
    pub max_hash_bytes: ByteSize,
    /// Also hash sparse files (at least 1 GiB with under an eighth of it allocated on disk, and
    /// holes the filesystem confirms). Off: their digest is skipped, with the reason, since
    /// hashing gigabytes of holes costs minutes of CPU and proves nothing about a model.
    pub hash_sparse_files: bool,
    /// Files waiting for identification; what does not fit is dropped and counted. Files
    /// that can carry code (pickle, PyTorch, joblib, Keras, NumPy, HDF5, archives by name) and
    /// files up to 64 MiB go before larger ones.
    pub analysis_queue: usize,
    /// Files waiting for hashing; what does not fit is dropped and counted. Files up to 1 GiB
    /// go before larger ones.
    pub hash_queue: usize,
    /// The most bytes a structured header read into memory (GGUF metadata, safetensors JSON, a
    /// Keras configuration) may take before it is abandoned as hostile; also the most that the
    /// entries of a zip other than pickles (configurations, array headers, nested zips) may
    /// inflate to, per artifact. Protobuf models (ONNX, SavedModel, Core ML) are walked in place
    /// and bounded by a field count instead.
    pub max_parse_bytes: ByteSize,
    /// The most bytes of pickle opcodes walked per artifact (all streams together); a pickle
    /// longer than this is judged `suspicious`, incomplete.
    pub max_pickle_bytes: ByteSize,
    /// The most entries a zip container may have.
    pub max_zip_entries: usize,
    /// The most decompressed/compressed ratio a zip entry may reach while being read.
    pub max_zip_ratio: u64,
    /// How deep containers (zip in zip) are opened.
    pub max_nesting: u32,
    /// Extra pickle globals to treat as safe: `module.name` or `module.*`.
    pub pickle_allow: Vec<String>,
    /// Extra pickle globals to treat as malicious: `module.name` or `module.*`.
    pub pickle_deny: Vec<String>,
    /// The digest cache's file name inside the sensor's state directory.
    pub cache_file: String,
    /// The most identities the digest cache remembers (least recently seen are evicted).
    pub cache_max_entries: usize,
    /// The verdict cache's file name inside the sensor's state directory: "not a model" and
    /// "unknown format" verdicts per content version, so a restart does not judge those
    /// files again.
    pub verdict_cache_file: String,
    /// The most content versions the verdict cache remembers (least recently seen are evicted).
    pub verdict_cache_max_entries: usize,
    /// Model signatures (`[artifact.signing]`, see `signature::SigningConfig`).
    pub signing: crate::signature::SigningConfig,
}

impl Default for ArtifactConfig {
    fn default() -> Self {
        Self {
            manifest: None,
            manifest_poll_secs: 5,
            allowed_licenses: DEFAULT_ALLOWED_LICENSES.iter().map(ToString::to_string).collect(),
            require_license: true,
            analysis_workers: 2,
            max_analysis_ms: 5_000,
            hash_workers: 2,
            max_hash_bytes: ByteSize(256 << 30),
            hash_sparse_files: false,
            analysis_queue: 1024,
            hash_queue: 256,
            max_parse_bytes: ByteSize(128 << 20),
            max_pickle_bytes: ByteSize(256 << 20),
            max_zip_entries: 65_536,
            max_zip_ratio: 250,
            max_nesting: 3,
            pickle_allow: Vec::new(),
            pickle_deny: Vec::new(),
            cache_file: "artifact-digests.json".to_owned(),
            cache_max_entries: 100_000,
            verdict_cache_file: "artifact-verdicts.json".to_owned(),
            verdict_cache_max_entries: 100_000,
            signing: crate::signature::SigningConfig::default(),
        }
    }
}

impl ArtifactConfig {
    /// Checks every value; the error names the key relative to the `[artifact]` table.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, msg: &str| Err((key.to_owned(), msg.to_owned()));
        if let Some(m) = &self.manifest
            && m.as_os_str().is_empty()
        {
            return bad("manifest", "must not be empty (remove the key for no manifest)");
        }
        if self.analysis_workers == 0 || self.analysis_workers > 64 {
            return bad("analysis_workers", "must be between 1 and 64");
        }
        if !(100..=600_000).contains(&self.max_analysis_ms) {
            return bad("max_analysis_ms", "must be between 100 (0.1 s) and 600000 (10 minutes)");
        }
        if self.hash_workers == 0 || self.hash_workers > 64 {
            return bad("hash_workers", "must be between 1 and 64");
        }
        if self.max_hash_bytes.0 < 1 << 20 {
            return bad("max_hash_bytes", "must be at least 1MiB");
        }
        if self.analysis_queue == 0 || self.analysis_queue > 1 << 20 {
            return bad("analysis_queue", "must be between 1 and 1048576");
        }
        if self.hash_queue == 0 || self.hash_queue > 1 << 20 {
            return bad("hash_queue", "must be between 1 and 1048576");
        }
        if self.max_parse_bytes.0 < 4096 {
            return bad("max_parse_bytes", "must be at least 4KiB");
        }
        if self.max_pickle_bytes.0 < 4096 {
            return bad("max_pickle_bytes", "must be at least 4KiB");
        }
        if self.max_zip_entries == 0 {
            return bad("max_zip_entries", "must be at least 1");
        }
        if self.max_zip_ratio < 2 {
            return bad("max_zip_ratio", "must be at least 2");
        }
        if self.max_nesting == 0 || self.max_nesting > 16 {
            return bad("max_nesting", "must be between 1 and 16");
        }
        for (i, lic) in self.allowed_licenses.iter().enumerate() {
            if lic.trim().is_empty() || lic.len() > 128 {
                return Err((format!("allowed_licenses[{i}]"), "must be a non-empty SPDX id".into()));
            }
        }
        for (key, list) in [("pickle_allow", &self.pickle_allow), ("pickle_deny", &self.pickle_deny)] {
            for (i, g) in list.iter().enumerate() {
                if let Err(m) = crate::pickle_scan::GlobalPattern::parse(g) {
                    return Err((format!("{key}[{i}]"), m));
                }
            }
        }
        for (key, c) in [("cache_file", &self.cache_file), ("verdict_cache_file", &self.verdict_cache_file)] {
            if c.is_empty() || c.contains('/') || c == "." || c == ".." || c.contains('\0') {
                return bad(key, "must be a plain file name (it lives in the state directory)");
            }
        }
        if self.cache_file == self.verdict_cache_file {
            return bad("verdict_cache_file", "must differ from cache_file");
        }
        if self.cache_max_entries == 0 {
            return bad("cache_max_entries", "must be at least 1");
        }
        if self.verdict_cache_max_entries == 0 {
            return bad("verdict_cache_max_entries", "must be at least 1");
        }
        self.signing.validate()
    }

    /// The parsing bounds these settings describe.
    pub fn limits(&self) -> crate::Limits {
        crate::Limits {
            max_parse_bytes: self.max_parse_bytes.0,
            max_pickle_bytes: self.max_pickle_bytes.0,
            max_zip_entries: self.max_zip_entries,
            max_zip_ratio: self.max_zip_ratio,
            max_nesting: self.max_nesting,
            max_analysis_ms: self.max_analysis_ms,
        }
    }

    /// Which files are hashed.
    pub fn hash_policy(&self) -> crate::digest::HashPolicy {
        crate::digest::HashPolicy { max_bytes: self.max_hash_bytes.0, hash_sparse: self.hash_sparse_files }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_round_trip_through_toml() {
        let cfg = ArtifactConfig::default();
        assert_eq!(cfg.validate(), Ok(()));
        let text = toml::to_string(&cfg).expect("serialise");
        let back: ArtifactConfig = toml::from_str(&text).expect("parse");
        assert_eq!(back, cfg);
        let empty: ArtifactConfig = toml::from_str("").expect("parse");
        assert_eq!(empty, cfg);
    }

    #[test]
    fn errors_name_the_key() {
        let parse = |t: &str| toml::from_str::<ArtifactConfig>(t).expect("parse").validate();
        assert_eq!(parse("hash_workers = 0").unwrap_err().0, "hash_workers");
        assert_eq!(parse("cache_file = \"../x\"").unwrap_err().0, "cache_file");
        assert_eq!(parse("verdict_cache_file = \"a/b\"").unwrap_err().0, "verdict_cache_file");
        assert_eq!(parse("verdict_cache_file = \"artifact-digests.json\"").unwrap_err().0, "verdict_cache_file");
        assert_eq!(parse("verdict_cache_max_entries = 0").unwrap_err().0, "verdict_cache_max_entries");
        assert_eq!(parse("allowed_licenses = [\"MIT\", \"\"]").unwrap_err().0, "allowed_licenses[1]");
        assert_eq!(parse("pickle_allow = [\"nodot\"]").unwrap_err().0, "pickle_allow[0]");
        assert_eq!(parse("max_parse_bytes = \"1KiB\"").unwrap_err().0, "max_parse_bytes");
        assert_eq!(parse("analysis_workers = 0").unwrap_err().0, "analysis_workers");
        assert_eq!(parse("max_analysis_ms = 0").unwrap_err().0, "max_analysis_ms");
        assert_eq!(parse("max_analysis_ms = 600001").unwrap_err().0, "max_analysis_ms");
        assert_eq!(parse("max_hash_bytes = \"4KiB\"").unwrap_err().0, "max_hash_bytes");
        assert!(toml::from_str::<ArtifactConfig>("no_such_key = 1").is_err());
        let ok: ArtifactConfig =
            toml::from_str("manifest = \"/etc/m.toml\"\nmax_parse_bytes = \"64MiB\"").expect("parse");
        assert_eq!(ok.max_parse_bytes, ByteSize(64 << 20));
        assert_eq!(ok.validate(), Ok(()));
    }
}
