//! Framed I/O: the one read → split loop every connection uses, and the one vectored writer.
//!
//! `FrameReader` appends reads to one buffer and splits whole frames off it as zero-copy
//! `Bytes`; `write_frames` writes a queue of frames with vectored writes (one syscall for many
//! small frames). The relay, the name-server face and the multiplexed client all use them.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::codec::frame::split;
use crate::codec::FrameError;

/// Room kept free in the read buffer before each read, and how much more to reserve.
const READ_LOW_WATER: usize = 16 * 1024;
const READ_RESERVE: usize = 64 * 1024;

/// The read side of a connection, cut into frames of at most `max_frame_size` bytes.
pub struct FrameReader<R> {
    rd: R,
    buf: BytesMut,
    max_frame_size: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(rd: R, max_frame_size: usize) -> Self {
        FrameReader {
            rd,
            buf: BytesMut::with_capacity(READ_RESERVE),
            max_frame_size,
        }
    }

    /// Reads once from the connection into the buffer: the byte count, 0 when the peer closed.
    /// Cancel-safe (a read cut short by `select!` loses nothing).
    pub async fn read(&mut self) -> std::io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < READ_LOW_WATER {
            self.buf.reserve(READ_RESERVE);
        }
        self.rd.read_buf(&mut self.buf).await
    }

    /// The next whole frame already read, length prefix included; `Ok(None)` when more must be
    /// read first; an error when the stream cannot be framed (close the connection).
    #[inline]
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        Ok(split(&self.buf, self.max_frame_size)?.map(|n| self.buf.split_to(n).freeze()))
    }

    /// Bytes read but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// Writes every queued frame, vectored, and empties the queue; the bytes written, or `None`
/// if the write failed. The queue is the caller's own and is reused: no allocation per write.
pub async fn write_frames<W: AsyncWrite + Unpin>(
    w: &mut W,
    out: &mut VecDeque<Bytes>,
) -> Option<usize> {
    if out.is_empty() {
        return Some(0);
    }
    let total: usize = out.iter().map(Bytes::len).sum();
    let mut frames = Frames {
        parts: out,
        remaining: total,
    };
    let ok = w.write_all_buf(&mut frames).await.is_ok();
    frames.parts.clear();
    ok.then_some(total)
}

/// A queue of byte slices seen as one `Buf`, so tokio can write them vectored.
struct Frames<'a> {
    parts: &'a mut VecDeque<Bytes>,
    remaining: usize,
}

impl Buf for Frames<'_> {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.parts.front().map(|b| &b[..]).unwrap_or(&[])
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, part) in dst.iter_mut().zip(self.parts.iter()) {
            *slot = IoSlice::new(part);
            n += 1;
        }
        n
    }

    fn advance(&mut self, mut cnt: usize) {
        self.remaining = self.remaining.saturating_sub(cnt);
        while cnt > 0 {
            let Some(front) = self.parts.front_mut() else {
                return;
            };
            if cnt < front.len() {
                front.advance(cnt);
                return;
            }
            cnt -= front.len();
            self.parts.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{RemotingCommand, SerializeType};
    use tokio::io::AsyncWriteExt;

    fn frame(opaque: i32, body: usize) -> Vec<u8> {
        let mut c = RemotingCommand::request(10);
        c.opaque = opaque;
        c.body = vec![7; body];
        c.encode(SerializeType::Json).unwrap()
    }

    #[tokio::test]
    async fn frames_come_out_whole_whatever_the_chunking() {
        let (mut a, b) = tokio::io::duplex(64);
        let mut r = FrameReader::new(b, 1 << 20);
        let wire: Vec<u8> = (0..20).flat_map(|i| frame(i, i as usize * 13)).collect();
        let writer = tokio::spawn(async move {
            for chunk in wire.chunks(7) {
                a.write_all(chunk).await.unwrap();
            }
        });
        let mut seen = Vec::new();
        while seen.len() < 20 {
            while let Some(f) = r.next_frame().unwrap() {
                seen.push(RemotingCommand::decode(&f).unwrap());
            }
            if seen.len() < 20 {
                assert!(
                    r.read().await.unwrap() > 0,
                    "closed after {} frames",
                    seen.len()
                );
            }
        }
        writer.await.unwrap();
        assert_eq!(r.buffered(), 0);
        for (i, c) in seen.iter().enumerate() {
            assert_eq!((c.opaque, c.body.len()), (i as i32, i * 13));
        }
        assert_eq!(
            r.read().await.unwrap(),
            0,
            "the writer is gone: end of stream"
        );
    }

    #[tokio::test]
    async fn an_oversized_length_is_an_error_from_its_first_bytes() {
        let (mut a, b) = tokio::io::duplex(64);
        let mut r = FrameReader::new(b, 1024);
        a.write_all(&(4096i32).to_be_bytes()).await.unwrap();
        r.read().await.unwrap();
        let e = r.next_frame().unwrap_err();
        assert_eq!(e.offset, 0, "{e}");
    }

    #[tokio::test]
    async fn write_frames_writes_the_queue_in_order_and_empties_it() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let mut out: VecDeque<Bytes> = (0..5).map(|i| Bytes::from(frame(i, 100))).collect();
        let total: usize = out.iter().map(Bytes::len).sum();
        assert_eq!(write_frames(&mut a, &mut out).await, Some(total));
        assert!(out.is_empty());
        assert_eq!(write_frames(&mut a, &mut out).await, Some(0));
        drop(a);
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        let want: Vec<u8> = (0..5).flat_map(|i| frame(i, 100)).collect();
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn a_failed_write_is_none() {
        let (mut a, b) = tokio::io::duplex(16);
        drop(b);
        let mut out: VecDeque<Bytes> = [Bytes::from(frame(1, 10))].into();
        assert_eq!(write_frames(&mut a, &mut out).await, None);
    }
}
