//! File lookups off the run loop.
//!
//! stat(2) of a path a process chose, or of a directory under a user's home, blocks for as
//! long as its filesystem wants: a hung NFS server, or a FUSE daemon that never answers, which
//! any user can mount. One such call in the run loop would stop the ring buffer from draining
//! and blind the sensor. So the loop never makes them: it sends a job to this thread and gets
//! the answer later as a message. While a job hangs, later ones wait (and, once the queue is
//! full, are dropped and counted); the health event names the path it is stuck on.

use std::{
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
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

pub enum Job {
    /// Find the file the kernel reported among `candidates` (same inode, same device).
    Identity { key: FileKey, candidates: [PathBuf; 2] },
    /// The kernel's file ids of these directories (the ones that exist).
    Dirs(Vec<PathBuf>),
}

pub enum Answer {
    /// `None`: no candidate is that file any more (or it is not a regular file).
    Identity {
        key: FileKey,
        found: Option<(FileIdentity, PathBuf)>,
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
                    Job::Identity { candidates, .. } => candidates[1].display().to_string(),
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

fn run(mounts: &mut MountDevs, job: Job) -> Answer {
    match job {
        Job::Identity { key: key @ (kdev, ino, ..), candidates } => {
            let found = candidates.into_iter().find_map(|c| {
                let m = std::fs::metadata(&c).ok().filter(|m| m.ino() == ino)?;
                // stat's device is the kernel's except on btrfs subvolumes and some overlays;
                // then the mount table decides.
                let same = kernel_dev_from_user(m.dev()) == kdev || mounts.kernel_dev(&c, m.dev()) == kdev;
                (same && m.is_file()).then(|| (FileIdentity::from_metadata(&m), c))
            });
            Answer::Identity { key, found }
        }
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
        assert!(r.submit(Job::Identity { key, candidates: [dir.path().join("nope"), file.clone()] }));
        let Some(Answer::Identity { key: k, found: Some((id, path)) }) = answers.recv().await else {
            panic!("no identity")
        };
        assert_eq!((k, id.ino, path), (key, md.ino(), file.clone()));
        // Another inode under the same name is not the file the kernel reported.
        assert!(r.submit(Job::Identity { key: (key.0, key.1 + 1, 4, 0, 0), candidates: [file.clone(), file.clone()] }));
        assert!(matches!(answers.recv().await, Some(Answer::Identity { found: None, .. })));
        assert!(r.submit(Job::Dirs(vec![dir.path().to_owned(), file.clone(), dir.path().join("nope")])));
        let Some(Answer::Dirs(found)) = answers.recv().await else { panic!("no dirs") };
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, dir.path());
        assert!(r.stuck().is_none());
        assert_eq!(r.dropped(), 0);
    }
}
