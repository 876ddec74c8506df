fn main() -> std::process::ExitCode {
    keelson::cli::main()
}
