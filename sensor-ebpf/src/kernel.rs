//! Reads of kernel structures. Member offsets come from [`KERNEL_OFFSETS`], a read-only global
//! the collector fills from BTF before load; the verifier sees them as constants.

use aya_ebpf::helpers::{
    bpf_get_current_task, bpf_probe_read_kernel,
    generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
};
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
    inode_i_ctime_nsec: 0,
    inode_i_writecount: 0,
    io_kiocb_opcode: 0,
    io_kiocb_file: 0,
    io_kiocb_cmd: 0,
    io_open_file_slot: 0,
    io_open_how_flags: 0,
    ring_files_nr: 0,
    ring_files_nodes: 0,
    rsrc_node_file_ptr: 0,
    regs_arg: [0; 6],
};

#[unsafe(no_mangle)]
pub static PROBE_CONFIG: ProbeConfig = ProbeConfig {
    exit_group_dead_off: 0,
    self_tgid: 0,
    size_threshold: 0,
    args_from_regs: 0,
    nr_openat: 0,
    nr_openat2: 0,
    nr_open: 0,
    nr_creat: 0,
    nr_open_by_handle_at: 0,
    io_uring_fixed: 0,
    runtime_budget: 0,
    rate_interval_ns: 0,
    rate_burst_ns: 0,
};

/// Byte offset of a kernel struct member, as a verifier-visible constant.
macro_rules! off {
    ($field:ident) => {
        unsafe { core::ptr::read_volatile(&raw const $crate::kernel::KERNEL_OFFSETS.$field) as usize }
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

/// A field of the read-only configuration, as a verifier-visible constant.
macro_rules! config {
    ($field:ident) => {
        unsafe { core::ptr::read_volatile(&raw const $crate::kernel::PROBE_CONFIG.$field) }
    };
}
pub(crate) use config;

/// Whether syscall arguments come from the saved user registers at sys_exit.
#[inline(always)]
pub fn args_from_regs() -> bool {
    config!(args_from_regs) != 0
}

/// A failed kernel read; counted by the caller's stats.
pub struct ReadError;

/// Bytes of `struct pt_regs` copied at once, from the lowest argument register: every
/// syscall argument register on x86_64 (r10 at 56 .. di at 112).
const REGS_WINDOW: usize = 64;

/// The current task's syscall arguments, from the user registers the kernel saved on entry
/// (intact at sys_exit on x86_64): three helper calls for all six.
pub struct SyscallArgs(Window<REGS_WINDOW>);

impl SyscallArgs {
    #[inline(always)]
    pub fn read() -> Result<Self, ReadError> {
        let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as u64;
        if regs == 0 {
            return Err(ReadError);
        }
        let start = unsafe { core::ptr::read_volatile(&raw const KERNEL_OFFSETS.regs_arg[3]) } as usize;
        Window::read_from(regs as *const u8, start).map(Self)
    }

    #[inline(always)]
    pub fn get<const N: usize>(&self) -> u64 {
        let off = unsafe { core::ptr::read_volatile(&raw const KERNEL_OFFSETS.regs_arg[N]) } as usize;
        self.0.get(off).unwrap_or(0)
    }
}

/// A fixed-size copy of part of a kernel struct, from `start`: one helper call instead of one
/// per member. Members outside the window are read individually.
pub struct Window<const N: usize> {
    base: *const u8,
    start: usize,
    buf: Aligned<N>,
}

/// 8-byte aligned bytes: BPF has no unaligned loads, so reading a u64 member out of a plain
/// byte array would compile to eight byte loads and shifts.
#[repr(C, align(8))]
pub struct Aligned<const N: usize>([u8; N]);

impl<const N: usize> Window<N> {
    #[inline(always)]
    pub fn read(base: *const u8) -> Result<Self, ReadError> {
        Self::read_from(base, 0)
    }

    #[inline(always)]
    pub fn read_from(base: *const u8, start: usize) -> Result<Self, ReadError> {
        let buf: Aligned<N> =
            unsafe { bpf_probe_read_kernel(base.wrapping_add(start).cast::<Aligned<N>>()) }.map_err(|_| ReadError)?;
        Ok(Self { base, start, buf })
    }

    #[inline(always)]
    pub fn get<T: Copy>(&self, offset: usize) -> Result<T, ReadError> {
        let rel = offset.wrapping_sub(self.start);
        if offset >= self.start && rel + size_of::<T>() <= N {
            let p = unsafe { self.buf.0.as_ptr().add(rel) };
            // Kernel members are naturally aligned, and so is the window's start: the aligned
            // load is the one taken (offsets are constants, the verifier drops the other).
            if rel.is_multiple_of(align_of::<T>()) {
                Ok(unsafe { core::ptr::read(p.cast::<T>()) })
            } else {
                Ok(unsafe { core::ptr::read_unaligned(p.cast::<T>()) })
            }
        } else {
            read(self.base, offset)
        }
    }

    #[inline(always)]
    pub fn ptr(&self, offset: usize) -> Result<*const u8, ReadError> {
        let p: *const u8 = self.get(offset)?;
        if p.is_null() { Err(ReadError) } else { Ok(p) }
    }
}

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
///
/// The first three hops are direct loads through the BTF-typed current task (the verifier
/// turns them into fault-safe loads costing about a nanosecond each, where a
/// `bpf_probe_read_kernel` call costs about thirty); only the array slot needs the helper,
/// because the verifier types `struct file **` as a plain number.
#[inline(always)]
pub fn file_from_fd(fd: i64) -> Result<*const u8, ReadError> {
    if fd < 0 {
        return Err(ReadError);
    }
    let task = unsafe { bpf_get_current_task_btf() } as *const u8;
    // SAFETY (the four loads): BTF-typed pointers; the verifier makes the loads fault-safe.
    let (files_off, fdt_off, max_off, fd_off) =
        (off!(task_files), off!(files_fdt), off!(fdtable_max_fds), off!(fdtable_fd));
    let files = unsafe { core::ptr::read_volatile(task.add(files_off).cast::<*const u8>()) };
    if files.is_null() {
        return Err(ReadError);
    }
    let fdt = unsafe { core::ptr::read_volatile(files.add(fdt_off).cast::<*const u8>()) };
    if fdt.is_null() {
        return Err(ReadError);
    }
    let max_fds = unsafe { core::ptr::read_volatile(fdt.add(max_off).cast::<u32>()) };
    if fd as u64 >= u64::from(max_fds) {
        return Err(ReadError);
    }
    let fds = unsafe { core::ptr::read_volatile(fdt.add(fd_off).cast::<*const u8>()) };
    if fds.is_null() {
        return Err(ReadError);
    }
    read_ptr(fds, (fd as usize) * size_of::<usize>())
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
