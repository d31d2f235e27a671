//! Bad configuration of a network sink is a clear error at start and in `config --check`
//! (exit code 2, naming the key), never a silent drop at run time.

use std::process::Command;

fn modelwatch(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_modelwatch")).args(args).output().expect("run modelwatch");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check(dir: &std::path::Path, name: &str, text: &str) -> (i32, String) {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let (code, stdout, stderr) = modelwatch(&["config", "--check", path.to_str().unwrap()]);
    (code, format!("{stdout}{stderr}"))
}

#[test]
fn bad_sink_configuration_is_refused_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-ca.pem");
    let cases = [
        ("[output.kafka]\nformat = \"xml\"\n", "unknown variant `xml`"),
        ("[output.syslog]\nformat = \"protobuf\"\n", "output.syslog.format"),
        (
            "[output.kafka]\nbrokers = [\"no-such-broker.invalid:9092\"]\n",
            "key `output.kafka.brokers[0]`: the name `no-such-broker.invalid` does not resolve",
        ),
        ("[output.kafka]\nbrokers = [\"127.0.0.1\"]\n", "output.kafka.brokers[0]"),
        ("[output.kafka]\ntopic = \"a topic\"\n", "output.kafka.topic"),
        ("[output.kafka]\ncompression = \"brotli\"\n", "output.kafka.compression"),
        ("[output.kafka]\nkinds = [\"bogus\"]\n", "output.kafka.kinds[0]"),
        ("[output.kafka]\nmin_severity = \"urgent\"\n", "output.kafka.min_severity"),
        ("[output.kafka.rate_limit]\nper_second = 0\n", "output.kafka.rate_limit.per_second"),
        ("[output.kafka.spool]\nmax_size = \"1KiB\"\n", "output.kafka.spool.max_size"),
        ("[output.kafka.spool]\ndir = \"relative\"\n", "output.kafka.spool.dir"),
        (
            "[output.kafka.sasl]\nmechanism = \"GSSAPI\"\nusername = \"u\"\npassword = \"p\"\n",
            "output.kafka.sasl.mechanism",
        ),
        (
            "[output.kafka.properties]\n\"enable.idempotence\" = \"false\"\n",
            "output.kafka.properties.enable.idempotence",
        ),
        ("[output.kafka.properties]\n\"no.such.property\" = \"1\"\n", "librdkafka refuses the configuration"),
        (&format!("[output.kafka.tls]\nca = \"{}\"\n", missing.display()), "output.kafka.tls.ca"),
        (&format!("[output.syslog.tls]\nca = \"{}\"\n", missing.display()), "output.syslog.tls.ca"),
        ("[output.syslog]\naddress = \"no-such-receiver.invalid:6514\"\n", "output.syslog.address"),
        ("[output.syslog]\nfacility = \"local9\"\n", "output.syslog.facility"),
        ("[output.syslog]\ntransport = \"udp\"\n", "output.syslog.transport"),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let (code, out) = check(dir.path(), &format!("bad{i}.toml"), text);
        assert_eq!(code, 2, "{text:?}: {out}");
        assert!(out.contains(expected), "{text:?} gave {out}");
    }
}

#[test]
fn run_refuses_a_broker_name_that_does_not_resolve_before_loading_anything() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("m.toml");
    std::fs::write(&cfg, "[output.kafka]\nbrokers = [\"no-such-broker.invalid:9092\"]\n").unwrap();
    let (code, _, stderr) = modelwatch(&["run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("output.kafka.brokers[0]"), "{stderr}");
}

#[test]
fn good_sink_configuration_passes_and_the_defaults_document_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = check(
        dir.path(),
        "good.toml",
        "[output.kafka]\nbrokers = [\"127.0.0.1:9092\", \"localhost:9093\"]\ntopic = \"modelwatch.events\"\nformat = \"protobuf\"\n\
         [output.kafka.rate_limit]\nkinds = [\"session_updated\"]\nper_second = 5\n\
         [output.syslog]\naddress = \"127.0.0.1:6514\"\ntransport = \"tcp\"\nformat = \"json\"\n",
    );
    assert_eq!(code, 0, "{out}");
    let (code, defaults, _) = modelwatch(&["config", "--default"]);
    assert_eq!(code, 0);
    for key in [
        "[output.kafka]",
        "brokers = [\"127.0.0.1:9092\"]",
        "topic = \"modelwatch.events\"",
        "format = \"protobuf\"",
        "compression = \"zstd\"",
        "[output.kafka.spool]",
        "max_size = \"1GiB\"",
        "sync_interval_ms = 100",
        "[output.syslog]",
        "transport = \"tls\"",
        "facility = \"local0\"",
        "# [output.kafka.sasl]",
        "# [output.kafka.rate_limit]",
    ] {
        assert!(defaults.contains(key), "`{key}` missing from config --default:\n{defaults}");
    }
    // The printed defaults are a valid file with both sinks off.
    let (code, out) = check(dir.path(), "defaults.toml", &defaults);
    assert_eq!(code, 0, "{out}");
}
