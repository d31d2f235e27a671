//! `modelwatch config`: print the defaults, or validate a file.

use std::process::ExitCode;

use crate::{cli::ConfigArgs, config::Config};

pub fn run(args: ConfigArgs) -> anyhow::Result<ExitCode> {
    match (&args.check, args.default) {
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
        // `--default`, or nothing: the defaults are what there is to show.
        (None, _) => print!("{}", Config::default_toml()?),
    }
    Ok(ExitCode::SUCCESS)
}
