//! Real inference engines for the root integration tests (`tests/tests/engines.rs`) and
//! `cargo xtask gpu-check`, installed from the package registries into `target/engines/`.
//!
//! - `target/engines/venv/`: a Python 3 virtual environment with ONNX Runtime, onnx, NumPy,
//!   safetensors and gguf (the engines, and the writers of the tests' small models);
//! - `target/engines/node/node_modules/`: npm `node-llama-cpp` with its linux-x64 platform
//!   package, which carries llama.cpp prebuilt (`bins/linux-x64/`: libllama, libggml-*, the
//!   Node addon). Installed with `--ignore-scripts` (its postinstall would try to download or
//!   build llama.cpp) and `--omit=optional` (its optional dependencies are every platform's
//!   binaries, 700 MB; the one for this machine is named instead);
//! - `target/engines/installed.txt`: what was installed, so a later run that finds the same
//!   pins does nothing (it only reads that file and checks that two paths exist).
//!
//! Not installed: PyTorch. PyPI's only Linux x86_64 `torch` wheels are the CUDA builds: torch
//! 2.15 pulls 28 packages with it (`pip install --dry-run --report`), among them CUDA 13's
//! cuDNN, cuBLAS, NCCL, cuSPARSELt, cuFFT, cuSOLVER, NVSHMEM and Triton, gigabytes; the
//! CPU-only wheels live on PyTorch's own package index, which is not a registry this project
//! can reach. That is minutes of download and gigabytes under target/ for every clean clone,
//! for one engine that maps its weights the same way the NumPy/safetensors test already does.
//!
//! For the GPU check only (`ensure_cuda`, never part of `setup`): node-llama-cpp's CUDA
//! platform packages (`linux-x64-cuda`, CUDA 13, and `linux-x64-cuda-ext`, whose `fallback/`
//! is a CUDA 12 build) and the CUDA runtime and cuBLAS from PyPI (`nvidia-cuda-runtime-cu12`,
//! `nvidia-cublas-cu12`, `nvidia-cuda-runtime`, `nvidia-cublas`), 1.5 GB together.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::run;

/// Pins that work with Python 3.11 (checked: 3.11.7); onnxruntime 1.32 reads IR version 10.
const PYTHON_PACKAGES: &[&str] =
    &["onnxruntime==1.32.0", "onnx==1.23.2", "numpy==2.4.6", "safetensors==0.8.0", "gguf==0.19.0"];
/// node-llama-cpp 3.21.1: later releases' lock files name other platforms' builds that the
/// registry does not serve for this version line, and npm then refuses them.
const NODE_LLAMA_CPP: &str = "3.21.1";
const NODE_PACKAGES: &[&str] = &["node-llama-cpp@3.21.1", "@node-llama-cpp/linux-x64@3.21.1"];
const CUDA_NODE_PACKAGES: &[&str] = &[
    "node-llama-cpp@3.21.1",
    "@node-llama-cpp/linux-x64@3.21.1",
    "@node-llama-cpp/linux-x64-cuda@3.21.1",
    "@node-llama-cpp/linux-x64-cuda-ext@3.21.1",
];
const CUDA_PYTHON_PACKAGES: &[&str] = &[
    "nvidia-cuda-runtime-cu12==12.9.79",
    "nvidia-cublas-cu12==12.9.3.13",
    "nvidia-cuda-runtime==13.5.37",
    "nvidia-cublas==13.10.0.20",
];

/// Where the engines are, relative to the workspace root.
pub const ENGINES_DIR: &str = "target/engines";

pub fn engines_dir(root: &Path) -> PathBuf {
    root.join(ENGINES_DIR)
}

pub fn python(root: &Path) -> PathBuf {
    engines_dir(root).join("venv/bin/python")
}

/// The node_modules folder holding node-llama-cpp and the CPU build of llama.cpp.
pub fn node_modules(root: &Path) -> PathBuf {
    engines_dir(root).join("node/node_modules")
}

/// The node_modules folder holding node-llama-cpp with its CUDA builds (GPU check only).
pub fn cuda_node_modules(root: &Path) -> PathBuf {
    engines_dir(root).join("node-cuda/node_modules")
}

/// Where the CUDA runtime libraries from PyPI are (`pip --target`), GPU check only.
pub fn cuda_libs(root: &Path) -> PathBuf {
    engines_dir(root).join("cuda-libs")
}

fn marker_text(python_version: &str) -> String {
    format!(
        "python {python_version}\npip {}\nnpm {}\nnode-llama-cpp {NODE_LLAMA_CPP}\n",
        PYTHON_PACKAGES.join(" "),
        NODE_PACKAGES.join(" ")
    )
}

/// Installs the engines unless the marker says these pins are already there.
pub fn ensure_engines(root: &Path) -> anyhow::Result<()> {
    let dir = engines_dir(root);
    let marker = dir.join("installed.txt");
    let installed = std::fs::read_to_string(&marker).unwrap_or_default();
    // The fast path reads one file and checks two paths: no interpreter is started.
    let python_version = installed.lines().next().and_then(|l| l.strip_prefix("python ")).unwrap_or("");
    if !installed.is_empty()
        && installed == marker_text(python_version)
        && python(root).exists()
        && node_modules(root).join("node-llama-cpp/package.json").exists()
    {
        return Ok(());
    }
    let started = std::time::Instant::now();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let _ = std::fs::remove_file(&marker);
    let interpreter = find_python()?;
    let version = python_version_of(&interpreter)?;
    println!("setup: installing the test engines into {ENGINES_DIR} (Python {version}; under a minute)");
    let venv = dir.join("venv");
    if !python(root).exists() {
        run(Command::new(&interpreter).args(["-m", "venv"]).arg(&venv))?;
    }
    pip_install(&python(root), PYTHON_PACKAGES, None)?;
    npm_install(&dir.join("node"), NODE_PACKAGES)?;
    std::fs::write(&marker, marker_text(&version)).with_context(|| format!("writing {}", marker.display()))?;
    println!("setup: test engines installed in {:.0?}", started.elapsed());
    Ok(())
}

/// The CUDA builds of llama.cpp and the CUDA libraries they link, for `gpu-check`.
pub fn ensure_cuda(root: &Path) -> anyhow::Result<()> {
    ensure_engines(root)?;
    let dir = engines_dir(root);
    let marker = dir.join("installed-cuda.txt");
    let want = format!("npm {}\npip {}\n", CUDA_NODE_PACKAGES.join(" "), CUDA_PYTHON_PACKAGES.join(" "));
    if std::fs::read_to_string(&marker).is_ok_and(|t| t == want)
        && cuda_node_modules(root).join("@node-llama-cpp/linux-x64-cuda/package.json").exists()
    {
        return Ok(());
    }
    println!("setup: installing llama.cpp's CUDA builds and the CUDA runtime (about 1.5 GB)");
    npm_install(&dir.join("node-cuda"), CUDA_NODE_PACKAGES)?;
    pip_install(&python(root), CUDA_PYTHON_PACKAGES, Some(&cuda_libs(root)))?;
    std::fs::write(&marker, want).with_context(|| format!("writing {}", marker.display()))?;
    Ok(())
}

/// Python 3.9 or later: `python3.11` when it is there (the version the pins were checked
/// with), else `python3`.
fn find_python() -> anyhow::Result<String> {
    for candidate in ["python3.11", "python3"] {
        if let Ok(v) = python_version_of(candidate) {
            let minor: u32 = v.split('.').nth(1).and_then(|m| m.parse().ok()).unwrap_or(0);
            if v.starts_with("3.") && minor >= 9 {
                return Ok(candidate.to_owned());
            }
        }
    }
    bail!("the test engines need Python 3.9 or later with the venv module (python3.11 or python3 on the PATH)")
}

fn python_version_of(python: impl AsRef<std::ffi::OsStr>) -> anyhow::Result<String> {
    let out = Command::new(python.as_ref())
        .args(["-c", "import sys, venv; print('%d.%d.%d' % sys.version_info[:3])"])
        .output()
        .with_context(|| format!("running {}", python.as_ref().to_string_lossy()))?;
    if !out.status.success() {
        bail!("{} has no venv module", python.as_ref().to_string_lossy());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn pip_install(python: &Path, packages: &[&str], target: Option<&Path>) -> anyhow::Result<()> {
    let mut cmd = Command::new(python);
    cmd.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input"]);
    if let Some(t) = target {
        cmd.arg("--upgrade").arg("--target").arg(t);
    }
    run(cmd.args(packages))
}

fn npm_install(prefix: &Path, packages: &[&str]) -> anyhow::Result<()> {
    if Command::new("npm").arg("--version").output().is_err() {
        bail!("npm is needed to install node-llama-cpp (llama.cpp's prebuilt binaries); install Node.js and npm");
    }
    std::fs::create_dir_all(prefix).with_context(|| format!("creating {}", prefix.display()))?;
    run(Command::new("npm")
        .args(["install", "--no-save", "--no-audit", "--no-fund", "--ignore-scripts", "--omit=optional", "--prefix"])
        .arg(prefix)
        .args(packages))
}
