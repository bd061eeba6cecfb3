//! The storage lifecycle (`runner_metrics::storage` and `runner-metrics
//! storage|quarantine`): create, list, get, delete, quarantine, show,
//! restore, purge. Everything happens in temporary roots; symlinks point at
//! a directory beside the root that must stay unchanged.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use runner_metrics::storage::QuarantineReason;
use runner_metrics::storage::{self, Deletion, ErrorKind};
use runner_metrics::{CollectOptions, NoJobMetrics, OutcomeKind};
use runner_metrics_e2e::*;

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

#[test]
fn create_makes_the_directory_with_an_installation_start_timestamp_and_refuses_existing_names() {
    let root = StorageRoot::new();
    let created = storage::create(root.path(), "small-n-0123456789ab").unwrap();
    assert_eq!(created.path, root.join("small-n-0123456789ab"));
    let stamp = fs::read_to_string(created.path.join(START)).unwrap();
    let value: f64 = stamp.trim().parse().unwrap();
    assert!((now() - value).abs() < 60.0, "{stamp:?}");
    assert!(stamp.trim().split_once('.').is_some_and(|(_, micros)| micros.len() == 6), "{stamp:?}");
    assert_eq!(fs::read_dir(&created.path).unwrap().count(), 1, "only the timestamp, no temporary file");

    let before = snapshot(root.path());
    let again = storage::create(root.path(), "small-n-0123456789ab").unwrap_err();
    assert_eq!(again.kind, ErrorKind::AlreadyExists, "{again}");
    assert!(again.to_string().starts_with(&root.join("small-n-0123456789ab").display().to_string()), "{again}");
    // A dangling symlink or a file under the name counts as taken.
    root.root_symlink("r-link", root.outside().join("nothing"));
    root.root_file("r-file", "x");
    for taken in ["r-link", "r-file"] {
        assert_eq!(storage::create(root.path(), taken).unwrap_err().kind, ErrorKind::AlreadyExists, "{taken}");
    }
    assert!(!root.outside().join("nothing").exists(), "followed a dangling symlink");
    for bad in ["", ".", "..", ".quarantine", "../escape", "a/b", "a b", "é", &"x".repeat(256)] {
        let e = storage::create(root.path(), bad).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidName, "{bad:?}: {e}");
        assert!(e.to_string().contains("not a valid runner name"), "{e}");
    }
    assert!(!root.path().parent().unwrap().join("escape").exists());
    let after = snapshot(root.path());
    assert_eq!(after.len(), before.len() + 2, "only the two test entries were added");
    let missing = storage::create(&root.join("no-such-root"), "r").unwrap_err();
    assert!(missing.to_string().contains("no-such-root"), "{missing}");
}

#[test]
fn list_and_get_see_only_plain_directories_with_valid_names() {
    let root = StorageRoot::new();
    for name in ["r-b", "r-a", "r-c"] {
        storage::create(root.path(), name).unwrap();
    }
    fs::create_dir(root.quarantine_dir()).unwrap();
    fs::create_dir(root.join(".deleting")).unwrap();
    root.root_file("notes.txt", "x");
    root.root_symlink("r-link", root.join("r-a"));
    root.root_symlink("r-out", root.outside());
    root.root_fifo("r-fifo");
    fs::create_dir(root.join("bad name")).unwrap();
    let names: Vec<String> = storage::list(root.path()).unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["r-a", "r-b", "r-c"]);
    assert_eq!(storage::get(root.path(), "r-b").unwrap().path, root.join("r-b"));
    for (name, kind) in [
        ("r-link", ErrorKind::NotADirectory),
        ("r-out", ErrorKind::NotADirectory),
        ("notes.txt", ErrorKind::NotADirectory),
        ("r-none", ErrorKind::NotFound),
        ("bad name", ErrorKind::InvalidName),
    ] {
        let e = storage::get(root.path(), name).unwrap_err();
        assert_eq!(e.kind, kind, "{name}: {e}");
        assert!(e.to_string().contains(name), "{e}");
    }
}

#[test]
fn delete_removes_the_tree_without_following_symlinks() {
    let root = StorageRoot::new();
    fs::write(root.outside().join("secret"), "keep me").unwrap();
    fs::create_dir(root.outside().join("dir")).unwrap();
    fs::write(root.outside().join("dir/inner"), "keep me too").unwrap();
    let r = root.valid_runner("r-doomed");
    r.symlink("to-secret", root.outside().join("secret"))
        .symlink("to-dir", root.outside().join("dir"))
        .symlink("to-root", "../..")
        .symlink("loop", "loop")
        .fifo("fifo")
        .dir("sub");
    // A deep tree of 100 levels with a symlink at the bottom.
    let mut deep = r.path.join("deep");
    for _ in 0..100 {
        fs::create_dir(&deep).unwrap();
        deep.push("d");
    }
    std::os::unix::fs::symlink(root.outside().join("dir"), &deep).unwrap();
    root.valid_runner("r-neighbour");
    let outside = snapshot(root.outside());
    let neighbour = snapshot(&root.join("r-neighbour"));

    assert_eq!(storage::delete(root.path(), "r-doomed").unwrap(), Deletion::Deleted);
    assert!(!exists(&root.join("r-doomed")));
    assert_eq!(entries_besides_deleting(root.path()), ["r-neighbour"]);
    assert_eq!(diff(&outside, &snapshot(root.outside())), "", "something outside the root changed");
    assert_eq!(diff(&neighbour, &snapshot(&root.join("r-neighbour"))), "", "the neighbour changed");

    // Symlinks, files and invalid names in the root are refused, untouched.
    root.root_symlink("r-link", root.join("r-neighbour"));
    root.root_file("r-file", "x");
    for name in ["r-link", "r-file", "r-missing", "..", ".quarantine"] {
        let e = storage::delete(root.path(), name).unwrap_err();
        assert!(e.to_string().starts_with(&root.path().display().to_string()), "{e}");
    }
    assert!(fs::symlink_metadata(root.join("r-link")).unwrap().file_type().is_symlink());
    assert_eq!(diff(&neighbour, &snapshot(&root.join("r-neighbour"))), "");
}

#[test]
fn a_tree_5000_levels_deep_is_deleted_by_storage_delete_and_by_quarantine_purge() {
    // Issue 9, attack 5: the old host walk stopped at 256 levels and
    // quarantined the tree as `undeletable`; `quarantine purge` then left
    // it in .deleting/ with its reason file gone, and the next collect
    // quarantined it again with the original reason lost, forever.
    let root = StorageRoot::new();
    let r = root.runner("r-deep");
    deep_chain(&r.path, 5000, "d");
    assert_eq!(storage::delete(root.path(), "r-deep").unwrap(), Deletion::Deleted);
    assert!(!exists(&root.join("r-deep")));
    assert_eq!(entries_besides_deleting(root.path()), Vec::<String>::new());

    let r = root.runner("r-deep-q");
    deep_chain(&r.path, 5000, "d");
    let location =
        storage::move_to_quarantine(root.path(), "r-deep-q", QuarantineReason::Oversized, "deep and corrupt").unwrap();
    let report = storage::purge(root.path(), Duration::ZERO, false).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.purged, [location]);
    assert_eq!(entries_besides_deleting(root.path()), [".quarantine"]);
    assert_eq!(fs::read_dir(root.quarantine_dir()).unwrap().count(), 0);
}

#[test]
fn a_quarantined_storage_that_cannot_be_purged_keeps_its_reason_and_place() {
    // Something the walk cannot remove (here: a directory the purging
    // user may not write, so run unprivileged) is moved back beside its
    // original reason file instead of being left in .deleting/ for the
    // next collect to quarantine again as `undeletable`.
    if ran_as_nobody_instead("a_quarantined_storage_that_cannot_be_purged_keeps_its_reason_and_place") {
        return;
    }
    let root = StorageRoot::new();
    let r = root.runner("r-stuck");
    r.dir("locked");
    r.file("locked/inside", "x");
    let location =
        storage::move_to_quarantine(root.path(), "r-stuck", QuarantineReason::InvalidJson, "the original reason")
            .unwrap();
    let locked = root.quarantine_dir().join(&location).join("locked");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o555)).unwrap();
    let report = storage::purge(root.path(), Duration::ZERO, false).unwrap();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
    assert!(report.purged.is_empty(), "{:?}", report.purged);
    assert_eq!(report.errors.len(), 1);
    assert!(report.errors[0].to_string().contains("left in quarantine with its reason"), "{}", report.errors[0]);
    let shown = storage::show(root.path(), &location).unwrap();
    assert_eq!(
        (shown.reason.as_str(), shown.detail.as_str(), shown.present),
        ("invalid-json", "the original reason", true)
    );
    assert_eq!(fs::read(locked.join("inside")).unwrap(), b"x");
    let deleting = root.join(".deleting");
    assert!(!deleting.exists() || fs::read_dir(&deleting).unwrap().count() == 0, "left in .deleting");
}

#[test]
fn move_to_quarantine_show_and_restore_round_trip() {
    let root = StorageRoot::new();
    root.valid_runner("r-q");
    let before = contents(&root.join("r-q"));
    let location =
        storage::move_to_quarantine(root.path(), "r-q", QuarantineReason::InvalidValue, "held for inspection").unwrap();
    assert!(!exists(&root.join("r-q")));
    let q = quarantined(&root, "r-q");
    assert_eq!(diff(&before, &contents(&q.location)), "");
    assert_eq!((&q.reason["reason"], &q.reason["detail"]), (&"invalid-value".into(), &"held for inspection".into()));

    // The guest reads the reason file the host wrote.
    let listed = runner_metrics::quarantine::list(plugin(), root.path()).unwrap();
    assert_eq!((listed[0].location.as_str(), listed[0].runner_name.as_str()), (location.as_str(), "r-q"));

    let shown = storage::show(root.path(), &location).unwrap();
    assert_eq!((shown.runner_name.as_str(), shown.reason.as_str(), shown.present), ("r-q", "invalid-value", true));
    assert!((now() - shown.quarantined_at).abs() < 60.0);
    let inside: Vec<String> =
        storage::quarantined_contents(root.path(), &location).unwrap().into_iter().map(|c| c.name).collect();
    let mut files: Vec<String> = ALL_FILES.iter().map(|s| s.to_string()).collect();
    files.sort();
    assert_eq!(inside, files);

    // Restore refuses to replace anything under the runner name.
    fs::create_dir(root.join("r-q")).unwrap();
    let e = storage::restore(root.path(), &location).unwrap_err();
    assert_eq!(e.kind, ErrorKind::AlreadyExists, "{e}");
    assert!(e.to_string().contains("r-q"), "{e}");
    assert!(exists(&q.location) && exists(&q.reason_file), "a refused restore changes nothing");
    fs::remove_dir(root.join("r-q")).unwrap();

    let restored = storage::restore(root.path(), &location).unwrap();
    assert_eq!(restored.path, root.join("r-q"));
    assert_eq!(diff(&before, &contents(&root.join("r-q"))), "");
    assert!(!exists(&q.location) && !exists(&q.reason_file));
    // And it is collected normally again.
    let (collected, lines) = run(root.path(), &CollectOptions::events("small"), &mut NoJobMetrics);
    assert_eq!(collected.kind("r-q"), OutcomeKind::Extracted);
    assert_eq!(lines.len(), 3);

    for bad in ["../r-q", "..", ".x", "a/b", "r-q.1.000000.reason.json", "r-none.1.000000"] {
        assert!(storage::restore(root.path(), bad).is_err(), "{bad}");
    }
}

#[test]
fn a_forged_reason_file_cannot_restore_outside_the_root_or_over_another_name() {
    let root = StorageRoot::new();
    root.valid_runner("r-q");
    let location = storage::move_to_quarantine(root.path(), "r-q", QuarantineReason::Oversized, "x").unwrap();
    let reason_file = root.quarantine_dir().join(format!("{location}.reason.json"));
    for forged in ["../../outside/evil", ".quarantine", "other-runner", ""] {
        fs::write(
            &reason_file,
            serde_json::json!({"runner_name": forged, "reason": "oversized", "quarantined_at": 1.0}).to_string(),
        )
        .unwrap();
        let e = storage::restore(root.path(), &location).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadReasonFile, "{forged:?}: {e}");
    }
    fs::write(&reason_file, "not json").unwrap();
    assert_eq!(storage::restore(root.path(), &location).unwrap_err().kind, ErrorKind::BadReasonFile);
    fs::remove_file(&reason_file).unwrap();
    std::os::unix::fs::symlink(root.outside().join("fake.json"), &reason_file).unwrap();
    fs::write(
        root.outside().join("fake.json"),
        r#"{"runner_name": "r-q", "reason": "oversized", "quarantined_at": 1.0}"#,
    )
    .unwrap();
    assert!(storage::restore(root.path(), &location).is_err(), "a symlinked reason file is not followed");
    assert!(!exists(&root.join("r-q")));
    assert!(!exists(&root.outside().join("evil")));
}

#[test]
fn purge_deletes_only_quarantined_storages_older_than_the_age_and_their_reason_files() {
    let root = StorageRoot::new();
    fs::write(root.outside().join("secret"), "keep").unwrap();
    for name in ["r-old", "r-new"] {
        root.valid_runner(name).symlink("link", root.outside().join("secret"));
    }
    let old = storage::move_to_quarantine(root.path(), "r-old", QuarantineReason::InvalidJson, "old").unwrap();
    let new = storage::move_to_quarantine(root.path(), "r-new", QuarantineReason::InvalidJson, "new").unwrap();
    // Age the old one by rewriting its reason file's time.
    let old_reason = root.quarantine_dir().join(format!("{old}.reason.json"));
    let mut record: serde_json::Value = serde_json::from_str(&fs::read_to_string(&old_reason).unwrap()).unwrap();
    record["quarantined_at"] = (now() - 10.0 * 86_400.0).into();
    fs::write(&old_reason, record.to_string()).unwrap();
    // An unreadable reason file is reported and kept, whatever its age.
    fs::create_dir(root.quarantine_dir().join("r-junk.1.000000")).unwrap();
    fs::write(root.quarantine_dir().join("r-junk.1.000000.reason.json"), "{").unwrap();
    let outside = snapshot(root.outside());

    let dry = storage::purge(root.path(), Duration::from_secs(7 * 86_400), true).unwrap();
    assert_eq!((dry.purged.clone(), dry.kept.clone(), dry.errors.len()), (vec![old.clone()], vec![new.clone()], 1));
    assert!(exists(&root.quarantine_dir().join(&old)), "a dry run deletes nothing");

    let report = storage::purge(root.path(), Duration::from_secs(7 * 86_400), false).unwrap();
    assert_eq!((report.purged, report.kept), (vec![old.clone()], vec![new.clone()]));
    assert_eq!(report.errors.len(), 1);
    assert!(report.errors[0].to_string().contains("r-junk.1.000000.reason.json"), "{}", report.errors[0]);
    assert!(!exists(&root.quarantine_dir().join(&old)) && !exists(&old_reason));
    assert!(exists(&root.quarantine_dir().join(&new)));
    assert!(exists(&root.quarantine_dir().join("r-junk.1.000000")));
    assert_eq!(diff(&outside, &snapshot(root.outside())), "");
    assert_eq!(entries_besides_deleting(root.path()), [".quarantine"]);

    let all = storage::purge(root.path(), Duration::ZERO, false).unwrap();
    assert_eq!(all.purged, vec![new]);
}

#[test]
fn the_cli_drives_the_whole_lifecycle() {
    let root = StorageRoot::new();
    let dir = root.path().to_str().unwrap();
    let out = output(cli().args(["storage", "create", "--storage", dir, "r-cli"]));
    assert_eq!((out.code, out.stdout.trim()), (Some(0), root.join("r-cli").to_str().unwrap()), "{out:?}");
    let out = output(cli().args(["storage", "create", "--storage", dir, "r-cli"]));
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains(&format!("{}: ", root.join("r-cli").display())) && out.stderr.contains("already exists"),
        "{out:?}"
    );
    output(cli().args(["storage", "create", "--storage", dir, "r-two"]));
    let out = output(cli().args(["storage", "list", "--storage", dir]));
    assert_eq!(out.stdout, "r-cli\nr-two\n", "{out:?}");
    let out = output(cli().args(["storage", "list", "--storage", dir, "--json"]));
    assert_eq!(json(out.stdout.lines().next().unwrap())["name"], "r-cli");
    let out = output(cli().args(["storage", "delete", "--storage", dir, "r-two"]));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(!exists(&root.join("r-two")));

    // Corrupt it, collect (quarantined), then show / restore / purge.
    fs::write(root.join("r-cli").join(PRE_JOB), "{oops").unwrap();
    fs::write(root.join("r-cli").join(INSTALLED), "1").unwrap();
    let (collected, _) = run(root.path(), &CollectOptions::events("small"), &mut NoJobMetrics);
    assert_eq!(collected.kind("r-cli"), OutcomeKind::Quarantined);
    let location = quarantined(&root, "r-cli").location.file_name().unwrap().to_str().unwrap().to_owned();
    let out = output(cli().args(["quarantine", "show", "--storage", dir, &location]));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains("invalid-json") && out.stdout.contains(PRE_JOB) && out.stdout.contains("r-cli"),
        "{out:?}"
    );
    let out = output(cli().args(["quarantine", "show", "--storage", dir, &location, "--json"]));
    let shown = json(out.stdout.trim());
    assert_eq!((&shown["reason"], &shown["file"]), (&"invalid-json".into(), &PRE_JOB.into()));
    assert_eq!(shown["contents"].as_array().unwrap().len(), 3);
    let out = output(cli().args(["quarantine", "restore", "--storage", dir, &location]));
    assert_eq!((out.code, out.stdout.trim()), (Some(0), root.join("r-cli").to_str().unwrap()), "{out:?}");
    let out = output(cli().args(["quarantine", "restore", "--storage", dir, &location]));
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains(&location), "{out:?}");

    let q = storage::move_to_quarantine(root.path(), "r-cli", QuarantineReason::InvalidJson, "again").unwrap();
    let out = output(cli().args(["quarantine", "purge", "--storage", dir, "--older-than", "1d"]));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(exists(&root.quarantine_dir().join(&q)), "younger than a day: kept");
    let out = output(cli().args(["quarantine", "purge", "--storage", dir, "--older-than", "0", "--dry-run"]));
    assert!(out.stdout.contains(&format!("would purge {q}")), "{out:?}");
    assert!(exists(&root.quarantine_dir().join(&q)));
    let out = output(cli().args(["quarantine", "purge", "--storage", dir, "--older-than", "0s"]));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains(&format!("purged {q}")), "{out:?}");
    assert!(!exists(&root.quarantine_dir().join(&q)));
    let out = output(cli().args(["quarantine", "purge", "--storage", dir, "--older-than", "soon"]));
    assert_eq!(out.code, Some(2), "{out:?}");

    for help in [
        &["storage"][..],
        &["storage", "create"],
        &["storage", "list"],
        &["storage", "delete"],
        &["quarantine", "show"],
        &["quarantine", "restore"],
        &["quarantine", "purge"],
        &["hooks", "print"],
    ] {
        let out = output(cli().args(help).arg("--help"));
        assert_eq!(out.code, Some(0), "{help:?}: {out:?}");
        assert!(out.stdout.len() > 100, "{help:?}: {}", out.stdout);
    }
}
