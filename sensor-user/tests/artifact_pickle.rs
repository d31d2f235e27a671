//! The pickle corpus: benign checkpoints and the bypass shapes that denylist scanners have
//! missed, each with the exact verdict and offending globals expected.
//!
//! With `MW_DUMP_CORPUS=<dir>` the corpus is also written to `<dir>` (one file per sample plus
//! `index.json` with the expected and actual verdicts); `docs/artifact-comparison.py` uses it
//! to compare modelwatch with picklescan, modelscan and fickling.

#[path = "artifact_gen.rs"]
mod generated;

use generated::*;
use modelwatch::artifact::{AnalyzeOptions, Format, Safety, analyze_bytes};

pub struct Case {
    pub name: &'static str,
    pub file: &'static str,
    pub what: &'static str,
    pub bytes: Vec<u8>,
    pub expected: Safety,
    pub offending: &'static [&'static str],
}

fn case(name: &'static str, file: &'static str, what: &'static str, bytes: Vec<u8>, expected: Safety, offending: &'static [&'static str]) -> Case {
    Case { name, file, what, bytes, expected, offending }
}

fn proto4(body: &[u8]) -> Vec<u8> {
    cat(&[b"\x80\x04", body])
}

pub fn corpus() -> Vec<Case> {
    use Safety::*;
    let torch_ok = torch_state_dict_pickle();
    vec![
        case("torch_state_dict", "state_dict.pt", "torch.save zip of a state dict", torch_zip(&torch_ok), Safe, &[]),
        case("torch_legacy_stream", "legacy.pt", "legacy (non-zip) torch.save stream", torch_legacy_stream(&torch_ok), Safe, &[]),
        case("plain_list", "list.pkl", "protocol 2 list of ints", b"\x80\x02]q\x00(K\x01K\x02e.".to_vec(), Safe, &[]),
        case(
            "numpy_protocol2_bytes",
            "array.pkl",
            "numpy array pickled with protocol 2 (uses _codecs.encode for bytes)",
            cat(&[
                b"\x80\x02",
                &global("numpy.core.multiarray", "_reconstruct"),
                b"q\x00",
                &global("numpy", "ndarray"),
                b"q\x01K\x00\x85q\x02",
                &global("_codecs", "encode"),
                b"q\x03",
                &binunicode("b"),
                b"q\x04",
                &binunicode("latin1"),
                b"q\x05\x86q\x06Rq\x07\x87q\x08Rq\x09.",
            ]),
            Safe,
            &[],
        ),
        case("reduce_os_system", "reduce.pkl", "GLOBAL os.system + REDUCE", os_system_pickle(), Malicious, &["os.system"]),
        case("torch_zip_os_system", "evil.pt", "os.system in a torch.save zip", torch_zip(&os_system_pickle()), Malicious, &["os.system"]),
        case(
            "protocol0_inst",
            "inst.pkl",
            "protocol 0 INST (no GLOBAL opcode at all)",
            b"(S'id'\nios\nsystem\n.".to_vec(),
            Malicious,
            &["os.system"],
        ),
        case(
            "memoized_stack_global",
            "memo.pkl",
            "STACK_GLOBAL whose strings were memoised and fetched back with BINGET",
            proto4(&cat(&[&ustr("posix"), b"\x94", &ustr("system"), b"\x94", b"00h\x00h\x01\x93", &ustr("id"), b"\x85R."])),
            Malicious,
            &["posix.system"],
        ),
        case(
            "builtin_py2_eval",
            "py2.pkl",
            "Python 2 spelling __builtin__.eval",
            cat(&[&global("__builtin__", "eval"), b"(S'print(1)'\ntR."]),
            Malicious,
            &["__builtin__.eval"],
        ),
        case(
            "builtins_exec_stack_global",
            "exec.pkl",
            "builtins.exec via STACK_GLOBAL",
            proto4(&cat(&[&ustr("builtins"), &ustr("exec"), b"\x93", &ustr("import os"), b"\x85R."])),
            Malicious,
            &["builtins.exec"],
        ),
        case(
            "nested_zip",
            "nested.pt",
            "malicious torch zip stored inside another zip",
            stored_zip(&[("archive/data.pkl", &torch_ok), ("archive/extra/inner.zip", &torch_zip(&os_system_pickle()))]),
            Malicious,
            &["os.system"],
        ),
        case(
            "duplicate_zip_entry",
            "dup.pt",
            "two archive/data.pkl entries: a scanner may read the benign one",
            stored_zip(&[("archive/data.pkl", &torch_ok), ("archive/data.pkl", &os_system_pickle())]),
            Malicious,
            &["os.system"],
        ),
        case(
            "bad_crc_zip",
            "crc.pt",
            "payload entry with a wrong CRC-32",
            stored_zip_with(&[("archive/data.pkl", &os_system_pickle())], &["archive/data.pkl"]),
            Malicious,
            &["os.system"],
        ),
        case(
            "renamed_pickle_entry",
            "renamed.pt",
            "payload in a zip entry not named .pkl",
            stored_zip(&[("archive/data.pkl", &torch_ok), ("archive/payload.bin", &os_system_pickle())]),
            Malicious,
            &["os.system"],
        ),
        case(
            "codecs_marshal",
            "codecs.pkl",
            "_codecs.encode building bytes for marshal.loads + types.FunctionType",
            cat(&[
                b"\x80\x02",
                &global("types", "FunctionType"),
                &global("marshal", "loads"),
                &global("_codecs", "encode"),
                &binunicode("\u{e3}\u{1}"),
                &binunicode("latin1"),
                b"\x86R\x85R",
                &global("builtins", "globals"),
                b")R\x86R.",
            ]),
            Malicious,
            &["builtins.globals", "marshal.loads", "types.FunctionType"],
        ),
        case(
            "operator_attrgetter",
            "attrgetter.pkl",
            "operator.attrgetter walking from an allowed object to its subclasses",
            cat(&[&global("operator", "attrgetter"), b"(S'__class__.__base__.__subclasses__'\ntR(", &global("builtins", "set"), b")RtR."]),
            Malicious,
            &["operator.attrgetter"],
        ),
        case(
            "getattr_chain",
            "getattr.pkl",
            "builtins.getattr on an allowed class",
            cat(&[&global("builtins", "getattr"), b"(", &global("collections", "OrderedDict"), b"S'__init__'\ntR."]),
            Malicious,
            &["builtins.getattr"],
        ),
        case(
            "dotted_name_globals",
            "dotted.pkl",
            "allowed module, dotted name reaching __globals__",
            proto4(&cat(&[&ustr("torch._utils"), &ustr("_rebuild_tensor_v2.__globals__"), b"\x93."])),
            Malicious,
            &["torch._utils._rebuild_tensor_v2.__globals__"],
        ),
        case("ext1_code", "ext.pkl", "EXT1 extension code (target hidden in copyreg)", b"\x80\x02\x82\x01)R.".to_vec(), Malicious, &["<extension code 1>"]),
        case("ext4_code", "ext4.pkl", "EXT4 extension code", b"\x80\x02\x84\xff\xff\x00\x00)R.".to_vec(), Malicious, &["<extension code 65535>"]),
        case("obj_opcode", "obj.pkl", "OBJ instantiation of subprocess.Popen", cat(&[b"(", &global("subprocess", "Popen"), b"(S'id'\nlo."]), Malicious, &["subprocess.Popen"]),
        case(
            "build_setstate",
            "build.pkl",
            "unknown class restored with BUILD (runs its __setstate__)",
            cat(&[&global("mylib.models", "Backdoor"), b")R}S'x'\nI1\nsb."]),
            Suspicious,
            &["mylib.models.Backdoor"],
        ),
        case(
            "dynamic_stack_global",
            "dynamic.pkl",
            "STACK_GLOBAL whose module string is computed at load time",
            proto4(&cat(&[&global("builtins", "str"), b")R", &ustr("system"), b"\x93."])),
            Malicious,
            &["<dynamic STACK_GLOBAL>"],
        ),
        case("runpy", "runpy.pkl", "runpy._run_code", cat(&[&global("runpy", "_run_code"), b"(S'x'\n}tR."]), Malicious, &["runpy._run_code"]),
        case("webbrowser", "web.pkl", "webbrowser.open", cat(&[&global("webbrowser", "open"), b"(S'http://x'\ntR."]), Malicious, &["webbrowser.open"]),
        case("pty_spawn", "pty.pkl", "pty.spawn", cat(&[&global("pty", "spawn"), b"(S'/bin/sh'\ntR."]), Malicious, &["pty.spawn"]),
        case("socket", "sock.pkl", "socket.create_connection", cat(&[&global("socket", "create_connection"), b"((S'h'\nK\x01ttR."]), Malicious, &["socket.create_connection"]),
        case("importlib", "imp.pkl", "importlib.import_module", cat(&[&global("importlib", "import_module"), b"(S'os'\ntR."]), Malicious, &["importlib.import_module"]),
        case("torch_load_nested", "tl.pkl", "torch.load of an embedded blob", cat(&[&global("torch", "load"), b"(S'x'\ntR."]), Malicious, &["torch.load"]),
        case("pip_main", "pip.pkl", "pip.main install", cat(&[&global("pip", "main"), b"((S'install'\nltR."]), Malicious, &["pip.main"]),
        case(
            "unknown_class",
            "sklearn.pkl",
            "a scikit-learn estimator (unknown globals: not provably safe)",
            cat(&[b"\x80\x02", &global("sklearn.linear_model._base", "LinearRegression"), b")\x81}b."]),
            Suspicious,
            &["sklearn.linear_model._base.LinearRegression"],
        ),
        case(
            "truncated_reduce",
            "cut.pkl",
            "os.system with REDUCE but no STOP (the call already ran when loading fails)",
            b"cos\nsystem\n(S'id'\ntR".to_vec(),
            Malicious,
            &["os.system"],
        ),
        case("numpy_object_array", "obj.npy", "object-dtype .npy whose data is a pickle", npy("|O", "(1,)", &os_system_pickle()), Malicious, &["os.system"]),
        case("legacy_tar", "tar.pt", "pre-0.4 torch tar with os.system", torch_legacy_tar(&os_system_pickle()), Malicious, &["os.system"]),
    ]
}

#[test]
fn corpus_verdicts_are_exact() {
    let opts = AnalyzeOptions::default();
    let mut failures = Vec::new();
    for c in corpus() {
        let r = analyze_bytes(&c.bytes, &opts);
        let Some(p) = r.pickle.as_ref() else {
            failures.push(format!("{}: no pickle verdict (format {})", c.name, r.format));
            continue;
        };
        let off: Vec<&str> = p.offending.iter().map(String::as_str).collect();
        if p.verdict != c.expected || off != c.offending {
            failures.push(format!("{}: got {:?} {:?}, expected {:?} {:?}", c.name, p.verdict, off, c.expected, c.offending));
        }
        // A non-safe verdict always comes with its finding.
        let code = match p.verdict {
            Safety::Malicious => Some("pickle_malicious"),
            Safety::Suspicious if !p.offending.is_empty() => Some("pickle_suspicious"),
            _ => None,
        };
        if let Some(code) = code
            && !r.findings.iter().any(|f| f.code == code)
        {
            failures.push(format!("{}: verdict without a {code} finding", c.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn globals_are_listed_in_full() {
    let r = analyze_bytes(&corpus().into_iter().find(|c| c.name == "codecs_marshal").expect("case").bytes, &AnalyzeOptions::default());
    let p = r.pickle.expect("pickle");
    assert_eq!(p.globals, ["_codecs.encode", "builtins.globals", "marshal.loads", "types.FunctionType"]);
    assert!(p.complete);
    let r = analyze_bytes(&corpus().into_iter().find(|c| c.name == "nested_zip").expect("case").bytes, &AnalyzeOptions::default());
    let p = r.pickle.expect("pickle");
    assert_eq!(p.streams, ["archive/data.pkl", "archive/extra/inner.zip!archive/data.pkl"]);
    let r = analyze_bytes(&corpus().into_iter().find(|c| c.name == "duplicate_zip_entry").expect("case").bytes, &AnalyzeOptions::default());
    assert!(r.findings.iter().any(|f| f.code == "zip_duplicate_names"));
}

#[test]
fn configured_allow_and_deny_lists_apply() {
    let sk = corpus().into_iter().find(|c| c.name == "unknown_class").expect("case").bytes;
    let mut cfg = modelwatch::artifact::ArtifactConfig { pickle_allow: vec!["sklearn.*".into()], ..Default::default() };
    let opts = AnalyzeOptions::from_config(&cfg).expect("opts");
    assert_eq!(analyze_bytes(&sk, &opts).pickle.map(|p| p.verdict), Some(Safety::Safe));
    cfg.pickle_allow.clear();
    cfg.pickle_deny = vec!["sklearn.linear_model._base.LinearRegression".into()];
    let opts = AnalyzeOptions::from_config(&cfg).expect("opts");
    assert_eq!(analyze_bytes(&sk, &opts).pickle.map(|p| p.verdict), Some(Safety::Malicious));
}

#[test]
fn nesting_and_zip_bomb_bounds() {
    // Zips nested deeper than max_nesting are not opened, and say so.
    let mut z = torch_zip(&os_system_pickle());
    for i in 0..5 {
        let name = format!("archive/n{i}.zip");
        z = stored_zip(&[("archive/data.pkl", &torch_state_dict_pickle()), (&name, &z)]);
    }
    let r = analyze_bytes(&z, &AnalyzeOptions::default());
    assert_eq!(r.format, Format::Pytorch);
    assert!(r.findings.iter().any(|f| f.code == "limit_exceeded" && f.message.contains("nested deeper")), "{:?}", r.findings);
    // What went unread may hold a payload: not `safe`.
    assert_eq!(r.pickle.map(|p| (p.verdict, p.complete)), Some((Safety::Suspicious, false)));

    // 64 MB of zeros inside a pickle argument, deflated to a few KB.
    let mut bomb = b"\x80\x04\x8e".to_vec();
    bomb.extend_from_slice(&(64u64 << 20).to_le_bytes());
    bomb.resize(bomb.len() + (64 << 20), 0);
    bomb.push(b'.');
    let z = deflated_zip(&[("archive/data.pkl", &bomb)]);
    assert!(z.len() < 1 << 20);
    let r = analyze_bytes(&z, &AnalyzeOptions::default());
    let p = r.pickle.expect("pickle");
    assert_eq!((p.verdict, p.complete), (Safety::Suspicious, false));
    assert!(r.findings.iter().any(|f| f.code == "pickle_incomplete" && f.message.contains("inflates beyond")), "{:?}", r.findings);
}

/// Writes the corpus for the peer comparison when `MW_DUMP_CORPUS` is set.
#[test]
#[ignore = "a tool, not a test: writes the corpus to $MW_DUMP_CORPUS (docs/artifact-comparison.py)"]
fn dump_corpus_for_comparison() {
    let dir = std::path::PathBuf::from(std::env::var_os("MW_DUMP_CORPUS").expect("MW_DUMP_CORPUS names the output directory"));
    std::fs::create_dir_all(&dir).expect("create corpus dir");
    let opts = AnalyzeOptions::default();
    let mut index = Vec::new();
    for c in corpus() {
        let file = format!("{}__{}", c.name, c.file);
        std::fs::write(dir.join(&file), &c.bytes).expect("write sample");
        let r = analyze_bytes(&c.bytes, &opts);
        let verdict = r.pickle.as_ref().map(|p| p.verdict.as_str()).unwrap_or("none");
        index.push(serde_json::json!({
            "name": c.name,
            "file": file,
            "what": c.what,
            "expected": c.expected.as_str(),
            "modelwatch": verdict,
            "offending": r.pickle.as_ref().map(|p| p.offending.clone()).unwrap_or_default(),
        }));
    }
    std::fs::write(dir.join("index.json"), serde_json::to_vec_pretty(&index).expect("json")).expect("write index");
    assert!(dir.join("index.json").exists());
}

/// Writes the corpus as seeds of the `pickle` fuzz target when `MW_DUMP_FUZZ_SEEDS` is set.
#[test]
#[ignore = "a tool, not a test: writes fuzz seeds to $MW_DUMP_FUZZ_SEEDS (sensor-user/fuzz/gen-seeds.sh)"]
fn dump_fuzz_seeds() {
    let root = std::env::var_os("MW_DUMP_FUZZ_SEEDS").expect("MW_DUMP_FUZZ_SEEDS names the corpus directory");
    let dir = std::path::PathBuf::from(root).join("pickle");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for c in corpus() {
        // The walker target takes raw streams; containers go to the other targets.
        if c.bytes.starts_with(b"PK") || c.bytes.get(257..262) == Some(b"ustar") || c.bytes.starts_with(b"\x93NUMPY") {
            continue;
        }
        std::fs::write(dir.join(format!("seed-{}", c.name)), &c.bytes).expect("write seed");
    }
    assert!(std::fs::read_dir(&dir).expect("ls").count() > 10);
}
