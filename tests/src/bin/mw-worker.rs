//! A stand-in for an inference process, driven by the session integration test: it maps a
//! model file, then issues ioctls on a device when told to, and exits when told to.
//!
//! Usage: mw-worker MODEL DEVICE CMD_HEX... ; then on stdin: `ioctl N` issues N of each command,
//! `exit` exits. Answers each line with `ok` on stdout.
//! Or: mw-worker --ioctl-fd FD CMD_HEX N issues N ioctls on an inherited fd and exits.
//! Or: mw-worker --threads N CODE starts N threads, then exits the whole group with CODE.
//! Or: mw-worker --script runs commands from stdin, answering each with `ok`: `maplib PATH`
//! maps PATH executable (as a dynamic loader maps a library), `open PATH...` opens, reads and
//! closes each PATH, `flood N PATH...` opens and closes the PATHs round-robin N times in all,
//! `exit` exits.

use std::io::{BufRead as _, Write as _};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // mw-worker --ioctl-fd FD CMD_HEX N: ioctls on an inherited fd, then exit.
    if args.get(1).map(String::as_str) == Some("--ioctl-fd") {
        let fd: i32 = args[2].parse().expect("fd");
        let cmd = u64::from_str_radix(args[3].trim_start_matches("0x"), 16).expect("hex cmd");
        let n: u64 = args[4].parse().expect("count");
        for _ in 0..n {
            // SAFETY: an fd inherited from the parent.
            unsafe { libc::ioctl(fd, cmd as libc::c_ulong, 0) };
        }
        return;
    }
    // mw-worker --threads N CODE: every thread of the group goes through exit at once.
    if args.get(1).map(String::as_str) == Some("--threads") {
        let n: usize = args[2].parse().expect("thread count");
        let code: i32 = args[3].parse().expect("exit code");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(n + 1));
        for _ in 0..n {
            let b = barrier.clone();
            std::thread::spawn(move || {
                b.wait();
                std::thread::park();
            });
        }
        barrier.wait();
        std::process::exit(code);
    }
    if args.get(1).map(String::as_str) == Some("--script") {
        script();
        return;
    }
    assert!(args.len() >= 4, "usage: mw-worker MODEL DEVICE CMD_HEX...");
    let cmds: Vec<u64> =
        args[3..].iter().map(|c| u64::from_str_radix(c.trim_start_matches("0x"), 16).expect("hex cmd")).collect();
    let model = std::ffi::CString::new(args[1].as_str()).unwrap();
    let device = std::ffi::CString::new(args[2].as_str()).unwrap();
    // SAFETY: plain syscalls on paths and fds this process owns.
    let (model_fd, dev_fd) =
        unsafe { (libc::open(model.as_ptr(), libc::O_RDONLY), libc::open(device.as_ptr(), libc::O_RDWR)) };
    assert!(model_fd >= 0 && dev_fd >= 0, "open: {}", std::io::Error::last_os_error());
    let len = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        assert_eq!(libc::fstat(model_fd, &mut st), 0);
        st.st_size as usize
    };
    let map = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, model_fd, 0) };
    assert_ne!(map, libc::MAP_FAILED);
    let stdout = std::io::stdout();
    println!("ready");
    stdout.lock().flush().unwrap();
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let mut words = line.split_whitespace();
        match words.next() {
            Some("ioctl") => {
                let n: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(1);
                for _ in 0..n {
                    for cmd in &cmds {
                        // /dev/null answers ENOTTY; the kernel counted the call all the same.
                        unsafe { libc::ioctl(dev_fd, *cmd as libc::c_ulong, 0) };
                    }
                }
            }
            Some("exit") => {
                println!("ok");
                stdout.lock().flush().unwrap();
                std::process::exit(0);
            }
            _ => {}
        }
        println!("ok");
        stdout.lock().flush().unwrap();
    }
}

fn open_path(path: &str, flags: i32) -> i32 {
    let c = std::ffi::CString::new(path).expect("path");
    // SAFETY: a valid NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    assert!(fd >= 0, "open {path}: {}", std::io::Error::last_os_error());
    fd
}

fn script() {
    let stdout = std::io::stdout();
    let mut maps = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("stdin");
        let mut words = line.split_whitespace();
        match words.next() {
            Some("maplib") => {
                let fd = open_path(words.next().expect("path"), libc::O_RDONLY);
                // SAFETY: a private read-only mapping of a file we opened.
                let addr = unsafe {
                    libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ | libc::PROT_EXEC, libc::MAP_PRIVATE, fd, 0)
                };
                assert_ne!(addr, libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
                maps.push(addr as usize);
                // SAFETY: our fd; the mapping keeps the file.
                unsafe { libc::close(fd) };
            }
            Some("open") => {
                for path in words {
                    let fd = open_path(path, libc::O_RDONLY);
                    let mut buf = [0u8; 4096];
                    // SAFETY: buf is ours and as long as passed.
                    while unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
                    // SAFETY: our fd.
                    unsafe { libc::close(fd) };
                }
            }
            Some("flood") => {
                let n: usize = words.next().and_then(|w| w.parse().ok()).expect("count");
                let paths: Vec<std::ffi::CString> = words.map(|p| std::ffi::CString::new(p).expect("path")).collect();
                for i in 0..n {
                    // SAFETY: valid NUL-terminated paths; the fd is closed at once.
                    unsafe {
                        let fd = libc::open(paths[i % paths.len()].as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                        if fd >= 0 {
                            libc::close(fd);
                        }
                    }
                }
            }
            Some("exit") => {
                println!("ok");
                stdout.lock().flush().unwrap();
                return;
            }
            _ => {}
        }
        println!("ok");
        stdout.lock().flush().unwrap();
    }
}
