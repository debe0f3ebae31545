//! A versioned document (the routing document, a risk rule set): each change is a new row
//! naming who made it and why, so the history is the audit trail.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::StoreError;

/// One stored version of a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentVersion {
    /// 1, 2, 3, …
    pub version: i64,
    /// The document as JSON text.
    pub document: String,
    /// Who stored it: `config` for a seed from the configuration file, else the admin.
    pub actor: String,
    /// Why, as the actor wrote it.
    pub note: Option<String>,
    pub created_at_ms: i64,
}

/// The columns [`version_from_row`] reads.
pub(crate) const VERSION_COLUMNS: &str = "version, document, actor, note, created_at_ms";

pub(crate) fn version_from_row(row: &AnyRow) -> Result<DocumentVersion, StoreError> {
    Ok(DocumentVersion {
        version: row.try_get("version")?,
        document: row.try_get("document")?,
        actor: row.try_get("actor")?,
        note: row.try_get("note")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}
