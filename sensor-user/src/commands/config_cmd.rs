//! `modelwatch config`: print the defaults, or validate a file.

use std::process::ExitCode;

use crate::{cli::ConfigArgs, config::Config};

pub fn run(args: ConfigArgs) -> anyhow::Result<ExitCode> {
    if let Some(path) = &args.check {
        Config::load(path, true)?;
        println!("{}: ok", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", Config::default_toml());
    Ok(ExitCode::SUCCESS)
}
