//! The process table: who every event is about.
//!
//! Processes are keyed by (pid, start time), never by pid alone, and each gets an **entity id**
//! derived from the boot id, the pid and the start time, so the same process has the same id
//! in every event, across pid reuse, and whichever sensor computes it. The table is seeded
//! from /proc at start and kept exact by the kernel's exec, fork and exit records; exited
//! processes stay resolvable for a grace period so late events still find them.
//!
//! A process whose parent exits is reparented (to init or a subreaper): a double-forked
//! daemon's parent at fork time is gone by the time it does anything. Its entry then names
//! the parent it has: the exit record carries the exiting process's current parent, and a
//! process whose recorded parent has exited has its parent read again from /proc.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    io::Read as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};

use sensor_ebpf::EventHeader;

use crate::{
    decode::{self, ProcessExec, ProcessFork},
    users::{Answer, UserNames},
};

/// Most bytes of /proc/<pid>/cmdline kept (the kernel captures argv up to the same bound).
const CMDLINE_MAX: usize = sensor_ebpf::ARGS_MAX;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    pub entity_id: String,
    pub pid: u32,
    pub ppid: u32,
    pub parent_entity_id: String,
    pub uid: u32,
    pub gid: u32,
    pub user: String,
    pub exe: String,
    pub cmdline: Vec<String>,
    pub cmdline_truncated: bool,
    pub comm: String,
    pub cgroup_id: u64,
    pub container_id: String,
    /// Start of the process in clock ticks since boot (the /proc/<pid>/stat unit).
    pub start_ticks: u64,
    /// Start of the process, ns since boot (`CLOCK_BOOTTIME`), tick-precise when seeded from
    /// /proc.
    pub start_boottime_ns: u64,
}

/// Computes the entity id of a process.
pub fn entity_id(boot_id: &str, pid: u32, start_ticks: u64) -> String {
    let mut h = Sha256::new();
    h.update(boot_id.as_bytes());
    h.update(b":");
    h.update(pid.to_string().as_bytes());
    h.update(b":");
    h.update(start_ticks.to_string().as_bytes());
    let d = h.finalize();
    d[..16].iter().map(|b| format!("{b:02x}")).collect()
}

type Key = (u32, u64);

pub struct ProcessTable {
    boot_id: String,
    proc_root: PathBuf,
    ns_per_tick: u64,
    procs: HashMap<Key, Arc<ProcessInfo>>,
    /// pid → start ticks of its newest incarnation.
    latest: HashMap<u32, u64>,
    exited: VecDeque<(Instant, Key)>,
    /// Keys in `exited`: a second exit record for the same process is a duplicate.
    exiting: HashSet<Key>,
    grace: Duration,
    users: UserNames,
    containers: HashMap<u64, String>,
    /// When a process's parent was last read again from /proc (its recorded parent is gone).
    reparent_checks: HashMap<Key, Instant>,
}

/// How often the parent of one process whose recorded parent is gone is read from /proc.
const REPARENT_CHECK_EVERY: Duration = Duration::from_secs(1);
/// Processes whose parent checks are remembered at most.
const MAX_REPARENT_CHECKS: usize = 4096;

impl ProcessTable {
    pub fn new(boot_id: String, proc_root: PathBuf, grace: Duration) -> Self {
        let ticks = crate::host::clock_ticks();
        Self {
            boot_id,
            proc_root,
            ns_per_tick: 1_000_000_000 / ticks.max(1),
            procs: HashMap::new(),
            latest: HashMap::new(),
            exited: VecDeque::new(),
            exiting: HashSet::new(),
            grace,
            users: UserNames::local(Path::new("/etc/passwd")),
            containers: HashMap::new(),
            reparent_checks: HashMap::new(),
        }
    }

    /// Uses `passwd` text for user names instead of /etc/passwd (tests).
    pub fn with_passwd(mut self, passwd: &str) -> Self {
        self.users = UserNames::fixed(passwd);
        self
    }

    /// Names users that /etc/passwd does not know through the name service's lookup thread.
    pub fn with_user_lookups(mut self, lookups: std::sync::mpsc::SyncSender<u32>) -> Self {
        self.users = self.users.with_lookups(lookups);
        self
    }

    /// Takes the name service's answer about a uid: processes of that uid that were recorded
    /// without a name get it (their later events carry it).
    pub fn user_named(&mut self, answer: Answer) {
        let uid = answer.uid;
        let Some(name) = self.users.answer(answer) else { return };
        for p in self.procs.values_mut().filter(|p| p.uid == uid && p.user != name) {
            Arc::make_mut(p).user.clone_from(&name);
        }
    }

    fn ticks(&self, boottime_ns: u64) -> u64 {
        boottime_ns / self.ns_per_tick
    }

    /// Adds every process in /proc. Returns how many were added.
    pub fn seed(&mut self) -> usize {
        let Ok(dir) = std::fs::read_dir(&self.proc_root) else {
            return 0;
        };
        let pids: Vec<u32> = dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
        let mut n = 0;
        for pid in pids {
            if let Some(info) = self.read_proc(pid) {
                self.insert(info);
                n += 1;
            }
        }
        // Parents were possibly read after their children.
        let parents: Vec<(Key, u32)> = self.procs.iter().map(|(k, p)| (*k, p.ppid)).collect();
        for (key, ppid) in parents {
            let parent = self.current_entity(ppid);
            if let Some(p) = self.procs.get_mut(&key)
                && p.parent_entity_id.is_empty()
            {
                Arc::make_mut(p).parent_entity_id = parent;
            }
        }
        n
    }

    fn insert(&mut self, info: ProcessInfo) -> Arc<ProcessInfo> {
        let key = (info.pid, info.start_ticks);
        let newest = self.latest.get(&info.pid).is_none_or(|t| *t <= info.start_ticks);
        if newest {
            self.latest.insert(info.pid, info.start_ticks);
        }
        let info = Arc::new(info);
        self.procs.insert(key, info.clone());
        info
    }

    fn current_entity(&self, pid: u32) -> String {
        self.latest.get(&pid).and_then(|t| self.procs.get(&(pid, *t))).map(|p| p.entity_id.clone()).unwrap_or_default()
    }

    /// The process an event is about: exact by (pid, start time); read from /proc or built from
    /// the record's header when the table has never seen it.
    pub fn resolve(&mut self, h: &EventHeader) -> Arc<ProcessInfo> {
        let key = (h.tgid, self.ticks(h.start_boottime_ns));
        if let Some(p) = self.procs.get(&key) {
            if (p.uid, p.gid) != (h.uid, h.gid) {
                // setuid(2) and friends change who a process is without an exec: the record
                // says who it is now.
                let user = self.users.name(h.uid);
                let Some(p) = self.procs.get_mut(&key) else { return Arc::default() };
                let info = Arc::make_mut(p);
                (info.uid, info.gid, info.user) = (h.uid, h.gid, user);
            }
            let p = &self.procs[&key];
            if self.parent_gone(p) {
                return self.reparent(key);
            }
            return p.clone();
        }
        if let Some(mut info) = self.read_proc(h.tgid).filter(|i| i.start_ticks == key.1) {
            info.cgroup_id = h.cgroup_id;
            return self.insert(info);
        }
        let info = self.info_from_header(h, 0);
        self.insert(info)
    }

    /// The process `pid` that started at `start_ticks` (clock ticks since boot), from the
    /// table or else from /proc; `None` when it is gone.
    pub fn find(&mut self, pid: u32, start_ticks: u64) -> Option<Arc<ProcessInfo>> {
        if let Some(p) = self.procs.get(&(pid, start_ticks)) {
            return Some(p.clone());
        }
        let info = self.read_proc(pid).filter(|i| i.start_ticks == start_ticks)?;
        Some(self.insert(info))
    }

    /// Whether `p`'s recorded parent has exited (or is not known at all): it has been
    /// reparented, or is about to be.
    fn parent_gone(&self, p: &ProcessInfo) -> bool {
        if p.ppid == 0 {
            return false;
        }
        match self.latest.get(&p.ppid) {
            None => true,
            Some(t) => {
                let parent = (p.ppid, *t);
                self.exiting.contains(&parent)
                    || self.procs.get(&parent).is_none_or(|pp| pp.entity_id != p.parent_entity_id)
            }
        }
    }

    /// Reads the current parent of `key` from /proc (at most every [`REPARENT_CHECK_EVERY`]:
    /// until the kernel has reparented it, /proc still names the old parent).
    fn reparent(&mut self, key: Key) -> Arc<ProcessInfo> {
        let now = Instant::now();
        let due = self.reparent_checks.get(&key).is_none_or(|at| now.duration_since(*at) >= REPARENT_CHECK_EVERY);
        let current = self.procs[&key].clone();
        if !due {
            return current;
        }
        if self.reparent_checks.len() >= MAX_REPARENT_CHECKS {
            self.reparent_checks.clear();
        }
        self.reparent_checks.insert(key, now);
        let stat = std::fs::read_to_string(self.proc_root.join(key.0.to_string()).join("stat")).unwrap_or_default();
        match parse_stat(&stat) {
            Some((_, ppid, start))
                if start == key.1
                    && (ppid != current.ppid || self.current_entity(ppid) != current.parent_entity_id) =>
            {
                self.set_parent(key, ppid)
            }
            _ => current,
        }
    }

    /// Records that `key`'s parent is now `ppid`.
    fn set_parent(&mut self, key: Key, ppid: u32) -> Arc<ProcessInfo> {
        let parent = self.current_entity(ppid);
        let Some(p) = self.procs.get_mut(&key) else { return Arc::default() };
        let info = Arc::make_mut(p);
        info.ppid = ppid;
        info.parent_entity_id = parent;
        p.clone()
    }

    fn info_from_header(&mut self, h: &EventHeader, ppid: u32) -> ProcessInfo {
        let start_ticks = self.ticks(h.start_boottime_ns);
        ProcessInfo {
            entity_id: entity_id(&self.boot_id, h.tgid, start_ticks),
            pid: h.tgid,
            ppid,
            parent_entity_id: if ppid != 0 { self.current_entity(ppid) } else { String::new() },
            uid: h.uid,
            gid: h.gid,
            user: self.users.name(h.uid),
            exe: String::new(),
            cmdline: Vec::new(),
            cmdline_truncated: false,
            comm: decode::comm(h),
            cgroup_id: h.cgroup_id,
            container_id: self.container_of(h.cgroup_id, h.tgid),
            start_ticks,
            start_boottime_ns: h.start_boottime_ns,
        }
    }

    /// A process started a new program: same entity, new image.
    pub fn on_exec(&mut self, e: &ProcessExec) -> Arc<ProcessInfo> {
        let h = &e.raw.header;
        let ppid = e.raw.ppid;
        let key = (h.tgid, self.ticks(h.start_boottime_ns));
        let mut info = match self.procs.get(&key) {
            Some(p) => (**p).clone(),
            None => self.info_from_header(h, ppid),
        };
        info.ppid = ppid;
        if info.parent_entity_id.is_empty() {
            info.parent_entity_id = self.current_entity(ppid);
        }
        info.uid = h.uid;
        info.gid = h.gid;
        info.user = self.users.name(h.uid);
        info.comm = decode::comm(h);
        info.exe = if e.exe.complete { e.exe.path.clone() } else { e.filename.clone() };
        info.cmdline = e.args.clone();
        info.cmdline_truncated = e.args_truncated();
        info.cgroup_id = h.cgroup_id;
        self.insert(info)
    }

    /// A process forked: the child inherits the parent's image until it execs.
    pub fn on_fork(&mut self, f: &ProcessFork) -> Arc<ProcessInfo> {
        let parent = self.resolve(&f.raw.header);
        let start_ticks = self.ticks(f.raw.child_start_boottime_ns);
        let child = ProcessInfo {
            entity_id: entity_id(&self.boot_id, f.raw.child_tgid, start_ticks),
            pid: f.raw.child_tgid,
            ppid: parent.pid,
            parent_entity_id: parent.entity_id.clone(),
            start_ticks,
            start_boottime_ns: f.raw.child_start_boottime_ns,
            ..(*parent).clone()
        };
        self.insert(child)
    }

    /// A process exited: it stays resolvable for the grace period. `ppid` is its parent at
    /// exit (the exit record's; 0 when unknown), which replaces the one recorded when it
    /// differs (it was reparented). `None` when its exit was already recorded (kernels without
    /// the tracepoint's `group_dead` can report the exit of a thread group twice when its last
    /// threads exit together).
    pub fn on_exit(&mut self, h: &EventHeader, ppid: u32, now: Instant) -> Option<Arc<ProcessInfo>> {
        let mut info = self.resolve(h);
        let key = (info.pid, info.start_ticks);
        if !self.exiting.insert(key) {
            return None;
        }
        if ppid != 0 && ppid != info.ppid {
            info = self.set_parent(key, ppid);
        }
        self.exited.push_back((now + self.grace, key));
        Some(info)
    }

    /// Schedules for eviction every process that is no longer in /proc, or that an newer
    /// process with its pid replaced: their exit records were lost (ring buffer full), and
    /// without this the table would grow for as long as the sensor runs.
    /// Returns them, so what else is kept per process can go too.
    pub fn sweep(&mut self, now: Instant) -> Vec<Arc<ProcessInfo>> {
        let Ok(dir) = std::fs::read_dir(&self.proc_root) else { return Vec::new() };
        let alive: HashSet<u32> = dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
        let stale: Vec<Key> = self
            .procs
            .keys()
            .filter(|k| !self.exiting.contains(k))
            .filter(|(pid, start)| !alive.contains(pid) || self.latest.get(pid) != Some(start))
            .copied()
            .collect();
        let mut swept = Vec::with_capacity(stale.len());
        for key in stale {
            self.exiting.insert(key);
            self.exited.push_back((now + self.grace, key));
            swept.extend(self.procs.get(&key).cloned());
        }
        swept
    }

    /// Forgets exited processes whose grace period ended. Returns the pids forgotten.
    pub fn evict(&mut self, now: Instant) -> Vec<u32> {
        let mut gone = Vec::new();
        while let Some((deadline, key)) = self.exited.front().copied() {
            if deadline > now {
                break;
            }
            self.exited.pop_front();
            self.exiting.remove(&key);
            self.reparent_checks.remove(&key);
            if self.procs.remove(&key).is_some() {
                gone.push(key.0);
            }
            if self.latest.get(&key.0) == Some(&key.1) {
                self.latest.remove(&key.0);
            }
        }
        gone
    }

    pub fn get(&self, pid: u32) -> Option<Arc<ProcessInfo>> {
        self.latest.get(&pid).and_then(|t| self.procs.get(&(pid, *t))).cloned()
    }

    /// Reads one process from /proc; `None` when it is gone or unreadable.
    fn read_proc(&mut self, pid: u32) -> Option<ProcessInfo> {
        let dir = self.proc_root.join(pid.to_string());
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        let (comm, ppid, start_ticks) = parse_stat(&stat)?;
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let id_field = |name: &str| -> u32 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        let (uid, gid) = (id_field("Uid:"), id_field("Gid:"));
        let exe = std::fs::read_link(dir.join("exe")).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        // Bounded: a process's argv can be megabytes.
        let mut raw = Vec::new();
        if let Ok(f) = std::fs::File::open(dir.join("cmdline")) {
            let _ = f.take(CMDLINE_MAX as u64 + 1).read_to_end(&mut raw);
        }
        let cmdline_truncated = raw.len() > CMDLINE_MAX;
        let raw = &raw[..raw.len().min(CMDLINE_MAX)];
        let cmdline = raw
            .strip_suffix(&[0])
            .unwrap_or(raw)
            .split(|b| *b == 0)
            .filter(|_| !raw.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let cgroup_text = std::fs::read_to_string(dir.join("cgroup")).unwrap_or_default();
        let container_id = container_id(&cgroup_text).unwrap_or_default();
        Some(ProcessInfo {
            entity_id: entity_id(&self.boot_id, pid, start_ticks),
            pid,
            ppid,
            parent_entity_id: self.current_entity(ppid),
            uid,
            gid,
            user: self.users.name(uid),
            exe,
            cmdline,
            cmdline_truncated,
            comm,
            cgroup_id: 0,
            container_id,
            start_ticks,
            start_boottime_ns: start_ticks * self.ns_per_tick,
        })
    }

    fn container_of(&mut self, cgroup_id: u64, pid: u32) -> String {
        if let Some(c) = self.containers.get(&cgroup_id) {
            return c.clone();
        }
        let text = std::fs::read_to_string(self.proc_root.join(pid.to_string()).join("cgroup")).unwrap_or_default();
        let id = container_id(&text).unwrap_or_default();
        if cgroup_id != 0 && !text.is_empty() {
            if self.containers.len() > 4096 {
                self.containers.clear();
            }
            self.containers.insert(cgroup_id, id.clone());
        }
        id
    }
}

/// (comm, ppid, starttime) from /proc/<pid>/stat. comm may contain spaces and parentheses,
/// so fields are counted from the last ')'.
fn parse_stat(stat: &str) -> Option<(String, u32, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); ppid is field 4, starttime field 22.
    let ppid = rest.get(1)?.parse().ok()?;
    let start = rest.get(19)?.parse().ok()?;
    Some((comm, ppid, start))
}

/// Container id from /proc/<pid>/cgroup: a 64-hex-digit id in a docker, containerd, cri-o,
/// podman or kubepods path segment.
pub fn container_id(cgroup: &str) -> Option<String> {
    for line in cgroup.lines() {
        let path = line.splitn(3, ':').nth(2).unwrap_or("");
        for seg in path.split('/').rev() {
            let seg = seg.strip_suffix(".scope").unwrap_or(seg);
            let id = seg.rsplit(['-', ':']).next().unwrap_or(seg);
            if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Some(id.to_ascii_lowercase());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use sensor_ebpf::{EventKind, ProcessExecEvent, ProcessForkEvent};

    use super::*;
    use crate::decode::KernelPath;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n";

    fn header(tgid: u32, start_ns: u64) -> EventHeader {
        EventHeader {
            kind: EventKind::FileOpen as u16,
            ktime_ns: start_ns + 1,
            start_boottime_ns: start_ns,
            pid: tgid,
            tgid,
            uid: 1000,
            gid: 1000,
            comm: *b"python3\0\0\0\0\0\0\0\0\0",
            ..Default::default()
        }
    }

    fn table(proc_root: &Path) -> ProcessTable {
        ProcessTable::new("boot-1".into(), proc_root.to_owned(), Duration::from_secs(5)).with_passwd(PASSWD)
    }

    #[test]
    fn entity_ids_are_stable_and_distinguish_pid_reuse() {
        assert_eq!(entity_id("b", 10, 5), entity_id("b", 10, 5));
        assert_ne!(entity_id("b", 10, 5), entity_id("b", 10, 6));
        assert_ne!(entity_id("b", 10, 5), entity_id("c", 10, 5));
        assert_eq!(entity_id("b", 10, 5).len(), 32);
    }

    #[test]
    fn seeds_from_real_proc_and_resolves_self_exactly() {
        let mut t = table(Path::new("/proc"));
        assert!(t.seed() > 1);
        let me = t.get(std::process::id()).expect("own process in table");
        assert_eq!(me.exe, std::env::current_exe().unwrap().to_string_lossy());
        assert!(!me.cmdline.is_empty());
        let parent = t.get(me.ppid).expect("parent in table");
        assert_eq!(me.parent_entity_id, parent.entity_id);
    }

    #[test]
    fn fork_exec_exit_lifecycle_and_grace() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = table(dir.path());
        let parent = t.resolve(&header(100, 1_000_000_000));
        assert_eq!(parent.user, "alice");
        let child = t.on_fork(&ProcessFork {
            raw: ProcessForkEvent {
                header: header(100, 1_000_000_000),
                child_tgid: 200,
                child_start_boottime_ns: 2_000_000_000,
                ..Default::default()
            },
        });
        assert_eq!(child.parent_entity_id, parent.entity_id);
        assert_eq!(child.ppid, 100);
        let exec = ProcessExec {
            raw: ProcessExecEvent {
                header: EventHeader { comm: *b"llama-server\0\0\0\0", ..header(200, 2_000_000_000) },
                ppid: 100,
                old_pid: 200,
                ..Default::default()
            },
            args: vec!["llama-server".into(), "-m".into(), "x.gguf".into()],
            filename: "./llama-server".into(),
            exe: KernelPath { path: "/opt/llama/llama-server".into(), complete: true, ..Default::default() },
        };
        let after = t.on_exec(&exec);
        assert_eq!(after.entity_id, child.entity_id, "exec keeps the entity");
        assert_eq!(after.exe, "/opt/llama/llama-server");
        assert_eq!(after.comm, "llama-server");
        assert_eq!(after.cmdline[2], "x.gguf");
        let now = Instant::now();
        assert!(t.on_exit(&header(200, 2_000_000_000), 0, now).is_some());
        assert!(t.on_exit(&header(200, 2_000_000_000), 0, now).is_none(), "a second exit record is a duplicate");
        // Late events inside the grace period still resolve to the same process.
        assert_eq!(t.resolve(&header(200, 2_000_000_000)).exe, "/opt/llama/llama-server");
        assert!(t.evict(now + Duration::from_secs(1)).is_empty());
        assert_eq!(t.evict(now + Duration::from_secs(6)), vec![200]);
        assert!(t.get(200).is_none());
        // pid reuse: a new process with the same pid is a new entity.
        let reused = t.resolve(&header(200, 9_000_000_000));
        assert_ne!(reused.entity_id, child.entity_id);
    }

    #[test]
    fn processes_whose_exit_was_lost_are_swept() {
        // An empty /proc: nobody the table knows is alive any more.
        let proc_root = tempfile::tempdir().unwrap();
        let mut t = table(proc_root.path());
        t.resolve(&header(300, 3_000_000_000));
        t.resolve(&header(301, 3_000_000_000));
        let now = Instant::now();
        assert!(t.on_exit(&header(301, 3_000_000_000), 0, now).is_some());
        let swept: Vec<u32> = t.sweep(now).iter().map(|p| p.pid).collect();
        assert_eq!(swept, [300], "301's exit was recorded already");
        assert!(t.get(300).is_some(), "still resolvable during the grace period");
        let mut gone = t.evict(now + Duration::from_secs(6));
        gone.sort();
        assert_eq!(gone, [300, 301], "each process once");
        assert!(t.procs.is_empty() && t.latest.is_empty() && t.exiting.is_empty());
    }

    /// A process that changes its credentials without an exec (a daemon dropping privileges,
    /// a child that setuid()s) is named by the credentials its records carry.
    #[test]
    fn credentials_follow_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = table(dir.path());
        let root = EventHeader { uid: 0, gid: 0, ..header(100, 1_000_000_000) };
        let p = t.resolve(&root);
        assert_eq!((p.uid, p.user.as_str()), (0, "root"));
        let p2 = t.resolve(&header(100, 1_000_000_000));
        assert_eq!(
            (p2.uid, p2.gid, p2.user.as_str(), p2.entity_id.as_str()),
            (1000, 1000, "alice", p.entity_id.as_str())
        );
        assert_eq!(t.get(100).unwrap().uid, 1000);
    }

    /// A double-forked daemon: its parent at fork time exits and it is reparented. The exit
    /// record says so for a process that exits; a live one has its parent read from /proc.
    #[test]
    fn reparented_processes_name_their_new_parent() {
        let proc_root = tempfile::tempdir().unwrap();
        let mut t = table(proc_root.path());
        let init = t.resolve(&header(1, 1_000_000_000));
        let middle = t.resolve(&header(100, 2_000_000_000));
        let fork = |parent: u32, start: u64, child: u32, child_start: u64| ProcessFork {
            raw: ProcessForkEvent {
                header: header(parent, start),
                child_tgid: child,
                child_start_boottime_ns: child_start,
                ..Default::default()
            },
        };
        let daemon = t.on_fork(&fork(100, 2_000_000_000, 200, 3_000_000_000));
        let other = t.on_fork(&fork(100, 2_000_000_000, 201, 3_000_000_000));
        assert_eq!((daemon.ppid, daemon.parent_entity_id.as_str()), (100, middle.entity_id.as_str()));
        let now = Instant::now();
        t.on_exit(&header(100, 2_000_000_000), 1, now).unwrap();
        // /proc now shows the daemon under init (ticks: 3 s at 100 Hz).
        let stat = |pid: u32, ppid: u32| format!("{pid} (d) S {ppid} 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 300 0 0");
        std::fs::create_dir_all(proc_root.path().join("200")).unwrap();
        std::fs::write(proc_root.path().join("200/stat"), stat(200, 1)).unwrap();
        let now_daemon = t.resolve(&header(200, 3_000_000_000));
        assert_eq!((now_daemon.ppid, now_daemon.parent_entity_id.as_str()), (1, init.entity_id.as_str()));
        assert_eq!(now_daemon.entity_id, daemon.entity_id, "the same process");
        // The exit record of the other child names its parent at exit.
        let gone = t.on_exit(&header(201, 3_000_000_000), 1, now).unwrap();
        assert_eq!((gone.ppid, gone.entity_id.as_str()), (1, other.entity_id.as_str()));
        // A process whose parent is alive is not read again.
        let child = t.on_fork(&fork(1, 1_000_000_000, 300, 4_000_000_000));
        assert_eq!(t.resolve(&header(300, 4_000_000_000)).ppid, child.ppid);
        assert!(!t.reparent_checks.contains_key(&(300, 400)));
    }

    #[test]
    fn stat_parsing_survives_hostile_comm() {
        let stat = "42 (evil) 1 2 (x) S 7 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 12345 0 0";
        let (comm, ppid, start) = parse_stat(stat).unwrap();
        assert_eq!(comm, "evil) 1 2 (x");
        assert_eq!((ppid, start), (7, 12345));
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("1 (a) S").is_none());
    }

    #[test]
    fn container_ids_from_cgroup_paths() {
        let id = "a".repeat(64);
        for line in [
            format!("0::/system.slice/docker-{id}.scope"),
            format!("12:memory:/docker/{id}"),
            format!("0::/kubepods.slice/kubepods-burstable.slice/cri-containerd-{id}.scope"),
            format!("0::/machine.slice/libpod-{id}.scope/container"),
        ] {
            assert_eq!(container_id(&line).as_deref(), Some(id.as_str()), "{line}");
        }
        assert_eq!(container_id("0::/user.slice/user-1000.slice/session-2.scope"), None);
    }
}
