//! The syslog sink's transport: RFC 5424 messages with octet-counting framing (RFC 6587) over
//! TCP, or over TLS (RFC 5425, rustls).
//!
//! A message: `<PRI>1 TIMESTAMP HOSTNAME modelwatch PROCID MSGID [modelwatch@32473 kind=…
//! severity=… event_id=… run_id=… seq=…] MSG`, where MSGID is the event kind, PRI combines the
//! configured facility with the event's severity (critical → crit, high → err, medium →
//! warning, low → notice, info → info), and MSG is the event as JSON (or OCSF JSON), without a
//! BOM. 32473 is the private enterprise number RFC 5612 reserves for documentation: the
//! structured data are modelwatch's own.
//!
//! Syslog over TCP has no acknowledgement of its own. A batch counts as delivered once the
//! receiver's TCP stack acknowledged every byte of it (the socket's send queue is empty) while
//! the connection is still up; before each batch the connection is checked for a close by the
//! receiver. What a receiver had acknowledged but not processed when it died is lost to it
//! (RELP would close that gap).

use std::{
    io::{Read as _, Write as _},
    net::{TcpStream, ToSocketAddrs as _},
    os::fd::AsRawFd as _,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use rustls::{ClientConnection, RootCertStore, StreamOwned, pki_types::ServerName};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};

use super::network::{Outcome, Outgoing, Transport, resolve_check};
use crate::{
    config::{FACILITIES, SyslogConfig, host_port},
    proto::{
        kind_name,
        v1::{Event, Severity},
    },
};

/// The structured data element of every message.
pub const SD_ID: &str = "modelwatch@32473";
pub const APP_NAME: &str = "modelwatch";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the receiver may take to acknowledge a batch at the TCP level.
const ACK_TIMEOUT: Duration = Duration::from_secs(15);

enum Conn {
    Tcp(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    fn socket(&self) -> &TcpStream {
        match self {
            Conn::Tcp(s) => s,
            Conn::Tls(t) => &t.sock,
        }
    }

    fn send(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Tcp(s) => s.write_all(buf),
            Conn::Tls(t) => t.write_all(buf).and_then(|()| t.flush()),
        }
    }

    /// Whether the receiver has closed the connection (or sent anything that breaks it).
    fn closed_by_peer(&mut self) -> Option<String> {
        let sock = self.socket();
        if sock.set_nonblocking(true).is_err() {
            return Some("cannot check the connection".into());
        }
        let verdict = match self {
            Conn::Tcp(s) => {
                let mut b = [0u8; 256];
                match s.peek(&mut b) {
                    Ok(0) => Some("the receiver closed the connection".into()),
                    // A syslog receiver has nothing to say; whatever it sent is ignored.
                    Ok(n) => s.read(&mut b[..n]).err().map(|e| e.to_string()),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
                    Err(e) => Some(e.to_string()),
                }
            }
            Conn::Tls(t) => loop {
                match t.conn.read_tls(&mut t.sock) {
                    Ok(0) => break Some("the receiver closed the connection".into()),
                    Ok(_) => match t.conn.process_new_packets() {
                        Err(e) => break Some(format!("TLS: {e}")),
                        Ok(state) if state.peer_has_closed() => {
                            break Some("the receiver closed the TLS session".into());
                        }
                        Ok(state) => {
                            let mut sink = vec![0u8; state.plaintext_bytes_to_read()];
                            let _ = t.conn.reader().read(&mut sink);
                        }
                    },
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break None,
                    Err(e) => break Some(e.to_string()),
                }
            },
        };
        let _ = self.socket().set_nonblocking(false);
        verdict
    }
}

/// Bytes in the socket's send queue that the peer has not acknowledged, and whether the
/// connection is still up (established, or closed by the peer after acknowledging).
fn send_queue(sock: &TcpStream) -> Result<(usize, bool), String> {
    let fd = sock.as_raw_fd();
    let mut queued: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int.
    if unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) } != 0 {
        return Err(format!("SIOCOUTQ: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: a zeroed tcp_info is valid; getsockopt writes at most `len` bytes.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: info and len are valid for getsockopt(TCP_INFO).
    let rc = unsafe { libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, (&raw mut info).cast(), &mut len) };
    if rc != 0 {
        return Err(format!("TCP_INFO: {}", std::io::Error::last_os_error()));
    }
    // TCP_ESTABLISHED = 1, TCP_CLOSE_WAIT = 8: a reset connection has dropped its queue.
    let up = matches!(info.tcpi_state, 1 | 8);
    Ok((queued.max(0) as usize, up))
}

pub struct SyslogTransport {
    address: String,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    facility: u8,
    procid: String,
    conn: Option<Conn>,
    destination: String,
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

impl SyslogTransport {
    /// Checks the configuration against the machine: the receiver's name resolves, the TLS
    /// files are readable and valid PEM. Errors name their key.
    pub fn new(cfg: &SyslogConfig) -> Result<Self, (String, String)> {
        let p = "output.syslog";
        let (host, port) = host_port(&cfg.address)
            .ok_or_else(|| (format!("{p}.address"), format!("`{}` is not host:port", cfg.address)))?;
        resolve_check(host, port).map_err(|m| (format!("{p}.address"), m))?;
        let facility = FACILITIES
            .iter()
            .find(|(n, _)| *n == cfg.facility)
            .map(|(_, v)| *v)
            .ok_or_else(|| (format!("{p}.facility"), format!("unknown facility `{}`", cfg.facility)))?;
        let tls = if cfg.transport == "tls" {
            let t = &cfg.tls;
            let mut roots = RootCertStore::empty();
            match &t.ca {
                Some(ca) => {
                    for c in load_certs(ca).map_err(|m| (format!("{p}.tls.ca"), m))? {
                        roots.add(c).map_err(|e| (format!("{p}.tls.ca"), format!("{}: {e}", ca.display())))?;
                    }
                }
                None => {
                    let found = rustls_native_certs::load_native_certs();
                    let (added, _) = roots.add_parsable_certificates(found.certs);
                    if added == 0 {
                        return Err((
                            format!("{p}.tls.ca"),
                            "no system CA certificates found; name a `ca` file".into(),
                        ));
                    }
                }
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let builder = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| (format!("{p}.tls"), e.to_string()))?
                .with_root_certificates(roots);
            let config = match (&t.cert, &t.key) {
                (Some(cert), Some(key)) => {
                    let chain = load_certs(cert).map_err(|m| (format!("{p}.tls.cert"), m))?;
                    let key_der = PrivateKeyDer::from_pem_file(key)
                        .map_err(|e| (format!("{p}.tls.key"), format!("{}: {e}", key.display())))?;
                    builder
                        .with_client_auth_cert(chain, key_der)
                        .map_err(|e| (format!("{p}.tls.key"), format!("does not fit the certificate: {e}")))?
                }
                _ => builder.with_no_client_auth(),
            };
            let name = t.server_name.clone().unwrap_or_else(|| host.to_owned());
            let server_name = ServerName::try_from(name.clone())
                .map_err(|e| (format!("{p}.tls.server_name"), format!("`{name}`: {e}")))?;
            Some((Arc::new(config), server_name))
        } else {
            None
        };
        Ok(Self {
            address: cfg.address.clone(),
            tls,
            facility,
            procid: std::process::id().to_string(),
            conn: None,
            destination: format!("syslog {}://{}", cfg.transport, cfg.address),
        })
    }

    fn connect(&self) -> Result<Conn, String> {
        let addrs = self.address.to_socket_addrs().map_err(|e| format!("resolving {}: {e}", self.address))?;
        let mut last = format!("{} resolves to no address", self.address);
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(sock) => {
                    sock.set_write_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
                    sock.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
                    let Some((config, name)) = &self.tls else { return Ok(Conn::Tcp(sock)) };
                    let conn = ClientConnection::new(config.clone(), name.clone()).map_err(|e| format!("TLS: {e}"))?;
                    let mut tls = StreamOwned::new(conn, sock);
                    while tls.conn.is_handshaking() {
                        tls.conn.complete_io(&mut tls.sock).map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
                    }
                    return Ok(Conn::Tls(Box::new(tls)));
                }
                Err(e) => last = format!("connecting to {addr}: {e}"),
            }
        }
        Err(last)
    }
}

impl Transport for SyslogTransport {
    fn destination(&self) -> String {
        self.destination.clone()
    }

    fn deliver(&mut self, batch: &[Outgoing], outcome: &mut [Outcome], cancel: &AtomicBool) -> Result<(), String> {
        if let Some(why) = self.conn.as_mut().and_then(Conn::closed_by_peer) {
            tracing::debug!("syslog: {why}; reconnecting");
            self.conn = None;
        }
        if self.conn.is_none() {
            self.conn = Some(self.connect()?);
        }
        let mut buf = Vec::with_capacity(batch.iter().map(|o| o.payload.len() + 200).sum());
        for (o, out) in batch.iter().zip(outcome.iter()) {
            if *out == Outcome::Pending {
                let msg = format_message(&o.event, &o.payload, self.facility, &self.procid);
                buf.extend_from_slice(format!("{} ", msg.len()).as_bytes());
                buf.extend_from_slice(&msg);
            }
        }
        let Some(conn) = self.conn.as_mut() else { return Err("not connected".into()) };
        conn.send(&buf).map_err(|e| format!("sending to {}: {e}", self.address))?;
        let deadline = Instant::now() + ACK_TIMEOUT;
        let mut nap = Duration::from_micros(50);
        loop {
            let (queued, up) = send_queue(conn.socket())?;
            if !up {
                return Err(format!("{}: connection lost before the receiver acknowledged", self.address));
            }
            if queued == 0 {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!("{}: {queued} bytes not acknowledged within {ACK_TIMEOUT:?}", self.address));
            }
            if cancel.load(Ordering::SeqCst) {
                return Err("stopped".into());
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(20));
        }
        for o in outcome.iter_mut() {
            if *o == Outcome::Pending {
                *o = Outcome::Delivered;
            }
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.conn = None;
    }
}

/// Syslog severity (RFC 5424, 6.2.1) of an event.
fn syslog_severity(ev: &Event) -> u8 {
    match Severity::try_from(ev.severity).unwrap_or(Severity::Info) {
        Severity::Critical => 2,
        Severity::High => 3,
        Severity::Medium => 4,
        Severity::Low => 5,
        Severity::Info | Severity::Unspecified => 6,
    }
}

/// RFC 5424 TIMESTAMP: UTC with microseconds.
fn timestamp(ts: &pbjson_types::Timestamp) -> String {
    let (days, secs) = (ts.seconds.div_euclid(86_400), ts.seconds.rem_euclid(86_400));
    let (y, m, d) = crate::output::civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return "-".into();
    }
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
        ts.nanos.clamp(0, 999_999_999) / 1000
    )
}

/// A header field: printable US-ASCII without spaces, at most `max` bytes, else `-`.
fn header_field(s: &str, max: usize) -> String {
    let clean: String = s.chars().filter(char::is_ascii_graphic).take(max).collect();
    if clean.is_empty() { "-".into() } else { clean }
}

/// An SD-PARAM value: `"`, `\` and `]` escaped (RFC 5424, 6.3.3).
fn param_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One RFC 5424 message (without framing).
pub fn format_message(ev: &Event, payload: &[u8], facility: u8, procid: &str) -> Vec<u8> {
    let pri = u16::from(facility) * 8 + u16::from(syslog_severity(ev));
    let ts = ev.event_time.as_ref().or(ev.observed_time.as_ref()).map_or_else(|| "-".into(), timestamp);
    let host = ev.host.as_ref().map_or("", |h| h.hostname.as_str());
    let kind = kind_name(ev);
    let severity = Severity::try_from(ev.severity)
        .map_or_else(|_| "info".into(), |s| s.as_str_name().trim_start_matches("SEVERITY_").to_ascii_lowercase());
    let mut msg = format!(
        "<{pri}>1 {ts} {} {APP_NAME} {procid} {} [{SD_ID} kind=\"{}\" severity=\"{}\" event_id=\"{}\" run_id=\"{}\" seq=\"{}\"] ",
        header_field(host, 255),
        header_field(kind, 32),
        param_value(kind),
        param_value(&severity),
        param_value(&ev.event_id),
        param_value(&ev.run_id),
        ev.seq,
    )
    .into_bytes();
    msg.extend_from_slice(payload);
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::{Host, PolicyFinding, event::Payload};

    #[test]
    fn messages_follow_rfc5424() {
        let ev = Event {
            event_id: "01a2-x\"]".into(),
            run_id: "r1".into(),
            seq: 42,
            severity: Severity::High as i32,
            event_time: Some(pbjson_types::Timestamp { seconds: 1_795_000_000, nanos: 123_456_789 }),
            host: Some(Host { hostname: "work station-17".into(), ..Default::default() }),
            payload: Some(Payload::PolicyFinding(PolicyFinding::default())),
            ..Default::default()
        };
        let msg = String::from_utf8(format_message(&ev, b"{\"a\":1}", 16, "77")).unwrap();
        assert_eq!(
            msg,
            "<131>1 2026-11-18T11:06:40.123456Z workstation-17 modelwatch 77 policy_finding \
             [modelwatch@32473 kind=\"policy_finding\" severity=\"high\" event_id=\"01a2-x\\\"\\]\" run_id=\"r1\" seq=\"42\"] {\"a\":1}"
        );
        let bare = Event::default();
        let msg = String::from_utf8(format_message(&bare, b"{}", 0, "1")).unwrap();
        assert!(msg.starts_with("<6>1 - - modelwatch 1 none [modelwatch@32473 kind=\"none\""), "{msg}");
    }

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(crate::output::civil_from_days(0), (1970, 1, 1));
        assert_eq!(crate::output::civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(crate::output::civil_from_days(-1), (1969, 12, 31));
        assert_eq!(
            timestamp(&pbjson_types::Timestamp { seconds: 951_782_400, nanos: 5_000 }),
            "2000-02-29T00:00:00.000005Z"
        );
    }
}
