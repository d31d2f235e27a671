//! "Overhead on real work": what the probes cost ordinary developer work (Python start-up with
//! common imports, extracting a source tarball, grepping a tree, compiling C, `git add` and
//! `git status`), not a loop of one syscall.
//!
//! Everything runs on a tmpfs mounted under the bench directory (disk writeback would make the
//! figures noise) and is prepared once from what is on this machine, without the network. Each
//! run is measured as the CPU time (user + system) of the workload's whole process tree:
//! `wait4` on the child gives its rusage with every descendant it waited for, and the probes run
//! in the context of the tasks whose syscalls they see, so their cost is in that figure while
//! the tracer's own user-space work, pinned to the other CPU, is not. Workloads are pinned to
//! CPU 1 and tracers to CPU 0; the configurations are rotated round by round, each started once
//! per round and kept running over all the workloads (whose order is rotated too).

use std::{
    ffi::CString,
    fs::File,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::{BEFORE, CONFIGS, Running, f, start_config, start_sensor};

/// The sizes of one run: the full bench sizes each workload to roughly 0.5-2 s of CPU on a
/// 2-core VM; a quick run keeps them small.
struct Sizes {
    tree_files: usize,
    tree_bytes: u64,
    python_runs: usize,
    grep_patterns: usize,
    c_files: usize,
}

const FULL: Sizes = Sizes { tree_files: 8000, tree_bytes: 160 << 20, python_runs: 15, grep_patterns: 8, c_files: 30 };
const QUICK: Sizes = Sizes { tree_files: 1500, tree_bytes: 24 << 20, python_runs: 4, grep_patterns: 3, c_files: 8 };

/// Where the source tree comes from, in order, until the size is reached.
const TREE_SOURCES: [&str; 2] = ["/usr/include", "/usr/share/doc"];
/// Files above this are left out of the tree: a source tree is many small files.
const TREE_MAX_FILE: u64 = 1 << 20;
/// Fewer files than this is no tree to measure the tree workloads on.
const TREE_MIN_FILES: usize = 200;
/// Strings searched for in the tree, one `grep -rn` each.
const GREP_PATTERNS: [&str; 8] =
    ["TODO", "FIXME", "malloc", "EXPORT_SYMBOL", "static inline", "size_t", "deprecated", "__attribute__"];
const PYTHON_IMPORTS: &str = "import json, re, asyncio, email, http.client, decimal, sqlite3, xml.etree.ElementTree";
/// A tracer's start-up settles before the first workload of its block. The first run after a
/// start was seen to come out a few per cent above the next ones (the sensor itself was idle by
/// then), so the workloads' order is rotated too: no workload always takes that place.
const SETTLE: Duration = Duration::from_secs(2);

/// One workload: an `sh -c` script measured as one process tree, with an unmeasured reset that
/// puts its files back as they were before each run.
struct Workload {
    name: &'static str,
    what: String,
    reset: Option<String>,
    script: String,
    /// `$1`... of the scripts (paths are passed here, never spliced into the script).
    args: Vec<String>,
}

/// A tmpfs mounted for the section's lifetime.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        let target = CString::new(path.as_os_str().as_encoded_bytes()).context("tmpfs path")?;
        // SAFETY: all pointers are valid NUL-terminated strings for the call.
        let rc = unsafe {
            libc::mount(c"tmpfs".as_ptr(), target.as_ptr(), c"tmpfs".as_ptr(), 0, c"size=2g,mode=0755".as_ptr().cast())
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("mounting a tmpfs on {}", path.display()));
        }
        Ok(Self(path.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Ok(target) = CString::new(self.0.as_os_str().as_encoded_bytes()) {
            // SAFETY: a valid NUL-terminated path. Detached: a workload's straggler cannot keep it.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// Whether `program args` runs and succeeds (a tool this machine has).
fn has(program: &str, args: &[&str]) -> bool {
    Command::new(program).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Copies regular files of at most `TREE_MAX_FILE` from `src` into `dst` in name order until
/// the budget is spent; symlinks and what cannot be read are left out.
fn copy_tree(src: &Path, dst: &Path, files: &mut usize, bytes: &mut u64, sizes: &Sizes, depth: usize) {
    if depth > 32 || *files >= sizes.tree_files {
        return;
    }
    let Ok(rd) = std::fs::read_dir(src) else { return };
    let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    if std::fs::create_dir_all(dst).is_err() {
        return;
    }
    for path in entries {
        if *files >= sizes.tree_files || *bytes >= sizes.tree_bytes {
            return;
        }
        let (Ok(meta), Some(name)) = (std::fs::symlink_metadata(&path), path.file_name()) else { continue };
        if meta.is_dir() {
            copy_tree(&path, &dst.join(name), files, bytes, sizes, depth + 1);
        } else if meta.is_file() && meta.len() <= TREE_MAX_FILE && std::fs::copy(&path, dst.join(name)).is_ok() {
            *files += 1;
            *bytes += meta.len();
        }
    }
}

/// One small C translation unit of ordinary code (a hash table, parsing, sorting), different
/// per file so nothing is shared between compilations.
fn c_source(i: usize) -> String {
    format!(
        r#"#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <errno.h>

struct entry_{i} {{ char *key; uint64_t value; struct entry_{i} *next; }};
struct table_{i} {{ struct entry_{i} **buckets; size_t len, cap; }};

static uint64_t hash_{i}(const char *s) {{
    uint64_t h = 1469598103934665603ULL ^ {i};
    while (*s) {{ h ^= (unsigned char)*s++; h *= 1099511628211ULL; }}
    return h;
}}

int table_put_{i}(struct table_{i} *t, const char *key, uint64_t value) {{
    if (t->len * 4 >= t->cap * 3) {{
        size_t cap = t->cap ? t->cap * 2 : 16;
        struct entry_{i} **b = calloc(cap, sizeof *b);
        if (!b) return -ENOMEM;
        for (size_t i = 0; i < t->cap; i++) {{
            struct entry_{i} *e = t->buckets[i];
            while (e) {{ struct entry_{i} *n = e->next; size_t j = hash_{i}(e->key) % cap; e->next = b[j]; b[j] = e; e = n; }}
        }}
        free(t->buckets); t->buckets = b; t->cap = cap;
    }}
    size_t j = hash_{i}(key) % t->cap;
    for (struct entry_{i} *e = t->buckets[j]; e; e = e->next)
        if (strcmp(e->key, key) == 0) {{ e->value = value; return 0; }}
    struct entry_{i} *e = malloc(sizeof *e);
    if (!e) return -ENOMEM;
    e->key = strdup(key); e->value = value; e->next = t->buckets[j]; t->buckets[j] = e; t->len++;
    return 1;
}}

static int cmp_{i}(const void *a, const void *b) {{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}}

int parse_and_sort_{i}(const char *text, uint64_t *out, size_t max) {{
    size_t n = 0;
    char buf[256];
    while (*text && n < max) {{
        size_t k = 0;
        while (*text && *text != ',' && k + 1 < sizeof buf) buf[k++] = *text++;
        buf[k] = 0;
        if (*text == ',') text++;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(buf, &end, 10);
        if (errno || *end) {{ fprintf(stderr, "bad number %s\n", buf); return -EINVAL; }}
        out[n++] = v * {i};
    }}
    qsort(out, n, sizeof *out, cmp_{i});
    return (int)n;
}}
"#
    )
}

/// Prepares the workloads under `work` (a tmpfs) from what this machine has; those it cannot
/// prepare are returned with the reason.
fn prepare(work: &Path, sizes: &Sizes) -> anyhow::Result<(Vec<Workload>, Value, Vec<Value>)> {
    let mut list = Vec::new();
    let mut skipped = Vec::new();
    let mut skip = |name: &str, reason: String| {
        println!("  {name}: left out ({reason})");
        skipped.push(json!({ "name": name, "reason": reason }));
    };

    // Python: the interpreter itself, not a version manager's shim script in front of it.
    let python = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|p| Path::new(p).is_file());
    match python {
        Some(py) => list.push(Workload {
            name: "python_imports",
            what: format!("{} x `python3 -c '{PYTHON_IMPORTS}'`", sizes.python_runs),
            reset: None,
            script: format!(
                "i=0; while [ \"$i\" -lt \"$2\" ]; do \"$1\" -c '{PYTHON_IMPORTS}' || exit 1; i=$((i+1)); done"
            ),
            args: vec![py, sizes.python_runs.to_string()],
        }),
        None => skip("python_imports", "no python3".into()),
    }

    let tree = work.join("tree");
    let (mut files, mut bytes) = (0usize, 0u64);
    let mut sources = Vec::new();
    for src in TREE_SOURCES {
        if files >= sizes.tree_files || bytes >= sizes.tree_bytes {
            break;
        }
        let before = files;
        let name = Path::new(src).file_name().context("tree source")?;
        copy_tree(Path::new(src), &tree.join(name), &mut files, &mut bytes, sizes, 0);
        if files > before {
            sources.push(src);
        }
    }
    let tree_info = json!({ "sources": sources, "files": files, "bytes": bytes });
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    println!("  source tree: {files} files, {:.0} MiB from {}", mib(bytes), sources.join(", "));
    if files < TREE_MIN_FILES {
        let reason = format!("only {files} files found under {}", TREE_SOURCES.join(", "));
        for name in ["tar_extract", "grep_tree", "git_add_status"] {
            skip(name, reason.clone());
        }
    } else {
        if has("tar", &["--version"]) && has("gzip", &["--version"]) {
            crate::run(Command::new("tar").arg("czf").arg(work.join("src.tar.gz")).arg("-C").arg(work).arg("tree"))?;
            let tgz = std::fs::metadata(work.join("src.tar.gz")).map_or(0, |m| m.len());
            list.push(Workload {
                name: "tar_extract",
                what: format!(
                    "`tar xzf` of a {:.0} MiB source tarball ({files} files, {:.0} MiB), removed between runs",
                    mib(tgz),
                    mib(bytes)
                ),
                reset: Some("rm -rf \"$1\" && mkdir \"$1\"".into()),
                script: "tar xzf \"$2\" -C \"$1\"".into(),
                args: vec![path_arg(&work.join("out"))?, path_arg(&work.join("src.tar.gz"))?],
            });
        } else {
            skip("tar_extract", "no tar or gzip".into());
        }
        let patterns = &GREP_PATTERNS[..sizes.grep_patterns.min(GREP_PATTERNS.len())];
        let mut args = vec![path_arg(&tree)?];
        args.extend(patterns.iter().map(|p| (*p).to_owned()));
        list.push(Workload {
            name: "grep_tree",
            what: format!("`grep -rn` for {} strings, one after the other, over the same tree", patterns.len()),
            reset: None,
            // grep says 1 when a string is not found: only 2 and above are failures.
            script:
                "t=$1; shift; for p in \"$@\"; do grep -rn -- \"$p\" \"$t\" >/dev/null; [ $? -le 1 ] || exit 1; done"
                    .into(),
            args,
        });
        if has("git", &["--version"]) {
            let repo = work.join("repo");
            crate::run(Command::new("cp").arg("-a").arg(&tree).arg(&repo))?;
            list.push(Workload {
                name: "git_add_status",
                what: "`git add -A && git status` in a new repository of the same tree".into(),
                reset: Some("rm -rf \"$1/.git\" && git -c init.defaultBranch=main init -q \"$1\"".into()),
                script: "cd \"$1\" && git add -A && git status --porcelain >/dev/null".into(),
                args: vec![path_arg(&repo)?],
            });
        } else {
            skip("git_add_status", "no git".into());
        }
    }

    if has("cc", &["--version"]) {
        let cc = work.join("cc");
        std::fs::create_dir_all(&cc).context("creating the C sources' directory")?;
        for i in 0..sizes.c_files {
            std::fs::write(cc.join(format!("f{i}.c")), c_source(i)).context("writing a C source")?;
        }
        list.push(Workload {
            name: "cc_compile",
            what: format!("`cc -O2 -c` of {} small C files (libc headers, ~70 lines each)", sizes.c_files),
            reset: Some("rm -f \"$1\"/*.o".into()),
            script: "for f in \"$1\"/*.c; do cc -O2 -c \"$f\" -o \"$f.o\" || exit 1; done".into(),
            args: vec![path_arg(&cc)?],
        });
    } else {
        skip("cc_compile", "no cc".into());
    }
    Ok((list, tree_info, skipped))
}

fn path_arg(p: &Path) -> anyhow::Result<String> {
    p.to_str().map(str::to_owned).with_context(|| format!("{} is not UTF-8", p.display()))
}

/// A workload's script as a command (`sh -c SCRIPT sh ARGS...`), pinned to CPU 1 or not, in
/// `work`, output discarded but its errors kept in `errors`.
fn shell(pinned: bool, script: &str, args: &[String], work: &Path, errors: &Path) -> anyhow::Result<Command> {
    let mut cmd = if pinned {
        let mut c = Command::new("taskset");
        c.args(["-c", "1", "sh"]);
        c
    } else {
        Command::new("sh")
    };
    cmd.arg("-c")
        .arg(script)
        .arg("sh")
        .args(args)
        .current_dir(work)
        .env("LC_ALL", "C")
        // The machine's and the user's git settings (hooks, fsmonitor) are not the workload.
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(errors).with_context(|| format!("creating {}", errors.display()))?);
    Ok(cmd)
}

fn failed(name: &str, what: &str, errors: &Path) -> anyhow::Error {
    let said = std::fs::read_to_string(errors).unwrap_or_default();
    let tail: String = said.chars().rev().take(2000).collect::<Vec<_>>().into_iter().rev().collect();
    anyhow::anyhow!("workload {name}: {what} failed: {tail}")
}

/// Runs one workload pinned to CPU 1; returns (CPU ms of its process tree, wall ms).
fn measure(w: &Workload, work: &Path, errors: &Path) -> anyhow::Result<(f64, f64)> {
    if let Some(reset) = &w.reset {
        let ok = shell(false, reset, &w.args, work, errors)?.status().context("running a reset")?;
        if !ok.success() {
            return Err(failed(w.name, "reset", errors));
        }
    }
    let mut cmd = shell(true, &w.script, &w.args, work, errors)?;
    let started = Instant::now();
    let child = cmd.spawn().with_context(|| format!("starting workload {}", w.name))?;
    // Reaped here with wait4, not through `child`: its rusage is the tree's CPU time.
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers; pid is our own unreaped child.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).with_context(|| format!("waiting for workload {}", w.name));
        }
    }
    let wall = started.elapsed().as_secs_f64() * 1000.0;
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(failed(w.name, "run", errors));
    }
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    Ok((ms(usage.ru_utime) + ms(usage.ru_stime), wall))
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => f64::midpoint(s[n / 2 - 1], s[n / 2]),
    }
}

fn stats(v: &[f64]) -> Value {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    json!({ "median": median(v), "min": min, "max": max, "samples": v })
}

/// Starts a configuration for the workloads. The sensor runs with the shipped defaults (only its
/// socket and state directory set): this section is about what a deployment costs, not the
/// syscall section's settings made to report every open.
fn start(
    config: &str,
    bin: &Path,
    before: Option<&Path>,
    driver: &Path,
    dir: &Path,
    tracepoints: &[String],
) -> anyhow::Result<Option<Running>> {
    match (config, before) {
        ("modelwatch", _) => Ok(Some(start_sensor(bin, dir, "workloads.toml")?)),
        (BEFORE, Some(old)) => Ok(Some(start_sensor(old, dir, "workloads.toml")?)),
        _ => start_config(config, bin, driver, dir, tracepoints),
    }
}

/// The section: prepares the workloads on a tmpfs, runs the rounds, returns the raw figures.
pub(super) fn workloads(
    bin: &Path,
    driver: &Path,
    dir: &Path,
    rounds: usize,
    quick: bool,
    before: Option<&Path>,
    tracepoints: &[String],
) -> anyhow::Result<Value> {
    let sizes = if quick { &QUICK } else { &FULL };
    std::fs::write(
        dir.join("workloads.toml"),
        format!("[api]\nsocket = \"{d}/api.sock\"\n[sensor]\nstate_dir = \"{d}/state\"\n", d = dir.display()),
    )?;
    let work = dir.join("work");
    let tmpfs = Tmpfs::mount(&work)?;
    let errors = dir.join("workload.err");
    println!("bench: overhead on real work: preparing on a tmpfs");
    let (list, tree, skipped) = prepare(&work, sizes)?;
    if list.is_empty() {
        bail!("no workload could be prepared on this machine");
    }
    // Once each before the rounds: page cache, Python's bytecode cache and a check that every
    // workload runs here at all.
    for w in &list {
        let (cpu, wall) = measure(w, &work, &errors)?;
        println!("  {:<15} {cpu:>6.0} ms CPU ({wall:.0} ms wall) warm-up", w.name);
    }
    let mut configs = CONFIGS.to_vec();
    if before.is_some() {
        configs.insert(3, BEFORE);
    }
    println!(
        "bench: overhead on real work, {rounds} rounds x {} configurations x {} workloads",
        configs.len(),
        list.len()
    );
    // cpu[workload][config], wall[workload][config]: samples over the rounds.
    let mut cpu = vec![vec![Vec::new(); configs.len()]; list.len()];
    let mut wall = cpu.clone();
    for round in 0..rounds {
        // Rotated so each configuration takes each place in the order as often as the others.
        for k in 0..configs.len() {
            let c = (k + round) % configs.len();
            let running = start(configs[c], bin, before, driver, dir, tracepoints)?;
            std::thread::sleep(SETTLE);
            let mut line = String::new();
            let mut result = Ok(());
            for j in 0..list.len() {
                let i = (j + round) % list.len();
                let w = &list[i];
                match measure(w, &work, &errors) {
                    Ok((ms, wall_ms)) => {
                        cpu[i][c].push(ms);
                        wall[i][c].push(wall_ms);
                        line.push_str(&format!(" {} {ms:.0}", w.name));
                    }
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            if let Some(r) = running {
                r.stop();
            }
            result?;
            println!("  round {}/{rounds} {:>10}: CPU ms{line}", round + 1, configs[c]);
        }
    }
    drop(tmpfs);

    let mut results = Vec::new();
    let mut log_ratios = vec![Vec::new(); configs.len()];
    for (i, w) in list.iter().enumerate() {
        let mut cpu_ms = serde_json::Map::new();
        let mut wall_ms = serde_json::Map::new();
        for (c, config) in configs.iter().enumerate() {
            cpu_ms.insert((*config).to_owned(), stats(&cpu[i][c]));
            wall_ms.insert((*config).to_owned(), stats(&wall[i][c]));
        }
        let off = median(&cpu[i][0]);
        for (c, logs) in log_ratios.iter_mut().enumerate() {
            logs.push((median(&cpu[i][c]) / off).ln());
        }
        results.push(json!({ "name": w.name, "what": w.what, "cpu_ms": cpu_ms, "wall_ms": wall_ms }));
    }
    let mut geomean = serde_json::Map::new();
    for (c, config) in configs.iter().enumerate().skip(1) {
        let logs = &log_ratios[c];
        geomean.insert(format!("{config}/off"), json!((logs.iter().sum::<f64>() / logs.len() as f64).exp()));
    }
    Ok(json!({
        "rounds": rounds,
        "quick": quick,
        "configs": configs,
        "tmpfs": true,
        "tree": tree,
        "skipped": skipped,
        "results": results,
        "geomean": geomean,
    }))
}

/// The section of the report.
pub(super) fn section(w: &Value, quick: bool) -> String {
    let mut o = format!(
        "## Overhead on real work (CPU ms of the workload's process tree, median of {} rounds){}\n\n",
        w["rounds"],
        if quick { " (quick run: not figures to quote)" } else { "" }
    );
    o.push_str("Ordinary developer work on a tmpfs, prepared from what is on the machine; each run measured as the user + system CPU time of its whole process tree (`wait4` rusage), so the probes' cost in the syscalls is in it and the tracers' own user-space work (pinned to CPU 0) is not. Workloads pinned to CPU 1; configurations (and the workloads within them) rotated round by round. modelwatch runs with its default configuration. \"- empty\" is the part above the kernel's own price for the attach points.\n\n");
    for r in w["results"].as_array().into_iter().flatten() {
        o.push_str(&format!("- {}: {}\n", r["name"].as_str().unwrap_or("?"), r["what"].as_str().unwrap_or("")));
    }
    for s in w["skipped"].as_array().into_iter().flatten() {
        o.push_str(&format!(
            "- {}: not measured ({})\n",
            s["name"].as_str().unwrap_or("?"),
            s["reason"].as_str().unwrap_or("")
        ));
    }
    o.push_str("\n| workload | off | empty | modelwatch | bpftrace | modelwatch / off | bpftrace / off | empty / off | modelwatch - empty ms | bpftrace - empty ms |\n|---|---|---|---|---|---|---|---|---|---|\n");
    let med = |r: &Value, c: &str| f(&r["cpu_ms"][c]["median"]);
    for r in w["results"].as_array().into_iter().flatten() {
        let (off, empty, mw, bt) = (med(r, "off"), med(r, "empty"), med(r, "modelwatch"), med(r, "bpftrace"));
        o.push_str(&format!(
            "| {} | {off:.0} | {empty:.0} | {mw:.0} | {bt:.0} | {:.3} | {:.3} | {:.3} | {:+.0} | {:+.0} |\n",
            r["name"].as_str().unwrap_or("?"),
            mw / off,
            bt / off,
            empty / off,
            mw - empty,
            bt - empty,
        ));
    }
    let g = &w["geomean"];
    o.push_str(&format!(
        "| geometric mean | | | | | {:.3} | {:.3} | {:.3} | | |\n",
        f(&g["modelwatch/off"]),
        f(&g["bpftrace/off"]),
        f(&g["empty/off"])
    ));
    if !g[format!("{BEFORE}/off")].is_null() {
        o.push_str("\nA/B against the earlier build (same rounds): the spread is max - min of this build over the rounds.\n\n| workload | before ms | after ms | after - before | spread of after |\n|---|---|---|---|---|\n");
        for r in w["results"].as_array().into_iter().flatten() {
            let (b, a) = (med(r, BEFORE), med(r, "modelwatch"));
            let spread = f(&r["cpu_ms"]["modelwatch"]["max"]) - f(&r["cpu_ms"]["modelwatch"]["min"]);
            o.push_str(&format!(
                "| {} | {b:.0} | {a:.0} | {:+.0} | {spread:.0} |\n",
                r["name"].as_str().unwrap_or("?"),
                a - b
            ));
        }
        o.push_str(&format!(
            "\nGeometric mean before / off: {:.3}; after / off: {:.3}.\n",
            f(&g[format!("{BEFORE}/off")]),
            f(&g["modelwatch/off"])
        ));
    }
    let t = &w["tree"];
    o.push_str(&format!(
        "\nSource tree: {} files, {:.0} MiB, from {}.\n",
        t["files"],
        f(&t["bytes"]) / f64::from(1 << 20),
        t["sources"].as_array().into_iter().flatten().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")
    ));
    o
}

/// Rows for `--compare`: each workload's median per configuration, when both runs have it.
pub(super) fn compare_rows(old: &Value, new: &Value) -> Vec<(String, f64, f64)> {
    let mut rows = Vec::new();
    for r in new["workloads"]["results"].as_array().into_iter().flatten() {
        let Some(o) = old["workloads"]["results"].as_array().into_iter().flatten().find(|o| o["name"] == r["name"])
        else {
            continue;
        };
        for c in CONFIGS {
            rows.push((
                format!("{}/{c} ms", r["name"].as_str().unwrap_or("?")),
                f(&o["cpu_ms"][c]["median"]),
                f(&r["cpu_ms"][c]["median"]),
            ));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn section_renders_ratios_differences_and_the_ab_table() {
        let cfg = |m: f64| json!({ "median": m, "min": m - 1.0, "max": m + 3.0, "samples": [m] });
        let w = json!({
            "rounds": 5,
            "tree": { "sources": ["/usr/include"], "files": 2000, "bytes": 3u64 << 20 },
            "skipped": [{ "name": "cc_compile", "reason": "no cc" }],
            "results": [{
                "name": "grep_tree", "what": "grep",
                "cpu_ms": { "off": cfg(1000.0), "empty": cfg(1010.0), "modelwatch": cfg(1050.0),
                            "bpftrace": cfg(1030.0), "before": cfg(1040.0) },
            }],
            "geomean": { "modelwatch/off": 1.05, "bpftrace/off": 1.03, "empty/off": 1.01, "before/off": 1.04 },
        });
        let md = section(&w, false);
        assert!(md.contains("| grep_tree | 1000 | 1010 | 1050 | 1030 | 1.050 | 1.030 | 1.010 | +40 | +20 |"), "{md}");
        assert!(md.contains("| geometric mean | | | | | 1.050 | 1.030 | 1.010 | | |"), "{md}");
        assert!(md.contains("| grep_tree | 1040 | 1050 | +10 | 4 |"), "{md}");
        assert!(md.contains("- cc_compile: not measured (no cc)"), "{md}");
        assert!(md.contains("Source tree: 2000 files, 3 MiB, from /usr/include."), "{md}");
    }
}
