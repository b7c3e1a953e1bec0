//! phasetop's light core: everything a viewer, a controller and an external-job host
//! need, without libtorch. See docs/ARCHITECTURE.md.

pub mod branch;
pub mod checkpoints;
pub mod config;
pub mod control;
pub mod error;
pub mod event;
pub mod external;
pub mod files;
pub mod grammar;
pub mod headless;
pub mod history;
pub mod inspect;
pub mod interop;
pub mod jsonline;
pub mod modes;
pub mod rate;
pub mod remote;
pub mod rules;
pub mod rundir;
pub mod runlog;
pub mod session;
pub mod settings;
pub mod signals;
pub mod sysmon;
pub mod timeline;
