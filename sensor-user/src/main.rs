fn main() {
    tracing_subscriber::fmt().init();
    let s = modelwatch::probes::ProbeSettings { size_threshold: 32<<20, ring_buffer_bytes: 1<<22, self_tgid: std::process::id(), btf_path: "/sys/kernel/btf/vmlinux".into() };
    match modelwatch::probes::load(&s) {
        Ok((p, maps, _rb)) => { println!("attached {:?}", p.attached); std::thread::sleep(std::time::Duration::from_secs(2)); println!("{:?}", maps.stats()); }
        Err(e) => { eprintln!("error: {e}"); std::process::exit(1) }
    }
}
