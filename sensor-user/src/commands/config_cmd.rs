//! `modelwatch config`: print the defaults, or validate a file.

use std::process::ExitCode;

use crate::{cli::ConfigArgs, config::Config};

pub fn run(args: ConfigArgs) -> anyhow::Result<ExitCode> {
    match (&args.check, args.default) {
        (Some(path), _) => {
            Config::load(path, true)?;
            println!("{}: ok", path.display());
        }
        // `--default`, or nothing: the defaults are what there is to show.
        (None, _) => print!("{}", Config::default_toml()?),
    }
    Ok(ExitCode::SUCCESS)
}
