//! The persistent verdict cache: "not a model" and "unknown format" verdicts per content
//! version, so that after a restart the files a machine opens all day (logs, `.pth` path
//! files, build products with model-like names) are not read and judged again.
//!
//! A verdict is keyed by the whole [`FileIdentity`] — device, inode, size, mtime and the ctime
//! to the nanosecond — so any write (which moves the ctime, and cannot move it back) makes it
//! miss. Only verdicts that are the content's own are kept: the format is `not_a_model` or
//! `unknown`, no pickle was found, and no finding is above `low` (so an analysis cut short by
//! its time budget, a read error or a limit, which are `medium`, is never remembered). A model
//! is never kept here: its findings and pickle verdict must come from a fresh identification.
//! Verdicts written by another version of this crate are discarded at load: a new release may
//! recognise what an older one called unknown.
//!
//! A sibling of the digest cache's file rather than a new version of it: the two are bounded
//! separately (`cache_max_entries`, `verdict_cache_max_entries`), so a flood of small
//! non-model files evicts other non-model verdicts, never the digest of a 40 GB model that
//! took minutes to hash; and existing digest caches stay valid across the upgrade. It uses the
//! digest cache's discipline: bounded (least recently seen evicted a tenth at a time), loaded
//! tolerantly (missing, unreadable, corrupt, oversized or of another version: a warning and an
//! empty cache), written atomically.

use std::{
    collections::HashMap,
    io,
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::{
    ArtifactReport, FileIdentity, Finding, Format, ModelMetadata, PolicyVerdict, Severity,
    digest::{self, SaveState, read_state_file},
};

/// What a verdict keeps of the identification: enough to rebuild the report the analyzer
/// would make again from the same content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedVerdict {
    pub format: Format,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default)]
    pub metadata: ModelMetadata,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
}

/// A verdict larger than this (its JSON) is not kept: a not-a-model verdict is a format and a
/// line or two of findings, and the bound keeps the file's size proportional to its entries.
const MAX_ENTRY_BYTES: usize = 4096;

/// A verdict file larger than this is not read (100 000 entries take about 30 MB).
const MAX_FILE: u64 = 256 << 20;

const VERSION: u32 = 1;

/// The property identification derives from the path, not the content: recomputed from the
/// path of each request.
const PATH_PROPERTY: &str = "hf_repo";

impl CachedVerdict {
    /// The verdict of a fresh identification (before digest and policy), if it may be kept.
    pub fn of(report: &ArtifactReport) -> Option<Self> {
        if !matches!(report.format, Format::NotAModel | Format::Unknown)
            || report.pickle.is_some()
            || report.findings.iter().any(|f| f.severity > Severity::Low)
        {
            return None;
        }
        let mut metadata = report.metadata.clone();
        metadata.properties.remove(PATH_PROPERTY);
        let v = Self {
            format: report.format,
            variant: report.variant.clone(),
            metadata,
            findings: report.findings.clone(),
        };
        let size = serde_json::to_vec(&v).map_or(usize::MAX, |b| b.len());
        (size <= MAX_ENTRY_BYTES).then_some(v)
    }

    /// The report an identification of `path` (of `size` bytes) gives, before digest and policy:
    /// what [`crate::identify_open`] would say, marked as served from this cache.
    pub fn report(&self, path: &Path, size: u64) -> ArtifactReport {
        let mut metadata = self.metadata.clone();
        if let Some(repo) = digest::hf_repo(path) {
            metadata.properties.insert(PATH_PROPERTY.into(), repo);
        }
        let mut report = ArtifactReport {
            path: path.to_owned(),
            size,
            format: self.format,
            variant: self.variant.clone(),
            metadata,
            digest: digest::claimed_digest(path).map(|c| crate::Digest {
                sha256_hex: c.clone(),
                state: crate::DigestState::Claimed,
                claimed_sha256_hex: Some(c),
            }),
            digest_skipped: None,
            pickle: None,
            policy: PolicyVerdict::Unknown,
            manifest_entry: None,
            license_finding: None,
            findings: self.findings.clone(),
            // Signatures are about models; this cache holds none.
            signature: None,
            from_verdict_cache: true,
        };
        report.sort_findings();
        report
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    identity: FileIdentity,
    verdict: CachedVerdict,
    /// Unix seconds of the last lookup or insertion (eviction order).
    seen: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct VerdictFile {
    version: u32,
    /// The crate version that wrote the verdicts (see the module documentation).
    analyzer: String,
    entries: Vec<Stored>,
}

struct Entry {
    verdict: CachedVerdict,
    seen: u64,
    /// Order of use within this run, for eviction among entries seen in the same second.
    tick: u64,
}

/// Not-a-model and unknown-format verdicts by content version, persisted in the state directory.
pub struct VerdictCache {
    save: SaveState,
    entries: HashMap<FileIdentity, Entry>,
    max: usize,
    tick: u64,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn analyzer_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

impl VerdictCache {
    /// A cache that is never written (tests).
    pub fn in_memory(max: usize) -> Self {
        Self { save: SaveState::default(), entries: HashMap::new(), max: max.max(1), tick: 0 }
    }

    /// Loads `path`; a missing file is an empty cache, an unreadable, corrupt or oversized one,
    /// or one of another version, is ignored with a warning (it is replaced at the next save).
    pub fn load(path: &Path, max: usize) -> Self {
        Self::load_bounded(path, max, MAX_FILE)
    }

    fn load_bounded(path: &Path, max: usize, max_file: u64) -> Self {
        let mut c = Self::in_memory(max);
        c.save = SaveState::at(path);
        let Some(bytes) = read_state_file(path, max_file, "verdict cache") else { return c };
        let parsed: VerdictFile = match serde_json::from_slice(&bytes) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "verdict cache is corrupt; starting empty");
                return c;
            }
        };
        if parsed.version != VERSION || parsed.analyzer != analyzer_version() {
            tracing::info!(
                path = %path.display(),
                version = parsed.version,
                analyzer = %parsed.analyzer,
                "verdict cache is from another analyzer version; starting empty"
            );
            return c;
        }
        let mut entries = parsed.entries;
        // Only what a fresh identification could have kept: a hand-edited file cannot plant a
        // model verdict (or a finding above low) here.
        entries.retain(|e| {
            matches!(e.verdict.format, Format::NotAModel | Format::Unknown)
                && e.verdict.findings.iter().all(|f| f.severity <= Severity::Low)
        });
        // Keep the most recently seen when the file holds more than the bound.
        entries.sort_by_key(|e| std::cmp::Reverse(e.seen));
        entries.truncate(c.max);
        // Oldest first, so that the ticks follow the order of use.
        for e in entries.into_iter().rev() {
            c.tick += 1;
            c.entries.insert(e.identity, Entry { verdict: e.verdict, seen: e.seen, tick: c.tick });
        }
        c
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The verdict on exactly this version, if one is kept.
    pub fn get(&mut self, id: &FileIdentity) -> Option<CachedVerdict> {
        self.tick += 1;
        let e = self.entries.get_mut(id)?;
        e.seen = now_secs();
        e.tick = self.tick;
        // Not dirty for a lookup: the order of use is saved with the next change, not for it.
        Some(e.verdict.clone())
    }

    pub fn insert(&mut self, id: &FileIdentity, verdict: CachedVerdict) {
        if self.entries.len() >= self.max && !self.entries.contains_key(id) {
            // The least recently seen tenth in one go rather than one entry per insert.
            let mut by_age: Vec<((u64, u64), FileIdentity)> =
                self.entries.iter().map(|(k, e)| ((e.seen, e.tick), *k)).collect();
            by_age.sort_unstable_by_key(|(age, _)| *age);
            for (_, k) in by_age.into_iter().take((self.max / 10).max(1)) {
                self.entries.remove(&k);
            }
        }
        self.tick += 1;
        self.entries.insert(*id, Entry { verdict, seen: now_secs(), tick: self.tick });
        self.save.changed();
    }

    /// Forgets the verdict on `id`: its content may have changed without its identity showing
    /// it (a write that changed no timestamp).
    pub fn remove(&mut self, id: &FileIdentity) {
        if self.entries.remove(id).is_some() {
            self.save.changed();
        }
    }

    /// Saves if there are unsaved changes and the last save is at least `min_interval` old.
    pub fn save_if_due(&mut self, min_interval: std::time::Duration) -> io::Result<()> {
        if self.save.due(min_interval) {
            self.save()?;
        }
        Ok(())
    }

    /// Writes the cache atomically (see [`digest::write_atomic`]).
    pub fn save(&mut self) -> io::Result<()> {
        let file = || VerdictFile {
            version: VERSION,
            analyzer: analyzer_version().to_owned(),
            entries: self
                .entries
                .iter()
                .map(|(id, e)| Stored { identity: *id, verdict: e.verdict.clone(), seen: e.seen })
                .collect(),
        };
        self.save.write(|| serde_json::to_vec(&file()).map_err(io::Error::other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AnalyzeOptions, identify_open, open_artifact};

    fn id(ino: u64) -> FileIdentity {
        FileIdentity { dev: 1, ino, size: 10, mtime_ns: 4, ctime_sec: 5, ctime_nsec: 100 }
    }

    fn text_verdict() -> CachedVerdict {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notes.bin");
        std::fs::write(&path, "just notes\n").expect("write");
        let (mut f, md) = open_artifact(&path).expect("open");
        let report = identify_open(&path, &mut f, md.len(), &AnalyzeOptions::default());
        assert_eq!(report.format, Format::NotAModel);
        CachedVerdict::of(&report).expect("a text file's verdict is kept")
    }

    #[test]
    fn verdicts_survive_a_save_and_a_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("verdicts.json");
        let v = text_verdict();
        let mut c = VerdictCache::load(&path, 8);
        assert!(c.is_empty());
        c.insert(&id(1), v.clone());
        c.save().expect("save");
        let mut c = VerdictCache::load(&path, 8);
        assert_eq!((c.len(), c.get(&id(1))), (1, Some(v.clone())));
        let report = v.report(Path::new("/h/hub/models--o--m/blobs/x"), 10);
        assert!(report.from_verdict_cache);
        assert_eq!(
            (report.format, report.metadata.properties.get("hf_repo").map(String::as_str)),
            (Format::NotAModel, Some("o/m"))
        );
    }

    #[test]
    fn any_change_of_the_version_misses() {
        let mut c = VerdictCache::in_memory(8);
        c.insert(&id(1), text_verdict());
        // Rewritten within the same second with the mtime set back: only the nanoseconds differ.
        assert!(c.get(&FileIdentity { ctime_nsec: 101, ..id(1) }).is_none());
        assert!(c.get(&FileIdentity { ctime_sec: 6, ..id(1) }).is_none());
        assert!(c.get(&FileIdentity { size: 11, ..id(1) }).is_none());
        assert!(c.get(&FileIdentity { mtime_ns: 5, ..id(1) }).is_none());
        assert!(c.get(&id(1)).is_some());
        c.remove(&id(1));
        assert!(c.get(&id(1)).is_none());
    }

    #[test]
    fn only_content_verdicts_that_are_no_model_are_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x");
        let mut gguf = b"GGUF".to_vec();
        gguf.extend_from_slice(&3u32.to_le_bytes());
        gguf.extend_from_slice(&[0u8; 16]);
        std::fs::write(&path, gguf).expect("write");
        let (mut f, md) = open_artifact(&path).expect("open");
        let mut report = identify_open(&path, &mut f, md.len(), &AnalyzeOptions::default());
        assert_eq!(report.format, Format::Gguf);
        assert!(CachedVerdict::of(&report).is_none(), "a model");
        report.format = Format::Unknown;
        report.findings.clear();
        assert!(CachedVerdict::of(&report).is_some(), "unknown content");
        report.findings.push(Finding::new(Severity::Medium, crate::codes::ANALYSIS_INCOMPLETE, "cut short"));
        assert!(CachedVerdict::of(&report).is_none(), "an analysis cut short is not the content's verdict");
    }

    #[test]
    fn corrupt_oversized_or_foreign_files_are_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("verdicts.json");
        std::fs::write(&path, b"{\"version\": 1, \"entries\": [garb").expect("write");
        assert!(VerdictCache::load(&path, 8).is_empty());

        let mut c = VerdictCache::load(&path, 8);
        c.insert(&id(1), text_verdict());
        c.save().expect("save replaces the corrupt file");
        assert_eq!(VerdictCache::load(&path, 8).len(), 1);
        let len = std::fs::metadata(&path).expect("stat").len();
        assert!(VerdictCache::load_bounded(&path, 8, len - 1).is_empty(), "oversized");

        let text = std::fs::read_to_string(&path).expect("read");
        let foreign = text.replace(analyzer_version(), "0.0.0-older");
        std::fs::write(&path, foreign).expect("write");
        assert!(VerdictCache::load(&path, 8).is_empty(), "another analyzer version");

        // A model verdict planted in the file is not served.
        let planted = text.replace("\"not_a_model\"", "\"gguf\"");
        assert_ne!(planted, text);
        std::fs::write(&path, planted).expect("write");
        assert!(VerdictCache::load(&path, 8).is_empty());
    }

    #[test]
    fn the_bound_evicts_the_least_recently_seen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("verdicts.json");
        let v = text_verdict();
        let mut c = VerdictCache::load(&path, 10);
        for ino in 0..10 {
            c.insert(&id(ino), v.clone());
        }
        // Inode 0 is used again: inode 1 is now the least recently seen.
        assert!(c.get(&id(0)).is_some());
        c.insert(&id(10), v.clone());
        assert_eq!(c.len(), 10);
        assert!(c.get(&id(1)).is_none(), "evicted");
        assert!(c.get(&id(0)).is_some() && c.get(&id(10)).is_some());
        c.save().expect("save");
        // A file holding more than the bound keeps the most recently seen.
        assert_eq!(VerdictCache::load(&path, 3).len(), 3);
    }
}
