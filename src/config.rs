//! Configuration: value formats shared by the command line and the configuration file.

pub mod units;
