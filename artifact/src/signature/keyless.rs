//! Sigstore keyless signatures verified offline against a configured trusted root (Sigstore's
//! `trusted_root.json`): the Fulcio certificate chain at the time the transparency log
//! recorded the entry, an embedded SCT from a trusted CT log, the Rekor entry (its body names
//! this payload, signature and certificate; its signed entry timestamp binds the time; its
//! Merkle inclusion proof leads to a root hash the log's signed checkpoint commits to), the
//! DSSE signature with the certificate's key, and the signer's identity and OIDC issuer
//! against the configured ones.
//!
//! Not checked: RFC 3161 timestamps (the signed entry timestamp provides the time), the Rekor
//! entry's envelope hash (the payload hash and the signature already bind the content), and
//! the freshness of the trusted root (it is whatever the configuration names).

use std::path::Path;

use base64::Engine as _;
use rustls_pki_types::{
    CertificateDer, SignatureVerificationAlgorithm, SubjectPublicKeyInfoDer, UnixTime, pem::PemObject,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use webpki::ring as algs;
use x509_cert::{
    Certificate,
    der::{Decode as _, Encode as _, asn1::OctetString, asn1::Utf8StringRef, oid::ObjectIdentifier},
    ext::pkix::{ExtendedKeyUsage, SubjectAltName, name::GeneralName},
};

use super::{
    bundle::{Envelope, TlogEntry},
    trust::{Signer, SignerCheck, SignerKind, TrustError, alg_for_spki, key_fingerprint},
};

const SCT_LIST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.11129.2.4.2");
const FULCIO_ISSUER_V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.1");
const FULCIO_ISSUER_V2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.8");
const EKU_CODE_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");

/// A keyless signer the configuration trusts: the certificate's SAN (e-mail or URI) and the
/// OIDC issuer Fulcio recorded in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigstoreIdentityConfig {
    /// E-mail address or URI (a CI workflow's) in the signing certificate.
    pub identity: String,
    /// The OIDC issuer, e.g. `https://accounts.google.com`,
    /// `https://token.actions.githubusercontent.com`.
    pub issuer: String,
}

struct Ca {
    /// DER certificates, the issuer of the signing certificate first, the root last.
    chain: Vec<Vec<u8>>,
    start: u64,
    end: Option<u64>,
}

struct LogKey {
    key_id: Vec<u8>,
    spki: Vec<u8>,
    start: u64,
    end: Option<u64>,
}

impl LogKey {
    fn valid_at(&self, t: u64) -> bool {
        self.start <= t && self.end.is_none_or(|e| t <= e)
    }
}

/// The Sigstore trust: Fulcio CAs, Rekor and CT log keys, and the trusted identities.
pub struct SigstoreTrust {
    cas: Vec<Ca>,
    tlogs: Vec<LogKey>,
    ctlogs: Vec<LogKey>,
    identities: Vec<SigstoreIdentityConfig>,
}

/// `2021-01-12T11:53:27Z` (fractions ignored) as seconds since the epoch.
fn rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<u16>().ok();
    let dt = x509_cert::der::DateTime::new(
        n(0..4)?,
        n(5..7)? as u8,
        n(8..10)? as u8,
        n(11..13)? as u8,
        n(14..16)? as u8,
        n(17..19)? as u8,
    )
    .ok()?;
    Some(dt.unix_duration().as_secs())
}

fn window(v: &serde_json::Value) -> Result<(u64, Option<u64>), String> {
    let start = v["start"].as_str().and_then(rfc3339).ok_or("a validFor without a valid start")?;
    let end = match v["end"].as_str() {
        Some(e) => Some(rfc3339(e).ok_or("a validFor with an invalid end")?),
        None => None,
    };
    Ok((start, end))
}

fn b64(s: Option<&str>) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(s.ok_or("a missing base64 field")?)
        .map_err(|e| format!("bad base64: {e}"))
}

fn log_keys(v: &serde_json::Value) -> Result<Vec<LogKey>, String> {
    let mut out = Vec::new();
    for l in v.as_array().map(Vec::as_slice).unwrap_or_default() {
        let pk = &l["publicKey"];
        let spki = b64(pk["rawBytes"].as_str())?;
        let (start, end) = window(&pk["validFor"])?;
        out.push(LogKey { key_id: b64(l["logId"]["keyId"].as_str())?, spki, start, end });
    }
    Ok(out)
}

impl SigstoreTrust {
    /// Reads a Sigstore `trusted_root.json`.
    pub fn load(path: &Path, identities: &[SigstoreIdentityConfig]) -> Result<Self, TrustError> {
        let read = |source| TrustError::Read { path: path.to_owned(), source };
        let meta = std::fs::metadata(path).map_err(read)?;
        if meta.len() > 4 << 20 {
            return Err(TrustError::Invalid { path: path.to_owned(), message: "larger than 4 MiB".into() });
        }
        let bytes = std::fs::read(path).map_err(read)?;
        Self::parse(&bytes, identities).map_err(|message| TrustError::Invalid { path: path.to_owned(), message })
    }

    pub fn parse(bytes: &[u8], identities: &[SigstoreIdentityConfig]) -> Result<Self, String> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not a trusted root (JSON): {e}"))?;
        let media = v["mediaType"].as_str().unwrap_or_default();
        if !media.starts_with("application/vnd.dev.sigstore.trustedroot") {
            return Err(format!("media type `{media}` is not a Sigstore trusted root"));
        }
        let mut cas = Vec::new();
        for ca in v["certificateAuthorities"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let chain = ca["certChain"]["certificates"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|c| b64(c["rawBytes"].as_str()))
                .collect::<Result<Vec<_>, _>>()?;
            if chain.is_empty() {
                return Err("a certificate authority without certificates".into());
            }
            let (start, end) = window(&ca["validFor"])?;
            cas.push(Ca { chain, start, end });
        }
        let tlogs = log_keys(&v["tlogs"])?;
        let ctlogs = log_keys(&v["ctlogs"])?;
        if cas.is_empty() || tlogs.is_empty() || ctlogs.is_empty() {
            return Err("the trusted root needs certificate authorities, tlogs and ctlogs".into());
        }
        Ok(Self { cas, tlogs, ctlogs, identities: identities.to_vec() })
    }
}

fn verify_with(spki: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    let Ok(alg) = alg_for_spki(spki) else { return false };
    verify_alg(alg, spki, msg, sig)
}

fn verify_alg(alg: &dyn SignatureVerificationAlgorithm, spki: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    let spki = SubjectPublicKeyInfoDer::from(spki);
    webpki::RawPublicKeyEntity::try_from(&spki).is_ok_and(|k| k.verify_signature(alg, msg, sig).is_ok())
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// RFC 9162 2.1.3.2: the root an inclusion proof leads to.
fn root_from_inclusion(index: u64, size: u64, leaf: [u8; 32], path: &[Vec<u8>]) -> Option<[u8; 32]> {
    if index >= size {
        return None;
    }
    let (mut f, mut s, mut r) = (index, size - 1, leaf);
    for p in path {
        if s == 0 || p.len() != 32 {
            return None;
        }
        if f & 1 == 1 || f == s {
            r = sha256(&[&[1], p, &r]);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = sha256(&[&[1], &r, p]);
        }
        f >>= 1;
        s >>= 1;
    }
    (s == 0).then_some(r)
}

/// A signed note (the log's checkpoint): its text, and whether the log's key signed it.
fn checkpoint_ok(note: &str, log: &LogKey, tree_size: u64, root: &[u8]) -> Result<(), String> {
    let Some(split) = note.find("\n\n") else { return Err("the checkpoint has no signature".into()) };
    let body = &note[..=split];
    let mut lines = body.lines();
    let (_origin, size, hash) = (lines.next(), lines.next(), lines.next());
    if size.and_then(|s| s.parse::<u64>().ok()) != Some(tree_size) {
        return Err("the checkpoint is for another tree size".into());
    }
    if b64(hash).ok().as_deref() != Some(root) {
        return Err("the checkpoint commits to another root hash".into());
    }
    for line in note[split + 2..].lines() {
        let Some(sig) = line.strip_prefix("\u{2014} ").and_then(|l| l.rsplit(' ').next()) else { continue };
        let Ok(raw) = b64(Some(sig)) else { continue };
        if raw.len() > 4
            && raw[..4] == log.key_id[..4.min(log.key_id.len())]
            && verify_with(&log.spki, body.as_bytes(), &raw[4..])
        {
            return Ok(());
        }
    }
    Err("the log's key did not sign the checkpoint".into())
}

/// The Rekor entry: the log is trusted, its body names this payload, signature and
/// certificate, its signed entry timestamp verifies, its inclusion proof and checkpoint hold.
fn tlog_ok(e: &TlogEntry, env: &Envelope, leaf: &[u8], trust: &SigstoreTrust) -> Result<u64, String> {
    let t = u64::try_from(e.integrated_time).map_err(|_| "a negative integrated time")?;
    let log = trust
        .tlogs
        .iter()
        .find(|l| l.key_id == e.key_id && l.valid_at(t))
        .ok_or("the entry is in no trusted transparency log")?;
    if (e.kind.as_str(), e.version.as_str()) != ("dsse", "0.0.1") {
        return Err(format!("log entry kind {} {} is not supported (dsse 0.0.1)", e.kind, e.version));
    }
    let body: serde_json::Value =
        serde_json::from_slice(&e.canonicalized_body).map_err(|_| "the log entry body is not JSON")?;
    if body["kind"] != "dsse" || body["apiVersion"] != "0.0.1" {
        return Err("the log entry body is not a dsse 0.0.1 entry".into());
    }
    let spec = &body["spec"];
    let payload_hash = crate::digest::sha256_bytes(&env.payload);
    if spec["payloadHash"]["algorithm"] != "sha256" || spec["payloadHash"]["value"] != payload_hash.as_str() {
        return Err("the log entry is for another payload".into());
    }
    let pem_leaf = |v: &serde_json::Value| -> Option<Vec<u8>> {
        let pem = b64(v.as_str()).ok()?;
        CertificateDer::pem_slice_iter(&pem).next()?.ok().map(|c| c.as_ref().to_vec())
    };
    let sigs = spec["signatures"].as_array().map(Vec::as_slice).unwrap_or_default();
    if !sigs.iter().any(|s| {
        b64(s["signature"].as_str()).is_ok_and(|sig| env.signatures.contains(&sig))
            && pem_leaf(&s["verifier"]).as_deref() == Some(leaf)
    }) {
        return Err("the log entry is for another signature or certificate".into());
    }
    // The signed entry timestamp binds the body to the integrated time.
    let set = e.signed_entry_timestamp.as_deref().ok_or("the entry has no signed entry timestamp")?;
    let promise = format!(
        r#"{{"body":"{}","integratedTime":{},"logID":"{}","logIndex":{}}}"#,
        base64::engine::general_purpose::STANDARD.encode(&e.canonicalized_body),
        e.integrated_time,
        crate::io::hex(&e.key_id),
        e.log_index
    );
    if !verify_with(&log.spki, promise.as_bytes(), set) {
        return Err("the signed entry timestamp does not verify with the log's key".into());
    }
    let proof = e.inclusion_proof.as_ref().ok_or("the entry has no inclusion proof")?;
    let leaf_hash = sha256(&[&[0], &e.canonicalized_body]);
    let root = root_from_inclusion(proof.log_index, proof.tree_size, leaf_hash, &proof.hashes)
        .ok_or("the inclusion proof is not a valid path")?;
    if root.as_slice() != proof.root_hash.as_slice() {
        return Err("the inclusion proof leads to another root hash".into());
    }
    checkpoint_ok(&proof.checkpoint, log, proof.tree_size, &root)?;
    Ok(t)
}

/// An embedded SCT of the certificate verifies with a trusted CT log's key.
fn sct_ok(leaf: &Certificate, issuer_spki: &[u8], trust: &SigstoreTrust) -> Result<(), String> {
    let exts = leaf.tbs_certificate.extensions.as_deref().unwrap_or_default();
    let ext = exts.iter().find(|e| e.extn_id == SCT_LIST).ok_or("the certificate has no embedded SCT")?;
    let inner = OctetString::from_der(ext.extn_value.as_bytes()).map_err(|_| "malformed SCT list")?;
    let list = inner.as_bytes();
    let mut tbs = leaf.tbs_certificate.clone();
    tbs.extensions = Some(exts.iter().filter(|e| e.extn_id != SCT_LIST).cloned().collect());
    let precert = tbs.to_der().map_err(|e| format!("re-encoding the certificate: {e}"))?;
    let issuer_hash = sha256(&[issuer_spki]);
    let u16at = |b: &[u8], i: usize| b.get(i..i + 2).map(|x| usize::from(u16::from_be_bytes([x[0], x[1]])));
    let total = u16at(list, 0).ok_or("malformed SCT list")?;
    let mut rest = list.get(2..2 + total).ok_or("malformed SCT list")?;
    while !rest.is_empty() {
        let n = u16at(rest, 0).ok_or("malformed SCT")?;
        let sct = rest.get(2..2 + n).ok_or("malformed SCT")?;
        rest = &rest[2 + n..];
        // version(1) log_id(32) timestamp(8) extensions(2+n) hash(1) sig_alg(1) signature(2+n)
        let (Some(&version), Some(log_id), Some(ts)) = (sct.first(), sct.get(1..33), sct.get(33..41)) else { continue };
        let Some(ext_len) = u16at(sct, 41) else { continue };
        let Some(sct_ext) = sct.get(43..43 + ext_len) else { continue };
        let at = 43 + ext_len + 2;
        let Some(sig_len) = u16at(sct, at) else { continue };
        let Some(sig) = sct.get(at + 2..at + 2 + sig_len) else { continue };
        let Some(log) = trust.ctlogs.iter().find(|l| l.key_id == log_id) else { continue };
        let mut signed = vec![version, 0];
        signed.extend_from_slice(ts);
        signed.extend_from_slice(&1u16.to_be_bytes());
        signed.extend_from_slice(&issuer_hash);
        let len = u32::try_from(precert.len()).map_err(|_| "certificate too large")?;
        signed.extend_from_slice(&len.to_be_bytes()[1..]);
        signed.extend_from_slice(&precert);
        signed.extend_from_slice(&u16::try_from(ext_len).unwrap_or(0).to_be_bytes());
        signed.extend_from_slice(sct_ext);
        if verify_alg(algs::ECDSA_P256_SHA256, &log.spki, &signed, sig) || verify_with(&log.spki, &signed, sig) {
            return Ok(());
        }
    }
    Err("no embedded SCT verifies with a trusted CT log".into())
}

/// The OIDC issuer Fulcio recorded in the certificate.
fn oidc_issuer(c: &Certificate) -> Option<String> {
    let exts = c.tbs_certificate.extensions.as_deref()?;
    if let Some(e) = exts.iter().find(|e| e.extn_id == FULCIO_ISSUER_V2) {
        return Utf8StringRef::from_der(e.extn_value.as_bytes()).ok().map(|s| s.as_str().to_owned());
    }
    let e = exts.iter().find(|e| e.extn_id == FULCIO_ISSUER_V1)?;
    String::from_utf8(e.extn_value.as_bytes().to_vec()).ok()
}

fn san_identities(c: &Certificate) -> Vec<String> {
    match c.tbs_certificate.get::<SubjectAltName>() {
        Ok(Some((_, san))) => san
            .0
            .into_iter()
            .filter_map(|n| match n {
                GeneralName::Rfc822Name(s) | GeneralName::UniformResourceIdentifier(s) => Some(s.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

struct AnyEku;

impl webpki::ExtendedKeyUsageValidator for AnyEku {
    fn validate(&self, _: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        Ok(())
    }
}

/// Verifies a keyless bundle; `signed` is the DSSE pre-authentication encoding.
pub fn check_keyless(
    certificate: Option<&[u8]>,
    tlog: &[TlogEntry],
    env: &Envelope,
    signed: &[u8],
    trust: &SigstoreTrust,
) -> SignerCheck {
    let Some(leaf_der) = certificate else {
        return SignerCheck::Malformed("the keyless bundle has no certificate".into());
    };
    let leaf = match Certificate::from_der(leaf_der) {
        Ok(c) => c,
        Err(e) => return SignerCheck::Malformed(format!("the signing certificate is not X.509 DER: {e}")),
    };
    let identities = san_identities(&leaf);
    let issuer = oidc_issuer(&leaf);
    let who = format!(
        "{} (OIDC issuer {})",
        identities.first().map_or("?", String::as_str),
        issuer.as_deref().unwrap_or("?")
    );
    let untrusted = |why: String| SignerCheck::Untrusted(format!("Sigstore keyless signature by {who}: {why}"));
    // The transparency log says when the signature existed; the short-lived certificate must
    // have been valid then.
    let mut time = None;
    let mut why = Vec::new();
    for e in tlog {
        match tlog_ok(e, env, leaf_der, trust) {
            Ok(t) => {
                time = Some(t);
                break;
            }
            Err(w) => why.push(w),
        }
    }
    let Some(time) = time else {
        let why = if why.is_empty() { "the bundle has no transparency-log entry".to_owned() } else { why.join("; ") };
        return untrusted(why);
    };
    let ee_der = CertificateDer::from(leaf_der);
    let ee = match webpki::EndEntityCert::try_from(&ee_der) {
        Ok(ee) => ee,
        Err(e) => return SignerCheck::Malformed(format!("the signing certificate cannot be used: {e}")),
    };
    let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(time));
    let sig_algs = [algs::ECDSA_P256_SHA256, algs::ECDSA_P256_SHA384, algs::ECDSA_P384_SHA256, algs::ECDSA_P384_SHA384];
    let mut issuer_spki = None;
    for ca in trust.cas.iter().filter(|c| c.start <= time && c.end.is_none_or(|e| time <= e)) {
        let Some((root, intermediates)) = ca.chain.split_last() else { continue };
        let root = CertificateDer::from(root.as_slice());
        let Ok(anchor) = webpki::anchor_from_trusted_cert(&root) else { continue };
        let inter: Vec<CertificateDer<'_>> = intermediates.iter().map(|c| CertificateDer::from(c.as_slice())).collect();
        if ee.verify_for_usage(&sig_algs, &[anchor], &inter, at, AnyEku, None, None).is_ok() {
            // The issuing certificate: the one whose subject is the leaf's issuer.
            issuer_spki = ca.chain.iter().find_map(|c| {
                let c = Certificate::from_der(c).ok()?;
                (c.tbs_certificate.subject == leaf.tbs_certificate.issuer)
                    .then(|| c.tbs_certificate.subject_public_key_info.to_der().ok())
                    .flatten()
            });
            break;
        }
    }
    let Some(issuer_spki) = issuer_spki else {
        return untrusted("the certificate does not chain to a trusted Fulcio CA at the log's time".into());
    };
    let code_signing = matches!(leaf.tbs_certificate.get::<ExtendedKeyUsage>(), Ok(Some((_, eku))) if eku.0.contains(&EKU_CODE_SIGNING));
    if !code_signing {
        return untrusted("the certificate is not for code signing".into());
    }
    if let Err(w) = sct_ok(&leaf, &issuer_spki, trust) {
        return untrusted(w);
    }
    let Some(oidc) = issuer else { return untrusted("the certificate names no OIDC issuer".into()) };
    let allowed = trust.identities.iter().any(|t| t.issuer == oidc && identities.contains(&t.identity));
    if !allowed {
        return untrusted("this identity is not among artifact.signing.sigstore_identities".into());
    }
    let spki = match leaf.tbs_certificate.subject_public_key_info.to_der() {
        Ok(s) => s,
        Err(e) => return SignerCheck::Malformed(format!("the signing certificate's key: {e}")),
    };
    let Ok(alg) = alg_for_spki(&spki) else { return untrusted("unsupported key algorithm".into()) };
    if !env.signatures.iter().any(|s| ee.verify_signature(alg, signed, s).is_ok()) {
        return SignerCheck::Invalid(format!(
            "the signature does not verify with the key of the Sigstore certificate for {who}: the statement or the \
             signature was altered"
        ));
    }
    SignerCheck::Verified(Signer {
        kind: SignerKind::Sigstore,
        trusted_as: "sigstore".into(),
        key_fingerprint: key_fingerprint(&spki),
        identity: identities.into_iter().next(),
        issuer: Some(oidc),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inclusion_proofs_follow_rfc9162() {
        // A tree of 5 leaves; the proof for leaf 4 (the lone right edge) is [H(0..4)].
        let leaf = |i: u8| sha256(&[&[0], &[i]]);
        let node = |a: [u8; 32], b: [u8; 32]| sha256(&[&[1], &a, &b]);
        let l: Vec<[u8; 32]> = (0..5).map(leaf).collect();
        let h01 = node(l[0], l[1]);
        let h23 = node(l[2], l[3]);
        let h03 = node(h01, h23);
        let root = node(h03, l[4]);
        assert_eq!(root_from_inclusion(4, 5, l[4], &[h03.to_vec()]), Some(root));
        assert_eq!(root_from_inclusion(2, 5, l[2], &[l[3].to_vec(), h01.to_vec(), l[4].to_vec()]), Some(root));
        assert_ne!(root_from_inclusion(2, 5, l[2], &[l[3].to_vec(), h01.to_vec()]), Some(root));
        assert_eq!(root_from_inclusion(5, 5, l[4], &[h03.to_vec()]), None);
        assert_eq!(rfc3339("2021-01-12T11:53:27Z"), Some(1_610_452_407));
        assert_eq!(rfc3339("2022-12-31T23:59:59.999Z"), Some(1_672_531_199));
    }

    #[test]
    fn the_sct_is_checked_against_the_issuer_key() {
        use crate::signature::bundle::{Material, ParseLimits, parse_bundle};
        let root = include_bytes!("../../tests/data/sigstore/trusted_root.json");
        let bundle = include_bytes!("../../tests/data/sigstore/model-transparency-v1.1.0/model.sig");
        let trust = SigstoreTrust::parse(root, &[]).expect("trusted root");
        let b = parse_bundle(bundle, &ParseLimits::default()).expect("bundle");
        let Material::Keyless { certificate: Some(der), .. } = b.material else { panic!("keyless") };
        let leaf = Certificate::from_der(&der).expect("cert");
        let spki_of = |c: &[u8]| {
            Certificate::from_der(c).expect("cert").tbs_certificate.subject_public_key_info.to_der().expect("der")
        };
        // The production Fulcio CA: intermediate first.
        let intermediate = spki_of(&trust.cas[1].chain[0]);
        assert_eq!(sct_ok(&leaf, &intermediate, &trust), Ok(()));
        assert!(sct_ok(&leaf, &spki_of(&der), &trust).is_err(), "another issuer key hash");
        let no_ct = SigstoreTrust { ctlogs: Vec::new(), ..SigstoreTrust::parse(root, &[]).expect("root") };
        assert!(sct_ok(&leaf, &intermediate, &no_ct).is_err(), "no trusted CT log");
    }
}
