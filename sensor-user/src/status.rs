//! The sensor's state as the API's Status call shows it: a read-mostly view the sensor loop
//! updates and the API reads, and the channel through which the API asks the loop for live
//! kernel counters.

use std::{
    sync::{Arc, Mutex},
    time::SystemTime,
};

use crate::loader::KernelStats;

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
}

pub type SharedStatus = Arc<Mutex<StatusView>>;

/// Asks the sensor loop for fresh kernel counters (the API's Status reads them live).
pub type StatsRequest = tokio::sync::oneshot::Sender<KernelStats>;
