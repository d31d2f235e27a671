//! Event filters, shared by the API's `Tail` (server side), `modelwatch tail --from FILE` and
//! tests. Empty lists match everything; filters combine with AND, values within a list with OR.

use crate::{
    proto::v1::{ArtifactSummary, Event, FileRef, Severity, TailRequest, event::Payload},
    proto::{PAYLOAD_NAMES, kind_name},
};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    kinds: Vec<String>,
    pids: Vec<u32>,
    process_names: Vec<String>,
    models: Vec<String>,
    min_severity: i32,
    /// `sensor_health` and `events_lost` pass whatever the rest says (sinks).
    meta_passes: bool,
}

/// Values per filter list, and bytes per value: a client's filter is checked against every
/// event on the bus, so its cost is bounded here.
pub const MAX_VALUES: usize = 64;
pub const MAX_VALUE_BYTES: usize = 256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("too many {0} filter values (at most {MAX_VALUES})")]
    TooMany(&'static str),
    #[error("{0} filter value longer than {MAX_VALUE_BYTES} bytes")]
    TooLong(&'static str),
    #[error("unknown event kind `{0}` (known: {known})", known = PAYLOAD_NAMES.join(", "))]
    UnknownKind(String),
    #[error("empty {0} filter value")]
    Empty(&'static str),
}

impl Filter {
    pub fn from_request(req: &TailRequest) -> Result<Self, FilterError> {
        let lists: [(&'static str, usize, Option<&Vec<String>>); 4] = [
            ("kind", req.kinds.len(), Some(&req.kinds)),
            ("pid", req.pids.len(), None),
            ("process name", req.process_names.len(), Some(&req.process_names)),
            ("model", req.models.len(), Some(&req.models)),
        ];
        for (what, n, values) in lists {
            if n > MAX_VALUES {
                return Err(FilterError::TooMany(what));
            }
            if values.is_some_and(|v| v.iter().any(|s| s.len() > MAX_VALUE_BYTES)) {
                return Err(FilterError::TooLong(what));
            }
        }
        for k in &req.kinds {
            if !PAYLOAD_NAMES.contains(&k.as_str()) {
                return Err(FilterError::UnknownKind(k.clone()));
            }
        }
        if req.process_names.iter().any(String::is_empty) {
            return Err(FilterError::Empty("process name"));
        }
        if req.models.iter().any(String::is_empty) {
            return Err(FilterError::Empty("model"));
        }
        Ok(Self {
            kinds: req.kinds.clone(),
            pids: req.pids.clone(),
            process_names: req.process_names.clone(),
            models: req.models.iter().map(|m| m.to_lowercase()).collect(),
            min_severity: req.min_severity,
            meta_passes: false,
        })
    }

    /// A sink's selection: `kinds` and `min_severity` as in `tail`, except that
    /// `sensor_health` and `events_lost` always pass, so a sink is told about losses and the
    /// sensor's state whatever it selects.
    pub fn for_sink(kinds: &[String], min_severity: Severity) -> Result<Self, FilterError> {
        let req = TailRequest { kinds: kinds.to_vec(), min_severity: min_severity as i32, ..Default::default() };
        Ok(Self { meta_passes: true, ..Self::from_request(&req)? })
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    pub fn matches(&self, ev: &Event) -> bool {
        if self.meta_passes && matches!(ev.payload, Some(Payload::SensorHealth(_) | Payload::EventsLost(_))) {
            return true;
        }
        // Events without a severity (older captures) count as INFO.
        if ev.severity.max(Severity::Info as i32) < self.min_severity {
            return false;
        }
        if !self.kinds.is_empty() && !self.kinds.iter().any(|k| k == kind_name(ev)) {
            return false;
        }
        if !self.pids.is_empty() && !ev.process.as_ref().is_some_and(|p| self.pids.contains(&p.pid)) {
            return false;
        }
        if !self.process_names.is_empty() {
            let Some(p) = &ev.process else { return false };
            let exe_name = p.exe.rsplit('/').next().unwrap_or("");
            if !self.process_names.iter().any(|n| *n == p.comm || (!exe_name.is_empty() && n == exe_name)) {
                return false;
            }
        }
        if !self.models.is_empty() && !models_match(ev, &self.models) {
            return false;
        }
        true
    }
}

/// The filters of `modelwatch tail` that the API's `TailRequest` has no field for (the schema
/// stays as it is): applied by the client, to the live stream and to a capture alike.
#[derive(Debug, Clone, Default)]
pub struct LocalFilter {
    /// Events whose `event_time` is earlier are dropped (seconds, nanos since the epoch).
    since: Option<(i64, i32)>,
    /// User names or uids (a value of digits only is a uid).
    users: Vec<String>,
    /// Session id prefixes.
    sessions: Vec<String>,
    /// cgroup ids (digits) or container id substrings.
    containers: Vec<String>,
    /// Processes (entity id, or pid where the event has none) seen in a selected session's
    /// events, until its `session_ended`: their other events belong to the session too.
    session_procs: std::collections::HashSet<String>,
}

/// Processes remembered for `--session`: one session has one process, but a capture is
/// outside data, so the set is bounded.
const MAX_SESSION_PROCS: usize = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LocalFilterError {
    #[error("`{0}` is neither an RFC 3339 time (2026-12-04T13:40:00Z) nor a duration (90s, 10m, 2h, 1d)")]
    Since(String),
    #[error("empty {0} filter value")]
    Empty(&'static str),
}

impl LocalFilter {
    /// `now` is the current time in seconds since the epoch (a duration counts back from it).
    pub fn new(
        since: Option<&str>,
        users: &[String],
        sessions: &[String],
        containers: &[String],
        now: i64,
    ) -> Result<Self, LocalFilterError> {
        for (what, values) in [("user", users), ("session", sessions), ("container", containers)] {
            if values.iter().any(|v| v.trim().is_empty()) {
                return Err(LocalFilterError::Empty(what));
            }
        }
        Ok(Self {
            since: since.map(|s| parse_since(s, now)).transpose()?,
            users: users.to_vec(),
            sessions: sessions.iter().map(|s| s.to_lowercase()).collect(),
            containers: containers.iter().map(|s| s.to_lowercase()).collect(),
            session_procs: Default::default(),
        })
    }

    /// Whether the server must send every kind: `--session` learns a session's process from
    /// its session events, which a kind filter on the server would hold back.
    pub fn needs_session_events(&self) -> bool {
        !self.sessions.is_empty()
    }

    /// Every event must pass through here, whatever other filters say, in stream order:
    /// `--session` learns its processes from the session events.
    pub fn matches(&mut self, ev: &Event) -> bool {
        let in_session = self.sessions.is_empty() || self.session_matches(ev);
        if let Some(since) = self.since {
            let Some(t) = &ev.event_time else { return false };
            if (t.seconds, t.nanos) < since {
                return false;
            }
        }
        if !self.users.is_empty() {
            let Some(p) = &ev.process else { return false };
            let uid = p.uid.to_string();
            if !self.users.iter().any(|u| *u == uid || (!p.user.is_empty() && *u == p.user)) {
                return false;
            }
        }
        if !self.containers.is_empty() {
            let Some(p) = &ev.process else { return false };
            let cgroup = p.cgroup_id.to_string();
            let container = p.container_id.to_lowercase();
            let hit = self.containers.iter().any(|c| {
                (p.cgroup_id != 0 && *c == cgroup) || (!container.is_empty() && container.contains(c.as_str()))
            });
            if !hit {
                return false;
            }
        }
        in_session
    }

    fn session_matches(&mut self, ev: &Event) -> bool {
        let proc_key = ev
            .process
            .as_ref()
            .map(|p| if p.entity_id.is_empty() { format!("pid:{}", p.pid) } else { p.entity_id.clone() });
        let (id, ended) = match &ev.payload {
            Some(Payload::SessionStarted(s)) => (Some(&s.session_id), false),
            Some(Payload::SessionUpdated(s)) => (Some(&s.session_id), false),
            Some(Payload::SessionEnded(s)) => (Some(&s.session_id), true),
            _ => (None, false),
        };
        if let Some(id) = id {
            let id = id.to_lowercase();
            if !self.sessions.iter().any(|s| id.starts_with(s.as_str())) {
                return false;
            }
            if let Some(k) = proc_key {
                if ended {
                    self.session_procs.remove(&k);
                } else if self.session_procs.len() < MAX_SESSION_PROCS {
                    self.session_procs.insert(k);
                }
            }
            return true;
        }
        proc_key.is_some_and(|k| self.session_procs.contains(&k))
    }
}

/// `--since`: an RFC 3339 time, or a duration back from `now` (`90s`, `10m`, `2h`, `1d`).
fn parse_since(s: &str, now: i64) -> Result<(i64, i32), LocalFilterError> {
    let err = || LocalFilterError::Since(s.to_owned());
    let t = s.trim();
    // A duration is digits and one unit letter; anything else is read as a time.
    let (digits, unit) = t.split_at(t.len() - t.chars().last().map_or(0, char::len_utf8));
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && unit.bytes().all(|b| b.is_ascii_alphabetic())
    {
        let n: i64 = digits.parse().map_err(|_| err())?;
        let unit = unit.chars().next().unwrap_or(' ');
        let mult = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(err()),
        };
        let back = n.checked_mul(mult).filter(|b| *b >= 0).ok_or_else(err)?;
        return Ok((now.saturating_sub(back), 0));
    }
    // The proto3 JSON mapping of a Timestamp is RFC 3339: the schema's own parser reads it.
    let ts: pbjson_types::Timestamp =
        serde_json::from_value(serde_json::Value::String(t.to_owned())).map_err(|_| err())?;
    Ok((ts.seconds, ts.nanos))
}

/// Each needle is lower-case: a SHA-256 prefix (hex, at least 8 digits) or a substring of a
/// model name or path. The event's references are gathered and lower-cased once.
fn models_match(ev: &Event, needles: &[String]) -> bool {
    let mut refs = ModelRefs::default();
    refs.collect(ev);
    let digests: Vec<String> = refs.digests.iter().map(|d| d.to_lowercase()).collect();
    let names: Vec<String> = refs.names.iter().map(|n| n.to_lowercase()).collect();
    needles.iter().any(|needle| {
        let hex = needle.len() >= 8 && needle.bytes().all(|b| b.is_ascii_hexdigit());
        (hex && digests.iter().any(|d| d.starts_with(needle.as_str())))
            || names.iter().any(|n| n.contains(needle.as_str()))
    })
}

#[derive(Default)]
struct ModelRefs<'a> {
    digests: Vec<&'a str>,
    names: Vec<&'a str>,
}

impl<'a> ModelRefs<'a> {
    fn file(&mut self, f: &'a Option<FileRef>) {
        if let Some(f) = f {
            self.names.push(&f.path);
            if !f.requested_path.is_empty() {
                self.names.push(&f.requested_path);
            }
        }
    }

    fn artifact(&mut self, a: &'a Option<ArtifactSummary>) {
        if let Some(a) = a {
            if !a.sha256.is_empty() {
                self.digests.push(&a.sha256);
            }
            if !a.name.is_empty() {
                self.names.push(&a.name);
            }
        }
    }

    fn collect(&mut self, ev: &'a Event) {
        match &ev.payload {
            Some(Payload::ModelFileOpened(o)) => {
                self.file(&o.file);
                self.artifact(&o.artifact);
            }
            Some(Payload::ModelMapped(m)) => {
                self.file(&m.file);
                self.artifact(&m.artifact);
            }
            Some(Payload::ArtifactIdentified(a)) => {
                self.file(&a.file);
                self.artifact(&a.artifact);
                if let Some(m) = &a.metadata {
                    self.names.push(&m.name);
                }
            }
            Some(Payload::PolicyFinding(p)) => {
                self.file(&p.file);
                self.artifact(&p.artifact);
            }
            Some(Payload::ModelRead(r)) => {
                self.file(&r.file);
                self.artifact(&r.artifact);
            }
            Some(Payload::SessionStarted(s)) => {
                for m in &s.models {
                    self.file(&m.file);
                    self.artifact(&m.artifact);
                }
            }
            Some(Payload::SessionUpdated(s)) => {
                for m in &s.models {
                    self.file(&m.file);
                    self.artifact(&m.artifact);
                }
            }
            Some(Payload::SessionEnded(s)) => {
                for m in &s.models {
                    self.file(&m.file);
                    self.artifact(&m.artifact);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::{ModelFileOpened, Process, ProcessExit};

    fn opened(pid: u32, comm: &str, path: &str, sha: &str) -> Event {
        Event {
            process: Some(Process { pid, comm: comm.into(), exe: format!("/usr/bin/{comm}"), ..Default::default() }),
            severity: Severity::Info as i32,
            payload: Some(Payload::ModelFileOpened(ModelFileOpened {
                file: Some(FileRef { path: path.into(), ..Default::default() }),
                artifact: Some(ArtifactSummary { sha256: sha.into(), name: "Llama-3-8B".into(), ..Default::default() }),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn filter(req: TailRequest) -> Filter {
        Filter::from_request(&req).unwrap()
    }

    #[test]
    fn empty_filter_matches_everything() {
        assert!(Filter::default().matches(&opened(1, "a", "/m.gguf", "")));
        assert!(Filter::default().is_empty());
    }

    #[test]
    fn each_dimension_filters() {
        let ev = opened(42, "ollama", "/models/blobs/sha256-ab", "abcdef0123456789");
        let yes = [
            TailRequest { kinds: vec!["model_file_opened".into()], ..Default::default() },
            TailRequest { pids: vec![7, 42], ..Default::default() },
            TailRequest { process_names: vec!["ollama".into()], ..Default::default() },
            TailRequest { models: vec!["ABCDEF01".into()], ..Default::default() },
            TailRequest { models: vec!["llama-3".into()], ..Default::default() },
            TailRequest { models: vec!["blobs/sha256".into()], ..Default::default() },
            TailRequest { min_severity: Severity::Info as i32, ..Default::default() },
        ];
        for r in yes {
            assert!(filter(r.clone()).matches(&ev), "{r:?}");
        }
        let no = [
            TailRequest { kinds: vec!["process_exit".into()], ..Default::default() },
            TailRequest { pids: vec![7], ..Default::default() },
            TailRequest { process_names: vec!["python3".into()], ..Default::default() },
            TailRequest { models: vec!["ffffffff".into()], ..Default::default() },
            TailRequest { min_severity: Severity::High as i32, ..Default::default() },
            TailRequest { pids: vec![42], process_names: vec!["python3".into()], ..Default::default() },
        ];
        for r in no {
            assert!(!filter(r.clone()).matches(&ev), "{r:?}");
        }
        // Events without a process never match a pid or name filter.
        let exit = Event { payload: Some(Payload::ProcessExit(ProcessExit::default())), ..Default::default() };
        assert!(!filter(TailRequest { pids: vec![1], ..Default::default() }).matches(&exit));
    }

    #[test]
    fn a_sink_filter_always_lets_health_and_losses_through() {
        let f = Filter::for_sink(&["policy_finding".into()], Severity::High).unwrap();
        assert!(!f.matches(&opened(1, "a", "/m.gguf", "")));
        for p in [Payload::EventsLost(Default::default()), Payload::SensorHealth(Default::default())] {
            let ev = Event { severity: Severity::Info as i32, payload: Some(p), ..Default::default() };
            assert!(f.matches(&ev), "{ev:?}");
            assert!(!filter(TailRequest { kinds: vec!["policy_finding".into()], ..Default::default() }).matches(&ev));
        }
        assert!(Filter::for_sink(&["bogus".into()], Severity::Info).is_err());
    }

    fn at(secs: i64, mut ev: Event) -> Event {
        ev.event_time = Some(pbjson_types::Timestamp { seconds: secs, nanos: 0 });
        ev
    }

    fn local(since: Option<&str>, users: &[&str], sessions: &[&str], containers: &[&str]) -> LocalFilter {
        let v = |x: &[&str]| x.iter().map(ToString::to_string).collect::<Vec<_>>();
        LocalFilter::new(since, &v(users), &v(sessions), &v(containers), 1_000_000).unwrap()
    }

    #[test]
    fn since_takes_a_time_or_a_duration() {
        let ev = at(1_000_000 - 300, opened(1, "a", "/m.gguf", ""));
        assert!(local(Some("10m"), &[], &[], &[]).matches(&ev));
        assert!(!local(Some("4m"), &[], &[], &[]).matches(&ev));
        assert!(local(Some("1970-01-12T13:41:40Z"), &[], &[], &[]).matches(&ev)); // 999_700
        assert!(!local(Some("1970-01-12T13:41:41Z"), &[], &[], &[]).matches(&ev));
        assert!(!local(Some("1s"), &[], &[], &[]).matches(&opened(1, "a", "/m", "")), "no time: not since");
        for bad in ["yesterday", "10y", "-5m", "m", "2026-13-01T00:00:00Z"] {
            let e = LocalFilter::new(Some(bad), &[], &[], &[], 0).expect_err(bad);
            assert!(e.to_string().contains("RFC 3339"), "{e}");
        }
    }

    #[test]
    fn user_and_container_filters() {
        let mut ev = opened(1, "a", "/m.gguf", "");
        let p = ev.process.as_mut().unwrap();
        (p.uid, p.user, p.cgroup_id, p.container_id) = (1000, "alice".into(), 4242, "ABCDEF123456".into());
        for (users, containers) in [(&["alice"][..], &[][..]), (&["1000"], &[]), (&[], &["4242"]), (&[], &["cdef12"])] {
            assert!(local(None, users, &[], containers).matches(&ev), "{users:?} {containers:?}");
        }
        for (users, containers) in [(&["bob"][..], &[][..]), (&["0"], &[]), (&[], &["424"]), (&[], &["ffff"])] {
            assert!(!local(None, users, &[], containers).matches(&ev), "{users:?} {containers:?}");
        }
        let bare = Event { payload: Some(Payload::ProcessExit(ProcessExit::default())), ..Default::default() };
        assert!(!local(None, &["alice"], &[], &[]).matches(&bare));
        assert!(LocalFilter::new(None, &[String::new()], &[], &[], 0).is_err());
    }

    #[test]
    fn a_session_brings_its_process_events_until_it_ends() {
        use crate::proto::v1::{InferenceSessionEnded, InferenceSessionStarted};
        let of = |pid: u32, payload: Payload| Event {
            process: Some(Process { pid, entity_id: format!("e{pid}"), ..Default::default() }),
            payload: Some(payload),
            ..Default::default()
        };
        let start =
            |id: &str| Payload::SessionStarted(InferenceSessionStarted { session_id: id.into(), ..Default::default() });
        let end =
            |id: &str| Payload::SessionEnded(InferenceSessionEnded { session_id: id.into(), ..Default::default() });
        let mut f = local(None, &[], &["ABC"], &[]);
        assert!(!f.matches(&opened(7, "a", "/m", "")), "before its session starts");
        assert!(f.matches(&of(7, start("abc123"))));
        assert!(!f.matches(&of(8, start("def456"))));
        let mut open7 = opened(7, "a", "/m", "");
        open7.process.as_mut().unwrap().entity_id = "e7".into();
        let mut open8 = open7.clone();
        open8.process.as_mut().unwrap().entity_id = "e8".into();
        assert!(f.matches(&open7));
        assert!(!f.matches(&open8));
        assert!(f.matches(&of(7, end("abc123"))));
        assert!(!f.matches(&open7), "after its session ended");
    }

    #[test]
    fn invalid_requests_are_rejected() {
        let e = Filter::from_request(&TailRequest { kinds: vec!["bogus".into()], ..Default::default() });
        assert_eq!(e, Err(FilterError::UnknownKind("bogus".into())));
        let e = Filter::from_request(&TailRequest { models: vec![String::new()], ..Default::default() });
        assert!(e.is_err());
        let e = Filter::from_request(&TailRequest { pids: vec![1; MAX_VALUES + 1], ..Default::default() });
        assert_eq!(e, Err(FilterError::TooMany("pid")));
        let e =
            Filter::from_request(&TailRequest { models: vec!["m".repeat(MAX_VALUE_BYTES + 1)], ..Default::default() });
        assert_eq!(e, Err(FilterError::TooLong("model")));
        let ok = Filter::from_request(&TailRequest {
            models: vec!["m".repeat(MAX_VALUE_BYTES); MAX_VALUES],
            ..Default::default()
        });
        assert!(ok.is_ok());
    }
}
