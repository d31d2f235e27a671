//! Licence policy: which SPDX ids a model may carry. Ids compare case-insensitively (Hugging
//! Face writes `apache-2.0`, SPDX `Apache-2.0`). A licence is allowed when it is listed as
//! written, or when it parses as an SPDX expression that the list satisfies: `A OR B` needs
//! either side, `A AND B` both, `X WITH exception` and `X+` need `X` (or the whole term)
//! listed, parentheses group, and `WITH` binds tighter than `AND`, which binds tighter than
//! `OR`. Anything else — an expression that does not parse, custom licences such as
//! `llama3.1` or `other` — must be listed explicitly to be allowed.
//!
//! Hand-written rather than the `spdx` crate: the policy must also judge ids SPDX does not
//! know (custom model licences are the common case), and the grammar it needs is small.

use crate::report::{LicenseFinding, LicenseProblem};

/// Parenthesis nesting accepted in an expression.
const MAX_DEPTH: u32 = 16;
/// Terms accepted in an expression.
const MAX_TERMS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicensePolicy {
    allowed: Vec<String>,
    pub require: bool,
}

impl Default for LicensePolicy {
    fn default() -> Self {
        let cfg = crate::config::ArtifactConfig::default();
        Self::new(&cfg.allowed_licenses, cfg.require_license)
    }
}

fn norm(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_lowercase()
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    /// An id, possibly with `+` and/or `WITH exception` (lowercase, as written).
    Term {
        id: String,
        with: Option<String>,
    },
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Open,
    Close,
    And,
    Or,
    With,
    Id(String),
}

fn tokens(s: &str) -> Option<Vec<Tok>> {
    let mut out = Vec::new();
    for word in s.replace('(', " ( ").replace(')', " ) ").split_whitespace() {
        out.push(match word.to_ascii_lowercase().as_str() {
            "(" => Tok::Open,
            ")" => Tok::Close,
            "and" => Tok::And,
            "or" => Tok::Or,
            "with" => Tok::With,
            w => Tok::Id(w.to_owned()),
        });
        if out.len() > MAX_TERMS * 4 {
            return None;
        }
    }
    Some(out)
}

struct Parser {
    toks: Vec<Tok>,
    i: usize,
    terms: usize,
}

impl Parser {
    fn next_is(&self, t: &Tok) -> bool {
        self.toks.get(self.i) == Some(t)
    }

    fn or(&mut self, depth: u32) -> Option<Expr> {
        let mut e = self.and(depth)?;
        while self.next_is(&Tok::Or) {
            self.i += 1;
            e = Expr::Or(Box::new(e), Box::new(self.and(depth)?));
        }
        Some(e)
    }

    fn and(&mut self, depth: u32) -> Option<Expr> {
        let mut e = self.term(depth)?;
        while self.next_is(&Tok::And) {
            self.i += 1;
            e = Expr::And(Box::new(e), Box::new(self.term(depth)?));
        }
        Some(e)
    }

    fn term(&mut self, depth: u32) -> Option<Expr> {
        match self.toks.get(self.i)?.clone() {
            Tok::Open => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.i += 1;
                let e = self.or(depth + 1)?;
                if !self.next_is(&Tok::Close) {
                    return None;
                }
                self.i += 1;
                Some(e)
            }
            Tok::Id(id) => {
                self.terms += 1;
                if self.terms > MAX_TERMS {
                    return None;
                }
                self.i += 1;
                let with = if self.next_is(&Tok::With) {
                    self.i += 1;
                    match self.toks.get(self.i)? {
                        Tok::Id(x) => {
                            self.i += 1;
                            Some(x.clone())
                        }
                        _ => return None,
                    }
                } else {
                    None
                };
                Some(Expr::Term { id, with })
            }
            _ => None,
        }
    }
}

fn parse(s: &str) -> Option<Expr> {
    let mut p = Parser { toks: tokens(s)?, i: 0, terms: 0 };
    let e = p.or(0)?;
    (p.i == p.toks.len()).then_some(e)
}

impl LicensePolicy {
    pub fn new(allowed: &[String], require: bool) -> Self {
        Self { allowed: allowed.iter().map(|s| norm(s)).collect(), require }
    }

    fn listed(&self, id: &str) -> bool {
        self.allowed.iter().any(|a| a == id)
    }

    fn satisfied(&self, e: &Expr) -> bool {
        match e {
            Expr::Or(a, b) => self.satisfied(a) || self.satisfied(b),
            Expr::And(a, b) => self.satisfied(a) && self.satisfied(b),
            Expr::Term { id, with } => {
                // An exception or "or later" only widens what the base licence permits.
                let whole = match with {
                    Some(w) => format!("{id} with {w}"),
                    None => id.clone(),
                };
                self.listed(&whole) || self.listed(id) || id.strip_suffix('+').is_some_and(|base| self.listed(base))
            }
        }
    }

    pub fn is_allowed(&self, license: &str) -> bool {
        let l = norm(license);
        self.listed(&l) || parse(&l).is_some_and(|e| self.satisfied(&e))
    }

    /// Judges a licence; `source` says where it came from (`content` or `manifest`).
    pub fn judge(&self, license: Option<&str>, source: &str) -> Option<LicenseFinding> {
        match license.map(str::trim).filter(|l| !l.is_empty()) {
            None if self.require => {
                Some(LicenseFinding { problem: LicenseProblem::Missing, license: None, source: None })
            }
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

    #[test]
    fn parentheses_and_precedence() {
        let p = LicensePolicy::new(
            &["Apache-2.0".into(), "MIT".into(), "GPL-2.0 WITH Classpath-exception-2.0".into()],
            true,
        );
        // AND binds tighter than OR; parentheses regroup.
        assert!(!p.is_allowed("GPL-3.0 AND (MIT OR Apache-2.0)"));
        assert!(p.is_allowed("GPL-3.0 AND MIT OR Apache-2.0"));
        assert!(!p.is_allowed("GPL-3.0 AND (MIT OR Apache-2.0"));
        assert!(p.is_allowed("(MIT OR GPL-3.0) AND (Apache-2.0 OR LGPL-2.1)"));
        assert!(!p.is_allowed("(MIT OR GPL-3.0) AND (BSD-3-Clause OR LGPL-2.1)"));
        assert!(p.is_allowed("mit or apache-2.0"));
        // WITH and `+` need the base licence (or the whole term) allowed.
        assert!(p.is_allowed("Apache-2.0 WITH LLVM-exception"));
        assert!(p.is_allowed("GPL-2.0 WITH Classpath-exception-2.0"));
        assert!(!p.is_allowed("GPL-2.0 WITH Autoconf-exception-2.0"));
        assert!(!p.is_allowed("GPL-2.0+"));
        assert!(!p.is_allowed("MIT WITH"));
        assert!(!p.is_allowed("MIT OR"));
        assert!(!p.is_allowed("MIT Apache-2.0"));
        // Bounded depth: deeply nested input is refused, not recursed into.
        let deep = format!("{}MIT{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(!p.is_allowed(&deep));
        assert!(p.is_allowed(&format!("{}MIT{}", "(".repeat(8), ")".repeat(8))));
    }
}
