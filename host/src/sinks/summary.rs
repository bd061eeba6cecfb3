//! What a run did: one report per storage, and counts per outcome. The
//! guest's own types (`runner_metrics_core::report`), so that the words
//! of a report are written once for every host.

pub use runner_metrics_core::model::FsError;
pub use runner_metrics_core::report::{OutcomeKind, StorageReport, Summary};

/// A named filesystem error as the Python and Node bindings hand it over:
/// `(operation, path, code, cause)`, the enums spelt as the WIT spells them
/// (`open-directory`, `permission-denied`), as the WebAssembly hosts get them.
pub fn fs_error_fields(error: &FsError) -> (String, String, String, String) {
    (wit_spelling(&error.operation), error.path.clone(), wit_spelling(&error.code), error.cause.clone())
}

/// The WIT spelling of one of the model's enum cases (its serde name).
fn wit_spelling(case: &impl serde::Serialize) -> String {
    match serde_json::to_value(case) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runner_metrics_core::model::{FsErrorCode, FsOperation};

    #[test]
    fn fs_error_fields_spell_the_enums_as_the_wit_does() {
        let error =
            FsError::new(FsErrorCode::PermissionDenied, FsOperation::OpenDirectory, "r-1", "Operation not permitted");
        assert_eq!(
            fs_error_fields(&error),
            ("open-directory".into(), "r-1".into(), "permission-denied".into(), "Operation not permitted".into())
        );
    }
}
