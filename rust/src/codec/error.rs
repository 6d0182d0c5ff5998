//! The one error type for invalid remoting frames.

use std::fmt;

/// Why a frame is invalid; `FrameError` adds where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameErrorKind {
    /// The int32 length prefix is below 4, so it cannot even hold the header-length word.
    LengthBelowMinimum(i64),
    /// The frame (length prefix included) is larger than the configured limit.
    TooLarge { frame_size: u64, max: usize },
    /// The header length in the second word runs past the end of the frame.
    HeaderBeyondFrame { header_len: usize, available: usize },
    /// The serialize-type byte is neither 0 (JSON) nor 1 (ROCKETMQ).
    UnknownSerializeType(u8),
    /// The JSON header does not parse, or lacks a field the protocol requires.
    MalformedJson(String),
    /// The ROCKETMQ binary header is truncated or has inconsistent lengths.
    MalformedBinary(String),
    /// `decode` was given fewer bytes than the frame's length prefix announces.
    Incomplete { needed: usize, available: usize },
    /// `decode` was given more bytes than one frame.
    TrailingBytes(usize),
    /// A command cannot be encoded (header longer than 24 bits can express, field out of range).
    Unencodable(String),
}

/// An invalid frame: what was wrong and the byte offset where it was found.
///
/// Offsets count from the start of the frame for `decode`, and from the start of the stream
/// for `FrameDecoder`, so an operator can find the byte in a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub offset: usize,
    pub kind: FrameErrorKind,
}

impl FrameError {
    pub(crate) fn new(offset: usize, kind: FrameErrorKind) -> Self {
        FrameError { offset, kind }
    }

    /// The same error with its offset moved by `base` bytes (frame offset to stream offset).
    pub fn shifted(mut self, base: usize) -> Self {
        self.offset += base;
        self
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "byte {}: ", self.offset)?;
        match &self.kind {
            FrameErrorKind::LengthBelowMinimum(n) => write!(
                f,
                "frame length {n} is below 4 (expected at least the 4-byte header-length word)"
            ),
            FrameErrorKind::TooLarge { frame_size, max } => write!(
                f,
                "frame of {frame_size} bytes exceeds the maximum frame size of {max} bytes"
            ),
            FrameErrorKind::HeaderBeyondFrame {
                header_len,
                available,
            } => write!(
                f,
                "header length {header_len} runs past the end of the frame \
                 (expected at most {available} bytes)"
            ),
            FrameErrorKind::UnknownSerializeType(t) => write!(
                f,
                "unknown serialize type {t} (expected 0 for JSON or 1 for ROCKETMQ)"
            ),
            FrameErrorKind::MalformedJson(m) => write!(f, "malformed JSON header: {m}"),
            FrameErrorKind::MalformedBinary(m) => write!(f, "malformed ROCKETMQ header: {m}"),
            FrameErrorKind::Incomplete { needed, available } => write!(
                f,
                "incomplete frame: expected {needed} bytes, got {available}"
            ),
            FrameErrorKind::TrailingBytes(n) => {
                write!(
                    f,
                    "{n} trailing bytes after the end of the frame (expected exactly one frame)"
                )
            }
            FrameErrorKind::Unencodable(m) => write!(f, "cannot encode: {m}"),
        }
    }
}

impl std::error::Error for FrameError {}
