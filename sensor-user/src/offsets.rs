//! Kernel struct member offsets, resolved from the running kernel's BTF at start-up.
//!
//! Rust BPF programs get no CO-RE relocations, so the probes read kernel structures at offsets
//! the collector supplies in a read-only global ([`KernelOffsets`]). Resolving them here, from
//! `/sys/kernel/btf/vmlinux`, keeps one probe binary valid on every kernel that has BTF;
//! offsets baked in at build time would not survive layout changes such as `struct file` in
//! 6.12. Anonymous structs and unions are descended into, and members that moved between
//! kernel versions are tried under each of their historical names.

use std::path::{Path, PathBuf};

use btf_rs::{Btf, Type};
use sensor_ebpf::KernelOffsets;

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum OffsetError {
    #[error("kernel BTF not found at {0}: this kernel was built without CONFIG_DEBUG_INFO_BTF, which modelwatch needs")]
    Missing(PathBuf),
    #[error("cannot parse kernel BTF at {path}: {source}")]
    Parse { path: PathBuf, source: btf_rs::Error },
    #[error("kernel BTF has no struct {0}")]
    NoStruct(String),
    #[error("kernel BTF: struct {strukt} has none of the members {candidates}")]
    NoMember { strukt: String, candidates: String },
    #[error("kernel BTF: {0} is a bitfield or does not fit the probes' offset type")]
    Unsupported(String),
}

/// A parsed BTF blob that answers "where is `struct.member.member` ?".
pub struct KernelBtf {
    btf: Btf,
}

impl KernelBtf {
    pub fn open(path: &Path) -> Result<Self, OffsetError> {
        if !path.exists() {
            return Err(OffsetError::Missing(path.to_owned()));
        }
        let btf = Btf::from_file(path).map_err(|source| OffsetError::Parse { path: path.to_owned(), source })?;
        Ok(Self { btf })
    }

    /// Byte offset of `members` (a path through named members) inside `struct strukt`,
    /// looking through anonymous structs and unions at every level.
    pub fn offset_of(&self, strukt: &str, members: &[&str]) -> Result<u32, OffsetError> {
        let mut ty = self.struct_named(strukt)?;
        let mut total_bits = 0u64;
        for (i, member) in members.iter().enumerate() {
            let (bits, member_ty) = self.find_member(&ty, member).ok_or_else(|| OffsetError::NoMember {
                strukt: strukt.to_owned(),
                candidates: members[..=i].join("."),
            })?;
            total_bits += bits;
            ty = member_ty;
        }
        if !total_bits.is_multiple_of(8) {
            return Err(OffsetError::Unsupported(format!("{strukt}.{}", members.join("."))));
        }
        u32::try_from(total_bits / 8).map_err(|_| OffsetError::Unsupported(format!("{strukt}.{}", members.join("."))))
    }

    /// The first of several historical spellings that exists.
    pub fn offset_of_any(&self, strukt: &str, candidates: &[&[&str]]) -> Result<u32, OffsetError> {
        for c in candidates {
            match self.offset_of(strukt, c) {
                Ok(off) => return Ok(off),
                Err(OffsetError::NoMember { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(OffsetError::NoMember {
            strukt: strukt.to_owned(),
            candidates: candidates.iter().map(|c| c.join(".")).collect::<Vec<_>>().join(" | "),
        })
    }

    fn struct_named(&self, name: &str) -> Result<Type, OffsetError> {
        let types = self.btf.resolve_types_by_name(name).map_err(|_| OffsetError::NoStruct(name.to_owned()))?;
        types
            .into_iter()
            // A forward declaration or an empty struct of the same name is not the definition.
            .find(|t| matches!(t, Type::Struct(s) if !s.members.is_empty()))
            .ok_or_else(|| OffsetError::NoStruct(name.to_owned()))
    }

    /// Finds `name` among the members of a struct/union type, descending into anonymous
    /// members. Returns the bit offset and the member's type with qualifiers stripped.
    fn find_member(&self, ty: &Type, name: &str) -> Option<(u64, Type)> {
        let members = match ty {
            Type::Struct(s) | Type::Union(s) => &s.members,
            _ => return None,
        };
        for m in members {
            let member_name = self.btf.resolve_name(m).unwrap_or_default();
            // A sibling whose type does not resolve does not end the search.
            let Ok(member_ty) = self.btf.resolve_chained_type(m) else { continue };
            let member_ty = self.strip(member_ty);
            if member_name == name {
                if m.bitfield_size().is_some_and(|s| s != 0) {
                    return None;
                }
                return Some((u64::from(m.bit_offset()), member_ty));
            }
            if member_name.is_empty()
                && let Some((bits, t)) = self.find_member(&member_ty, name)
            {
                return Some((u64::from(m.bit_offset()) + bits, t));
            }
        }
        None
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn strip(&self, mut ty: Type) -> Type {
        for _ in 0..16 {
            match &ty {
                Type::Typedef(_) | Type::Volatile(_) | Type::Const(_) | Type::Restrict(_) | Type::TypeTag(_) => {
                    let Some(next) = ty.as_btf_type().and_then(|t| self.btf.resolve_chained_type(t).ok()) else {
                        return ty;
                    };
                    ty = next;
                }
                _ => return ty,
            }
        }
        ty
    }
}

/// Resolves every offset the probes use from the running kernel.
pub fn resolve(path: &Path) -> Result<KernelOffsets, OffsetError> {
    let b = KernelBtf::open(path)?;
    let o = |s: &str, m: &[&str]| b.offset_of(s, m);
    Ok(KernelOffsets {
        task_files: o("task_struct", &["files"])?,
        task_mm: o("task_struct", &["mm"])?,
        task_group_leader: o("task_struct", &["group_leader"])?,
        task_real_parent: o("task_struct", &["real_parent"])?,
        task_tgid: o("task_struct", &["tgid"])?,
        task_pid: o("task_struct", &["pid"])?,
        // Older kernels call it real_start_time.
        task_start_boottime: b.offset_of_any("task_struct", &[&["start_boottime"], &["real_start_time"]])?,
        task_exit_code: o("task_struct", &["exit_code"])?,
        task_signal: o("task_struct", &["signal"])?,
        signal_live: o("signal_struct", &["live"])?,
        files_fdt: o("files_struct", &["fdt"])?,
        fdtable_max_fds: o("fdtable", &["max_fds"])?,
        fdtable_fd: o("fdtable", &["fd"])?,
        file_f_path: o("file", &["f_path"])?,
        file_f_inode: o("file", &["f_inode"])?,
        path_mnt: o("path", &["mnt"])?,
        path_dentry: o("path", &["dentry"])?,
        dentry_d_parent: o("dentry", &["d_parent"])?,
        dentry_d_name: o("dentry", &["d_name"])?,
        dentry_d_inode: o("dentry", &["d_inode"])?,
        qstr_len: o("qstr", &["len"])?,
        qstr_name: o("qstr", &["name"])?,
        inode_i_mode: o("inode", &["i_mode"])?,
        inode_i_ino: o("inode", &["i_ino"])?,
        inode_i_size: o("inode", &["i_size"])?,
        inode_i_rdev: o("inode", &["i_rdev"])?,
        inode_i_sb: o("inode", &["i_sb"])?,
        // ctime moved twice: i_ctime (< 6.6), __i_ctime (6.6–6.10), i_ctime_sec (6.11+).
        inode_i_ctime_sec: b
            .offset_of_any("inode", &[&["i_ctime_sec"], &["__i_ctime", "tv_sec"], &["i_ctime", "tv_sec"]])?,
        // tv_nsec is a long before 6.11: its low half (little-endian) is the value.
        inode_i_ctime_nsec: b
            .offset_of_any("inode", &[&["i_ctime_nsec"], &["__i_ctime", "tv_nsec"], &["i_ctime", "tv_nsec"]])?,
        inode_i_writecount: o("inode", &["i_writecount"])?,
        sb_s_dev: o("super_block", &["s_dev"])?,
        mount_mnt: o("mount", &["mnt"])?,
        mount_mnt_parent: o("mount", &["mnt_parent"])?,
        mount_mnt_mountpoint: o("mount", &["mnt_mountpoint"])?,
        vfsmount_mnt_root: o("vfsmount", &["mnt_root"])?,
        mm_arg_start: o("mm_struct", &["arg_start"])?,
        mm_arg_end: o("mm_struct", &["arg_end"])?,
        mm_exe_file: o("mm_struct", &["exe_file"])?,
        regs_arg: syscall_arg_registers(&b).unwrap_or([0; 6]),
        ..io_uring_offsets(&b).unwrap_or_default()
    })
}

/// The io_uring members the completion probe reads; `None` on a kernel without io_uring (or
/// with a layout these names do not describe): the probe is then not attached. The ring's
/// fixed-file table (6.13+ layout) is optional on top: without it, opens into fixed slots are
/// counted as unresolved.
fn io_uring_offsets(b: &KernelBtf) -> Option<KernelOffsets> {
    let o = |s: &str, m: &[&str]| b.offset_of(s, m).ok();
    let mut offs = KernelOffsets {
        io_kiocb_opcode: o("io_kiocb", &["opcode"])?,
        io_kiocb_file: o("io_kiocb", &["file"])?,
        io_kiocb_cmd: o("io_kiocb", &["cmd"])?,
        io_open_file_slot: o("io_open", &["file_slot"])?,
        io_open_how_flags: o("io_open", &["how", "flags"])?,
        ..KernelOffsets::default()
    };
    if let (Some(nr), Some(nodes), Some(ptr)) = (
        o("io_ring_ctx", &["file_table", "data", "nr"]),
        o("io_ring_ctx", &["file_table", "data", "nodes"]),
        o("io_rsrc_node", &["file_ptr"]),
    ) {
        (offs.ring_files_nr, offs.ring_files_nodes, offs.rsrc_node_file_ptr) = (nr, nodes, ptr);
    }
    Some(offs)
}

/// Whether [`resolve`] found the io_uring members (the opcode never sits first in io_kiocb).
pub fn has_io_uring(offs: &KernelOffsets) -> bool {
    offs.io_kiocb_opcode != 0
}

/// Whether the ring's fixed-file table can be read as well.
pub fn has_io_uring_fixed_files(offs: &KernelOffsets) -> bool {
    has_io_uring(offs) && offs.ring_files_nodes != 0 && offs.rsrc_node_file_ptr != 0
}

/// Offsets of the registers that hold syscall arguments in `struct pt_regs`, where they are
/// still intact at syscall exit. Only x86_64 qualifies (arm64 returns in x0, the first
/// argument); elsewhere `None`, and the probes stash arguments at entry instead.
pub fn syscall_arg_registers(b: &KernelBtf) -> Option<[u32; 6]> {
    if !cfg!(target_arch = "x86_64") {
        return None;
    }
    let mut regs = [0u32; 6];
    for (slot, name) in regs.iter_mut().zip(["di", "si", "dx", "r10", "r8", "r9"]) {
        *slot = b.offset_of("pt_regs", &[name]).ok()?;
    }
    Some(regs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel() -> KernelBtf {
        KernelBtf::open(Path::new(VMLINUX_BTF)).expect("this machine has kernel BTF")
    }

    #[test]
    fn resolves_all_offsets_on_this_kernel() {
        let offs = resolve(Path::new(VMLINUX_BTF)).expect("resolve");
        // Members that sit first in their struct on every kernel we know.
        assert_eq!(offs.path_mnt, 0);
        assert_eq!(offs.path_dentry, 8);
        // qstr is { union { struct { u32 hash; u32 len; }; u64 hash_len; }; const char *name; }.
        assert_eq!(offs.qstr_len, 4);
        assert_eq!(offs.qstr_name, 8);
        // Distinct members of one struct never share an offset.
        let task = [
            offs.task_files,
            offs.task_mm,
            offs.task_group_leader,
            offs.task_real_parent,
            offs.task_tgid,
            offs.task_pid,
            offs.task_start_boottime,
            offs.task_exit_code,
            offs.task_signal,
        ];
        for (i, a) in task.iter().enumerate() {
            assert!(*a > 0, "task_struct member {i} at offset 0");
            for b in &task[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(offs.task_pid + 4, offs.task_tgid, "pid and tgid are adjacent pid_t");
        // 6.11+: i_ctime_sec, then (after atime/mtime seconds and nanoseconds) i_ctime_nsec.
        assert_eq!(offs.inode_i_ctime_nsec, offs.inode_i_ctime_sec + 8 + 4 + 4);
        assert!(offs.inode_i_writecount > offs.inode_i_ctime_nsec);
        // This kernel has io_uring with the 6.13+ fixed-file table.
        assert!(has_io_uring(&offs) && has_io_uring_fixed_files(&offs), "{offs:?}");
        assert_eq!(offs.io_kiocb_cmd, 0, "the command area overlays the file pointer at the start");
        // x86_64 pt_regs: r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax cx dx si di ...
        #[cfg(target_arch = "x86_64")]
        assert_eq!(offs.regs_arg, [14 * 8, 13 * 8, 12 * 8, 7 * 8, 9 * 8, 8 * 8]);
    }

    #[test]
    fn anonymous_members_are_descended() {
        let b = kernel();
        // `hash_len`'s union sits at offset 0 and `len` inside its anonymous struct at 4.
        assert_eq!(b.offset_of("qstr", &["hash"]).unwrap(), 0);
        assert_eq!(b.offset_of("qstr", &["len"]).unwrap(), 4);
        // Nested path through a named member.
        let f_path = b.offset_of("file", &["f_path"]).unwrap();
        let dentry = b.offset_of("path", &["dentry"]).unwrap();
        assert_eq!(b.offset_of("file", &["f_path", "dentry"]).unwrap(), f_path + dentry);
    }

    #[test]
    fn missing_members_and_files_are_clear_errors() {
        let b = kernel();
        let err = b.offset_of("file", &["no_such_member"]).unwrap_err();
        assert!(err.to_string().contains("struct file"), "{err}");
        let err = b.offset_of("no_such_struct_xyz", &["x"]).unwrap_err();
        assert!(matches!(err, OffsetError::NoStruct(_)));
        let err = KernelBtf::open(Path::new("/nonexistent/vmlinux")).err().expect("missing file");
        assert!(err.to_string().contains("/nonexistent/vmlinux"), "{err}");
        assert!(
            b.offset_of_any("inode", &[&["nope"], &["i_mode"]]).unwrap() == b.offset_of("inode", &["i_mode"]).unwrap()
        );
    }
}
