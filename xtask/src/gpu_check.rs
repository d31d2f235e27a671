//! `cargo xtask gpu-check`: a real CUDA inference with the sensor running, and a check of what
//! the sensor reported about it. The root integration tests run without a GPU (accelerators
//! are simulated there); this is the check that the NVIDIA path works on real hardware.
//!
//! The engine is llama.cpp's CUDA build as npm `node-llama-cpp` ships it prebuilt
//! (`@node-llama-cpp/linux-x64-cuda`, CUDA 13, with a CUDA 12 build in `linux-x64-cuda-ext`),
//! with the CUDA runtime and cuBLAS from PyPI: about 1.5 GB, where PyTorch's CUDA wheels are
//! over 4 GB, and the same engine and model generator as the CPU test in `engines.rs`, so a
//! difference between the two runs is the GPU's.
//!
//! Checks, for the inference process (`node`):
//! - a `session_started` on an accelerator, on a `/dev/nvidia*` node, with the GGUF as its model;
//! - NVML attribution: GPU utilisation and GPU memory attributed to its pid (session updates or
//!   the session's totals above zero);
//! - ioctl categories on `/dev/nvidia*`: memory work decoded, and few commands unknown to the
//!   tables (NVIDIA's proprietary driver submits work through user-mapped doorbells, not
//!   ioctls, so "submit" is not expected there);
//! - a `session_ended` at its exit.
//!
//! Without an NVIDIA GPU and driver it fails at once, saying so: it never passes vacuously.

use std::{
    fmt::Write as _,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::engines;

#[derive(clap::Args)]
pub struct GpuCheckArgs {
    /// Also write the report to docs/gpu-check.md.
    #[arg(long)]
    record: bool,
    /// Seconds llama.cpp generates for (NVML's per-process samples need the GPU busy a while).
    #[arg(long, default_value_t = 20)]
    seconds: u32,
}

const REPORT_PATH: &str = "docs/gpu-check.md";

pub fn gpu_check(root: &Path, args: &GpuCheckArgs) -> anyhow::Result<()> {
    let gpu = detect_gpu()?;
    crate::require_root("cargo xtask gpu-check")?;
    crate::setup::setup(root)?;
    engines::ensure_cuda(root)?;
    crate::build(false)?;

    let work = std::env::temp_dir().join(format!("modelwatch-gpu-check-{}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let result = check(root, &work, &gpu, args);
    let _ = std::fs::remove_dir_all(&work);
    let report = result?;
    print!("{}", report.markdown);
    if args.record {
        std::fs::write(root.join(REPORT_PATH), &report.markdown).context("writing docs/gpu-check.md")?;
        println!("wrote {REPORT_PATH}");
    }
    if report.failed > 0 {
        bail!("gpu-check: {} of {} checks failed", report.failed, report.total);
    }
    println!("gpu-check: all {} checks passed", report.total);
    Ok(())
}

struct Gpu {
    driver: String,
    names: Vec<String>,
}

/// An NVIDIA driver is loaded, a GPU node exists and NVML is loadable; otherwise the error says
/// which of these is missing.
fn detect_gpu() -> anyhow::Result<Gpu> {
    let version = std::fs::read_to_string("/proc/driver/nvidia/version").map_err(|e| {
        anyhow::anyhow!(
            "no NVIDIA GPU here: /proc/driver/nvidia/version cannot be read ({e}), so no NVIDIA driver is \
             loaded. gpu-check needs an NVIDIA GPU with its driver; it checks nothing without one."
        )
    })?;
    let has_node = std::fs::read_dir("/dev")
        .context("listing /dev")?
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_str().is_some_and(is_gpu_node));
    if !has_node {
        bail!("no NVIDIA GPU here: the driver is loaded but there is no /dev/nvidia<N> node");
    }
    let nvml_found = Command::new("sh")
        .args(["-c", "ldconfig -p | grep -q 'libnvidia-ml.so.1'"])
        .status()
        .is_ok_and(|s| s.success());
    if !nvml_found {
        bail!(
            "libnvidia-ml.so.1 (NVML, from the NVIDIA driver) is not in the linker cache: the sensor attributes GPU use through it"
        );
    }
    let driver = version.lines().next().unwrap_or("").trim().to_owned();
    let names = Command::new("nvidia-smi")
        .args(["--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().map(str::to_owned).collect())
        .unwrap_or_default();
    Ok(Gpu { driver, names })
}

fn is_gpu_node(name: &str) -> bool {
    name.strip_prefix("nvidia").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

struct Report {
    markdown: String,
    failed: usize,
    total: usize,
}

fn check(root: &Path, work: &Path, gpu: &Gpu, args: &GpuCheckArgs) -> anyhow::Result<Report> {
    let python = engines::python(root);
    let model = work.join("gpu-check-llama.gguf");
    crate::run(Command::new(&python).arg(root.join("tests/engines/models.py")).arg("gguf").arg(&model))?;
    let model_path = std::fs::canonicalize(&model).context("model path")?.to_string_lossy().into_owned();

    let events_path = work.join("events.jsonl");
    let config = work.join("modelwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[sensor]\nstate_dir = \"{state}\"\n[api]\nsocket = \"{sock}\"\n\
             [telemetry]\nnvml = true\ninterval_ms = 200\n[sessions]\nupdate_interval_ms = 1000\n",
            state = work.join("state").display(),
            sock = work.join("api.sock").display()
        ),
    )
    .context("writing the sensor config")?;
    let bin = root.join("target/debug/modelwatch");
    let mut sensor = Command::new(&bin)
        .args(["run", "--config"])
        .arg(&config)
        .args(["--format", "json"])
        .env("MODELWATCH_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&events_path).context("creating the events file")?)
        .stderr(std::fs::File::create(work.join("sensor.log")).context("creating the sensor log")?)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let outcome = (|| -> anyhow::Result<(u32, Duration, String)> {
        let health = wait_for(&events_path, Duration::from_secs(60), |e| kind(e) == "sensor_health")
            .context("the sensor did not report health within 60 s")?;
        if health["sensor_health"]["state"] != "HEALTH_STATE_OK" {
            bail!("the sensor is not healthy: {health}");
        }
        let started = Instant::now();
        let mut node = Command::new("node")
            .arg(root.join("tests/engines/llama.mjs"))
            .arg(engines::cuda_node_modules(root))
            .arg(&model)
            .arg(args.seconds.to_string())
            .arg("cuda")
            .env("LD_LIBRARY_PATH", cuda_library_path(root))
            .stdout(Stdio::piped())
            .spawn()
            .context("starting node")?;
        let pid = node.id();
        let mut line = String::new();
        if let Some(out) = node.stdout.take() {
            BufReader::new(out).read_line(&mut line).context("reading node's output")?;
        }
        let status = node.wait().context("waiting for node")?;
        let took = started.elapsed();
        if !status.success() {
            bail!("the CUDA inference failed ({status}); the engine said: {}", line.trim());
        }
        // The session ends at the exit; the sensor reports it after its next exit record.
        let _ = wait_for(&events_path, Duration::from_secs(30), |e| {
            kind(e) == "session_ended" && e["process"]["pid"].as_u64() == Some(u64::from(pid))
        });
        Ok((pid, took, line.trim().to_owned()))
    })();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(sensor.id() as i32, libc::SIGTERM) };
    let _ = sensor.wait();
    let (pid, took, engine_said) = outcome.map_err(|e| {
        let log = std::fs::read_to_string(work.join("sensor.log")).unwrap_or_default();
        e.context(format!("sensor log:\n{log}"))
    })?;
    let events = read_events(&events_path)?;
    Ok(judge(&events, pid, &model_path, gpu, took, &engine_said))
}

/// Every folder under the PyPI CUDA libraries that holds a shared library, before the
/// existing LD_LIBRARY_PATH.
fn cuda_library_path(root: &Path) -> String {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>, depth: u32) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let mut has_lib = false;
        for e in entries.filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() && depth < 6 {
                walk(&p, out, depth + 1);
            } else if p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("lib") && n.contains(".so"))
            {
                has_lib = true;
            }
        }
        if has_lib {
            out.push(dir.to_owned());
        }
    }
    let mut dirs = Vec::new();
    walk(&engines::cuda_libs(root), &mut dirs, 0);
    let mut parts: Vec<String> = dirs.iter().map(|d| d.to_string_lossy().into_owned()).collect();
    if let Ok(old) = std::env::var("LD_LIBRARY_PATH") {
        parts.push(old);
    }
    parts.join(":")
}

fn kind(e: &Value) -> &str {
    const ENVELOPE: [&str; 9] =
        ["schema_version", "event_id", "seq", "event_time", "observed_time", "host", "process", "severity", "run_id"];
    e.as_object().and_then(|o| o.keys().find(|k| !ENVELOPE.contains(&k.as_str()))).map_or("", String::as_str)
}

fn read_events(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    // A line cut by the sensor's stop is not an event.
    Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

fn wait_for(path: &Path, timeout: Duration, pred: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(e) = read_events(path)?.into_iter().find(|e| pred(e)) {
            return Ok(e);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0.0),
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        _ => 0.0,
    }
}

fn judge(events: &[Value], pid: u32, model: &str, gpu: &Gpu, took: Duration, engine_said: &str) -> Report {
    let mine = |e: &&Value| e["process"]["pid"].as_u64() == Some(u64::from(pid));
    let mut checks: Vec<(bool, String, String)> = Vec::new();

    let started = events.iter().filter(mine).find(|e| kind(e) == "session_started");
    let s = started.map(|e| &e["session_started"]);
    let id = s.and_then(|s| s["session_id"].as_str()).unwrap_or("").to_owned();
    checks.push((
        s.is_some(),
        "session_started for the inference process".into(),
        s.map_or("none".into(), |s| {
            format!("engine={} runtime={} confidence={}", s["engine"], s["runtime"], s["confidence"])
        }),
    ));
    let on_nvidia = s.map(|s| {
        s["accelerators"]
            .as_array()
            .map(|a| a.iter().filter_map(|d| d["path"].as_str()).map(str::to_owned).collect::<Vec<_>>())
            .unwrap_or_default()
    });
    checks.push((
        s.is_some_and(|s| s["engine"] == "SESSION_ENGINE_ACCELERATOR")
            && on_nvidia.as_ref().is_some_and(|a| a.iter().any(|p| p.starts_with("/dev/nvidia"))),
        "the session runs on an accelerator, a /dev/nvidia* node".into(),
        format!("{on_nvidia:?}"),
    ));
    let models: Vec<String> = s
        .and_then(|s| s["models"].as_array())
        .map(|m| m.iter().filter_map(|m| m["file"]["path"].as_str()).map(str::to_owned).collect())
        .unwrap_or_default();
    checks.push((models.iter().any(|m| m == model), "the session's model is the GGUF".into(), format!("{models:?}")));

    // NVML attribution: the session's usage, from its updates and its end.
    let usage: Vec<&Value> = events
        .iter()
        .filter(|e| {
            (kind(e) == "session_updated" && e["session_updated"]["session_id"] == id.as_str())
                || (kind(e) == "session_ended" && e["session_ended"]["session_id"] == id.as_str())
        })
        .flat_map(|e| {
            let p = &e[kind(e)];
            [&p["interval"], &p["total"]]
        })
        .collect();
    let sm_max =
        usage.iter().map(|u| num(&u["gpu_sm_percent_max"]).max(num(&u["gpu_sm_percent_avg"]))).fold(0.0, f64::max);
    let mem_peak =
        usage.iter().map(|u| num(&u["gpu_memory_peak_bytes"]).max(num(&u["gpu_memory_bytes"]))).fold(0.0, f64::max);
    checks.push((
        sm_max > 0.0,
        "NVML: GPU utilisation attributed to the pid".into(),
        format!("highest SM utilisation {sm_max:.1}%"),
    ));
    checks.push((
        mem_peak > 0.0,
        "NVML: GPU memory attributed to the pid".into(),
        format!("peak {:.1} MiB", mem_peak / f64::from(1 << 20)),
    ));

    // ioctls of the process on NVIDIA nodes, by category and by device.
    let mut by_category: std::collections::BTreeMap<String, f64> = Default::default();
    let mut by_device: std::collections::BTreeMap<String, f64> = Default::default();
    for e in events.iter().filter(mine).filter(|e| kind(e) == "accelerator_activity") {
        let a = &e["accelerator_activity"];
        let dev = a["device"]["path"].as_str().unwrap_or("").to_owned();
        if !dev.starts_with("/dev/nvidia") {
            continue;
        }
        *by_device.entry(dev).or_default() += num(&a["total"]);
        for c in a["categories"].as_array().into_iter().flatten() {
            *by_category.entry(c["category"].as_str().unwrap_or("").to_owned()).or_default() += num(&c["count"]);
        }
    }
    let all: f64 = by_category.values().sum();
    let unknown = by_category.get("IOCTL_CATEGORY_UNKNOWN").copied().unwrap_or(0.0);
    checks.push((
        by_category.get("IOCTL_CATEGORY_MEMORY").is_some_and(|n| *n > 0.0),
        "ioctls on /dev/nvidia*: memory work decoded".into(),
        format!("{by_category:?} on {by_device:?}"),
    ));
    checks.push((
        all > 0.0 && unknown / all <= 0.10,
        "ioctls on /dev/nvidia*: at most 10% unknown to the tables".into(),
        format!("{unknown} of {all} unknown"),
    ));

    let ended = events
        .iter()
        .filter(mine)
        .find(|e| kind(e) == "session_ended" && e["session_ended"]["session_id"] == id.as_str());
    checks.push((
        ended.is_some_and(|e| e["session_ended"]["reason"] == "SESSION_END_REASON_PROCESS_EXIT"),
        "session_ended at the process's exit".into(),
        ended.map_or("none".into(), |e| {
            format!("{} after {:.1}s", e["session_ended"]["reason"], num(&e["session_ended"]["duration_ns"]) / 1e9)
        }),
    ));

    let failed = checks.iter().filter(|(ok, ..)| !ok).count();
    let mut md = String::new();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let _ = writeln!(md, "# GPU check\n");
    let _ = writeln!(
        md,
        "`cargo xtask gpu-check --record` on {date}, commit {commit}: llama.cpp's CUDA build \
         (node-llama-cpp) generating with a generated GGUF while the sensor ran.\n"
    );
    let _ = writeln!(md, "- driver: {}", gpu.driver);
    for n in &gpu.names {
        let _ = writeln!(md, "- GPU: {n}");
    }
    let _ = writeln!(md, "- inference: pid {pid}, {engine_said}, {:.1}s\n", took.as_secs_f64());
    let _ = writeln!(md, "| check | result | observed |\n|---|---|---|");
    for (ok, what, seen) in &checks {
        let _ = writeln!(md, "| {what} | {} | {} |", if *ok { "pass" } else { "FAIL" }, seen.replace('|', "\\|"));
    }
    let _ = writeln!(md, "\n{} of {} checks passed.", checks.len() - failed, checks.len());
    Report { markdown: md, failed, total: checks.len() }
}

#[cfg(test)]
mod tests {
    //! The judging runs only where a GPU is; here it is checked on the schema's golden events
    //! (an NVIDIA session of pid 4242 on /dev/nvidia0), so a field-name slip shows without one.

    use super::*;

    fn golden(name: &str) -> Value {
        let path = format!("{}/../sensor-user/tests/golden/{name}.json", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    const MODEL: &str = "/home/alice/.cache/huggingface/hub/models--meta-llama--Llama-3.1-8B/blobs/9f1c";

    fn gpu() -> Gpu {
        Gpu { driver: "test".into(), names: vec![] }
    }

    fn failed(events: &[Value]) -> Vec<String> {
        let r = judge(events, 4242, MODEL, &gpu(), Duration::from_secs(1), "generated 1 tokens");
        r.markdown.lines().filter(|l| l.contains("| FAIL |")).map(str::to_owned).collect()
    }

    #[test]
    fn a_complete_nvidia_session_passes_every_check() {
        let mut activity = golden("accelerator_activity");
        activity["accelerator_activity"]["categories"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({ "category": "IOCTL_CATEGORY_MEMORY", "count": "30" }));
        let events = [golden("session_started"), golden("session_updated"), activity, golden("session_ended")];
        assert_eq!(failed(&events), Vec::<String>::new());
    }

    #[test]
    fn missing_pieces_fail_their_checks_and_nothing_passes_vacuously() {
        // Only queries on the device: no memory work decoded.
        let events = [golden("session_started"), golden("session_updated"), golden("accelerator_activity")];
        let f = failed(&events);
        assert!(f.iter().any(|l| l.contains("memory work decoded")), "{f:?}");
        assert!(f.iter().any(|l| l.contains("session_ended")), "{f:?}");
        assert_eq!(f.len(), 2, "{f:?}");
        // Nothing at all: every check fails.
        let r = judge(&[], 4242, MODEL, &gpu(), Duration::from_secs(1), "");
        assert_eq!(r.failed, r.total);
        // Another process's session is not this one's.
        assert_eq!(judge(&events, 1, MODEL, &gpu(), Duration::from_secs(1), "").failed, r.total);
    }

    #[test]
    fn gpu_nodes_are_the_numbered_ones() {
        assert!(is_gpu_node("nvidia0") && is_gpu_node("nvidia12"));
        assert!(!is_gpu_node("nvidiactl") && !is_gpu_node("nvidia-uvm") && !is_gpu_node("nvidia"));
    }
}
