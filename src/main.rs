//! The `klaxon` binary: parse arguments, hand over to the library.

fn main() -> std::process::ExitCode {
    klaxon::cli::main()
}
