//! User names for the process blocks of events: uid → name.
//!
//! Local users come from /etc/passwd, read by the event loop itself: a local file, reloaded at
//! most every 10 s when a uid is unknown. Users of a directory (LDAP or AD through SSSD,
//! systemd-userdb records) are known only to the system's name service, and a lookup there
//! (`getpwuid_r`, which runs whatever NSS modules the machine configured) can block for seconds
//! on a slow directory server. One such call in the event loop would stop the ring buffer from
//! draining, so those lookups run on a thread of their own and their answers come back to the
//! loop as messages ([`Answer`]); until an answer comes, the name is empty (the uid is always
//! there). Answers are cached: a name for [`NAME_TTL`] (then looked up again in the background,
//! the old name used meanwhile), "no such user" for [`MISSING_TTL`]. While a lookup hangs, later
//! ones wait in a bounded queue; what does not fit is asked again on the next miss.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::mpsc::{SyncSender, TrySendError},
    time::{Duration, Instant},
};

/// How long a name from the name service is used before it is looked up again.
pub const NAME_TTL: Duration = Duration::from_secs(600);
/// How long "no such user" is believed.
pub const MISSING_TTL: Duration = Duration::from_secs(60);
/// How often /etc/passwd is read again, at most, when a uid is unknown.
const LOCAL_RELOAD: Duration = Duration::from_secs(10);
/// Lookups waiting for the thread, at most.
const QUEUE: usize = 64;
/// Name-service answers kept, at most (uids seen on one machine are few; this bounds a
/// process that walks through uids).
const MAX_CACHED: usize = 16_384;
/// A lookup slower than this is worth a warning: the directory server is slow or away.
const SLOW: Duration = Duration::from_secs(2);

/// The name service's answer about a uid: its name, or `None` when it has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub uid: u32,
    pub name: Option<String>,
}

#[derive(Debug, Clone)]
enum Cached {
    /// Asked; no answer yet.
    Pending,
    Known {
        name: Option<String>,
        until: Instant,
    },
}

/// uid → user name: /etc/passwd at once, the name service through the lookup thread.
pub struct UserNames {
    local: HashMap<u32, String>,
    /// Where `local` was read from; `None`: fixed (tests).
    source: Option<PathBuf>,
    loaded: Instant,
    directory: HashMap<u32, Cached>,
    /// The lookup thread's queue; `None`: local names only.
    lookups: Option<SyncSender<u32>>,
}

fn parse_passwd(text: &str) -> HashMap<u32, String> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, name.to_owned()))
        })
        .collect()
}

impl UserNames {
    /// Local names from `path`; no name service.
    pub fn local(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        Self::from_passwd(&text, Some(path.to_owned()))
    }

    /// Local names from `passwd` text, never reloaded (tests).
    pub fn fixed(passwd: &str) -> Self {
        Self::from_passwd(passwd, None)
    }

    fn from_passwd(text: &str, source: Option<PathBuf>) -> Self {
        Self { local: parse_passwd(text), source, loaded: Instant::now(), directory: HashMap::new(), lookups: None }
    }

    /// Asks the name service, through `lookups` (see [`spawn_lookups`]), about uids that are
    /// not local.
    pub fn with_lookups(mut self, lookups: SyncSender<u32>) -> Self {
        self.lookups = Some(lookups);
        self
    }

    /// The name of `uid` as far as it is known now; never blocks. An unknown uid is looked up
    /// in the background; its answer arrives as an [`Answer`] for [`UserNames::answer`].
    pub fn name(&mut self, uid: u32) -> String {
        if let Some(n) = self.local.get(&uid) {
            return n.clone();
        }
        let now = Instant::now();
        let (known, stale) = match self.directory.get(&uid) {
            Some(Cached::Pending) => return String::new(),
            Some(Cached::Known { name, until }) => (name.clone(), *until <= now),
            None => (None, true),
        };
        if !stale {
            return known.unwrap_or_default();
        }
        if let Some(src) = self.source.clone()
            && self.loaded.elapsed() > LOCAL_RELOAD
        {
            self.local = parse_passwd(&std::fs::read_to_string(&src).unwrap_or_default());
            self.loaded = Instant::now();
            if let Some(n) = self.local.get(&uid) {
                return n.clone();
            }
        }
        self.ask(uid, known.is_some());
        known.unwrap_or_default()
    }

    /// Sends `uid` to the lookup thread. A uid whose old name is still used stays `Known`
    /// until the new answer comes.
    fn ask(&mut self, uid: u32, keep_old: bool) {
        let Some(tx) = &self.lookups else { return };
        if self.directory.len() >= MAX_CACHED {
            let now = Instant::now();
            self.directory.retain(|_, c| matches!(c, Cached::Known { until, .. } if *until > now));
            if self.directory.len() >= MAX_CACHED {
                return;
            }
        }
        match tx.try_send(uid) {
            Ok(()) if !keep_old => {
                self.directory.insert(uid, Cached::Pending);
            }
            Ok(()) => {
                // Not asked again before the answer: the old name holds a little longer.
                if let Some(Cached::Known { until, .. }) = self.directory.get_mut(&uid) {
                    *until = Instant::now() + MISSING_TTL;
                }
            }
            // The thread is busy (or gone): the next miss asks again.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {}
        }
    }

    /// Takes the name service's answer. Returns the name when it is new to the caller (so what
    /// was reported without a name can be given it).
    pub fn answer(&mut self, a: Answer) -> Option<String> {
        let ttl = if a.name.is_some() { NAME_TTL } else { MISSING_TTL };
        let before = self.directory.insert(a.uid, Cached::Known { name: a.name.clone(), until: Instant::now() + ttl });
        let changed = !matches!(&before, Some(Cached::Known { name, .. }) if *name == a.name);
        a.name.filter(|_| changed)
    }
}

/// What the lookup thread asks the name service: `getpwuid_r` through nix.
pub fn name_service(uid: u32) -> Option<String> {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(user) => user.map(|u| u.name),
        Err(e) => {
            tracing::debug!(uid, "name service lookup failed: {e}");
            None
        }
    }
}

/// Starts the lookup thread: it answers each uid sent to the returned queue by calling `lookup`
/// and handing the answer to `reply`. It ends when the queue's sender is dropped or `reply`
/// fails.
pub fn spawn_lookups(
    lookup: impl Fn(u32) -> Option<String> + Send + 'static,
    reply: impl Fn(Answer) -> bool + Send + 'static,
) -> std::io::Result<SyncSender<u32>> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<u32>(QUEUE);
    std::thread::Builder::new().name("user names".into()).spawn(move || {
        while let Ok(uid) = rx.recv() {
            let started = Instant::now();
            let name = lookup(uid);
            let took = started.elapsed();
            if took > SLOW {
                tracing::warn!(uid, seconds = took.as_secs_f64(), "the name service took long to answer");
            }
            if !reply(Answer { uid, name }) {
                break;
            }
        }
    })?;
    Ok(tx)
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc, Mutex,
        mpsc::{Receiver, channel},
    };

    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n";

    /// A name service that knows uid 5000 as `dora` and counts what it was asked.
    fn directory(delay: Duration) -> (UserNames, Receiver<Answer>, Arc<Mutex<Vec<u32>>>) {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let (answers_tx, answers) = channel();
        let seen = asked.clone();
        let tx = spawn_lookups(
            move |uid| {
                seen.lock().unwrap().push(uid);
                std::thread::sleep(delay);
                (uid == 5000).then(|| "dora".to_owned())
            },
            move |a| answers_tx.send(a).is_ok(),
        )
        .unwrap();
        (UserNames::fixed(PASSWD).with_lookups(tx), answers, asked)
    }

    #[test]
    fn local_users_are_named_at_once_without_the_name_service() {
        let (mut users, _answers, asked) = directory(Duration::ZERO);
        assert_eq!(users.name(1000), "alice");
        assert_eq!(users.name(0), "root");
        assert!(asked.lock().unwrap().is_empty());
    }

    #[test]
    fn a_directory_user_is_named_once_the_answer_comes_and_asked_once() {
        // A slow directory: the caller is not kept waiting for it.
        let (mut users, answers, asked) = directory(Duration::from_millis(300));
        let started = Instant::now();
        assert_eq!(users.name(5000), "");
        assert_eq!(users.name(5000), "", "pending: not asked twice");
        assert!(started.elapsed() < Duration::from_millis(100), "name() blocked for {:?}", started.elapsed());
        let a = answers.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(a, Answer { uid: 5000, name: Some("dora".into()) });
        assert_eq!(users.answer(a.clone()), Some("dora".into()));
        assert_eq!(users.name(5000), "dora");
        assert_eq!(users.answer(a), None, "the same answer again is not news");
        assert_eq!(*asked.lock().unwrap(), vec![5000]);
    }

    #[test]
    fn an_unknown_uid_is_remembered_as_unknown() {
        let (mut users, answers, asked) = directory(Duration::ZERO);
        assert_eq!(users.name(4242), "");
        let a = answers.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(users.answer(a), None);
        assert_eq!(users.name(4242), "");
        assert_eq!(users.name(4242), "");
        assert_eq!(*asked.lock().unwrap(), vec![4242]);
    }

    #[test]
    fn a_stuck_name_service_fills_its_queue_and_nothing_blocks() {
        let (mut users, _answers, asked) = directory(Duration::from_secs(3600));
        let started = Instant::now();
        for uid in 10_000..10_000 + 4 * QUEUE as u32 {
            assert_eq!(users.name(uid), "");
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        // One in the thread, QUEUE waiting; the rest were not queued and are asked again later.
        assert!(asked.lock().unwrap().len() <= 1);
        let pending = users.directory.values().filter(|c| matches!(c, Cached::Pending)).count();
        assert!((QUEUE..=QUEUE + 1).contains(&pending), "{pending} pending");
    }

    #[test]
    fn the_real_name_service_knows_root() {
        assert_eq!(name_service(0).as_deref(), Some("root"));
    }
}
