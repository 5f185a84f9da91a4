// fuzz_targets/sockaddr_decode.rs: cargo-fuzz target; the property is checks::sockaddr_decode, which
// tests/fuzz_smoke.rs also runs on a fixed corpus.
#![no_main]

#[allow(dead_code)] // each target uses one of the checks
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::sockaddr_decode(data));
