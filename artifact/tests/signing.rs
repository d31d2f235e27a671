//! Model signatures made by the real signing tool (`model_signing` 1.1.1 from PyPI, installed by
//! `cargo xtask setup` into target/tools/model-signing-venv), with keys and a CA made by
//! openssl: single-file and directory models, the `key` and `certificate` methods, and each way
//! a signature goes wrong.

mod generated;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use modelwatch_artifact::signature::{
    SignatureReport, SignatureVerdict, SignerKind, TrustStore, Verifier, bundle::ParseLimits, hash_file,
    trust::key_fingerprint,
};

fn tool() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools/model-signing-venv/bin/model_signing");
    assert!(p.exists(), "{} is missing: `cargo xtask setup` installs model_signing there", p.display());
    p
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    run(Command::new("openssl").current_dir(dir).args(args));
}

/// An EC key pair (`<name>.key`, `<name>.pub`) on `curve`.
fn keypair(dir: &Path, name: &str, curve: &str) -> (PathBuf, PathBuf) {
    let key = format!("{name}.key");
    let public = format!("{name}.pub");
    openssl(dir, &["ecparam", "-name", curve, "-genkey", "-noout", "-out", &key]);
    openssl(dir, &["ec", "-in", &key, "-pubout", "-out", &public]);
    (dir.join(key), dir.join(public))
}

/// A CA (`<name>.pem`, `<name>.key`) and a code-signing certificate it issues for `email`
/// (`<name>-leaf.pem`, `<name>-leaf.key`).
fn ca_and_leaf(dir: &Path, name: &str, email: &str) -> (PathBuf, PathBuf, PathBuf) {
    let (ca_key, ca_pem) = (format!("{name}.key"), format!("{name}.pem"));
    openssl(dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", &ca_key]);
    #[rustfmt::skip]
    openssl(dir, &["req", "-x509", "-new", "-key", &ca_key, "-out", &ca_pem, "-days", "30",
        "-subj", &format!("/CN={name} Model CA"),
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    let (leaf_key, _) = keypair(dir, &format!("{name}-leaf"), "prime256v1");
    let (csr, leaf, ext) = (format!("{name}-leaf.csr"), format!("{name}-leaf.pem"), format!("{name}-leaf.ext"));
    openssl(dir, &["req", "-new", "-key", &leaf_key.to_string_lossy(), "-out", &csr, "-subj", "/CN=model hub"]);
    std::fs::write(
        dir.join(&ext),
        format!(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\n\
             subjectAltName=email:{email}\n"
        ),
    )
    .expect("write ext");
    #[rustfmt::skip]
    openssl(dir, &["x509", "-req", "-in", &csr, "-CA", &ca_pem, "-CAkey", &ca_key, "-CAcreateserial",
        "-out", &leaf, "-days", "7", "-extfile", &ext]);
    (dir.join(ca_pem), dir.join(leaf), leaf_key)
}

fn sign_key(cwd: &Path, model: &Path, key: &Path, extra: &[&str]) {
    run(Command::new(tool())
        .current_dir(cwd)
        .args(["sign", "key"])
        .arg(model)
        .arg("--private_key")
        .arg(key)
        .args(extra));
}

fn sign_cert(cwd: &Path, model: &Path, key: &Path, cert: &Path, ca: &Path) {
    run(Command::new(tool())
        .current_dir(cwd)
        .args(["sign", "certificate"])
        .arg(model)
        .arg("--private_key")
        .arg(key)
        .arg("--signing_certificate")
        .arg(cert)
        .arg("--certificate_chain")
        .arg(ca));
}

fn spki_der(public_pem: &Path) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(["pkey", "-pubin", "-outform", "DER", "-in"])
        .arg(public_pem)
        .output()
        .expect("openssl");
    assert!(out.status.success());
    out.stdout
}

fn key_store(keys: &[(&str, &Path)]) -> TrustStore {
    let mut t = TrustStore::default();
    for (name, public) in keys {
        t.add_key(name, spki_der(public)).expect("trusted key");
    }
    t
}

fn verifier(trust: TrustStore) -> Verifier {
    Verifier::new(trust, None, ParseLimits::default())
}

fn verify(v: &Verifier, file: &Path) -> SignatureReport {
    v.verify_file(file, &mut hash_file)
}

fn flip_one_byte(path: &Path) {
    let mut b = std::fs::read(path).expect("read");
    let i = b.len() / 2;
    b[i] ^= 1;
    std::fs::write(path, b).expect("write");
}

fn assert_verdict(r: &SignatureReport, want: SignatureVerdict) {
    assert_eq!(r.verdict, want, "{r:#?}");
}

/// A directory model: `config.json`, `weights/model.safetensors`, and git files the tool
/// leaves out by default.
fn directory_model(dir: &Path) -> PathBuf {
    let m = dir.join("llama-tiny");
    std::fs::create_dir_all(m.join("weights")).expect("mkdir");
    std::fs::create_dir_all(m.join(".git")).expect("mkdir");
    std::fs::write(m.join("config.json"), br#"{"model_type": "llama"}"#).expect("write");
    std::fs::write(m.join("weights/model.safetensors"), generated::tiny_safetensors(Some("MIT"))).expect("write");
    std::fs::write(m.join(".gitattributes"), b"*.safetensors filter=lfs\n").expect("write");
    std::fs::write(m.join(".git/HEAD"), b"ref: refs/heads/main\n").expect("write");
    m
}

#[test]
fn key_signed_single_file_model_verifies_and_each_tampering_has_its_verdict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (key, public) = keypair(d, "hub", "prime256v1");
    let (other_key, _) = keypair(d, "other", "prime256v1");
    let model = d.join("tiny.gguf");
    std::fs::write(&model, b"GGUF\x03\x00\x00\x00 some weights").expect("write");
    // As a hub runs it: in the model's directory, signature `model.sig` there.
    sign_key(d, Path::new("tiny.gguf"), &key, &[]);
    assert!(d.join("model.sig").exists());

    let v = verifier(key_store(&[("hub", &public)]));
    let r = verify(&v, &model);
    assert_verdict(&r, SignatureVerdict::Verified);
    let signer = r.signer.as_ref().expect("signer");
    assert_eq!(signer.kind, SignerKind::Key);
    assert_eq!(signer.trusted_as, "hub");
    assert_eq!(signer.key_fingerprint, key_fingerprint(&spki_der(&public)));
    assert_eq!(r.bundle.as_deref(), Some(d.join("model.sig").as_path()));
    assert_eq!(r.model_root.as_deref(), Some(model.as_path()));
    assert_eq!(r.files, 1);

    // One byte of the model changed.
    flip_one_byte(&model);
    let r = verify(&v, &model);
    assert_verdict(&r, SignatureVerdict::DigestMismatch);
    assert_eq!(r.mismatched_file.as_deref(), Some("tiny.gguf"));
    assert!(r.reason.contains("tiny.gguf"), "{}", r.reason);
    assert!(r.signer.is_some(), "the signature itself verified");
    flip_one_byte(&model);
    assert_verdict(&verify(&v, &model), SignatureVerdict::Verified);

    // Nobody configured; then signed by a key that is not trusted.
    assert_verdict(&verify(&verifier(TrustStore::default()), &model), SignatureVerdict::UntrustedSigner);
    sign_key(d, Path::new("tiny.gguf"), &other_key, &[]);
    let r = verify(&v, &model);
    assert_verdict(&r, SignatureVerdict::UntrustedSigner);
    assert!(r.reason.contains("not trusted"), "{}", r.reason);

    // The trusted key's bundle, truncated.
    sign_key(d, Path::new("tiny.gguf"), &key, &[]);
    let full = std::fs::read(d.join("model.sig")).expect("read");
    std::fs::write(d.join("model.sig"), &full[..full.len() / 2]).expect("write");
    assert_verdict(&verify(&v, &model), SignatureVerdict::Malformed);

    // The statement rewritten (another digest) under the trusted key's hint: the signature no
    // longer verifies.
    let mut bundle: serde_json::Value = serde_json::from_slice(&full).expect("json");
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = b64.decode(bundle["dsseEnvelope"]["payload"].as_str().expect("payload")).expect("base64");
    let forged = String::from_utf8(payload).expect("utf8").replacen("\"digest\": \"", "\"digest\": \"0", 1);
    bundle["dsseEnvelope"]["payload"] = b64.encode(forged).into();
    std::fs::write(d.join("model.sig"), serde_json::to_vec(&bundle).expect("json")).expect("write");
    let r = verify(&v, &model);
    assert_verdict(&r, SignatureVerdict::InvalidSignature);
    assert!(r.reason.contains("`hub`"), "{}", r.reason);

    // A transparency-log entry that is not one.
    let mut keyless: serde_json::Value = serde_json::from_slice(&full).expect("json");
    keyless["verificationMaterial"]["tlogEntries"] = serde_json::json!([{"logIndex": "1"}]);
    std::fs::write(d.join("model.sig"), serde_json::to_vec(&keyless).expect("json")).expect("write");
    let r = verify(&v, &model);
    assert_verdict(&r, SignatureVerdict::Malformed);
    assert!(r.reason.contains("logId.keyId"), "{}", r.reason);

    // No signature at all.
    std::fs::remove_file(d.join("model.sig")).expect("rm");
    assert_verdict(&verify(&v, &model), SignatureVerdict::Unsigned);
}

#[test]
fn key_signed_directory_model_names_the_file_that_differs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (key, public) = keypair(d, "hub", "secp384r1");
    let m = directory_model(d);
    sign_key(&m, Path::new("."), &key, &[]);
    let weights = m.join("weights/model.safetensors");

    let v = verifier(key_store(&[("hub", &public)]));
    let r = verify(&v, &weights);
    assert_verdict(&r, SignatureVerdict::Verified);
    assert_eq!(r.model_root.as_deref(), Some(m.as_path()));
    assert_eq!(r.files, 2, "config.json and the weights; git files and model.sig left out");
    // Every file of the model gets the same verdict.
    assert_verdict(&verify(&v, &m.join("config.json")), SignatureVerdict::Verified);
    // Git files are left out by the tool: changing them changes nothing.
    std::fs::write(m.join(".git/HEAD"), b"ref: refs/heads/other\n").expect("write");
    assert_verdict(&verify(&v, &weights), SignatureVerdict::Verified);

    flip_one_byte(&weights);
    let r = verify(&v, &m.join("config.json"));
    assert_verdict(&r, SignatureVerdict::DigestMismatch);
    assert_eq!(r.mismatched_file.as_deref(), Some("weights/model.safetensors"));
    // A planted signature nearer the file does not hide the trusted one further out.
    std::fs::write(m.join("weights/model.safetensors.sig"), b"{}").expect("write");
    let r = verify(&v, &weights);
    assert_verdict(&r, SignatureVerdict::DigestMismatch);
    assert_eq!(r.bundle.as_deref(), Some(m.join("model.sig").as_path()));
    std::fs::remove_file(m.join("weights/model.safetensors.sig")).expect("rm");
    flip_one_byte(&weights);

    std::fs::write(m.join("weights/extra.bin"), b"planted").expect("write");
    let r = verify(&v, &weights);
    assert_verdict(&r, SignatureVerdict::DigestMismatch);
    assert_eq!(r.mismatched_file.as_deref(), Some("weights/extra.bin"));
    assert!(r.reason.contains("not in the signature"), "{}", r.reason);
    std::fs::remove_file(m.join("weights/extra.bin")).expect("rm");

    std::fs::rename(m.join("config.json"), d.join("config.json")).expect("mv");
    let r = verify(&v, &weights);
    assert_verdict(&r, SignatureVerdict::DigestMismatch);
    assert_eq!(r.mismatched_file.as_deref(), Some("config.json"));
    std::fs::rename(d.join("config.json"), m.join("config.json")).expect("mv");
    assert_verdict(&verify(&v, &weights), SignatureVerdict::Verified);

    // Ignore paths chosen when signing are honoured.
    std::fs::write(m.join("README.md"), b"# notes").expect("write");
    assert_verdict(&verify(&v, &weights), SignatureVerdict::DigestMismatch);
    sign_key(&m, Path::new("."), &key, &["--ignore-paths", "README.md"]);
    assert_verdict(&verify(&v, &weights), SignatureVerdict::Verified);
    std::fs::write(m.join("README.md"), b"# other notes").expect("write");
    assert_verdict(&verify(&v, &weights), SignatureVerdict::Verified);
}

#[test]
fn certificate_signed_models_report_identity_and_issuer_and_honour_constraints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (ca, leaf, leaf_key) = ca_and_leaf(d, "Hub", "models@hub.example");
    let (rogue_ca, rogue_leaf, rogue_key) = ca_and_leaf(d, "Rogue", "models@hub.example");
    let ca_der = |pem: &Path| {
        let out = Command::new("openssl").args(["x509", "-outform", "DER", "-in"]).arg(pem).output().expect("openssl");
        out.stdout
    };
    let trust_for = |identities: &[&str]| {
        let mut t = TrustStore::default();
        t.add_ca("hub-ca", ca_der(&ca), identities.iter().map(ToString::to_string).collect()).expect("ca");
        verifier(t)
    };
    let v = trust_for(&["models@hub.example"]);

    // A single-file model and a directory model.
    let model = d.join("tiny.onnx");
    std::fs::write(&model, b"\x08\x07onnx bytes").expect("write");
    sign_cert(d, Path::new("tiny.onnx"), &leaf_key, &leaf, &ca);
    let r = verify(&v, &model);
    assert_verdict(&r, SignatureVerdict::Verified);
    let s = r.signer.as_ref().expect("signer");
    assert_eq!(s.kind, SignerKind::Certificate);
    assert_eq!(s.identity.as_deref(), Some("models@hub.example"));
    assert_eq!(s.issuer.as_deref(), Some("CN=Hub Model CA"));
    assert_eq!(s.trusted_as, "hub-ca");

    let m = directory_model(d);
    sign_cert(&m, Path::new("."), &leaf_key, &leaf, &ca);
    let weights = m.join("weights/model.safetensors");
    assert_verdict(&verify(&v, &weights), SignatureVerdict::Verified);
    flip_one_byte(&weights);
    let r = verify(&v, &weights);
    assert_verdict(&r, SignatureVerdict::DigestMismatch);
    assert_eq!(r.mismatched_file.as_deref(), Some("weights/model.safetensors"));
    flip_one_byte(&weights);

    // The CA vouches only for another identity.
    let r = verify(&trust_for(&["someone@else.example"]), &weights);
    assert_verdict(&r, SignatureVerdict::UntrustedSigner);
    assert!(r.reason.contains("trusted only for someone@else.example"), "{}", r.reason);
    // Any identity the CA issued.
    assert_verdict(&verify(&trust_for(&[]), &weights), SignatureVerdict::Verified);

    // The same identity from a CA that is not trusted.
    sign_cert(&m, Path::new("."), &rogue_key, &rogue_leaf, &rogue_ca);
    let r = verify(&v, &weights);
    assert_verdict(&r, SignatureVerdict::UntrustedSigner);
    assert!(r.reason.contains("Rogue Model CA"), "{}", r.reason);
}

#[test]
fn the_signature_store_covers_models_without_a_signature_beside_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (key, public) = keypair(d, "hub", "prime256v1");
    let store = d.join("store");
    std::fs::create_dir(&store).expect("mkdir");
    let models = d.join("models");
    std::fs::create_dir(&models).expect("mkdir");
    let model = models.join("tiny.gguf");
    std::fs::write(&model, b"GGUF weights").expect("write");
    sign_key(&models, Path::new("tiny.gguf"), &key, &["--signature", "../store/tiny.gguf.sig"]);
    let v = Verifier::new(key_store(&[("hub", &public)]), Some(store.clone()), ParseLimits::default());
    let r = verify(&v, &model);
    assert_verdict(&r, SignatureVerdict::Verified);
    assert_eq!(r.bundle.as_deref(), Some(store.join("tiny.gguf.sig").as_path()));
    // Without the store configured the model is unsigned.
    assert_verdict(&verify(&verifier(key_store(&[("hub", &public)])), &model), SignatureVerdict::Unsigned);
}

#[test]
fn a_model_sig_of_another_single_file_does_not_cover_this_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (key, public) = keypair(d, "hub", "prime256v1");
    std::fs::write(d.join("a.gguf"), b"GGUF a").expect("write");
    std::fs::write(d.join("b.gguf"), b"GGUF b").expect("write");
    sign_key(d, Path::new("a.gguf"), &key, &[]);
    let v = verifier(key_store(&[("hub", &public)]));
    assert_verdict(&verify(&v, &d.join("a.gguf")), SignatureVerdict::Verified);
    assert_verdict(&verify(&v, &d.join("b.gguf")), SignatureVerdict::Unsigned);
}

/// Every truncation and many single-byte changes of real bundles (the fuzz seeds) go through
/// the parser and the signer check without a panic, and never verify without trust.
#[test]
fn mutated_real_bundles_never_panic() {
    use modelwatch_artifact::signature::{
        SignerCheck,
        bundle::{parse_bundle, parse_statement},
        trust::check_signer,
    };
    let limits = ParseLimits::default();
    let seeds: [&[u8]; 3] = [
        include_bytes!("../fuzz/corpus/signature/bundle-key-directory"),
        include_bytes!("../fuzz/corpus/signature/bundle-key-single-file"),
        include_bytes!("../fuzz/corpus/signature/bundle-sigstore-keyless"),
    ];
    let empty = TrustStore::default();
    let mut sigstore = TrustStore::default();
    let ids = [modelwatch_artifact::signature::keyless::SigstoreIdentityConfig {
        identity: "stefanb@us.ibm.com".into(),
        issuer: "https://sigstore.verify.ibm.com/oauth2".into(),
    }];
    sigstore.set_sigstore(
        modelwatch_artifact::signature::keyless::SigstoreTrust::parse(
            include_bytes!("data/sigstore/trusted_root.json"),
            &ids,
        )
        .expect("trusted root"),
    );
    let mut parsed = 0;
    for seed in seeds {
        let mut inputs: Vec<Vec<u8>> = (0..seed.len()).map(|n| seed[..n].to_vec()).collect();
        for i in (0..seed.len()).step_by(3) {
            for b in [b'"', b'{', b'0', b'\\', 0xff] {
                let mut m = seed.to_vec();
                m[i] = b;
                inputs.push(m);
            }
        }
        for input in &inputs {
            let _ = parse_statement(input, &limits);
            if let Ok(b) = parse_bundle(input, &limits) {
                parsed += 1;
                let _ = parse_statement(&b.envelope.payload, &limits);
                assert!(!matches!(check_signer(&b, &empty), SignerCheck::Verified(_)));
                // Some changes leave the signed parts intact: only panics matter here.
                let _ = check_signer(&b, &sigstore);
            }
        }
    }
    assert!(parsed > 0);
}

/// `modelwatch scan` (the library under it) reports each model's signature verdict from the
/// `[artifact.signing]` configuration, a tampered model is a critical finding, and
/// `require = "all"` makes an unsigned model a policy finding.
#[test]
fn scan_reports_the_verdict_and_the_signing_policy() {
    use modelwatch_artifact::{
        ArtifactConfig, Severity, codes,
        scan::{ScanOptions, execute, write_text},
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (key, public) = keypair(d, "hub", "prime256v1");
    let m = directory_model(d);
    sign_key(&m, Path::new("."), &key, &[]);
    let loose = d.join("loose.gguf");
    std::fs::write(&loose, generated::llama_gguf()).expect("write");
    let cfg_text = format!(
        "[signing]\nrequire = \"all\"\n[[signing.keys]]\nname = \"hub\"\npublic_key = \"{}\"\n",
        public.display()
    );
    let cfg: ArtifactConfig = toml::from_str(&cfg_text).expect("config");
    assert_eq!(cfg.validate(), Ok(()));
    let weights = m.join("weights/model.safetensors");
    let scan = |paths: Vec<PathBuf>| execute(&ScanOptions::new(paths), &cfg).expect("scan");

    let out = scan(vec![weights.clone(), loose.clone()]);
    let signed = &out.artifacts[0];
    let sig = signed.signature.as_ref().expect("signature verdict");
    assert_eq!(sig.verdict, SignatureVerdict::Verified, "{sig:#?}");
    assert!(!signed.findings.iter().any(|f| f.code.starts_with("signature")), "{:?}", signed.findings);
    let unsigned = &out.artifacts[1];
    assert_eq!(unsigned.signature.as_ref().map(|s| s.verdict), Some(SignatureVerdict::Unsigned));
    let required = unsigned.findings.iter().find(|f| f.code == codes::SIGNATURE_REQUIRED).expect("policy finding");
    assert_eq!(required.severity, Severity::High);
    let mut text = Vec::new();
    write_text(&mut text, &out).expect("text");
    let text = String::from_utf8(text).expect("utf8");
    assert!(text.contains("signature verified by key `hub` sha256:"), "{text}");
    assert!(text.contains("signature unsigned"), "{text}");

    flip_one_byte(&m.join("config.json"));
    let out = scan(vec![weights.clone()]);
    let a = &out.artifacts[0];
    assert_eq!(a.signature.as_ref().map(|s| s.verdict), Some(SignatureVerdict::DigestMismatch));
    let f = a.findings.iter().find(|f| f.code == codes::SIGNATURE_DIGEST_MISMATCH).expect("mismatch finding");
    assert_eq!(f.severity, Severity::Critical);
    assert!(f.message.contains("`config.json`"), "{}", f.message);
    assert_eq!(out.summary.exit_code, 1);

    // A configured key that cannot be read stops the scan with the file named.
    let bad: ArtifactConfig =
        toml::from_str("[[signing.keys]]\nname = \"x\"\npublic_key = \"/nonexistent/key.pub\"\n").expect("config");
    let err = execute(&ScanOptions::new(vec![weights]), &bad).expect_err("unreadable key");
    assert!(err.to_string().contains("/nonexistent/key.pub"), "{err}");
}

/// The other files of a signed directory model obey `max_hash_bytes` like any hashed file: a
/// larger one leaves the model unchecked (with the reason), never `verified`.
#[test]
fn files_over_the_hash_bound_leave_the_model_unchecked() {
    use modelwatch_artifact::{
        ArtifactConfig,
        scan::{ScanOptions, execute},
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (key, public) = keypair(d, "hub", "prime256v1");
    let m = directory_model(d);
    std::fs::write(m.join("big.bin"), vec![1u8; (1 << 20) + 1]).expect("write");
    sign_key(&m, Path::new("."), &key, &[]);
    let cfg: ArtifactConfig = toml::from_str(&format!(
        "max_hash_bytes = \"1MiB\"\n[[signing.keys]]\nname = \"hub\"\npublic_key = \"{}\"\n",
        public.display()
    ))
    .expect("config");
    let out = execute(&ScanOptions::new(vec![m.join("weights/model.safetensors")]), &cfg).expect("scan");
    let sig = out.artifacts[0].signature.as_ref().expect("verdict");
    assert_eq!(sig.verdict, SignatureVerdict::Malformed, "{sig:#?}");
    assert!(sig.reason.contains("big.bin") && sig.reason.contains("max_hash_bytes"), "{}", sig.reason);
}

/// The real keyless-signed test model of sigstore/model-transparency (see
/// `tests/data/sigstore/README.md`), verified offline against Sigstore's trusted root: Fulcio
/// chain at the log's time, SCT, Rekor signed entry timestamp, inclusion proof and checkpoint,
/// identity and OIDC issuer.
#[test]
fn sigstore_keyless_bundles_verify_offline_against_the_trusted_root() {
    use modelwatch_artifact::signature::keyless::{SigstoreIdentityConfig, SigstoreTrust};
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sigstore");
    let dir = tempfile::tempdir().expect("tempdir");
    let m = dir.path().join("v1.1.0-sigstore");
    std::fs::create_dir(&m).expect("mkdir");
    for f in ["model.sig", "signme-1", "signme-2", "ignore-me"] {
        std::fs::copy(data.join("model-transparency-v1.1.0").join(f), m.join(f)).expect("copy");
    }
    let root = std::fs::read(data.join("trusted_root.json")).expect("trusted root");
    let ibm = "https://sigstore.verify.ibm.com/oauth2";
    let trusting = |identity: &str, issuer: &str| {
        let ids = [SigstoreIdentityConfig { identity: identity.into(), issuer: issuer.into() }];
        let mut t = TrustStore::default();
        t.set_sigstore(SigstoreTrust::parse(&root, &ids).expect("trusted root"));
        verifier(t)
    };
    let v = trusting("stefanb@us.ibm.com", ibm);
    let file = m.join("signme-1");

    let r = verify(&v, &file);
    assert_verdict(&r, SignatureVerdict::Verified);
    let s = r.signer.as_ref().expect("signer");
    assert_eq!(s.kind, SignerKind::Sigstore);
    assert_eq!(s.identity.as_deref(), Some("stefanb@us.ibm.com"));
    assert_eq!(s.issuer.as_deref(), Some(ibm));
    assert_eq!(r.files, 2);

    // Another identity, another issuer, or no Sigstore trust at all: not trusted.
    let r = verify(&trusting("someone@us.ibm.com", ibm), &file);
    assert_verdict(&r, SignatureVerdict::UntrustedSigner);
    assert!(r.reason.contains("not among"), "{}", r.reason);
    assert_verdict(
        &verify(&trusting("stefanb@us.ibm.com", "https://accounts.google.com"), &file),
        SignatureVerdict::UntrustedSigner,
    );
    let r = verify(&verifier(TrustStore::default()), &file);
    assert_verdict(&r, SignatureVerdict::UntrustedSigner);
    assert!(r.reason.contains("no Sigstore trusted root"), "{}", r.reason);

    // A file of the model altered.
    std::fs::write(m.join("signme-2"), b"signme-X").expect("write");
    let r = verify(&v, &file);
    assert_verdict(&r, SignatureVerdict::DigestMismatch);
    assert_eq!(r.mismatched_file.as_deref(), Some("signme-2"));
    std::fs::write(m.join("signme-2"), b"signme-2").expect("write");

    // Each piece of the log's evidence altered in turn.
    let original: serde_json::Value =
        serde_json::from_slice(&std::fs::read(m.join("model.sig")).expect("read")).expect("json");
    let tampered = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut b = original.clone();
        edit(&mut b);
        std::fs::write(m.join("model.sig"), serde_json::to_vec(&b).expect("json")).expect("write");
        verify(&v, &file)
    };
    let flip = |s: &str| -> String {
        use base64::Engine as _;
        let e = base64::engine::general_purpose::STANDARD;
        let mut raw = e.decode(s).expect("base64");
        let i = raw.len() / 2;
        raw[i] ^= 1;
        e.encode(raw)
    };
    let entry = |b: &mut serde_json::Value| b["verificationMaterial"]["tlogEntries"][0].clone();
    type Edit<'a> = &'a dyn Fn(&mut serde_json::Value);
    let cases: [(&str, Edit<'_>); 5] = [
        ("signed entry timestamp", &|b| {
            let set = flip(entry(b)["inclusionPromise"]["signedEntryTimestamp"].as_str().expect("set"));
            b["verificationMaterial"]["tlogEntries"][0]["inclusionPromise"]["signedEntryTimestamp"] = set.into();
        }),
        ("inclusion proof", &|b| {
            let h = flip(entry(b)["inclusionProof"]["hashes"][3].as_str().expect("hash"));
            b["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["hashes"][3] = h.into();
        }),
        ("integrated time", &|b| {
            b["verificationMaterial"]["tlogEntries"][0]["integratedTime"] = "1760062341".into();
        }),
        ("checkpoint", &|b| {
            let c = entry(b)["inclusionProof"]["checkpoint"]["envelope"]
                .as_str()
                .expect("note")
                .replacen("rekor", "rekoR", 1);
            b["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["checkpoint"]["envelope"] = c.into();
        }),
        ("certificate", &|b| {
            let c = flip(b["verificationMaterial"]["certificate"]["rawBytes"].as_str().expect("cert"));
            b["verificationMaterial"]["certificate"]["rawBytes"] = c.into();
        }),
    ];
    for (what, edit) in cases {
        let r = tampered(edit);
        assert!(matches!(r.verdict, SignatureVerdict::UntrustedSigner | SignatureVerdict::Malformed), "{what}: {r:#?}");
    }
    std::fs::write(m.join("model.sig"), serde_json::to_vec(&original).expect("json")).expect("write");
    assert_verdict(&verify(&v, &file), SignatureVerdict::Verified);
}

/// The live analyzer: a signed directory model's verdict comes with the digest; after a
/// restart a model whose files are all in the digest cache is verified from it at once, and
/// one with a file the cache does not know (changed since) goes through hashing and names it.
#[test]
fn the_live_analyzer_verifies_through_the_digest_cache() {
    use modelwatch_artifact::{
        ArtifactConfig, ArtifactReport, FileIdentity,
        service::{Analyzer, ArtifactRequest, ArtifactUpdate},
    };
    use std::{sync::Arc, time::Duration};
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let state = d.join("state");
    let (key, public) = keypair(d, "hub", "prime256v1");
    let m = d.join("model");
    std::fs::create_dir(&m).expect("mkdir");
    std::fs::write(m.join("part-1.gguf"), generated::llama_gguf()).expect("write");
    let mut second = generated::llama_gguf();
    second.extend_from_slice(b"tail");
    std::fs::write(m.join("part-2.gguf"), second).expect("write");
    std::fs::write(m.join("config.json"), br#"{"a": 1}"#).expect("write");
    sign_key(&m, Path::new("."), &key, &[]);
    let cfg: ArtifactConfig =
        toml::from_str(&format!("[[signing.keys]]\nname = \"hub\"\npublic_key = \"{}\"\n", public.display()))
            .expect("config");
    let request = |p: &Path| ArtifactRequest {
        path: p.to_owned(),
        identity: FileIdentity::from_metadata(&std::fs::metadata(p).expect("stat")),
    };
    // The first update about `p` that carries a signature verdict, and whether it came with
    // the identification (a cache hit) or after hashing.
    let verdict = |rx: &std::sync::mpsc::Receiver<ArtifactUpdate>, p: &Path| -> (Arc<ArtifactReport>, bool) {
        loop {
            let u = rx.recv_timeout(Duration::from_secs(120)).expect("no update within the hang guard");
            let (report, at_identification) = match u {
                ArtifactUpdate::Identified { report, .. } => (report, true),
                ArtifactUpdate::Digest { report, .. } => (report, false),
                _ => continue,
            };
            if report.path == p && report.signature.is_some() {
                return (report, at_identification);
            }
        }
    };
    let first = m.join("part-1.gguf");
    let (tx, rx) = std::sync::mpsc::sync_channel(1024);
    let h = Analyzer::start(&cfg, &state, tx).expect("start");
    h.submit(request(&first));
    let (r, cached) = verdict(&rx, &first);
    assert_eq!(r.signature.as_ref().map(|s| s.verdict), Some(SignatureVerdict::Verified), "{r:#?}");
    assert!(!cached, "hashed first");
    h.shutdown();

    // Restarted: part-2 and config.json were hashed for the signature and are in the cache.
    let (tx, rx) = std::sync::mpsc::sync_channel(1024);
    let h = Analyzer::start(&cfg, &state, tx).expect("start");
    let part2 = m.join("part-2.gguf");
    h.submit(request(&part2));
    let (r, cached) = verdict(&rx, &part2);
    assert_eq!(r.signature.as_ref().map(|s| s.verdict), Some(SignatureVerdict::Verified), "{r:#?}");
    assert!(cached, "verified from the digest cache, with the identification");
    h.shutdown();

    // Restarted after config.json changed: not in the cache, so the model is hashed again and
    // the change is named.
    std::fs::write(m.join("config.json"), br#"{"a": 2}"#).expect("write");
    let (tx, rx) = std::sync::mpsc::sync_channel(1024);
    let h = Analyzer::start(&cfg, &state, tx).expect("start");
    h.submit(request(&first));
    let (r, cached) = verdict(&rx, &first);
    let sig = r.signature.as_ref().expect("verdict");
    assert_eq!((sig.verdict, sig.mismatched_file.as_deref()), (SignatureVerdict::DigestMismatch, Some("config.json")));
    assert!(!cached, "hashed, not judged from the cache");
    h.shutdown();
}

/// With `require`, a model whose digest is skipped (too large) cannot be checked, and says so.
#[test]
fn a_required_signature_on_an_unhashed_model_is_a_finding() {
    use modelwatch_artifact::{
        ArtifactConfig, codes,
        scan::{ScanOptions, execute},
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("big.gguf");
    let mut bytes = generated::llama_gguf();
    bytes.resize((1 << 20) + 64, 0);
    std::fs::write(&big, bytes).expect("write");
    let cfg: ArtifactConfig =
        toml::from_str("max_hash_bytes = \"1MiB\"\n[signing]\nrequire = \"all\"\n").expect("config");
    let out = execute(&ScanOptions::new(vec![big]), &cfg).expect("scan");
    let a = &out.artifacts[0];
    assert!(a.digest_skipped.is_some() && a.signature.is_none(), "{a:#?}");
    let f = a.findings.iter().find(|f| f.code == codes::SIGNATURE_REQUIRED).expect("finding");
    assert!(f.message.contains("digest is skipped"), "{}", f.message);
}
