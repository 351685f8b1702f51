//! Operator metadata files: each operator's attributes (jurisdiction, geography,
//! infrastructure, client…), performance score, own cap and protocol id.
//!
//! ```yaml
//! operators:
//!   "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed":
//!     name: Example Staking
//!     attributes: { jurisdiction: DE, geography: EU, infrastructure: aws, client: lighthouse }
//!     performance: 0.98
//!     cap: 500               # its own cap, in the set's unit (optional)
//!     node_operator_id: 7    # Lido: the operator's id in its module
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use steward_config::{Document, MapEnv};

/// One operator's metadata.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorInfo {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub performance: Option<f64>,
    #[serde(default)]
    pub cap: Option<u64>,
    #[serde(default)]
    pub node_operator_id: Option<u64>,
}

/// A metadata file: operators by id (address or name, as the set's source reports them;
/// addresses compare case-insensitively).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub operators: BTreeMap<String, OperatorInfo>,
}

impl Metadata {
    /// Reads a metadata file; errors name file:line:column.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read operator metadata {}: {e}", path.display()))?;
        let doc = Document::parse(&text, path.display().to_string(), &MapEnv::new())
            .map_err(|e| e.to_string())?;
        let mut m: Metadata = doc.deserialize().map_err(|e| e.to_string())?;
        m.operators = m
            .operators
            .into_iter()
            .map(|(k, v)| (normalise(&k), v))
            .collect();
        for (id, info) in &m.operators {
            if let Some(p) = info.performance {
                if !(0.0..=1.0).contains(&p) {
                    return Err(format!(
                        "{}: operators.{id}.performance: must be between 0 and 1 (got {p})",
                        path.display()
                    ));
                }
            }
        }
        Ok(m)
    }

    /// The operator `id`'s metadata, if the file has it.
    pub fn get(&self, id: &str) -> Option<&OperatorInfo> {
        self.operators.get(&normalise(id))
    }
}

/// Addresses in lower case; other ids as they are.
pub fn normalise(id: &str) -> String {
    if id.len() == 42 && id.starts_with("0x") {
        id.to_ascii_lowercase()
    } else {
        id.to_owned()
    }
}
