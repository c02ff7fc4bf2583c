//! `spse-totp-bench`: starts the service and drives virtual users through
//! start-login -> device approve -> status over real HTTP, then compares a fresh account with one
//! whose history holds 100,000 events.
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

#[derive(Debug, Parser)]
#[command(about = "Load benchmark for the SPSE TOTP service")]
struct Args {
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
    /// Database to benchmark; a fresh SQLite file in a temporary folder by default.
    #[arg(long)]
    database_url: Option<String>,
    /// Service instances on the one database (more than one needs PostgreSQL). Requests go to
    /// them in turn, as from a round-robin load balancer, so one login's requests cross them.
    #[arg(long, default_value_t = 1)]
    instances: usize,
}

struct Target {
    /// One per instance.
    bases: Vec<String>,
    turn: std::sync::atomic::AtomicUsize,
    key: String,
    client: reqwest::Client,
    clock: Arc<ManualClock>,
}

#[derive(Default)]
struct Samples {
    flow: Vec<Duration>,
    start: Vec<Duration>,
    approve: Vec<Duration>,
    status: Vec<Duration>,
}

impl Samples {
    fn merge(&mut self, other: Samples) {
        self.flow.extend(other.flow);
        self.start.extend(other.start);
        self.approve.extend(other.approve);
        self.status.extend(other.status);
    }
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
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let base = &self.bases[turn % self.bases.len()];
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

    /// Activates an account with the push-capable app; returns the phone.
    async fn activate(&self, user_id: &str) -> anyhow::Result<Authenticator> {
        let (status, login) = self
            .send(
                reqwest::Method::POST,
                "/v1/logins",
                Some(&self.key),
                Some(json!({"user_type": "penyedia", "user_id": user_id})),
            )
            .await?;
        if status != 201 {
            bail!("start login for activation: {status} {login}");
        }
        let mut phone = Authenticator::scan(&login);
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

    /// One user's login: the portal starts it, the phone approves it, the portal reads it.
    async fn flow(
        &self,
        user_id: &str,
        phone: &Authenticator,
        samples: &mut Samples,
    ) -> anyhow::Result<()> {
        let began = Instant::now();
        let (status, login) = self
            .send(
                reqwest::Method::POST,
                "/v1/logins",
                Some(&self.key),
                Some(json!({"user_type": "penyedia", "user_id": user_id, "client_ip": "10.0.0.1", "user_agent": "bench"})),
            )
            .await?;
        let started = Instant::now();
        if status != 201 {
            bail!("start login: {status} {login}");
        }
        let login_id = login["login_id"]
            .as_str()
            .ok_or_else(|| anyhow!("no login_id"))?;
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
        samples.approve.push(approved - started);
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
    let dir = tempfile::tempdir()?;
    let database_url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}/bench.db", dir.path().display()));
    let clock = Arc::new(ManualClock::starting_at(start_instant()));

    // The server, on a runtime of its own.
    // Named, so a profiler tells the server's share of the two cores from the load's.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("server-rt")
        .enable_all()
        .build()?;
    if args.instances > 1 && !database_url.starts_with("postgres") {
        bail!("--instances above 1 needs a PostgreSQL --database-url");
    }
    let master_key = MasterKey::generate().to_base64();
    // Activation notices are mailed too: into the benchmark's own folder.
    let outbox = dir.path().join("outbox");
    // A send under way claims its message for a while on the server's clock. On a clock this
    // fast a production claim would lapse within a real second: stretch it by the clock's
    // speed-up, so a slow send is not taken up again by another instance.
    let speed_up = i32::try_from(30_000 / args.tick_ms.max(1)).unwrap_or(i32::MAX);
    let real_time_claim = spse_totp_api::config::MailConfig::default().claim_for * speed_up.max(1);
    let (bases, key, services) = server_rt.block_on({
        let clock = Arc::clone(&clock);
        let database_url = database_url.clone();
        let instances = args.instances.max(1);
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
    client_rt.block_on(async move {
        let target = Arc::new(Target {
            bases,
            turn: std::sync::atomic::AtomicUsize::new(0),
            key,
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(args.users * 2)
                .build()?,
            clock: Arc::clone(&clock),
        });
        println!(
            "spse-totp-bench: {} virtual users, {} s, {} instance(s), database {}",
            args.users,
            args.seconds,
            args.instances.max(1),
            redact(&database_url)
        );
        println!(
            "server clock: +30 s every {} ms (replay rule: one approval per account per step)",
            args.tick_ms
        );

        // Setup, not measured: every virtual user's accounts get a bound device. The accounts
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
                    let phone = target.activate(&user_id).await?;
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
        if !settle_mail(&services).await {
            println!("setup: the activation notices were still being mailed when the load began");
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
                    if let Err(e) = target.flow(user_id, phone, &mut samples).await {
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
        let approvals = all.flow.len();
        println!();
        println!(
            "load: {approvals} approvals in {elapsed:.1} s = {:.0} approvals/s, {} errors",
            approvals as f64 / elapsed,
            errors.load(Ordering::Relaxed)
        );
        println!("{}", line("flow (3 requests)", &mut all.flow));
        println!("{}", line("POST /v1/logins", &mut all.start));
        println!("{}", line("POST .../approve", &mut all.approve));
        println!("{}", line("GET /v1/logins/{id}", &mut all.status));

        // History length: the same flow, one request at a time, on a fresh account and on one
        // with a long history.
        println!();
        let (fresh_id, long_id) = (
            format!("HISTORY-FRESH-{run}"),
            format!("HISTORY-LONG-{run}"),
        );
        let fresh = target.activate(&fresh_id).await?;
        let long = target.activate(&long_id).await?;
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
            .flow(&long_id, &long, &mut first)
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
                target.flow(id, phone, &mut samples).await?;
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
        anyhow::Ok(())
    })?;
    drop(server_rt);
    Ok(())
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
