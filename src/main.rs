// force-bind's entry point; everything else is in the library (src/lib.rs).
//
// A C `main` rather than Rust's `fn main`: Rust's start-up would also install a
// stack-overflow handler, which reads /proc/self/maps and maps an alternate signal
// stack, on every run of every wrapped command (issue 15). `lib::run` does the rest
// of what that start-up does that force-bind needs; std's arguments and
// environment work the same (glibc passes them to std's initialiser).
// (The test harness brings its own main.)
#![cfg_attr(not(test), no_main)]

#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    // A panic has printed its message; it must not unwind into C.
    let code = std::panic::catch_unwind(force_bind::run).unwrap_or(125);
    // std::process::exit, not a return: it flushes Rust's stdout first.
    std::process::exit(i32::from(code))
}
