//! The pickle corpus: benign checkpoints and the bypass shapes that denylist scanners have
//! missed, each with the exact verdict and offending globals expected.
//!
//! With `MW_DUMP_CORPUS=<dir>` the corpus is also written to `<dir>` (one file per sample plus
//! `index.json` with the expected and actual verdicts); `docs/artifact-comparison.py` uses it
//! to compare modelwatch with picklescan, modelscan and fickling.

mod generated;

use generated::*;
use modelwatch_artifact::{AnalyzeOptions, Format, Safety, analyze_bytes};

pub struct Case {
    pub name: &'static str,
    pub file: &'static str,
    pub what: &'static str,
    pub bytes: Vec<u8>,
    pub expected: Safety,
    pub offending: &'static [&'static str],
}

fn case(
    name: &'static str,
    file: &'static str,
    what: &'static str,
    bytes: Vec<u8>,
    expected: Safety,
    offending: &'static [&'static str],
) -> Case {
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
        case(
            "torch_legacy_stream",
            "legacy.pt",
            "legacy (non-zip) torch.save stream",
            torch_legacy_stream(&torch_ok),
            Safe,
            &[],
        ),
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
        case(
            "reduce_os_system",
            "reduce.pkl",
            "GLOBAL os.system + REDUCE",
            os_system_pickle(),
            Malicious,
            &["os.system"],
        ),
        case(
            "torch_zip_os_system",
            "evil.pt",
            "os.system in a torch.save zip",
            torch_zip(&os_system_pickle()),
            Malicious,
            &["os.system"],
        ),
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
            proto4(&cat(&[
                &ustr("posix"),
                b"\x94",
                &ustr("system"),
                b"\x94",
                b"00h\x00h\x01\x93",
                &ustr("id"),
                b"\x85R.",
            ])),
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
            stored_zip(&[
                ("archive/data.pkl", &torch_ok),
                ("archive/extra/inner.zip", &torch_zip(&os_system_pickle())),
            ]),
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
            cat(&[
                &global("operator", "attrgetter"),
                b"(S'__class__.__base__.__subclasses__'\ntR(",
                &global("builtins", "set"),
                b")RtR.",
            ]),
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
        case(
            "ext1_code",
            "ext.pkl",
            "EXT1 extension code (target hidden in copyreg)",
            b"\x80\x02\x82\x01)R.".to_vec(),
            Malicious,
            &["<extension code 1>"],
        ),
        case(
            "ext4_code",
            "ext4.pkl",
            "EXT4 extension code",
            b"\x80\x02\x84\xff\xff\x00\x00)R.".to_vec(),
            Malicious,
            &["<extension code 65535>"],
        ),
        case(
            "obj_opcode",
            "obj.pkl",
            "OBJ instantiation of subprocess.Popen",
            cat(&[b"(", &global("subprocess", "Popen"), b"(S'id'\nlo."]),
            Malicious,
            &["subprocess.Popen"],
        ),
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
        case(
            "runpy",
            "runpy.pkl",
            "runpy._run_code",
            cat(&[&global("runpy", "_run_code"), b"(S'x'\n}tR."]),
            Malicious,
            &["runpy._run_code"],
        ),
        case(
            "webbrowser",
            "web.pkl",
            "webbrowser.open",
            cat(&[&global("webbrowser", "open"), b"(S'http://x'\ntR."]),
            Malicious,
            &["webbrowser.open"],
        ),
        case(
            "pty_spawn",
            "pty.pkl",
            "pty.spawn",
            cat(&[&global("pty", "spawn"), b"(S'/bin/sh'\ntR."]),
            Malicious,
            &["pty.spawn"],
        ),
        case(
            "socket",
            "sock.pkl",
            "socket.create_connection",
            cat(&[&global("socket", "create_connection"), b"((S'h'\nK\x01ttR."]),
            Malicious,
            &["socket.create_connection"],
        ),
        case(
            "importlib",
            "imp.pkl",
            "importlib.import_module",
            cat(&[&global("importlib", "import_module"), b"(S'os'\ntR."]),
            Malicious,
            &["importlib.import_module"],
        ),
        case(
            "torch_load_nested",
            "tl.pkl",
            "torch.load of an embedded blob",
            cat(&[&global("torch", "load"), b"(S'x'\ntR."]),
            Malicious,
            &["torch.load"],
        ),
        case(
            "pip_main",
            "pip.pkl",
            "pip.main install",
            cat(&[&global("pip", "main"), b"((S'install'\nltR."]),
            Malicious,
            &["pip.main"],
        ),
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
        case(
            "numpy_object_array",
            "obj.npy",
            "object-dtype .npy whose data is a pickle",
            npy("|O", "(1,)", &os_system_pickle()),
            Malicious,
            &["os.system"],
        ),
        case(
            "legacy_tar",
            "tar.pt",
            "pre-0.4 torch tar with os.system",
            torch_legacy_tar(&os_system_pickle()),
            Malicious,
            &["os.system"],
        ),
        case(
            "legacy_stream_protocol0",
            "legacy0.pt",
            "legacy torch stream whose second pickle is protocol 0 (no PROTO opcode)",
            torch_legacy_stream_with(OS_SYSTEM_P0, &torch_ok),
            Malicious,
            &["os.system"],
        ),
        case(
            "legacy_stream_hex_int",
            "legacyhex.pt",
            "legacy torch stream whose second pickle opens with INT `0x1` (CPython accepts it)",
            torch_legacy_stream_with(&cat(&[b"\x80\x02I0x1\n0", OS_SYSTEM_P0]), &torch_ok),
            Malicious,
            &["os.system"],
        ),
        case(
            "many_pickles",
            "many.pkl",
            "os.system in the 70th of 70 concatenated pickles",
            cat(&[&b"\x80\x02N.".repeat(69), &os_system_pickle()]),
            Malicious,
            &["os.system"],
        ),
        case(
            "joblib_fake_stop",
            "fake.joblib",
            "joblib array bytes shaped like a STOP, the payload after them",
            proto4(&cat(&[
                &ustr("joblib.numpy_pickle"),
                &ustr("NumpyArrayWrapper"),
                b"\x93)\x81}\x94b",
                b"N.",
                b"0",
                OS_SYSTEM_P0,
            ])),
            Suspicious,
            &[],
        ),
        case(
            "dotted_denied_submodule",
            "hub.pkl",
            "torch + `hub.load`: a denied submodule reached through an allowed module",
            proto4(&cat(&[&ustr("torch"), &ustr("hub.load"), b"\x93", &ustr("x"), b"\x85R."])),
            Malicious,
            &["torch.hub.load"],
        ),
        case(
            "py2_builtin_reduce",
            "reduce2.pkl",
            "Python 2 `__builtin__.reduce` (functools.reduce once renamed)",
            cat(&[&global("__builtin__", "reduce"), b"(S'x'\ntR."]),
            Malicious,
            &["__builtin__.reduce"],
        ),
        case(
            "legacy_tar_second_record",
            "tar2.pt",
            "torch tar whose `storages` holds the payload after its first raw block",
            torch_legacy_tar_with(
                &torch_tar_storages(&[&torch_tar_storage_record("0"), &os_system_pickle()]),
                &torch_ok,
            ),
            Malicious,
            &["os.system"],
        ),
        case(
            "legacy_tar_only_storages",
            "storages.tar",
            "tar with only a `storages` member",
            tar(&[("storages", &os_system_pickle())]),
            Malicious,
            &["os.system"],
        ),
        case(
            "legacy_tar_hard_link",
            "link.tar",
            "`storages` is a hard link to a member of another name",
            cat(&[
                &tar_block(tar_header_with("payload", os_system_pickle().len(), b'0', ""), &os_system_pickle()),
                &tar_block(tar_header_with("storages", 0, b'1', "payload"), &[]),
                &[0u8; 1024],
            ]),
            Malicious,
            &["os.system"],
        ),
        case(
            "legacy_tar_pax_size",
            "pax.tar",
            "a PAX `size` record makes the payload block the data of an empty-looking `storages`",
            cat(&[
                &tar_block(
                    tar_header_with("PaxHeaders/storages", 12, b'x', ""),
                    &format!("12 size={:02}\n", os_system_pickle().len()).into_bytes(),
                ),
                &tar_block(tar_header_with("storages", 0, b'0', ""), &os_system_pickle()),
                &[0u8; 1024],
            ]),
            Malicious,
            &["os.system"],
        ),
        case(
            "legacy_tar_signed_checksum",
            "signed.tar",
            "tar header whose checksum only matches when bytes are summed signed (tarfile accepts it)",
            {
                let mut h = tar_header_with("storages", os_system_pickle().len(), b'0', "");
                h[265] = 0xe9;
                tar_checksum(&mut h, true);
                cat(&[&tar_block(h, &os_system_pickle()), &[0u8; 1024]])
            },
            Malicious,
            &["os.system"],
        ),
        case(
            "legacy_tar_unknown_type",
            "type.tar",
            "`storages` with an unknown member type (tarfile extracts it as a file)",
            cat(&[
                &tar_block(tar_header_with("storages", os_system_pickle().len(), b'Z', ""), &os_system_pickle()),
                &[0u8; 1024],
            ]),
            Malicious,
            &["os.system"],
        ),
        case(
            "tar_name_field_pickle",
            "name.tar",
            "tar whose first member name is a protocol-0 pickle (pickle.load runs it)",
            tar(&[(std::str::from_utf8(OS_SYSTEM_P0).expect("ascii"), b"x")]),
            Malicious,
            &["os.system"],
        ),
        case(
            "hdf5_user_block_pickle",
            "ub.h5",
            "HDF5 file whose user block is a protocol-0 pickle",
            {
                let mut ub = OS_SYSTEM_P0.to_vec();
                ub.resize(512, 0);
                cat(&[&ub, &keras_h5(&keras_config(""))])
            },
            Malicious,
            &["os.system"],
        ),
        case(
            "numpy_object_word",
            "word.npy",
            "object dtype spelt `object`",
            npy("object", "(1,)", &os_system_pickle()),
            Malicious,
            &["os.system"],
        ),
        case(
            "numpy_structured_object",
            "struct.npy",
            "structured dtype string `i4,O` with an object field",
            npy("i4,O", "(1,)", &os_system_pickle()),
            Malicious,
            &["os.system"],
        ),
        case(
            "numpy_escaped_descr",
            "esc.npy",
            "object dtype spelt with an escape, `'\\x4f'`",
            npy_descr("'\\x4f'", "(1,)", &os_system_pickle()),
            Malicious,
            &["os.system"],
        ),
        case(
            "numpy_unicode_prefix",
            "uni.npy",
            "object dtype with a string prefix, `u'|O'`",
            npy_descr("u'|O'", "(1,)", &os_system_pickle()),
            Malicious,
            &["os.system"],
        ),
        case(
            "npz_extra_member",
            "extra.npz",
            "npz with one object array and one member that is not .npy",
            stored_zip(&[("x.npy", &npy("|O", "(1,)", &os_system_pickle())), ("readme.txt", b"hello")]),
            Malicious,
            &["os.system"],
        ),
        case(
            "duplicate_zip_payload_first",
            "dup1.pt",
            "two archive/data.pkl entries, the payload first (a reader keeping one name keeps the last)",
            stored_zip(&[("archive/data.pkl", &os_system_pickle()), ("archive/data.pkl", &torch_ok)]),
            Malicious,
            &["os.system"],
        ),
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
            failures.push(format!(
                "{}: got {:?} {:?}, expected {:?} {:?}",
                c.name, p.verdict, off, c.expected, c.offending
            ));
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
    let r = analyze_bytes(
        &corpus().into_iter().find(|c| c.name == "codecs_marshal").expect("case").bytes,
        &AnalyzeOptions::default(),
    );
    let p = r.pickle.expect("pickle");
    assert_eq!(p.globals, ["_codecs.encode", "builtins.globals", "marshal.loads", "types.FunctionType"]);
    assert!(p.complete);
    let r = analyze_bytes(
        &corpus().into_iter().find(|c| c.name == "nested_zip").expect("case").bytes,
        &AnalyzeOptions::default(),
    );
    let p = r.pickle.expect("pickle");
    assert_eq!(p.streams, ["archive/data.pkl", "archive/extra/inner.zip!archive/data.pkl"]);
    let r = analyze_bytes(
        &corpus().into_iter().find(|c| c.name == "duplicate_zip_entry").expect("case").bytes,
        &AnalyzeOptions::default(),
    );
    assert!(r.findings.iter().any(|f| f.code == "zip_duplicate_names"));
}

#[test]
fn configured_allow_and_deny_lists_apply() {
    let sk = corpus().into_iter().find(|c| c.name == "unknown_class").expect("case").bytes;
    let mut cfg = modelwatch_artifact::ArtifactConfig { pickle_allow: vec!["sklearn.*".into()], ..Default::default() };
    let opts = AnalyzeOptions::from_config(&cfg).expect("opts");
    assert_eq!(analyze_bytes(&sk, &opts).pickle.map(|p| p.verdict), Some(Safety::Safe));
    // A wildcard allowance does not extend to a dotted name that may leave the module.
    let escape = proto4(&cat(&[&ustr("sklearn.datasets._base"), &ustr("os.system"), b"\x93", &ustr("id"), b"\x85R."]));
    assert_eq!(analyze_bytes(&escape, &opts).pickle.map(|p| p.verdict), Some(Safety::Suspicious));
    cfg.pickle_allow.clear();
    cfg.pickle_deny = vec!["sklearn.linear_model._base.LinearRegression".into()];
    let opts = AnalyzeOptions::from_config(&cfg).expect("opts");
    assert_eq!(analyze_bytes(&sk, &opts).pickle.map(|p| p.verdict), Some(Safety::Malicious));
}

#[test]
fn a_denied_global_past_the_import_bounds_is_still_caught() {
    // Thousands of allowed globals, then os.system: nothing is dropped unjudged.
    let cfg = modelwatch_artifact::ArtifactConfig { pickle_allow: vec!["lib.*".into()], ..Default::default() };
    let opts = AnalyzeOptions::from_config(&cfg).expect("opts");
    let mut p = b"\x80\x02".to_vec();
    for i in 0..10_050 {
        p.extend_from_slice(&global(&format!("lib.m{i}"), "x"));
        p.push(b'0');
    }
    p.extend_from_slice(&global("os", "system"));
    p.extend_from_slice(b"0N.");
    let r = analyze_bytes(&p, &opts);
    let v = r.pickle.expect("pickle");
    assert_eq!(
        (v.verdict, v.offending.as_slice(), v.complete),
        (Safety::Malicious, &["os.system".to_string()][..], false)
    );
    // The same across streams: each zip entry below the bound, together above it.
    let half = |from: usize| {
        let mut p = b"\x80\x02".to_vec();
        for i in from..from + 6_000 {
            p.extend_from_slice(&global(&format!("lib.m{i}"), "x"));
            p.push(b'0');
        }
        p.extend_from_slice(b"N.");
        p
    };
    let z = stored_zip(&[("a.pkl", &half(0)), ("b.pkl", &half(6_000)), ("c.pkl", &os_system_pickle())]);
    let r = analyze_bytes(&z, &opts);
    let v = r.pickle.expect("pickle");
    assert_eq!((v.verdict, v.complete), (Safety::Malicious, false), "{:?}", r.findings);
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
    assert!(
        r.findings.iter().any(|f| f.code == "limit_exceeded" && f.message.contains("nested deeper")),
        "{:?}",
        r.findings
    );
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
    assert!(
        r.findings.iter().any(|f| f.code == "pickle_incomplete" && f.message.contains("inflates beyond")),
        "{:?}",
        r.findings
    );
}

fn with_max_parse(bytes: u64) -> AnalyzeOptions {
    AnalyzeOptions {
        limits: modelwatch_artifact::Limits { max_parse_bytes: bytes, ..Default::default() },
        ..AnalyzeOptions::default()
    }
}

fn codes(r: &modelwatch_artifact::formats::Identified) -> Vec<&str> {
    r.findings.iter().map(|f| f.code.as_str()).collect()
}

/// A stored zip of about `n` bytes holding nothing of interest (reading it costs `n`).
fn padding_zip(n: usize) -> Vec<u8> {
    stored_zip(&[("pad.bin", &vec![0u8; n])])
}

#[test]
fn zip_aliases_of_one_local_header_are_read_once_per_role() {
    // 1000 names for one pickle: walked once, under the first name.
    let r = analyze_bytes(&aliased_zip("x.pkl", &os_system_pickle(), 1000), &AnalyzeOptions::default());
    assert_eq!(r.metadata.entries, Some(1000));
    let p = r.pickle.as_ref().expect("pickle");
    assert_eq!((p.verdict, p.streams.as_slice(), p.complete), (Safety::Malicious, &["0-x.pkl".to_string()][..], true));
    assert_eq!(codes(&r), ["pickle_malicious"]);

    // 1000 names for one deflated 40 KB nested zip under a 64 KiB inflate budget: read twice,
    // it would spend the budget; it is read once and nothing is left unexamined.
    let inner = stored_zip(&[("archive/data.pkl", &os_system_pickle()), ("archive/pad", &[0u8; 40_000])]);
    let z = aliased_deflated_zip("inner.zip", &inner, 1000);
    let r = analyze_bytes(&z, &with_max_parse(64 << 10));
    assert_eq!(r.metadata.entries, Some(1000));
    let p = r.pickle.as_ref().expect("pickle");
    assert_eq!(
        (p.verdict, p.streams.as_slice(), p.complete),
        (Safety::Malicious, &["0-inner.zip!archive/data.pkl".to_string()][..], true)
    );
    assert_eq!(codes(&r), ["pickle_malicious"]);

    // One header named both `archive/readme` and `archive/data.pkl`: torch unpickles the second
    // name, so reading the header once as the first must not hide a protocol-0 payload.
    for names in [["archive/readme", "archive/data.pkl"], ["archive/data.pkl", "archive/readme"]] {
        let z = alias_entry(&stored_zip(&[("archive/data.pkl", OS_SYSTEM_P0)]), &names);
        let r = analyze_bytes(&z, &AnalyzeOptions::default());
        assert_eq!(r.format, Format::Pytorch);
        let p = r.pickle.as_ref().expect("pickle");
        assert_eq!(
            (p.verdict, p.streams.as_slice()),
            (Safety::Malicious, &["archive/data.pkl".to_string()][..]),
            "{names:?}"
        );
    }
}

#[test]
fn zip_inflate_budget_ends_with_a_limit_finding() {
    // 64 KiB to inflate in all: a.zip fits, b.zip runs the budget out, c.zip (the payload) is
    // never read. What went unread leaves the verdict short of `safe`.
    let z = stored_zip(&[
        ("archive/data.pkl", &torch_state_dict_pickle()),
        ("archive/extra/a.zip", &padding_zip(40_000)),
        ("archive/extra/b.zip", &padding_zip(40_000)),
        ("archive/extra/c.zip", &torch_zip(&os_system_pickle())),
    ]);
    let r = analyze_bytes(&z, &with_max_parse(64 << 10));
    assert_eq!(r.format, Format::Pytorch);
    let p = r.pickle.as_ref().expect("pickle");
    assert_eq!((p.verdict, p.complete, p.offending.len()), (Safety::Suspicious, false, 0));
    assert_eq!(p.streams, ["archive/data.pkl", "archive/extra/b.zip", "archive/extra/c.zip"]);
    assert_eq!(codes(&r), ["limit_exceeded", "pickle_incomplete", "limit_exceeded", "pickle_incomplete"]);
    let a_zip = padding_zip(40_000).len() as u64 + 8;
    assert_eq!(
        r.findings[0].message,
        format!(
            "nested zip archive/extra/b.zip: read error: the artifact's inflate budget is spent after {} bytes of this entry",
            (64 << 10) - a_zip
        )
    );
    assert_eq!(
        r.findings[2].message,
        "the artifact's inflate budget (65536 bytes) is spent: zip entry archive/extra/c.zip: it and the entries after it were not examined"
    );
    // With the default budget the payload is found.
    assert_eq!(analyze_bytes(&z, &AnalyzeOptions::default()).pickle.map(|p| p.verdict), Some(Safety::Malicious));
}

#[test]
fn a_leading_pickle_of_a_polyglot_is_walked() {
    // A pickle followed by a zip: pickle.load, numpy.load and torch.load's legacy path read
    // the pickle. Walking on into the zip's bytes finds no pickle there, so the walk is
    // incomplete; the payload is still caught.
    let r =
        analyze_bytes(&cat(&[&os_system_pickle(), &torch_zip(&torch_state_dict_pickle())]), &AnalyzeOptions::default());
    assert_eq!(r.format, Format::Pickle);
    let p = r.pickle.as_ref().expect("pickle");
    assert_eq!(
        (p.verdict, p.streams.as_slice(), p.offending.as_slice()),
        (Safety::Malicious, &["<file>".to_string()][..], &["os.system".to_string()][..])
    );
    assert_eq!(codes(&r), ["pickle_incomplete", "pickle_malicious"]);
    // The same with a protocol-0 pickle (no PROTO opcode to recognise it by).
    let r = analyze_bytes(&cat(&[OS_SYSTEM_P0, &torch_zip(&torch_state_dict_pickle())]), &AnalyzeOptions::default());
    assert_eq!((r.format, r.variant.as_deref()), (Format::Pickle, Some("protocol_0")));
    assert_eq!(
        r.pickle.as_ref().map(|p| (p.verdict, p.streams.clone())),
        Some((Safety::Malicious, vec!["<file>".to_string()]))
    );
    // A benign leading pickle: the bytes after it are not a pickle, so not `safe` either.
    let r =
        analyze_bytes(&cat(&[&torch_state_dict_pickle(), &torch_zip(&os_system_pickle())]), &AnalyzeOptions::default());
    assert_eq!(r.pickle.as_ref().map(|p| (p.verdict, p.complete)), Some((Safety::Suspicious, false)));

    // An HDF5 user block that starts with a protocol-2 pickle: the pickle is walked and the
    // Keras model behind it is still read.
    let mut ub = os_system_pickle();
    ub.resize(512, 0);
    let r = analyze_bytes(&cat(&[&ub, &keras_h5(&keras_h5_lambda_config())]), &AnalyzeOptions::default());
    assert_eq!((r.format, r.variant.as_deref()), (Format::KerasH5, Some("model")));
    assert_eq!(r.metadata.lambda_layers, ["lambda"]);
    let p = r.pickle.as_ref().expect("pickle");
    assert_eq!((p.verdict, p.streams.as_slice()), (Safety::Malicious, &["<file>".to_string()][..]));
    assert_eq!(codes(&r), ["pickle_incomplete", "keras_lambda", "pickle_malicious"]);
}

/// Writes the corpus for the peer comparison when `MW_DUMP_CORPUS` is set.
#[test]
#[ignore = "a tool, not a test: writes the corpus to $MW_DUMP_CORPUS (docs/artifact-comparison.py)"]
fn dump_corpus_for_comparison() {
    let dir = std::path::PathBuf::from(
        std::env::var_os("MW_DUMP_CORPUS").expect("MW_DUMP_CORPUS names the output directory"),
    );
    std::fs::create_dir_all(&dir).expect("create corpus dir");
    let opts = AnalyzeOptions::default();
    let mut index = Vec::new();
    for c in corpus() {
        let file = format!("{}__{}", c.name, c.file);
        std::fs::write(dir.join(&file), &c.bytes).expect("write sample");
        let r = analyze_bytes(&c.bytes, &opts);
        let verdict = r.pickle.as_ref().map_or("none", |p| p.verdict.as_str());
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
#[ignore = "a tool, not a test: writes fuzz seeds to $MW_DUMP_FUZZ_SEEDS (artifact/fuzz/gen-seeds.sh)"]
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
