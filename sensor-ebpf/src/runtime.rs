//! What every BPF object of this crate needs besides its programs: the panic handler, the
//! licence section (GPL, for the helpers the programs call) and the ABI version.

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

/// The ABI this object was built against, read by the collector before it loads the object.
#[unsafe(no_mangle)]
#[unsafe(link_section = "modelwatch_abi")]
#[used]
pub static MODELWATCH_ABI: u32 = sensor_ebpf::ABI_VERSION;
