//! Listing quarantined storages (`<root>/.quarantine/`), through the guest
//! so that reason files, written from untrusted input, are parsed in the
//! sandbox too.

use std::path::Path;

use anyhow::{Context, Result};

use crate::bindings::QuarantinedStorage;
use crate::plugin::Plugin;

pub fn list(plugin: &Plugin, root: &Path) -> Result<Vec<QuarantinedStorage>> {
    let root = root.canonicalize().with_context(|| format!("storage root {}", root.display()))?;
    let mut instance = plugin.instance(&root)?;
    instance.list_quarantine().map_err(anyhow::Error::new)?.map_err(|e| {
        // The guest's words: bounded, and its paths checked, as the keeper would.
        let failure = runner_metrics_keeper::check::failure(e.to_model());
        anyhow::Error::new(crate::collect::Stopped::new(failure, &root))
            .context(format!("listing {}/.quarantine", root.display()))
    })
}
