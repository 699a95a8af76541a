//! `yc-images operation`: long-running operations.

use super::*;

/// `yc-images operation`.
#[derive(Debug, clap::Args)]
pub(crate) struct OperationArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: OperationCommand,
}

#[derive(Debug, clap::Subcommand)]
pub(super) enum OperationCommand {
    /// An operation as it is now.
    Get {
        /// The operation's id.
        operation_id: String,
    },
    /// Waits until an operation is done; fails as the operation did.
    Wait {
        /// The operation's id.
        operation_id: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
}

/// Runs `yc-images operation …`.
pub(crate) async fn operation(args: OperationArgs) -> Result<()> {
    let (channel, token) = connect(&args.connection).await?;
    let out = Output(args.connection.format);
    let source = operations(&channel, &token);
    match args.command {
        OperationCommand::Get { operation_id } => {
            out.one(&source.get_operation(&operation_id).await.map_err(failed)?)
        }
        OperationCommand::Wait {
            operation_id,
            timeout,
        } => {
            let op = source.get_operation(&operation_id).await.map_err(failed)?;
            let policy = WaitPolicy {
                timeout: Some(Duration::from_secs(timeout)),
                ..WaitPolicy::default()
            };
            out.one(&wait(&source, op, policy).await?)
        }
    }
}

pub(super) const OPERATION_COLUMNS: [&str; 5] =
    ["ID", "DESCRIPTION", "CREATED BY", "DONE", "RESULT"];

pub(super) fn operation_row(op: &Operation) -> Vec<String> {
    use yc_proto_types::yandex::cloud::operation::operation::Result as Outcome;
    vec![
        op.id.clone(),
        op.description.clone(),
        op.created_by.clone(),
        op.done.to_string(),
        match &op.result {
            Some(Outcome::Error(e)) => CallFailed(e.clone()).to_string(),
            Some(Outcome::Response(_)) => "ok".into(),
            None => String::new(),
        },
    ]
}

/// Waits for `op` with a spinner on a terminal; an operation that failed is an error.
pub(super) async fn wait(
    source: &OperationServiceClient<AuthChannel>,
    op: Operation,
    policy: WaitPolicy,
) -> Result<Operation> {
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(format!("{} ({})", op.description, op.id));
    spinner.enable_steady_tick(Duration::from_millis(100));
    let waiter = OperationWaiter::new(source.clone()).with_policy(policy);
    let done = waiter.wait_done(op).await;
    spinner.finish_and_clear();
    let done = done.map_err(wait_failed)?;
    if let Some(yc_proto_types::yandex::cloud::operation::operation::Result::Error(e)) =
        &done.result
    {
        return Err(failed(e.clone()));
    }
    Ok(done)
}
