use clap::Parser;
use spse_totp_api::cli::{init_logging, run, Cli};
use spse_totp_api::Config;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match Config::load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("spse-totp: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    match run(cli, config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spse-totp: {e:#}");
            std::process::ExitCode::from(spse_totp_api::cli::exit_status(&e))
        }
    }
}
