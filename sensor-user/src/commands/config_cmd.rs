//! `modelwatch config`: print the defaults, validate a file, or show the running sensor's
//! configuration.

use std::process::ExitCode;

use anyhow::Context as _;

use crate::{api, cli::ConfigArgs, config::Config};

pub fn run(args: ConfigArgs) -> anyhow::Result<ExitCode> {
    match (&args.check, args.effective) {
        (Some(path), _) => {
            let cfg = Config::load(path, true)?;
            // The network sinks against this machine: names resolve, files read, librdkafka
            // accepts its properties.
            crate::sink::network::check(&cfg, path)?;
            // The trusted signing keys and CA certificates read and are usable.
            if cfg.artifact.signing.enabled {
                modelwatch_artifact::signature::Verifier::from_config(&cfg.artifact.signing)
                    .map_err(|e| anyhow::anyhow!("{}: artifact.signing: {e}", path.display()))?;
            }
            println!("{}: ok", path.display());
        }
        (None, true) => print!("{}", effective(&args.socket)?),
        // `--default`, or nothing: the defaults are what there is to show.
        (None, false) => print!("{}", Config::default_toml()?),
    }
    Ok(ExitCode::SUCCESS)
}

/// The running sensor's configuration, with a header saying where it came from and when.
fn effective(socket: &std::path::Path) -> anyhow::Result<String> {
    let rt = super::client_runtime()?;
    let c = rt.block_on(async {
        let mut client = api::connect(socket).await?;
        let reply = client.config(crate::proto::v1::ConfigRequest {}).await.context("Config")?;
        anyhow::Ok(reply.into_inner())
    })?;
    let mut out = format!("# The configuration in force in the sensor, read from {}", c.path);
    // pbjson renders a Timestamp as RFC 3339.
    if let Some(t) = c.loaded_at.as_ref().and_then(|t| serde_json::to_value(t).ok())
        && let Some(t) = t.as_str()
    {
        out.push_str(&format!(" at {t}"));
    }
    out.push('\n');
    if !c.restart_pending.is_empty() {
        out.push_str(&format!(
            "# The file changes these settings, which keep their value below until a restart: {}\n",
            c.restart_pending.join(", ")
        ));
    }
    out.push_str(&c.toml);
    Ok(crate::output::sanitize_lines(&out))
}
