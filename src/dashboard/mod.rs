//! The agent's own web page, served by the listener (`agent.listen`).
//!
//! - [`auth`]: signing in with `agent.listen_token` (a stateless session cookie) and the
//!   CSRF token every state-changing form carries.
//! - [`actions`]: what the page's buttons do (silence, acknowledge, run now, retry or
//!   drop an outbox message), each a `POST` that needs a session.

pub mod actions;
pub mod auth;
