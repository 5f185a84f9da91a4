// fuzz_targets/policy_decide.rs: cargo-fuzz target; the property is checks::policy_decide, which
// tests/fuzz_smoke.rs also runs on a fixed corpus.
#![no_main]

#[allow(dead_code)] // each target uses one of the checks
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::policy_decide(data));
