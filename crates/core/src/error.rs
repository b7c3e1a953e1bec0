//! Errors at the bottom of the house: what a usage error is, and the exit code each
//! kind of error gets (0 success, 1 runtime failure or a refused command, 2 usage or
//! config errors). Every crate reports through these, so no module needs the CLI's.

use crate::config::ConfigError;

/// A usage error: reported with exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for UsageError {}

/// The process exit code for an error: 2 for usage and config errors, else 1.
pub fn exit_code_for(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<ConfigError>().is_some() || e.downcast_ref::<UsageError>().is_some() { 2 } else { 1 }
}
