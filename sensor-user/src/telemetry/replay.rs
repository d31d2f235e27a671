//! Replayed utilisation: samples recorded as JSON lines (one [`ProcessGpuSample`] per line),
//! read as the file grows. Each line is delivered once, at the next sampling tick. Lets the
//! session logic run end to end on machines with no GPU.

use std::{
    io::{Read as _, Seek as _, SeekFrom},
    path::PathBuf,
};

use super::{GpuTelemetry, ProcessGpuSample, Snapshot, SourceState};

/// Most bytes read per tick; the rest waits for the next one.
const MAX_READ: u64 = 1 << 20;

pub struct ReplayTelemetry {
    path: PathBuf,
    offset: u64,
    bad_lines: u64,
    /// Inside a line too long to keep: bytes are dropped up to its end.
    discarding: bool,
}

impl ReplayTelemetry {
    pub fn new(path: PathBuf) -> Self {
        Self { path, offset: 0, bad_lines: 0, discarding: false }
    }

    fn read_new(&mut self) -> Vec<ProcessGpuSample> {
        let Ok(mut f) = std::fs::File::open(&self.path) else { return Vec::new() };
        // A file cut shorter than what was read (rotated, rewritten) starts over.
        if f.metadata().is_ok_and(|m| m.len() < self.offset) {
            tracing::warn!(file = %self.path.display(), "replay file shrank; reading it from the start");
            self.offset = 0;
        }
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut buf = Vec::new();
        if f.take(MAX_READ).read_to_end(&mut buf).is_err() {
            return Vec::new();
        }
        let mut start = 0;
        if self.discarding {
            let Some(nl) = buf.iter().position(|b| *b == b'\n') else {
                self.offset += buf.len() as u64;
                return Vec::new();
            };
            self.discarding = false;
            start = nl + 1;
        }
        // Only complete lines; a partial last line is read again next time.
        let Some(end) = buf[start..].iter().rposition(|b| *b == b'\n').map(|e| start + e) else {
            if buf.len() as u64 == MAX_READ {
                // A line longer than a whole read can never complete: drop it.
                self.offset += buf.len() as u64;
                self.discarding = true;
                self.bad_lines += 1;
                tracing::warn!(file = %self.path.display(), "replay line longer than {MAX_READ} bytes skipped");
            } else {
                self.offset += start as u64;
            }
            return Vec::new();
        };
        self.offset += end as u64 + 1;
        let mut out = Vec::new();
        for line in buf[start..end].split(|b| *b == b'\n') {
            let line = String::from_utf8_lossy(line);
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<ProcessGpuSample>(&line) {
                Ok(s) => out.push(s),
                Err(e) => {
                    self.bad_lines += 1;
                    tracing::warn!(file = %self.path.display(), "replay line skipped: {e}");
                }
            }
        }
        out
    }
}

impl GpuTelemetry for ReplayTelemetry {
    fn name(&self) -> &'static str {
        "replay"
    }

    fn state(&self) -> SourceState {
        SourceState::Available(format!("replaying {} ({} bad lines)", self.path.display(), self.bad_lines))
    }

    fn sample(&mut self, _pids: &[u32]) -> Snapshot {
        Snapshot { processes: self.read_new() }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn delivers_each_complete_line_once_and_skips_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("samples.jsonl");
        let mut f = std::fs::File::create(&path).unwrap();
        writeln!(f, "{{\"pid\":7,\"device\":\"/dev/nvidia0\",\"sm_percent\":55.5,\"memory_bytes\":1000}}").unwrap();
        writeln!(f, "not json").unwrap();
        write!(f, "{{\"pid\":8").unwrap(); // incomplete
        f.flush().unwrap();
        let mut t = ReplayTelemetry::new(path.clone());
        let s = t.sample(&[]);
        assert_eq!(s.processes.len(), 1);
        assert_eq!(s.processes[0].sm_percent, Some(55.5));
        assert_eq!(t.bad_lines, 1);
        assert!(t.sample(&[]).processes.is_empty(), "no line twice");
        writeln!(f, ",\"sm_percent\":1.0}}").unwrap();
        f.flush().unwrap();
        let s = t.sample(&[]);
        assert_eq!(s.processes.len(), 1);
        assert_eq!(s.processes[0].pid, 8);
        let mut missing = ReplayTelemetry::new(dir.path().join("nope"));
        assert!(missing.sample(&[]).processes.is_empty());

        // A line longer than a read is dropped whole; the next line still arrives.
        write!(f, "{}", "x".repeat(MAX_READ as usize + 10)).unwrap();
        writeln!(f).unwrap();
        writeln!(f, "{{\"pid\":9}}").unwrap();
        f.flush().unwrap();
        let got: Vec<u32> = (0..4).flat_map(|_| t.sample(&[]).processes).map(|p| p.pid).collect();
        assert_eq!(got, [9]);
        assert_eq!(t.bad_lines, 2);

        // Rewritten shorter: read again from the start.
        std::fs::write(&path, "{\"pid\":10}\n").unwrap();
        assert_eq!(t.sample(&[]).processes.iter().map(|p| p.pid).collect::<Vec<_>>(), [10]);
    }
}
