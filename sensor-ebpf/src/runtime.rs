//! What every BPF object of this crate needs besides its programs: the panic handler and the
//! licence section (GPL, for the helpers the programs call).

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects reachable infinite loops, so a reachable panic fails the load
    // instead of hanging: exactly what we want for a bug.
    loop {}
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "license")]
pub static LICENSE: [u8; 4] = *b"GPL\0";
