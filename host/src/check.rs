//! Re-validation of everything the guest returns. The guest parses hostile
//! input, so the host treats its answers as claims: names must be valid and
//! exist, numbers finite and non-negative, strings bounded, lines one line of
//! JSON. A failed check is reported as a failure of that storage.

use std::path::Path;

use crate::bindings::{Event, Outcome, PreJobMetrics, QuarantineInfo, RootEntry, RunnerMetrics};

/// The longest string a metrics file can yield (the file size limit).
pub const MAX_FIELD_BYTES: usize = 1024;
/// How much of a runner name starts a quarantine location (the guest keeps
/// entry names within the filesystem's 255-byte limit): the guest's own.
pub use runner_metrics_guest::extract::ENTRY_NAME_PREFIX;
/// The longest message or detail kept from the guest.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// The longest event line accepted from the guest.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// A runner name as spec section 2 defines it: the guest's own check, so
/// host and guest can never disagree on what a storage is.
pub use runner_metrics_guest::names::is_valid_runner_name;

/// Cuts a guest-provided message to a bounded length, on a char boundary.
pub fn bounded(message: &str) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message.to_owned();
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes cut)", &message[..end], message.len() - end)
}

fn time(what: &str, value: f64) -> Result<(), String> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(format!("{what} is {value}, not a finite number >= 0"))
    }
}

fn field(what: &str, value: &str) -> Result<(), String> {
    if value.len() <= MAX_FIELD_BYTES {
        Ok(())
    } else {
        Err(format!("{what} is {} bytes long, more than a metrics file can hold", value.len()))
    }
}

/// A root entry from the scan: a candidate must have a valid name.
pub fn root_entry(entry: &RootEntry) -> Result<(), String> {
    match (&entry.name, &entry.skipped) {
        (Some(name), None) if !is_valid_runner_name(name) => {
            Err(format!("guest offered {:?} as a storage, which is not a valid runner name", bounded(name)))
        }
        (None, None) => Err("guest offered a storage without a name".to_owned()),
        (Some(name), _) if name.len() > 255 => Err("guest listed a name longer than 255 bytes".to_owned()),
        _ => Ok(()),
    }
}

/// An outcome for the storage `name` under `root`.
pub fn outcome(root: &Path, name: &str, outcome: &Outcome) -> Result<(), String> {
    match outcome {
        Outcome::Extracted(metrics) => runner_metrics(root, name, metrics),
        Outcome::Quarantined(info) => quarantine_info(name, info),
        Outcome::NoData | Outcome::Skipped(_) | Outcome::Failed(_) => Ok(()),
    }
}

fn runner_metrics(root: &Path, name: &str, m: &RunnerMetrics) -> Result<(), String> {
    if m.runner_name != name {
        return Err(format!("guest answered for {:?} when asked about {name:?}", bounded(&m.runner_name)));
    }
    match std::fs::symlink_metadata(root.join(name)) {
        Ok(meta) if meta.is_dir() => {}
        _ => return Err(format!("guest extracted {name:?}, which is not a directory of the storage root")),
    }
    if let Some(start) = m.installation_start_timestamp {
        time("installation start timestamp", start)?;
    }
    time("installed timestamp", m.installed_timestamp)?;
    if let Some(pre) = &m.pre_job {
        pre_job(pre)?;
    }
    if let Some(post) = &m.post_job {
        time("post-job timestamp", post.timestamp)?;
    }
    Ok(())
}

fn pre_job(pre: &PreJobMetrics) -> Result<(), String> {
    time("pre-job timestamp", pre.timestamp)?;
    field("workflow", &pre.workflow)?;
    field("workflow_run_id", &pre.workflow_run_id)?;
    field("event", &pre.event)?;
    if let Some(repository) = &pre.repository {
        field("repository", repository)?;
        // Some '/' with at least one character on each side (spec 3.1).
        let has_inner_slash = repository.char_indices().any(|(i, c)| c == '/' && i > 0 && i + 1 < repository.len());
        if !has_inner_slash {
            return Err(format!("repository {:?} is not owner/repo", bounded(repository)));
        }
    }
    Ok(())
}

fn quarantine_info(name: &str, info: &QuarantineInfo) -> Result<(), String> {
    let location = &info.location;
    // Empty in dry runs; otherwise one path component under .quarantine/.
    if !location.is_empty()
        && (!location.starts_with(name.get(..name.len().min(ENTRY_NAME_PREFIX)).unwrap_or(name))
            || location.contains('/')
            || location.len() > 255
            || location.starts_with('.'))
    {
        return Err(format!("guest reported quarantine location {:?} for {name:?}", bounded(location)));
    }
    Ok(())
}

/// Events computed by the guest: every number finite and non-negative.
pub fn events(events: &[Event]) -> Result<(), String> {
    if events.len() > 3 {
        return Err(format!("guest issued {} events for one runner; at most 3 exist", events.len()));
    }
    for event in events {
        match event {
            Event::RunnerInstalled(e) => {
                time("runner_installed timestamp", e.timestamp)?;
                time("runner_installed duration", e.duration)?;
            }
            Event::RunnerStart(e) => {
                time("runner_start timestamp", e.timestamp)?;
                time("runner_start idle", e.idle)?;
                if let Some(queue) = e.queue_duration {
                    time("runner_start queue_duration", queue)?;
                }
            }
            Event::RunnerStop(e) => {
                time("runner_stop timestamp", e.timestamp)?;
                time("runner_stop job_duration", e.job_duration)?;
            }
        }
    }
    Ok(())
}

/// The `event` key a line must carry for `event`.
pub fn event_kind(event: &Event) -> &'static str {
    match event {
        Event::RunnerInstalled(_) => "runner_installed",
        Event::RunnerStart(_) => "runner_start",
        Event::RunnerStop(_) => "runner_stop",
    }
}

/// What a line rendered from `event` must hold, key by key (spec 5): the
/// event's own values, nothing else.
pub fn expected_fields(event: &Event) -> Vec<(&'static str, serde_json::Value)> {
    use crate::metrics_json::{conclusion_name, status_name};
    use serde_json::json;
    let mut fields = vec![("event", json!(event_kind(event)))];
    match event {
        Event::RunnerInstalled(e) => fields.extend([
            ("timestamp", json!(e.timestamp)),
            ("flavor", json!(e.flavor)),
            ("duration", json!(e.duration)),
        ]),
        Event::RunnerStart(e) => {
            fields.extend([
                ("timestamp", json!(e.timestamp)),
                ("flavor", json!(e.flavor)),
                ("workflow", json!(e.workflow)),
                ("repo", json!(e.repo)),
                ("github_event", json!(e.github_event)),
                ("idle", json!(e.idle)),
            ]);
            fields.extend(e.queue_duration.map(|q| ("queue_duration", json!(q))));
        }
        Event::RunnerStop(e) => {
            fields.extend([
                ("timestamp", json!(e.timestamp)),
                ("flavor", json!(e.flavor)),
                ("workflow", json!(e.workflow)),
                ("repo", json!(e.repo)),
                ("github_event", json!(e.github_event)),
                ("status", json!(status_name(e.status))),
                ("job_duration", json!(e.job_duration)),
            ]);
            fields.extend(e.status_info.as_ref().map(|i| ("status_info", json!({"code": i.code}))));
            fields.extend(e.job_conclusion.map(|c| ("job_conclusion", json!(conclusion_name(c)))));
        }
    }
    fields
}

/// The flavor an event carries.
fn flavor_of(event: &Event) -> &str {
    match event {
        Event::RunnerInstalled(e) => &e.flavor,
        Event::RunnerStart(e) => &e.flavor,
        Event::RunnerStop(e) => &e.flavor,
    }
}

/// A rendered line: bounded, one line of ASCII, a JSON object that holds
/// exactly the keys and values of the event it was rendered from, and that
/// event is of the requested `flavor`. A guest that lies cannot put any
/// other key or value into the log.
pub fn line(line: &str, event: &Event, flavor: &str) -> Result<(), String> {
    let kind = event_kind(event);
    if flavor_of(event) != flavor {
        return Err(format!("guest issued a {kind} event of flavor {:?}, not {flavor:?}", bounded(flavor_of(event))));
    }
    if line.len() > MAX_LINE_BYTES {
        return Err(format!("guest rendered a {}-byte line", line.len()));
    }
    if !line.is_ascii() || line.bytes().any(|b| b.is_ascii_control()) {
        return Err("guest rendered a line with control or non-ASCII characters".to_owned());
    }
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("guest rendered a line that is not JSON: {e}"))?;
    let Some(object) = value.as_object() else {
        return Err(format!("guest rendered a {kind} line that is not a JSON object"));
    };
    let expected = expected_fields(event);
    for (key, want) in &expected {
        match object.get(*key) {
            Some(got) if got == want => {}
            Some(_) => return Err(format!("guest rendered a {kind} line whose {key:?} differs from the event")),
            None => return Err(format!("guest rendered a {kind} line without {key:?}")),
        }
    }
    if let Some(extra) = object.keys().find(|k| !expected.iter().any(|(key, _)| key == k)) {
        return Err(format!("guest rendered a {kind} line with a key the event does not have: {:?}", bounded(extra)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installed(flavor: &str) -> Event {
        Event::RunnerInstalled(crate::bindings::RunnerInstalled {
            timestamp: 2.0,
            flavor: flavor.into(),
            duration: 1.0,
        })
    }

    #[test]
    fn lines_must_hold_exactly_the_event_they_were_rendered_from() {
        let event = installed("small");
        let good = r#"{"timestamp": 2.0, "event": "runner_installed", "flavor": "small", "duration": 1.0}"#;
        assert_eq!(line(good, &event, "small"), Ok(()));
        for (bad, why) in [
            (r#"{"timestamp": 2.0, "event": "runner_start", "flavor": "small", "duration": 1.0}"#, "differs"),
            (r#"{"timestamp": 2.5, "event": "runner_installed", "flavor": "small", "duration": 1.0}"#, "differs"),
            (r#"{"timestamp": 2.0, "event": "runner_installed", "flavor": "large", "duration": 1.0}"#, "differs"),
            (r#"{"timestamp": 2.0, "event": "runner_installed", "flavor": "small"}"#, "without"),
            (
                r#"{"timestamp": 2.0, "event": "runner_installed", "flavor": "small", "duration": 1.0, "x": 1}"#,
                "does not have",
            ),
            (r#"[1]"#, "not a JSON object"),
            ("not json", "not JSON"),
            ("{\"event\": \"runner_installed\"}\n{}", "control"),
            ("{\"event\": \"runner_installed\", \"x\": \"\u{e9}\"}", "non-ASCII"),
        ] {
            let e = line(bad, &event, "small").unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        // The event itself must be of the requested flavor.
        let e = line(good, &installed("large"), "small").unwrap_err();
        assert!(e.contains("flavor"), "{e}");
    }

    #[test]
    fn repositories_need_a_slash_with_something_on_each_side() {
        let pre = |repository: &str| PreJobMetrics {
            timestamp: 1.0,
            workflow: "w".into(),
            workflow_run_id: "1".into(),
            repository: Some(repository.into()),
            event: "push".into(),
        };
        // "//r" is accepted by the guest (found by fuzzing): '/' at 1 has
        // '/' before it and 'r' after it, as the reference's `.+/.+` allows.
        for ok in ["o/r", "//r", "a/b/c", "é/x"] {
            assert!(pre_job(&pre(ok)).is_ok(), "{ok}");
        }
        for bad in ["or", "/r", "o/", "/", ""] {
            assert!(pre_job(&pre(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn bounded_cuts_long_messages_on_char_boundaries() {
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let cut = bounded(&long);
        assert!(cut.len() < long.len());
        assert!(cut.ends_with("bytes cut)"));
        assert_eq!(bounded("short"), "short");
    }

    #[test]
    fn times_must_be_finite_and_non_negative() {
        assert!(time("t", 0.0).is_ok());
        assert!(time("t", -1.0).is_err());
        assert!(time("t", f64::NAN).is_err());
        assert!(time("t", f64::INFINITY).is_err());
    }
}
