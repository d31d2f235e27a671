//! The sensor's side of artifact analysis: which file version an event is about, what is
//! already known of it, and what to do when the analyzer learns more (publish, mark the inode
//! in the kernel, tell the session tracker).

use std::num::NonZeroUsize;

use modelwatch_artifact::service::{Disconnected, UpdateSink};

use super::{
    AnalyzerHandle, Arc, ArtifactRequest, ArtifactUpdate, Duration, FileId, FileIdentity, FileKey, Format, HealthState,
    Instant, Job, PathBuf, Payload, ProcessInfo, Sensor, Severity, art, host,
};

/// Identity lookups in flight at most.
const MAX_PENDING: usize = 1024;

/// How long a file's stat(2) identity is trusted before it is checked again (it is still used
/// while the check runs).
const IDENTITY_TTL: Duration = Duration::from_secs(2);

/// Analyzer updates waiting for the event loop; when full, the analyzer's threads wait.
pub(super) const ARTIFACT_UPDATES: usize = 1024;

/// Delivers the analyzer's updates (sent from its own threads) into the event loop.
pub(super) struct LoopUpdates(pub tokio::sync::mpsc::Sender<ArtifactUpdate>);

impl UpdateSink for LoopUpdates {
    fn deliver(&self, update: ArtifactUpdate) -> Result<(), Disconnected> {
        self.0.blocking_send(update).map_err(|_| Disconnected)
    }
}

/// Re-reads the approved-model manifest on SIGHUP. Registered before the sensor reports ready,
/// so a SIGHUP right after start is neither missed nor fatal (its default action terminates).
pub fn reload_manifest_on_sighup(analyzer: &AnalyzerHandle) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        tracing::debug!("no async runtime: the manifest reloads on change only");
        return;
    };
    let registered = {
        let _enter = rt.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    };
    match registered {
        Ok(mut sig) => {
            let analyzer = analyzer.clone();
            rt.spawn(async move {
                while sig.recv().await.is_some() {
                    tracing::info!("SIGHUP: reloading the model manifest");
                    analyzer.reload_manifest();
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot watch SIGHUP; the manifest reloads on change only"),
    }
}

/// Bound on the per-file bookkeeping above.
pub(super) const MAX_ARTIFACT_FILES: NonZeroUsize = NonZeroUsize::new(16_384).unwrap();

impl Sensor {
    /// What is known about a file a process opened or mapped. The file is looked up (off the
    /// loop) by its path and, failing that, through the process's root, since it may live in
    /// another mount namespace; either must still be the inode the kernel reported. Unknown
    /// versions then go to the analyzer.
    pub(super) fn artifact_for(
        &mut self,
        p: &Arc<ProcessInfo>,
        path: &str,
        ino: u64,
        kdev: u32,
        size: u64,
    ) -> Option<crate::proto::v1::ArtifactSummary> {
        let key = (kdev, ino, size);
        let known = self.identities.get(&key).map(|(id, _, at)| (*id, at.elapsed() < IDENTITY_TTL));
        if known.is_none_or(|(_, fresh)| !fresh) && !self.pending.contains_key(&key) {
            // Our own view first: when it is the same inode, the analyzer can still open it
            // after the process exits (its /proc root then vanishes, failing the analysis).
            let candidates = [PathBuf::from(path), PathBuf::from(format!("/proc/{}/root{path}", p.pid))];
            if self.pending.len() >= MAX_PENDING {
                self.lookups_refused += 1;
            } else if self.resolver.submit(Job::Identity { key, candidates }) {
                self.pending.insert(key, (p.clone(), path.to_owned()));
            }
        }
        let (identity, _) = known?;
        self.artifact_files.put(identity, (p.clone(), path.to_owned(), kdev));
        self.analyzer.lookup(&identity).map(|report| art::summary(&report, &identity))
    }

    /// The resolver found (or not) the file an event was about.
    pub(super) fn on_identity(&mut self, key: FileKey, found: Option<(FileIdentity, PathBuf)>) {
        let Some((p, path)) = self.pending.remove(&key) else { return };
        let Some((identity, file)) = found else {
            self.lookups_unresolved += 1;
            self.identities.pop(&key);
            return;
        };
        self.identities.put(key, (identity, file.clone(), Instant::now()));
        let first = self.artifact_files.put(identity, (p, path, key.0)).is_none();
        match self.analyzer.lookup(&identity) {
            // Known from an earlier run (the persisted cache): say what it is once, and put
            // the kernel's mark back.
            Some(report) if first => self.on_artifact(ArtifactUpdate::Identified { identity, report }),
            Some(_) => {}
            None => self.analyzer.submit(ArtifactRequest { path: file, identity }),
        }
    }

    /// Publishes what the analyzer learnt, tells the kernel which inodes are models (so their
    /// mappings are reported) and which are not (so their opens cost nothing), and lets the
    /// session tracker know.
    pub(super) fn on_artifact(&mut self, update: ArtifactUpdate) {
        let (identity, report) = match update {
            ArtifactUpdate::Identified { identity, report }
            | ArtifactUpdate::Digest { identity, report }
            | ArtifactUpdate::PolicyChanged { identity, report } => (identity, report),
            ArtifactUpdate::Failed { path, error, .. } => {
                tracing::debug!(path = %path.display(), "artifact not analysed: {error}");
                return;
            }
            ArtifactUpdate::ManifestReloaded { path, approved, denied } => {
                tracing::info!(manifest = %path.display(), approved, denied, "model manifest loaded");
                return;
            }
            ArtifactUpdate::ManifestError(message) => {
                tracing::warn!("model manifest: {message}");
                let mut health = self.health(HealthState::Degraded);
                if let Some(Payload::SensorHealth(h)) = &mut health.payload {
                    h.state = HealthState::Degraded as i32;
                    h.message = format!("model manifest: {message} (the previous manifest stays in force)");
                }
                health.severity = Severity::Medium as i32;
                self.publish(health);
                return;
            }
        };
        let (process, kernel_path, kdev) = match self.artifact_files.get(&identity) {
            Some((p, path, kdev)) => (Some(p.clone()), path.clone(), *kdev),
            None => (None, report.path.to_string_lossy().into_owned(), art::kernel_dev(&identity)),
        };
        let mark = if report.format.is_model() {
            Some(sensor_ebpf::mark::MODEL)
        } else if self.cfg.files.suppress_known_non_models
            && matches!(report.format, Format::NotAModel | Format::Unknown)
        {
            Some(sensor_ebpf::mark::NOT_MODEL)
        } else {
            None
        };
        if let Some(verdict) = mark {
            let id = FileId { dev: kdev, _pad0: 0, ino: identity.ino };
            let m = sensor_ebpf::InodeMark { verdict, _pad0: 0, size: identity.size, ctime_sec: identity.ctime_sec };
            if let Err(e) = self.maps.mark_inode(id, m) {
                tracing::warn!("cannot mark inode: {e}");
            }
        }
        let summary = art::summary(&report, &identity);
        self.tracker.artifact_known(&kernel_path, &summary);
        let mut identified = art::identified(&report, &identity);
        if let Some(f) = &mut identified.file {
            f.path = kernel_path.clone();
        }
        let severity = report.max_severity().map_or(Severity::Info, art::severity);
        let who = process.as_deref().map(|p| (p, p.pid));
        let mut ev = self.enricher.event(host::boottime_ns(), who, Payload::ArtifactIdentified(identified));
        ev.severity = severity.max(Severity::Info) as i32;
        self.publish(ev);
        let reported = self.reported_findings.get_or_insert_mut(identity, Default::default);
        let fresh: Vec<_> = report
            .findings
            .iter()
            .filter(|f| f.severity > modelwatch_artifact::Severity::Info && reported.insert(f.code.clone()))
            .cloned()
            .collect();
        for f in fresh {
            let mut finding = art::policy_finding(&report, &identity, &f);
            if let Some(file) = &mut finding.file {
                file.path = kernel_path.clone();
            }
            let mut ev = self.enricher.event(host::boottime_ns(), who, Payload::PolicyFinding(finding));
            ev.severity = art::severity(f.severity) as i32;
            self.publish(ev);
        }
    }
}
