//! File lookups off the run loop.
//!
//! stat(2) of a path a process chose, or of a directory under a user's home, blocks for as
//! long as its filesystem wants: a hung NFS server, or a FUSE daemon that never answers, which
//! any user can mount. One such call in the run loop would stop the ring buffer from draining
//! and blind the sensor. So the loop never makes them: it sends a job to this thread and gets
//! the answer later as a message. While a job hangs, later ones wait (and, once the queue is
//! full, are dropped and counted); the health event names the path it is stuck on.
//!
//! A file the sensor cannot reach by name (a path deeper than the kernel's walk, a file
//! unlinked after its open, a memfd) is reached through what the process holds: its
//! descriptor (`/proc/<pid>/fd/<n>`) or its mapping (`/proc/<pid>/map_files/<range>`). Those
//! vanish with the process (and descriptor numbers are reused), so such a file is opened here,
//! checked to be the inode the kernel reported, and the open file is handed back: the analysis
//! reads that, whatever the process does next.

use std::{
    fs::File,
    os::unix::fs::{MetadataExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use sensor_ebpf::{FileId, kernel_dev_from_user};

use modelwatch_artifact::FileIdentity;

use crate::mounts::MountDevs;

/// Jobs waiting at most; more are dropped (and counted).
const QUEUE: usize = 1024;
/// A job running longer than this is reported as stuck.
pub const STUCK_AFTER: Duration = Duration::from_secs(5);

/// Which version of which file an event was about: (kernel device, inode, size, ctime seconds,
/// ctime nanoseconds), as the kernel saw it.
pub type FileKey = (u32, u64, u64, i64, u32);

/// Where the file an event was about may be found, tried in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Candidate {
    /// A path the analyzer can open by name later: the sensor's own view of the path, or the
    /// same path through the process's root.
    Path(PathBuf),
    /// A descriptor the process holds (`/proc/<pid>/fd/<n>`): opened here and held.
    Descriptor { pid: u32, fd: i32 },
    /// The mapping at `addr` in the process: its `/proc/<pid>/map_files` entry, opened here and
    /// held (found through `/proc/<pid>/maps` when `addr..addr+len` is not one mapping any
    /// more, e.g. merged with a neighbour).
    Mapping { pid: u32, addr: u64, len: u64 },
}

impl Candidate {
    /// What the health event names when a lookup hangs.
    fn describe(&self) -> String {
        match self {
            Self::Path(p) => p.display().to_string(),
            Self::Descriptor { pid, fd } => format!("/proc/{pid}/fd/{fd}"),
            Self::Mapping { pid, addr, .. } => format!("/proc/{pid}/map_files/{addr:x}-…"),
        }
    }
}

pub enum Job {
    /// Find the file the kernel reported among `candidates` (same inode, same device).
    Identity { key: FileKey, candidates: Vec<Candidate> },
    /// The kernel's file ids of these directories (the ones that exist).
    Dirs(Vec<PathBuf>),
}

/// The file an identity lookup found.
#[derive(Debug)]
pub struct Found {
    pub identity: FileIdentity,
    /// The path it was found at (for a held file, the `/proc` link it was opened through).
    pub path: PathBuf,
    /// The file itself, when it was reached through the process: it stays readable after the
    /// process closes it or exits.
    pub held: Option<File>,
    /// Where the process's descriptor or mapping says the file is (`readlink`), for a held file.
    pub name: Option<PathBuf>,
    /// For a file found by path: the file opened here too. The analyzer reads it by path (its
    /// neighbours, a licence or a model card, are found from there); if the path is gone by
    /// then (unlinked right after the open), it reads this instead.
    pub spare: Option<File>,
}

pub enum Answer {
    /// `None`: no candidate is that file any more (or it is not a regular file).
    Identity {
        key: FileKey,
        found: Option<Found>,
    },
    Dirs(Vec<(PathBuf, FileId)>),
}

pub struct Resolver {
    jobs: std::sync::mpsc::SyncSender<Job>,
    busy: Arc<Mutex<Option<(Instant, String)>>>,
    dropped: u64,
}

impl Resolver {
    /// Starts the thread; answers arrive on the returned receiver.
    pub fn start() -> std::io::Result<(Self, tokio::sync::mpsc::Receiver<Answer>)> {
        let (jobs, rx) = std::sync::mpsc::sync_channel::<Job>(QUEUE);
        let (tx, answers) = tokio::sync::mpsc::channel(QUEUE);
        let busy = Arc::new(Mutex::new(None));
        let busy_in = busy.clone();
        std::thread::Builder::new().name("file lookups".into()).spawn(move || {
            let mut mounts = MountDevs::default();
            for job in rx {
                let what = match &job {
                    Job::Identity { candidates, .. } => {
                        candidates.last().map_or_else(|| "a file".into(), Candidate::describe)
                    }
                    Job::Dirs(dirs) => format!("{} model directories", dirs.len()),
                };
                if let Ok(mut b) = busy_in.lock() {
                    *b = Some((Instant::now(), what));
                }
                let answer = run(&mut mounts, job);
                if let Ok(mut b) = busy_in.lock() {
                    *b = None;
                }
                if tx.blocking_send(answer).is_err() {
                    return; // the sensor stopped
                }
            }
        })?;
        Ok((Self { jobs, busy, dropped: 0 }, answers))
    }

    /// Queues `job`; false (and counted) when the queue is full.
    pub fn submit(&mut self, job: Job) -> bool {
        match self.jobs.try_send(job) {
            Ok(()) => true,
            Err(_) => {
                self.dropped += 1;
                false
            }
        }
    }

    /// Jobs dropped since start because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The job running for longer than [`STUCK_AFTER`], if any: (seconds, what).
    pub fn stuck(&self) -> Option<(u64, String)> {
        let b = self.busy.lock().ok()?;
        let (since, what) = b.as_ref()?;
        (since.elapsed() >= STUCK_AFTER).then(|| (since.elapsed().as_secs(), what.clone()))
    }
}

/// Whether `m` (found at `path`) is the regular file the kernel reported as `key`.
fn is_reported(mounts: &mut MountDevs, path: &Path, m: &std::fs::Metadata, (kdev, ino, ..): FileKey) -> bool {
    // stat's device is the kernel's except on btrfs subvolumes and some overlays; then the
    // mount table decides.
    m.ino() == ino && m.is_file() && (kernel_dev_from_user(m.dev()) == kdev || mounts.kernel_dev(path, m.dev()) == kdev)
}

/// Opens a `/proc` link to a file a process holds and keeps it if it is the reported file.
/// Opens `path` and checks it is the version the kernel reported.
fn open_checked(mounts: &mut MountDevs, path: &Path, key: FileKey) -> Option<(File, std::fs::Metadata)> {
    // Non-blocking: a FIFO or a device would otherwise hang the open (the inode check below
    // rejects them anyway).
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    let m = file.metadata().ok()?;
    is_reported(mounts, path, &m, key).then_some((file, m))
}

fn open_held(mounts: &mut MountDevs, link: PathBuf, key: FileKey) -> Option<Found> {
    let (file, m) = open_checked(mounts, &link, key)?;
    let name = std::fs::read_link(&link).ok();
    Some(Found { identity: FileIdentity::from_metadata(&m), path: link, held: Some(file), name, spare: None })
}

/// The `/proc/<pid>/map_files` entry of the mapping that contains `addr`: the exact range when
/// it is still one mapping, else the range `/proc/<pid>/maps` gives for `addr`.
fn mapping_links(pid: u32, addr: u64, len: u64) -> Vec<PathBuf> {
    let page = 4096u64;
    let end = addr.saturating_add(len.div_ceil(page).saturating_mul(page));
    let dir = PathBuf::from(format!("/proc/{pid}/map_files"));
    let mut links = vec![dir.join(format!("{addr:x}-{end:x}"))];
    if let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        && let Some(range) = maps.lines().take(MAX_MAPS_LINES).find_map(|l| {
            let range = l.split_ascii_whitespace().next()?;
            let (s, e) = range.split_once('-')?;
            let (s, e) = (u64::from_str_radix(s, 16).ok()?, u64::from_str_radix(e, 16).ok()?);
            (s <= addr && addr < e).then(|| range.to_owned())
        })
    {
        let exact = dir.join(range);
        if exact != links[0] {
            links.push(exact);
        }
    }
    links
}

/// Lines of a process's maps read at most when looking for a mapping.
const MAX_MAPS_LINES: usize = 65_536;

fn find(mounts: &mut MountDevs, key: FileKey, candidates: Vec<Candidate>) -> Option<Found> {
    for c in candidates {
        let found = match c {
            Candidate::Path(path) => {
                std::fs::metadata(&path).ok().filter(|m| is_reported(mounts, &path, m, key)).map(|m| {
                    let spare = open_checked(mounts, &path, key).map(|(f, _)| f);
                    Found { identity: FileIdentity::from_metadata(&m), path, held: None, name: None, spare }
                })
            }
            Candidate::Descriptor { pid, fd } if fd >= 0 => {
                open_held(mounts, PathBuf::from(format!("/proc/{pid}/fd/{fd}")), key)
            }
            Candidate::Descriptor { .. } => None,
            Candidate::Mapping { pid, addr, len } => {
                mapping_links(pid, addr, len).into_iter().find_map(|link| open_held(mounts, link, key))
            }
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

fn run(mounts: &mut MountDevs, job: Job) -> Answer {
    match job {
        Job::Identity { key, candidates } => Answer::Identity { key, found: find(mounts, key, candidates) },
        Job::Dirs(dirs) => Answer::Dirs(
            dirs.into_iter()
                .filter_map(|dir| {
                    let md = std::fs::metadata(&dir).ok().filter(std::fs::Metadata::is_dir)?;
                    let id = FileId { dev: mounts.kernel_dev(&dir, md.dev()), _pad0: 0, ino: md.ino() };
                    Some((dir, id))
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn finds_files_and_directories_off_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.gguf");
        std::fs::write(&file, b"GGUF").unwrap();
        let md = std::fs::metadata(&file).unwrap();
        let key = (kernel_dev_from_user(md.dev()), md.ino(), md.size(), md.ctime(), md.ctime_nsec() as u32);
        let (mut r, mut answers) = Resolver::start().unwrap();
        let candidates = vec![Candidate::Path(dir.path().join("nope")), Candidate::Path(file.clone())];
        assert!(r.submit(Job::Identity { key, candidates }));
        let Some(Answer::Identity { key: k, found: Some(found) }) = answers.recv().await else { panic!("no identity") };
        assert_eq!((k, found.identity.ino, found.path), (key, md.ino(), file.clone()));
        assert!(found.held.is_none(), "a path is read by the analyzer, by its path");
        assert!(found.spare.is_some(), "and held here in case the path goes");
        // Another inode under the same name is not the file the kernel reported.
        let candidates = vec![Candidate::Path(file.clone()), Candidate::Path(file.clone())];
        assert!(r.submit(Job::Identity { key: (key.0, key.1 + 1, 4, 0, 0), candidates }));
        assert!(matches!(answers.recv().await, Some(Answer::Identity { found: None, .. })));
        assert!(r.submit(Job::Dirs(vec![dir.path().to_owned(), file.clone(), dir.path().join("nope")])));
        let Some(Answer::Dirs(found)) = answers.recv().await else { panic!("no dirs") };
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, dir.path());
        assert!(r.stuck().is_none());
        assert_eq!(r.dropped(), 0);
    }

    /// A file unlinked after its open is found through the descriptor, held, and stays
    /// readable after the descriptor is closed; a reused descriptor number is not taken for
    /// the file.
    #[tokio::test]
    async fn files_held_by_a_process_are_opened_checked_and_kept() {
        use std::{io::Read as _, os::fd::AsRawFd as _};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone.gguf");
        std::fs::write(&path, b"GGUF-weights").unwrap();
        let f = File::open(&path).unwrap();
        let md = f.metadata().unwrap();
        let key = (kernel_dev_from_user(md.dev()), md.ino(), md.size(), md.ctime(), md.ctime_nsec() as u32);
        std::fs::remove_file(&path).unwrap();
        let me = std::process::id();
        let (mut r, mut answers) = Resolver::start().unwrap();
        let candidates = vec![Candidate::Path(path.clone()), Candidate::Descriptor { pid: me, fd: f.as_raw_fd() }];
        assert!(r.submit(Job::Identity { key, candidates }));
        let Some(Answer::Identity { found: Some(found), .. }) = answers.recv().await else { panic!("not found") };
        drop(f);
        let mut held = found.held.expect("held");
        let mut text = String::new();
        held.read_to_string(&mut text).unwrap();
        assert_eq!(text, "GGUF-weights");
        assert!(found.name.unwrap().to_string_lossy().ends_with("gone.gguf (deleted)"));
        // The descriptor number now names another file (or nothing): not the reported inode.
        let other = File::open(dir.path()).unwrap();
        let candidates = vec![Candidate::Descriptor { pid: me, fd: other.as_raw_fd() }];
        assert!(r.submit(Job::Identity { key, candidates }));
        assert!(matches!(answers.recv().await, Some(Answer::Identity { found: None, .. })));
    }

    /// A memfd reached through its mapping, also once the mapping is not the exact range the
    /// event named.
    #[tokio::test]
    async fn mappings_are_found_through_map_files() {
        use std::io::{Read as _, Write as _};
        let name = std::ffi::CString::new("resolver-test").unwrap();
        // SAFETY: plain syscalls on an fd and a mapping this test owns.
        let (file, addr) = unsafe {
            let fd = libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC);
            assert!(fd >= 0);
            let mut file = <File as std::os::fd::FromRawFd>::from_raw_fd(fd);
            file.write_all(&[7u8; 8192]).unwrap();
            let addr = libc::mmap(std::ptr::null_mut(), 8192, libc::PROT_READ, libc::MAP_SHARED, fd, 0);
            assert_ne!(addr, libc::MAP_FAILED);
            (file, addr as u64)
        };
        let md = file.metadata().unwrap();
        let key = (kernel_dev_from_user(md.dev()), md.ino(), md.size(), md.ctime(), md.ctime_nsec() as u32);
        drop(file);
        let (mut r, mut answers) = Resolver::start().unwrap();
        let pid = std::process::id();
        // The event named the first page only: the mapping is found through maps.
        assert!(r.submit(Job::Identity { key, candidates: vec![Candidate::Mapping { pid, addr, len: 4096 }] }));
        let Some(Answer::Identity { found: Some(found), .. }) = answers.recv().await else { panic!("not found") };
        let mut bytes = Vec::new();
        found.held.expect("held").read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.len(), 8192);
        assert!(found.name.unwrap().to_string_lossy().starts_with("/memfd:resolver-test"));
        // SAFETY: the mapping made above.
        unsafe { libc::munmap(addr as *mut libc::c_void, 8192) };
    }
}
