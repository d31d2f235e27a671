//! Who may sign: the trusted public keys and CA certificates (with identity constraints) from
//! the configuration, and the check of a bundle's signature against them. Cryptography is
//! rustls-webpki on ring (ECDSA, X.509 path building); x509-cert reads the names, key usage
//! and validity webpki does not expose.

use std::path::{Path, PathBuf};

use rustls_pki_types::{
    CertificateDer, SignatureVerificationAlgorithm, SubjectPublicKeyInfoDer, UnixTime, pem::PemObject,
};
use serde::{Deserialize, Serialize};
use webpki::ring as algs;
use x509_cert::{
    Certificate,
    der::{Decode as _, Encode as _, oid::ObjectIdentifier},
    ext::pkix::{ExtendedKeyUsage, KeyUsage, SubjectAltName, name::GeneralName},
    spki::SubjectPublicKeyInfoRef,
};

use super::bundle::{Bundle, IN_TOTO_PAYLOAD_TYPE, Material, pae};

const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const ID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const EKU_CODE_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");
const CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");

/// How a verified signature was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignerKind {
    /// A trusted public key (model_signing's `key` method).
    Key,
    /// A certificate chaining to a trusted CA (the `certificate` method).
    Certificate,
    /// A Sigstore keyless signature (Fulcio certificate, Rekor entry) verified against the
    /// configured trusted root and identities.
    Sigstore,
}

impl SignerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Certificate => "certificate",
            Self::Sigstore => "sigstore",
        }
    }
}

/// Who signed a model, as far as the signature proves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signer {
    pub kind: SignerKind,
    /// The configured key's or CA's `name`.
    pub trusted_as: String,
    /// `sha256:` and the hex SHA-256 of the signing key's SubjectPublicKeyInfo (DER), what
    /// `openssl pkey -pubin -outform DER | sha256sum` prints.
    pub key_fingerprint: String,
    /// The certificate's identity: its first e-mail or URI subject alternative name, else its
    /// common name, else its subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The certificate's issuer (RFC 4514); for Sigstore the OIDC issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

/// A trusted public key in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedKeyConfig {
    /// What reports call this signer.
    pub name: String,
    /// PEM file with the public key (`-----BEGIN PUBLIC KEY-----`): ECDSA P-256 or P-384, or
    /// Ed25519.
    pub public_key: PathBuf,
}

/// A trusted CA in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedCaConfig {
    /// What reports call this CA.
    pub name: String,
    /// PEM file with the CA certificate (a root or an intermediate; it is the trust anchor).
    pub certificate: PathBuf,
    /// Signing certificates this CA may vouch for: one of these must equal one of the
    /// certificate's e-mail, URI or DNS subject alternative names or its common name. Empty:
    /// any certificate the CA issued.
    #[serde(default)]
    pub identities: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

struct TrustedKey {
    name: String,
    spki: Vec<u8>,
    alg: &'static dyn SignatureVerificationAlgorithm,
    fingerprint: String,
    /// What model_signing writes as `publicKey.hint`: the SHA-256 of the key's PEM text.
    hint: String,
}

struct TrustedCa {
    name: String,
    der: Vec<u8>,
    identities: Vec<String>,
}

/// The loaded trust configuration.
#[derive(Default)]
pub struct TrustStore {
    keys: Vec<TrustedKey>,
    cas: Vec<TrustedCa>,
    sigstore: Option<super::keyless::SigstoreTrust>,
}

impl std::fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustStore")
            .field("keys", &self.keys.iter().map(|k| &k.name).collect::<Vec<_>>())
            .field("cas", &self.cas.iter().map(|c| &c.name).collect::<Vec<_>>())
            .finish()
    }
}

/// Trust files are small; anything larger is not one.
const MAX_TRUST_FILE: u64 = 1 << 20;

fn read_small(path: &Path) -> Result<Vec<u8>, TrustError> {
    let read = |source| TrustError::Read { path: path.to_owned(), source };
    let meta = std::fs::metadata(path).map_err(read)?;
    if meta.len() > MAX_TRUST_FILE {
        return Err(TrustError::Invalid { path: path.to_owned(), message: "larger than 1 MiB".into() });
    }
    std::fs::read(path).map_err(read)
}

/// The verification algorithm model_signing pairs with a key: ECDSA with SHA-256 for P-256,
/// SHA-384 for P-384; Ed25519 for completeness. P-521 is not supported by ring.
pub(crate) fn alg_for_spki(spki: &[u8]) -> Result<&'static dyn SignatureVerificationAlgorithm, String> {
    let info = SubjectPublicKeyInfoRef::from_der(spki).map_err(|e| format!("not a SubjectPublicKeyInfo: {e}"))?;
    let oid = info.algorithm.oid;
    if oid == ID_ED25519 {
        return Ok(algs::ED25519);
    }
    if oid != ID_EC_PUBLIC_KEY {
        return Err(format!("key algorithm {oid} is not supported (ECDSA P-256/P-384 or Ed25519)"));
    }
    let curve = info.algorithm.parameters.and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    match curve {
        Some(c) if c == SECP256R1 => Ok(algs::ECDSA_P256_SHA256),
        Some(c) if c == SECP384R1 => Ok(algs::ECDSA_P384_SHA384),
        Some(c) => Err(format!("elliptic curve {c} is not supported (P-256 or P-384)")),
        None => Err("the EC key names no curve".into()),
    }
}

/// `sha256:<hex>` of a SubjectPublicKeyInfo.
pub fn key_fingerprint(spki: &[u8]) -> String {
    format!("sha256:{}", crate::digest::sha256_bytes(spki))
}

/// The SHA-256 of the PEM text Python's `cryptography` writes for a public key (64-column
/// base64 between the PUBLIC KEY lines): model_signing's key hint.
fn pem_hint(spki: &[u8]) -> String {
    use base64::Engine as _;
    let b = base64::engine::general_purpose::STANDARD.encode(spki);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for chunk in b.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    crate::digest::sha256_bytes(pem.as_bytes())
}

impl TrustStore {
    /// Reads every configured key and CA certificate; any unreadable or unsupported one is an
    /// error naming its file.
    pub fn load(keys: &[TrustedKeyConfig], cas: &[TrustedCaConfig]) -> Result<Self, TrustError> {
        let mut store = Self::default();
        for k in keys {
            let bytes = read_small(&k.public_key)?;
            let invalid = |message: String| TrustError::Invalid { path: k.public_key.clone(), message };
            let spki = SubjectPublicKeyInfoDer::from_pem_slice(&bytes)
                .map_err(|e| invalid(format!("not a PEM public key: {e}")))?
                .as_ref()
                .to_vec();
            store.add_key(&k.name, spki).map_err(invalid)?;
        }
        for ca in cas {
            let bytes = read_small(&ca.certificate)?;
            let invalid = |message: String| TrustError::Invalid { path: ca.certificate.clone(), message };
            let mut found = 0;
            for der in CertificateDer::pem_slice_iter(&bytes) {
                let der = der.map_err(|e| invalid(format!("not a PEM certificate: {e}")))?;
                store.add_ca(&ca.name, der.as_ref().to_vec(), ca.identities.clone()).map_err(invalid)?;
                found += 1;
            }
            if found == 0 {
                return Err(invalid("holds no certificate".into()));
            }
        }
        Ok(store)
    }

    /// Trusts a public key (SubjectPublicKeyInfo, DER).
    pub fn add_key(&mut self, name: &str, spki: Vec<u8>) -> Result<(), String> {
        let alg = alg_for_spki(&spki)?;
        webpki::RawPublicKeyEntity::try_from(&SubjectPublicKeyInfoDer::from(spki.as_slice()))
            .map_err(|e| format!("unusable public key: {e}"))?;
        let fingerprint = key_fingerprint(&spki);
        let hint = pem_hint(&spki);
        self.keys.push(TrustedKey { name: name.to_owned(), spki, alg, fingerprint, hint });
        Ok(())
    }

    /// Trusts a CA certificate (DER) for the given identities (empty: any).
    pub fn add_ca(&mut self, name: &str, der: Vec<u8>, identities: Vec<String>) -> Result<(), String> {
        webpki::anchor_from_trusted_cert(&CertificateDer::from(der.as_slice()))
            .map_err(|e| format!("unusable CA certificate: {e}"))?;
        self.cas.push(TrustedCa { name: name.to_owned(), der, identities });
        Ok(())
    }

    /// Trusts Sigstore keyless signatures of the identities the trust names.
    pub fn set_sigstore(&mut self, trust: super::keyless::SigstoreTrust) {
        self.sigstore = Some(trust);
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.cas.is_empty() && self.sigstore.is_none()
    }
}

/// The outcome of checking who signed a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignerCheck {
    Verified(Signer),
    Untrusted(String),
    Invalid(String),
    Malformed(String),
}

/// Checks the envelope's signature against the trust store. Only a `Verified` outcome makes
/// the payload trustworthy.
pub fn check_signer(bundle: &Bundle, trust: &TrustStore) -> SignerCheck {
    let env = &bundle.envelope;
    if env.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return SignerCheck::Malformed(format!("payload type `{}` is not {IN_TOTO_PAYLOAD_TYPE}", env.payload_type));
    }
    let signed = pae(&env.payload_type, &env.payload);
    match &bundle.material {
        Material::PublicKey { hint } => check_key(hint.as_deref(), &signed, &env.signatures, trust),
        Material::Chain(certs) => check_chain(certs, &signed, &env.signatures, trust),
        Material::Keyless { certificate, tlog } => match &trust.sigstore {
            Some(st) => super::keyless::check_keyless(certificate.as_deref(), tlog, env, &signed, st),
            None => {
                let who = certificate
                    .as_deref()
                    .and_then(|c| Certificate::from_der(c).ok())
                    .map(|c| {
                        let (id, issuer) = identity_of(&c);
                        format!(" (certificate for {} issued by {issuer})", id.unwrap_or_else(|| "?".into()))
                    })
                    .unwrap_or_default();
                SignerCheck::Untrusted(format!(
                    "Sigstore keyless signature{who} with {} transparency-log entries: no Sigstore trusted root is \
                     configured (artifact.signing.sigstore_trusted_root), so its Fulcio chain, SCT and log inclusion \
                     are not verified offline and the signer is not trusted",
                    tlog.len()
                ))
            }
        },
    }
}

fn verify_any(alg: &dyn SignatureVerificationAlgorithm, spki: &[u8], msg: &[u8], sigs: &[Vec<u8>]) -> bool {
    let spki = SubjectPublicKeyInfoDer::from(spki);
    let Ok(entity) = webpki::RawPublicKeyEntity::try_from(&spki) else { return false };
    sigs.iter().any(|s| entity.verify_signature(alg, msg, s).is_ok())
}

fn check_key(hint: Option<&str>, signed: &[u8], sigs: &[Vec<u8>], trust: &TrustStore) -> SignerCheck {
    // The hint only narrows the search: a key is trusted because its signature verifies.
    let candidates: Vec<&TrustedKey> = match hint {
        Some(h) => trust.keys.iter().filter(|k| k.hint.eq_ignore_ascii_case(h)).collect(),
        None => trust.keys.iter().collect(),
    };
    for k in &candidates {
        if verify_any(k.alg, &k.spki, signed, sigs) {
            return SignerCheck::Verified(Signer {
                kind: SignerKind::Key,
                trusted_as: k.name.clone(),
                key_fingerprint: k.fingerprint.clone(),
                identity: None,
                issuer: None,
            });
        }
    }
    match (hint, candidates.first()) {
        (Some(_), Some(k)) => SignerCheck::Invalid(format!(
            "the bundle names trusted key `{}` but its signature does not verify with it: the statement or the \
             signature was altered",
            k.name
        )),
        (Some(h), None) => SignerCheck::Untrusted(format!("signed with a key that is not trusted (key hint {h})")),
        (None, _) => SignerCheck::Untrusted("no trusted key verifies the signature (the bundle names no key)".into()),
    }
}

/// Accepts any extended key usage: the signing purpose is judged by [`usable_for_signing`] the
/// way model_signing judges it, since webpki's validators are written for TLS.
struct AnyEku;

impl webpki::ExtendedKeyUsageValidator for AnyEku {
    fn validate(&self, _: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        Ok(())
    }
}

/// model_signing's rule: key usage digitalSignature, or extended key usage codeSigning.
fn usable_for_signing(c: &Certificate) -> bool {
    let ku = matches!(c.tbs_certificate.get::<KeyUsage>(), Ok(Some((_, ku))) if ku.digital_signature());
    let eku =
        matches!(c.tbs_certificate.get::<ExtendedKeyUsage>(), Ok(Some((_, eku))) if eku.0.contains(&EKU_CODE_SIGNING));
    ku || eku
}

/// Every name a certificate answers to (SAN e-mail, URI, DNS; subject CN).
fn names_of(c: &Certificate) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(Some((_, san))) = c.tbs_certificate.get::<SubjectAltName>() {
        for n in san.0 {
            match n {
                GeneralName::Rfc822Name(s) | GeneralName::UniformResourceIdentifier(s) | GeneralName::DnsName(s) => {
                    out.push(s.to_string());
                }
                _ => {}
            }
        }
    }
    for rdn in &c.tbs_certificate.subject.0 {
        for atv in rdn.0.iter() {
            if atv.oid == CN
                && let Some(v) = atv.to_string().strip_prefix("CN=")
            {
                out.push(v.to_owned());
            }
        }
    }
    out
}

/// The identity a report shows and the issuer.
fn identity_of(c: &Certificate) -> (Option<String>, String) {
    let mut id = None;
    if let Ok(Some((_, san))) = c.tbs_certificate.get::<SubjectAltName>() {
        id = san.0.into_iter().find_map(|n| match n {
            GeneralName::Rfc822Name(s) | GeneralName::UniformResourceIdentifier(s) => Some(s.to_string()),
            _ => None,
        });
    }
    let id = id.or_else(|| {
        let names = names_of(c);
        names.last().cloned()
    });
    let id = id.or_else(|| Some(c.tbs_certificate.subject.to_string()).filter(|s| !s.is_empty()));
    (id, c.tbs_certificate.issuer.to_string())
}

fn check_chain(certs: &[Vec<u8>], signed: &[u8], sigs: &[Vec<u8>], trust: &TrustStore) -> SignerCheck {
    let Some((leaf_der, rest)) = certs.split_first() else {
        return SignerCheck::Malformed("the certificate chain is empty".into());
    };
    let leaf = match Certificate::from_der(leaf_der) {
        Ok(c) => c,
        Err(e) => return SignerCheck::Malformed(format!("the signing certificate is not X.509 DER: {e}")),
    };
    let leaf_cert = CertificateDer::from(leaf_der.as_slice());
    let ee = match webpki::EndEntityCert::try_from(&leaf_cert) {
        Ok(ee) => ee,
        Err(e) => return SignerCheck::Malformed(format!("the signing certificate cannot be used: {e}")),
    };
    let (identity, issuer) = identity_of(&leaf);
    let who = identity.clone().unwrap_or_else(|| "?".into());
    let spki = match leaf.tbs_certificate.subject_public_key_info.to_der() {
        Ok(s) => s,
        Err(e) => return SignerCheck::Malformed(format!("the signing certificate's key: {e}")),
    };
    let alg = match alg_for_spki(&spki) {
        Ok(a) => a,
        Err(e) => return SignerCheck::Untrusted(format!("certificate for {who}: {e}")),
    };
    let intermediates: Vec<CertificateDer<'_>> = rest.iter().map(|c| CertificateDer::from(c.as_slice())).collect();
    // Like model_signing, the chain is judged at the signing certificate's notBefore: the
    // earliest moment the signature can have been made (key and certificate bundles carry no
    // trusted timestamp), so a signature outlives the short-lived certificate that made it.
    let at = UnixTime::since_unix_epoch(leaf.tbs_certificate.validity.not_before.to_unix_duration());
    let all_algs = [
        algs::ECDSA_P256_SHA256,
        algs::ECDSA_P256_SHA384,
        algs::ECDSA_P384_SHA256,
        algs::ECDSA_P384_SHA384,
        algs::ED25519,
        algs::RSA_PKCS1_2048_8192_SHA256,
        algs::RSA_PKCS1_2048_8192_SHA384,
        algs::RSA_PKCS1_2048_8192_SHA512,
        algs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        algs::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
        algs::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
    ];
    let mut why = Vec::new();
    for ca in &trust.cas {
        let ca_der = CertificateDer::from(ca.der.as_slice());
        let Ok(anchor) = webpki::anchor_from_trusted_cert(&ca_der) else { continue };
        let anchors = [anchor];
        if let Err(e) = ee.verify_for_usage(&all_algs, &anchors, &intermediates, at, AnyEku, None, None) {
            why.push(format!("not by CA `{}` ({e:?})", ca.name));
            continue;
        }
        if !ca.identities.is_empty() {
            let names = names_of(&leaf);
            if !names.iter().any(|n| ca.identities.iter().any(|i| i == n)) {
                return SignerCheck::Untrusted(format!(
                    "certificate for {who} chains to CA `{}`, which is trusted only for {}",
                    ca.name,
                    ca.identities.join(", ")
                ));
            }
        }
        if !usable_for_signing(&leaf) {
            return SignerCheck::Untrusted(format!(
                "certificate for {who} allows neither digitalSignature nor codeSigning"
            ));
        }
        if !sigs.iter().any(|s| ee.verify_signature(alg, signed, s).is_ok()) {
            return SignerCheck::Invalid(format!(
                "the signature does not verify with the key of the certificate for {who}: the statement or the \
                 signature was altered"
            ));
        }
        return SignerCheck::Verified(Signer {
            kind: SignerKind::Certificate,
            trusted_as: ca.name.clone(),
            key_fingerprint: key_fingerprint(&spki),
            identity,
            issuer: Some(issuer),
        });
    }
    let detail = if why.is_empty() { "no CA is configured".to_owned() } else { why.join("; ") };
    SignerCheck::Untrusted(format!("certificate for {who} issued by {issuer} is not trusted: {detail}"))
}
