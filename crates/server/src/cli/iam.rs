//! `yc-images iam key create`: an authorized key of a service account, as `yc iam key create`
//! makes one, registered in the server's IAM file.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub(crate) struct IamArgs {
    #[command(subcommand)]
    command: IamCommand,
}

#[derive(Debug, Subcommand)]
enum IamCommand {
    /// Authorized keys of service accounts.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Makes an RSA-2048 key for a service account, writes the key file the SDKs and `yc`
    /// read (`--output`), and adds its public key to the IAM file (`--iam`; the service
    /// account is added as a subject if the file lacks it). A running server finds the key
    /// the first time a JWT names it.
    Create {
        /// The service account the key signs for.
        #[arg(long)]
        service_account_id: String,
        /// Where to write the key file (private key included; readable by its owner only).
        #[arg(long, short)]
        output: PathBuf,
        /// The IAM file of the server (`yc-images serve --iam`).
        #[arg(long, env = "YC_IMAGES_IAM")]
        iam: PathBuf,
    },
}

pub(crate) fn iam(args: IamArgs) -> Result<()> {
    match args.command {
        IamCommand::Key {
            command:
                KeyCommand::Create {
                    service_account_id,
                    output,
                    iam,
                },
        } => {
            // The rule the API states for a service account id.
            yc_proto_types::validate(
                &yc_proto_types::yandex::cloud::iam::v1::CreateIamTokenForServiceAccountRequest {
                    service_account_id: service_account_id.clone(),
                },
            )
            .map_err(|status| anyhow::anyhow!("--service-account-id: {}", status.message))?;
            let key = crate::iam::keys::new_key_file(&service_account_id)?;
            crate::iam::keys::register(&key, &output, &iam)?;
            println!(
                "key {} of service account {} written to {} and added to {}",
                key.id,
                service_account_id,
                output.display(),
                iam.display()
            );
            Ok(())
        }
    }
}
