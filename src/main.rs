// force-bind's entry point; everything else is in the library (src/lib.rs).

fn main() -> std::process::ExitCode {
    force_bind::run()
}
