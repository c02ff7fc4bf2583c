//! `spse-totp operator ...`: the command line's side of the console's operators. Each change is
//! an event in the operator's stream with the person at the server's shell as the actor.

use std::sync::Arc;

use anyhow::Context as _;
use spse_totp_commands::operators::OperatorService;
use spse_totp_commands::SystemClock;
use spse_totp_domain::operator::{OperatorRole, Username};
use spse_totp_projections::{all_projectors, operators, ProjectionRunner};
use spse_totp_store::{Actor, EventMetadata};

use crate::app::master_key_for;
use crate::cli::OperatorCliCommand;
use crate::config::Config;

/// The setup page a token opens.
pub fn setup_link(public_base_url: &str, token: &str) -> String {
    format!(
        "{}/console/setup?token={token}",
        public_base_url.trim_end_matches('/')
    )
}

pub async fn run(command: OperatorCliCommand, config: &Config) -> anyhow::Result<()> {
    let db = config.open_database().await?;
    let keys = master_key_for(config, &db).await?;
    let service = OperatorService::new(&db, &keys, Arc::new(SystemClock), config.policy.clone());
    let shell_user = std::env::var("USER").unwrap_or_else(|_| "operator".to_owned());
    let metadata = EventMetadata {
        actor: Actor::Operator { name: shell_user },
        ..EventMetadata::system()
    };
    let runner = ProjectionRunner::new(&db, all_projectors())?;
    match command {
        OperatorCliCommand::Create {
            role,
            username,
            name,
            email,
        } => {
            let role: OperatorRole = role.parse()?;
            let username = Username::parse(&username)?;
            let (token, _) = service
                .create(&username, &name, &email, role, &metadata)
                .await
                .with_context(|| format!("creating operator {username}"))?;
            runner.catch_up().await?;
            eprintln!(
                "created {role} operator {username}; send them this link (one use, valid 24 hours):"
            );
            println!("{}", setup_link(&config.public_base_url, &token));
        }
        OperatorCliCommand::List => {
            runner.catch_up().await?;
            let now = service.now();
            println!(
                "{:<24} {:<9} {:<9} {:<26} {:<21} NAME",
                "USERNAME", "ROLE", "STATUS", "EMAIL", "LAST SIGN-IN"
            );
            for op in operators::list(&db.pool).await? {
                let status = match op.locked_at(now) {
                    Some(_) if op.status == "active" => "locked".to_owned(),
                    _ => op.status.clone(),
                };
                println!(
                    "{:<24} {:<9} {:<9} {:<26} {:<21} {}",
                    op.username,
                    op.role.as_str(),
                    status,
                    op.email,
                    op.last_sign_in_at
                        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                        .unwrap_or_else(|| "-".to_owned()),
                    op.name
                );
            }
        }
        OperatorCliCommand::Disable { username } => {
            let username = Username::parse(&username)?;
            service
                .disable(&username, &metadata)
                .await
                .with_context(|| format!("disabling operator {username}"))?;
            runner.catch_up().await?;
            eprintln!("operator {username} is disabled; their sessions have ended");
        }
        OperatorCliCommand::ResetTotp { username } => {
            let username = Username::parse(&username)?;
            let (token, _) = service
                .reset_totp(&username, &metadata)
                .await
                .with_context(|| format!("resetting TOTP of operator {username}"))?;
            runner.catch_up().await?;
            eprintln!(
                "operator {username}'s TOTP is reset and any bound device unbound; they activate a new device on this link (valid 24 hours):"
            );
            println!("{}", setup_link(&config.public_base_url, &token));
        }
    }
    Ok(())
}
