//! The storage-lifecycle subcommands: `storage create|list|delete`,
//! `quarantine show|restore|purge` and `hooks print` (see
//! `runner_metrics::storage` and `runner_metrics::hooks`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Subcommand, ValueEnum};

use runner_metrics::storage::{self, Deletion};

use crate::args::{OsSandboxArgs, WaitArgs, EXIT_FAILED_STORAGES};
use crate::messages::{check_root, format_time, plain, printable};

#[derive(Debug, Subcommand)]
pub enum StorageCommand {
    /// Create the storage of a new runner: `<DIR>/<NAME>/` holding
    /// `runner-installation-start.timestamp` (the current UNIX time).
    ///
    /// With --size, the storage is bounded: an ext4 image of that size in
    /// `<DIR>/.images/NAME.img`, loop-mounted on `<DIR>/NAME` with
    /// nodev,nosuid,noexec, so the runner can fill only its image, never the
    /// disk of the root, the log and the quarantine. That needs root (mount)
    /// and mkfs.ext4. Without --size it is a plain directory.
    ///
    /// Fails, changing nothing, if anything named NAME exists in DIR. Prints
    /// the new directory's path.
    ///
    /// Example: runner-metrics storage create --storage /srv/runner-fs --size 1M --owner ubuntu runner-7
    Create {
        /// The storage root (the directory holding one directory per runner).
        #[arg(long, value_name = "DIR")]
        storage: PathBuf,
        /// Make a bounded storage of this size: bytes, or a number with a
        /// unit K, M or G (binary), between 256K and 1T, e.g. 1M.
        #[arg(long, value_name = "SIZE", value_parser = storage::bounded::parse_size)]
        size: Option<u64>,
        /// Who owns the bounded storage's root directory: the user the
        /// runner writes as, USER[:GROUP] or UID[:GID] (default root).
        #[arg(long, value_name = "USER", value_parser = storage::bounded::parse_owner, requires = "size")]
        owner: Option<storage::bounded::Owner>,
        /// The runner's name: 1-255 bytes of [A-Za-z0-9._-], not starting
        /// with '.'.
        name: String,
    },
    /// List the runner storages: entries of DIR with a valid runner name
    /// that are plain directories (symlinks, files, `.quarantine` and other
    /// names are left out), sorted.
    ///
    /// A bounded storage whose mount is gone (after a reboot) is mounted
    /// again first; one that cannot be is still listed, with the reason on
    /// stderr, and the exit status is 1.
    List {
        /// The storage root.
        #[arg(long, value_name = "DIR")]
        storage: PathBuf,
        /// Print one JSON object per line (`name`, `path`, `bounded`, and
        /// `mount_error` when a bounded storage could not be mounted).
        #[arg(long)]
        json: bool,
    },
    /// Delete a runner's storage without following any symlink in it.
    ///
    /// The storage is renamed into `<DIR>/.deleting/` first (the runner name
    /// is free at once), then removed. If it cannot be removed it is
    /// quarantined as `undeletable` and the exit status is 1. Runs under the
    /// storage root's lock, like `collect` (exit status 3 when another run
    /// holds it past --wait).
    Delete {
        /// The storage root.
        #[arg(long, value_name = "DIR")]
        storage: PathBuf,
        /// The runner's name.
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        os_sandbox: OsSandboxArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum QuarantineMore {
    /// Show one quarantined storage: its reason file and its top-level
    /// entries (as lstat sees them; nothing is followed or read). For a
    /// bounded storage, the entries inside its image, mounted read-only
    /// (nodev,nosuid,noexec) for the listing, which needs root.
    Show {
        /// The storage root.
        #[arg(long, value_name = "DIR")]
        storage: PathBuf,
        /// The entry under `<DIR>/.quarantine/`: `NAME.TS` as `quarantine
        /// list` prints it, or `.quarantine/NAME.TS` as `collect` does.
        location: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Put a quarantined storage back under its runner name (from its
    /// reason file), for example once the cause is understood. Fails,
    /// changing nothing, if that name is taken. The next collect processes
    /// it again. Runs under the storage root's lock (exit status 3 when
    /// another run holds it past --wait).
    Restore {
        /// The storage root.
        #[arg(long, value_name = "DIR")]
        storage: PathBuf,
        /// The entry under `<DIR>/.quarantine/`: `NAME.TS` as `quarantine
        /// list` prints it, or `.quarantine/NAME.TS` as `collect` does.
        location: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Delete quarantined storages (and their reason files) quarantined
    /// longer ago than --older-than. Entries whose reason file cannot be
    /// read are reported and kept. Exit status 1 if any could not be purged.
    /// Runs under the storage root's lock unless --dry-run (exit status 3
    /// when another run holds it past --wait).
    Purge {
        /// The storage root.
        #[arg(long, value_name = "DIR")]
        storage: PathBuf,
        /// Minimum age: seconds, or a number with a unit s, m, h, d or w
        /// (e.g. 3600, 12h, 7d).
        #[arg(long, value_name = "AGE", value_parser = storage::parse_age)]
        older_than: Duration,
        /// Only print what would be deleted.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        os_sandbox: OsSandboxArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum HooksCommand {
    /// Print a writer script on stdout, for a manager to template into its
    /// runners.
    ///
    /// pre-job: run as ACTIONS_RUNNER_HOOK_JOB_STARTED; writes
    /// pre-job-metrics.json from GITHUB_WORKFLOW, GITHUB_REPOSITORY,
    /// GITHUB_EVENT_NAME and GITHUB_RUN_ID. post-job: run by the wrapper
    /// after the job as `post-job.sh EXIT_CODE`; writes post-job-metrics.json
    /// unless it exists. installed: writes runner-installed.timestamp. All
    /// write into $RUNNER_METRICS_DIR (default /metrics-exchange),
    /// atomically, with only sh and coreutils.
    Print {
        /// Which script.
        #[arg(value_enum)]
        hook: Hook,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Hook {
    PreJob,
    PostJob,
    Installed,
}

pub fn run_storage(command: StorageCommand) -> Result<ExitCode> {
    let (StorageCommand::Create { storage, .. }
    | StorageCommand::List { storage, .. }
    | StorageCommand::Delete { storage, .. }) = &command;
    check_root(storage)?;
    match command {
        StorageCommand::Create { storage, name, size, owner } => {
            let created = match size {
                Some(size) => storage::bounded::create(&storage, &name, size, owner)?,
                None => storage::create(&storage, &name)?,
            };
            println!("{}", created.path.display());
        }
        StorageCommand::List { storage, json } => {
            let listed = storage::list(&storage)?;
            for s in &listed {
                if json {
                    println!("{}", serde_json::to_string(s)?);
                } else {
                    println!("{}", s.name);
                }
                if let Some(e) = &s.mount_error {
                    eprintln!("runner-metrics: {}: not mounted: {}", s.path.display(), plain(e, &[], Some(&storage)));
                }
                if s.foreign_mount {
                    eprintln!("runner-metrics: {}: {}", s.path.display(), storage::FOREIGN_MOUNT);
                }
            }
            if listed.iter().any(|s| s.mount_error.is_some() || s.foreign_mount) {
                return Ok(ExitCode::from(EXIT_FAILED_STORAGES));
            }
        }
        StorageCommand::Delete { storage, name, wait, os_sandbox } => {
            // The walk runs on the host, over the runner's files: behind the
            // second wall, like a collect.
            let deleted = locked(&wait, &storage, || -> Result<Deletion> {
                let _confined = os_sandbox.confine(os_sandbox.walk_grants(&storage)?)?;
                Ok(storage::delete(&storage, &name)?)
            })?;
            match deleted {
                Deletion::Deleted => eprintln!("deleted {}", storage.join(&name).display()),
                Deletion::Quarantined { location, detail } => {
                    eprintln!(
                        "{}: {}; quarantined as undeletable: {}",
                        storage.join(&name).display(),
                        plain(&detail, &[], Some(&storage)),
                        storage.join(storage::QUARANTINE_DIR).join(location).display()
                    );
                    return Ok(ExitCode::from(EXIT_FAILED_STORAGES));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_quarantine(command: QuarantineMore) -> Result<ExitCode> {
    let (QuarantineMore::Show { storage, .. }
    | QuarantineMore::Restore { storage, .. }
    | QuarantineMore::Purge { storage, .. }) = &command;
    check_root(storage)?;
    match command {
        QuarantineMore::Show { storage, location, json } => show(&storage, location_arg(&location), json),
        QuarantineMore::Restore { storage, location, wait } => {
            let location = location_arg(&location);
            let restored = locked(&wait, &storage, || storage::restore(&storage, location))?;
            println!("{}", restored.path.display());
            Ok(ExitCode::SUCCESS)
        }
        QuarantineMore::Purge { storage, older_than, dry_run, wait, os_sandbox } => {
            let report = if dry_run {
                storage::purge(&storage, older_than, dry_run)?
            } else {
                locked(&wait, &storage, || -> Result<storage::PurgeReport> {
                    let _confined = os_sandbox.confine(os_sandbox.walk_grants(&storage)?)?;
                    Ok(storage::purge(&storage, older_than, dry_run)?)
                })?
            };
            for location in &report.purged {
                println!("{}{location}", if dry_run { "would purge " } else { "purged " });
            }
            for e in &report.errors {
                eprintln!("runner-metrics: {}", plain(&e.to_string(), &[], Some(&storage)));
            }
            eprintln!(
                "{} {}, {} younger kept, {} error(s)",
                report.purged.len(),
                if dry_run { "would be purged" } else { "purged" },
                report.kept.len(),
                report.errors.len()
            );
            Ok(if report.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILED_STORAGES) })
        }
    }
}

/// A quarantine location as the user gave it: `NAME.TS` (as `quarantine
/// list` prints it) or `.quarantine/NAME.TS` (as `collect` prints it, so it
/// can be pasted). Only that one prefix is taken off; what is left is checked
/// by the library like any location (one plain entry name).
pub fn location_arg(location: &str) -> &str {
    location
        .strip_prefix(storage::QUARANTINE_DIR)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|rest| !rest.is_empty())
        .unwrap_or(location)
}

/// Runs `change` holding the lock of `root` (taken only once the root is
/// known to be a directory, so a mistyped root is reported as such).
pub(crate) fn locked<T, E>(wait: &WaitArgs, root: &Path, change: impl FnOnce() -> Result<T, E>) -> Result<T>
where
    anyhow::Error: From<E>,
{
    let lock = if root.is_dir() { Some(wait.lock(root)?) } else { None };
    let result = change()?;
    drop(lock);
    Ok(result)
}

pub(crate) fn show(root: &Path, location: &str, json: bool) -> Result<ExitCode> {
    let entry = storage::show(root, location)?;
    let contents = if entry.present { storage::quarantined_contents(root, location)? } else { Vec::new() };
    let bounded = storage::bounded::image_inside(&root.join(storage::QUARANTINE_DIR).join(location)).is_some();
    if json {
        let mut value = serde_json::to_value(&entry)?;
        value["contents"] = serde_json::to_value(&contents)?;
        value["bounded"] = bounded.into();
        println!("{value}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("location:       {}", entry.location);
    println!("runner name:    {}", entry.runner_name);
    println!("reason:         {}", printable(&entry.reason));
    println!("file:           {}", printable(entry.file.as_deref().unwrap_or("-")));
    println!("detail:         {}", plain(&entry.detail, &[], Some(root)));
    println!("quarantined at: {} ({})", format_time(entry.quarantined_at), entry.quarantined_at);
    if !entry.present {
        println!("contents:       (gone: only the reason file is left)");
    } else if bounded {
        println!("contents:       (a bounded storage: the files of its image, mounted read-only to list them)");
    }
    for c in &contents {
        println!("  {}\t{}\t{} bytes", printable(&c.name), c.kind, c.size);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_hooks(command: HooksCommand) -> Result<ExitCode> {
    let HooksCommand::Print { hook } = command;
    let script = match hook {
        Hook::PreJob => runner_metrics::hooks::PRE_JOB,
        Hook::PostJob => runner_metrics::hooks::POST_JOB,
        Hook::Installed => runner_metrics::hooks::INSTALLED,
    };
    print!("{script}");
    Ok(ExitCode::SUCCESS)
}
