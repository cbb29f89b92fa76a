//! `sockhub-bench`: the same as `sockhub bench`.

use clap::Parser;

#[derive(Parser)]
#[command(name = "sockhub-bench", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    args: sockhub_bench::BenchArgs,
}

fn main() -> std::process::ExitCode {
    sockhub_bench::run(Cli::parse().args)
}
