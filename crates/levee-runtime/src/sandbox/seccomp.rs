//! The instance's seccomp filters: compiled once at start, installed as the
//! last step before `exec`.
//!
//! A denylist in the spirit of Docker's default profile, because Lambda
//! runtimes (Python, Node, tokio) need a broad syscall surface: everything is
//! allowed except what reaches past the sandbox (mounts, namespaces,
//! another process's memory, the kernel's modules, keyrings, clocks, BPF,
//! perf). Must never allocate when installing: it runs between fork and exec.

use std::collections::BTreeMap;
use std::io;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// Refused with `EPERM`, as if the instance lacked the privilege.
const DENIED: &[libc::c_long] = &[
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_acct,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_quotactl,
    libc::SYS_quotactl_fd,
    libc::SYS_syslog,
    libc::SYS_vhangup,
    libc::SYS_lookup_dcookie,
    libc::SYS_fsopen,
    libc::SYS_fsmount,
    libc::SYS_fsconfig,
    libc::SYS_fspick,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_mount_setattr,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_uselib,
];

/// Refused with `ENOSYS`, as if the kernel were older: `clone3` hides its
/// flags in memory a filter cannot read, and glibc falls back to `clone`
/// on `ENOSYS` only; io_uring would run syscalls the filter never sees.
const MISSING: &[libc::c_long] = &[
    libc::SYS_clone3,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
];

/// `clone` flags that would make a new namespace.
const NAMESPACE_FLAGS: [libc::c_int; 7] = [
    libc::CLONE_NEWNS,
    libc::CLONE_NEWCGROUP,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
];

/// The two compiled filters. A foreign architecture's syscall (the 32-bit
/// ABI on x86_64) kills the process: its numbers mean other syscalls.
#[derive(Debug)]
pub(crate) struct Filters {
    denied: BpfProgram,
    missing: BpfProgram,
}

impl Filters {
    pub(crate) fn compile() -> Result<Self, seccompiler::Error> {
        let arch = std::env::consts::ARCH
            .try_into()
            .map_err(seccompiler::Error::Backend)?;
        let mut denied: BTreeMap<i64, Vec<SeccompRule>> =
            DENIED.iter().map(|&nr| (nr, Vec::new())).collect();
        // On x86_64 and aarch64 the flags are clone's first argument.
        let clone_rules = NAMESPACE_FLAGS
            .iter()
            .map(|&flag| {
                let flag = flag as u64;
                SeccompCondition::new(
                    0,
                    SeccompCmpArgLen::Qword,
                    SeccompCmpOp::MaskedEq(flag),
                    flag,
                )
                .and_then(|c| SeccompRule::new(vec![c]))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(seccompiler::Error::Backend)?;
        denied.insert(libc::SYS_clone, clone_rules);
        let missing = MISSING.iter().map(|&nr| (nr, Vec::new())).collect();
        let build = |rules, errno: i32| -> Result<BpfProgram, seccompiler::Error> {
            SeccompFilter::new(
                rules,
                SeccompAction::Allow,
                SeccompAction::Errno(errno as u32),
                arch,
            )
            .and_then(BpfProgram::try_from)
            .map_err(seccompiler::Error::Backend)
        };
        Ok(Self {
            denied: build(denied, libc::EPERM)?,
            missing: build(missing, libc::ENOSYS)?,
        })
    }

    /// Installs both filters on the calling thread (and sets
    /// `no_new_privs`, which an unprivileged filter requires). Allocates
    /// nothing: safe between fork and exec.
    pub(crate) fn install(&self) -> io::Result<()> {
        for program in [&self.denied, &self.missing] {
            seccompiler::apply_filter(program).map_err(|e| match e {
                seccompiler::Error::Seccomp(e) | seccompiler::Error::Prctl(e) => e,
                _ => io::Error::from_raw_os_error(libc::EINVAL),
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_compile_for_this_machine() {
        let f = Filters::compile().unwrap();
        assert!(!f.denied.is_empty() && !f.missing.is_empty());
    }
}
