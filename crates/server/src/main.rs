//! `yc-images`: the Yandex Cloud Container Registry and Compute image APIs, and long-running
//! operations, served over gRPC and REST on one address.

mod cli;
mod coalesce;
mod conn;
mod endpoints;
mod iam;
mod log;
mod metrics;
mod request_info;
mod request_line;
mod seed;
mod serve;
mod tls;

use std::process::ExitCode;

/// mimalloc rather than the system's: measured in `cargo xtask bench` (see
/// docs/benchmarks.md), a call spends a tenth of its time in the allocator otherwise.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

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
    /// Container Registry on a server: registries (create, list, get, update, delete),
    /// repositories, images, import of an OCI layout, garbage collection.
    Registry(cli::RegistryArgs),
    /// Compute images on a server: list, get, create, update, delete, latest-by-family,
    /// operations.
    Compute(cli::ComputeArgs),
    /// Long-running operations on a server: get, wait.
    Operation(cli::OperationArgs),
    /// Credentials for the server's IAM: service-account keys.
    Iam(cli::IamArgs),
    /// Prints the completion script of a shell: `source <(yc-images completion bash)`.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A server logs every call; a command says only what went wrong.
    let level = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    // Log lines are written out by a thread of their own (see `log`); the guard writes out
    // what is left when the program ends.
    let (writer, flush) = log::stderr();
    // `target=level` directives (`info`, `warn,yc_images=debug`): a filter that keeps no state
    // per span, since every call has one.
    let filter = std::env::var("YC_IMAGES_LOG")
        .ok()
        .and_then(|directives| {
            directives
                .parse::<tracing_subscriber::filter::Targets>()
                .ok()
        })
        .unwrap_or_else(|| {
            level
                .parse()
                .unwrap_or_else(|_| tracing_subscriber::filter::Targets::new())
        });
    let json =
        matches!(&cli.command, Command::Serve(args) if args.log_format == serve::LogFormat::Json);
    if json {
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(false)
            .with_span_list(true)
            .with_writer(writer);
        tracing_subscriber::registry()
            .with(filter)
            .with(layer)
            .init();
    } else {
        tracing_subscriber::registry()
            .with(filter)
            .with(log::TextLayer::new(writer))
            .init();
        log::text_lines();
    }
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| {
            runtime.block_on(async {
                match cli.command {
                    Command::Serve(args) => serve::run(args).await,
                    Command::Registry(args) => cli::registry(args).await,
                    Command::Compute(args) => cli::compute(args).await,
                    Command::Operation(args) => cli::operation(args).await,
                    Command::Iam(args) => cli::iam(args),
                    Command::Completion { shell } => {
                        use clap::CommandFactory as _;
                        clap_complete::generate(
                            shell,
                            &mut Cli::command(),
                            "yc-images",
                            &mut std::io::stdout(),
                        );
                        Ok(())
                    }
                }
            })
        });
    drop(flush);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line: what failed and why.
            eprintln!("yc-images: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    /// Every command says what it does and every flag and argument what it takes, as `yc`'s
    /// do: `--help` is enough to use any of them.
    #[test]
    fn every_command_and_flag_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", command.get_name());
            if command.get_about().is_none() && path != " yc-images" {
                missing.push(format!("{path}: no about"));
            }
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && id != "version" && arg.get_help().is_none() {
                    missing.push(format!("{path}: {id}"));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "without help: {missing:#?}");
        Cli::command().debug_assert();
    }
}
