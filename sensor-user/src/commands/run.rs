//! `modelwatch run`: the sensor, its sinks and its API.

use std::{
    process::ExitCode,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;

use crate::{
    api::{self, Service},
    bus::Bus,
    cli::RunArgs,
    sensor::{ConfigSource, Sensor},
    sink::{self, JsonlFileSink, StdoutSink},
};

/// Queue of each sink, in events: deep enough to ride out bursts without loss.
const SINK_QUEUE: usize = 1 << 14;

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let cfg = super::load_config(args.config.as_deref())?;
    // Every capability the sensor needs, named when missing: without some of them it would
    // run and silently see less.
    crate::privileges::require(crate::privileges::SENSOR)?;
    let cfg_path = args.config.clone().unwrap_or_else(|| std::path::PathBuf::from(crate::config::DEFAULT_PATH));
    // Network sinks are checked against the machine before any probe is loaded: a name that
    // does not resolve or a missing certificate is a configuration error, not a silent drop.
    let network_sinks = sink::network::build_all(&cfg, &cfg_path)?;
    // Whatever the sensor creates (state, event files, the API socket before its chmod) is
    // never open to other users.
    // SAFETY: umask cannot fail; no other thread exists yet.
    unsafe { libc::umask(0o027) };
    let format = args.format.unwrap_or(cfg.output.format);
    let color = super::use_color(&args.color);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let bus = Bus::new();
        let mut sinks = Vec::new();
        if cfg.output.stdout {
            sinks.push(sink::spawn(&bus, Box::new(StdoutSink::new(format, color)), SINK_QUEUE)?);
        }
        if let Some(j) = &cfg.output.jsonl {
            let file = JsonlFileSink::open_as(&j.path, j.max_size.0, j.keep, j.format)?;
            sinks.push(sink::spawn(&bus, Box::new(file), SINK_QUEUE)?);
        }
        let mut network = Vec::new();
        for spec in network_sinks {
            let name = spec.name.clone();
            let queue = SINK_QUEUE;
            network.push(sink::network::spawn(&bus, spec, queue)?);
            tracing::info!(sink = %name, "network sink started");
        }
        let mut all_stats: Vec<_> = sinks.iter().map(|s| s.stats.clone()).collect();
        all_stats.extend(network.iter().map(|s| s.stats.clone()));
        let sink_stats: api::SharedSinks = Arc::new(Mutex::new(all_stats));
        let source = ConfigSource { path: cfg_path.clone(), explicit: args.config.is_some() };
        // Bound before the probes load: a taken or forbidden address stops the start.
        let metrics_listener = match cfg.metrics.socket_addr() {
            Some(address) => Some(crate::metrics::bind(address).await?),
            None => None,
        };
        let (sensor, ring) = Sensor::start(cfg.clone(), source, bus.clone())?;
        let reporter = if network.is_empty() {
            None
        } else {
            let stats = network.iter().map(|s| s.stats.clone()).collect();
            Some(
                sink::report::spawn(bus.clone(), sensor.status(), sensor.host(), stats)
                    .context("starting the sink reports")?,
            )
        };
        let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
        let service = Service::new(bus.clone(), sensor.status(), sink_stats, sensor.host(), cfg.api.subscriber_queue)
            .with_live_stats(sensor.stats_requests());
        // The metrics show what Status shows, from the same service.
        let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics = metrics_listener.map(|listener| {
            let exporter = crate::metrics::Exporter::new(service.clone());
            if let Ok(address) = listener.local_addr() {
                tracing::info!(%address, "metrics endpoint listening (GET /metrics)");
            }
            crate::metrics::serve(listener, exporter, async {
                let _ = metrics_stopped.await;
            })
        });
        let server = if cfg.api.enabled {
            let handle = api::serve(&cfg.api.socket, service, async {
                let _ = api_stopped.await;
            })
            .await?;
            tracing::info!(socket = %cfg.api.socket.display(), "API listening");
            Some(handle)
        } else {
            None
        };
        tracing::info!("modelwatch running; stop with Ctrl-C or SIGTERM");
        // READY once the loop answers, then WATCHDOG and STATUS while it does.
        let notifier = crate::notify::spawn(sensor.stats_requests(), sensor.status(), bus.clone());
        let result = sensor
            .run(ring, async {
                shutdown_signal().await;
                crate::notify::stopping();
            })
            .await;
        if let Some(n) = notifier {
            n.abort();
        }
        // The sinks' last loss reports go out before the bus closes.
        if let Some(r) = reporter {
            r.stop();
        }
        // Closing the bus ends every Tail stream, so the server can stop promptly.
        bus.close();
        let _ = stop_api.send(());
        let _ = stop_metrics.send(());
        if let Some(m) = metrics
            && tokio::time::timeout(Duration::from_secs(5), m).await.is_err()
        {
            tracing::warn!("metrics endpoint did not stop within 5 s");
        }
        if let Some(handle) = server
            && tokio::time::timeout(Duration::from_secs(5), handle).await.is_err()
        {
            tracing::warn!("API server did not stop within 5 s");
        }
        for s in sinks {
            s.join();
        }
        for s in network {
            s.join();
        }
        result?;
        Ok(ExitCode::SUCCESS)
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
