//! Moving through recorded runs: the replay transport ([`replay::Player`]) and the
//! compare timeline that keeps several players on one step ([`compare::Compare`]).
//! Depends on `model` only.

pub mod compare;
mod live_end;
pub mod replay;
