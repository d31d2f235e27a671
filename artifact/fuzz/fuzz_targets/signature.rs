//! Fuzz target: a model signature file (Sigstore bundle, DSSE envelope, in-toto statement) and
//! the signer check over it, with no trust configured (every certificate in a chain is still
//! parsed) and with Sigstore's trusted root (the keyless path: log entries, proofs, SCTs).
//! Seeds `bundle-*` are bundles written by model_signing 1.1.x.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modelwatch_artifact::signature::{
    TrustStore,
    bundle::{ParseLimits, parse_bundle, parse_statement},
    keyless::{SigstoreIdentityConfig, SigstoreTrust},
    trust::check_signer,
};

fn sigstore() -> TrustStore {
    let ids = [SigstoreIdentityConfig {
        identity: "stefanb@us.ibm.com".into(),
        issuer: "https://sigstore.verify.ibm.com/oauth2".into(),
    }];
    let mut t = TrustStore::default();
    if let Ok(s) = SigstoreTrust::parse(include_bytes!("../../tests/data/sigstore/trusted_root.json"), &ids) {
        t.set_sigstore(s);
    }
    t
}

fuzz_target!(|data: &[u8]| {
    let limits = ParseLimits { max_bundle_bytes: 1 << 20, max_files: 1024 };
    let _ = parse_statement(data, &limits);
    if let Ok(bundle) = parse_bundle(data, &limits) {
        let _ = parse_statement(&bundle.envelope.payload, &limits);
        let _ = check_signer(&bundle, &TrustStore::default());
        let _ = check_signer(&bundle, &sigstore());
    }
});
