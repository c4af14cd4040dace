//! The `keyrelay` command line: parse arguments, set up logging, run a subcommand.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use keyrelay::config::{self, SecretSource};
use keyrelay::pool::Snapshot;
use keyrelay::runtime::{Options, Running};

#[derive(Parser)]
#[command(
    name = "keyrelay",
    version,
    about = "Balances LLM API traffic over pools of keys",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Threads that serve requests. One (the default) fits a sidecar, whose CPU limit
    /// is usually a core: no work stealing, no wake-ups across cores between the tasks
    /// of one request. Raise it for a pod that sends more than ~10,000 requests a second.
    #[arg(long, env = "KEYRELAY_WORKERS", default_value_t = NonZeroUsize::MIN, global = true)]
    workers: NonZeroUsize,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Run(RunArgs),
    /// Validate a config, resolve its secrets, and print the routing table.
    Check(CheckArgs),
    /// The Kubernetes sidecar injector: a mutating admission webhook over TLS.
    // Boxed: its many flags would make every `Command` as large.
    Webhook(Box<keyrelay::k8s::WebhookArgs>),
}

#[derive(Args, Clone)]
struct SourceArgs {
    /// Config file: native keyrelay YAML or a LiteLLM proxy-config.yaml.
    #[arg(long, env = "KEYRELAY_CONFIG", default_value = "/etc/keyrelay/config.yaml")]
    config: PathBuf,
    /// Directory of the mounted Secret: one file per key name.
    #[arg(long, env = "KEYRELAY_SECRETS_DIR")]
    secrets_dir: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct CheckArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Treat every warning as an error (exit 1), for CI.
    #[arg(long)]
    strict: bool,
}

#[derive(Args, Clone)]
struct RunArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// App port address (overrides server.listen).
    #[arg(long, env = "KEYRELAY_LISTEN")]
    listen: Option<SocketAddr>,
    /// Admin port address (overrides server.admin).
    #[arg(long, env = "KEYRELAY_ADMIN")]
    admin: Option<SocketAddr>,
    /// Extra PEM CA bundle to trust for upstream TLS (built-in Mozilla roots stay).
    #[arg(long, env = "KEYRELAY_UPSTREAM_CA")]
    upstream_ca: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match runtime(cli.workers) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keyrelay: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match cli.command {
        Some(Command::Check(args)) => check(&args),
        Some(Command::Webhook(args)) => runtime.block_on(webhook(*args)),
        Some(Command::Run(args)) => run_blocking(&runtime, args),
        None => run_blocking(&runtime, cli.run),
    };
    // Dropping the runtime would wait forever for a blocking read stuck in the kernel
    // (a hung filesystem under a reload); everything that matters has finished here.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    keyrelay::telemetry::flush_logs();
    code
}

/// The async runtime: one thread (`current_thread`: a request's tasks never leave it),
/// or `workers` threads sharing the work.
fn runtime(workers: NonZeroUsize) -> std::io::Result<tokio::runtime::Runtime> {
    if workers.get() == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(workers.get()).enable_all().build()
    }
}

/// `keyrelay run`: logging and trace export (from the `OTEL_*` variables), the proxy
/// until SIGTERM, then the last spans flushed.
fn run_blocking(runtime: &tokio::runtime::Runtime, args: RunArgs) -> ExitCode {
    keyrelay::telemetry::init("info");
    let code = runtime.block_on(run(args));
    keyrelay::telemetry::shutdown();
    code
}

async fn run(args: RunArgs) -> ExitCode {
    let options = Options {
        config: args.source.config,
        secrets_dir: args.source.secrets_dir,
        listen: args.listen,
        admin: args.admin,
        upstream_ca: args.upstream_ca,
    };
    let running = match Running::start(options).await {
        Ok(running) => running,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("keyrelay: {e}");
            return ExitCode::FAILURE;
        }
    };
    wait_for_signal().await;
    tracing::info!("shutting down: draining open requests");
    running.shutdown().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

async fn webhook(args: keyrelay::k8s::WebhookArgs) -> ExitCode {
    keyrelay::telemetry::init_logging("info");
    match keyrelay::k8s::run(args, wait_for_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("keyrelay webhook: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = ctrl_c => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// `keyrelay check`: every error at once, each with file, line and field; exit 1 if any
/// (with `--strict`, also if there is any warning).
fn check(check: &CheckArgs) -> ExitCode {
    let args = &check.source;
    let text = config::read_config_text(&args.config);
    let early = SecretSource::new(args.secrets_dir.clone(), Default::default());
    let loaded = text.map_err(|message| {
        let origin = config::Origin::default();
        config::ConfigErrors(vec![config::Diagnostic { file: args.config.clone(), origin, message }])
    });
    let loaded = match loaded.and_then(|text| config::load_str_with_secrets(&text, &args.config, Some(&early)).0) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    let label = if check.strict { "error (--strict)" } else { "warning" };
    for warning in &loaded.warnings {
        eprintln!("{label}: {warning}");
    }
    let source = SecretSource::new(args.secrets_dir.clone(), loaded.config.inline_secrets.clone());
    let secrets = config::ResolvedSecrets::read(&loaded.config, &source);
    // `api_base: os.environ/NAME` and the like: the table shows the values in effect.
    let mut resolved_warnings = 0;
    let (resolved, mut errors) = match config::resolve_params(&loaded.config, &secrets) {
        Ok(resolved) => {
            for warning in &resolved.warnings {
                eprintln!("{label}: {warning}");
            }
            resolved_warnings = resolved.warnings.len();
            (resolved.config, Vec::new())
        }
        // Keys are still checked: every error at once.
        Err(errors) => (loaded.config, errors),
    };
    if let Err(more) = Snapshot::build(&resolved, &secrets, None) {
        errors.extend(more);
    }
    if !errors.is_empty() {
        errors.sort_by_key(|d| d.origin.line.unwrap_or(usize::MAX));
        eprintln!("{}", config::ConfigErrors(errors));
        return ExitCode::FAILURE;
    }
    print!("{}", config::render_table(&resolved));
    print!("{}", config::render_report(&loaded.compat));
    let warnings = loaded.warnings.len() + resolved_warnings;
    if check.strict && warnings > 0 {
        eprintln!("{}: {warnings} warning(s), which --strict makes errors", args.config.display());
        return ExitCode::FAILURE;
    }
    println!("{}: OK", args.config.display());
    ExitCode::SUCCESS
}
