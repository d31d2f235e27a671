//! `modelwatch scan PATH…`: offline analysis of files and directory trees.
//!
//! Named files are always reported. In walked directories (bounded depth, symbolic links not
//! followed, so loops are impossible) a file is reported when its content is a model, when its
//! name has a model extension (so a `.gguf` that is really text says so; the extensions are
//! those of `formats::spec`, which the collector's kernel filter also uses), or with `--all`;
//! identification runs first and only reported files are hashed. Shards of one safetensors
//! model are also summarised as one model. Exit code: 0 clean, 1 findings at or above
//! `--fail-on`, 2 when a path could not be analysed.

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use serde::Serialize;

use crate::{
    AnalyzeOptions, ArtifactConfig, ArtifactError, ArtifactReport, DigestState, PolicyVerdict, Severity, codes,
    digest_open, formats, identify_open, judge, open_artifact, report::Finding, signature, verify_signature,
};

/// Digests computed during one scan, so that the files of a signed directory model are hashed
/// once, not once per model file in it.
type ScanDigests = Mutex<std::collections::HashMap<PathBuf, String>>;

/// What to scan and how (the CLI's `modelwatch scan` arguments, without the output format).
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Files or directories to analyse (directories are walked).
    pub paths: Vec<PathBuf>,
    /// Approved-model manifest; overrides `artifact.manifest`.
    pub manifest: Option<PathBuf>,
    /// Compute SHA-256 digests (without them, policy verdicts are `unknown`).
    pub digest: bool,
    /// The lowest finding severity that makes the exit code 1.
    pub fail_on: Severity,
    /// In walked directories, also report files that are not models.
    pub all: bool,
    /// How many directory levels are walked below each path.
    pub max_depth: usize,
    /// Flag models that declare no licence. Off unless asked: most model formats (pickle,
    /// most GGUF and safetensors files) carry none, and a scan should not fail a clean file
    /// for it. The sensor's `artifact.require_license` is the running sensor's setting.
    pub require_license: bool,
}

impl ScanOptions {
    pub fn new(paths: Vec<PathBuf>) -> Self {
        Self {
            paths,
            manifest: None,
            digest: true,
            fail_on: Severity::Low,
            all: false,
            max_depth: 16,
            require_license: false,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ScanError {
    pub path: PathBuf,
    pub error: String,
}

/// All shards of one sharded safetensors model.
#[derive(Debug, Clone, Serialize)]
pub struct ShardedModel {
    pub group: String,
    pub shards_expected: u32,
    pub shards_found: Vec<u32>,
    pub parameter_count: u64,
    pub tensor_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_file: Option<String>,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScanSummary {
    pub files: usize,
    pub models: usize,
    pub with_findings: usize,
    pub errors: usize,
    pub exit_code: i32,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScanOutput {
    pub artifacts: Vec<ArtifactReport>,
    pub sharded_models: Vec<ShardedModel>,
    pub errors: Vec<ScanError>,
    pub summary: ScanSummary,
}

struct Target {
    path: PathBuf,
    explicit: bool,
}

fn collect(args: &ScanOptions, errors: &mut Vec<ScanError>) -> Vec<Target> {
    let mut out = Vec::new();
    for root in &args.paths {
        let meta = match std::fs::metadata(root) {
            Ok(m) => m,
            Err(e) => {
                errors.push(ScanError { path: root.clone(), error: e.to_string() });
                continue;
            }
        };
        if !meta.is_dir() {
            out.push(Target { path: root.clone(), explicit: true });
            continue;
        }
        let walker = walkdir::WalkDir::new(root).follow_links(false).max_depth(args.max_depth).sort_by_file_name();
        for entry in walker {
            match entry {
                Ok(e) if e.file_type().is_file() => out.push(Target { path: e.into_path(), explicit: false }),
                Ok(_) => {}
                Err(e) => errors.push(ScanError {
                    path: e.path().map_or_else(|| root.clone(), Path::to_path_buf),
                    error: e.to_string(),
                }),
            }
        }
    }
    out
}

/// Analyses one target; `None` when a walked file is not worth reporting.
fn analyze(
    t: &Target,
    opts: &AnalyzeOptions,
    all: bool,
    digests: &ScanDigests,
) -> Result<Option<ArtifactReport>, String> {
    let (mut file, meta) = open_artifact(&t.path).map_err(|e| e.to_string())?;
    let mut report = identify_open(&t.path, &mut file, meta.len(), opts);
    if !(t.explicit || all || report.format.is_model() || formats::has_model_extension(&t.path)) {
        return Ok(None);
    }
    if opts.digest {
        digest_open(&mut report, &mut file, opts).map_err(|e| format!("cannot read {}: {e}", t.path.display()))?;
        if let (Some(d), Ok(mut m)) = (&report.digest, digests.lock())
            && d.state != DigestState::Claimed
        {
            m.insert(t.path.clone(), d.sha256_hex.clone());
        }
        // Without digests (`--no-digest`) nothing is hashed, so signatures are not checked.
        let mut hasher = |p: &Path| {
            if let Some(hex) = digests.lock().ok().and_then(|m| m.get(p).cloned()) {
                return Ok(hex);
            }
            let hex = signature::hash_file(p)?;
            if let Ok(mut m) = digests.lock() {
                m.insert(p.to_owned(), hex.clone());
            }
            Ok(hex)
        };
        verify_signature(&mut report, opts, &mut hasher);
    }
    judge(&mut report, opts);
    Ok(Some(report))
}

fn shard_groups(reports: &[ArtifactReport]) -> Vec<ShardedModel> {
    let mut groups: BTreeMap<String, ShardedModel> = BTreeMap::new();
    for r in reports {
        let Some(s) = &r.metadata.shard else { continue };
        let g = groups.entry(s.group.clone()).or_insert_with(|| ShardedModel {
            group: s.group.clone(),
            shards_expected: s.count,
            shards_found: Vec::new(),
            parameter_count: 0,
            tensor_count: 0,
            index_file: s.index_file.clone(),
            findings: Vec::new(),
        });
        g.shards_found.push(s.index);
        g.parameter_count = g.parameter_count.saturating_add(r.metadata.parameter_count.unwrap_or(0));
        g.tensor_count = g.tensor_count.saturating_add(r.metadata.tensor_count.unwrap_or(0));
        g.shards_expected = g.shards_expected.max(s.count);
    }
    let mut out: Vec<ShardedModel> = groups.into_values().collect();
    for g in &mut out {
        g.shards_found.sort_unstable();
        g.shards_found.dedup();
        let (count, listed) = missing_shards(&g.shards_found, g.shards_expected);
        if count > 0 && count < u64::from(g.shards_expected) {
            let mut names: Vec<String> = listed.iter().map(u32::to_string).collect();
            if count > listed.len() as u64 {
                names.push(format!("and {} more", count - listed.len() as u64));
            }
            g.findings.push(Finding::new(
                Severity::Low,
                codes::SHARD_INCOMPLETE,
                format!("{} of {} shards found; missing {}", g.shards_found.len(), g.shards_expected, names.join(", ")),
            ));
        }
    }
    out
}

/// Missing shard numbers listed in a finding; the rest are only counted.
const MAX_LISTED_SHARDS: usize = 20;

/// How many of the shards `1..=expected` are not in `found` (sorted, deduplicated), and the
/// first few of them. Computed from the gaps between found numbers, so an absurd count in a
/// file name (`-of-4294967295`) costs nothing.
fn missing_shards(found: &[u32], expected: u32) -> (u64, Vec<u32>) {
    let present: Vec<u64> = found.iter().filter(|i| (1..=expected).contains(*i)).map(|i| u64::from(*i)).collect();
    let count = u64::from(expected) - present.len() as u64;
    let mut listed = Vec::new();
    let mut next = 1u64;
    // The gap before each shard found, then the one after the last up to `expected`.
    for bound in present.into_iter().chain(std::iter::once(u64::from(expected) + 1)) {
        while next < bound && listed.len() < MAX_LISTED_SHARDS {
            listed.push(next as u32);
            next += 1;
        }
        if listed.len() >= MAX_LISTED_SHARDS {
            break;
        }
        next = bound + 1;
    }
    (count, listed)
}

/// Runs the scan. Per-path failures are reported in the output (exit code 2); `Err` only when
/// the scan cannot start (invalid configuration or manifest).
pub fn execute(args: &ScanOptions, cfg: &ArtifactConfig) -> Result<ScanOutput, ArtifactError> {
    let mut cfg = cfg.clone();
    if let Some(m) = &args.manifest {
        cfg.manifest = Some(m.clone());
    }
    cfg.require_license = args.require_license;
    let mut opts = AnalyzeOptions::from_config(&cfg)?;
    opts.digest = args.digest;
    let mut errors = Vec::new();
    let targets = collect(args, &mut errors);

    type Outcome = (usize, Result<Option<ArtifactReport>, String>);
    let results: Mutex<Vec<Outcome>> = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    let digests = ScanDigests::default();
    let workers = cfg.hash_workers.clamp(1, 64).min(targets.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(t) = targets.get(i) else { break };
                    let r = analyze(t, &opts, args.all, &digests);
                    if let Ok(mut v) = results.lock() {
                        v.push((i, r));
                    }
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_default();
    results.sort_by_key(|(i, _)| *i);
    let mut artifacts = Vec::new();
    for (i, r) in results {
        match r {
            Ok(Some(rep)) => artifacts.push(rep),
            Ok(None) => {}
            Err(error) => {
                let path = targets.get(i).map(|t| t.path.clone()).unwrap_or_default();
                errors.push(ScanError { path, error });
            }
        }
    }
    let sharded_models = shard_groups(&artifacts);
    let failing = |f: &Finding| f.severity >= args.fail_on;
    let with_findings = artifacts.iter().filter(|a| a.findings.iter().any(failing)).count();
    let group_findings = sharded_models.iter().any(|g| g.findings.iter().any(failing));
    let exit_code = if !errors.is_empty() {
        2
    } else if with_findings > 0 || group_findings {
        1
    } else {
        0
    };
    let summary = ScanSummary {
        files: artifacts.len(),
        models: artifacts.iter().filter(|a| a.format.is_model()).count(),
        with_findings,
        errors: errors.len(),
        exit_code,
    };
    Ok(ScanOutput { artifacts, sharded_models, errors, summary })
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.2} {}", UNITS[u]) }
}

fn human_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2}M", n as f64 / 1e6),
        n if n >= 10_000 => format!("{:.1}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

fn write_report(w: &mut dyn Write, a: &ArtifactReport) -> std::io::Result<()> {
    writeln!(w, "{}", a.path.display())?;
    let m = &a.metadata;
    let mut fmt = a.format.to_string();
    if let Some(v) = &a.variant {
        fmt.push_str(&format!(" ({v})"));
    }
    if let Some(v) = m.format_version {
        fmt.push_str(&format!(" v{v}"));
    }
    writeln!(w, "  format    {fmt}, {}", human_bytes(a.size))?;
    let mut facts = Vec::new();
    if let Some(n) = &m.name {
        facts.push(n.clone());
    }
    if let Some(x) = &m.architecture {
        facts.push(format!("arch {x}"));
    }
    if let Some(q) = &m.quantization {
        facts.push(q.clone());
    }
    if let Some(p) = m.parameter_count {
        facts.push(format!("{} params", human_count(p)));
    }
    if let Some(c) = m.context_length {
        facts.push(format!("ctx {c}"));
    }
    if let Some(t) = m.tensor_count {
        facts.push(format!("{t} tensors"));
    }
    if !m.dtypes.is_empty() {
        facts.push(m.dtypes.join("/"));
    }
    if m.chat_template == Some(true) {
        facts.push("chat template".into());
    }
    if let Some(ir) = m.ir_version {
        facts.push(format!("ir {ir}"));
    }
    if let Some(p) = &m.producer {
        facts.push(format!("by {p} {}", m.producer_version.clone().unwrap_or_default()).trim_end().to_owned());
    }
    if !m.opsets.is_empty() {
        let o: Vec<String> = m
            .opsets
            .iter()
            .map(|o| format!("{}:{}", if o.domain.is_empty() { "ai.onnx" } else { &o.domain }, o.version))
            .collect();
        facts.push(format!("opsets {}", o.join(",")));
    }
    if let Some(g) = &m.graph_name {
        facts.push(format!("graph {g}"));
    }
    if let Some(n) = m.node_count {
        facts.push(format!("{n} nodes"));
    }
    if !m.tags.is_empty() {
        facts.push(format!("tags {}", m.tags.join(",")));
    }
    if let Some(s) = &m.shard {
        facts.push(format!("shard {}/{}", s.index, s.count));
    }
    if !facts.is_empty() {
        writeln!(w, "  model     {}", facts.join(" · "))?;
    }
    if let Some(d) = &a.digest {
        // "verified" only where the digest was compared with a claim (a store's file name).
        let extra = match (d.state, &d.claimed_sha256_hex) {
            (DigestState::Mismatch, Some(c)) => format!(" (MISMATCH: store claims {c})"),
            (DigestState::Verified, Some(_)) => " (verified: the store's claim)".to_owned(),
            (DigestState::Verified, None) => " (computed)".to_owned(),
            (s, _) => format!(" ({})", s.as_str()),
        };
        writeln!(w, "  sha256    {}{extra}", d.sha256_hex)?;
    }
    if let Some(s) = &a.digest_skipped {
        writeln!(w, "  sha256    (not computed: {}: {})", s.reason, s.detail)?;
    }
    match (&m.license, &a.license_finding) {
        (Some(l), _) => writeln!(w, "  licence   {l}")?,
        (None, Some(_)) => writeln!(w, "  licence   (none declared)")?,
        _ => {}
    }
    if let Some(p) = &a.pickle {
        let mut line = p.verdict.as_str().to_owned();
        if !p.offending.is_empty() {
            line.push_str(&format!(": {}", p.offending.join(", ")));
        }
        writeln!(w, "  pickle    {line}")?;
        if !p.globals.is_empty() {
            writeln!(w, "  globals   {}", p.globals.join(", "))?;
        }
    }
    if let Some(sig) = &a.signature {
        let mut line = sig.verdict.as_str().to_owned();
        if let Some(s) = &sig.signer {
            line.push_str(&format!(" by {}", signature::describe(s)));
        }
        if let Some(f) = &sig.mismatched_file {
            line.push_str(&format!(": `{f}` differs"));
        }
        if let Some(b) = &sig.bundle {
            line.push_str(&format!(" [{}]", b.display()));
        }
        writeln!(w, "  signature {line}")?;
    }
    if a.policy != PolicyVerdict::NoManifest {
        let name =
            a.manifest_entry.as_ref().and_then(|e| e.name.clone()).map(|n| format!(" ({n})")).unwrap_or_default();
        writeln!(w, "  policy    {}{name}", a.policy.as_str())?;
    }
    for f in &a.findings {
        writeln!(w, "  {:<9} {}: {}", f.severity.as_str().to_uppercase(), f.code, f.message)?;
    }
    Ok(())
}

/// The human-readable report: one block per file, then sharded models, errors and a summary.
pub fn write_text(w: &mut dyn Write, out: &ScanOutput) -> std::io::Result<()> {
    for a in &out.artifacts {
        write_report(w, a)?;
        writeln!(w)?;
    }
    write_trailer(w, out)
}

/// Sharded models, errors and the summary line: the end of the text report, and what the
/// JSON-lines output writes on stderr.
pub fn write_trailer(w: &mut dyn Write, out: &ScanOutput) -> std::io::Result<()> {
    for g in &out.sharded_models {
        writeln!(
            w,
            "sharded model {}: {}/{} shards, {} params, {} tensors",
            g.group,
            g.shards_found.len(),
            g.shards_expected,
            human_count(g.parameter_count),
            g.tensor_count
        )?;
        for f in &g.findings {
            writeln!(w, "  {:<9} {}: {}", f.severity.as_str().to_uppercase(), f.code, f.message)?;
        }
    }
    for e in &out.errors {
        writeln!(w, "error: {}: {}", e.path.display(), e.error)?;
    }
    let s = &out.summary;
    writeln!(w, "{} files, {} models, {} with findings, {} errors", s.files, s.models, s.with_findings, s.errors)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_shards_are_counted_not_enumerated() {
        assert_eq!(missing_shards(&[1, 2], 3), (1, vec![3]));
        assert_eq!(missing_shards(&[2], 3), (2, vec![1, 3]));
        assert_eq!(missing_shards(&[1, 3], 3), (1, vec![2]));
        assert_eq!(missing_shards(&[1, 2, 3], 3), (0, vec![]));
        let (n, listed) = missing_shards(&[1, 2], u32::MAX);
        assert_eq!((n, listed.len(), listed[0]), (u64::from(u32::MAX) - 2, MAX_LISTED_SHARDS, 3));
        let (n, listed) = missing_shards(&[5, 7], 8);
        assert_eq!((n, listed), (6, vec![1, 2, 3, 4, 6, 8]));
    }
}
