//! The sensor's state as the API's Status call shows it: a read-mostly view the sensor loop
//! updates and the API reads, and the channel through which the API asks the loop for live
//! kernel counters.

use std::{
    sync::{Arc, Mutex},
    time::SystemTime,
};

use crate::{loader::KernelStats, proto::v1::LossSource};

/// Shared, read-mostly view of the sensor for the API's Status call.
#[derive(Debug, Clone, Default)]
pub struct StatusView {
    pub started_at: Option<SystemTime>,
    pub probes_attached: Vec<String>,
    pub probes_skipped: Vec<String>,
    pub kernel: KernelStats,
    pub decode_errors: u64,
    pub devices_watched: Vec<String>,
    pub nvml: String,
    /// Candidates whose content was not a model, per kind of candidate.
    pub candidates_rejected: std::collections::BTreeMap<String, u64>,
    /// Model events folded into an earlier one (`repeats`).
    pub model_events_folded: u64,
    /// Model events reported without a content verdict.
    pub model_events_unidentified: u64,
    /// Not-a-model verdicts served from the persisted verdict cache.
    pub verdicts_from_cache: u64,
    /// The configuration in force (set at start and by each reload).
    pub config: Option<ConfigView>,
    /// Every loss counter of the sensor's loss ledger with the total reported so far (what
    /// the stream's `EventsLost` events add up to), zero for those that never grew.
    pub losses: Vec<(LossSource, &'static str, u64)>,
    /// Files waiting for the analyzer (identification).
    pub artifacts_queued: u64,
    /// Inference sessions running now.
    pub sessions_active: u64,
}

/// The configuration in force, as `modelwatch config --effective` shows it.
#[derive(Debug, Clone, Default)]
pub struct ConfigView {
    /// The file it was read from (or would have been: the default path when absent).
    pub path: std::path::PathBuf,
    /// The configuration as TOML, secrets left out.
    pub toml: String,
    /// When it was loaded (start or the last reload).
    pub loaded_at: Option<SystemTime>,
    /// Settings the file changes that keep their running value until a restart.
    pub restart_pending: Vec<String>,
}

pub type SharedStatus = Arc<Mutex<StatusView>>;

/// Asks the sensor loop for fresh kernel counters (the API's Status reads them live).
pub type StatsRequest = tokio::sync::oneshot::Sender<KernelStats>;
