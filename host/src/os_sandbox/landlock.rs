//! The Landlock layer of [`super::confine`].

use anyhow::{Context, Result};
use landlock::{
    Access, AccessFs, AccessNet, BitFlags, LandlockStatus, NetPort, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};

use super::Grants;

/// The newest ABI this code knows what to ask of; older kernels get what
/// they have (best effort), and the status says so.
const ABI_WANTED: ABI = ABI::V6;

/// Restricts the calling thread (and its future threads) to `grants`.
/// Returns the status in words, and whether it is fully enforced.
pub fn restrict(grants: &Grants) -> Result<(String, bool)> {
    let all = AccessFs::from_all(ABI_WANTED);
    // Everything a collect does to storages; never execution, and no
    // special file, symlink or device control.
    let storage = all
        & !(AccessFs::Execute
            | AccessFs::MakeChar
            | AccessFs::MakeBlock
            | AccessFs::MakeFifo
            | AccessFs::MakeSock
            | AccessFs::MakeSym
            | AccessFs::IoctlDev);
    let write_dir: BitFlags<AccessFs> = AccessFs::ReadFile
        | AccessFs::ReadDir
        | AccessFs::WriteFile
        | AccessFs::MakeReg
        | AccessFs::MakeDir
        | AccessFs::RemoveFile
        | AccessFs::RemoveDir
        | AccessFs::Refer
        | AccessFs::Truncate;
    let read: BitFlags<AccessFs> = AccessFs::ReadFile | AccessFs::ReadDir;

    let mut ruleset = Ruleset::default()
        .handle_access(all)
        .and_then(|r| r.handle_access(AccessNet::from_all(ABI_WANTED)))
        .and_then(|r| r.scope(Scope::AbstractUnixSocket | Scope::Signal))
        .context("preparing the Landlock ruleset")?
        .create()
        .context("creating the Landlock ruleset")?;
    // Beneath the root a file is opened for writing only in the run's
    // staging directory (`storage::staging`): no runner's file, image
    // or ledger entry can be rewritten by code that escaped the guest.
    let in_root =
        if grants.root_files_writable { storage } else { storage & !(AccessFs::WriteFile | AccessFs::Truncate) };
    let root = PathFd::new(&grants.storage_root)
        .with_context(|| format!("opening the storage root {} for Landlock", grants.storage_root.display()))?;
    ruleset = ruleset.add_rule(PathBeneath::new(root, in_root)).context("granting the storage root")?;
    if let Some(staging) = &grants.staging {
        ruleset = ruleset
            .add_rule(PathBeneath::new(staging.dir(), write_dir))
            .with_context(|| format!("granting {}", staging.path().display()))?;
    }
    for dir in &grants.write_dirs {
        let fd = PathFd::new(dir).with_context(|| format!("opening {} for Landlock", dir.display()))?;
        ruleset =
            ruleset.add_rule(PathBeneath::new(fd, write_dir)).with_context(|| format!("granting {}", dir.display()))?;
    }
    for path in &grants.read_paths {
        // Missing system files (no /etc/gai.conf...) are simply not granted.
        let Ok(fd) = PathFd::new(path) else { continue };
        let access = if path.is_dir() { read } else { AccessFs::ReadFile.into() };
        ruleset =
            ruleset.add_rule(PathBeneath::new(fd, access)).with_context(|| format!("granting {}", path.display()))?;
    }
    for port in &grants.tcp_connect {
        ruleset = ruleset
            .add_rule(NetPort::new(*port, AccessNet::ConnectTcp))
            .with_context(|| format!("granting TCP port {port}"))?;
    }
    let status = ruleset.restrict_self().context("enforcing the Landlock ruleset")?;
    let abi = match status.landlock {
        LandlockStatus::Available { effective_abi, .. } => format!("ABI {}", effective_abi as i32),
        LandlockStatus::NotEnabled => "not enabled in this kernel".to_owned(),
        LandlockStatus::NotImplemented => "not built into this kernel".to_owned(),
    };
    let abi = if grants.root_files_writable {
        format!("{abi}; files beneath the root writable: the fallback filesystem makes new files in place")
    } else {
        abi
    };
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => (format!("enforced ({abi})"), true),
        RulesetStatus::PartiallyEnforced => (
            format!("partly enforced ({abi}: an older kernel; what it lacks (TCP ports before ABI 4, scopes before 6) is not)"),
            false,
        ),
        RulesetStatus::NotEnforced => (format!("unavailable ({abi})"), false),
    })
}
