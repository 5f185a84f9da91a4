// fuzz_targets/rule_parser.rs: cargo-fuzz target; the property is checks::rule_parser, which
// tests/fuzz_smoke.rs also runs on a fixed corpus.
#![no_main]

#[allow(dead_code)] // each target uses one of the checks
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::rule_parser(data));
