//! klaxon: a monitoring agent. It runs checks on one scheduler, retries what fails,
//! and tells a person when a check has finally failed, and again when it recovers.
//!
//! The binary (`main.rs`) only parses arguments and calls [`cli::main`]; everything it
//! does lives here so tests drive the same code.

pub mod agent;
pub mod alert;
pub mod api;
pub mod badge;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod delivery;
pub mod dispatch;
pub mod exec;
pub mod heartbeat;
pub mod listener;
pub mod liveness;
pub mod lockfile;
pub mod logging;
pub mod metrics;
pub mod online;
pub mod private;
pub mod quiet;
pub mod retry;
pub mod runner;
pub mod runtime;
pub mod schedule;
pub mod scheduler;
pub mod service;
pub mod started;
pub mod status;
pub mod store;
pub mod unwritten;
