//! The approved-model manifest: the internal hub's pinned list of models by SHA-256, with an
//! optional deny list. TOML (`.toml`) or JSON (`.json`; other extensions: TOML, then JSON):
//!
//! ```toml
//! [[model]]
//! sha256 = "<64 hex digits>"          # required
//! name = "Llama-3.1-8B-Instruct"      # optional
//! version = "Q4_K_M"                  # optional
//! license = "llama3.1"                # optional: used when the file itself declares none
//! notes = "approved by AI council"    # optional
//!
//! [[deny]]
//! sha256 = "<64 hex digits>"
//! notes = "backdoored upload"
//! ```
//!
//! The file comes from outside, so it is bounded in size and entry count, unknown keys are
//! refused (a typo must not silently approve nothing), and every error names the entry.

use std::{
    collections::HashMap,
    io::Read,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use crate::{
    io::is_sha256_hex,
    report::{ManifestMatch, PolicyVerdict},
};

const MAX_FILE: u64 = 64 << 20;
const MAX_ENTRIES: usize = 1_000_000;
const MAX_TEXT: usize = 4096;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShape {
    #[serde(default)]
    model: Vec<EntryShape>,
    #[serde(default)]
    deny: Vec<EntryShape>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryShape {
    sha256: String,
    name: Option<String>,
    version: Option<String>,
    license: Option<String>,
    notes: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("manifest {path}: {message}")]
pub struct ManifestError {
    pub path: PathBuf,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub path: PathBuf,
    approved: HashMap<String, ManifestMatch>,
    denied: HashMap<String, ManifestMatch>,
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let err = |message: String| ManifestError { path: path.to_owned(), message };
        let f = std::fs::File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
        let mut bytes = Vec::new();
        f.take(MAX_FILE + 1).read_to_end(&mut bytes).map_err(|e| err(format!("cannot read: {e}")))?;
        if bytes.len() as u64 > MAX_FILE {
            return Err(err(format!("larger than {MAX_FILE} bytes")));
        }
        let text = String::from_utf8(bytes).map_err(|_| err("not UTF-8".into()))?;
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        Self::parse(&text, ext.as_deref())
            .map(|mut m| {
                m.path = path.to_owned();
                m
            })
            .map_err(err)
    }

    /// Parses manifest text; `ext` (`toml`/`json`) picks the syntax, otherwise TOML then JSON.
    pub fn parse(text: &str, ext: Option<&str>) -> Result<Self, String> {
        let toml_err = |e: toml::de::Error| format!("invalid TOML: {}", e.to_string().trim_end().replace('\n', " "));
        let json_err = |e: serde_json::Error| format!("invalid JSON: {e}");
        let shape: FileShape = match ext {
            Some("json") => serde_json::from_str(text).map_err(json_err)?,
            Some("toml") => toml::from_str(text).map_err(toml_err)?,
            _ => match toml::from_str(text) {
                Ok(s) => s,
                Err(te) => serde_json::from_str(text)
                    .map_err(|je| format!("neither TOML ({}) nor JSON ({je})", toml_err(te)))?,
            },
        };
        if shape.model.len() + shape.deny.len() > MAX_ENTRIES {
            return Err(format!("more than {MAX_ENTRIES} entries"));
        }
        let mut m = Manifest::default();
        for (list, entries) in [("model", shape.model), ("deny", shape.deny)] {
            for (i, e) in entries.into_iter().enumerate() {
                let sha = e.sha256.trim();
                let sha = sha.strip_prefix("sha256:").unwrap_or(sha).to_ascii_lowercase();
                if !is_sha256_hex(&sha) {
                    return Err(format!(
                        "{list}[{i}].sha256: `{}` is not 64 hex digits",
                        e.sha256.chars().take(80).collect::<String>()
                    ));
                }
                for (field, v) in
                    [("name", &e.name), ("version", &e.version), ("license", &e.license), ("notes", &e.notes)]
                {
                    if v.as_ref().is_some_and(|v| v.len() > MAX_TEXT) {
                        return Err(format!("{list}[{i}].{field}: longer than {MAX_TEXT} bytes"));
                    }
                }
                let entry = ManifestMatch {
                    sha256: sha.clone(),
                    name: e.name,
                    version: e.version,
                    license: e.license,
                    notes: e.notes,
                };
                let target = if list == "model" { &mut m.approved } else { &mut m.denied };
                if target.insert(sha.clone(), entry).is_some() {
                    return Err(format!("{list}[{i}].sha256: {sha} is listed twice"));
                }
            }
        }
        if let Some(both) = m.approved.keys().find(|k| m.denied.contains_key(*k)) {
            return Err(format!("{both} is both approved and denied"));
        }
        Ok(m)
    }

    pub fn approved_count(&self) -> usize {
        self.approved.len()
    }

    pub fn denied_count(&self) -> usize {
        self.denied.len()
    }

    /// The verdict for a (lowercase hex) SHA-256.
    pub fn verdict(&self, sha256: &str) -> (PolicyVerdict, Option<ManifestMatch>) {
        let sha = sha256.to_ascii_lowercase();
        if let Some(e) = self.denied.get(&sha) {
            return (PolicyVerdict::Denied, Some(e.clone()));
        }
        if let Some(e) = self.approved.get(&sha) {
            return (PolicyVerdict::Approved, Some(e.clone()));
        }
        (PolicyVerdict::Unapproved, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_json_forms() {
        let a = "a".repeat(64);
        let b = "B".repeat(64);
        let m = Manifest::parse(
            &format!(
                "[[model]]\nsha256 = \"{a}\"\nname = \"x\"\nlicense = \"MIT\"\n[[deny]]\nsha256 = \"sha256:{b}\"\n"
            ),
            Some("toml"),
        )
        .expect("toml");
        assert_eq!(m.verdict(&a).0, PolicyVerdict::Approved);
        assert_eq!(m.verdict(&a).1.and_then(|e| e.license), Some("MIT".into()));
        assert_eq!(m.verdict(&b.to_lowercase()).0, PolicyVerdict::Denied);
        assert_eq!(m.verdict(&"c".repeat(64)).0, PolicyVerdict::Unapproved);
        let j = Manifest::parse(&format!("{{\"model\": [{{\"sha256\": \"{a}\"}}]}}"), None).expect("json");
        assert_eq!(j.approved_count(), 1);
    }

    #[test]
    fn errors_name_the_entry() {
        let a = "a".repeat(64);
        let e = Manifest::parse("[[model]]\nsha256 = \"nothex\"\n", Some("toml")).unwrap_err();
        assert!(e.starts_with("model[0].sha256"), "{e}");
        let e =
            Manifest::parse(&format!("[[model]]\nsha256 = \"{a}\"\nlicence = \"MIT\"\n"), Some("toml")).unwrap_err();
        assert!(e.contains("licence"), "{e}");
        let e = Manifest::parse(&format!("[[model]]\nsha256 = \"{a}\"\n[[deny]]\nsha256 = \"{a}\"\n"), Some("toml"))
            .unwrap_err();
        assert!(e.contains("both approved and denied"), "{e}");
        let e = Manifest::parse(&format!("[[model]]\nsha256 = \"{a}\"\n[[model]]\nsha256 = \"{a}\"\n"), Some("toml"))
            .unwrap_err();
        assert!(e.contains("model[1]") && e.contains("twice"), "{e}");
        assert!(Manifest::parse("{{{", None).is_err());
    }
}
