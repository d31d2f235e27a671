//! Real library output, not hand-written bytes: pickles and NumPy files produced by numpy 2.4
//! and CPython 3.11's pickle module (generated once with the snippet below, embedded as hex),
//! to check that the allowlist accepts what real libraries write and that the container readers
//! agree with real writers.
//!
//! ```python
//! obj = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "od": OrderedDict(a=1),
//!        "s": {1, 2}, "b": b"xy", "f": np.float64(1.5)}
//! pickle.dumps(obj, protocol=p) for p in (2, 4, 5)
//! np.save(f, np.array([1, "a", None], dtype=object), allow_pickle=True)
//! np.savez_compressed(f, a=np.arange(4, dtype=np.int64), b=np.ones((2, 2), dtype=np.float16))
//! ```

use modelwatch_artifact::{AnalyzeOptions, Format, Safety, analyze_bytes};

/// pickle.dumps(dict of arrays, protocol=2) (485 bytes, numpy 2.4.6).
pub const NUMPY_PICKLE_P2: &str = "80027d7100285801000000777101636e756d70792e5f636f72652e6d756c746961727261790a5f7265636f6e7374727563740a7102636e756d70790a6e6461727261790a71034b00857104635f636f646563730a656e636f64650a7105580100000062710658060000006c6174696e31710786710852710987710a52710b284b014b024b0386710c636e756d70790a64747970650a710d58020000006634710e898887710f527110284b0358010000003c71114e4e4e4affffffff4affffffff4b0074711262896805581b000000000000000000c2803f00000040000040400000c280400000c2a040711368078671145271157471166258020000006f64711763636f6c6c656374696f6e730a4f726465726564446963740a711829527119580100000061711a4b0173580100000073711b635f5f6275696c74696e5f5f0a7365740a711c5d711d284b014b026585711e52711f5801000000627120680558020000007879712168078671225271235801000000667124636e756d70792e5f636f72652e6d756c746961727261790a7363616c61720a7125680d5802000000663871268988877127527128284b0368114e4e4e4affffffff4affffffff4b007471296268055809000000000000000000c3b83f712a680786712b52712c86712d52712e752e";
/// pickle.dumps(dict of arrays, protocol=4) (316 bytes, numpy 2.4.6).
pub const NUMPY_PICKLE_P4: &str = "80049531010000000000007d94288c0177948c166e756d70792e5f636f72652e6d756c74696172726179948c0c5f7265636f6e7374727563749493948c056e756d7079948c076e6461727261799493944b0085944301629487945294284b014b024b03869468058c0564747970659493948c02663494898887945294284b038c013c944e4e4e4affffffff4affffffff4b00749462894318000000000000803f0000004000004040000080400000a040947494628c026f64948c0b636f6c6c656374696f6e73948c0b4f726465726564446963749493942952948c0161944b01738c0173948f94284b014b02908c01629443027879948c01669468028c067363616c6172949394680e8c02663894898887945294284b0368124e4e4e4affffffff4affffffff4b007494624308000000000000f83f9486945294752e";
/// pickle.dumps(dict of arrays, protocol=5) (318 bytes, numpy 2.4.6).
pub const NUMPY_PICKLE_P5: &str = "80059533010000000000007d94288c0177948c136e756d70792e5f636f72652e6e756d65726963948c0b5f66726f6d62756666657294939428961800000000000000000000000000803f0000004000004040000080400000a040948c056e756d7079948c0564747970659493948c02663494898887945294284b038c013c944e4e4e4affffffff4affffffff4b007494624b024b0386948c014394749452948c026f64948c0b636f6c6c656374696f6e73948c0b4f726465726564446963749493942952948c0161944b01738c0173948f94284b014b02908c01629443027879948c0166948c166e756d70792e5f636f72652e6d756c74696172726179948c067363616c617294939468088c02663894898887945294284b03680c4e4e4e4affffffff4affffffff4b007494624308000000000000f83f9486945294752e";
/// np.save of an object array (284 bytes, numpy 2.4.6).
pub const NUMPY_OBJECT_NPY: &str = "934e554d5059010076007b276465736372273a20277c4f272c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028332c292c207d202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a80049591000000000000008c166e756d70792e5f636f72652e6d756c74696172726179948c0c5f7265636f6e7374727563749493948c056e756d7079948c076e6461727261799493944b0085944301629487945294284b014b03859468038c0564747970659493948c024f3894898887945294284b038c017c944e4e4e4affffffff4affffffff4b3f749462895d94284b018c0161944e657494622e";
/// np.savez_compressed(a=int64[4], b=float16[2,2]) (387 bytes, numpy 2.4.6).
pub const NUMPY_SAVEZ_COMPRESSED: &str = "504b03042d000000080000002100c3c3dad1ffffffffffffffff05001400612e6e707901001000a0000000000000004f000000000000009bec17ea1b10c9c850c650ad9e925a9c5ca46ea5a06e9369a1aea3a09e965f54529498179f5f94920a12774bcc294e058a17672416a402f91a263a9a3a0ab50a14002e06286084d24c509a194a0300504b03042d000000080000002100367ad474ffffffffffffffff05001400622e6e70790100100088000000000000004a000000000000009bec17ea1b10c9c850c650ad9e925a9c5ca46ea5a06e9366a4aea3a09e965f54529498179f5f94920a12774bcc294e058a17672416a402f91a463a0a469a3a0ab50a64032e061b080400504b01022d032d000000080000002100c3c3dad14f000000a0000000050000000000000000000000800100000000612e6e7079504b01022d032d000000080000002100367ad4744a00000088000000050000000000000000000000800186000000622e6e7079504b0506000000000200020066000000070100000000";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

#[test]
fn numpy_pickles_of_every_protocol_are_safe_with_exact_globals() {
    // Protocol 2 needs _codecs.encode for bytes and builtins (spelt __builtin__) for sets;
    // protocol 4 has opcodes for both; protocol 5 rebuilds arrays with _frombuffer.
    let common = ["collections.OrderedDict", "numpy._core.multiarray.scalar", "numpy.dtype"];
    let cases: [(u64, &str, &[&str]); 3] = [
        (
            2,
            NUMPY_PICKLE_P2,
            &["_codecs.encode", "__builtin__.set", "numpy._core.multiarray._reconstruct", "numpy.ndarray"],
        ),
        (4, NUMPY_PICKLE_P4, &["numpy._core.multiarray._reconstruct", "numpy.ndarray"]),
        (5, NUMPY_PICKLE_P5, &["numpy._core.numeric._frombuffer"]),
    ];
    for (proto, hex, extra) in cases {
        let r = analyze_bytes(&unhex(hex), &AnalyzeOptions::default());
        assert_eq!((r.format, r.metadata.format_version), (Format::Pickle, Some(proto)));
        let p = r.pickle.expect("pickle verdict");
        assert_eq!((p.verdict, p.complete), (Safety::Safe, true), "protocol {proto}: {:?}", p.offending);
        let mut want: Vec<&str> = common.iter().chain(extra.iter()).copied().collect();
        want.sort();
        assert_eq!(p.globals, want, "protocol {proto}");
        assert!(r.findings.is_empty(), "{:?}", r.findings);
    }
}

#[test]
fn numpy_object_npy_and_savez_compressed() {
    let r = analyze_bytes(&unhex(NUMPY_OBJECT_NPY), &AnalyzeOptions::default());
    assert_eq!((r.format, r.variant.as_deref()), (Format::Numpy, Some("npy")));
    assert_eq!((r.metadata.shape.as_slice(), r.metadata.dtypes.as_slice()), (&[3u64][..], &["|O".to_string()][..]));
    let p = r.pickle.expect("object arrays are pickles");
    assert_eq!((p.verdict, p.complete), (Safety::Safe, true), "{:?}", p.globals);

    let r = analyze_bytes(&unhex(NUMPY_SAVEZ_COMPRESSED), &AnalyzeOptions::default());
    assert_eq!((r.format, r.variant.as_deref()), (Format::Numpy, Some("npz")));
    assert_eq!((r.metadata.tensor_count, r.metadata.parameter_count, r.metadata.entries), (Some(2), Some(8), Some(2)));
    assert_eq!(r.metadata.dtypes, ["<f2", "<i8"]);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
}
