//! Sinks: where the event stream is written (stdout, a rotated JSON-lines file, and the network
//! sinks: Kafka and syslog, each behind a spool on local disk).
//!
//! A sink is a [`Sink`] implementation driven by its own thread from its own bus
//! subscription, so blocking I/O in one sink never delays the sensor or another sink, and
//! every event a sink sees has already been numbered by the bus. What a sink cannot keep up
//! with is counted by the bus and arrives as an `EventsLost` event in the sink's own output.
//!
//! The network sinks ([`network`]) are built differently: their intake thread appends to the
//! spool ([`crate::spool`]) and a delivery thread sends from it through a [`network::Transport`]
//! ([`kafka`], [`syslog`]); [`report`] turns their losses and spool trouble into `EventsLost`
//! and health events.

pub mod kafka;
pub mod network;
pub mod report;
pub mod syslog;

use std::{
    fs::{File, OpenOptions},
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    thread::JoinHandle,
};

use crate::{
    bus::{Bus, SharedEvent},
    config::{JsonFormat, OutputFormat},
    filter::Filter,
    output::render,
};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("cannot start the thread of sink {name}: {source}")]
    Thread { name: String, source: std::io::Error },
}

/// Failed writes logged per sink at most once per this interval (the counters and Status
/// carry the rest): a full disk must not flood the log with one line per event.
const WARN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Something that writes events somewhere.
pub trait Sink: Send + 'static {
    /// Name shown in status, e.g. `stdout` or `jsonl:/var/log/modelwatch/events.jsonl`.
    fn name(&self) -> String;
    fn write(&mut self, ev: &SharedEvent) -> Result<(), SinkError>;
    /// Called when no event is waiting, and at shutdown.
    fn flush(&mut self) -> Result<(), SinkError>;
}

/// How long a sink waits for more events after its queue ran empty, before flushing and
/// sleeping: bounds wake-ups under load, adds at most this much latency.
const BATCH_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// Counters of a running sink.
#[derive(Debug, Clone, Default)]
pub struct SinkStats {
    pub name: String,
    pub written: u64,
    pub failed: u64,
    pub last_error: String,
    pub last_error_time: Option<std::time::SystemTime>,
    /// Network sinks: delivery and spool.
    pub delivery: Option<network::DeliveryStats>,
}

pub struct SinkHandle {
    pub stats: Arc<Mutex<SinkStats>>,
    thread: Option<JoinHandle<()>>,
}

impl SinkHandle {
    /// Waits for the sink to drain its queue; the bus must have been closed first.
    pub fn join(mut self) {
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            let name = self.stats.lock().map(|s| s.name.clone()).unwrap_or_default();
            tracing::error!(sink = %name, "sink thread panicked; events it had queued are lost");
        }
    }

    pub fn stats(&self) -> SinkStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Subscribes `sink` to the bus and runs it on its own thread.
pub fn spawn(bus: &Bus, mut sink: Box<dyn Sink>, capacity: usize) -> Result<SinkHandle, SinkError> {
    let name = sink.name();
    let mut sub = bus.subscribe(&name, Filter::default(), capacity, true);
    let stats = Arc::new(Mutex::new(SinkStats { name: name.clone(), ..Default::default() }));
    let shared = stats.clone();
    let name_for_error = name.clone();
    let thread = std::thread::Builder::new()
        .name(format!("sink {name}"))
        .spawn(move || {
            let record = |r: Result<(), SinkError>, wrote: bool| {
                if let Ok(mut s) = shared.lock() {
                    match r {
                        Ok(()) if wrote => s.written += 1,
                        Ok(()) => {}
                        Err(e) => {
                            s.failed += 1;
                            s.last_error = e.to_string();
                            s.last_error_time = Some(std::time::SystemTime::now());
                        }
                    }
                }
            };
            let mut last_warning: Option<std::time::Instant> = None;
            while let Some(ev) = sub.rx.blocking_recv() {
                let mut next = Some(ev);
                while let Some(ev) = next.take() {
                    let r = sink.write(&ev);
                    if let Err(e) = &r
                        && last_warning.is_none_or(|t| t.elapsed() >= WARN_INTERVAL)
                    {
                        last_warning = Some(std::time::Instant::now());
                        tracing::warn!(sink = %name, "write failed: {e} (further failures are counted in status)");
                    }
                    record(r, true);
                    next = sub.rx.try_recv().ok();
                    if next.is_none() {
                        // Let a few more events gather before sleeping on the channel again:
                        // under load, one wake-up per millisecond instead of one per event.
                        std::thread::sleep(BATCH_PAUSE);
                        next = sub.rx.try_recv().ok();
                    }
                }
                record(sink.flush(), false);
            }
            record(sink.flush(), false);
        })
        .map_err(|source| SinkError::Thread { name: name_for_error, source })?;
    Ok(SinkHandle { stats, thread: Some(thread) })
}

/// Standard output: compact lines, or JSON lines (proto3 JSON or OCSF).
pub struct StdoutSink {
    format: OutputFormat,
    color: bool,
    out: BufWriter<std::io::Stdout>,
    buf: Vec<u8>,
}

impl StdoutSink {
    pub fn new(format: OutputFormat, color: bool) -> Self {
        Self {
            format,
            color,
            out: BufWriter::with_capacity(64 * 1024, std::io::stdout()),
            buf: Vec::with_capacity(4096),
        }
    }
}

impl Sink for StdoutSink {
    fn name(&self) -> String {
        "stdout".into()
    }

    fn write(&mut self, ev: &SharedEvent) -> Result<(), SinkError> {
        let io = |source| SinkError::Io { path: "stdout".into(), source };
        match self.format {
            // Straight into the buffered writer: no intermediate String per event.
            OutputFormat::Json => {
                self.buf.clear();
                crate::output::write_json(&mut self.buf, ev);
                self.buf.push(b'\n');
                self.out.write_all(&self.buf).map_err(io)
            }
            OutputFormat::Compact | OutputFormat::Ocsf => {
                writeln!(self.out, "{}", render(ev, self.format, self.color)).map_err(io)
            }
        }
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|source| SinkError::Io { path: "stdout".into(), source })
    }
}

/// A JSON-lines file rotated by size: `events.jsonl` → `events.jsonl.1` → … → `.keep`.
pub struct JsonlFileSink {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    format: JsonFormat,
    out: BufWriter<File>,
    written: u64,
}

impl JsonlFileSink {
    /// A sink writing the proto3 JSON mapping.
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> Result<Self, SinkError> {
        Self::open_as(path, max_bytes, keep, JsonFormat::Json)
    }

    pub fn open_as(path: &Path, max_bytes: u64, keep: u32, format: JsonFormat) -> Result<Self, SinkError> {
        let io = |source| SinkError::Io { path: path.display().to_string(), source };
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(io)?;
        let written = file.metadata().map_or(0, |m| m.len());
        Ok(Self { path: path.to_owned(), max_bytes, keep, format, out: BufWriter::new(file), written })
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    fn rotate(&mut self) -> Result<(), SinkError> {
        let io = |source| SinkError::Io { path: self.path.display().to_string(), source };
        self.out.flush().map_err(io)?;
        if self.keep == 0 {
            std::fs::remove_file(&self.path).map_err(io)?;
        } else {
            for n in (1..self.keep).rev() {
                let from = self.rotated(n);
                if from.exists() {
                    std::fs::rename(&from, self.rotated(n + 1)).map_err(io)?;
                }
            }
            std::fs::rename(&self.path, self.rotated(1)).map_err(io)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&self.path).map_err(io)?;
        self.out = BufWriter::new(file);
        self.written = 0;
        Ok(())
    }
}

impl Sink for JsonlFileSink {
    fn name(&self) -> String {
        format!("jsonl:{}", self.path.display())
    }

    fn write(&mut self, ev: &SharedEvent) -> Result<(), SinkError> {
        let line = match self.format {
            JsonFormat::Json => crate::output::json_line(ev),
            JsonFormat::Ocsf => crate::ocsf::json_line(ev),
        };
        if self.written > 0 && self.written + line.len() as u64 + 1 > self.max_bytes {
            self.rotate()?;
        }
        writeln!(self.out, "{line}")
            .map_err(|source| SinkError::Io { path: self.path.display().to_string(), source })?;
        self.written += line.len() as u64 + 1;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|source| SinkError::Io { path: self.path.display().to_string(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::{Event, ProcessExit, event::Payload};

    fn ev(code: i32) -> Event {
        Event {
            payload: Some(Payload::ProcessExit(ProcessExit { exit_code: code, ..Default::default() })),
            ..Default::default()
        }
    }

    #[test]
    fn jsonl_sink_writes_every_event_and_rotates_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let bus = Bus::new();
        let sink = JsonlFileSink::open(&path, 2000, 2).unwrap();
        let handle = spawn(&bus, Box::new(sink), 1024).unwrap();
        for i in 0..60 {
            bus.publish(ev(i));
        }
        drop(bus); // closes the subscription: the sink drains and stops
        let stats = handle.stats.clone();
        handle.join();
        assert_eq!(stats.lock().unwrap().written, 60);
        let mut seqs = Vec::new();
        for p in [path.with_extension("jsonl.2"), path.with_extension("jsonl.1"), path.clone()] {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            assert!(text.len() as u64 <= 2000, "{} is {} bytes", p.display(), text.len());
            for line in text.lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                seqs.push(v["seq"].as_str().unwrap().parse::<u64>().unwrap());
            }
        }
        // Older files were dropped beyond `keep`; what is left is the newest, contiguous run.
        assert!(!seqs.is_empty());
        assert_eq!(*seqs.last().unwrap(), 60);
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    }

    #[test]
    fn jsonl_sink_writes_ocsf_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.ocsf.jsonl");
        let bus = Bus::new();
        let sink = JsonlFileSink::open_as(&path, 1 << 20, 1, JsonFormat::Ocsf).unwrap();
        let handle = spawn(&bus, Box::new(sink), 16).unwrap();
        bus.publish(ev(3));
        drop(bus);
        handle.join();
        let text = std::fs::read_to_string(&path).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!((v["class_uid"].as_u64(), v["activity_id"].as_u64()), (Some(1007), Some(2)));
        assert_eq!(v["exit_code"], 3);
        assert_eq!(v["metadata"]["sequence"], 1, "numbered by the bus, a number");
    }
}
