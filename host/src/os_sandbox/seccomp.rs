//! The seccomp layer of [`super::confine`]: an allowlist. Every system
//! call a confined run makes is named below, by group; every other one,
//! the kernel's next new interface included, is refused.
//!
//! The list comes from `strace -f` of the commands that confine themselves
//! (`collect` with GitHub lookups, bounded storages and a textfile,
//! `extract`, `ingest`, `storage delete`, `quarantine purge`, on both
//! filesystem layers), from the first call after the filter is installed.
//! `io_uring_*` is not on it (its `IORING_OP_SOCKET` made sockets the
//! socket rule never saw), nor is any x32 number (bit 30 set) or another
//! architecture's (the filter checks the architecture first).
//!
//! **Refused means `EPERM`**, and the kernel logs each refusal (flag
//! `SECCOMP_FILTER_FLAG_LOG`: an audit record naming the call's number and
//! the process). Not a kill: a refused call fails like any other I/O error,
//! naming what it was doing; the storage it was for is failed-and-kept
//! (nothing is lost), the run goes on and its summary says so. A kill
//! would end a run mid-batch over a call that an operator can read in the
//! kernel log either way, and an escaped guest gains nothing by trying
//! again: every refused call stays refused.
//!
//! Two calls are refused with `ENOSYS` instead, as on a kernel without
//! them, so that the C library falls back: `clone3` (its flags are in
//! memory, out of seccomp's sight; `clone` is allowed for threads only,
//! `CLONE_THREAD` set, so no process is ever started) and nothing else.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

/// A system call by name and number.
type Call = (&'static str, i64);

macro_rules! calls {
    ($($name:ident),* $(,)?) => { &[$((stringify!($name), libc::$name)),*] };
}

/// Memory: the allocator, wasmtime's code and linear memories
/// (`memfd_create` for memory images), thread stacks.
const MEMORY: &[Call] = calls![SYS_brk, SYS_mmap, SYS_munmap, SYS_mprotect, SYS_mremap, SYS_madvise, SYS_memfd_create];

/// Threads and their synchronisation (the epoch ticker, parallel
/// compilation, the wasmtime-wasi fallback's runtime); `clone` has a rule
/// of its own.
const THREADS: &[Call] = calls![
    SYS_futex,
    SYS_set_robust_list,
    SYS_get_robust_list,
    SYS_rseq,
    SYS_set_tid_address,
    SYS_sched_yield,
    SYS_sched_getaffinity,
    SYS_membarrier,
    SYS_gettid,
    SYS_getpid,
    SYS_exit,
    SYS_exit_group,
];

/// Signals: wasmtime's trap handlers and their alternate stacks.
const SIGNALS: &[Call] = calls![SYS_rt_sigaction, SYS_rt_sigprocmask, SYS_rt_sigreturn, SYS_sigaltstack];

/// Time and randomness.
const TIME: &[Call] = calls![
    SYS_clock_gettime,
    SYS_clock_getres,
    SYS_clock_nanosleep,
    SYS_nanosleep,
    SYS_gettimeofday,
    SYS_restart_syscall,
    SYS_getrandom,
];

/// Descriptors: reading, writing and syncing what is open or opened
/// (Landlock decides which paths), waiting on them (the wasmtime-wasi
/// fallback's epoll, the unmount helper's socket).
const FILES: &[Call] = calls![
    SYS_read,
    SYS_readv,
    SYS_pread64,
    SYS_write,
    SYS_writev,
    SYS_pwrite64,
    SYS_lseek,
    SYS_close,
    SYS_fcntl,
    SYS_dup,
    SYS_dup3,
    SYS_fsync,
    SYS_fdatasync,
    SYS_ftruncate,
    SYS_fadvise64,
    SYS_flock,
    SYS_ppoll,
    SYS_epoll_create1,
    SYS_epoll_ctl,
    SYS_epoll_pwait,
    SYS_eventfd2,
    SYS_pipe2,
    SYS_sendto,
    SYS_recvfrom,
    SYS_sendmsg,
    SYS_recvmsg,
    SYS_wait4,
];

/// Paths: the confined filesystem (`openat2`), the host's own walks and
/// the files it writes (the textfile's temporary copy, reason files).
const PATHS: &[Call] = calls![
    SYS_openat,
    SYS_openat2,
    SYS_newfstatat,
    SYS_fstat,
    SYS_statx,
    SYS_statfs,
    SYS_fstatfs,
    SYS_getdents64,
    SYS_readlinkat,
    SYS_faccessat,
    SYS_faccessat2,
    SYS_mkdirat,
    SYS_unlinkat,
    SYS_renameat,
    SYS_renameat2,
    SYS_linkat,
    SYS_fchmod,
    SYS_fchmodat,
    SYS_fgetxattr,
    SYS_getcwd,
    SYS_uname,
];

/// The same calls' older numbers, which x86_64 still has and its C library
/// still uses.
#[cfg(target_arch = "x86_64")]
const LEGACY: &[Call] = calls![
    SYS_open,
    SYS_stat,
    SYS_lstat,
    SYS_access,
    SYS_mkdir,
    SYS_rmdir,
    SYS_unlink,
    SYS_rename,
    SYS_readlink,
    SYS_chmod,
    SYS_poll,
    SYS_dup2,
    SYS_epoll_wait,
];
#[cfg(not(target_arch = "x86_64"))]
const LEGACY: &[Call] = &[];

/// Sockets, with GitHub lookups only: TCP to the API and UDP to the
/// resolver (`socket` itself has a rule: IPv4 and IPv6 only).
const NETWORK: &[Call] = calls![
    SYS_connect,
    SYS_getsockopt,
    SYS_setsockopt,
    SYS_getsockname,
    SYS_getpeername,
    SYS_shutdown,
    SYS_sendmmsg,
    SYS_recvmmsg,
];

/// `prctl` options a run uses: naming threads, naming anonymous mappings.
const PRCTL_OPTIONS: &[i32] = &[libc::PR_SET_NAME, libc::PR_GET_NAME, PR_SET_VMA];
const PR_SET_VMA: i32 = 0x5356_4d41;

/// `ioctl` requests a run makes: non-blocking sockets, bytes ready (the
/// resolver), whether stderr is a terminal.
#[allow(clippy::unnecessary_cast)] // `Ioctl` is not `u64` on every target.
const IOCTL_REQUESTS: &[u64] = &[libc::FIONBIO as u64, libc::FIONREAD as u64, libc::TCGETS as u64];

/// Every call the filter lets through, by name: for the tests and the
/// status line.
pub fn allowed(network: bool) -> Vec<&'static str> {
    let mut names: Vec<&str> = groups(network).flat_map(|group| group.iter().map(|(name, _)| *name)).collect();
    names.extend(["SYS_clone", "SYS_prctl", "SYS_ioctl", "SYS_tgkill", "SYS_prlimit64"]);
    if network {
        names.push("SYS_socket");
    }
    names
}

fn groups(network: bool) -> impl Iterator<Item = &'static [Call]> {
    [MEMORY, THREADS, SIGNALS, TIME, FILES, PATHS, LEGACY].into_iter().chain(network.then_some(NETWORK))
}

/// Installs the filters on every thread of the process. `network`: the
/// calls of GitHub lookups, with IPv4 and IPv6 sockets only; without it,
/// no socket can be made at all.
pub fn restrict(network: bool) -> Result<String> {
    let arch: TargetArch = std::env::consts::ARCH.try_into().context("seccomp: this architecture")?;
    let allowlist = allowlist(network, arch)?;
    // clone3 is allowed by the list and answered ENOSYS here: the more
    // restrictive answer of the two filters wins.
    let clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .context("building the clone3 filter")?;
    let clone3: BpfProgram = clone3.try_into().context("compiling the clone3 filter")?;
    // The clone3 filter first: the allowlist refuses `seccomp` itself.
    install(&clone3, libc::SECCOMP_FILTER_FLAG_TSYNC).context("installing the clone3 filter")?;
    install(&allowlist, libc::SECCOMP_FILTER_FLAG_TSYNC | libc::SECCOMP_FILTER_FLAG_LOG)
        .context("installing the seccomp allowlist")?;
    let sockets = if network { "IPv4/IPv6 sockets only" } else { "no sockets" };
    Ok(format!(
        "enforced (an allowlist of {} system calls, {sockets}; others refused and logged)",
        allowed(network).len()
    ))
}

/// The allowlist: every call above, the conditional ones with their rules;
/// anything else `EPERM`.
fn allowlist(network: bool, arch: TargetArch) -> Result<BpfProgram> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        groups(network).flat_map(|group| group.iter().map(|(_, nr)| (*nr, Vec::new()))).collect();
    rules.insert(libc::SYS_clone3, Vec::new());
    let arg =
        |index: u8, op: SeccompCmpOp, value: u64| SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, value);
    let one_of = |index: u8, values: &[u64]| -> Result<Vec<SeccompRule>> {
        values.iter().map(|v| Ok(SeccompRule::new(vec![arg(index, SeccompCmpOp::Eq, *v)?])?)).collect()
    };
    // Threads only: a process started here would be a fresh start for
    // whoever escaped the guest.
    let thread = libc::CLONE_THREAD as u64;
    rules.insert(libc::SYS_clone, vec![SeccompRule::new(vec![arg(0, SeccompCmpOp::MaskedEq(thread), thread)?])?]);
    rules.insert(libc::SYS_prctl, one_of(0, &PRCTL_OPTIONS.iter().map(|o| *o as u64).collect::<Vec<_>>())?);
    rules.insert(libc::SYS_ioctl, one_of(1, IOCTL_REQUESTS)?);
    // Signals and limits of this process only (abort() raises SIGABRT on
    // itself; the standard library reads its own stack limit).
    let pid = std::process::id() as u64;
    rules.insert(libc::SYS_tgkill, one_of(0, &[pid])?);
    rules.insert(libc::SYS_prlimit64, one_of(0, &[0, pid])?);
    if network {
        rules.insert(libc::SYS_socket, one_of(0, &[libc::AF_INET as u64, libc::AF_INET6 as u64])?);
    }
    let filter = SeccompFilter::new(rules, SeccompAction::Errno(libc::EPERM as u32), SeccompAction::Allow, arch)
        .context("building the seccomp allowlist")?;
    filter.try_into().context("compiling the seccomp allowlist")
}

/// `seccomp(SECCOMP_SET_MODE_FILTER, flags, program)`; the caller has set
/// no-new-privileges (Landlock does), else it is set here.
fn install(program: &BpfProgram, flags: libc::c_ulong) -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let len = u16::try_from(program.len()).map_err(|_| std::io::Error::other("seccomp program too long"))?;
    let prog = libc::sock_fprog { len, filter: program.as_ptr() as *mut libc::sock_filter };
    // SAFETY: `prog` points at `program`'s instructions, alive for the call;
    // the kernel copies them.
    let rc = unsafe {
        libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, flags, &prog as *const libc::sock_fprog)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_that_escapes_or_makes_a_new_interface_is_allowed() {
        for network in [false, true] {
            let names = allowed(network);
            for refused in [
                "SYS_io_uring_setup",
                "SYS_io_uring_enter",
                "SYS_io_uring_register",
                "SYS_execve",
                "SYS_execveat",
                "SYS_ptrace",
                "SYS_mount",
                "SYS_umount2",
                "SYS_unshare",
                "SYS_setns",
                "SYS_bpf",
                "SYS_socketpair",
                "SYS_keyctl",
                "SYS_init_module",
                "SYS_kexec_load",
                "SYS_open_by_handle_at",
                "SYS_process_vm_writev",
                "SYS_userfaultfd",
                "SYS_perf_event_open",
                "SYS_symlinkat",
                "SYS_mknodat",
                "SYS_clone3",
                "SYS_fork",
                "SYS_vfork",
                "SYS_kill",
                "SYS_bind",
                "SYS_listen",
            ] {
                assert!(!names.contains(&refused), "{refused} is allowed (network: {network})");
            }
            let mut sorted = names.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), names.len(), "a call listed twice");
        }
        assert!(!allowed(false).contains(&"SYS_socket") && !allowed(false).contains(&"SYS_connect"));
        assert!(allowed(true).contains(&"SYS_socket"));
    }

    #[test]
    fn the_filters_compile_for_this_architecture() {
        let arch: TargetArch = std::env::consts::ARCH.try_into().unwrap();
        for network in [false, true] {
            assert!(!allowlist(network, arch).unwrap().is_empty());
        }
    }
}
