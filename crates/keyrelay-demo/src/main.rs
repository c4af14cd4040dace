//! `keyrelay-demo`: a self-contained showcase with no keys and no network.
//!
//! Two mock providers run on loopback with fake keys whose per-key limits are small
//! and uneven (a real free tier, sped up). keyrelay runs in-process in front of them,
//! a client sends steady traffic and then a burst, and a live table shows each key's
//! attempts, remaining quota as the provider reports it, 429s absorbed and cooldowns,
//! next to what the app saw. Halfway through, one key is rotated through the secrets
//! directory (as kubelet updates a Secret) and keyrelay hot-reloads it.

#![forbid(unsafe_code)]

mod rotate;
mod table;
mod traffic;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use keyrelay::runtime::{Options, Running};
use keyrelay_mock::{HeaderStyle, KeyLimit, MockConfig, MockProvider};
use traffic::ClientTally;

/// Options of `keyrelay-demo`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "keyrelay-demo",
    version,
    about = "A self-contained showcase: mock providers, the proxy, traffic and a live table"
)]
struct DemoArgs {
    /// How long to send traffic, in seconds.
    #[arg(long, default_value_t = 12)]
    seconds: u64,
    /// Steady request rate per second (the burst doubles it).
    #[arg(long, default_value_t = 14)]
    rate: u32,
}

/// Per-second limits of the primary provider's three keys: 18 requests/s in all.
const PRIMARY_KEYS: [(&str, &str, u32); 3] =
    [("OPENAI_KEY_1", "demo-key-one", 9), ("OPENAI_KEY_2", "demo-key-two", 6), ("OPENAI_KEY_3", "demo-key-three", 3)];
/// The key rotated mid-run: name, old value, new value, per-second limit.
const ROTATED: (&str, &str, &str, u32) = ("OPENAI_KEY_2", "demo-key-two", "demo-key-two-rotated", 6);
const BACKUP_KEYS: [(&str, &str, u32); 2] =
    [("ANTHROPIC_KEY_1", "demo-key-four", 10), ("ANTHROPIC_KEY_2", "demo-key-five", 10)];

fn main() -> ExitCode {
    let args = DemoArgs::parse();
    keyrelay::telemetry::init_logging("warn");
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keyrelay-demo: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(args));
    // As `keyrelay run` does: never wait for a blocking read stuck in the kernel.
    runtime.shutdown_timeout(Duration::from_secs(1));
    keyrelay::telemetry::flush_logs();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyrelay-demo: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: DemoArgs) -> Result<(), Box<dyn std::error::Error>> {
    let window = Duration::from_secs(1);
    let primary = start_mock(&PRIMARY_KEYS, HeaderStyle::OpenAi, window).await?;
    let backup = start_mock(&BACKUP_KEYS, HeaderStyle::Anthropic, window).await?;

    let dir = std::env::temp_dir().join(format!("keyrelay-demo-{}", std::process::id()));
    let secrets = dir.join("secrets");
    // Laid out as kubelet mounts a Secret, so the rotation below is a real one.
    let payload: Vec<(&str, &str)> = PRIMARY_KEYS.iter().chain(&BACKUP_KEYS).map(|(n, v, _)| (*n, *v)).collect();
    rotate::write_volume(&secrets, 1, &payload)?;
    let config_path = dir.join("config.yaml");
    std::fs::write(&config_path, demo_config(&primary.base_url(), &backup.base_url()))?;

    let options = Options {
        config: config_path,
        secrets_dir: Some(secrets.clone()),
        listen: Some(([127, 0, 0, 1], 0).into()),
        admin: Some(([127, 0, 0, 1], 0).into()),
        upstream_ca: None,
    };
    let running = Running::start(options).await?;
    println!("keyrelay listening on http://{} (admin http://{})", running.proxy_addr, running.admin_addr);
    println!("primary mock: 3 keys limited to 9, 6 and 3 requests/s; backup mock: 2 keys, 10/s each\n");

    let tally = Arc::new(ClientTally::default());
    let url = format!("http://{}/v1/chat/completions", running.proxy_addr);
    let steady = Duration::from_secs(args.seconds.max(2) * 2 / 3);
    let burst = Duration::from_secs(args.seconds.max(2)).saturating_sub(steady);
    let traffic = {
        let tally = Arc::clone(&tally);
        tokio::spawn(async move {
            traffic::run(url.clone(), "gpt-4o", args.rate, steady, Arc::clone(&tally)).await;
            traffic::run(url, "gpt-4o", args.rate * 2, burst, tally).await;
        })
    };

    let live = std::io::stdout().is_terminal();
    let started = Instant::now();
    let events = Arc::new(Mutex::new(Vec::new()));
    // Halfway through, OPENAI_KEY_2 gets a new value, as `kubectl apply` of the Secret
    // would do: no restart, and the table shows its fresh counters.
    let mut rotation = Box::pin(async {
        tokio::time::sleep(Duration::from_secs_f64(args.seconds.max(2) as f64 / 2.0)).await;
        let rotation = rotate::Rotation {
            secrets_dir: secrets.clone(),
            payload: payload.clone(),
            key: ROTATED.0,
            old_value: ROTATED.1,
            new_value: ROTATED.2,
            limit: KeyLimit::rpm(ROTATED.3).with_window(window),
        };
        rotate::rotate(rotation, &running, &primary, started, Arc::clone(&events)).await
    });
    let render = |phase: &str| {
        let notes = events.lock().unwrap_or_else(|e| e.into_inner()).clone();
        table::render(&running.store.load(), &tally, started.elapsed().as_secs_f64(), phase, &notes)
    };
    let mut frame = tokio::time::interval(if live { Duration::from_millis(250) } else { Duration::from_secs(2) });
    tokio::pin!(traffic);
    let mut rotated = false;
    loop {
        tokio::select! {
            _ = frame.tick() => {
                let text = render(if started.elapsed() < steady { "steady" } else { "burst (2x rate)" });
                if live { print!("\x1b[2J\x1b[H{text}") } else { println!("{text}") }
            }
            result = &mut rotation, if !rotated => {
                rotated = true;
                if let Err(e) = result {
                    events.lock().unwrap_or_else(|e| e.into_inner()).push(format!("rotation failed: {e}"));
                }
            }
            _ = &mut traffic => break,
        }
    }
    drop(rotation);
    println!("\nfinal:\n{}", render("done"));
    println!(
        "keyrelay read each key's rate-limit headers and sent it only what its quota allowed; any 429 a provider\n\
         did send ('429s absorbed') was retried on another key or the fallback model. The app saw only the first line."
    );
    running.shutdown().await;
    drop((primary, backup));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn start_mock(keys: &[(&str, &str, u32)], style: HeaderStyle, window: Duration) -> std::io::Result<MockProvider> {
    let config = keys.iter().fold(
        MockConfig::new().style(style).latency(Duration::from_millis(40)).stream(4, Duration::from_millis(30)),
        |c, (_, value, per_window)| c.key(*value, KeyLimit::rpm(*per_window).with_window(window)),
    );
    MockProvider::start(config).await
}

fn demo_config(primary: &str, backup: &str) -> String {
    format!(
        r#"defaults:
  num_retries: 3
models:
  gpt-4o:
    fallbacks: [claude]
    deployments:
      - provider: openai-compatible
        name: openai/gpt-4o
        model: gpt-4o
        api_base: {primary}
        keys: [OPENAI_KEY_1, OPENAI_KEY_2, OPENAI_KEY_3]
  claude:
    deployments:
      - provider: anthropic
        model: claude-sonnet-4-5
        api_base: {backup}
        keys: [ANTHROPIC_KEY_1, ANTHROPIC_KEY_2]
"#
    )
}
