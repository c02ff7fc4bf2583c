//! Driving the `spse-totp` binary as a real process, for the command-line and multi-instance
//! tests. (Each test file uses part of it.)
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Every variable the service reads, removed so the tests see the defaults whatever the
/// environment they run in.
pub const SERVICE_VARIABLES: &[&str] = &[
    "SPSE_TOTP_CONFIG",
    "SPSE_TOTP_LISTEN",
    "SPSE_TOTP_DATABASE_URL",
    "SPSE_TOTP_MASTER_KEY",
    "SPSE_TOTP_MASTER_KEY_FILE",
    "SPSE_TOTP_AUDIT_KEY",
    "SPSE_TOTP_PUBLIC_BASE_URL",
    "SPSE_TOTP_LOG_FORMAT",
    "SPSE_TOTP_MAX_BODY_BYTES",
    "SPSE_TOTP_LOGIN_TTL_SECONDS",
    "SPSE_TOTP_ENROLLMENT_TTL_SECONDS",
    "SPSE_TOTP_MAX_FAILED_ATTEMPTS",
    "SPSE_TOTP_LOCK_MINUTES",
    "SPSE_TOTP_MAX_LOCK_MINUTES",
    "SPSE_TOTP_MAX_LOCKS",
    "SPSE_TOTP_WINDOW_BACK_STEPS",
    "SPSE_TOTP_NUMBER_MATCHING",
    "SPSE_TOTP_TRUST_FORWARDED_FOR",
    "SPSE_TOTP_TRUSTED_PROXIES",
    "SPSE_TOTP_TIME_ZONE",
    "SPSE_TOTP_ISSUER",
    "RUST_LOG",
];

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_spse-totp"))
}

/// `spse-totp ARGS` in `dir`, with a clean environment for the service's variables.
pub fn command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(binary());
    command.args(args).current_dir(dir);
    for name in SERVICE_VARIABLES {
        command.env_remove(name);
    }
    command
}

pub fn run(dir: &Path, args: &[&str]) -> Output {
    command(dir, args)
        .stdin(Stdio::null())
        .output()
        .expect("spse-totp runs")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn create_key(dir: &Path, role: &str, name: &str) -> String {
    create_key_with(dir, role, name, &[])
}

/// `spse-totp apikey create` with `envs` set (a database URL, say).
pub fn create_key_with(dir: &Path, role: &str, name: &str, envs: &[(&str, &str)]) -> String {
    let output = command(dir, &["apikey", "create", "--role", role, "--name", name])
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("spse-totp runs");
    assert!(
        output.status.success(),
        "apikey create failed: {}",
        text(&output.stderr)
    );
    text(&output.stdout).trim().to_owned()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `spse-totp serve` in the background; stderr goes to a file so a chatty log never blocks it.
pub struct Served {
    pub child: Child,
    pub base: String,
    stderr_path: PathBuf,
}

impl Served {
    pub fn start(dir: &Path) -> Served {
        Served::start_with(dir, &[])
    }

    /// Starts with `envs` set on top of the clean environment.
    pub fn start_with(dir: &Path, envs: &[(&str, &str)]) -> Served {
        Served::start_as(dir, envs, false)
    }

    /// [`Served::start_with`], taking part in the election of the instance that runs write
    /// requests: `SPSE_TOTP_CLUSTER_URL` is its own address.
    pub fn start_in_cluster(dir: &Path, envs: &[(&str, &str)]) -> Served {
        Served::start_as(dir, envs, true)
    }

    fn start_as(dir: &Path, envs: &[(&str, &str)], in_cluster: bool) -> Served {
        let port = free_port();
        let stderr_path = dir.join(format!("serve-{port}.stderr"));
        let mut command = command(dir, &["serve"]);
        if in_cluster {
            command.env("SPSE_TOTP_CLUSTER_URL", format!("http://127.0.0.1:{port}"));
        }
        let child = command
            .envs(envs.iter().copied())
            .env("SPSE_TOTP_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "SPSE_TOTP_PUBLIC_BASE_URL",
                format!("http://127.0.0.1:{port}"),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr_path).expect("a log file"))
            .spawn()
            .expect("spse-totp serve starts");
        Served {
            child,
            base: format!("http://127.0.0.1:{port}"),
            stderr_path,
        }
    }

    /// Polls `/healthz` for up to ten seconds.
    pub async fn wait_until_healthy(&mut self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("the child's status") {
                panic!(
                    "spse-totp serve exited early with {status}: {}",
                    self.stderr()
                );
            }
            let answer = client
                .get(format!("{}/healthz", self.base))
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if let Ok(response) = answer {
                if response.status() == reqwest::StatusCode::OK {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "spse-totp serve did not answer /healthz within 10 s: {}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Asks the server to stop as an init system would (SIGTERM) and waits up to ten seconds.
    /// Returns whether it stopped by itself with success.
    pub fn terminate(&mut self) -> bool {
        #[cfg(unix)]
        {
            let sent = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if sent {
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    if let Some(status) = self.child.try_wait().expect("the child's status") {
                        return status.success();
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // Never leave a server behind, even when an assertion failed half-way.
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One parameter of the activation QR code in a start-login answer, as a phone's camera reads it.
fn activation_param(login: &serde_json::Value, name: &str) -> String {
    let uri = login["activation"]["otpauth_uri"]
        .as_str()
        .expect("an activation QR code");
    let parsed = url::Url::parse(uri).expect("a URI");
    parsed
        .query_pairs()
        .find_map(|(k, v)| (k == name).then(|| v.into_owned()))
        .unwrap_or_else(|| panic!("no {name} in the activation URI"))
}

/// The TOTP secret in a start-login answer's activation QR code.
pub fn secret_of(login: &serde_json::Value) -> spse_totp_domain::totp::TotpSecret {
    spse_totp_domain::totp::TotpSecret::from_bytes(
        totp_rs::Secret::Encoded(activation_param(login, "secret"))
            .to_bytes()
            .expect("a base32 secret"),
    )
}

/// The enrollment id in a start-login answer's activation QR code, which a push-capable app
/// activates with.
pub fn enrollment_of(login: &serde_json::Value) -> String {
    activation_param(login, "enrollment_id")
}
