//! The `blogql` command: parse settings, pick the subcommand, run it.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use blogql::config::{Cli, Command, LogFormat};
use blogql::telemetry::logs::{LineFormat, LogFlusher, LogWriter, install_access_log};
use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for a bad setting or an unusable environment.
const BAD_SETTING: u8 = 2;

/// Logs to stderr in `format`, filtered by `RUST_LOG`; terminal colour
/// codes only when stderr is a terminal (never into files or journald).
///
/// A line is written by a thread of its own (`telemetry::logs`): a request
/// never waits for stderr, and when stderr falls behind by a megabyte,
/// lines are dropped and counted (`blogql_log_lines_dropped_total`)
/// rather than blocking. Lines still pending are written when the
/// returned guard is dropped.
fn init_logs(format: LogFormat) -> LogFlusher {
    let filter = blogql::config::log_filter(std::env::var("RUST_LOG").ok().as_deref());
    let (writer, flusher) = LogWriter::to_stderr();
    let counted = writer.clone();
    blogql::telemetry::count_log_drops(move || counted.dropped_lines());
    let format = LineFormat {
        json: format == LogFormat::Json,
        ansi: std::io::stderr().is_terminal(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer.clone())
        .event_format(format)
        .init();
    install_access_log(writer, format);
    flusher
}

#[tokio::main]
async fn main() -> ExitCode {
    if let Err(err) = dotenvy::dotenv()
        && !err.not_found()
    {
        return fail(&format!(".env: {err}"));
    }
    let cli = Cli::parse();
    let format = match cli.settings.log_format() {
        Ok(format) => format,
        Err(err) => return fail(&err.to_string()),
    };
    // Kept to the end of `main`: dropping it writes the lines still queued.
    let _logs = init_logs(format);

    let command = cli.command.unwrap_or(Command::Serve);
    if command == Command::PrintSchema {
        print!("{}", blogql::graphql::sdl());
        return ExitCode::SUCCESS;
    }
    let config = match cli.settings.validate() {
        Ok(config) => config,
        Err(err) => return fail(&err.to_string()),
    };
    if let Command::CreateAdmin { username } = &command {
        return match blogql::admin::create_admin(&config, username, blogql::admin::read_password)
            .await
        {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(err) => fail(&err.to_string()),
        };
    }
    if command == Command::Migrate {
        let migrated = async {
            let db = blogql::db::Db::connect(&config.database_url).await?;
            db.migrate().await
        };
        return match migrated.await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => fail(&format!("DATABASE_URL: {err}")),
        };
    }
    let app = match blogql::App::build(&config).await {
        Ok(app) => app,
        Err(err) => return fail(&err.to_string()),
    };
    let listener = match tokio::net::TcpListener::bind(config.bind).await {
        Ok(listener) => listener,
        Err(err) => {
            return fail(&format!(
                "BLOGQL_BIND: cannot listen on {}: {err}",
                config.bind
            ));
        }
    };
    tracing::info!("blogql serving GraphQL at http://{}/graphql", config.bind);
    match app.serve(listener, shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!(error = %err, "server failed");
            ExitCode::FAILURE
        }
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("blogql: {message}");
    ExitCode::from(BAD_SETTING)
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
