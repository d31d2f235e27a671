//! Artifact reports (from `modelwatch_artifact`) as schema messages: the summary attached to file
//! events, `ArtifactIdentified`, and one `PolicyFinding` per finding.

use modelwatch_artifact::{self as artifact, ArtifactReport, FileIdentity};

use crate::proto::v1::{
    ApprovalVerdict, ArtifactFormat, ArtifactIdentified, ArtifactSummary, DigestState, FileRef, Finding, LicenseState,
    ManifestEntry, ModelMetadata, ModelSignature, PickleVerdict, PolicyFinding, Severity, SignatureVerdict,
};

/// The schema's format for a report: the schema splits some formats by variant.
pub fn format(r: &ArtifactReport) -> ArtifactFormat {
    use artifact::Format as F;
    let variant = r.variant.as_deref().unwrap_or("");
    match r.format {
        F::Unknown => ArtifactFormat::Unknown,
        F::NotAModel => ArtifactFormat::NotAModel,
        F::Gguf => ArtifactFormat::Gguf,
        F::Safetensors => ArtifactFormat::Safetensors,
        F::Pytorch if variant == "zip" || variant == "torchscript" => ArtifactFormat::PytorchZip,
        F::Pytorch => ArtifactFormat::PytorchLegacy,
        F::Pickle if variant == "joblib" => ArtifactFormat::Joblib,
        F::Pickle => ArtifactFormat::Pickle,
        F::Numpy if variant == "npz" => ArtifactFormat::NumpyZip,
        F::Numpy => ArtifactFormat::Numpy,
        F::Onnx => ArtifactFormat::Onnx,
        F::Tflite => ArtifactFormat::Tflite,
        F::TfSavedmodel => ArtifactFormat::TfSavedModel,
        F::Keras => ArtifactFormat::Keras,
        F::KerasH5 => ArtifactFormat::KerasH5,
        F::Hdf5 => ArtifactFormat::Hdf5,
        F::Coreml => ArtifactFormat::Coreml,
    }
}

pub fn severity(s: artifact::Severity) -> Severity {
    use artifact::Severity as S;
    match s {
        S::Info => Severity::Info,
        S::Low => Severity::Low,
        S::Medium => Severity::Medium,
        S::High => Severity::High,
        S::Critical => Severity::Critical,
    }
}

fn approval(p: artifact::PolicyVerdict) -> ApprovalVerdict {
    use artifact::PolicyVerdict as P;
    match p {
        P::Approved => ApprovalVerdict::Approved,
        P::Unapproved => ApprovalVerdict::Unapproved,
        P::Denied => ApprovalVerdict::Denied,
        P::Unknown => ApprovalVerdict::Unknown,
        P::NoManifest => ApprovalVerdict::NoManifest,
    }
}

fn pickle(s: artifact::Safety) -> PickleVerdict {
    match s {
        artifact::Safety::Safe => PickleVerdict::Safe,
        artifact::Safety::Suspicious => PickleVerdict::Suspicious,
        artifact::Safety::Malicious => PickleVerdict::Malicious,
    }
}

fn signature_verdict(r: &ArtifactReport) -> SignatureVerdict {
    use artifact::signature::SignatureVerdict as V;
    match r.signature.as_ref().map(|s| s.verdict) {
        None => SignatureVerdict::Unspecified,
        Some(V::Verified) => SignatureVerdict::Verified,
        Some(V::DigestMismatch) => SignatureVerdict::DigestMismatch,
        Some(V::UntrustedSigner) => SignatureVerdict::UntrustedSigner,
        Some(V::InvalidSignature) => SignatureVerdict::InvalidSignature,
        Some(V::Malformed) => SignatureVerdict::Malformed,
        Some(V::Unsigned) => SignatureVerdict::Unsigned,
    }
}

fn signature(r: &ArtifactReport) -> Option<ModelSignature> {
    let s = r.signature.as_ref()?;
    let path =
        |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    let signer = s.signer.as_ref();
    Some(ModelSignature {
        verdict: signature_verdict(r) as i32,
        reason: s.reason.clone(),
        bundle_path: path(&s.bundle),
        model_root: path(&s.model_root),
        signer_method: signer.map(|g| g.kind.as_str().to_owned()).unwrap_or_default(),
        trusted_as: signer.map(|g| g.trusted_as.clone()).unwrap_or_default(),
        key_fingerprint: signer.map(|g| g.key_fingerprint.clone()).unwrap_or_default(),
        identity: signer.and_then(|g| g.identity.clone()).unwrap_or_default(),
        issuer: signer.and_then(|g| g.issuer.clone()).unwrap_or_default(),
        mismatched_file: s.mismatched_file.clone().unwrap_or_default(),
        files: s.files,
    })
}

/// Stable artifact id: the digest once known, else the file version.
pub fn artifact_id(r: &ArtifactReport, id: &FileIdentity) -> String {
    match &r.digest {
        Some(d) if d.state != artifact::DigestState::Claimed => format!("sha256:{}", d.sha256_hex),
        _ => format!("file:{}:{}:{}:{}", id.dev, id.ino, id.size, id.mtime_ns),
    }
}

pub fn summary(r: &ArtifactReport, id: &FileIdentity) -> ArtifactSummary {
    let (sha256, digest_state) = match (&r.digest, &r.digest_skipped) {
        // Not hashed by policy: only a store's claim can be there, and it will stay one.
        (d, Some(_)) => (d.as_ref().map(|d| d.sha256_hex.clone()).unwrap_or_default(), DigestState::Skipped),
        (None, None) => (String::new(), DigestState::Pending),
        (Some(d), None) => (
            d.sha256_hex.clone(),
            match d.state {
                artifact::DigestState::Claimed => DigestState::Claimed,
                artifact::DigestState::Verified => DigestState::Verified,
                artifact::DigestState::Mismatch => DigestState::Mismatch,
            },
        ),
    };
    let name =
        r.metadata.name.clone().or_else(|| r.manifest_entry.as_ref().and_then(|m| m.name.clone())).unwrap_or_default();
    let license = r
        .metadata
        .license
        .clone()
        .or_else(|| r.manifest_entry.as_ref().and_then(|m| m.license.clone()))
        .unwrap_or_default();
    ArtifactSummary {
        artifact_id: artifact_id(r, id),
        format: format(r) as i32,
        name,
        sha256,
        digest_state: digest_state as i32,
        approval: approval(r.policy) as i32,
        pickle: r.pickle.as_ref().map_or(0, |p| pickle(p.verdict) as i32),
        license,
        digest_skipped_reason: r.digest_skipped.as_ref().map(|s| s.reason.as_str().to_owned()).unwrap_or_default(),
        signature: signature_verdict(r) as i32,
    }
}

fn metadata(r: &ArtifactReport) -> ModelMetadata {
    let m = &r.metadata;
    ModelMetadata {
        name: m.name.clone().unwrap_or_default(),
        architecture: m.architecture.clone().unwrap_or_default(),
        license: m.license.clone().unwrap_or_default(),
        quantization: m.quantization.clone().unwrap_or_default(),
        parameter_count: m.parameter_count.unwrap_or(0),
        context_length: m.context_length.unwrap_or(0),
        tensor_count: m.tensor_count.unwrap_or(0),
        dtypes: m.dtypes.clone(),
        chat_template: m.chat_template.unwrap_or(false),
        ir_version: m.ir_version.map_or(0, |v| v.max(0) as u64),
        producer: m.producer.clone().unwrap_or_default(),
        opsets: m.opsets.iter().map(|o| format!("{}:{}", o.domain, o.version)).collect(),
        graph_name: m.graph_name.clone().unwrap_or_default(),
        lambda_layers: !m.lambda_layers.is_empty(),
        shard_count: m.shard.as_ref().map_or(0, |s| s.count),
        format_version: m.format_version.map_or(0, |v| v.min(u64::from(u32::MAX)) as u32),
        extra: m.properties.clone(),
        variant: r.variant.clone().unwrap_or_default(),
        producer_version: m.producer_version.clone().unwrap_or_default(),
        node_count: m.node_count.unwrap_or(0),
        custom_ops: m.custom_ops.clone(),
        unsafe_ops: m.unsafe_ops.clone(),
        external_data: m.external_data.clone(),
        lambda_layer_names: m.lambda_layers.clone(),
        tags: m.tags.clone(),
        shape: m.shape.clone(),
        zip_entries: m.entries.unwrap_or(0),
    }
}

pub fn file_ref(r: &ArtifactReport, id: &FileIdentity) -> FileRef {
    use std::os::unix::ffi::OsStrExt as _;
    let bytes = r.path.as_os_str().as_bytes();
    FileRef {
        path: r.path.to_string_lossy().into_owned(),
        path_bytes: if std::str::from_utf8(bytes).is_ok() { Vec::new() } else { bytes.to_vec() },
        path_truncated: false,
        requested_path: String::new(),
        inode: id.ino,
        device: id.dev,
        size: id.size,
        mode: 0,
    }
}

fn finding(f: &artifact::Finding) -> Finding {
    Finding { code: f.code.clone(), message: f.message.clone(), severity: severity(f.severity) as i32 }
}

/// The licence the content or the manifest names.
fn declared_license(r: &ArtifactReport) -> Option<&str> {
    r.metadata
        .license
        .as_deref()
        .or_else(|| r.manifest_entry.as_ref().and_then(|m| m.license.as_deref()))
        .filter(|l| !l.trim().is_empty())
}

pub fn identified(r: &ArtifactReport, id: &FileIdentity) -> ArtifactIdentified {
    let license_state = match &r.license_finding {
        Some(l) => match l.problem {
            artifact::LicenseProblem::Missing => LicenseState::Missing,
            artifact::LicenseProblem::NotAllowed => LicenseState::NotAllowed,
        },
        // No finding: the licence is allowed, or none is declared and none was required (the
        // state still says it is missing, as the schema defines it).
        None if r.format.is_model() && declared_license(r).is_some() => LicenseState::Allowed,
        None if r.format.is_model() => LicenseState::Missing,
        None => LicenseState::Unspecified,
    };
    ArtifactIdentified {
        file: Some(file_ref(r, id)),
        artifact: Some(summary(r, id)),
        metadata: Some(metadata(r)),
        claimed_sha256: r.digest.as_ref().and_then(|d| d.claimed_sha256_hex.clone()).unwrap_or_default(),
        pickle_globals: r.pickle.as_ref().map(|p| p.globals.clone()).unwrap_or_default(),
        pickle_offending: r.pickle.as_ref().map(|p| p.offending.clone()).unwrap_or_default(),
        manifest_entry: r.manifest_entry.as_ref().map(|m| ManifestEntry {
            name: m.name.clone().unwrap_or_default(),
            version: m.version.clone().unwrap_or_default(),
            license: m.license.clone().unwrap_or_default(),
            notes: m.notes.clone().unwrap_or_default(),
        }),
        license_state: license_state as i32,
        findings: r.findings.iter().map(finding).collect(),
        pickle_streams: r.pickle.as_ref().map(|p| p.streams.clone()).unwrap_or_default(),
        pickle_complete: r.pickle.as_ref().is_some_and(|p| p.complete),
        signature: signature(r),
    }
}

pub fn policy_finding(r: &ArtifactReport, id: &FileIdentity, f: &artifact::Finding) -> PolicyFinding {
    PolicyFinding { file: Some(file_ref(r, id)), artifact: Some(summary(r, id)), finding: Some(finding(f)) }
}

/// Kernel-encoded device of an identity, for the inode-mark map.
pub fn kernel_dev(id: &FileIdentity) -> u32 {
    sensor_ebpf::kernel_dev_from_user(id.dev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skipped_digest_is_its_own_state_with_the_reason_and_any_claim() {
        let id = FileIdentity { dev: 1, ino: 2, size: 3, mtime_ns: 4, ctime_sec: 5, ctime_nsec: 6 };
        let mut r = ArtifactReport {
            path: "/m/x.gguf".into(),
            size: 3,
            format: artifact::Format::Gguf,
            variant: None,
            metadata: Default::default(),
            digest: None,
            digest_skipped: Some(artifact::DigestSkipped {
                reason: artifact::DigestSkipReason::Sparse,
                detail: "4.0 KiB allocated of 64.0 GiB".into(),
            }),
            pickle: None,
            policy: artifact::PolicyVerdict::Unknown,
            manifest_entry: None,
            license_finding: None,
            signature: None,
            findings: Vec::new(),
            from_verdict_cache: false,
        };
        let s = summary(&r, &id);
        assert_eq!((s.digest_state, s.digest_skipped_reason.as_str()), (DigestState::Skipped as i32, "sparse"));
        assert_eq!((s.sha256.as_str(), s.artifact_id.as_str()), ("", "file:1:2:3:4"));
        // A store's claim stays visible, but the state says it will never be verified.
        let claim = "a".repeat(64);
        r.digest = Some(artifact::Digest {
            sha256_hex: claim.clone(),
            state: artifact::DigestState::Claimed,
            claimed_sha256_hex: Some(claim.clone()),
        });
        let s = summary(&r, &id);
        assert_eq!((s.digest_state, s.sha256.as_str()), (DigestState::Skipped as i32, claim.as_str()));
        assert_eq!(identified(&r, &id).claimed_sha256, claim);
    }

    /// A model that names no licence is `missing` whether or not a finding was required.
    #[test]
    fn licence_state_says_missing_without_a_finding_too() {
        let id = FileIdentity { dev: 1, ino: 2, size: 3, mtime_ns: 4, ctime_sec: 5, ctime_nsec: 6 };
        let mut r = ArtifactReport {
            path: "/m/x.gguf".into(),
            size: 3,
            format: artifact::Format::Gguf,
            variant: None,
            metadata: Default::default(),
            digest: None,
            digest_skipped: None,
            pickle: None,
            policy: artifact::PolicyVerdict::NoManifest,
            manifest_entry: None,
            license_finding: None,
            signature: None,
            findings: Vec::new(),
            from_verdict_cache: false,
        };
        assert_eq!(identified(&r, &id).license_state, LicenseState::Missing as i32);
        r.metadata.license = Some("MIT".into());
        assert_eq!(identified(&r, &id).license_state, LicenseState::Allowed as i32);
        r.format = artifact::Format::NotAModel;
        assert_eq!(identified(&r, &id).license_state, LicenseState::Unspecified as i32);
    }
}
