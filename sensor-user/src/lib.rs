//! modelwatch collector: the library behind the `modelwatch` binary.
//!
//! Data flows one way: `probes` (kernel) → `decode` → `enrich` (+ `process` table) → `bus`
//! (sequence numbers, fan-out) → `sink`s and the API. `sensor` owns the loop that wires these.
pub mod accel;
pub mod api;
pub mod bus;
pub mod cli;
pub mod commands;
pub mod config;
pub mod decode;
pub mod enrich;
pub mod filter;
pub mod host;
pub mod loader;
pub mod logging;
pub mod metrics;
pub mod mounts;
pub mod notify;
pub mod ocsf;
pub mod offsets;
pub mod output;
pub mod privileges;
pub mod process;
pub mod proto;
pub mod sensor;
pub mod session;
pub mod sink;
pub mod spool;
pub mod status;
pub mod telemetry;
pub mod users;
