use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use spse_totp_device::{default_state_path, read_qr_png, DeviceClient, DeviceState, Enrollment};

#[derive(Debug, Parser)]
#[command(
    name = "spse-totp-device",
    version,
    about = "A command-line authenticator for the SPSE TOTP service: enroll from the QR code, \
             print codes, approve or deny logins"
)]
struct Cli {
    /// Where the device token and secret are kept (created with mode 0600).
    #[arg(long, global = true, env = "SPSE_TOTP_DEVICE_STATE")]
    state: Option<PathBuf>,
    /// Compute codes at this instant (RFC 3339) instead of now: for tests against a server
    /// running on a test clock.
    #[arg(long, global = true, hide = true)]
    at: Option<DateTime<Utc>>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Activate TOTP from the portal's QR code.
    Enroll {
        /// A PNG holding the QR code (a screenshot will do).
        #[arg(long, conflicts_with = "uri", required_unless_present = "uri")]
        qr_image: Option<PathBuf>,
        /// The otpauth://totp/... URI itself.
        #[arg(long)]
        uri: Option<String>,
        /// How the service lists this device.
        #[arg(long, default_value = "spse-totp-device")]
        label: String,
    },
    /// Print the current code.
    Code,
    /// List the logins waiting for approval.
    Pending {
        /// Wait up to this many seconds (at most 30) for one to start.
        #[arg(long, default_value_t = 0)]
        wait: u8,
    },
    /// Approve a login with the number the portal shows.
    Approve {
        login_id: String,
        #[arg(long)]
        number: Option<u8>,
    },
    /// Deny a login you did not start.
    Deny { login_id: String },
    /// Wait for logins and ask for each: the number shown on the portal to approve, n to deny.
    Watch {
        /// Stop after the first login answered.
        #[arg(long)]
        once: bool,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spse-totp-device: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let state_path = cli.state.clone().unwrap_or_else(default_state_path);
    let now = || cli.at.unwrap_or_else(Utc::now);
    let client = DeviceClient::new();
    match cli.command {
        Command::Enroll {
            qr_image,
            uri,
            label,
        } => {
            let uri = match (qr_image, uri) {
                (Some(path), _) => read_qr_png(&path)?,
                (None, Some(uri)) => uri,
                (None, None) => bail!("give --qr-image FILE or --uri otpauth://..."),
            };
            let enrollment = Enrollment::parse(&uri)?;
            let state = client.enroll(&enrollment, &label, now()).await?;
            state.save(&state_path)?;
            println!(
                "Akun ditambahkan: {} {} ({}); disimpan di {}",
                state.user_type,
                state.user_id,
                state.server,
                state_path.display()
            );
        }
        Command::Code => {
            let state = load(&state_path)?;
            println!("{}", state.code_at(now())?);
        }
        Command::Pending { wait } => {
            let state = load(&state_path)?;
            let logins = client.pending(&state, wait).await?;
            if logins.is_empty() {
                println!("Tidak ada login yang menunggu.");
            }
            for login in logins {
                println!("{}", describe(&login));
            }
        }
        Command::Approve { login_id, number } => {
            let state = load(&state_path)?;
            let answer = client.approve(&state, &login_id, number, now()).await?;
            println!("{}", answer["status"].as_str().unwrap_or("approved"));
        }
        Command::Deny { login_id } => {
            let state = load(&state_path)?;
            let answer = client.deny(&state, &login_id).await?;
            println!("{}", answer["status"].as_str().unwrap_or("denied"));
        }
        Command::Watch { once } => {
            let state = load(&state_path)?;
            watch(&client, &state, once, now).await?;
        }
    }
    Ok(())
}

fn load(path: &std::path::Path) -> anyhow::Result<DeviceState> {
    DeviceState::load(path).context("enroll first (spse-totp-device enroll --qr-image FILE)")
}

fn describe(login: &spse_totp_device::PendingLogin) -> String {
    format!(
        "{}  {}  dari {}  {}",
        login.login_id,
        login.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        login.client_ip.as_deref().unwrap_or("-"),
        login.user_agent.as_deref().unwrap_or("-"),
    )
}

/// The app's "Authorize Login" screen, on a terminal.
async fn watch(
    client: &DeviceClient,
    state: &DeviceState,
    once: bool,
    now: impl Fn() -> DateTime<Utc>,
) -> anyhow::Result<()> {
    let mut answered = std::collections::HashSet::new();
    let mut input = std::io::stdin().lock();
    println!(
        "Menunggu login untuk {} {} ...",
        state.user_type, state.user_id
    );
    loop {
        let logins = client.pending(state, 25).await?;
        let fresh: Vec<_> = logins
            .into_iter()
            .filter(|l| !answered.contains(&l.login_id))
            .collect();
        if fresh.is_empty() && !answered.is_empty() {
            // Only logins already answered (a refused approval stays pending): the long-poll
            // would return at once, so pause instead of spinning.
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        }
        for login in &fresh {
            println!("Authorize Login? {}", describe(login));
            print!("Ketik angka yang tampil di portal untuk mengizinkan, atau n untuk menolak: ");
            std::io::stdout().flush()?;
            let mut line = String::new();
            if input.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let line = line.trim();
            answered.insert(login.login_id.clone());
            let result = if line.eq_ignore_ascii_case("n") {
                client.deny(state, &login.login_id).await
            } else {
                let number = line.parse::<u8>().ok();
                client.approve(state, &login.login_id, number, now()).await
            };
            match result {
                Ok(answer) => println!("{}", answer["status"].as_str().unwrap_or("?")),
                Err(e) => println!("gagal: {e}"),
            }
            if once {
                return Ok(());
            }
        }
    }
}
