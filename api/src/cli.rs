//! `spse-totp`: serve, migrate, create, list and revoke API keys, rebuild projections, print an
//! account's history, export and import the log, rotate the master key.
//! Every command that writes works on a fresh folder: opening the database creates and migrates
//! it. The commands that only read (`history`, `audit verify`, `export`, `apikey list`) never
//! create one, nor does `apikey revoke` (a new database holds no key to revoke): run from the
//! wrong folder they fail, naming the path they looked at.

use std::sync::Arc;

use clap::{Parser, Subcommand};
use spse_totp_commands::vault::VaultError;
use spse_totp_commands::{apikeys, SystemClock};
use spse_totp_domain::apikey::{self, Role, MAX_EXPIRES_IN_DAYS};
use spse_totp_domain::{AccountKey, UserId, UserType};
use spse_totp_projections::audit;
use spse_totp_projections::audit_log::summary;
use spse_totp_projections::{all_projectors, Decoded, ProjectionRunner};
use spse_totp_store::transfer;
use spse_totp_store::Database;

use crate::app::App;
use crate::config::{Config, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "spse-totp",
    version,
    about = "The SPSE TOTP second-factor service"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service.
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Manage API keys.
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
    },
    /// Manage the read models.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Write the event log and the sealed secrets as JSON Lines, to move to another database.
    Export {
        /// The file to write; standard output when omitted.
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
    },
    /// Load an export into this (empty) database, then rebuild the projections. The target must
    /// use the same master key as the source.
    Import {
        /// The export file, or - for standard input.
        input: std::path::PathBuf,
    },
    /// Print an account's whole TOTP history as a timeline.
    History {
        /// penyedia or non_penyedia
        user_type: String,
        /// The User ID (case-insensitive).
        user_id: String,
        /// Print only the events recorded up to this instant (RFC 3339), then the account's
        /// state as of it: status, device, lock, pending logins, every device it had.
        #[arg(long)]
        as_of: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Audit the event log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The reference portal under /demo (SPSE_TOTP_DEMO=true).
    Demo {
        #[command(subcommand)]
        command: DemoCommand,
    },
    /// Manage console operators (helpdesk, auditors, admins).
    Operator {
        #[command(subcommand)]
        command: OperatorCliCommand,
    },
    /// The master key every TOTP secret is sealed under.
    Masterkey {
        #[command(subcommand)]
        command: MasterkeyCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum MasterkeyCommand {
    /// Print the fingerprint of the configured key and the one the database records.
    Fingerprint,
    /// Re-seal every secret under a new key, online: instances with the old key or the new one
    /// keep working until it finishes; then only the new key opens the vault. Run it again to
    /// resume an interrupted rotation.
    Rotate {
        /// The new key (32 bytes, as 64 hex digits or 44 base64 characters), e.g. made with
        /// `openssl rand -base64 32`.
        #[arg(long)]
        new_key_file: std::path::PathBuf,
        /// Secrets re-sealed per write.
        #[arg(long, default_value_t = 500, hide = true)]
        batch_size: usize,
        /// Stop after this many batches, before switching over, as an interruption would (for
        /// tests of resuming).
        #[arg(long, hide = true)]
        stop_after_batches: Option<usize>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Add (or replace) a demo user in SPSE_TOTP_DEMO_USERS. The password is read from the
    /// first line of standard input and stored as an Argon2id hash.
    AddUser {
        #[arg(long, value_parser = ["penyedia", "non_penyedia"])]
        user_type: String,
        #[arg(long)]
        user_id: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum OperatorCliCommand {
    /// Create an operator and print their one-time setup link (valid 24 hours).
    Create {
        #[arg(long, value_parser = ["helpdesk", "auditor", "admin"])]
        role: String,
        #[arg(long)]
        username: String,
        /// The operator's full name, as the console and the audit trail show it.
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: String,
    },
    /// List every operator with role, status and last sign-in.
    List,
    /// Stop an operator signing in; their open sessions end at once.
    Disable { username: String },
    /// Remove an operator's TOTP device and print a new setup link to activate another.
    ResetTotp { username: String },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Re-compute every stream's hash chain; exits with status 1 at the first broken link.
    Verify,
}

#[derive(Debug, Subcommand)]
pub enum ApikeyCommand {
    /// Create a key; it is printed once and stored only as a digest.
    Create {
        #[arg(long, value_parser = ["portal", "helpdesk", "auditor"])]
        role: String,
        #[arg(long)]
        name: String,
        /// The key stops working this many days from now (1 to 3650); without it, it works
        /// until revoked.
        #[arg(
            long,
            value_name = "N",
            allow_negative_numbers = true,
            value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_EXPIRES_IN_DAYS))
        )]
        expires_in_days: Option<u32>,
    },
    /// List every key: id, role, name, created, last used, expires (never the key itself).
    List {
        /// One JSON object per key, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key: every instance refuses it within 2 seconds, for good.
    Revoke {
        /// The key's id, as `apikey list` shows it.
        id: uuid::Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Empty every read model and replay the whole log into it.
    Rebuild,
}

/// The exit status for a failed command: 2 for what the operator must fix in the configuration
/// before anything can run (a master key that is not the database's), 1 for everything else.
pub fn exit_status(error: &anyhow::Error) -> u8 {
    let wrong_key = error.chain().any(|cause| {
        cause
            .downcast_ref::<VaultError>()
            .is_some_and(VaultError::is_wrong_key)
            || cause.downcast_ref::<crate::app::StartError>().is_some_and(
                |e| matches!(e, crate::app::StartError::MasterKey(v) if v.is_wrong_key()),
            )
            || cause
                .downcast_ref::<spse_totp_commands::rotation::RotationError>()
                .is_some_and(|e| {
                    matches!(e, spse_totp_commands::rotation::RotationError::Vault(v) if v.is_wrong_key())
                })
    });
    if wrong_key {
        2
    } else {
        1
    }
}

pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=info"));
    // Colour codes only for a person at a terminal: in a file or a journal they are noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

pub async fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            config.open_database().await?;
            println!("database at {} is migrated", config.database_url);
            Ok(())
        }
        Command::Apikey {
            command:
                ApikeyCommand::Create {
                    role,
                    name,
                    expires_in_days,
                },
        } => {
            let role: Role = role.parse()?;
            let now = chrono::Utc::now();
            let expires_at = expires_in_days
                .map(|days| apikey::expiry(now, days))
                .transpose()
                .map_err(|e| anyhow::anyhow!("--expires-in-days: {e}"))?;
            let db = config.open_database().await?;
            let created = apikeys::create_expiring_as(
                db.events.as_ref(),
                &name,
                role,
                expires_at,
                apikeys::operator_metadata(&shell_operator()),
                now,
            )
            .await?;
            // Make the key usable at once, even by a server that is already running.
            ProjectionRunner::new(&db, all_projectors())?
                .catch_up()
                .await?;
            eprintln!(
                "created {role} key \"{name}\" ({}); it is shown once:",
                created.key_id
            );
            println!("{}", created.key);
            Ok(())
        }
        Command::Apikey {
            command: ApikeyCommand::List { json },
        } => {
            let db = config.open_existing_database().await?;
            let keys = spse_totp_projections::api_keys::list(&db.pool).await?;
            print_keys(&keys, json, chrono::Utc::now())?;
            Ok(())
        }
        Command::Apikey {
            command: ApikeyCommand::Revoke { id },
        } => {
            let db = config.open_existing_database().await?;
            apikeys::revoke(
                db.events.as_ref(),
                id,
                &shell_operator(),
                chrono::Utc::now(),
            )
            .await?;
            // Recorded in the key table now, so a running server refuses the key at once (after
            // its one-second cache), rather than when its follower next passes by.
            ProjectionRunner::new(&db, all_projectors())?
                .catch_up()
                .await?;
            println!("API key {id} is revoked; every instance refuses it within 2 seconds");
            Ok(())
        }
        Command::Projections {
            command: ProjectionsCommand::Rebuild,
        } => {
            let db = config.open_database().await?;
            let runner = ProjectionRunner::new(&db, all_projectors())?;
            let position = runner.rebuild().await?;
            println!("projections rebuilt up to position {position}");
            Ok(())
        }
        Command::Export { output } => {
            let db = config.open_existing_database().await?;
            let counts = match output {
                Some(path) => {
                    let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
                    transfer::export(&db, &mut file, chrono::Utc::now()).await?
                }
                None => {
                    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
                    transfer::export(&db, &mut stdout, chrono::Utc::now()).await?
                }
            };
            eprintln!(
                "exported {} events and {} sealed secrets",
                counts.events, counts.sealed_secrets
            );
            Ok(())
        }
        Command::Import { input } => {
            let from_stdin = input.as_os_str() == "-";
            // A file is read twice: first for the keys its secrets are sealed under, so the wrong
            // key is refused before anything is written.
            if !from_stdin {
                let sealed_under = transfer::sealed_key_ids(std::io::BufReader::new(
                    std::fs::File::open(&input)?,
                ))?;
                if let Some(expected) = sealed_under.iter().next() {
                    check_import_key(&config, expected)?;
                }
            }
            let db = config.open_database().await?;
            let counts = if input.as_os_str() == "-" {
                transfer::import(&db, std::io::stdin().lock()).await?
            } else {
                transfer::import(&db, std::io::BufReader::new(std::fs::File::open(&input)?)).await?
            };
            // From standard input the keys are known only now.
            if let Some(expected) = spse_totp_commands::vault::recorded_key_id(&db).await? {
                check_import_key(&config, &expected)?;
            }
            let position = ProjectionRunner::new(&db, all_projectors())?
                .rebuild()
                .await?;
            println!(
                "imported {} events and {} sealed secrets; projections rebuilt up to position {position}",
                counts.events, counts.sealed_secrets
            );
            Ok(())
        }
        Command::History {
            user_type,
            user_id,
            as_of,
        } => {
            let key = AccountKey::new(user_type.parse::<UserType>()?, UserId::parse(&user_id)?);
            let db = config.open_existing_database().await?;
            print_history(&db, &key, as_of).await?;
            if let Some(as_of) = as_of {
                print_state_as_of(&db, &key, as_of).await?;
            }
            Ok(())
        }
        Command::Demo {
            command:
                DemoCommand::AddUser {
                    user_type,
                    user_id,
                    name,
                    email,
                },
        } => {
            eprintln!("password for {user_id} (one line on standard input):");
            let mut password = String::new();
            std::io::stdin().read_line(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']);
            let path = &config.demo.users_file;
            let user =
                crate::demo::users::add_user(path, &user_type, &user_id, &name, &email, password)?;
            println!(
                "demo user {} ({}) written to {}",
                user.user_id,
                user.user_type,
                path.display()
            );
            Ok(())
        }
        Command::Audit {
            command: AuditCommand::Verify,
        } => {
            let db = config.open_existing_database().await?;
            let key = verify_key(&config)?;
            if key.is_none() {
                eprintln!(
                    "warning: the signed checkpoints are NOT checked (a log cut short is not detected): \
                     no SPSE_TOTP_AUDIT_KEY and no master key (SPSE_TOTP_MASTER_KEY, or the file {})",
                    config.master_key_file.display()
                );
            }
            let checkpoints = key.as_ref().map(|key| audit::CheckpointCheck {
                pool: &db.pool,
                key,
            });
            let report = audit::verify_signed(db.log_source(), checkpoints).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            // The error makes the exit status non-zero, which is what scripts check.
            if let Some(broken) = &report.broken {
                anyhow::bail!(
                    "the log is BROKEN in stream {} at position {} (version {}): {}",
                    broken.stream,
                    broken.position,
                    broken.version,
                    broken.reason
                );
            }
            if let Some(broken) = &report.broken_checkpoint {
                let what = if report.truncated {
                    "the log is TRUNCATED"
                } else {
                    "a signed checkpoint is BROKEN"
                };
                anyhow::bail!(
                    "{what}: checkpoint of position {} signed at {}: {}",
                    broken.position,
                    broken.signed_at,
                    broken.reason
                );
            }
            let anchored = match &report.newest_checkpoint {
                Some(c) => format!(
                    "; {} signed checkpoints hold, the newest at position {} (signed {})",
                    report.checkpoints, c.position, c.signed_at
                ),
                None if key.is_some() => "; no signed checkpoint yet".to_owned(),
                None => String::new(),
            };
            eprintln!(
                "ok: {} events in {} streams chain correctly, head at position {}{anchored}",
                report.checked, report.streams, report.head
            );
            Ok(())
        }
        Command::Operator { command } => crate::console::cli::run(command, &config).await,
        Command::Masterkey {
            command: MasterkeyCommand::Fingerprint,
        } => print_fingerprints(&config).await,
        Command::Masterkey {
            command:
                MasterkeyCommand::Rotate {
                    new_key_file,
                    batch_size,
                    stop_after_batches,
                },
        } => rotate_master_key(&config, &new_key_file, batch_size, stop_after_batches).await,
    }
}

/// Who runs a command at the server's shell, as its events record them.
fn shell_operator() -> String {
    std::env::var("USER").unwrap_or_else(|_| "operator".to_owned())
}

/// The keys as an aligned table (times in UTC), or as JSON Lines with `--json`.
fn print_keys(
    keys: &[spse_totp_projections::api_keys::ApiKeyListing],
    json: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    let time = |at: Option<chrono::DateTime<chrono::Utc>>| {
        at.map(|at| at.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_else(|| "-".to_owned())
    };
    let status = |key: &spse_totp_projections::api_keys::ApiKeyListing| match apikey::check(
        key.expires_at,
        key.revoked_at,
        now,
    ) {
        Ok(()) => "active",
        Err(apikey::KeyRefusal::Revoked) => "revoked",
        Err(apikey::KeyRefusal::Expired) => "expired",
    };
    if json {
        for key in keys {
            let line = serde_json::json!({
                "id": key.key_id,
                "role": key.role,
                "name": key.name,
                "created_at": key.created_at,
                "last_used_at": key.last_used_at,
                "expires_at": key.expires_at,
                "revoked_at": key.revoked_at,
                "status": status(key),
            });
            println!("{line}");
        }
        return Ok(());
    }
    let header = [
        "ID",
        "ROLE",
        "NAME",
        "CREATED",
        "LAST USED",
        "EXPIRES",
        "STATUS",
    ]
    .map(str::to_owned);
    let rows: Vec<[String; 7]> = keys
        .iter()
        .map(|key| {
            [
                key.key_id.to_string(),
                key.role.clone(),
                key.name.clone(),
                time(Some(key.created_at)),
                time(key.last_used_at),
                time(key.expires_at),
                status(key).to_owned(),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ");
        println!("{}", line.trim_end());
    }
    if rows.is_empty() {
        println!("(no API keys; create one with `spse-totp apikey create`)");
    }
    Ok(())
}

/// The configured key's fingerprint, without ever creating a key file.
fn configured_fingerprint(config: &Config) -> Result<Option<String>, VaultError> {
    if config.master_key.is_none() && !config.master_key_file.exists() {
        return Ok(None);
    }
    Ok(Some(crate::app::master_key(config)?.key_id()))
}

async fn print_fingerprints(config: &Config) -> anyhow::Result<()> {
    match configured_fingerprint(config)? {
        Some(id) if config.master_key.is_some() => {
            println!("configured key:  {id} (SPSE_TOTP_MASTER_KEY)")
        }
        Some(id) => println!(
            "configured key:  {id} ({})",
            config.master_key_file.display()
        ),
        None => println!(
            "configured key:  none (SPSE_TOTP_MASTER_KEY is not set and {} does not exist)",
            config.master_key_file.display()
        ),
    }
    let db = config.open_existing_database().await?;
    let state = spse_totp_commands::vault::key_state(&db).await?;
    match &state.fingerprint {
        Some(id) => println!("database:        {id}"),
        None => println!("database:        none yet (nothing sealed)"),
    }
    if let Some(to) = &state.rotating_to {
        println!("rotating to:     {to} (run `spse-totp masterkey rotate` again to finish)");
    }
    Ok(())
}

async fn rotate_master_key(
    config: &Config,
    new_key_file: &std::path::Path,
    batch_size: usize,
    stop_after_batches: Option<usize>,
) -> anyhow::Result<()> {
    use spse_totp_commands::rotation::{Begun, Rotation};
    let text = std::fs::read_to_string(new_key_file).map_err(|source| VaultError::KeyFile {
        path: new_key_file.display().to_string(),
        source,
    })?;
    let new_key = spse_totp_commands::vault::MasterKey::parse(&text)?;
    let db = config.open_existing_database().await?;
    let keys = crate::app::master_key_for(config, &db).await?;
    let metadata = spse_totp_store::EventMetadata {
        actor: spse_totp_store::Actor::Operator {
            name: shell_operator(),
        },
        ..spse_totp_store::EventMetadata::system()
    };
    let rotation = match Rotation::begin(&db, &keys, new_key, metadata, chrono::Utc::now()).await? {
        Begun::Rotation(rotation) => rotation,
        Begun::Finished(done) => {
            println!(
                "master key rotated from {} to {}: {} secrets sealed under the new key only",
                done.from, done.to, done.secrets
            );
            return Ok(());
        }
    };
    eprintln!(
        "rotating the master key from {} to {}: instances with either key keep working until \
         it finishes",
        rotation.from_fingerprint(),
        rotation.to_fingerprint()
    );
    if let Some(batches) = stop_after_batches {
        let mut resealed = 0;
        for _ in 0..batches {
            resealed += rotation.reseal_batch(batch_size.max(1)).await?;
        }
        eprintln!("stopped after {resealed} secrets re-sealed; run the command again to finish");
        return Ok(());
    }
    let done = rotation
        .run(batch_size, chrono::Utc::now, |n| {
            if n % 10_000 == 0 {
                eprintln!("{n} secrets re-sealed");
            }
        })
        .await?;
    let projections = ProjectionRunner::new(&db, all_projectors())?;
    projections.catch_up().await?;
    println!(
        "master key rotated from {} to {}: {} secrets sealed under the new key only ({} \
         re-sealed by this run); instances still on the old key now fail: restart them with the \
         new key",
        done.from, done.to, done.secrets, done.resealed
    );
    Ok(())
}

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen on {address}: {source}; another process may hold the port, or set \
     SPSE_TOTP_LISTEN to another address"
)]
pub struct ListenError {
    pub address: std::net::SocketAddr,
    pub source: std::io::Error,
}

/// The key `audit verify` checks the signed checkpoints with: `SPSE_TOTP_AUDIT_KEY`, or the one
/// derived from the master key when that is at hand. A read-only command never creates a key
/// file, so without either it checks the chain alone (and says so).
fn verify_key(
    config: &Config,
) -> Result<Option<spse_totp_projections::audit_checkpoints::AuditKey>, VaultError> {
    if let Some(key) = &config.audit_key {
        return Ok(Some(key.clone()));
    }
    if config.master_key.is_none() && !config.master_key_file.exists() {
        return Ok(None);
    }
    let master = crate::app::master_key(config)?;
    Ok(Some(crate::app::audit_key(config, &master)))
}

/// The configured master key must be the one an export's secrets are sealed under; none is ever
/// created for an import.
fn check_import_key(config: &Config, expected: &str) -> Result<(), VaultError> {
    if config.master_key.is_none() && !config.master_key_file.exists() {
        return Err(VaultError::KeyMissing {
            expected: expected.to_owned(),
            path: config.master_key_file.display().to_string(),
        });
    }
    let key = crate::app::master_key(config)?;
    if key.key_id() != expected {
        return Err(VaultError::KeyMismatch {
            expected: expected.to_owned(),
            actual: key.key_id(),
        });
    }
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    // The port first: a busy one must stop the start before it creates a database or a key file.
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| ListenError {
            address: listen,
            source: e,
        })?;
    let app = App::start(config, Arc::new(SystemClock)).await?;
    tracing::info!(address = %listen, "serving");
    app.serve(listener, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

async fn print_history(
    db: &Database,
    key: &AccountKey,
    as_of: Option<chrono::DateTime<chrono::Utc>>,
) -> anyhow::Result<()> {
    let stream = key.stream_name();
    let mut from = 1;
    let mut printed = 0usize;
    loop {
        let filter = audit::HistoryFilter {
            after_version: from - 1,
            to: as_of,
            ..audit::HistoryFilter::default()
        };
        let page = audit::history_page(db.log_source(), &stream, &filter, 1000).await?;
        let Some(last) = page.last().map(|e| e.version) else {
            break;
        };
        for event in &page {
            let decoded = Decoded::decode(event).unwrap_or(Decoded::Other);
            println!(
                "{}  #{:<6} {:<18} {:<9} {:<22} {}",
                event.recorded_at.format("%Y-%m-%d %H:%M:%S%.3fZ"),
                event.version,
                event.event_type,
                event.metadata.actor.kind(),
                event.metadata.actor.display_name(),
                summary(&decoded, &event.event_type),
            );
        }
        printed += page.len();
        from = last + 1;
    }
    if printed == 0 {
        println!("no history for {key}");
    }
    Ok(())
}

async fn print_state_as_of(
    db: &Database,
    key: &AccountKey,
    as_of: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    let history = audit::history_as_of(db.log_source(), &key.stream_name(), as_of)
        .await?
        .unwrap_or_default();
    let state = history.state_as_of(as_of);
    println!();
    println!("state of {key} as of {}:", as_of.to_rfc3339());
    println!("{}", serde_json::to_string_pretty(&state)?);
    Ok(())
}
