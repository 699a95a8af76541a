//! `yc-images`: the Yandex Cloud Container Registry and Compute image APIs, and long-running
//! operations, served over gRPC and REST on one address.

mod endpoints;
mod seed;
mod serve;

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
    // Log lines are written by a thread of their own, so that a call does not wait on the
    // terminal or the disk; nothing is dropped (a full queue makes callers wait), and the
    // guard writes out what is queued when the program ends. The thread writes what is queued
    // in one go and flushes whenever the queue is empty.
    let (writer, _flush) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("YC_IMAGES_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve::run(args)),
    }
}
