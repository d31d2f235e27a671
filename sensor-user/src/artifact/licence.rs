//! Licence policy: which SPDX ids a model may carry. Ids compare case-insensitively (Hugging
//! Face writes `apache-2.0`, SPDX `Apache-2.0`); an SPDX expression is allowed when one of its
//! `OR` alternatives has every `AND` term allowed. Anything else — including custom licences
//! such as `llama3.1` or `other` — must be listed explicitly to be allowed.

use crate::artifact::report::{LicenseFinding, LicenseProblem};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicensePolicy {
    allowed: Vec<String>,
    pub require: bool,
}

impl Default for LicensePolicy {
    fn default() -> Self {
        let cfg = crate::artifact::config::ArtifactConfig::default();
        Self::new(&cfg.allowed_licenses, cfg.require_license)
    }
}

fn norm(s: &str) -> String {
    s.trim().trim_matches(|c| c == '(' || c == ')').trim().to_ascii_lowercase()
}

impl LicensePolicy {
    pub fn new(allowed: &[String], require: bool) -> Self {
        Self { allowed: allowed.iter().map(|s| norm(s)).collect(), require }
    }

    pub fn is_allowed(&self, license: &str) -> bool {
        let l = norm(license);
        if self.allowed.contains(&l) {
            return true;
        }
        let split = |s: &str, sep: &str| -> Vec<String> {
            s.split(sep).map(norm).collect()
        };
        let alternatives = split(&l, " or ");
        alternatives.iter().any(|alt| {
            let terms = split(alt, " and ");
            !terms.is_empty() && terms.iter().all(|t| !t.is_empty() && self.allowed.contains(t))
        })
    }

    /// Judges a licence; `source` says where it came from (`content` or `manifest`).
    pub fn judge(&self, license: Option<&str>, source: &str) -> Option<LicenseFinding> {
        match license.map(str::trim).filter(|l| !l.is_empty()) {
            None if self.require => Some(LicenseFinding { problem: LicenseProblem::Missing, license: None, source: None }),
            None => None,
            Some(l) if self.is_allowed(l) => None,
            Some(l) => Some(LicenseFinding {
                problem: LicenseProblem::NotAllowed,
                license: Some(l.to_owned()),
                source: Some(source.to_owned()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_and_case() {
        let p = LicensePolicy::new(&["Apache-2.0".into(), "MIT".into()], true);
        assert!(p.is_allowed("apache-2.0"));
        assert!(p.is_allowed("MIT OR GPL-3.0"));
        assert!(p.is_allowed("(MIT AND Apache-2.0)"));
        assert!(!p.is_allowed("MIT AND GPL-3.0"));
        assert!(!p.is_allowed("llama3.1"));
        assert_eq!(p.judge(None, "content").map(|f| f.problem), Some(LicenseProblem::Missing));
        assert_eq!(p.judge(Some("  "), "content").map(|f| f.problem), Some(LicenseProblem::Missing));
        assert_eq!(p.judge(Some("other"), "content").map(|f| f.problem), Some(LicenseProblem::NotAllowed));
        assert_eq!(p.judge(Some("MIT"), "content"), None);
        assert_eq!(LicensePolicy::new(&[], false).judge(None, "content"), None);
    }
}
