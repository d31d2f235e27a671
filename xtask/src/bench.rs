//! `cargo xtask bench`: what the sensor costs, measured on this machine, next to doing nothing,
//! next to the kernel's own price for the tracepoints (empty programs on the same attach
//! points), and next to a peer (bpftrace counting per process on the same tracepoints).
//!
//! 1. Syscall overhead: loops pinned to CPU 1 (`mw-bench loops`), the sensor pinned to CPU 0,
//!    configurations alternated round by round, CPU time per call from the loop thread's CPU
//!    clock. Minimum and median over the rounds.
//! 2. Overhead on real work (`workloads`): Python start-up, extracting a tarball, grep, C
//!    compilation and git on a tmpfs, measured as the CPU time of each workload's process tree
//!    under the same configurations. `--only workloads` runs just this step.
//! 3. Throughput without loss: `mw-bench generate` opens a reportable file at stepped rates;
//!    the kernel's produced/dropped counters and the collector's published count must
//!    reconcile exactly; collector CPU per event from /proc.
//! 4. Memory: collector RSS and peak RSS at idle and after the highest loss-free rate; BPF map
//!    memory from the sensor's fdinfo.
//! 5. Artifact hashing throughput on a page-cached 1 GiB file.
//! 6. The Kafka sink, against a local tansu broker (when `cargo xtask setup` installed it):
//!    events per second delivered with zero loss, collector CPU per event with the sink on,
//!    spool bytes written per event, and how long the backlog of a simulated one-hour outage
//!    takes to drain. `--only kafka` runs just this step (and prints it, leaving BENCHMARKS.md
//!    alone).
//!
//! Writes BENCHMARKS.md and a JSON file with the raw figures (`--compare OLD.json` prints the
//! differences against an earlier run). `--before OLD_BINARY` makes it an A/B run: an earlier
//! build of the sensor is one more configuration of the same rounds (alternated with the others,
//! in the syscall loops and the workloads)
//! and its throughput is measured right after the current one's, so a change is judged against
//! the run-to-run spread on the same warm machine, not against another day's figures.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::{cargo, run};

mod workloads;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Compare with the raw figures of an earlier run (its JSON file).
    #[arg(long, value_name = "OLD.json")]
    compare: Option<PathBuf>,
    /// Rounds per configuration (at least 7 for the report).
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Scale of the loop iteration counts.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Short steps and fewer rounds: a smoke run, not for BENCHMARKS.md.
    #[arg(long)]
    quick: bool,
    /// Where the raw figures go.
    #[arg(long, default_value = "docs/bench/latest.json")]
    json: PathBuf,
    /// Where the report goes.
    #[arg(long, default_value = "BENCHMARKS.md")]
    markdown: PathBuf,
    /// Only rewrite the report from the existing raw figures (after editing the notes).
    #[arg(long)]
    render: bool,
    /// A/B: an earlier `modelwatch` binary measured in the same run as configuration `before`.
    #[arg(long, value_name = "OLD_BINARY")]
    before: Option<PathBuf>,
    /// Run one step only and print its table (`kafka`, `workloads`, `probes`); BENCHMARKS.md is
    /// left as it is.
    #[arg(long, value_name = "STEP", value_parser = ["kafka", "workloads", "probes"])]
    only: Option<String>,
}

/// Analysis appended to the generated report.
const NOTES: &str = "docs/bench/notes.md";

const LOOPS: [&str; 6] =
    ["getppid", "open_close_small", "open_close_gguf", "mmap_munmap_1g", "ioctl_watched", "ioctl_unwatched"];
const CONFIGS: [&str; 4] = ["off", "empty", "modelwatch", "bpftrace"];
/// The extra configuration of an A/B run (`--before`).
const BEFORE: &str = "before";

pub fn run_bench(root: &Path, args: BenchArgs) -> anyhow::Result<()> {
    if args.render {
        let results = read_json(&args.json)?;
        write_report(root, &args.markdown, &results)?;
        return print_comparison(args.compare.as_deref(), &results);
    }
    crate::require_root("cargo xtask bench")?;
    // Loops run on CPU 1 and tracers on CPU 0, so they never share a core.
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    if cpus < 2 {
        bail!("cargo xtask bench needs at least 2 CPUs (found {cpus})");
    }
    let started = Instant::now();
    crate::setup::ensure_apt("bpftrace", "bpftrace")?;
    println!("bench: building release binaries");
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "modelwatch",
        "--bin",
        "modelwatch",
        "-p",
        "modelwatch-tests",
        "--bin",
        "mw-bench",
    ]))?;
    let bin = root.join("target/release/modelwatch");
    let driver = root.join("target/release/mw-bench");
    let dir = tempdir()?;
    fixtures(&dir, args.only.is_none())?;
    let rounds = if args.quick { 2 } else { args.rounds.max(1) };
    let scale = if args.quick { args.scale * 0.2 } else { args.scale };

    if let Some(b) = &args.before
        && !b.is_file()
    {
        bail!("--before {}: no such binary", b.display());
    }
    if args.only.as_deref() == Some("workloads") {
        let tracepoints = attach_points(&bin, &dir)?;
        let w = workloads::workloads(&bin, &driver, &dir, rounds, args.quick, args.before.as_deref(), &tracepoints)?;
        let results = json!({ "date": now_utc(), "machine": machine(), "quick": args.quick, "workloads": w });
        let out = root.join("docs/bench/workloads-latest.json");
        std::fs::write(&out, serde_json::to_string_pretty(&results)?)
            .with_context(|| format!("writing {}", out.display()))?;
        println!("{}", workloads::section(&w, args.quick));
        println!("bench: wrote {} in {:.0?} (BENCHMARKS.md left as it is)", out.display(), started.elapsed());
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(());
    }
    if args.only.as_deref() == Some("probes") {
        let c = probe_costs(&bin, args.before.as_deref(), &driver, &dir, scale)?;
        println!("{}", probe_costs_section(&c));
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(());
    }
    if args.only.as_deref() == Some("kafka") {
        let tansu = crate::setup::tansu_path(root);
        if !tansu.exists() {
            bail!("{} not found: run `cargo xtask setup`", tansu.display());
        }
        let k = kafka(&bin, &driver, &dir, &tansu, args.quick)?;
        let results = json!({ "date": now_utc(), "machine": machine(), "quick": args.quick, "kafka": k });
        let out = root.join("docs/bench/kafka-latest.json");
        std::fs::write(&out, serde_json::to_string_pretty(&results)?)
            .with_context(|| format!("writing {}", out.display()))?;
        println!("{}", kafka_section(&k, args.quick));
        println!("bench: wrote {} in {:.0?} (BENCHMARKS.md left as it is)", out.display(), started.elapsed());
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(());
    }
    let tracepoints = attach_points(&bin, &dir)?;
    let overhead = syscall_overhead(&bin, &driver, &dir, rounds, scale, args.before.as_deref(), &tracepoints)?;
    let costs = probe_costs(&bin, args.before.as_deref(), &driver, &dir, scale)?;
    let work = workloads::workloads(&bin, &driver, &dir, rounds, args.quick, args.before.as_deref(), &tracepoints)?;
    let after = throughput(&bin, &driver, &dir, args.quick)?;
    let before = match &args.before {
        Some(b) => throughput(b, &driver, &dir, args.quick)?,
        None => Value::Null,
    };
    println!("bench: hashing");
    let hashing = json_out(Command::new(&driver).arg("hash").arg(dir.join("random-1g.bin")))?;
    let tansu = crate::setup::tansu_path(root);
    let kafka_results = if tansu.exists() {
        kafka(&bin, &driver, &dir, &tansu, args.quick)?
    } else {
        println!("bench: {} not found (`cargo xtask setup` installs it): no Kafka sink figures", tansu.display());
        Value::Null
    };
    let results = json!({
        "date": now_utc(),
        "machine": machine(),
        "rounds": rounds,
        "scale": scale,
        "quick": args.quick,
        "overhead": overhead,
        "probe_costs": costs,
        "workloads": work,
        "throughput": after,
        "throughput_before": before,
        "before_binary": args.before.as_ref().map(|b| b.display().to_string()),
        "hashing": hashing,
        "kafka": kafka_results,
        "wall_seconds": started.elapsed().as_secs(),
    });
    if let Some(parent) = args.json.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("writing {}", args.json.display()))?;
    write_report(root, &args.markdown, &results)?;
    println!("bench: wrote {} and {} in {:.0?}", args.markdown.display(), args.json.display(), started.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
    print_comparison(args.compare.as_deref(), &results)
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn print_comparison(old: Option<&Path>, results: &Value) -> anyhow::Result<()> {
    if let Some(old) = old {
        print!("{}", compare(&read_json(old)?, results));
    }
    Ok(())
}

/// Writes the report: the generated tables, then the hand-written analysis (what the figures
/// mean, what was changed because of them), kept beside the raw figures so a new run never
/// erases it.
fn write_report(root: &Path, path: &Path, results: &Value) -> anyhow::Result<()> {
    let notes = match std::fs::read_to_string(root.join(NOTES)) {
        Ok(notes) => notes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {NOTES}")),
    };
    std::fs::write(path, format!("{}\n{notes}", markdown(results)))
        .with_context(|| format!("writing {}", path.display()))
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("mw-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).context("creating the bench directory")?;
    Ok(dir)
}

fn fixtures(dir: &Path, hashing: bool) -> anyhow::Result<()> {
    std::fs::write(dir.join("small.txt"), b"not a model\n")?;
    std::fs::write(dir.join("model.gguf"), b"GGUF\x03\x00\x00\x00")?;
    std::fs::write(dir.join("burst.mwbench"), b"x")?;
    let f = std::fs::File::create(dir.join("sparse-1g.bin"))?;
    f.set_len(1 << 30)?;
    // Real bytes for hashing (a sparse file would hash holes, not the page cache).
    let random = dir.join("random-1g.bin");
    if hashing && !random.exists() {
        run(Command::new("dd")
            .args(["if=/dev/urandom", "bs=1M", "count=1024", "status=none"])
            .arg(format!("of={}", random.display())))?;
    }
    // The benches open one file from one process as fast as they can: the per-process rate
    // limit is set so high that it runs (its cost is in the figures) but never drops a record.
    let common = format!(
        "[api]\nsocket = \"{d}/api.sock\"\n[sensor]\nstate_dir = \"{d}/state\"\nfile_events_per_sec = 1000000\nfile_events_burst = 1048576\n",
        d = dir.display()
    );
    std::fs::write(
        dir.join("overhead.toml"),
        format!("[devices]\nextra = [\"/dev/full\"]\n[files]\nsuppress_known_non_models = false\n{common}"),
    )?;
    std::fs::write(
        dir.join("throughput.toml"),
        format!(
            "[files]\nextensions = [\".mwbench\"]\nsize_threshold = \"1024GiB\"\nmodel_dirs = []\nsuppress_known_non_models = false\nreport_non_models = true\nfold_window_ms = 0\n{common}"
        ),
    )?;
    Ok(())
}

fn json_out(cmd: &mut Command) -> anyhow::Result<Value> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("running {shown}"))?;
    if !out.status.success() {
        bail!("{shown} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("{shown} printed no JSON"))
}

/// A tracer or sensor running for one configuration.
struct Running {
    child: Child,
}

impl Running {
    fn stop(mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// How to tell that a started tracer is attached.
enum Ready<'a> {
    /// It prints a line containing this.
    Line(&'a str),
    /// Its API answers `status` on this socket (its stdout goes to /dev/null, so a slow reader
    /// here can never hold the sensor back).
    Socket(&'a Path, &'a Path),
}

/// Starts a child pinned to CPU 0 and waits until it is attached.
fn start_pinned(program: &Path, args: &[&str], ready: Ready<'_>) -> anyhow::Result<Running> {
    let mut cmd = Command::new("taskset");
    cmd.arg("-c").arg("0").arg(program).args(args).stderr(Stdio::null());
    match ready {
        Ready::Line(_) => cmd.stdout(Stdio::piped()),
        Ready::Socket(..) => cmd.stdout(Stdio::null()),
    };
    let mut child = cmd.spawn().with_context(|| format!("starting {}", program.display()))?;
    match ready {
        Ready::Line(text) => {
            let stdout = child.stdout.take().context("stdout")?;
            let (tx, rx) = std::sync::mpsc::channel();
            let text = text.to_owned();
            std::thread::spawn(move || {
                let mut seen = false;
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if !seen && line.contains(&text) {
                        seen = true;
                        let _ = tx.send(());
                    }
                }
            });
            rx.recv_timeout(Duration::from_secs(60)).context("waiting for the tracer to attach")?;
        }
        Ready::Socket(bin, sock) => {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let ok = Command::new(bin)
                    .args(["status", "--socket"])
                    .arg(sock)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                if ok.is_ok_and(|s| s.success()) {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    bail!("the sensor did not come up");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    Ok(Running { child })
}

fn start_config(
    config: &str,
    bin: &Path,
    driver: &Path,
    dir: &Path,
    tracepoints: &[String],
) -> anyhow::Result<Option<Running>> {
    Ok(match config {
        "off" => None,
        "empty" => Some(start_pinned(driver, &["baseline"], Ready::Line("attached"))?),
        "modelwatch" => Some(start_sensor(bin, dir, "overhead.toml")?),
        "bpftrace" => {
            let script = format!("{} {{ @[pid] = count(); }}", tracepoints.join(", "));
            Some(start_pinned(Path::new("bpftrace"), &["-e", &script], Ready::Line("Attaching"))?)
        }
        other => bail!("unknown configuration {other}"),
    })
}

/// The sensor `bin` pinned to CPU 0 with the configuration `dir/config`, once its API answers.
fn start_sensor(bin: &Path, dir: &Path, config: &str) -> anyhow::Result<Running> {
    let cfg = config_for(bin, &dir.join(config))?;
    let sock = dir.join("api.sock");
    start_pinned(
        bin,
        &["run", "--format", "json", "--config", cfg.to_str().context("path")?],
        Ready::Socket(bin, &sock),
    )
}

/// `config` as `bin` takes it: an earlier build (`--before`) refuses keys added since, so they
/// are left out one by one as it names them (their defaults then are what that build did
/// anyway: it had no such setting) and said on the console. The current build takes the file
/// as it is.
fn config_for(bin: &Path, config: &Path) -> anyhow::Result<PathBuf> {
    let mut text = std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let mut dropped = Vec::new();
    let mut path = config.to_path_buf();
    loop {
        let out = Command::new(bin)
            .args(["config", "--check"])
            .arg(&path)
            .output()
            .with_context(|| format!("running {} config --check", bin.display()))?;
        if out.status.success() {
            if !dropped.is_empty() {
                println!(
                    "bench: {} does not know {}: left out of its {}",
                    bin.display(),
                    dropped.join(", "),
                    config.display()
                );
            }
            return Ok(path);
        }
        let err = String::from_utf8_lossy(&out.stderr);
        let unknown = err
            .split("unknown field `")
            .nth(1)
            .or_else(|| err.split("unknown key `").nth(1))
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned);
        let Some(key) = unknown.filter(|k| !dropped.contains(k)) else {
            bail!("{} refuses {}: {err}", bin.display(), path.display());
        };
        text = text.lines().filter(|l| l.split('=').next().map(str::trim) != Some(key.as_str())).fold(
            String::new(),
            |mut t, l| {
                t.push_str(l);
                t.push('\n');
                t
            },
        );
        dropped.push(key);
        let stem = config.file_stem().and_then(|s| s.to_str()).unwrap_or("config");
        path = config.with_file_name(format!("{stem}-compatible.toml"));
        std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
}

/// The attach points modelwatch uses on this kernel, in bpftrace's syntax (bpftrace 0.17 has
/// no raw tracepoints: sched_process_fork is taken as a regular tracepoint).
fn attach_points(bin: &Path, dir: &Path) -> anyhow::Result<Vec<String>> {
    let sensor = start_config("modelwatch", bin, Path::new(""), dir, &[])?.context("sensor")?;
    let status = json_out(Command::new(bin).args(["status", "--format", "json", "--socket"]).arg(dir.join("api.sock")));
    sensor.stop();
    let status = status?;
    let probes = status["probes_attached"].as_array().context("probes_attached")?;
    Ok(probes
        .iter()
        .filter_map(Value::as_str)
        .map(|p| match p.strip_prefix("raw_tracepoint/") {
            Some(name) => format!("tracepoint:sched:{name}"),
            None => format!("tracepoint:{}", p.replace('/', ":")),
        })
        .collect())
}

/// Run time of each of the sensor's BPF programs over one pass of the syscall loops, from the
/// kernel's own accounting (`kernel.bpf_stats_enabled`, on only for this step: it adds two clock
/// reads to every program run), for this build and the earlier one.
fn probe_costs(bin: &Path, before: Option<&Path>, driver: &Path, dir: &Path, scale: f64) -> anyhow::Result<Value> {
    println!("bench: per-program run time (bpf_stats)");
    let knob = Path::new("/proc/sys/kernel/bpf_stats_enabled");
    let was = std::fs::read_to_string(knob).with_context(|| format!("reading {}", knob.display()))?;
    std::fs::write(knob, "1").with_context(|| format!("writing {}", knob.display()))?;
    let measure = |bin: &Path| -> anyhow::Result<Value> {
        let sensor = start_config("modelwatch", bin, driver, dir, &[])?.context("sensor")?;
        let pid = sensor.pid();
        let start = prog_stats(pid);
        let out = json_out(Command::new(driver).args(["loops", "1"]).arg(dir).arg(scale.to_string()));
        let end = prog_stats(pid);
        sensor.stop();
        out?;
        let (start, end) = (start?, end?);
        Ok(end
            .iter()
            .map(|(name, (ns, runs))| {
                let (ns0, runs0) = start.get(name).copied().unwrap_or_default();
                let (ns, runs) = (ns - ns0, runs - runs0);
                (name.clone(), json!({ "runs": runs, "run_time_ns": ns, "ns_per_run": ns as f64 / runs.max(1) as f64 }))
            })
            .collect::<serde_json::Map<_, _>>()
            .into())
    };
    let after = measure(bin);
    let earlier = before.map(measure).transpose();
    let _ = std::fs::write(knob, was.trim());
    Ok(json!({ "after": after?, "before": earlier? }))
}

/// Cumulative (run time ns, runs) of the BPF programs that process `pid` holds (their
/// descriptors' fdinfo), by name (the kernel keeps 15 characters of it: programs whose names
/// share them are added up).
fn prog_stats(pid: u32) -> anyhow::Result<BTreeMap<String, (u64, u64)>> {
    let names: BTreeMap<u64, String> = json_out(Command::new("bpftool").args(["-j", "prog", "show"]))?
        .as_array()
        .context("bpftool prog show: not an array")?
        .iter()
        .filter_map(|p| Some((p["id"].as_u64()?, p["name"].as_str()?.to_owned())))
        .collect();
    let fdinfo = PathBuf::from(format!("/proc/{pid}/fdinfo"));
    let mut per_prog: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for entry in std::fs::read_dir(&fdinfo).with_context(|| format!("reading {}", fdinfo.display()))? {
        let Ok(text) = std::fs::read_to_string(entry?.path()) else { continue };
        let field =
            |key: &str| text.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.trim().parse::<u64>().ok());
        // Program descriptors (not links, which name a program too) carry the run counters.
        if let (Some(id), Some(ns), Some(runs)) = (field("prog_id:"), field("run_time_ns:"), field("run_cnt:")) {
            per_prog.insert(id, (ns, runs));
        }
    }
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (id, (ns, runs)) in per_prog {
        let e = out.entry(names.get(&id).cloned().unwrap_or_else(|| format!("prog {id}"))).or_default();
        e.0 += ns;
        e.1 += runs;
    }
    Ok(out)
}

/// The per-program table of the report.
fn probe_costs_section(c: &Value) -> String {
    let Some(after) = c["after"].as_object() else { return String::new() };
    let before = c["before"].as_object();
    let mut o = String::from(
        "## Per-program run time (kernel.bpf_stats_enabled, one pass of the loops above)\n\n\
         Mean run time of each of modelwatch's programs per invocation, as the kernel accounts it \
         (the programs' own work, without the tracepoint's entry cost that *empty* measures).\n\n",
    );
    let ns = |v: &Value| format!("{:.0}", f(&v["ns_per_run"]));
    if before.is_some() {
        o.push_str("| program | runs | ns / run | before: runs | before: ns / run |\n|---|---|---|---|---|\n");
    } else {
        o.push_str("| program | runs | ns / run |\n|---|---|---|\n");
    }
    for (name, v) in after {
        o.push_str(&format!("| {name} | {} | {}", num(&v["runs"]), ns(v)));
        if let Some(b) = before {
            match b.get(name) {
                Some(bv) => o.push_str(&format!(" | {} | {}", num(&bv["runs"]), ns(bv))),
                None => o.push_str(" | - | -"),
            }
        }
        o.push_str(" |\n");
    }
    o.push('\n');
    o
}

fn syscall_overhead(
    bin: &Path,
    driver: &Path,
    dir: &Path,
    rounds: usize,
    scale: f64,
    before: Option<&Path>,
    tracepoints: &[String],
) -> anyhow::Result<Value> {
    let mut configs = CONFIGS.to_vec();
    if before.is_some() {
        configs.insert(3, BEFORE);
    }
    println!(
        "bench: syscall overhead, {rounds} rounds x {} configurations on {} attach points",
        configs.len(),
        tracepoints.len()
    );
    let mut samples: BTreeMap<&str, BTreeMap<&str, Vec<f64>>> = BTreeMap::new();
    for round in 0..rounds {
        // Alternate the order so slow drift does not favour one configuration.
        let order: Vec<&str> = if round % 2 == 0 { configs.clone() } else { configs.iter().rev().copied().collect() };
        for config in order {
            // `before` is the sensor too, from the earlier binary.
            let running = match (config, before) {
                (BEFORE, Some(old)) => start_config("modelwatch", old, driver, dir, tracepoints)?,
                _ => start_config(config, bin, driver, dir, tracepoints)?,
            };
            let out = json_out(Command::new(driver).args(["loops", "1"]).arg(dir).arg(scale.to_string()));
            if let Some(r) = running {
                r.stop();
            }
            let out = out?;
            for l in LOOPS {
                let v = out[l].as_f64().with_context(|| format!("loop {l} missing"))?;
                samples.entry(config).or_default().entry(l).or_default().push(v);
            }
            println!(
                "  round {}/{rounds} {config:>10}: open small {:.0} ns",
                round + 1,
                out["open_close_small"].as_f64().unwrap_or(0.0)
            );
        }
    }
    let stats = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        json!({ "min": s[0], "median": s[s.len() / 2], "samples": v })
    };
    let mut out = serde_json::Map::new();
    for (config, loops) in &samples {
        let mut m = serde_json::Map::new();
        for (l, v) in loops {
            m.insert((*l).to_owned(), stats(v));
        }
        out.insert((*config).to_owned(), Value::Object(m));
    }
    out.insert("attach_points".into(), json!(tracepoints));
    Ok(Value::Object(out))
}

fn proc_status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of a process, ns.
fn cpu_ns(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    (t(11) + t(12)) * (1_000_000_000 / hz)
}

/// Bytes of BPF map memory held by a process (fdinfo `memlock` of its map fds).
fn bpf_map_bytes(pid: u32) -> u64 {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else { return 0 };
    rd.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter(|t| t.contains("map_type:"))
        .filter_map(|t| t.lines().find_map(|l| l.strip_prefix("memlock:")).and_then(|v| v.trim().parse::<u64>().ok()))
        .sum()
}

fn num(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

struct Counts {
    produced: u64,
    dropped: u64,
    consumed: u64,
    sink_dropped: u64,
}

fn counts(bin: &Path, sock: &Path) -> anyhow::Result<Counts> {
    let s = json_out(Command::new(bin).args(["status", "--format", "json", "--socket"]).arg(sock))?;
    Ok(Counts {
        produced: num(&s["kernel"]["produced_by_kind"]["file_open"]),
        dropped: num(&s["kernel"]["dropped_by_kind"]["file_open"]),
        consumed: num(&s["events_by_kind"]["model_file_opened"]),
        sink_dropped: s["sinks"].as_array().map_or(0, |a| a.iter().map(|k| num(&k["dropped"])).sum()),
    })
}

fn throughput(bin: &Path, driver: &Path, dir: &Path, quick: bool) -> anyhow::Result<Value> {
    println!("bench: throughput");
    let cfg = config_for(bin, &dir.join("throughput.toml"))?;
    let sock = dir.join("api.sock");
    let sensor = start_pinned(
        bin,
        &["run", "--format", "json", "--config", cfg.to_str().context("path")?],
        Ready::Socket(bin, &sock),
    )?;
    let pid = sensor.pid();
    std::thread::sleep(Duration::from_secs(if quick { 1 } else { 5 }));
    let idle = json!({ "rss_kib": proc_status_kib(pid, "VmRSS:"), "peak_rss_kib": proc_status_kib(pid, "VmHWM:") });
    let steps: Vec<(f64, f64)> = if quick {
        vec![(10_000.0, 1.0), (100_000.0, 1.0), (0.0, 1.0)]
    } else {
        vec![(10_000.0, 5.0), (50_000.0, 5.0), (100_000.0, 5.0), (250_000.0, 30.0), (0.0, 10.0)]
    };
    let mut results = Vec::new();
    let mut best_loss_free = 0.0f64;
    let mut after_best = json!(null);
    let file = dir.join("burst.mwbench");
    for (rate, secs) in steps {
        let before = counts(bin, &sock)?;
        let cpu0 = cpu_ns(pid);
        let gen_ = json_out(
            Command::new(driver).args(["generate", "1"]).arg(&file).args([rate.to_string(), secs.to_string()]),
        )?;
        let opens = num(&gen_["opens"]);
        // Let the collector drain what the kernel produced.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut after = counts(bin, &sock)?;
        while after.consumed - before.consumed < after.produced - before.produced && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            after = counts(bin, &sock)?;
        }
        let cpu = cpu_ns(pid) - cpu0;
        let produced = after.produced - before.produced;
        let dropped = after.dropped - before.dropped;
        let consumed = after.consumed - before.consumed;
        let sink_dropped = after.sink_dropped - before.sink_dropped;
        let reconciled = opens == produced + dropped && produced == consumed;
        let achieved = gen_["rate"].as_f64().unwrap_or(0.0);
        let loss_free = reconciled && dropped == 0 && sink_dropped == 0;
        if loss_free && achieved > best_loss_free {
            best_loss_free = achieved;
            after_best =
                json!({ "rss_kib": proc_status_kib(pid, "VmRSS:"), "peak_rss_kib": proc_status_kib(pid, "VmHWM:") });
        }
        println!(
            "  target {:>7} /s for {secs:>4.0} s: {opens} opens ({achieved:.0}/s), produced {produced}, dropped {dropped}, consumed {consumed}, sink dropped {sink_dropped}, {:.2} us CPU/event, reconciled {reconciled}",
            if rate > 0.0 { format!("{rate:.0}") } else { "max".into() },
            cpu as f64 / 1000.0 / consumed.max(1) as f64
        );
        results.push(json!({
            "target_rate": rate, "seconds": secs, "opens": opens, "achieved_rate": achieved,
            "produced": produced, "dropped": dropped, "consumed": consumed, "sink_dropped": sink_dropped,
            "reconciled": reconciled, "collector_cpu_ns": cpu,
            "collector_us_per_event": cpu as f64 / 1000.0 / consumed.max(1) as f64,
        }));
    }
    // Once the queues have drained, the sensor gives memory back at its next housekeeping tick
    // (10 s by default): what it keeps then is its steady size after a burst.
    std::thread::sleep(Duration::from_secs(if quick { 1 } else { 12 }));
    let settled = json!({ "rss_kib": proc_status_kib(pid, "VmRSS:"), "peak_rss_kib": proc_status_kib(pid, "VmHWM:") });
    let memory = json!({
        "idle": idle,
        "after_highest_loss_free": after_best,
        "settled_after_load": settled,
        "bpf_map_bytes": bpf_map_bytes(pid),
    });
    sensor.stop();
    Ok(json!({ "steps": results, "highest_loss_free_rate": best_loss_free, "memory": memory }))
}

/// A tansu broker for the Kafka step.
struct Tansu {
    child: Child,
}

impl Tansu {
    fn start(tansu: &Path, port: u16) -> anyhow::Result<Self> {
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting tansu")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("tansu did not listen on {port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // A producer that reached the broker first may have created the topic already.
        let out = Command::new(tansu)
            .args(["topic", "create", KAFKA_TOPIC, "--partitions", "1", "--broker", &url])
            .output()
            .context("tansu topic create")?;
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if !out.status.success() && !said.contains("already exists") {
            bail!("tansu topic create: {said}");
        }
        Ok(Self { child })
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const KAFKA_TOPIC: &str = "modelwatch.bench";

/// The kafka sink's counters and the sensor's, from `status`.
#[derive(Debug, Clone, Copy, Default)]
struct SinkCounts {
    published: u64,
    kernel_dropped: u64,
    queue_dropped: u64,
    spool_dropped: u64,
    delivered: u64,
    spooled: u64,
    spool_bytes_written: u64,
    pending_bytes: u64,
}

fn sink_counts(bin: &Path, sock: &Path) -> anyhow::Result<SinkCounts> {
    let s = json_out(Command::new(bin).args(["status", "--format", "json", "--socket"]).arg(sock))?;
    let k = s["sinks"].as_array().and_then(|a| a.iter().find(|k| k["name"] == "kafka")).context("no kafka sink")?;
    Ok(SinkCounts {
        published: num(&s["last_seq"]),
        kernel_dropped: num(&s["kernel"]["dropped"]),
        queue_dropped: num(&k["dropped"]),
        spool_dropped: k["spool_dropped"].as_object().map_or(0, |m| m.values().map(num).sum()),
        delivered: num(&k["delivered"]),
        spooled: num(&k["written"]),
        spool_bytes_written: num(&k["spool_written_bytes"]),
        pending_bytes: num(&k["pending_bytes"]),
    })
}

/// Waits until the kafka sink has delivered (or dropped) every event it had spooled when the
/// load ended; returns how long that took. (The machine's own activity keeps a few events in
/// flight all the time, so an empty spool is not the test.)
fn wait_drained(bin: &Path, sock: &Path, limit: Duration) -> anyhow::Result<(f64, SinkCounts, bool)> {
    let t = Instant::now();
    // The intake takes the last events from its queue in well under this.
    std::thread::sleep(Duration::from_millis(300));
    let target = sink_counts(bin, sock)?;
    loop {
        let c = sink_counts(bin, sock)?;
        let drained = c.delivered + c.spool_dropped >= target.spooled;
        if drained || t.elapsed() > limit {
            return Ok((t.elapsed().as_secs_f64(), c, drained));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The Kafka sink step: stepped rates against a local broker, then the backlog of an outage.
fn kafka(bin: &Path, driver: &Path, dir: &Path, tansu: &Path, quick: bool) -> anyhow::Result<Value> {
    println!("bench: kafka sink");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let base = std::fs::read_to_string(dir.join("throughput.toml"))?;
    let cfg = dir.join("kafka.toml");
    let spool = dir.join("kafka-spool");
    std::fs::write(
        &cfg,
        format!(
            "{base}[output.kafka]\nbrokers = [\"127.0.0.1:{port}\"]\ntopic = \"{KAFKA_TOPIC}\"\n\
             [output.kafka.spool]\ndir = \"{}\"\nmax_size = \"4GiB\"\n",
            spool.display()
        ),
    )?;
    let broker = Tansu::start(tansu, port)?;
    let sock = dir.join("api.sock");
    let sensor = start_pinned(
        bin,
        &["run", "--format", "json", "--config", cfg.to_str().context("path")?],
        Ready::Socket(bin, &sock),
    )?;
    let pid = sensor.pid();
    std::thread::sleep(Duration::from_secs(if quick { 1 } else { 5 }));
    let steps: Vec<(f64, f64)> = if quick {
        vec![(5_000.0, 3.0), (20_000.0, 3.0)]
    } else {
        vec![(10_000.0, 30.0), (30_000.0, 30.0), (60_000.0, 30.0), (100_000.0, 30.0)]
    };
    let file = dir.join("burst.mwbench");
    let mut results = Vec::new();
    let mut best = 0.0f64;
    for (rate, secs) in steps {
        let before = sink_counts(bin, &sock)?;
        let cpu0 = cpu_ns(pid);
        let gen_ = json_out(
            Command::new(driver).args(["generate", "1"]).arg(&file).args([rate.to_string(), secs.to_string()]),
        )?;
        let (drain, after, drained) = wait_drained(bin, &sock, Duration::from_secs(300))?;
        let cpu = cpu_ns(pid) - cpu0;
        let published = after.published - before.published;
        let delivered = after.delivered - before.delivered;
        let (kd, qd, sd) = (
            after.kernel_dropped - before.kernel_dropped,
            after.queue_dropped - before.queue_dropped,
            after.spool_dropped - before.spool_dropped,
        );
        let spooled = (after.spooled - before.spooled).max(1);
        let achieved = gen_["rate"].as_f64().unwrap_or(0.0);
        let loss_free = kd == 0 && qd == 0 && sd == 0 && drained;
        if loss_free && achieved > best {
            best = achieved;
        }
        println!(
            "  target {rate:>7.0} /s for {secs:>3.0} s: {achieved:.0}/s, published {published}, delivered {delivered}, dropped {kd}/{qd}/{sd}, drained after {drain:.1} s, {:.2} us CPU/event",
            cpu as f64 / 1000.0 / published.max(1) as f64
        );
        results.push(json!({
            "target_rate": rate, "seconds": secs, "achieved_rate": achieved, "published": published,
            "delivered": delivered, "kernel_dropped": kd, "queue_dropped": qd, "spool_dropped": sd,
            "drain_seconds": drain, "loss_free": loss_free,
            "collector_us_per_event": cpu as f64 / 1000.0 / published.max(1) as f64,
            "spool_bytes_per_event": (after.spool_bytes_written - before.spool_bytes_written) as f64 / spooled as f64,
        }));
    }
    // An outage of one hour, simulated by count: what a busy workstation reports in an hour
    // (100 events/s) is spooled while the broker is away, then drained.
    let per_hour: u64 = if quick { 36_000 } else { 360_000 };
    broker.stop();
    let before = sink_counts(bin, &sock)?;
    let rate = 40_000.0;
    json_out(
        Command::new(driver)
            .args(["generate", "1"])
            .arg(&file)
            .args([rate.to_string(), format!("{:.1}", per_hour as f64 / rate)]),
    )?;
    // Let the spool take the last of them.
    std::thread::sleep(Duration::from_secs(2));
    let queued = sink_counts(bin, &sock)?;
    let broker = Tansu::start(tansu, port)?;
    let (drain, after, drained) = wait_drained(bin, &sock, Duration::from_secs(1800))?;
    let events = queued.spooled - queued.delivered;
    let backlog = json!({
        "events": events,
        "simulates": format!("one hour at {} events/s", per_hour / 3600),
        "spool_bytes": queued.pending_bytes,
        "drain_seconds": drain,
        "drain_rate": events as f64 / drain.max(0.001),
        "dropped": (after.spool_dropped - before.spool_dropped) + (after.queue_dropped - before.queue_dropped),
        "drained": drained,
    });
    println!("  backlog of {events} events drained in {drain:.1} s");
    sensor.stop();
    broker.stop();
    Ok(json!({ "steps": results, "highest_loss_free_rate": best, "backlog": backlog }))
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned()))
        .unwrap_or_default();
    json!({
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        "memory_kib": std::fs::read_to_string("/proc/meminfo").unwrap_or_default().lines().next().and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()).unwrap_or(0),
    })
}

fn now_utc() -> String {
    let out = Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"]).output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// The report: machine, what ran, one table per measurement.
pub fn markdown(r: &Value) -> String {
    let mut o = String::new();
    let m = &r["machine"];
    o.push_str("# Benchmarks\n\n");
    o.push_str("Produced by `cargo xtask bench` (raw figures: `docs/bench/latest.json`; compare runs with\n`cargo xtask bench --compare OLD.json`). Numbers are from one machine and one run: read the\nratios, not the absolute values.\n\n");
    o.push_str(&format!(
        "- date: {}\n- kernel: {}\n- CPU: {} ({} cores), {} GiB memory\n- rounds per configuration: {}{}\n- total wall time: {} s\n\n",
        r["date"].as_str().unwrap_or(""),
        m["kernel"].as_str().unwrap_or(""),
        m["cpu"].as_str().unwrap_or(""),
        m["cores"],
        num(&m["memory_kib"]) / (1 << 20),
        r["rounds"],
        if r["quick"].as_bool() == Some(true) { " (quick run)" } else { "" },
        r["wall_seconds"]
    ));
    let ov = &r["overhead"];
    o.push_str("## Syscall overhead (CPU ns per call, median of the rounds; min in parentheses)\n\n");
    o.push_str("Loops pinned to CPU 1, tracers pinned to CPU 0. *empty*: empty BPF programs on exactly\nmodelwatch's attach points (the kernel's own price for having them); *bpftrace*: `@[pid] = count()`\non the same tracepoints. \"+ns vs empty\" is modelwatch's own logic.\n\n");
    o.push_str("| loop | off | empty | modelwatch | bpftrace | modelwatch / off | bpftrace / off | modelwatch + ns vs empty | bpftrace + ns vs empty |\n|---|---|---|---|---|---|---|---|---|\n");
    for l in LOOPS {
        let med = |c: &str| f(&ov[c][l]["median"]);
        let min = |c: &str| f(&ov[c][l]["min"]);
        o.push_str(&format!(
            "| {l} | {:.0} ({:.0}) | {:.0} ({:.0}) | {:.0} ({:.0}) | {:.0} ({:.0}) | {:.2} | {:.2} | {:+.0} | {:+.0} |\n",
            med("off"), min("off"), med("empty"), min("empty"), med("modelwatch"), min("modelwatch"), med("bpftrace"), min("bpftrace"),
            med("modelwatch") / med("off"), med("bpftrace") / med("off"),
            med("modelwatch") - med("empty"), med("bpftrace") - med("empty"),
        ));
    }
    if let Some(tp) = ov["attach_points"].as_array() {
        o.push_str(&format!(
            "\nAttach points: {}.\n",
            tp.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")
        ));
    }
    if !r["probe_costs"].is_null() {
        o.push('\n');
        o.push_str(&probe_costs_section(&r["probe_costs"]));
    }
    if !r["workloads"].is_null() {
        o.push('\n');
        o.push_str(&workloads::section(&r["workloads"], r["quick"].as_bool() == Some(true)));
    }
    let t = &r["throughput"];
    o.push_str(
        "\n## Throughput without loss (reportable opens generated on CPU 1, collector on CPU 0, JSON to /dev/null)\n\n",
    );
    o.push_str("| target rate /s | seconds | opens | achieved /s | kernel produced | kernel dropped | collector published | sink dropped | reconciled | collector µs CPU / event |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for s in t["steps"].as_array().into_iter().flatten() {
        let target = f(&s["target_rate"]);
        o.push_str(&format!(
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {:.2} |\n",
            if target > 0.0 { format!("{target:.0}") } else { "max".into() },
            s["seconds"],
            s["opens"],
            f(&s["achieved_rate"]),
            s["produced"],
            s["dropped"],
            s["consumed"],
            s["sink_dropped"],
            s["reconciled"],
            f(&s["collector_us_per_event"])
        ));
    }
    o.push_str(&format!("\nHighest loss-free rate: {:.0} events/s.\n", f(&t["highest_loss_free_rate"])));
    let mem = &t["memory"];
    o.push_str("\n## Memory\n\n| | RSS | peak RSS |\n|---|---|---|\n");
    for (name, key) in [
        ("idle", "idle"),
        ("right after the highest loss-free rate", "after_highest_loss_free"),
        ("12 s after the last step (settled)", "settled_after_load"),
    ] {
        if mem[key].is_null() {
            continue;
        }
        o.push_str(&format!(
            "| {name} | {:.1} MiB | {:.1} MiB |\n",
            num(&mem[key]["rss_kib"]) as f64 / 1024.0,
            num(&mem[key]["peak_rss_kib"]) as f64 / 1024.0
        ));
    }
    o.push_str(&format!(
        "\nBPF maps (fdinfo memlock, all maps of the sensor): {:.1} MiB.\n",
        num(&mem["bpf_map_bytes"]) as f64 / (1u64 << 20) as f64
    ));
    if !r["throughput_before"].is_null() {
        o.push_str(&ab_section(r));
    }
    let h = &r["hashing"];
    o.push_str(&format!(
        "\n## Artifact hashing\n\nSHA-256 of a page-cached 1 GiB file on one thread: {:.2} GB/s (the implementation alone, in memory: {:.2} GB/s; CPU SHA extensions: {}).\n",
        f(&h["file_gb_per_s"]), f(&h["memory_gb_per_s"]), h["sha_extensions"]
    ));
    if !r["kafka"].is_null() {
        o.push('\n');
        o.push_str(&kafka_section(&r["kafka"], r["quick"].as_bool() == Some(true)));
    }
    o
}

/// The Kafka sink's section of the report.
fn kafka_section(k: &Value, quick: bool) -> String {
    let mut o = String::new();
    o.push_str(&format!(
        "## Kafka sink{}\n\nA local tansu broker (memory storage) on 127.0.0.1; reportable opens generated on CPU 1, collector on CPU 0 with the Kafka sink (protobuf, zstd, idempotent, acks=all) and JSON to /dev/null. \"delivered\" counts what the broker acknowledged; a step is loss-free when nothing was dropped anywhere (kernel, sink queue, spool) and the spool drained.\n\n",
        if quick { " (quick run: not figures to quote)" } else { "" }
    ));
    o.push_str("| target rate /s | seconds | achieved /s | events published | delivered | dropped (kernel / queue / spool) | drained after | loss-free | collector µs CPU / event | spool bytes / event |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for s in k["steps"].as_array().into_iter().flatten() {
        o.push_str(&format!(
            "| {:.0} | {} | {:.0} | {} | {} | {} / {} / {} | {:.1} s | {} | {:.2} | {:.0} |\n",
            f(&s["target_rate"]),
            s["seconds"],
            f(&s["achieved_rate"]),
            s["published"],
            s["delivered"],
            s["kernel_dropped"],
            s["queue_dropped"],
            s["spool_dropped"],
            f(&s["drain_seconds"]),
            s["loss_free"],
            f(&s["collector_us_per_event"]),
            f(&s["spool_bytes_per_event"]),
        ));
    }
    o.push_str(&format!(
        "\nHighest loss-free rate delivered to the broker: {:.0} events/s.\n",
        f(&k["highest_loss_free_rate"])
    ));
    let b = &k["backlog"];
    if !b.is_null() {
        o.push_str(&format!(
            "\nOutage backlog: {} events ({}; {:.1} MiB of spool) queued while the broker was down drained in {:.1} s once it was back ({:.0} events/s).\n",
            b["events"],
            b["simulates"].as_str().unwrap_or(""),
            num(&b["spool_bytes"]) as f64 / (1u64 << 20) as f64,
            f(&b["drain_seconds"]),
            f(&b["drain_rate"]),
        ));
    }
    o
}

/// The A/B table of a run with `--before`: the earlier build against this one, same rounds.
fn ab_section(r: &Value) -> String {
    let ov = &r["overhead"];
    let mut o = format!(
        "\n## A/B against an earlier build (same run)\n\nEarlier binary: `{}`. Syscall loops: medians of the same alternated rounds, and the spread (max - min over the rounds) of this build, to judge a difference against. Throughput: the same steps, the earlier build measured right after this one.\n\n| loop | before ns | after ns | after - before | spread of after over the rounds |\n|---|---|---|---|---|\n",
        r["before_binary"].as_str().unwrap_or("?")
    );
    for l in LOOPS {
        let samples: Vec<f64> =
            ov["modelwatch"][l]["samples"].as_array().into_iter().flatten().filter_map(Value::as_f64).collect();
        let spread =
            samples.iter().copied().fold(f64::MIN, f64::max) - samples.iter().copied().fold(f64::MAX, f64::min);
        let (before, after) = (f(&ov[BEFORE][l]["median"]), f(&ov["modelwatch"][l]["median"]));
        o.push_str(&format!("| {l} | {before:.0} | {after:.0} | {:+.0} | {spread:.0} |\n", after - before));
    }
    o.push_str("\n| target rate /s | before µs CPU / event | after µs CPU / event | before loss-free | after loss-free |\n|---|---|---|---|---|\n");
    let steps = |k: &str| r[k]["steps"].as_array().cloned().unwrap_or_default();
    for (b, a) in steps("throughput_before").iter().zip(steps("throughput")) {
        let target = f(&a["target_rate"]);
        let loss_free = |s: &Value| s["reconciled"] == true && num(&s["dropped"]) == 0 && num(&s["sink_dropped"]) == 0;
        o.push_str(&format!(
            "| {} | {:.2} | {:.2} | {} | {} |\n",
            if target > 0.0 { format!("{target:.0}") } else { "max".into() },
            f(&b["collector_us_per_event"]),
            f(&a["collector_us_per_event"]),
            loss_free(b),
            loss_free(&a)
        ));
    }
    let rss = |k: &str, m: &str| num(&r[k]["memory"][m]["rss_kib"]) as f64 / 1024.0;
    o.push_str(&format!(
        "\nRSS idle: before {:.1} MiB, after {:.1} MiB; settled after load: before {:.1} MiB, after {:.1} MiB.\n",
        rss("throughput_before", "idle"),
        rss("throughput", "idle"),
        rss("throughput_before", "settled_after_load"),
        rss("throughput", "settled_after_load")
    ));
    o
}

/// Differences between two runs' raw figures.
fn compare(old: &Value, new: &Value) -> String {
    let mut o = format!("\ncompared with the run of {}:\n", old["date"].as_str().unwrap_or("?"));
    o.push_str(&format!("{:<34} {:>12} {:>12} {:>8}\n", "metric", "old", "new", "change"));
    let mut row = |name: String, a: f64, b: f64| {
        let change = if a != 0.0 { (b - a) / a * 100.0 } else { f64::NAN };
        o.push_str(&format!("{name:<34} {a:>12.1} {b:>12.1} {change:>+7.1}%\n"));
    };
    for c in CONFIGS {
        for l in LOOPS {
            row(format!("{c}/{l} ns"), f(&old["overhead"][c][l]["median"]), f(&new["overhead"][c][l]["median"]));
        }
    }
    row(
        "highest loss-free rate /s".into(),
        f(&old["throughput"]["highest_loss_free_rate"]),
        f(&new["throughput"]["highest_loss_free_rate"]),
    );
    row(
        "idle RSS KiB".into(),
        num(&old["throughput"]["memory"]["idle"]["rss_kib"]) as f64,
        num(&new["throughput"]["memory"]["idle"]["rss_kib"]) as f64,
    );
    row("hashing GB/s".into(), f(&old["hashing"]["file_gb_per_s"]), f(&new["hashing"]["file_gb_per_s"]));
    for (name, a, b) in workloads::compare_rows(old, new) {
        row(name, a, b);
    }
    o
}
