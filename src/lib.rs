//! altoshield: a TLS-terminating, version-aware caching proxy for ALTO (RFC 7285), with the
//! reference origin server it is tested against.
//!
//! The pure protocol core lives in [`alto`] and does no IO; everything that touches a socket is in
//! the other modules. `ARCHITECTURE.md` at the repository root has the map.

pub mod admin;
pub mod admit;
pub mod alto;
pub mod cache;
pub mod coalesce;
pub mod config;
pub mod demo;
pub mod http;
pub mod ird;
pub mod loadgen;
pub mod origin;
pub mod rng;
pub mod server;
pub mod shield;
pub mod tls;
pub mod upstream;
