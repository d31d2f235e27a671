//! Accelerator discovery: which device nodes are accelerators, which driver serves them, and
//! what the kernel's watched-device map must contain.
//!
//! Sources: device nodes under /dev (NVIDIA `nvidia*`, `nvidia-uvm*`, `nvidia-caps/*`; DRM
//! `dri/card*` and `dri/renderD*`; AMD `kfd`; DRM accel `accel/accel*`; AWS `neuron*`, Google
//! `apex_*`, Hailo `hailo*`, Huawei `davinci*`, WSL `dxg`), drivers and PCI addresses from
//! sysfs (`/sys/class/{drm,accel}/<node>/device`), NVIDIA minor → PCI mapping from
//! `/proc/driver/nvidia/gpus/*/information`. Discovery is re-run periodically, so devices that
//! appear later (hot-plug, a driver loaded after start) are picked up.

use std::{
    os::unix::fs::{FileTypeExt, MetadataExt},
    path::{Path, PathBuf},
};

use super::ioctls::Driver;
use crate::{
    config::ExtraDevice,
    proto::v1::{Accelerator, AcceleratorKind},
};

/// One watched device node.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    pub accel: Accelerator,
    /// `i_rdev` in the kernel's encoding (the watched-map key).
    pub rdev: u32,
    /// Table used to decode its ioctls.
    pub driver: Driver,
}

/// Roots of the filesystems discovery reads (tests point them at fixtures).
#[derive(Debug, Clone)]
pub struct Roots {
    pub dev: PathBuf,
    pub sys: PathBuf,
    pub proc: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Self { dev: "/dev".into(), sys: "/sys".into(), proc: "/proc".into() }
    }
}

/// Finds every accelerator node, plus `extra` nodes from the configuration.
pub fn discover(roots: &Roots, extra: &[ExtraDevice]) -> Vec<DeviceInfo> {
    let mut found = Vec::new();
    let nvidia_pci = nvidia_minor_to_pci(&roots.proc);
    let mut candidates: Vec<PathBuf> = Vec::new();
    for dir in [roots.dev.clone(), roots.dev.join("dri"), roots.dev.join("accel"), roots.dev.join("nvidia-caps")] {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            candidates.extend(rd.filter_map(|e| e.ok().map(|e| e.path())));
        }
    }
    candidates.sort();
    for path in candidates {
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        let parent = path.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()).unwrap_or("");
        let Some(mut info) = classify(parent, &name, roots) else {
            continue;
        };
        let Some((rdev, major, minor)) = char_device(&path) else {
            continue;
        };
        if info.vendor == "nvidia" && info.index >= 0 {
            info.pci_slot = nvidia_pci.iter().find(|(m, _)| *m == minor).map(|(_, p)| p.clone()).unwrap_or_default();
        }
        info.path = display_path(roots, &path);
        info.major = major;
        info.minor = minor;
        let driver = driver_table(&info);
        found.push(DeviceInfo { accel: info, rdev, driver });
    }
    for dev in extra {
        let path = dev.path();
        if found.iter().any(|d| Path::new(&d.accel.path) == path) {
            continue;
        }
        // A configured driver name selects the ioctl table (tests use this to drive the
        // session logic through an ordinary device).
        let driver =
            dev.driver().and_then(|d| Driver::ALL.into_iter().find(|k| k.as_str() == d)).unwrap_or(Driver::Unknown);
        let Some((rdev, major, minor)) = char_device(path) else {
            // Looked for again at every scan (it may appear later): the sensor warns once.
            tracing::debug!(device = %path.display(), "configured device is not a character device; not watched");
            continue;
        };
        found.push(DeviceInfo {
            accel: Accelerator {
                path: path.to_string_lossy().into_owned(),
                major,
                minor,
                vendor: String::new(),
                driver: dev.driver().unwrap_or("configured").into(),
                kind: AcceleratorKind::Configured as i32,
                pci_slot: String::new(),
                model: String::new(),
                index: -1,
            },
            rdev,
            driver,
        });
    }
    found
}

/// Paths are reported as /dev/... even when discovery read a fixture root.
fn display_path(roots: &Roots, path: &Path) -> String {
    match path.strip_prefix(&roots.dev) {
        Ok(rel) => Path::new("/dev").join(rel).to_string_lossy().into_owned(),
        Err(_) => path.to_string_lossy().into_owned(),
    }
}

/// (kernel rdev, major, minor) of a character device.
fn char_device(path: &Path) -> Option<(u32, u32, u32)> {
    let md = std::fs::metadata(path).ok()?;
    if !md.file_type().is_char_device() {
        return None;
    }
    let rdev = md.rdev();
    let kdev = sensor_ebpf::kernel_dev_from_user(rdev);
    Some((kdev, sensor_ebpf::kernel_dev_major(kdev), sensor_ebpf::kernel_dev_minor(kdev)))
}

fn accel(vendor: &str, driver: &str, kind: AcceleratorKind, index: i32) -> Accelerator {
    Accelerator { vendor: vendor.into(), driver: driver.into(), kind: kind as i32, index, ..Default::default() }
}

fn numeric_suffix(name: &str, prefix: &str) -> Option<i32> {
    let rest = name.strip_prefix(prefix)?;
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

/// What a node is, from its directory and name (and sysfs for DRM and accel nodes).
fn classify(parent: &str, name: &str, roots: &Roots) -> Option<Accelerator> {
    use AcceleratorKind::*;
    match parent {
        "dri" => {
            let (kind, index) = if let Some(n) = numeric_suffix(name, "renderD") {
                (Gpu, n - 128)
            } else if let Some(n) = numeric_suffix(name, "card") {
                (Display, n)
            } else {
                return None;
            };
            let mut a = accel("", "", kind, index);
            fill_from_sysfs(&mut a, &roots.sys.join("class/drm").join(name).join("device"));
            Some(a)
        }
        "accel" => {
            let n = numeric_suffix(name, "accel")?;
            let mut a = accel("", "", Npu, n);
            fill_from_sysfs(&mut a, &roots.sys.join("class/accel").join(name).join("device"));
            Some(a)
        }
        "nvidia-caps" => name.starts_with("nvidia-cap").then(|| accel("nvidia", "nvidia-caps", Control, -1)),
        _ => {
            if name == "nvidiactl" {
                Some(accel("nvidia", "nvidia", Control, -1))
            } else if let Some(n) = numeric_suffix(name, "nvidia") {
                Some(accel("nvidia", "nvidia", Gpu, n))
            } else if name == "nvidia-uvm" || name == "nvidia-uvm-tools" {
                Some(accel("nvidia", "nvidia-uvm", Control, -1))
            } else if name == "nvidia-modeset" {
                Some(accel("nvidia", "nvidia-modeset", Display, -1))
            } else if name == "kfd" {
                Some(accel("amd", "amdkfd", Control, -1))
            } else if let Some(n) = numeric_suffix(name, "neuron") {
                Some(accel("aws", "neuron", Npu, n))
            } else if let Some(n) = numeric_suffix(name, "apex_") {
                Some(accel("google", "apex", Npu, n))
            } else if let Some(n) = numeric_suffix(name, "hailo") {
                Some(accel("hailo", "hailo", Npu, n))
            } else if let Some(n) = numeric_suffix(name, "davinci") {
                Some(accel("huawei", "davinci", Npu, n))
            } else if name == "davinci_manager" {
                Some(accel("huawei", "davinci", Control, -1))
            } else if name == "dxg" {
                Some(accel("microsoft", "dxg", Gpu, -1))
            } else {
                None
            }
        }
    }
}

/// Driver name, PCI slot and vendor of a DRM/accel node from its sysfs `device` link.
fn fill_from_sysfs(a: &mut Accelerator, device: &Path) {
    if let Ok(drv) = std::fs::read_link(device.join("driver"))
        && let Some(name) = drv.file_name().and_then(|n| n.to_str())
    {
        a.driver = name.to_owned();
    }
    if let Ok(real) = std::fs::canonicalize(device)
        && let Some(slot) = real.file_name().and_then(|n| n.to_str())
        && slot.contains(':')
    {
        a.pci_slot = slot.to_owned();
    }
    let vendor = std::fs::read_to_string(device.join("vendor")).unwrap_or_default();
    a.vendor = match vendor.trim() {
        "0x10de" => "nvidia",
        "0x1002" | "0x1022" => "amd",
        "0x8086" => "intel",
        "0x1da3" => "habana",
        "0x17cb" => "qualcomm",
        "0x1ae0" => "google",
        "0x1d0f" => "aws",
        "0x1e52" => "tenstorrent",
        _ => vendor_of_driver(&a.driver),
    }
    .to_owned();
}

/// Vendor of a DRM/accel node from its driver name, for when the PCI vendor id does not say.
fn vendor_of_driver(name: &str) -> &'static str {
    match name {
        // DRM drivers without an ioctl table of their own, hence without a descriptor.
        "radeon" => "amd",
        "nvidia-drm" => "nvidia",
        _ => Driver::from_kernel_name(name).map_or("", Driver::vendor),
    }
}

/// Which ioctl table decodes a device's commands: the driver whose descriptor names it, else the
/// DRM core alone for any other DRM or accel node.
fn driver_table(a: &Accelerator) -> Driver {
    match Driver::from_kernel_name(&a.driver) {
        Some(driver) => driver,
        None if a.path.starts_with("/dev/dri/") || a.path.starts_with("/dev/accel/") => Driver::Drm,
        None => Driver::Unknown,
    }
}

/// NVIDIA device minor → PCI address, from /proc/driver/nvidia/gpus/<pci>/information.
fn nvidia_minor_to_pci(proc_root: &Path) -> Vec<(u32, String)> {
    let Ok(rd) = std::fs::read_dir(proc_root.join("driver/nvidia/gpus")) else {
        return Vec::new();
    };
    rd.filter_map(|e| {
        let e = e.ok()?;
        let info = std::fs::read_to_string(e.path().join("information")).ok()?;
        let minor = info.lines().find_map(|l| l.strip_prefix("Device Minor:")).and_then(|v| v.trim().parse().ok())?;
        Some((minor, e.file_name().to_string_lossy().into_owned()))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_known_node_names() {
        let roots = Roots { dev: "/nonexistent".into(), sys: "/nonexistent".into(), proc: "/nonexistent".into() };
        let k =
            |parent: &str, name: &str| classify(parent, name, &roots).map(|a| (a.vendor, a.driver, a.kind, a.index));
        use AcceleratorKind::*;
        assert_eq!(k("dev", "nvidia0"), Some(("nvidia".into(), "nvidia".into(), Gpu as i32, 0)));
        assert_eq!(k("dev", "nvidia12"), Some(("nvidia".into(), "nvidia".into(), Gpu as i32, 12)));
        assert_eq!(k("dev", "nvidiactl"), Some(("nvidia".into(), "nvidia".into(), Control as i32, -1)));
        assert_eq!(k("dev", "nvidia-uvm").map(|x| x.1), Some("nvidia-uvm".into()));
        assert_eq!(k("dev", "kfd").map(|x| x.1), Some("amdkfd".into()));
        assert_eq!(k("dri", "renderD129").map(|x| (x.2, x.3)), Some((Gpu as i32, 1)));
        assert_eq!(k("dri", "card0").map(|x| x.2), Some(Display as i32));
        assert_eq!(k("accel", "accel0").map(|x| x.2), Some(Npu as i32));
        assert_eq!(k("nvidia-caps", "nvidia-cap1").map(|x| x.1), Some("nvidia-caps".into()));
        assert_eq!(k("dev", "nvidiafoo"), None);
        assert_eq!(k("dev", "null"), None);
        assert_eq!(k("dri", "by-path"), None);
    }

    #[test]
    fn extra_devices_are_watched_with_kernel_encoding() {
        let roots = Roots { dev: "/nonexistent".into(), sys: "/sys".into(), proc: "/proc".into() };
        let found = discover(
            &roots,
            &[
                ExtraDevice::Path(PathBuf::from("/dev/null")),
                ExtraDevice::Path(PathBuf::from("/etc/hostname")),
                ExtraDevice::Spec { path: PathBuf::from("/dev/zero"), driver: Some("amdgpu".into()) },
            ],
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].rdev, 0x10_0003);
        assert_eq!((found[0].accel.major, found[0].accel.minor), (1, 3));
        assert_eq!(found[0].accel.kind, AcceleratorKind::Configured as i32);
        assert_eq!(found[0].driver, Driver::Unknown);
        assert_eq!((found[1].driver, found[1].accel.driver.as_str()), (Driver::Amdgpu, "amdgpu"));
    }

    #[test]
    fn sysfs_fixture_gives_driver_vendor_and_slot() {
        let dir = tempfile::tempdir().unwrap();
        let pci = dir.path().join("sys/devices/pci0000:00/0000:03:00.0");
        std::fs::create_dir_all(&pci).unwrap();
        std::fs::write(pci.join("vendor"), "0x1002\n").unwrap();
        let drivers = dir.path().join("sys/bus/pci/drivers/amdgpu");
        std::fs::create_dir_all(&drivers).unwrap();
        std::os::unix::fs::symlink(&drivers, pci.join("driver")).unwrap();
        let node = dir.path().join("sys/class/drm/renderD128");
        std::fs::create_dir_all(&node).unwrap();
        std::os::unix::fs::symlink(&pci, node.join("device")).unwrap();
        let roots = Roots { dev: "/nonexistent".into(), sys: dir.path().join("sys"), proc: "/nonexistent".into() };
        let a = classify("dri", "renderD128", &roots).unwrap();
        assert_eq!((a.vendor.as_str(), a.driver.as_str(), a.pci_slot.as_str()), ("amd", "amdgpu", "0000:03:00.0"));
        let a = Accelerator { path: "/dev/dri/renderD128".into(), ..a };
        assert_eq!(driver_table(&a), Driver::Amdgpu);
    }

    #[test]
    fn driver_names_select_table_and_vendor() {
        let table = |driver: &str, path: &str| {
            driver_table(&Accelerator { driver: driver.into(), path: path.into(), ..Default::default() })
        };
        // The names discovery mapped before the mapping moved into the descriptors. A new driver
        // needs no case here: the registry tests in `ioctls` check its names resolve.
        let cases = [
            ("nvidia", Driver::NvidiaRm, ""),
            ("nvidia-caps", Driver::NvidiaRm, ""),
            ("nvidia-modeset", Driver::NvidiaRm, ""),
            ("nvidia-uvm", Driver::NvidiaUvm, ""),
            ("amdgpu", Driver::Amdgpu, "amd"),
            ("amdkfd", Driver::AmdKfd, ""),
            ("i915", Driver::I915, "intel"),
            ("xe", Driver::Xe, "intel"),
            ("nouveau", Driver::Nouveau, "nvidia"),
            ("habanalabs", Driver::Habanalabs, "habana"),
            ("intel_vpu", Driver::Ivpu, "intel"),
            ("amdxdna", Driver::AmdXdna, "amd"),
            ("qaic", Driver::Qaic, "qualcomm"),
        ];
        for (name, driver, vendor) in cases {
            assert_eq!(table(name, "/dev/whatever"), driver, "{name}");
            assert_eq!(vendor_of_driver(name), vendor, "{name}");
        }
        // DRM drivers without a table decode the core range; their vendor is still known.
        assert_eq!(table("radeon", "/dev/dri/renderD128"), Driver::Drm);
        assert_eq!(table("nvidia-drm", "/dev/dri/card1"), Driver::Drm);
        assert_eq!(table("", "/dev/accel/accel0"), Driver::Drm);
        assert_eq!(table("neuron", "/dev/neuron0"), Driver::Unknown);
        assert_eq!((vendor_of_driver("radeon"), vendor_of_driver("nvidia-drm")), ("amd", "nvidia"));
        assert_eq!(vendor_of_driver("neuron"), "");
    }
}
