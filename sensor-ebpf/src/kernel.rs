//! Reads of kernel structures. Member offsets come from [`KERNEL_OFFSETS`], a read-only global
//! the collector fills from BTF before load; the verifier sees them as constants.

use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel};
use sensor_ebpf::{KernelOffsets, ProbeConfig};

#[unsafe(no_mangle)]
pub static KERNEL_OFFSETS: KernelOffsets = KernelOffsets {
    task_files: 0,
    task_mm: 0,
    task_group_leader: 0,
    task_real_parent: 0,
    task_tgid: 0,
    task_pid: 0,
    task_start_boottime: 0,
    task_exit_code: 0,
    task_signal: 0,
    signal_live: 0,
    files_fdt: 0,
    fdtable_max_fds: 0,
    fdtable_fd: 0,
    file_f_path: 0,
    file_f_inode: 0,
    path_mnt: 0,
    path_dentry: 0,
    dentry_d_parent: 0,
    dentry_d_name: 0,
    qstr_len: 0,
    qstr_name: 0,
    inode_i_mode: 0,
    inode_i_ino: 0,
    inode_i_size: 0,
    inode_i_rdev: 0,
    inode_i_sb: 0,
    inode_i_ctime_sec: 0,
    sb_s_dev: 0,
    mount_mnt: 0,
    mount_mnt_parent: 0,
    mount_mnt_mountpoint: 0,
    vfsmount_mnt_root: 0,
    mm_arg_start: 0,
    mm_arg_end: 0,
    mm_exe_file: 0,
    dentry_d_inode: 0,
};

#[unsafe(no_mangle)]
pub static PROBE_CONFIG: ProbeConfig = ProbeConfig {
    abi_version: 0,
    self_tgid: 0,
    size_threshold: 0,
};

/// Byte offset of a kernel struct member, as a verifier-visible constant.
macro_rules! off {
    ($field:ident) => {
        unsafe {
            core::ptr::read_volatile(&raw const $crate::kernel::KERNEL_OFFSETS.$field) as usize
        }
    };
}
pub(crate) use off;

#[inline(always)]
pub fn self_tgid() -> u32 {
    unsafe { core::ptr::read_volatile(&raw const PROBE_CONFIG.self_tgid) }
}

#[inline(always)]
pub fn size_threshold() -> u64 {
    unsafe { core::ptr::read_volatile(&raw const PROBE_CONFIG.size_threshold) }
}

/// A failed kernel read; counted by the caller's stats.
pub struct ReadError;

/// Reads a `T` at `base + offset` in kernel memory.
#[inline(always)]
pub fn read<T>(base: *const u8, offset: usize) -> Result<T, ReadError> {
    unsafe { bpf_probe_read_kernel(base.wrapping_add(offset).cast::<T>()) }.map_err(|_| ReadError)
}

/// Reads a pointer at `base + offset`; a NULL result is an error.
#[inline(always)]
pub fn read_ptr(base: *const u8, offset: usize) -> Result<*const u8, ReadError> {
    let p: *const u8 = read(base, offset)?;
    if p.is_null() { Err(ReadError) } else { Ok(p) }
}

#[inline(always)]
pub fn current_task() -> *const u8 {
    unsafe { bpf_get_current_task() as *const u8 }
}

/// `current->files->fdt->fd[fd]`, bounds-checked against `max_fds`.
#[inline(always)]
pub fn file_from_fd(task: *const u8, fd: i64) -> Result<*const u8, ReadError> {
    if fd < 0 {
        return Err(ReadError);
    }
    let files = read_ptr(task, off!(task_files))?;
    let fdt = read_ptr(files, off!(files_fdt))?;
    let max_fds: u32 = read(fdt, off!(fdtable_max_fds))?;
    if fd as u64 >= max_fds as u64 {
        return Err(ReadError);
    }
    let fds = read_ptr(fdt, off!(fdtable_fd))?;
    read_ptr(fds, (fd as usize) * core::mem::size_of::<usize>())
}

/// `task->group_leader->start_boottime`: with the tgid it names the process.
#[inline(always)]
pub fn leader_start_boottime(task: *const u8) -> u64 {
    match read_ptr(task, off!(task_group_leader)) {
        Ok(leader) => read(leader, off!(task_start_boottime)).unwrap_or(0),
        Err(_) => 0,
    }
}

/// `task->real_parent->tgid`.
#[inline(always)]
pub fn parent_tgid(task: *const u8) -> u32 {
    match read_ptr(task, off!(task_real_parent)) {
        Ok(parent) => read(parent, off!(task_tgid)).unwrap_or(0),
        Err(_) => 0,
    }
}
