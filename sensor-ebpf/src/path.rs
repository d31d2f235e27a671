//! Absolute path reconstruction in the kernel: a bounded dentry walk that crosses mounts.
//! `bpf_d_path` would be simpler but is not allowed for tracepoint programs.
//!
//! Components are written leaf first, each NUL-terminated, into a per-CPU tail buffer; the
//! collector reverses them. Offsets into the buffer are masked so the verifier can bound every
//! write.

use aya_ebpf::helpers::generated::bpf_probe_read_kernel_str;
use sensor_ebpf::{COMPONENT_MAX, PATH_MAX_BYTES, PATH_MAX_COMPONENTS, TAIL_MAX, TAIL_OFFSET_MASK, path_flag, stat};

use crate::{
    kernel::{ReadError, off, read_ptr},
    maps::count,
};

pub struct Walked {
    pub len: u32,
    pub flags: u32,
}

/// Walks from `path` (a `struct path *`) to the namespace root, writing components into
/// `tail[start..]`. `tail` must have room for `TAIL_OFFSET_MASK + 1 + COMPONENT_MAX` bytes.
#[inline(always)]
pub fn walk(path: *const u8, tail: *mut u8, start: usize) -> Walked {
    let packed = mw_walk_path(path as u64, tail.cast(), start as u64);
    Walked { len: packed as u32, flags: (packed >> 32) as u32 }
}

/// A global BPF function: verified once on its own, whatever state its callers are in (the
/// bounded loop below would otherwise be re-verified for every path that reaches it).
/// Returns `flags << 32 | len`.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn mw_walk_path(path: u64, tail: *mut [u8; TAIL_MAX], start: u64) -> u64 {
    if tail.is_null() {
        return u64::from(path_flag::TRUNCATED) << 32;
    }
    let start = (start as usize) & TAIL_OFFSET_MASK;
    match try_walk(path as *const u8, tail.cast(), start) {
        Ok(w) => (u64::from(w.flags) << 32) | u64::from(w.len),
        Err(_) => {
            count(stat::READ_FAILED, 1);
            u64::from(path_flag::TRUNCATED) << 32
        }
    }
}

#[inline(always)]
fn try_walk(path: *const u8, tail: *mut u8, start: usize) -> Result<Walked, ReadError> {
    let mut vfsmnt = read_ptr(path, off!(path_mnt))?;
    let mut dentry = read_ptr(path, off!(path_dentry))?;
    let mount_mnt = off!(mount_mnt);
    let mut mount = vfsmnt.wrapping_sub(mount_mnt);
    let mut len: usize = 0;
    let mut flags: u32 = 0;
    let mut failed = false;
    // A read that fails part-way keeps what was walked: a suffix flagged truncated.
    macro_rules! or_stop {
        ($e:expr) => {
            match $e {
                Ok(v) => v,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        };
    }
    let mut i = 0;
    while i < PATH_MAX_COMPONENTS {
        i += 1;
        let mnt_root = or_stop!(read_ptr(vfsmnt, off!(vfsmount_mnt_root)));
        let parent = or_stop!(read_ptr(dentry, off!(dentry_d_parent)));
        if dentry == mnt_root {
            let mnt_parent = or_stop!(read_ptr(mount, off!(mount_mnt_parent)));
            if mnt_parent == mount {
                flags |= path_flag::COMPLETE;
                break;
            }
            dentry = or_stop!(read_ptr(mount, off!(mount_mnt_mountpoint)));
            mount = mnt_parent;
            vfsmnt = mount.wrapping_add(mount_mnt);
            continue;
        }
        if len >= PATH_MAX_BYTES {
            break;
        }
        let name: *const u8 = or_stop!(read_ptr(dentry, off!(dentry_d_name) + off!(qstr_name)));
        let at = (start + len) & TAIL_OFFSET_MASK;
        let n = unsafe { bpf_probe_read_kernel_str(tail.add(at).cast(), COMPONENT_MAX as u32, name.cast()) };
        if n <= 0 {
            failed = true;
            break;
        }
        let n = (n as usize) & (COMPONENT_MAX * 2 - 1);
        if dentry == parent {
            // A dentry that is its own parent without being the mount's root: a pseudo file
            // (memfd, anonymous inode) or a tree cut off from the mount. Its own name is the
            // only name there is, unless it is a filesystem root ("/").
            // SAFETY: at < TAIL_OFFSET_MASK + 1 and the tail has COMPONENT_MAX bytes past it.
            let is_slash = n == 2 && unsafe { *tail.add(at) } == b'/';
            if !is_slash {
                len += n;
            }
            flags |= path_flag::DISCONNECTED;
            break;
        }
        len += n;
        dentry = parent;
    }
    if failed {
        count(stat::READ_FAILED, 1);
    }
    if flags & (path_flag::COMPLETE | path_flag::DISCONNECTED) == 0 {
        flags |= path_flag::TRUNCATED;
    }
    Ok(Walked { len: len as u32, flags })
}
