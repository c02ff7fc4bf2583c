//! `spse-totp-bench`: starts the service and drives virtual users through a login over real
//! HTTP (`--flow device`: start-login -> device approve -> status; `--flow code`: start-login ->
//! the portal relays the code typed from a standard authenticator), then compares a fresh account
//! with one whose history holds 100,000 events. Given a PostgreSQL URL it runs SQLite first and
//! then PostgreSQL, in one invocation on one machine, and prints the ratio of their rates.
//!
//! The server runs on its own runtime (as it would in its own process) and durably commits
//! every event (SQLite WAL, synchronous=FULL). Its clock is a test clock that the benchmark moves
//! 30 s forward every `--tick-ms`: RFC 6238's replay rule lets one account approve at most once per
//! 30-second step, so without moving time a benchmark would measure the calendar, not the service.
//! Everything else the server does is what it does for real users.
//!
//! Run: `cargo run --release -p spse-totp-tests --bin spse-totp-bench -- --help`

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Parser;
use serde_json::{json, Value};
use spse_totp_api::{App, Config};
use spse_totp_commands::vault::MasterKey;
use spse_totp_commands::{apikeys, Clock, ManualClock};
use spse_totp_domain::account::CancelReason;
use spse_totp_domain::apikey::Role;
use spse_totp_domain::{AccountEvent, AccountKey, LoginId, UserId, UserType};
use spse_totp_store::{Actor, EventMetadata, ExpectedVersion, NewEvent, StoreError};
use spse_totp_tests::{settle_mail, start_instant, Authenticator};
use sqlx::postgres::PgPoolOptions;

/// The login the virtual users go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Flow {
    /// The portal starts the login and relays the code the user typed from a standard
    /// authenticator app (two requests).
    Code,
    /// The portal starts the login, the push-capable app approves it through the device API,
    /// the portal reads the outcome (three requests).
    Device,
}

/// How the benchmark, standing in for the load balancer, spreads requests over the instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Balancer {
    /// Every request to the next instance in turn, so one login's requests cross them.
    RoundRobin,
    /// Write requests to the instances whose `GET /activez` answered 200 at the last check
    /// (every half second, as a load balancer's health check), reads to every instance in turn.
    WritesToActive,
}

#[derive(Debug, Parser)]
#[command(about = "Load benchmark for the SPSE TOTP service")]
struct Args {
    /// The login flow the virtual users run.
    #[arg(long, value_enum, default_value_t = Flow::Device)]
    flow: Flow,
    /// Concurrent virtual users.
    #[arg(long, default_value_t = 64)]
    users: usize,
    /// Accounts each virtual user rotates through.
    #[arg(long, default_value_t = 16)]
    accounts_per_user: usize,
    /// Length of the measured load phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Events in the long account's history.
    #[arg(long, default_value_t = 100_000)]
    history: usize,
    /// Sequential flows measured on the fresh and the long account.
    #[arg(long, default_value_t = 1000)]
    history_flows: usize,
    /// Real milliseconds per 30-second step of the server's clock.
    #[arg(long, default_value_t = 100)]
    tick_ms: u64,
    /// A fresh SQLite file in a temporary folder is always benchmarked. A `postgres://` URL adds a
    /// run on that database after it (in a schema of its own, dropped afterwards); a `sqlite://`
    /// URL benchmarks that file instead of the temporary one.
    #[arg(long)]
    database_url: Option<String>,
    /// Service instances on the PostgreSQL database (SQLite always runs one). Requests go to
    /// them in turn, as from a round-robin load balancer, so one login's requests cross them.
    #[arg(long, default_value_t = 1)]
    instances: usize,
    /// With several instances: each appends for itself, instead of forwarding its write requests
    /// to the elected active instance (`SPSE_TOTP_CLUSTER_URL`).
    #[arg(long)]
    no_forwarding: bool,
    /// With several instances: how requests are spread over them.
    #[arg(long, value_enum, default_value_t = Balancer::RoundRobin)]
    balancer: Balancer,
}

struct Target {
    /// One per instance.
    bases: Vec<String>,
    turn: std::sync::atomic::AtomicUsize,
    balancer: Balancer,
    /// With [`Balancer::WritesToActive`]: which instances answered 200 at the last check.
    runs_writes: Vec<std::sync::atomic::AtomicBool>,
    key: String,
    client: reqwest::Client,
    clock: Arc<ManualClock>,
}

#[derive(Default)]
struct Samples {
    flow: Vec<Duration>,
    start: Vec<Duration>,
    /// The device's approval, or the relayed code.
    verify: Vec<Duration>,
    /// The device flow's status read (empty in the code flow).
    status: Vec<Duration>,
}

impl Samples {
    fn merge(&mut self, other: Samples) {
        self.flow.extend(other.flow);
        self.start.extend(other.start);
        self.verify.extend(other.verify);
        self.status.extend(other.status);
    }
}

/// What one engine's run measured, for the comparison at the end.
struct Report {
    engine: &'static str,
    logins_per_second: f64,
    flow_p50: f64,
    flow_p99: f64,
    bytes_per_event: f64,
}

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1].as_secs_f64() * 1000.0
}

fn line(name: &str, samples: &mut [Duration]) -> String {
    format!(
        "{name:<22} p50 {:>7.2} ms   p99 {:>7.2} ms   (n={})",
        percentile(samples, 50.0),
        percentile(samples, 99.0),
        samples.len()
    )
}

impl Target {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let base = self.base_for(&method);
        let mut request = self.client.request(method, format!("{base}{path}"));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// The instance a request goes to. Writes go to the active instance when the balancer
    /// knows one; with none known (between an active instance's loss and the next check), to
    /// every instance in turn, as reads do.
    fn base_for(&self, method: &reqwest::Method) -> &str {
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let write = !matches!(*method, reqwest::Method::GET | reqwest::Method::HEAD);
        if write && self.balancer == Balancer::WritesToActive {
            let active = || {
                self.bases
                    .iter()
                    .zip(&self.runs_writes)
                    .filter(|(_, here)| here.load(Ordering::Relaxed))
                    .map(|(base, _)| base)
            };
            let count = active().count();
            if let Some(base) = active().nth(turn % count.max(1)) {
                return base;
            }
        }
        &self.bases[turn % self.bases.len()]
    }

    /// Until the load ends: asks each instance's `/activez` every half second.
    async fn check_active(self: Arc<Self>) {
        loop {
            for (base, here) in self.bases.iter().zip(&self.runs_writes) {
                let answer = self.client.get(format!("{base}/activez")).send().await;
                let active = answer.is_ok_and(|a| a.status() == reqwest::StatusCode::OK);
                here.store(active, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The write requests the instances passed on to the active one so far, from their
    /// `/metrics`.
    async fn forwarded(&self) -> anyhow::Result<u64> {
        const SERIES: &str = "spse_totp_forwarded_requests_total{outcome=\"answered\"} ";
        let mut total = 0;
        for base in &self.bases {
            let metrics = self
                .client
                .get(format!("{base}/metrics"))
                .send()
                .await?
                .text()
                .await?;
            total += metrics
                .lines()
                .find_map(|line| line.strip_prefix(SERIES))
                .map_or(Ok(0), |n| n.trim().parse::<u64>())?;
        }
        Ok(total)
    }

    /// `POST /v1/logins` as the portal: the login and its id.
    async fn start_login(&self, user_id: &str) -> anyhow::Result<(Value, String)> {
        let (status, login) = self
            .send(
                reqwest::Method::POST,
                "/v1/logins",
                Some(&self.key),
                Some(json!({"user_type": "penyedia", "user_id": user_id, "client_ip": "10.0.0.1", "user_agent": "bench"})),
            )
            .await?;
        if status != 201 {
            bail!("start login: {status} {login}");
        }
        let login_id = login["login_id"]
            .as_str()
            .ok_or_else(|| anyhow!("no login_id"))?
            .to_owned();
        Ok((login, login_id))
    }

    /// `POST /v1/logins/{id}/code` with the phone's current code; fails unless approved.
    async fn submit_code(&self, login_id: &str, phone: &Authenticator) -> anyhow::Result<()> {
        let (status, body) = self
            .send(
                reqwest::Method::POST,
                &format!("/v1/logins/{login_id}/code"),
                Some(&self.key),
                Some(json!({"code": phone.code_at(self.clock.now())})),
            )
            .await?;
        if status != 200 || body["status"] != "approved" {
            bail!("code: {status} {body}");
        }
        Ok(())
    }

    /// Activates an account for `flow`: with a standard authenticator (the first code typed at
    /// the portal) or with the push-capable app. Returns the phone.
    async fn activate(&self, user_id: &str, flow: Flow) -> anyhow::Result<Authenticator> {
        let (login, login_id) = self.start_login(user_id).await?;
        let mut phone = Authenticator::scan(&login);
        if flow == Flow::Code {
            self.submit_code(&login_id, &phone).await?;
            return Ok(phone);
        }
        let (status, body) = self
            .send(
                reqwest::Method::POST,
                "/v1/device/activations",
                None,
                Some(json!({"enrollment_id": phone.enrollment_id, "code": phone.code_at(self.clock.now()), "device_label": "bench"})),
            )
            .await?;
        if status != 201 {
            bail!("activation: {status} {body}");
        }
        phone.device_token = body["device_token"].as_str().map(str::to_owned);
        Ok(phone)
    }

    /// One user's login: the portal starts it, then either relays the typed code (its answer is
    /// the verdict), or the phone approves it and the portal reads it.
    async fn flow(
        &self,
        flow: Flow,
        user_id: &str,
        phone: &Authenticator,
        samples: &mut Samples,
    ) -> anyhow::Result<()> {
        let began = Instant::now();
        let (login, login_id) = self.start_login(user_id).await?;
        let started = Instant::now();
        if flow == Flow::Code {
            self.submit_code(&login_id, phone).await?;
            let done = Instant::now();
            samples.start.push(started - began);
            samples.verify.push(done - started);
            samples.flow.push(done - began);
            return Ok(());
        }
        let token = phone
            .device_token
            .as_deref()
            .ok_or_else(|| anyhow!("no device token"))?;
        let (status, body) = self
            .send(
                reqwest::Method::POST,
                &format!("/v1/device/logins/{login_id}/approve"),
                Some(token),
                Some(json!({"code": phone.code_at(self.clock.now()), "number": login["approval_number"]})),
            )
            .await?;
        let approved = Instant::now();
        if status != 200 {
            bail!("approve: {status} {body}");
        }
        let (status, body) = self
            .send(
                reqwest::Method::GET,
                &format!("/v1/logins/{login_id}"),
                Some(&self.key),
                None,
            )
            .await?;
        let done = Instant::now();
        if status != 200 || body["status"] != "approved" {
            bail!("status: {status} {body}");
        }
        samples.start.push(started - began);
        samples.verify.push(approved - started);
        samples.status.push(done - approved);
        samples.flow.push(done - began);
        Ok(())
    }
}

fn step_of(clock: &ManualClock) -> i64 {
    clock.now().timestamp() / 30
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Off unless asked for: `SPSE_TOTP_BENCH_LOG=sqlx::query=debug` prints every statement the
    // server runs, with its time, to count the round trips a login takes.
    if let Ok(filter) = std::env::var("SPSE_TOTP_BENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let dir = tempfile::tempdir()?;
    let (sqlite_url, postgres_url) = match args.database_url.clone() {
        Some(url) if url.starts_with("postgres") => (None, Some(url)),
        other => (other, None),
    };
    let sqlite_url =
        sqlite_url.unwrap_or_else(|| format!("sqlite://{}/bench.db", dir.path().display()));
    if args.instances > 1 && postgres_url.is_none() {
        bail!("--instances above 1 needs a PostgreSQL --database-url");
    }
    let mut reports = vec![run_engine(&args, &sqlite_url, 1, dir.path())?];
    if let Some(url) = postgres_url {
        println!();
        reports.push(run_engine(&args, &url, args.instances.max(1), dir.path())?);
    }
    if let [sqlite, postgres] = reports.as_slice() {
        println!();
        for report in &reports {
            println!(
                "{:<10} {:>7.0} verified logins/s   flow p50 {:>6.2} ms   p99 {:>6.2} ms   {:>5.0} bytes/event",
                report.engine,
                report.logins_per_second,
                report.flow_p50,
                report.flow_p99,
                report.bytes_per_event
            );
        }
        println!(
            "PostgreSQL/SQLite: rate {:.2}, flow p99 {:.2}, bytes per event {:.2}",
            postgres.logins_per_second / sqlite.logins_per_second,
            postgres.flow_p99 / sqlite.flow_p99,
            postgres.bytes_per_event / sqlite.bytes_per_event
        );
    }
    Ok(())
}

/// Benchmarks one database: starts `instances` servers on it, runs the load and the history
/// comparison, and reports the load's figures. A PostgreSQL run gets a fresh schema of its own,
/// so the bytes per event count this run's tables alone; it is dropped afterwards.
fn run_engine(
    args: &Args,
    base_url: &str,
    instances: usize,
    folder: &std::path::Path,
) -> anyhow::Result<Report> {
    let clock = Arc::new(ManualClock::starting_at(start_instant()));
    let engine = if base_url.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite"
    };

    // The server, on a runtime of its own.
    // Named, so a profiler tells the server's share of the two cores from the load's.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("server-rt")
        .enable_all()
        .build()?;
    let schema = match engine {
        "PostgreSQL" => Some(server_rt.block_on(fresh_schema(base_url))?),
        _ => None,
    };
    let database_url = match &schema {
        Some(schema) => {
            let separator = if base_url.contains('?') { '&' } else { '?' };
            format!("{base_url}{separator}options=-c%20search_path%3D{schema}")
        }
        None => base_url.to_owned(),
    };
    let master_key = MasterKey::generate().to_base64();
    // Activation notices are mailed too: into the benchmark's own folder.
    let outbox = folder.join(format!("outbox-{}", engine.to_lowercase()));
    // A send under way claims its message for a while on the server's clock. On a clock this
    // fast a production claim would lapse within a real second: stretch it by the clock's
    // speed-up, so a slow send is not taken up again by another instance.
    let speed_up = i32::try_from(30_000 / args.tick_ms.max(1)).unwrap_or(i32::MAX);
    let real_time_claim = spse_totp_api::config::MailConfig::default().claim_for * speed_up.max(1);
    let (bases, key, services) = server_rt.block_on({
        let clock = Arc::clone(&clock);
        let database_url = database_url.clone();
        async move {
            let mut bases = Vec::new();
            let mut first = None;
            for _ in 0..instances {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let base = format!("http://{}", listener.local_addr()?);
                let config = Config {
                    database_url: database_url.clone(),
                    master_key: Some(master_key.clone()),
                    public_base_url: base.clone(),
                    cluster_url: (instances > 1 && !args.no_forwarding).then(|| base.clone()),
                    mail: spse_totp_api::config::MailConfig {
                        outbox: outbox.clone(),
                        claim_for: real_time_claim,
                        ..Default::default()
                    },
                    ..Config::default()
                };
                let app = App::start(config, clock.clone()).await?;
                first.get_or_insert_with(|| Arc::clone(&app.services));
                tokio::spawn(app.serve(listener, std::future::pending()));
                bases.push(base);
            }
            let services = first.ok_or_else(|| anyhow!("no instance started"))?;
            let created = apikeys::create(
                services.db.events.as_ref(),
                "bench",
                Role::Portal,
                "bench",
                clock.now(),
            )
            .await?;
            services.projections.catch_up().await?;
            anyhow::Ok((bases, created.key, services))
        }
    })?;

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("client-rt")
        .enable_all()
        .build()?;
    let flow = args.flow;
    let report = client_rt.block_on(async move {
        let runs_writes = bases
            .iter()
            .map(|_| std::sync::atomic::AtomicBool::new(false))
            .collect();
        let target = Arc::new(Target {
            bases,
            turn: std::sync::atomic::AtomicUsize::new(0),
            balancer: args.balancer,
            runs_writes,
            key,
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(args.users * 2)
                .build()?,
            clock: Arc::clone(&clock),
        });
        println!(
            "spse-totp-bench: {engine}, flow {}, {} virtual users, {} s, {instances} instance(s), database {}",
            match flow {
                Flow::Code => "code",
                Flow::Device => "device",
            },
            args.users,
            args.seconds,
            redact(&database_url)
        );
        println!(
            "server clock: +30 s every {} ms (replay rule: one approval per account per step)",
            args.tick_ms
        );
        if target.balancer == Balancer::WritesToActive && target.bases.len() > 1 {
            println!("balancer: write requests to the instance whose /activez answers 200");
            tokio::spawn(Arc::clone(&target).check_active());
            let deadline = Instant::now() + Duration::from_secs(10);
            while !target.runs_writes.iter().any(|here| here.load(Ordering::Relaxed)) {
                if Instant::now() > deadline {
                    bail!("no instance answered /activez with 200 within 10 s");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }

        // Setup, not measured: every virtual user's accounts get an authenticator (a bound
        // device for the device flow). The accounts
        // are named for this run, so a database kept from an earlier run (PostgreSQL) serves
        // again: those accounts are active already and cannot be activated twice.
        let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_uppercase();
        let setup = Instant::now();
        let mut handles = Vec::new();
        for user in 0..args.users {
            let target = Arc::clone(&target);
            let per_user = args.accounts_per_user;
            let run = run.clone();
            handles.push(tokio::spawn(async move {
                let mut accounts = Vec::new();
                for i in 0..per_user {
                    let user_id = format!("BENCH-{run}-{user}-{i}");
                    let phone = target.activate(&user_id, flow).await?;
                    accounts.push((user_id, phone, i64::MIN));
                }
                anyhow::Ok(accounts)
            }));
        }
        let mut pools = Vec::new();
        for handle in handles {
            pools.push(handle.await??);
        }
        println!(
            "setup: {} accounts activated in {:.1} s",
            args.users * args.accounts_per_user,
            setup.elapsed().as_secs_f64()
        );
        // Each activation calls for a notice, mailed in the background: let those go out
        // before the measured phase, which is about approvals alone.
        let mailing = Instant::now();
        if !settle_mail(&services).await || !outbox_drained(&services).await? {
            println!("setup: the activation notices were still being mailed when the load began");
        } else {
            println!(
                "setup: activation notices mailed in {:.1} s",
                mailing.elapsed().as_secs_f64()
            );
        }

        let ticking = Arc::new(AtomicBool::new(true));
        let ticker = {
            let clock = Arc::clone(&clock);
            let ticking = Arc::clone(&ticking);
            let tick = Duration::from_millis(args.tick_ms);
            tokio::spawn(async move {
                while ticking.load(Ordering::Relaxed) {
                    tokio::time::sleep(tick).await;
                    clock.advance(chrono::Duration::seconds(30));
                }
            })
        };
        // Let the first tick pass so no account approves in the step it was activated in.
        tokio::time::sleep(Duration::from_millis(args.tick_ms * 2)).await;

        let errors = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(args.seconds);
        let began = Instant::now();
        let mut handles = Vec::new();
        for mut accounts in pools {
            let target = Arc::clone(&target);
            let errors = Arc::clone(&errors);
            let clock = Arc::clone(&clock);
            handles.push(tokio::spawn(async move {
                let mut samples = Samples::default();
                let mut next = 0;
                while Instant::now() < deadline {
                    let step = step_of(&clock);
                    let Some(i) = (0..accounts.len())
                        .map(|k| (next + k) % accounts.len())
                        .find(|i| accounts[*i].2 < step)
                    else {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        continue;
                    };
                    next = i + 1;
                    let (user_id, phone, used) = &mut accounts[i];
                    if let Err(e) = target.flow(flow, user_id, phone, &mut samples).await {
                        if errors.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("flow error: {e:#}");
                        }
                    }
                    // The step now is at or after the one whose code was used (the clock may
                    // have ticked mid-flow): never use this account again before it passes.
                    *used = step_of(&clock);
                }
                samples
            }));
        }
        let mut all = Samples::default();
        for handle in handles {
            all.merge(handle.await?);
        }
        let elapsed = began.elapsed().as_secs_f64();
        let verified = all.flow.len();
        println!();
        println!(
            "load: {verified} verified logins in {elapsed:.1} s = {:.0} verified logins/s, {} errors",
            verified as f64 / elapsed,
            errors.load(Ordering::Relaxed)
        );
        match flow {
            Flow::Code => {
                println!("{}", line("flow (2 requests)", &mut all.flow));
                println!("{}", line("POST /v1/logins", &mut all.start));
                println!("{}", line("POST .../code", &mut all.verify));
            }
            Flow::Device => {
                println!("{}", line("flow (3 requests)", &mut all.flow));
                println!("{}", line("POST /v1/logins", &mut all.start));
                println!("{}", line("POST .../approve", &mut all.verify));
                println!("{}", line("GET /v1/logins/{id}", &mut all.status));
            }
        }
        if target.bases.len() > 1 {
            println!(
                "forwarded by standbys to the active instance: {} write requests",
                target.forwarded().await?
            );
        }
        let (bytes, how) = database_bytes(&services.db).await?;
        let events = services.db.events.head_position().await?;
        let bytes_per_event = bytes as f64 / events.max(1) as f64;
        println!(
            "size: {bytes} bytes ({how}) / {events} events = {bytes_per_event:.0} bytes per event"
        );
        let report = Report {
            engine,
            logins_per_second: verified as f64 / elapsed,
            flow_p50: percentile(&mut all.flow, 50.0),
            flow_p99: percentile(&mut all.flow, 99.0),
            bytes_per_event,
        };

        // History length: the same flow, one request at a time, on a fresh account and on one
        // with a long history.
        println!();
        let (fresh_id, long_id) = (
            format!("HISTORY-FRESH-{run}"),
            format!("HISTORY-LONG-{run}"),
        );
        let fresh = target.activate(&fresh_id, flow).await?;
        let long = target.activate(&long_id, flow).await?;
        let seeded = Instant::now();
        seed_history(&services, &long_id, args.history, &clock).await?;
        services.projections.catch_up().await?;
        println!(
            "seeded {} events into HISTORY-LONG in {:.1} s (projections caught up)",
            args.history,
            seeded.elapsed().as_secs_f64()
        );
        let mut first = Samples::default();
        tokio::time::sleep(Duration::from_millis(args.tick_ms * 2)).await;
        target
            .flow(flow, &long_id, &long, &mut first)
            .await
            .context("first flow on the long account")?;
        println!("{}", line("first flow after seeding", &mut first.flow));
        let mut results = Vec::new();
        for (name, id, phone) in [
            ("HISTORY-FRESH", &fresh_id, &fresh),
            ("HISTORY-LONG", &long_id, &long),
        ] {
            let mut samples = Samples::default();
            for _ in 0..args.history_flows {
                let step = step_of(&clock);
                while step_of(&clock) == step {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                target.flow(flow, id, phone, &mut samples).await?;
            }
            let p50 = percentile(&mut samples.flow, 50.0);
            let p99 = percentile(&mut samples.flow, 99.0);
            println!("{}", line(&format!("{name} flow"), &mut samples.flow));
            results.push((p50, p99));
        }
        let (fresh_p50, fresh_p99) = results[0];
        let (long_p50, long_p99) = results[1];
        println!(
            "long history vs fresh: p50 {:+.1}%, p99 {:+.1}%",
            (long_p50 / fresh_p50 - 1.0) * 100.0,
            (long_p99 / fresh_p99 - 1.0) * 100.0
        );
        ticking.store(false, Ordering::Relaxed);
        let _ = ticker.await;
        anyhow::Ok(report)
    })?;
    drop(server_rt);
    if let Some(schema) = schema {
        drop_schema(base_url, &schema)?;
    }
    Ok(report)
}

/// Creates an empty schema for one run on the PostgreSQL database at `url`.
async fn fresh_schema(url: &str) -> anyhow::Result<String> {
    let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let admin = PgPoolOptions::new().max_connections(1).connect(url).await?;
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await?;
    admin.close().await;
    Ok(schema)
}

/// Drops the run's schema, on a runtime of its own (the server's is gone with its connections).
fn drop_schema(url: &str, schema: &str) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let admin = PgPoolOptions::new().max_connections(1).connect(url).await?;
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&admin)
            .await?;
        admin.close().await;
        anyhow::Ok(())
    })
}

/// The database's size on disk, and what was counted. SQLite: the file, after the WAL is
/// checkpointed into it and truncated (the WAL is a bounded journal reused by later writes, not
/// storage that grows with the log; its size before the checkpoint is named). PostgreSQL:
/// `pg_total_relation_size` (table, indexes, TOAST) summed over the run's schema.
async fn database_bytes(db: &spse_totp_store::Database) -> anyhow::Result<(u64, String)> {
    if let Some(path) = &db.sqlite_path {
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        let wal_before = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        {
            let pool = db.write().await;
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&*pool)
                .await?;
        }
        let file = std::fs::metadata(path)?.len();
        let wal_after = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        return Ok((
            file + wal_after,
            format!("SQLite file after checkpointing a {wal_before}-byte WAL"),
        ));
    }
    let bytes: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind = 'r'",
    )
    .fetch_one(&db.pool)
    .await?;
    Ok((
        u64::try_from(bytes).unwrap_or(0),
        "pg_total_relation_size over the schema's tables".to_owned(),
    ))
}

/// Appends `count` events (logins started and cancelled) straight to the account's stream, as
/// years of use would have left them.
async fn seed_history(
    services: &spse_totp_api::state::AppState,
    user_id: &str,
    count: usize,
    clock: &ManualClock,
) -> anyhow::Result<()> {
    let key = AccountKey::new(UserType::Penyedia, UserId::parse(user_id)?);
    let stream = key.stream_name();
    let mut version = services.db.events.stream_version(&stream).await?;
    let metadata = EventMetadata {
        actor: Actor::System,
        ..EventMetadata::system()
    };
    let mut left = count;
    while left > 0 {
        let now = clock.now();
        let batch: Vec<NewEvent> = (0..left.min(1000) / 2)
            .flat_map(|_| {
                let login_id = LoginId::generate();
                [
                    AccountEvent::LoginStarted {
                        login_id,
                        stage: spse_totp_domain::account::LoginStage::Approval,
                        expires_at: now,
                        approval_number: None,
                        client_ip: Some("10.0.0.2".to_owned()),
                        user_agent: None,
                        at: now,
                    },
                    AccountEvent::LoginCancelled {
                        login_id,
                        reason: CancelReason::Portal,
                        at: now,
                    },
                ]
            })
            .map(|event| NewEvent {
                event_id: uuid::Uuid::now_v7(),
                event_type: event.event_type().to_owned(),
                schema_version: 1,
                payload: event.to_payload(),
                metadata: metadata.clone(),
                recorded_at: now,
            })
            .collect();
        if batch.is_empty() {
            break;
        }
        let n = batch.len();
        // The account's own events (its activation notice's outcome) may land in between:
        // append after them.
        match services
            .db
            .events
            .append(&stream, ExpectedVersion::at(version), batch)
            .await
        {
            Ok(appended) => {
                version = appended.version;
                left -= n;
            }
            Err(StoreError::Conflict { actual, .. }) => version = actual,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn redact(url: &str) -> String {
    match url.split_once('@') {
        Some((_, host)) => format!("postgres://…@{host}"),
        None => url.to_owned(),
    }
}

/// Waits for the outbox to empty: a queued notice is sent later by the mail sender, and each
/// send reads its account's stream and records an event, work the load phase must not carry.
async fn outbox_drained(services: &spse_totp_api::state::AppState) -> anyhow::Result<bool> {
    let give_up = Instant::now() + Duration::from_secs(120);
    while Instant::now() < give_up {
        let owed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mail_outbox")
            .fetch_one(&services.db.pool)
            .await?;
        if owed == 0 {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(false)
}
