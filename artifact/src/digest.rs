//! Content identity: streamed SHA-256, the digests that model stores already put in their paths
//! (Hugging Face `blobs/<sha256>`, Ollama `blobs/sha256-<hex>`), and the persistent digest
//! cache that lets a 40 GB model be hashed once rather than at every load.
//!
//! Hashing uses `sha2`, which selects the CPU's SHA extensions (SHA-NI on x86-64, the SHA2
//! instructions on aarch64) at run time. The cache is keyed by (device, inode, size, mtime)
//! and also remembers the ctime to the nanosecond: mtime can be set back by anyone who can
//! write the file (`touch -d`), ctime cannot, so a changed ctime invalidates the entry. It is written
//! atomically (temporary file, fsync, rename) so a crash never leaves half a cache, and a file
//! that does not parse is ignored with a warning — it only costs re-hashing.

use std::{
    collections::HashMap,
    fs::File,
    io::{self, Read, Write},
    path::{Path, PathBuf},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::{
    FileIdentity,
    io::{hex, is_sha256_hex},
    report::{DigestSkipReason, DigestSkipped},
    size::human_bytes,
};

/// Which files are hashed (`max_hash_bytes`, `hash_sparse_files`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashPolicy {
    pub max_bytes: u64,
    pub hash_sparse: bool,
}

impl Default for HashPolicy {
    fn default() -> Self {
        crate::ArtifactConfig::default().hash_policy()
    }
}

/// Sparse detection looks only at files at least this large: a smaller one hashes in about a
/// second, holes or not.
pub const SPARSE_MIN_BYTES: u64 = 1 << 30;

/// Why `file` (described by `meta`) is not to be hashed, if it is not. A file is sparse when
/// less than an eighth of it is allocated and the filesystem confirms a hole before its end:
/// `st_blocks` alone would call sparse every file of a filesystem that does not count blocks
/// (some FUSE filesystems report none), which `SEEK_HOLE` then shows to be all data.
pub fn skip_reason(file: &File, meta: &std::fs::Metadata, policy: &HashPolicy) -> Option<DigestSkipped> {
    use std::os::unix::{fs::MetadataExt, io::AsRawFd};
    let size = meta.size();
    if size > policy.max_bytes {
        return Some(DigestSkipped {
            reason: DigestSkipReason::TooLarge,
            detail: format!("{} is over max_hash_bytes ({})", human_bytes(size), human_bytes(policy.max_bytes)),
        });
    }
    let allocated = meta.blocks().saturating_mul(512);
    if policy.hash_sparse || size < SPARSE_MIN_BYTES || allocated >= size / 8 {
        return None;
    }
    // SAFETY: lseek on a descriptor we own; it only moves the file offset, which every reader
    // of this file sets before reading.
    let hole = unsafe { libc::lseek(file.as_raw_fd(), 0, libc::SEEK_HOLE) };
    if hole < 0 || hole as u64 >= size {
        return None;
    }
    Some(DigestSkipped {
        reason: DigestSkipReason::Sparse,
        detail: format!("{} allocated of {} (a sparse file)", human_bytes(allocated), human_bytes(size)),
    })
}

/// Read size for hashing: large enough that syscalls are noise next to the compression
/// function, small enough to stay in L2.
pub const HASH_BUF: usize = 1 << 20;

/// SHA-256 of everything `r` yields, and the number of bytes.
pub fn sha256_reader(r: &mut dyn Read) -> io::Result<(String, u64)> {
    sha256_until(r, &std::sync::atomic::AtomicBool::new(false))
}

/// Like [`sha256_reader`], but gives up with `ErrorKind::Interrupted` once `stop` is set, so a
/// shutdown does not wait for a 40 GB file.
pub fn sha256_until(r: &mut dyn Read, stop: &std::sync::atomic::AtomicBool) -> io::Result<(String, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; HASH_BUF];
    let mut total = 0u64;
    loop {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "hashing stopped"));
        }
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex(&h.finalize()), total))
}

/// SHA-256 of a byte slice.
pub fn sha256_bytes(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

/// Opens `path` read-only without updating its access time where the kernel allows it
/// (`O_NOATIME` needs ownership or CAP_FOWNER), without blocking on FIFOs and without
/// acquiring a controlling terminal.
pub fn open_readonly(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let base = libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
    let attempt = std::fs::OpenOptions::new().read(true).custom_flags(base | libc::O_NOATIME).open(path);
    match attempt {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            std::fs::OpenOptions::new().read(true).custom_flags(base).open(path)
        }
        other => other,
    }
}

/// The digest a model store encodes in the path, if any.
pub fn claimed_digest(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let parent = path.parent()?.file_name()?.to_str()?;
    if parent != "blobs" {
        return None;
    }
    let hexpart = name.strip_prefix("sha256-").or_else(|| name.strip_prefix("sha256:")).unwrap_or(name);
    // Hugging Face names non-LFS blobs by their 40-hex git SHA-1: those are not content digests.
    is_sha256_hex(hexpart).then(|| hexpart.to_ascii_lowercase())
}

/// `org/name` from a Hugging Face cache path (`.../models--org--name/blobs/...`).
pub fn hf_repo(path: &Path) -> Option<String> {
    path.components().find_map(|c| {
        let s = c.as_os_str().to_str()?;
        let rest = s.strip_prefix("models--")?;
        let (org, name) = rest.split_once("--")?;
        (!org.is_empty() && !name.is_empty()).then(|| format!("{org}/{}", name.replace("--", "/")))
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Key {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_sec: i64,
    /// Absent from caches written before nanoseconds were kept: such entries are re-hashed
    /// unless the ctime has no sub-second part.
    #[serde(default)]
    ctime_nsec: i64,
    sha256: String,
    /// Unix seconds of the last lookup or insertion (eviction order).
    seen: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    entries: Vec<Stored>,
}

const CACHE_VERSION: u32 = 1;
/// A cache file larger than this is not read (100 000 entries take about 20 MB).
const MAX_CACHE_FILE: u64 = 256 << 20;

/// How a cache in the state directory is saved: where, whether it has unsaved changes, and
/// when it was last written (the digest and the verdict caches share it).
#[derive(Debug, Default)]
pub(crate) struct SaveState {
    /// `None`: never written (an in-memory cache).
    path: Option<PathBuf>,
    dirty: bool,
    last_save: Option<Instant>,
}

impl SaveState {
    pub(crate) fn at(path: &Path) -> Self {
        Self { path: Some(path.to_owned()), ..Self::default() }
    }

    pub(crate) fn changed(&mut self) {
        self.dirty = true;
    }

    /// Unsaved changes, and the last save at least `min_interval` old.
    pub(crate) fn due(&self, min_interval: std::time::Duration) -> bool {
        self.dirty && self.last_save.is_none_or(|t| t.elapsed() >= min_interval)
    }

    /// Writes what `encode` gives atomically (see [`write_atomic`]); an in-memory cache only
    /// forgets that it changed.
    pub(crate) fn write(&mut self, encode: impl FnOnce() -> io::Result<Vec<u8>>) -> io::Result<()> {
        if let Some(path) = &self.path {
            write_atomic(path, &encode()?)?;
            self.last_save = Some(Instant::now());
        }
        self.dirty = false;
        Ok(())
    }
}

/// Digests by file identity, persisted in the state directory.
#[derive(Debug)]
pub struct DigestCache {
    save: SaveState,
    /// (ctime seconds and nanoseconds, digest, last seen).
    entries: HashMap<Key, ((i64, i64), String, u64)>,
    max: usize,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn key(id: &FileIdentity) -> Key {
    Key { dev: id.dev, ino: id.ino, size: id.size, mtime_ns: id.mtime_ns }
}

impl DigestCache {
    /// A cache that is never written (for one-off scans and tests).
    pub fn in_memory(max: usize) -> Self {
        Self { save: SaveState::default(), entries: HashMap::new(), max: max.max(1) }
    }

    /// Loads `path`; a missing file is an empty cache, an unreadable or corrupt one is ignored
    /// with a warning (it will be replaced at the next save).
    pub fn load(path: &Path, max: usize) -> Self {
        let mut c = Self::in_memory(max);
        c.save = SaveState::at(path);
        let Some(bytes) = read_state_file(path, MAX_CACHE_FILE, "digest cache") else { return c };
        let parsed: CacheFile = match serde_json::from_slice(&bytes) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "digest cache is corrupt; starting empty");
                return c;
            }
        };
        if parsed.version != CACHE_VERSION {
            tracing::warn!(path = %path.display(), version = parsed.version, "digest cache has another version; starting empty");
            return c;
        }
        let mut entries = parsed.entries;
        entries.retain(|e| is_sha256_hex(&e.sha256));
        // Keep the most recently seen when the file holds more than the bound.
        entries.sort_by_key(|e| std::cmp::Reverse(e.seen));
        entries.truncate(c.max);
        for e in entries {
            let k = Key { dev: e.dev, ino: e.ino, size: e.size, mtime_ns: e.mtime_ns };
            c.entries.insert(k, ((e.ctime_sec, e.ctime_nsec), e.sha256.to_ascii_lowercase(), e.seen));
        }
        c
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The cached digest for `id`, if the file has not changed (ctime included).
    pub fn get(&mut self, id: &FileIdentity) -> Option<String> {
        let k = key(id);
        let (ctime, sha, seen) = self.entries.get_mut(&k)?;
        if *ctime != (id.ctime_sec, id.ctime_nsec) {
            return None;
        }
        *seen = now_secs();
        Some(sha.clone())
    }

    pub fn insert(&mut self, id: &FileIdentity, sha256: &str) {
        if self.entries.len() >= self.max && !self.entries.contains_key(&key(id)) {
            // Evict the least recently seen tenth in one go rather than one entry per insert.
            let mut by_age: Vec<(u64, Key)> = self.entries.iter().map(|(k, v)| (v.2, *k)).collect();
            by_age.sort();
            for (_, k) in by_age.into_iter().take((self.max / 10).max(1)) {
                self.entries.remove(&k);
            }
        }
        self.entries.insert(key(id), ((id.ctime_sec, id.ctime_nsec), sha256.to_owned(), now_secs()));
        self.save.changed();
    }

    /// Forgets the digest of `id`: its content may have changed without its identity showing it
    /// (a write that changed no timestamp).
    pub fn remove(&mut self, id: &FileIdentity) {
        if self.entries.remove(&key(id)).is_some() {
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

    /// Writes the cache atomically: a temporary file in the same directory, fsync, rename.
    pub fn save(&mut self) -> io::Result<()> {
        let file = || CacheFile {
            version: CACHE_VERSION,
            entries: self
                .entries
                .iter()
                .map(|(k, (ctime, sha, seen))| Stored {
                    dev: k.dev,
                    ino: k.ino,
                    size: k.size,
                    mtime_ns: k.mtime_ns,
                    ctime_sec: ctime.0,
                    ctime_nsec: ctime.1,
                    sha256: sha.clone(),
                    seen: *seen,
                })
                .collect(),
        };
        self.save.write(|| serde_json::to_vec(&file()).map_err(io::Error::other))
    }
}

/// The bytes of a file the analyzer keeps in the state directory, or `None` (with a warning
/// naming `what`, except for a file that does not exist) when it cannot be read or is larger
/// than `max`: such a file only costs work the cache would have saved.
pub(crate) fn read_state_file(path: &Path, max: u64, what: &str) -> Option<Vec<u8>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "{what} unreadable; starting empty");
            return None;
        }
    };
    let mut bytes = Vec::new();
    if let Err(e) = file.take(max + 1).read_to_end(&mut bytes) {
        tracing::warn!(path = %path.display(), error = %e, "{what} unreadable; starting empty");
        return None;
    }
    if bytes.len() as u64 > max {
        tracing::warn!(path = %path.display(), "{what} too large; starting empty");
        return None;
    }
    Some(bytes)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync, rename,
/// so a crash leaves the old file or the new one, never half of one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("cache"),
        std::process::id()
    ));
    let result = (|| -> io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(sha256_bytes(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(sha256_bytes(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let big = vec![b'a'; 3 * HASH_BUF + 17];
        let (h, n) = sha256_reader(&mut &big[..]).expect("hash");
        assert_eq!((h, n), (sha256_bytes(&big), big.len() as u64));
    }

    #[test]
    fn a_cached_digest_is_tied_to_the_ctime_nanoseconds() {
        let sha = "a".repeat(64);
        let v1 = FileIdentity { dev: 1, ino: 2, size: 3, mtime_ns: 4, ctime_sec: 5, ctime_nsec: 100 };
        // Rewritten within the same second and the mtime set back: only the nanoseconds differ.
        let v2 = FileIdentity { ctime_nsec: 200, ..v1 };
        let mut c = DigestCache::in_memory(8);
        c.insert(&v1, &sha);
        assert_eq!((c.get(&v2), c.get(&v1)), (None, Some(sha.clone())));

        // The nanoseconds survive a save and a load.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("digests.json");
        let mut c = DigestCache::load(&path, 8);
        c.insert(&v1, &sha);
        c.save().expect("save");
        let mut c = DigestCache::load(&path, 8);
        assert_eq!((c.len(), c.get(&v2), c.get(&v1)), (1, None, Some(sha.clone())));

        // An entry written before nanoseconds were kept matches only a whole-second ctime.
        let old = format!(
            r#"{{"version":1,"entries":[{{"dev":1,"ino":2,"size":3,"mtime_ns":4,"ctime_sec":5,"sha256":"{sha}","seen":0}}]}}"#
        );
        std::fs::write(&path, old).expect("write");
        let mut c = DigestCache::load(&path, 8);
        assert_eq!((c.get(&v1), c.get(&FileIdentity { ctime_nsec: 0, ..v1 })), (None, Some(sha)));
    }

    #[test]
    fn claimed_digests_from_store_paths() {
        let h = "a".repeat(64);
        assert_eq!(claimed_digest(Path::new(&format!("/c/models--o--m/blobs/{h}"))), Some(h.clone()));
        assert_eq!(claimed_digest(Path::new(&format!("/o/models/blobs/sha256-{}", h.to_uppercase()))), Some(h.clone()));
        assert_eq!(claimed_digest(Path::new(&format!("/x/{h}"))), None);
        assert_eq!(claimed_digest(Path::new(&format!("/c/blobs/{}", "a".repeat(40)))), None);
        assert_eq!(
            hf_repo(Path::new("/h/hub/models--meta-llama--Llama-3.1-8B/blobs/x")),
            Some("meta-llama/Llama-3.1-8B".into())
        );
        assert_eq!(hf_repo(Path::new("/h/hub/datasets--a--b/blobs/x")), None);
    }
}
