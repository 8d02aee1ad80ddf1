//! The pure ALTO core: typed RFC 7285 messages, identifiers, typed addresses, media types, request
//! validation, canonical request forms, longest-prefix match and the local computations over maps.
//!
//! Architecture invariant: nothing in this module (or below it) does IO. No sockets, no files, no
//! clocks, no hyper; inputs are bytes and values, outputs are values and bytes. That keeps every
//! protocol rule testable with plain data, and lets the origin and the shield share one
//! implementation of each rule.

pub mod addr;
pub mod canon;
pub mod compute;
pub mod constraint;
pub mod error;
pub mod ident;
pub mod lpm;
pub mod media;
pub mod types;
pub mod validate;

pub use addr::TypedAddr;
pub use error::{AltoError, ErrorCode};
