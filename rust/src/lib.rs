//! rmqfast: the Rust core of the rmqfast Python package.
//!
//! `codec` is pure (no I/O): RocketMQ remoting frames, headers, message layouts and route data.
//! `py` holds the thin PyO3 wrappers exposed to Python as `rmqfast._core`.

pub mod codec;
pub mod json_text;
pub mod net;
pub mod producer;
pub mod proxy;
pub mod sync;

#[cfg(feature = "python")]
mod py;
