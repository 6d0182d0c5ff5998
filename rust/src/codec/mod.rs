//! RocketMQ remoting codec: frames, headers, properties, batches, stored messages, routes.
//!
//! Everything here is pure: it takes bytes and returns values or errors, never panics on input,
//! and does no I/O, so the proxy, the producer and the fuzzers share one implementation.

pub mod codes;
pub mod command;
pub mod error;
pub mod frame;
pub mod header;
mod json;
pub mod message;
pub mod properties;
pub mod route;
pub mod wire;

pub use command::RemotingCommand;
pub use error::FrameError;
pub use frame::{FrameDecoder, FrameView, DEFAULT_MAX_FRAME_SIZE};
pub use header::HeaderRef;
pub use wire::{LanguageCode, SerializeType};
