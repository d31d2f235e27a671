//! Which device number the kernel probes see for a file: its superblock's `s_dev`.
//!
//! stat(2) does not always report that one: btrfs gives every subvolume its own anonymous
//! device, overlayfs may report a lower layer's. Matching a path found in userspace with a file
//! the kernel reported (inode marks, model directories, the file behind an event) needs the
//! superblock's number, which the mount table carries: statx(2) names the mount of a path
//! (`STATX_MNT_ID`, Linux 5.8) and `/proc/*/mountinfo` gives that mount's `major:minor`, which
//! the kernel prints from `s_dev`. Mount ids are unique across mount namespaces, so a path
//! reached through `/proc/<pid>/root` is found in that process's mountinfo.

use std::{collections::HashMap, ffi::CString, os::unix::ffi::OsStrExt as _, path::Path};

use sensor_ebpf::kernel_dev_from_user;

/// Lines of one mountinfo file read at most (hostile mount storms stay bounded).
const MAX_MOUNTS: usize = 65_536;

#[derive(Default)]
pub struct MountDevs {
    /// Mount id → kernel-encoded `s_dev`.
    by_id: HashMap<u64, u32>,
}

impl MountDevs {
    /// The kernel's device number for `path`, whose stat(2) device is `stat_dev`. Falls back to
    /// `stat_dev` where the mount cannot be found (no statx mount id, unreadable mountinfo).
    pub fn kernel_dev(&mut self, path: &Path, stat_dev: u64) -> u32 {
        let fallback = kernel_dev_from_user(stat_dev);
        let Some(mnt_id) = mount_id(path) else { return fallback };
        if let Some(dev) = self.by_id.get(&mnt_id) {
            return *dev;
        }
        // A mount we have not seen: reread our table, then the one of the namespace the path
        // goes through.
        let mut tables = vec![Path::new("/proc/self/mountinfo").to_owned()];
        if let Some(pid) = proc_root_pid(path) {
            tables.push(Path::new("/proc").join(pid).join("mountinfo"));
        }
        for table in tables {
            let Ok(text) = std::fs::read_to_string(&table) else { continue };
            let mounts = parse_mountinfo(&text);
            if self.by_id.len() + mounts.len() > MAX_MOUNTS {
                self.by_id.clear();
            }
            self.by_id.extend(mounts);
            if let Some(dev) = self.by_id.get(&mnt_id) {
                return *dev;
            }
        }
        tracing::debug!(path = %path.display(), mnt_id, "mount not in any mount table");
        fallback
    }
}

/// The id of the mount `path` lies on.
fn mount_id(path: &Path) -> Option<u64> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero statx is a valid value of this plain C struct.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: c is a NUL-terminated path and stx a writable statx buffer.
    let rc =
        unsafe { libc::statx(libc::AT_FDCWD, c.as_ptr(), libc::AT_STATX_SYNC_AS_STAT, libc::STATX_MNT_ID, &mut stx) };
    (rc == 0 && stx.stx_mask & libc::STATX_MNT_ID != 0).then_some(stx.stx_mnt_id)
}

/// `1234` from `/proc/1234/root/...`, `/proc/1234/fd/N` or `/proc/1234/map_files/...`: paths
/// that lead into that process's mount namespace.
fn proc_root_pid(path: &Path) -> Option<&str> {
    let rest = path.to_str()?.strip_prefix("/proc/")?;
    let (pid, tail) = rest.split_once('/')?;
    let through = tail.starts_with("root") || tail.starts_with("fd/") || tail.starts_with("map_files/");
    (pid.bytes().all(|b| b.is_ascii_digit()) && through).then_some(pid)
}

/// Mount id → kernel-encoded device, from mountinfo lines
/// (`36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw`).
pub fn parse_mountinfo(text: &str) -> HashMap<u64, u32> {
    text.lines()
        .take(MAX_MOUNTS)
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let id = fields.next()?.parse().ok()?;
            let _parent = fields.next()?;
            let (major, minor) = fields.next()?.split_once(':')?;
            let (major, minor): (u64, u64) = (major.parse().ok()?, minor.parse().ok()?);
            Some((id, kernel_dev_from_user(libc::makedev(major as u32, minor as u32))))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    #[test]
    fn parses_mountinfo_and_survives_garbage() {
        let text = "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n\
                    44 27 0:39 / /srv/models rw,relatime - btrfs /dev/loop0 rw,subvol=/\n\
                    x y z\n\
                    45 27 0:-1 / /bad rw - tmpfs tmpfs rw\n\
                    \n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[&36], kernel_dev_from_user(libc::makedev(98, 0)));
        assert_eq!(m[&44], kernel_dev_from_user(libc::makedev(0, 39)));
    }

    #[test]
    fn proc_root_paths() {
        assert_eq!(proc_root_pid(Path::new("/proc/42/root/srv/m.gguf")), Some("42"));
        assert_eq!(proc_root_pid(Path::new("/proc/42/fd/7")), Some("42"));
        assert_eq!(proc_root_pid(Path::new("/proc/42/map_files/1000-2000")), Some("42"));
        assert_eq!(proc_root_pid(Path::new("/proc/42/cwd/x")), None);
        assert_eq!(proc_root_pid(Path::new("/proc/self/root/x")), None);
        assert_eq!(proc_root_pid(Path::new("/srv/m.gguf")), None);
    }

    /// On this machine's root filesystem (not btrfs) stat and the mount table agree.
    #[test]
    fn real_files_get_their_superblock_device() {
        let md = std::fs::metadata("/").unwrap();
        let mut devs = MountDevs::default();
        assert_eq!(devs.kernel_dev(Path::new("/"), md.dev()), kernel_dev_from_user(md.dev()));
        let missing = devs.kernel_dev(Path::new("/nonexistent/file"), 7);
        assert_eq!(missing, kernel_dev_from_user(7), "no mount id: the stat device stands");
    }
}
