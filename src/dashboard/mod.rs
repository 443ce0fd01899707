//! The dashboard: the agent's own pages on its listener (`agent.listen`).
//!
//! - [`svg`]: the charts (the recent-runs bars, the latency sparkline, the job page's
//!   duration/latency chart) as inline SVG.

pub mod svg;
