//! The seccomp layer of [`super::confine`].

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use seccompiler::{
    apply_filter_all_threads, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule,
};

/// System calls no collect makes, refused with `EPERM`: running programs,
/// reaching into other processes, changing the mount tree or namespaces
/// (which could undo Landlock), loading code into the kernel, keyrings.
pub const REFUSED: &[(&str, i64)] = &[
    ("execve", libc::SYS_execve),
    ("execveat", libc::SYS_execveat),
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("chroot", libc::SYS_chroot),
    ("fsopen", libc::SYS_fsopen),
    ("fsmount", libc::SYS_fsmount),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("socketpair", libc::SYS_socketpair),
];

/// Installs the filter on every thread of the process. `ip_sockets`:
/// IPv4 and IPv6 sockets stay allowed (GitHub lookups: TCP, and UDP for
/// DNS); every other family (UNIX, netlink, packet...) is refused, and all
/// of them without it.
pub fn restrict(ip_sockets: bool) -> Result<String> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = REFUSED.iter().map(|(_, nr)| (*nr, Vec::new())).collect();
    let socket = if ip_sockets {
        let not = |family: i32| SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, family as u64);
        let rule = SeccompRule::new(vec![not(libc::AF_INET)?, not(libc::AF_INET6)?])?;
        vec![rule]
    } else {
        Vec::new()
    };
    rules.insert(libc::SYS_socket, socket);
    let arch = std::env::consts::ARCH.try_into().context("seccomp: this architecture")?;
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), arch)
        .context("building the seccomp filter")?;
    let program: BpfProgram = filter.try_into().context("compiling the seccomp filter")?;
    apply_filter_all_threads(&program).context("installing the seccomp filter")?;
    let sockets = if ip_sockets { "IPv4/IPv6 sockets only" } else { "no sockets" };
    Ok(format!("enforced ({} system calls refused, {sockets})", REFUSED.len()))
}
