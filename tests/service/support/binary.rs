//! The one way tests run the `cloudtrail-changes` binary: a clean environment plus the given
//! settings, local AWS credentials, and no instance-metadata lookups.

use std::process::Command;

/// The binary with `args` and `env` (typically a [`super::stack::Stack::env`]), nothing else
/// from the test's own environment.
pub fn command<K, V>(args: &[&str], env: impl IntoIterator<Item = (K, V)>) -> Command
where
    K: AsRef<std::ffi::OsStr>,
    V: AsRef<std::ffi::OsStr>,
{
    let mut command = Command::new(env!("CARGO_BIN_EXE_cloudtrail-changes"));
    command
        .args(args)
        .env_clear()
        .envs(env)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    command
}
