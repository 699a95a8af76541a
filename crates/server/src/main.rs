//! `yc-images`: the Yandex Cloud Container Registry and Compute image APIs, and long-running
//! operations, served over gRPC and REST on one address.

mod endpoints;
mod iam;
mod log;
mod seed;
mod serve;
mod tls;

use clap::{Parser, Subcommand};

/// Stand-in for the Yandex Cloud image APIs.
#[derive(Debug, Parser)]
#[command(name = "yc-images", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the registry ImageService, the compute ImageService, OperationService and
    /// ApiEndpointService over gRPC, and the REST API at its documented paths, on one address.
    Serve(serve::ServeArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Log lines are written out by a thread of their own (see `log`); the guard writes out
    // what is left when the program ends.
    let (writer, _flush) = log::stderr();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("YC_IMAGES_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .fmt_fields(log::Fields)
        .event_format(log::Lines)
        .with_writer(writer)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve::run(args)),
    }
}
