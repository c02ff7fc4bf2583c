//! `spse-totp-audit-bench`: the helpdesk's search over an `audit_log` of a million rows, and an
//! auditor's first history page of an account with 100,000 events, over real HTTP.
//!
//! Seeding: the audit rows, and the event rows they stand for, are inserted directly into a fresh
//! SQLite file (migrated by the service's own migrations) in large batches, with realistic spreads: tens of thousands of
//! users of both types, a few thousand client IPs, the event types in the proportions a
//! portal's day has, a handful of helpdesk operators, 90 days of timestamps. A marker event
//! after them moves the log's next position past the seeded rows, so what the service appends
//! afterwards projects normally. The long account is appended through the real event store
//! (hash chain included) and projected by the real runner.
//!
//! Every measured request is a real read: it is recorded (a durable append) before it answers,
//! as in production.
//!
//! Run: `cargo run --release -p spse-totp-tests --bin spse-totp-audit-bench`

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Parser;
use spse_totp_api::{App, Config};
use spse_totp_commands::vault::MasterKey;
use spse_totp_commands::{apikeys, Clock, ManualClock};
use spse_totp_domain::account::{CancelReason, LoginStage};
use spse_totp_domain::apikey::Role;
use spse_totp_domain::{AccountEvent, AccountKey, LoginId, UserId, UserType};
use spse_totp_store::{stored_metadata, Actor, Database, EventMetadata, ExpectedVersion, NewEvent};
use spse_totp_tests::start_instant;

#[derive(Debug, Parser)]
#[command(about = "Audit search and history benchmark for the SPSE TOTP service")]
struct Args {
    /// Rows seeded into audit_log.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Events in the long account's history.
    #[arg(long, default_value_t = 100_000)]
    history: usize,
    /// Requests per measured query.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Distinct users in the seeded rows.
    #[arg(long, default_value_t = 40_000)]
    users: u64,
    /// Keep the seeded SQLite file and print where it is, to study query plans afterwards.
    #[arg(long)]
    keep: bool,
}

/// A small deterministic generator (xorshift64*), so runs seed the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Skewed towards small values: a few users and IPs are far busier than most.
    fn skewed(&mut self, n: u64) -> u64 {
        let a = self.below(n);
        let b = self.below(n);
        a.min(b)
    }
}

const TYPES: [(&str, u64); 10] = [
    ("LoginStarted", 30),
    ("LoginApproved", 26),
    ("CodeRejected", 8),
    ("LoginExpired", 6),
    ("LoginCancelled", 5),
    ("EnrollmentStarted", 6),
    ("TotpActivated", 5),
    ("AccountRegistered", 5),
    ("AccountLocked", 1),
    ("TotpDisabled", 1),
];
const OPERATORS: [&str; 8] = [
    "Siti", "Budi", "Agus", "Dewi", "Rina", "Joko", "Wati", "Eko",
];

fn user_id(n: u64) -> (String, &'static str) {
    match n % 4 {
        0 => (format!("PPK{n}"), "non_penyedia"),
        1 => (format!("POKJA{n}"), "non_penyedia"),
        _ => (format!("VENDOR{n}"), "penyedia"),
    }
}

fn ip(n: u64) -> String {
    format!("10.{}.{}.{}", 20 + n / 65_536 % 200, n / 256 % 256, n % 256)
}

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1].as_secs_f64() * 1000.0
}

/// Seeds `rows` audit rows at positions 1..=rows, spread over the 90 days before `end`.
async fn seed_audit_log(url: &str, args: &Args, end: DateTime<Utc>) -> anyhow::Result<()> {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await?;
    let mut tx = pool.begin().await?;
    sqlx::query("PRAGMA synchronous = OFF")
        .execute(&mut *tx)
        .await
        .ok();
    let span_micros: i64 = 90 * 24 * 3600 * 1_000_000;
    let start = end.timestamp_micros() - span_micros;
    let total_weight: u64 = TYPES.iter().map(|t| t.1).sum();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    const BATCH: u64 = 500;
    let mut position = 1u64;
    while position <= args.rows {
        let n = BATCH.min(args.rows - position + 1);
        // Each audit row stands for an event row at its position, as the projection leaves them
        // (written through the view, whose trigger stores it as the event store does):
        // a page reads its stream, user agent, correlation id and summary there.
        let mut events_sql = String::from(
            "INSERT INTO event_rows (position, stream, version, event_id, event_type, schema_version, \
             payload, metadata, recorded_at) VALUES ",
        );
        // The texts a row names are term ids, as the projector writes them.
        let term = |n: u64| format!("(SELECT id FROM terms WHERE term = ${n})");
        let mut audit_sql = String::from(
            "INSERT INTO audit_log (position, user_type, user_id, event_type, actor_kind, actor, \
             client_ip, recorded_at) VALUES ",
        );
        let mut terms = std::collections::BTreeSet::new();
        for i in 0..n {
            if i > 0 {
                events_sql.push(',');
                audit_sql.push(',');
            }
            let b = i * 7;
            events_sql.push_str(&format!(
                "(${},${},${},${},${},1,${},${},${})",
                b + 1,
                b + 2,
                b + 1,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7
            ));
            let b = i * 8;
            audit_sql.push_str(&format!(
                "(${},{},${},{},{},{},{},${})",
                b + 1,
                term(b + 2),
                b + 3,
                term(b + 4),
                term(b + 5),
                term(b + 6),
                term(b + 7),
                b + 8
            ));
        }
        let mut events = sqlx::query(&events_sql);
        let mut query = sqlx::query(&audit_sql);
        for i in 0..n {
            let p = position + i;
            let user = rng.skewed(args.users);
            let (uid, utype) = user_id(user);
            let mut pick = rng.below(total_weight);
            let event_type = TYPES
                .iter()
                .find(|(_, w)| {
                    if pick < *w {
                        true
                    } else {
                        pick -= w;
                        false
                    }
                })
                .map_or("LoginStarted", |t| t.0);
            let (actor, display) = match rng.below(100) {
                0..=69 => (
                    Actor::Portal {
                        key_id: uuid::Uuid::from_u128(1),
                        key_name: "spse-portal".to_owned(),
                    },
                    None,
                ),
                70..=89 => (
                    Actor::Device {
                        device_id: uuid::Uuid::from_u128(
                            0x0193_c000_0000_7000_8000_0000_0000_0000 | u128::from(user),
                        ),
                    },
                    None,
                ),
                90..=96 => (Actor::System, None),
                _ => {
                    let operator = OPERATORS[rng.below(8) as usize].to_owned();
                    (
                        Actor::Helpdesk {
                            operator: operator.clone(),
                            key_id: uuid::Uuid::from_u128(2),
                        },
                        Some(operator),
                    )
                }
            };
            // A user mostly comes from a few addresses of their own office.
            let client_ip = ip((user * 7 + rng.below(3)) % 6_000);
            let at = start + (span_micros / args.rows as i64) * p as i64;
            let metadata = EventMetadata {
                actor: actor.clone(),
                client_ip: Some(client_ip.clone()),
                user_agent: Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0".into()),
                correlation_id: Some(format!("{:032x}", rng.next())),
                causation_id: None,
            };
            events = events
                .bind(p as i64)
                .bind(format!("account-{utype}-{uid}"))
                .bind(uuid::Uuid::from_u128(u128::from(p)).as_bytes().to_vec())
                .bind(event_type)
                .bind(format!("{{\"user_id\":\"{uid}\"}}"))
                .bind(stored_metadata::encode(&metadata))
                .bind(at);
            let display = display.unwrap_or_else(|| actor.display_name());
            terms.extend([
                utype.to_owned(),
                event_type.to_owned(),
                actor.kind().to_owned(),
                display.clone(),
                client_ip.clone(),
            ]);
            query = query
                .bind(p as i64)
                .bind(utype)
                .bind(uid.clone())
                .bind(event_type)
                .bind(actor.kind())
                .bind(display)
                .bind(client_ip.clone())
                .bind(at);
        }
        let terms_sql = format!(
            "INSERT INTO terms (term) VALUES {} ON CONFLICT (term) DO NOTHING",
            (1..=terms.len())
                .map(|n| format!("(${n})"))
                .collect::<Vec<_>>()
                .join(",")
        );
        terms
            .iter()
            .fold(sqlx::query(&terms_sql), |q, t| q.bind(t.as_str()))
            .execute(&mut *tx)
            .await?;
        events.execute(&mut *tx).await?;
        query.execute(&mut *tx).await?;
        position += n;
    }
    // The seeded rows stand projected: the projectors (and the mail sender) carry on after them.
    for projector in spse_totp_projections::all_projectors()
        .iter()
        .map(|p| p.name())
        .chain(["mail_dispatcher"])
    {
        sqlx::query(
            "INSERT INTO projection_checkpoints (projector, position, updated_at) VALUES ($1, $2, 0) \
             ON CONFLICT (projector) DO UPDATE SET position = excluded.position",
        )
        .bind(projector)
        .bind(i64::try_from(args.rows)?)
        .execute(&mut *tx)
        .await?;
    }
    // The marker: the log's next position comes after every seeded row.
    sqlx::query(
        "INSERT INTO event_rows (position, stream, version, event_id, event_type, schema_version, payload, \
         metadata, recorded_at) VALUES ($1, 'bench-seed', 1, $2, 'BenchSeeded', 1, '{}', '[\"system\"]', $3)",
    )
    .bind(i64::try_from(args.rows + 1)?)
    .bind(uuid::Uuid::now_v7().as_bytes().to_vec())
    .bind(end.timestamp_micros())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    pool.close().await;
    Ok(())
}

async fn seed_history(
    services: &spse_totp_api::state::AppState,
    key: &AccountKey,
    count: usize,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let stream = key.stream_name();
    let metadata = EventMetadata {
        actor: Actor::System,
        client_ip: Some("10.0.0.2".to_owned()),
        ..EventMetadata::system()
    };
    let register = AccountEvent::AccountRegistered {
        user_type: key.user_type,
        user_id: key.user_id.clone(),
        email: None,
        name: None,
    };
    let mut version = 0;
    let mut left = count;
    let mut first = Some(register);
    while left > 0 {
        let mut events: Vec<AccountEvent> = first.take().into_iter().collect();
        while events.len() + 1 < 1000.min(left) {
            let login_id = LoginId::generate();
            events.push(AccountEvent::LoginStarted {
                login_id,
                stage: LoginStage::Approval,
                expires_at: now,
                approval_number: None,
                client_ip: Some("10.0.0.2".to_owned()),
                user_agent: None,
                at: now,
            });
            events.push(AccountEvent::LoginCancelled {
                login_id,
                reason: CancelReason::Portal,
                at: now,
            });
        }
        if events.is_empty() {
            break;
        }
        let batch: Vec<NewEvent> = events
            .iter()
            .map(|event| NewEvent {
                event_id: uuid::Uuid::now_v7(),
                event_type: event.event_type().to_owned(),
                schema_version: 1,
                payload: event.to_payload(),
                metadata: metadata.clone(),
                recorded_at: now,
            })
            .collect();
        let n = batch.len();
        let appended = services
            .db
            .events
            .append(&stream, ExpectedVersion::at(version), batch)
            .await?;
        version = appended.version;
        left = left.saturating_sub(n);
    }
    Ok(())
}

async fn measure(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    operator: Option<&str>,
    accept: Option<&str>,
    requests: usize,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let mut samples = Vec::with_capacity(requests);
    let mut rows = 0;
    for i in 0..requests + 5 {
        let mut request = client.get(url).bearer_auth(key);
        if let Some(operator) = operator {
            request = request.header("X-Operator", operator);
        }
        if let Some(accept) = accept {
            request = request.header("Accept", accept);
        }
        let started = Instant::now();
        let response = request.send().await?;
        let status = response.status();
        let body = response.text().await?;
        let took = started.elapsed();
        anyhow::ensure!(status.is_success(), "{url}: {status} {body}");
        // The first few warm the caches and are not counted.
        if i >= 5 {
            samples.push(took);
        }
        rows = if body.starts_with('{') {
            serde_json::from_str::<serde_json::Value>(&body)?["events"]
                .as_array()
                .map_or(0, Vec::len)
        } else {
            body.lines().count().saturating_sub(1)
        };
    }
    Ok((samples, rows))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}/audit-bench.db", dir.path().display());
    let keep = args.keep;
    let end = start_instant();
    let clock = Arc::new(ManualClock::starting_at(end));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        Database::open(&url).await.context("migrating")?;
        let seeded = Instant::now();
        seed_audit_log(&url, &args, end).await?;
        println!(
            "seeded {} audit_log rows in {:.1} s",
            args.rows,
            seeded.elapsed().as_secs_f64()
        );

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let config = Config {
            database_url: url.clone(),
            master_key: Some(MasterKey::generate().to_base64()),
            public_base_url: base.clone(),
            ..Config::default()
        };
        let app = App::start(config, clock.clone()).await?;
        let services = Arc::clone(&app.services);
        let mut keys = Vec::new();
        for role in [Role::Helpdesk, Role::Auditor] {
            let created =
                apikeys::create(services.db.events.as_ref(), "bench", role, "bench", clock.now())
                    .await?;
            keys.push(created.key);
        }
        let long = AccountKey::new(UserType::Penyedia, UserId::parse("HISTORY-LONG")?);
        let seeded = Instant::now();
        seed_history(&services, &long, args.history, clock.now()).await?;
        services.projections.catch_up().await?;
        println!(
            "seeded {} events into {long} in {:.1} s (projections caught up)",
            args.history,
            seeded.elapsed().as_secs_f64()
        );
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
            .fetch_one(&services.db.pool)
            .await?;
        println!("audit_log holds {total} rows");
        tokio::spawn(app.serve(listener, std::future::pending()));
        let (helpdesk, auditor) = (&keys[0], &keys[1]);
        let client = reqwest::Client::new();

        let day = |days_ago: i64| {
            let at = end - chrono::Duration::days(days_ago);
            url::form_urlencoded::byte_serialize(at.to_rfc3339().as_bytes()).collect::<String>()
        };
        // A cursor deep in the log: the page after position 500,000.
        let deep = {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("p500000")
        };
        let searches: Vec<(&str, String)> = vec![
            ("no filter", String::new()),
            ("user_id exact", "user_id=vendor1234".into()),
            ("user_id prefix", "user_id=ppk12".into()),
            ("user_type+user_id", "user_type=penyedia&user_id=vendor6".into()),
            // The long account (the log's newest 100,000 rows) is a vendor: staff rows are
            // found only past it.
            ("user_type", "user_type=non_penyedia".into()),
            ("type (rare)", "type=AccountLocked".into()),
            ("type (common)", "type=LoginApproved".into()),
            ("actor operator", "actor=helpdesk:Siti".into()),
            ("client_ip", format!("client_ip={}", ip(4321))),
            ("one day", format!("from={}&to={}", day(46), day(45))),
            ("type+one day", format!("type=CodeRejected&from={}&to={}", day(46), day(45))),
            ("ip+type", format!("client_ip={}&type=LoginStarted", ip(17))),
            ("user_id+from", format!("user_id=vendor2&from={}", day(30))),
            ("deep cursor", format!("cursor={deep}")),
            ("csv, user_id prefix", "format=csv&user_id=pokja1".into()),
        ];
        println!(
            "\nhelpdesk search, GET /v1/helpdesk/events (50 per page, each read recorded), n={}:",
            args.requests
        );
        let mut worst: f64 = 0.0;
        for (name, query) in &searches {
            let url = format!("{base}/v1/helpdesk/events?purpose=bench&{query}");
            let (mut samples, rows) =
                measure(&client, &url, helpdesk, Some("Siti"), None, args.requests).await?;
            let p99 = percentile(&mut samples, 99.0);
            worst = worst.max(p99);
            println!(
                "  {name:<22} p50 {:>7.2} ms   p99 {:>7.2} ms   rows {rows}",
                percentile(&mut samples, 50.0),
                p99
            );
        }
        let history_url = format!(
            "{base}/v1/audit/accounts/penyedia/history-long/events?purpose=bench"
        );
        let (mut first, rows) =
            measure(&client, &history_url, auditor, None, None, args.requests).await?;
        println!(
            "\nhistory of a {}-event account, GET /v1/audit/accounts/.../events, n={}:",
            args.history, args.requests
        );
        let history_p99 = percentile(&mut first, 99.0);
        println!(
            "  {:<22} p50 {:>7.2} ms   p99 {:>7.2} ms   rows {rows}",
            "first page",
            percentile(&mut first, 50.0),
            history_p99
        );
        let deep_history = {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("v90000")
        };
        let (mut deep_samples, rows) = measure(
            &client,
            &format!("{history_url}&cursor={deep_history}&type=LoginCancelled"),
            auditor,
            None,
            None,
            args.requests,
        )
        .await?;
        println!(
            "  {:<22} p50 {:>7.2} ms   p99 {:>7.2} ms   rows {rows}",
            "page at 90,000 + type",
            percentile(&mut deep_samples, 50.0),
            percentile(&mut deep_samples, 99.0)
        );
        let (mut state, _) = measure(
            &client,
            &format!("{base}/v1/audit/accounts/penyedia/history-long/state?purpose=bench"),
            auditor,
            None,
            None,
            5,
        )
        .await?;
        println!(
            "  {:<22} p50 {:>7.2} ms   (folds every event; not a target)",
            "state as of now",
            percentile(&mut state, 50.0)
        );
        println!(
            "\ntargets: search p99 < 50 ms: {} (worst {worst:.2} ms); history first page p99 < 50 ms: {} ({history_p99:.2} ms)",
            if worst < 50.0 { "met" } else { "MISSED" },
            if history_p99 < 50.0 { "met" } else { "MISSED" },
        );
        anyhow::Ok(())
    })?;
    if keep {
        println!("kept {}", dir.keep().join("audit-bench.db").display());
    }
    Ok(())
}
