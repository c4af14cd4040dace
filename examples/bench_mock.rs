//! The mock provider as its own process, for `scripts/bench-vs-nginx`: every proxy
//! under test (nginx, the plain proxy, keyrelay) points at the same upstream, and the
//! upstream's CPU is not charged to any of them.
//!
//! Usage: `bench_mock [--port PORT] [--stream CHUNKS INTERVAL_MS]`. Accepts any key.
//! Prints `listening 127.0.0.1:PORT` once it accepts connections, then serves until
//! killed. A fixed `--port` lets the script restart it between points on the same
//! address: the mock records every request it answers, so a long run grows its memory.

use std::net::SocketAddr;
use std::time::Duration;

use keyrelay_mock::{MockConfig, MockProvider};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut port = 0u16;
    let mut config = MockConfig::new().accept_any_key(true);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => port = args.next().ok_or("--port needs a value")?.parse()?,
            "--stream" => {
                let chunks: usize = args.next().ok_or("--stream needs CHUNKS")?.parse()?;
                let interval_ms: u64 = args.next().ok_or("--stream needs INTERVAL_MS")?.parse()?;
                config = config.stream(chunks, Duration::from_millis(interval_ms));
            }
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let mock = MockProvider::start_on(SocketAddr::from(([127, 0, 0, 1], port)), config).await?;
    println!("listening {}", mock.addr());
    tokio::signal::ctrl_c().await?;
    drop(mock);
    Ok(())
}
