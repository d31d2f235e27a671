//! Signed-model provenance in the live sensor: models signed with the real signing tool
//! (`model_signing` 1.1.1, installed by `cargo xtask setup` into target/tools) and a key made
//! by openssl are opened by this test; the sensor's `artifact_identified` event carries the
//! signature verdict and the signer, a tampered file of a signed directory model is a critical
//! finding naming it, and with `require = "all"` an unsigned model is a policy finding.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use modelwatch_tests::{EVENT_TIMEOUT, RunningSensor, kind, open_close, real, tiny_gguf};
use serde_json::Value;

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

fn about(e: &Value, payload: &str, path: &Path) -> bool {
    kind(e) == payload && e[payload]["file"]["path"] == real(path).as_str()
}

/// The `artifact_identified` event of `path` once its signature was checked.
fn signature_event(sensor: &mut RunningSensor, path: &Path, verdict: &str) -> Value {
    let e = sensor.wait_for(&format!("{} with signature {verdict}", path.display()), EVENT_TIMEOUT, |e| {
        about(e, "artifact_identified", path) && e["artifact_identified"]["signature"]["verdict"] == verdict
    });
    e["artifact_identified"].clone()
}

fn finding(sensor: &mut RunningSensor, path: &Path, code: &str) -> Value {
    let e = sensor.wait_for(&format!("{code} about {}", path.display()), EVENT_TIMEOUT, |e| {
        about(e, "policy_finding", path) && e["policy_finding"]["finding"]["code"] == code
    });
    e["policy_finding"].clone()
}

#[test]
fn loaded_models_report_who_signed_them_and_what_was_altered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    run(Command::new("openssl").current_dir(d).args([
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        "hub.key",
    ]));
    run(Command::new("openssl").current_dir(d).args(["ec", "-in", "hub.key", "-pubout", "-out", "hub.pub"]));
    let der =
        der_of(Command::new("openssl").current_dir(d).args(["pkey", "-pubin", "-outform", "DER", "-in", "hub.pub"]));
    let fingerprint = format!("sha256:{}", modelwatch_artifact::digest::sha256_bytes(&der));

    // A single-file model signed where it lies (model.sig beside it), a directory model signed
    // as a whole, and an unsigned model in a directory of its own.
    let single_dir = d.join("single");
    std::fs::create_dir(&single_dir).expect("mkdir");
    let single = single_dir.join("signed.gguf");
    std::fs::write(&single, tiny_gguf()).expect("write");
    run(Command::new(tool()).current_dir(&single_dir).args([
        "sign",
        "key",
        "signed.gguf",
        "--private_key",
        "../hub.key",
    ]));

    let model_dir = d.join("hub-model");
    std::fs::create_dir(&model_dir).expect("mkdir");
    let weights = model_dir.join("weights.gguf");
    std::fs::write(&weights, tiny_gguf()).expect("write");
    std::fs::write(model_dir.join("config.json"), br#"{"model_type": "llama"}"#).expect("write");
    run(Command::new(tool()).current_dir(&model_dir).args(["sign", "key", ".", "--private_key", "../hub.key"]));
    // Altered after signing: one byte of a file the model loads besides the weights.
    std::fs::write(model_dir.join("config.json"), br#"{"model_type": "llamb"}"#).expect("write");

    let unsigned_dir = d.join("unsigned");
    std::fs::create_dir(&unsigned_dir).expect("mkdir");
    let unsigned = unsigned_dir.join("unsigned.gguf");
    std::fs::write(&unsigned, tiny_gguf()).expect("write");

    let config = format!(
        "[artifact.signing]\nrequire = \"all\"\n[[artifact.signing.keys]]\nname = \"hub\"\npublic_key = \"{}\"\n",
        d.join("hub.pub").display()
    );
    let mut sensor = RunningSensor::start(&config);

    open_close(&single);
    let a = signature_event(&mut sensor, &single, "SIGNATURE_VERDICT_VERIFIED");
    let sig = &a["signature"];
    assert_eq!(sig["signer_method"], "key");
    assert_eq!(sig["trusted_as"], "hub");
    assert_eq!(sig["key_fingerprint"], fingerprint.as_str());
    assert_eq!(sig["bundle_path"], real(&single_dir.join("model.sig")).as_str());
    assert_eq!(a["artifact"]["signature"], "SIGNATURE_VERDICT_VERIFIED");
    assert_eq!(a["artifact"]["digest_state"], "DIGEST_STATE_VERIFIED");

    open_close(&weights);
    let a = signature_event(&mut sensor, &weights, "SIGNATURE_VERDICT_DIGEST_MISMATCH");
    assert_eq!(a["signature"]["mismatched_file"], "config.json");
    assert_eq!(a["signature"]["trusted_as"], "hub", "the signature itself verified");
    let f = finding(&mut sensor, &weights, "signature_digest_mismatch");
    assert_eq!(f["finding"]["severity"], "SEVERITY_CRITICAL");
    assert!(f["finding"]["message"].as_str().unwrap_or_default().contains("`config.json`"), "{f}");
    assert_eq!(f["artifact"]["signature"], "SIGNATURE_VERDICT_DIGEST_MISMATCH");

    open_close(&unsigned);
    signature_event(&mut sensor, &unsigned, "SIGNATURE_VERDICT_UNSIGNED");
    let f = finding(&mut sensor, &unsigned, "signature_required");
    assert_eq!(f["finding"]["severity"], "SEVERITY_HIGH");

    // The verified model raised no signature finding.
    let events = sensor.stop();
    let about_single: Vec<&Value> = events
        .iter()
        .filter(|e| about(e, "policy_finding", &single))
        .filter(|e| e["policy_finding"]["finding"]["code"].as_str().unwrap_or_default().starts_with("signature"))
        .collect();
    assert!(about_single.is_empty(), "{about_single:?}");
}

fn der_of(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("openssl");
    assert!(out.status.success());
    out.stdout
}
