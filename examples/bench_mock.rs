//! The mock provider as its own process, for `scripts/bench-vs-nginx`: every proxy
//! under test (nginx, the plain proxy, keyrelay) points at the same upstream, and the
//! upstream's CPU is not charged to any of them.
//!
//! Usage: `bench_mock [--port PORT] [--stream CHUNKS INTERVAL_MS] [--tls CA_FILE]`.
//! Accepts any key. With `--tls` it serves HTTPS for `localhost` as real providers do
//! (ALPN `h2`, `http/1.1`), with a certificate from a fresh CA whose PEM it writes to
//! CA_FILE for the proxies to trust.
//! Prints `listening 127.0.0.1:PORT` once it accepts connections, then serves until
//! killed. A fixed `--port` lets the script restart it between points on the same
//! address: the mock records every request it answers, so a long run grows its memory.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use keyrelay_mock::{MockConfig, MockProvider};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut port = 0u16;
    let mut tls = None;
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
            "--tls" => tls = Some(args.next().ok_or("--tls needs CA_FILE")?),
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let mock = match tls {
        Some(ca_file) if port == 0 => MockProvider::start_tls(config, tls_config(Path::new(&ca_file))?).await?,
        Some(_) => return Err("--tls takes no --port".into()),
        None => MockProvider::start_on(SocketAddr::from(([127, 0, 0, 1], port)), config).await?,
    };
    println!("listening {}", mock.addr());
    tokio::signal::ctrl_c().await?;
    drop(mock);
    Ok(())
}

/// A server config for `localhost` from a fresh CA, whose PEM goes to `ca_file`.
fn tls_config(ca_file: &Path) -> Result<Arc<rustls::ServerConfig>, Box<dyn std::error::Error>> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["localhost".to_owned()])?.signed_by(&key, &ca)?;
    std::fs::write(ca_file, ca.pem())?;
    let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut server = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(chain, key)?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(server))
}
