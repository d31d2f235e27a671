//! SIGHUP reloads the approved-model manifest and reads the configuration file again. In its
//! own test binary: the signal goes to the whole process.

use std::time::Duration;

use modelwatch_artifact::{
    ArtifactConfig,
    service::{Analyzer, ArtifactUpdate},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_manifest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("manifest.json");
    std::fs::write(&manifest, r#"{"model": []}"#).expect("write");
    // Polling off: only the signal can cause the reload.
    let cfg = ArtifactConfig { manifest: Some(manifest.clone()), manifest_poll_secs: 0, ..Default::default() };
    let (tx, rx) = std::sync::mpsc::channel();
    let h = Analyzer::start(&cfg, dir.path(), tx).expect("start");
    // The default path, absent: the configuration read again is the defaults.
    let source = modelwatch::sensor::ConfigSource { path: dir.path().join("absent.toml"), explicit: false };
    let mut reloads = modelwatch::sensor::reload_on_sighup(source, Some(h.clone()));
    std::fs::write(&manifest, format!(r#"{{"model": [], "deny": [{{"sha256": "{}"}}]}}"#, "d".repeat(64)))
        .expect("write");
    // SAFETY: raising a signal the sensor handles.
    assert_eq!(unsafe { libc::raise(libc::SIGHUP) }, 0);
    let denied = tokio::task::spawn_blocking(move || {
        loop {
            let u = rx.recv_timeout(Duration::from_secs(120)).expect("hang guard");
            if let ArtifactUpdate::ManifestReloaded { denied, .. } = u {
                break denied;
            }
        }
    })
    .await
    .expect("join");
    assert_eq!(denied, 1);
    let reloaded = tokio::time::timeout(Duration::from_secs(120), reloads.recv()).await.expect("hang guard");
    assert_eq!(reloaded.expect("sender alive").expect("valid"), modelwatch::config::Config::default());
    assert_eq!(h.stats().manifest_reloads, 1);
    h.shutdown();
}
