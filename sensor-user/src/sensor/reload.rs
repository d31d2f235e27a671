//! Configuration reload on SIGHUP. It owns the decision of what a new configuration file
//! changes: the difference between the running configuration and the new one, key by key,
//! split into settings applied live and settings that keep their running value until a
//! restart (they are built into the loaded probes, the sinks' threads, the API server or the
//! analyzer's threads). The running sensor applies the plan ([`Sensor::on_reload`]) and says
//! what it did in a `sensor_health` event.
//!
//! The file is read and validated in full (as at start) off the event loop; an invalid file
//! changes nothing. The approved-model manifest is re-read on every SIGHUP, as before.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, SystemTime},
};

use modelwatch_artifact::service::AnalyzerHandle;
use serde_json::Value;
use tokio::sync::mpsc::{Receiver, channel};

use super::{Sensor, session_config};
use crate::{
    config::{Config, ConfigError},
    proto::v1::{HealthState, event::Payload},
    status::ConfigView,
};

/// The settings a reload applies to the running sensor (dotted keys of the TOML file). Every
/// other key keeps its running value until a restart; `docs/configuration.md` has the table.
pub const LIVE: &[&str] = &[
    "files.extensions",
    "files.model_dirs",
    "files.runtime_libraries",
    "files.suppress_known_non_models",
    "files.report_non_models",
    "files.fold_window_ms",
    "sessions.update_interval_ms",
    "sessions.idle_timeout_ms",
    "sessions.cpu_busy_percent",
    "sessions.runtime_executables",
    "sessions.non_inference_executables",
    "devices.drain_interval_ms",
    "sensor.housekeeping_ms",
    "telemetry.interval_ms",
];

/// The settings whose change means the event loop's timers are set anew.
const TIMERS: &[&str] = &["devices.drain_interval_ms", "sensor.housekeeping_ms", "telemetry.interval_ms"];

/// Where the running configuration came from, for the reload to read again.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub path: PathBuf,
    /// Named on the command line: it must exist. The default path may be absent (defaults).
    pub explicit: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("cannot compare the configurations: {0}")]
    Compare(#[from] serde_json::Error),
}

/// What a new configuration changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Changed keys applied live.
    pub applied: Vec<String>,
    /// Changed keys that keep their running value until a restart.
    pub restart: Vec<String>,
    /// The configuration in force after the reload: the new file's live settings, the running
    /// values of the others.
    pub effective: Config,
}

impl Plan {
    /// Whether the event loop's timers have to be set anew.
    pub fn timers_changed(&self) -> bool {
        self.applied.iter().any(|k| TIMERS.contains(&k.as_str()))
    }

    fn changed(&self, key: &str) -> bool {
        self.applied.iter().any(|k| k == key)
    }
}

/// Compares `old` (running) with `new` (validated) key by key.
pub fn plan(old: &Config, new: &Config) -> Result<Plan, ReloadError> {
    let old_v = serde_json::to_value(old)?;
    let new_v = serde_json::to_value(new)?;
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    leaves(&old_v, "", &mut a);
    leaves(&new_v, "", &mut b);
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let (mut applied, mut restart) = (Vec::new(), Vec::new());
    for key in keys {
        // A key on one side only is a change: an optional table set or unset.
        if a.get(key) == b.get(key) {
            continue;
        }
        if LIVE.contains(&key.as_str()) { &mut applied } else { &mut restart }.push(key.clone());
    }
    // A table that appears or goes (`[output.jsonl]`) is named once, not with each of its keys.
    let named = restart.clone();
    restart.retain(|k| !named.iter().any(|p| k.starts_with(&format!("{p}."))));
    let mut effective = old_v;
    for key in &applied {
        let pointer = format!("/{}", key.replace('.', "/"));
        if let (Some(slot), Some(v)) = (effective.pointer_mut(&pointer), new_v.pointer(&pointer)) {
            *slot = v.clone();
        }
    }
    let effective = serde_json::from_value(effective)?;
    Ok(Plan { applied, restart, effective })
}

/// Every leaf of `v` (tables are walked, arrays are values) by its dotted key.
fn leaves(v: &Value, prefix: &str, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                leaves(v, &key, out);
            }
        }
        _ => {
            out.insert(prefix.to_owned(), v.clone());
        }
    }
}

/// The configuration as TOML for `modelwatch config --effective`, secrets left out.
pub fn render(cfg: &Config) -> String {
    let mut shown = cfg.clone();
    for sasl in [shown.output.kafka.sasl.as_mut()].into_iter().flatten() {
        if sasl.password.is_some() {
            sasl.password = Some("(set; not shown)".into());
        }
    }
    toml::to_string(&shown).unwrap_or_else(|e| format!("# the configuration cannot be shown as TOML: {e}\n"))
}

/// The view of the configuration the API's `Config` call shows.
pub fn view(cfg: &Config, source: &ConfigSource, restart_pending: Vec<String>) -> ConfigView {
    ConfigView { path: source.path.clone(), toml: render(cfg), loaded_at: Some(SystemTime::now()), restart_pending }
}

/// On each SIGHUP: the manifest is re-read (when one is configured) and the configuration file
/// read and validated again; the result goes to the event loop. Registered before the sensor
/// reports ready, so a SIGHUP right after start is neither missed nor fatal (its default
/// action terminates).
pub fn on_sighup(source: ConfigSource, analyzer: Option<AnalyzerHandle>) -> Receiver<Result<Config, ConfigError>> {
    let (tx, rx) = channel(4);
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        tracing::debug!("no async runtime: no reload on SIGHUP");
        return rx;
    };
    let registered = {
        let _enter = rt.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    };
    match registered {
        Ok(mut sig) => {
            rt.spawn(async move {
                while sig.recv().await.is_some() {
                    tracing::info!(path = %source.path.display(), "SIGHUP: reloading the configuration");
                    if let Some(a) = &analyzer {
                        a.reload_manifest();
                    }
                    let s = source.clone();
                    let loaded = tokio::task::spawn_blocking(move || Config::load(&s.path, s.explicit)).await;
                    let Ok(loaded) = loaded else { continue };
                    if tx.send(loaded).await.is_err() {
                        break;
                    }
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot watch SIGHUP; the configuration is not reloaded"),
    }
    rx
}

impl Sensor {
    /// Applies a reloaded configuration (or reports why there is none) and publishes a
    /// `sensor_health` event saying what happened. Returns whether the loop's timers changed.
    pub(super) fn on_reload(&mut self, loaded: Result<Config, ConfigError>) -> bool {
        let path = self.config_source.path.display().to_string();
        let new = match loaded {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("configuration not reloaded, the running one stays: {e}");
                self.reload_health(HealthState::Degraded, format!("configuration not reloaded: {e}"));
                return false;
            }
        };
        let plan = match plan(&self.cfg, &new) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("configuration not reloaded, the running one stays: {e}");
                self.reload_health(HealthState::Degraded, format!("configuration {path} not reloaded: {e}"));
                return false;
            }
        };
        for key in &plan.restart {
            tracing::warn!("setting {key} changed; restart to apply (the running value stays)");
        }
        let failed = self.apply(&plan).err();
        let mut message = if plan.applied.is_empty() && plan.restart.is_empty() {
            format!("configuration {path} reloaded: nothing changed")
        } else {
            let list = |v: &[String]| if v.is_empty() { "nothing".to_owned() } else { v.join(", ") };
            format!("configuration {path} reloaded: applied {}", list(&plan.applied))
        };
        if !plan.restart.is_empty() {
            message.push_str(&format!("; restart to apply: {}", plan.restart.join(", ")));
        }
        let state = match &failed {
            Some(e) => {
                message.push_str(&format!("; applying failed: {e}"));
                HealthState::Degraded
            }
            None => HealthState::Ok,
        };
        tracing::info!("{message}");
        if let Ok(mut s) = self.status.lock() {
            s.config = Some(view(&self.cfg, &self.config_source, plan.restart.clone()));
        }
        self.reload_health(state, message);
        plan.timers_changed()
    }

    /// Applies the plan's live settings one by one; the running configuration follows each one
    /// that took effect, so after an error it still says what is in force.
    fn apply(&mut self, plan: &Plan) -> Result<(), crate::loader::LoaderError> {
        let new = &plan.effective;
        if plan.changed("files.extensions") {
            self.maps.set_extensions(new.files.extensions.iter().map(String::as_str))?;
            self.cfg.files.extensions = new.files.extensions.clone();
        }
        if plan.changed("files.runtime_libraries") {
            self.maps.set_runtime_libraries(new.files.runtime_libraries.iter().map(String::as_str))?;
            self.cfg.files.runtime_libraries = new.files.runtime_libraries.clone();
        }
        if plan.changed("files.model_dirs") {
            self.model_dirs.retain(&new.files.model_dirs, &mut self.maps)?;
            self.cfg.files.model_dirs = new.files.model_dirs.clone();
            // Those that exist and are new join when the lookup returns.
            self.model_dirs.look_for(&self.cfg.files.model_dirs, &mut self.resolver);
        }
        let f = &new.files;
        self.artifacts.set_mark_non_models(f.suppress_known_non_models);
        self.gate.configure(f.report_non_models, Duration::from_millis(f.fold_window_ms));
        let mut cfg = plan.effective.clone();
        // What the kernel maps hold is already in `self.cfg`; the rest is plain settings.
        cfg.files.extensions = std::mem::take(&mut self.cfg.files.extensions);
        cfg.files.runtime_libraries = std::mem::take(&mut self.cfg.files.runtime_libraries);
        cfg.files.model_dirs = std::mem::take(&mut self.cfg.files.model_dirs);
        self.cfg = cfg;
        self.tracker.set_config(session_config(&self.cfg));
        Ok(())
    }

    fn reload_health(&self, state: HealthState, message: String) {
        let mut ev = self.health(HealthState::Ok);
        if let Some(Payload::SensorHealth(h)) = &mut ev.payload {
            if state != HealthState::Ok {
                h.state = state as i32;
            }
            h.message = if h.message.is_empty() { message } else { format!("{message}; {}", h.message) };
        }
        self.publish(ev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse(text, std::path::Path::new("t.toml")).expect("valid")
    }

    #[test]
    fn nothing_changed_is_an_empty_plan() {
        let p = plan(&Config::default(), &parse("")).unwrap();
        assert!(p.applied.is_empty() && p.restart.is_empty(), "{p:?}");
        assert_eq!(p.effective, Config::default());
    }

    #[test]
    fn live_settings_are_applied_and_the_others_keep_their_running_value() {
        let old = parse("[files]\nextensions = [\".mwreload1\"]\n[output.kafka]\nenabled = false\n");
        let new = parse(
            "[files]\nextensions = [\".mwreload2\"]\nfold_window_ms = 0\nsize_threshold = \"1GiB\"\n\
             [sessions]\nruntime_executables = [\"mw-engine\"]\n[sensor]\nring_buffer_kib = 64\n\
             [telemetry]\ninterval_ms = 500\n",
        );
        let p = plan(&old, &new).unwrap();
        assert_eq!(
            p.applied,
            ["files.extensions", "files.fold_window_ms", "sessions.runtime_executables", "telemetry.interval_ms"]
        );
        assert_eq!(p.restart, ["files.size_threshold", "sensor.ring_buffer_kib"]);
        assert_eq!(p.effective.files.extensions, [".mwreload2"]);
        assert_eq!(p.effective.files.fold_window_ms, 0);
        assert_eq!(p.effective.sessions.runtime_executables, ["mw-engine"]);
        assert_eq!(p.effective.files.size_threshold, old.files.size_threshold);
        assert_eq!(p.effective.sensor.ring_buffer_kib, old.sensor.ring_buffer_kib);
        assert!(p.timers_changed());
    }

    #[test]
    fn a_table_that_appears_is_named_once() {
        let new = parse("[output.jsonl]\npath = \"/var/log/mw.jsonl\"\n");
        let p = plan(&Config::default(), &new).unwrap();
        assert_eq!(p.restart, ["output.jsonl"]);
        assert!(p.applied.is_empty());
        assert_eq!(p.effective.output.jsonl, None);
        assert!(!p.timers_changed());
    }

    #[test]
    fn sinks_api_probes_and_the_analyzer_need_a_restart() {
        let new = parse(
            "[output]\nstdout = false\n[output.syslog]\nenabled = true\naddress = \"siem:6514\"\n\
             [api]\nsubscriber_queue = 64\n[artifact]\nhash_workers = 3\n[sensor]\nfile_events_per_sec = 5\n",
        );
        let p = plan(&Config::default(), &new).unwrap();
        assert!(p.applied.is_empty(), "{p:?}");
        for key in [
            "output.stdout",
            "output.syslog.enabled",
            "output.syslog.address",
            "api.subscriber_queue",
            "artifact.hash_workers",
            "sensor.file_events_per_sec",
        ] {
            assert!(p.restart.iter().any(|k| k == key), "{key} in {:?}", p.restart);
        }
        assert_eq!(p.effective, Config::default());
    }

    #[test]
    fn every_live_key_is_a_key_of_the_configuration() {
        let mut all = BTreeMap::new();
        leaves(&serde_json::to_value(Config::default()).unwrap(), "", &mut all);
        for key in LIVE {
            assert!(all.contains_key(*key), "{key}");
        }
    }

    #[test]
    fn the_effective_configuration_renders_as_toml_that_parses_back_without_secrets() {
        let cfg = parse(
            "[files]\nextensions = [\".mwreload2\"]\n[output.jsonl]\npath = \"/var/log/mw.jsonl\"\n\
             [output.kafka]\nenabled = true\nbrokers = [\"k:9092\"]\n[output.kafka.sasl]\n\
             mechanism = \"PLAIN\"\nusername = \"u\"\npassword = \"hunter2\"\n",
        );
        let text = render(&cfg);
        assert!(!text.contains("hunter2"), "{text}");
        let back = parse(&text);
        let mut expected = cfg.clone();
        if let Some(s) = expected.output.kafka.sasl.as_mut() {
            s.password = Some("(set; not shown)".into());
        }
        assert_eq!(back, expected, "{text}");
    }
}
