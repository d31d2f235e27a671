//! The one table of model formats ([`FORMATS`]): per format, the file-name extensions that
//! name it, how its content is recognised, the parser that reads it and the variants it is
//! reported with. Everything that needs to know the formats reads it: [`super::identify`]
//! tries the signatures and protobuf shapes in table order, `modelwatch scan` reports walked
//! files with a listed extension ([`has_model_extension`]), and the collector's kernel filter
//! defaults to the same list (`files.extensions`, from [`model_extensions`]).
//!
//! Content decides the format, never the name; the extensions only decide what is looked at.
//! So the table also lists model containers this crate does not parse (rows of kind
//! [`Kind::Named`]: llamafile executables, TensorRT engines, legacy GGML, TorchServe and NeMo
//! archives), and extensions that several formats share go to the format that writes them most
//! (`.bin` and `.ckpt` to PyTorch; `.pb` to SavedModel, though a frozen GraphDef reads as
//! unknown). A listed extension on content of another format is still reported by content.
//!
//! A new format is one row here, one parser file beside this one, and a [`Format`] variant
//! (which the collector maps onto its protobuf enum in `sensor-user/src/enrich/artifact.rs`).
//! Extensions are lowercase ASCII without the dot, at most 15 bytes (the kernel's key), and
//! each names one row.

use std::path::Path;

use crate::{
    formats::{
        Ctx, Parsed, coreml, gguf, keras_h5, numpy, onnx, pickle, protobuf::TopFields, pytorch, safetensors,
        savedmodel, tflite, zipfile,
    },
    io::{PResult, Reader},
    pickle_scan,
    report::Format,
};

/// Bytes at the start of the file that the signatures ([`Sniff::Magic`], [`Sniff::Head`]) see.
pub const HEAD: usize = 4096;

/// A parser that reads the content from offset 0 and says what it is.
pub type ParseFn = fn(&mut Reader<'_>, &mut Ctx<'_>) -> PResult<Parsed>;
/// A parser that fills in what it reads as it goes, so that a truncated file keeps what was
/// read before the cut.
pub type FillFn = fn(&mut Reader<'_>, &mut Ctx<'_>, &mut Parsed) -> PResult<()>;

/// What a row stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A format the crate reports (its parser may refine it: an HDF5 file can be a Keras model).
    Format(Format),
    /// A container whose members decide the format; `unknown` when they name none.
    Container(&'static str),
    /// A model container with no [`Format`] of its own: its extension makes a file worth
    /// looking at, and its content is reported as whatever it reads as.
    Named(&'static str),
}

/// How a signature is checked.
#[derive(Clone, Copy)]
pub enum Sniff {
    /// These bytes at this offset.
    Magic(usize, &'static [u8]),
    /// A test of the first [`HEAD`] bytes.
    Head(fn(&[u8]) -> bool),
    /// A test that reads the file (a signature that may sit past the head).
    Probe(fn(&mut Reader<'_>) -> bool),
}

/// How content is recognised and read.
#[derive(Clone, Copy)]
pub enum Detect {
    /// A signature, then the parser.
    Signature { sniff: Sniff, parse: ParseFn },
    /// No magic: the shape of the top-level protobuf fields, then the parser. Only content that
    /// opens with field 1 as a varint is tried.
    Protobuf { shape: fn(&TopFields) -> bool, parse: FillFn },
    /// Recognised by the parsers of the rows named (a zip's members, a pickle's globals).
    Within(&'static [&'static str]),
    /// Not recognised by content: only the extension names it.
    Extension,
}

/// One row of [`FORMATS`].
pub struct FormatSpec {
    pub kind: Kind,
    /// Lowercase, without the dot.
    pub extensions: &'static [&'static str],
    pub detect: Detect,
    /// Whether a pickle may hide in front of the signature: `pickle.load`, `joblib.load` and
    /// torch's legacy path unpickle a file from its first byte whatever it is, and a tar's name
    /// field or an HDF5 user block can hold one. Other formats open with a magic or length
    /// field that is no pickle, yet a walk of it can read far (an opcode that takes a line
    /// reads to the next newline: a benign safetensors whose length starts with `I` would be
    /// read whole), so they are not walked from their first byte.
    pub leading_pickle: bool,
    /// The variants the format is reported with (besides none); for a container, that of
    /// content whose members name no format. `None` when the content names them (safetensors'
    /// `format` metadata).
    pub variants: Option<&'static [&'static str]>,
}

impl FormatSpec {
    /// The row's name: the format's, or the container's.
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Format(f) => f.as_str(),
            Kind::Container(n) | Kind::Named(n) => n,
        }
    }

    /// The format reported when the signature matched but the parser failed.
    pub fn format(&self) -> Format {
        match self.kind {
            Kind::Format(f) => f,
            Kind::Container(_) | Kind::Named(_) => Format::Unknown,
        }
    }
}

impl Sniff {
    pub fn matches(self, head: &[u8], r: &mut Reader<'_>) -> bool {
        match self {
            Sniff::Magic(at, magic) => head.get(at..).is_some_and(|h| h.starts_with(magic)),
            Sniff::Head(test) => test(head),
            Sniff::Probe(test) => test(r),
        }
    }
}

const fn format(
    format: Format,
    extensions: &'static [&'static str],
    detect: Detect,
    variants: &'static [&'static str],
) -> FormatSpec {
    FormatSpec { kind: Kind::Format(format), extensions, detect, leading_pickle: false, variants: Some(variants) }
}

const fn signature(sniff: Sniff, parse: ParseFn) -> Detect {
    Detect::Signature { sniff, parse }
}

const fn named(name: &'static str, extensions: &'static [&'static str], detect: Detect) -> FormatSpec {
    FormatSpec { kind: Kind::Named(name), extensions, detect, leading_pickle: false, variants: Some(&[]) }
}

/// Every format, in the order [`super::identify`] tries them: signatures first (the first
/// match wins; the HDF5 probe reads the file, so it follows the tests of the head), then the
/// protobuf shapes. Rows recognised within others, or not at all, come last. Content that
/// matches none is walked as a protocol-0/1 pickle (which has no signature) before it is
/// called text or unknown.
pub static FORMATS: &[FormatSpec] = &[
    format(Format::Gguf, &["gguf"], signature(Sniff::Magic(0, b"GGUF"), gguf::parse), &["little_endian", "big_endian"]),
    // `.npz` is a zip of `.npy` members: the zip row reports it. A zip cut before its directory
    // is named by its first entry, with the variant `zip` (here and for Keras).
    format(
        Format::Numpy,
        &["npy", "npz"],
        signature(Sniff::Magic(0, b"\x93NUMPY"), numpy::parse_npy),
        &["npy", "npz", "zip"],
    ),
    format(Format::Tflite, &["tflite"], signature(Sniff::Magic(4, b"TFL3"), tflite::parse), &[]),
    // torch.save's zip, TorchScript, Keras v3 and npz archives; a TorchServe `.mar` too.
    FormatSpec {
        kind: Kind::Container("zip"),
        extensions: &[],
        detect: signature(Sniff::Head(zipfile::sniff), zipfile::parse),
        leading_pickle: false,
        variants: Some(&["zip"]),
    },
    // The legacy torch.save tar.
    FormatSpec {
        kind: Kind::Container("tar"),
        extensions: &[],
        detect: signature(Sniff::Head(pytorch::is_tar), pytorch::parse_tar),
        leading_pickle: true,
        variants: Some(&["tar"]),
    },
    FormatSpec {
        kind: Kind::Format(Format::Safetensors),
        extensions: &["safetensors"],
        detect: signature(Sniff::Head(safetensors::sniff), safetensors::parse),
        leading_pickle: false,
        variants: None,
    },
    // Before the pickle row: a user block may start with a pickle, and Keras still loads the
    // HDF5 model behind it. The parser says whether it is a Keras model or weights.
    FormatSpec {
        kind: Kind::Format(Format::Hdf5),
        extensions: &["h5", "hdf5"],
        detect: signature(Sniff::Probe(keras_h5::sniff), keras_h5::parse),
        leading_pickle: true,
        variants: Some(&[]),
    },
    // `PROTO 2..=5`; a legacy torch.save stream is reported as PyTorch.
    format(
        Format::Pickle,
        &["pkl", "pickle", "joblib"],
        signature(Sniff::Head(pickle_scan::starts_with_proto), pickle::parse),
        &["joblib", "protocol_0"],
    ),
    format(Format::Onnx, &["onnx"], Detect::Protobuf { shape: onnx::shape, parse: onnx::parse }, &[]),
    format(Format::Coreml, &["mlmodel"], Detect::Protobuf { shape: coreml::shape, parse: coreml::parse }, &[]),
    format(Format::TfSavedmodel, &["pb"], Detect::Protobuf { shape: savedmodel::shape, parse: savedmodel::parse }, &[]),
    format(
        Format::Pytorch,
        &["pt", "pth", "bin", "ckpt"],
        Detect::Within(&["zip", "tar", "pickle"]),
        &["zip", "torchscript", "legacy_tar", "legacy"],
    ),
    format(Format::Keras, &["keras"], Detect::Within(&["zip"]), &["zip"]),
    format(Format::KerasH5, &[], Detect::Within(&["hdf5"]), &["model", "weights"]),
    // GGUF's predecessors (`ggml`, `ggmf`, `ggjt` magics).
    named("ggml", &["ggml"], Detect::Extension),
    // An actually portable executable with the weights in an embedded zip.
    named("llamafile", &["llamafile"], Detect::Extension),
    // TorchServe model archive: a zip of the serialised model and its handler code.
    named("torchserve", &["mar"], Detect::Within(&["zip"])),
    // NVIDIA NeMo: a tar of the configuration and a torch checkpoint.
    named("nemo", &["nemo"], Detect::Within(&["tar"])),
    // Serialised TensorRT engines.
    named("tensorrt", &["engine", "plan"], Detect::Extension),
];

/// The file-name extensions of model formats (lowercase, without the dot), each once, in
/// table order.
pub fn model_extensions() -> impl Iterator<Item = &'static str> {
    FORMATS.iter().flat_map(|s| s.extensions.iter().copied())
}

/// Whether the file name of `path` ends in a model extension (case-insensitive).
pub fn has_model_extension(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| model_extensions().any(|m| m.eq_ignore_ascii_case(e)))
}

/// Whether content reported as `format` can carry a pickle that a loader unpickles: pickles,
/// torch and joblib files, zips and tars of any kind (reported as their members' format, or
/// unknown), NumPy object arrays, HDF5 user blocks, and content not identified at all (it may
/// be any of these, cut short). Only the formats that are pure headers and tensors cannot.
pub fn may_carry_pickles(format: Format) -> bool {
    !matches!(
        format,
        Format::Gguf | Format::Safetensors | Format::Onnx | Format::Tflite | Format::TfSavedmodel | Format::Coreml
    )
}

/// Whether the file name of `path` names a format that can carry code (see
/// [`may_carry_pickles`]; containers named by extension, such as TorchServe and NeMo archives,
/// count). The name only decides what is looked at first, never what the content is.
pub fn named_like_code_carrier(path: &Path) -> bool {
    let Some(ext) = path.extension().and_then(|e| e.to_str()) else { return false };
    FORMATS.iter().filter(|s| s.extensions.iter().any(|m| m.eq_ignore_ascii_case(ext))).any(|s| match s.kind {
        Kind::Format(f) => may_carry_pickles(f),
        Kind::Container(_) => true,
        Kind::Named(_) => matches!(s.detect, Detect::Within(_)),
    })
}

/// The row of `format`, if it has one (not `unknown` nor `not_a_model`).
pub fn spec_of(format: Format) -> Option<&'static FormatSpec> {
    FORMATS.iter().find(|s| s.kind == Kind::Format(format))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_format_has_one_row_and_every_extension_one_format() {
        for f in Format::ALL {
            let rows = FORMATS.iter().filter(|s| s.kind == Kind::Format(f)).count();
            let expected = usize::from(!matches!(f, Format::Unknown | Format::NotAModel));
            assert_eq!(rows, expected, "{f}");
        }
        let mut seen = HashSet::new();
        for e in model_extensions() {
            assert!(seen.insert(e), "{e} is listed twice");
            // The kernel's key: ASCII, at most 15 bytes, no dot; lowercase so that matching
            // ignores case everywhere.
            let ok = (1..16).contains(&e.len()) && e.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            assert!(ok, "{e}");
        }
        let names: HashSet<&str> = FORMATS.iter().map(FormatSpec::name).collect();
        assert_eq!(names.len(), FORMATS.len(), "row names are unique");
    }

    #[test]
    fn rows_found_within_others_name_rows_that_read_content() {
        for s in FORMATS {
            if let Detect::Within(hosts) = s.detect {
                for h in hosts {
                    let host = FORMATS.iter().find(|r| r.name() == *h);
                    assert!(
                        host.is_some_and(|r| matches!(r.detect, Detect::Signature { .. } | Detect::Protobuf { .. })),
                        "{}: {h}",
                        s.name()
                    );
                }
            }
            if let Detect::Signature { sniff: Sniff::Magic(at, magic), .. } = s.detect {
                assert!(at + magic.len() <= HEAD, "{}", s.name());
            }
        }
    }

    #[test]
    fn extensions_match_ignoring_case() {
        assert!(has_model_extension(Path::new("/m/Llama.GGUF")));
        assert!(has_model_extension(Path::new("model.engine")));
        assert!(has_model_extension(Path::new("x.npy")));
        assert!(!has_model_extension(Path::new("notes.txt")));
        assert!(!has_model_extension(Path::new("gguf")));
        assert!(!has_model_extension(Path::new("weights.tar")));
    }

    #[test]
    fn code_carriers_by_name() {
        for code in
            ["a.pkl", "a.PT", "a.pth", "a.bin", "a.ckpt", "a.joblib", "a.keras", "a.npz", "a.h5", "a.mar", "a.nemo"]
        {
            assert!(named_like_code_carrier(Path::new(code)), "{code}");
        }
        for plain in ["a.gguf", "a.safetensors", "a.onnx", "a.tflite", "a.mlmodel", "a.engine", "a.txt", "noext"] {
            assert!(!named_like_code_carrier(Path::new(plain)), "{plain}");
        }
    }
}
