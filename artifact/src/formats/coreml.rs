//! Core ML `.mlmodel` header reader (a protobuf `Model`; see `protobuf` for why it is
//! hand-written): specification version, model type, description metadata (author, licence,
//! version, user-defined keys) and the layer count of neural networks. `customModel` and
//! custom layers are reported because they run application-supplied code.

use crate::{
    formats::{
        Ctx, Parsed,
        protobuf::{Pb, TopFields, Wire},
    },
    io::{PResult, Reader},
    report::{ModelMetadata, Severity, codes},
};

fn model_type(n: u32) -> Option<&'static str> {
    Some(match n {
        200 => "pipelineClassifier",
        201 => "pipelineRegressor",
        202 => "pipeline",
        300 => "glmRegressor",
        301 => "supportVectorRegressor",
        302 => "treeEnsembleRegressor",
        303 => "neuralNetworkRegressor",
        304 => "bayesianProbitRegressor",
        400 => "glmClassifier",
        401 => "supportVectorClassifier",
        402 => "treeEnsembleClassifier",
        403 => "neuralNetworkClassifier",
        404 => "kNearestNeighborsClassifier",
        500 => "neuralNetwork",
        501 => "itemSimilarityRecommender",
        502 => "mlProgram",
        555 => "customModel",
        556 => "linkedModel",
        560 => "classConfidenceThresholding",
        600 => "oneHotEncoder",
        601 => "imputer",
        602 => "featureVectorizer",
        603 => "dictVectorizer",
        604 => "scaler",
        606 => "categoricalMapping",
        607 => "normalizer",
        609 => "arrayFeatureExtractor",
        610 => "nonMaximumSuppression",
        900 => "identity",
        2000 => "textClassifier",
        2001 => "wordTagger",
        2002 => "visionFeaturePrint",
        2003 => "soundAnalysisPreprocessing",
        2004 => "gazetteer",
        2005 => "wordEmbedding",
        2006 => "audioFeaturePrint",
        3000 => "serializedModel",
        _ => return None,
    })
}

/// Whether top-level fields are those of a Core ML `Model`: specificationVersion 1,
/// description 2, isUpdatable 10, and one model type at 200 and above.
pub fn shape(top: &TopFields) -> bool {
    top.all(|n, k| match n {
        1 | 10 => k == 0,
        2 => k == 2,
        n if n >= 200 => k == 2,
        _ => false,
    }) && top.has(1)
        && top.fields.iter().any(|&(n, _)| n >= 200)
}

pub fn parse(r: &mut Reader<'_>, ctx: &mut Ctx<'_>, p: &mut Parsed) -> PResult<()> {
    let end = r.len();
    let mut pb = Pb::new(r);
    let mut custom_layers: Vec<String> = Vec::new();
    while let Some(f) = pb.next(end)? {
        let m = &mut p.metadata;
        match (f.number, f.wire) {
            (1, Wire::Varint(v)) => m.format_version = Some(v),
            (2, Wire::Len(n)) => {
                let dend = pb.end_of(n);
                description(&mut pb, dend, m)?;
            }
            (n, Wire::Len(len)) if n >= 200 => {
                let name = model_type(n).map_or_else(|| format!("model_type_{n}"), str::to_owned);
                if n == 555 {
                    custom_layers.push("customModel".into());
                }
                let lend = pb.end_of(len);
                if matches!(n, 303 | 403 | 500) {
                    neural_network(&mut pb, lend, m, &mut custom_layers)?;
                } else {
                    pb.r.seek_to(lend)?;
                }
                m.architecture = Some(name);
            }
            _ => pb.skip(f)?,
        }
    }
    if !custom_layers.is_empty() {
        p.metadata.custom_ops = custom_layers.clone();
        ctx.finding(
            Severity::Medium,
            codes::CUSTOM_OPS,
            format!("Core ML model needs application-supplied code: {}", custom_layers.join(", ")),
        );
    }
    Ok(())
}

fn description(pb: &mut Pb<'_, '_>, end: u64, m: &mut ModelMetadata) -> PResult<()> {
    while let Some(f) = pb.next(end)? {
        match (f.number, f.wire) {
            (100, Wire::Len(n)) => {
                let mend = pb.end_of(n);
                while let Some(f) = pb.next(mend)? {
                    match (f.number, f.wire) {
                        (1, Wire::Len(n)) => {
                            let v = pb.string(n, 256)?;
                            m.properties.insert("short_description".into(), v);
                        }
                        (2, Wire::Len(n)) => {
                            let v = pb.string(n, 64)?;
                            m.properties.insert("version".into(), v);
                        }
                        (3, Wire::Len(n)) => {
                            let v = pb.string(n, 128)?;
                            m.properties.insert("author".into(), v);
                        }
                        (4, Wire::Len(n)) => m.license = Some(pb.string(n, 128)?),
                        (100, Wire::Len(n)) => {
                            let (k, v) = pb.string_entry(n, 128, 512)?;
                            if m.properties.len() < 64 {
                                m.properties.insert(k, v);
                            }
                        }
                        _ => pb.skip(f)?,
                    }
                }
            }
            _ => pb.skip(f)?,
        }
    }
    Ok(())
}

/// Counts `layers` (field 1) and notes custom layers (`NeuralNetworkLayer.custom`, field 500).
fn neural_network(pb: &mut Pb<'_, '_>, end: u64, m: &mut ModelMetadata, custom: &mut Vec<String>) -> PResult<()> {
    let mut layers = 0u64;
    while let Some(f) = pb.next(end)? {
        match (f.number, f.wire) {
            (1, Wire::Len(n)) => {
                layers += 1;
                let lend = pb.end_of(n);
                let mut name = String::new();
                let mut is_custom = false;
                while let Some(f) = pb.next(lend)? {
                    match (f.number, f.wire) {
                        (1, Wire::Len(n)) => name = pb.string(n, 128)?,
                        (500, Wire::Len(_)) => {
                            is_custom = true;
                            pb.skip(f)?;
                        }
                        _ => pb.skip(f)?,
                    }
                }
                if is_custom && custom.len() < 256 {
                    custom.push(format!("custom layer {name}"));
                }
            }
            _ => pb.skip(f)?,
        }
    }
    m.node_count = Some(layers);
    Ok(())
}
