//! The sensor's side of artifact analysis: which file version an event is about, what is
//! already known of it, and what to do when the analyzer learns more (publish, mark the inode
//! in the kernel, tell the session tracker).

use super::*;

/// How long a file's stat(2) identity is trusted before it is checked again.
const IDENTITY_TTL: Duration = Duration::from_secs(2);

/// Bound on the per-file bookkeeping above.
const MAX_ARTIFACT_FILES: usize = 16_384;

impl Sensor {
    /// What is known about a file a process opened or mapped; unknown versions are queued for
    /// analysis. The file is found through the process's root (it may live in another mount
    /// namespace) and must still be the inode the kernel reported.
    pub(super) fn artifact_for(
        &mut self,
        p: &Arc<ProcessInfo>,
        path: &str,
        ino: u64,
        kdev: u32,
        size: u64,
    ) -> Option<crate::proto::v1::ArtifactSummary> {
        use std::os::unix::fs::MetadataExt as _;
        let key = (kdev, ino, size);
        let (identity, file) = match self.identities.get(&key) {
            Some((id, file, at)) if at.elapsed() < IDENTITY_TTL => (*id, file.clone()),
            _ => {
                let candidates = [PathBuf::from(format!("/proc/{}/root{path}", p.pid)), PathBuf::from(path)];
                let mounts = &mut self.mounts;
                let (file, md) = candidates.into_iter().find_map(|c| {
                    let m = std::fs::metadata(&c).ok().filter(|m| m.ino() == ino)?;
                    // stat's device is the kernel's except on btrfs subvolumes and some
                    // overlays; then the mount table decides.
                    let same = kernel_dev_from_user(m.dev()) == kdev || mounts.kernel_dev(&c, m.dev()) == kdev;
                    same.then_some((c, m))
                })?;
                if !md.is_file() {
                    return None;
                }
                let identity = FileIdentity::from_metadata(&md);
                if self.identities.len() >= MAX_ARTIFACT_FILES {
                    self.identities.clear();
                }
                self.identities.insert(key, (identity, file.clone(), Instant::now()));
                (identity, file)
            }
        };
        if self.artifact_files.len() >= MAX_ARTIFACT_FILES {
            self.artifact_files.clear();
            self.reported_findings.clear();
        }
        self.artifact_files.insert(identity, (p.clone(), path.to_owned(), kdev));
        match self.analyzer.lookup(&identity) {
            Some(report) => Some(art::summary(&report, &identity)),
            None => {
                self.analyzer.submit(ArtifactRequest { path: file, identity });
                None
            }
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
        } else if self.cfg.files.suppress_known_non_models && matches!(report.format, Format::NotAModel | Format::Unknown) {
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
        let severity = report.max_severity().map(art::severity).unwrap_or(Severity::Info);
        let who = process.as_deref().map(|p| (p, p.pid));
        let mut ev = self.enricher.event(host::boottime_ns(), who, Payload::ArtifactIdentified(identified));
        ev.severity = severity.max(Severity::Info) as i32;
        self.publish(ev);
        let reported = self.reported_findings.entry(identity).or_default();
        let fresh: Vec<_> = report
            .findings
            .iter()
            .filter(|f| f.severity > crate::artifact::Severity::Info && reported.insert(f.code.clone()))
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
