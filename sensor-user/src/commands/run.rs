//! `modelwatch run`: the sensor.

use std::{io::IsTerminal as _, process::ExitCode};

use anyhow::Context as _;

use crate::{
    bus::Bus,
    cli::RunArgs,
    sensor::Sensor,
    sink::{self, StdoutSink},
};

/// Queue of each sink, in events: deep enough to ride out bursts without loss.
const SINK_QUEUE: usize = 1 << 16;

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let cfg = super::load_config(args.config.as_deref())?;
    let format = args.format.unwrap_or(cfg.output.format);
    let color = match args.color.as_str() {
        "always" => true,
        "never" => false,
        _ => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let bus = Bus::new();
        let stdout = sink::spawn(&bus, Box::new(StdoutSink::new(format, color)), SINK_QUEUE);
        let (sensor, ring) = Sensor::start(cfg, bus.clone())?;
        tracing::info!("modelwatch running; stop with Ctrl-C or SIGTERM");
        let result = sensor.run(ring, shutdown_signal()).await;
        bus.close();
        stdout.join();
        result.map(|()| ExitCode::SUCCESS)
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("stopping");
}
