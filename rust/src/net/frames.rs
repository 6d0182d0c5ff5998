//! Framed I/O: the one read → split loop every connection uses, and the one vectored writer.
//!
//! `FrameReader` appends reads to one buffer and splits whole frames off it as zero-copy
//! `Bytes`; `write_frames` writes a queue of frames with vectored writes (one syscall for many
//! small frames). The relay, the name-server face and the multiplexed client all use them.
//!
//! A reader facing untrusted peers takes `ReadLimits`: a frame must be complete within
//! `frame_timeout` of its first byte, and a frame larger than `FREE_FRAME_BYTES` is buffered
//! only once its whole length is reserved from a `FrameBudget` shared by every connection
//! (the reader waits for room, within the same deadline). So what all connections hold in
//! partial frames is bounded by the budget plus `FREE_FRAME_BYTES` per connection.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::codec::frame::split;
use crate::codec::FrameError;

/// Room kept free in the read buffer before each read, and how much more to reserve.
const READ_LOW_WATER: usize = 16 * 1024;
const READ_RESERVE: usize = 64 * 1024;

/// Frames up to this size (length prefix included) are read without a budget reservation.
pub const FREE_FRAME_BYTES: usize = READ_RESERVE;

/// The budget is counted in units of this many bytes (a semaphore's permits are `u32`).
const BUDGET_UNIT: usize = 1024;

/// What a guarded reader reports, for the owner's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadEvent {
    /// A large frame waited for room in the budget.
    BudgetWait,
    /// Bytes reserved (positive) or given back (negative).
    BudgetHeld(i64),
    /// A frame was not complete within the frame timeout: the read failed.
    FrameTimeout,
}

/// Where a guarded reader reports its `ReadEvent`s.
pub trait ReadEvents: Send + Sync {
    fn on_read_event(&self, event: ReadEvent);
}

/// Memory for partial frames, shared by every connection of a listener set.
pub struct FrameBudget {
    sem: Arc<Semaphore>,
    units: u32,
}

impl FrameBudget {
    /// A budget of `bytes` (rounded down to whole KiB, at least one).
    pub fn new(bytes: usize) -> Arc<FrameBudget> {
        let units = u32::try_from(bytes / BUDGET_UNIT)
            .unwrap_or(u32::MAX)
            .clamp(1, Semaphore::MAX_PERMITS as u32);
        Arc::new(FrameBudget {
            sem: Arc::new(Semaphore::new(units as usize)),
            units,
        })
    }

    /// Bytes reserved right now.
    pub fn held(&self) -> usize {
        (self.units as usize - self.sem.available_permits()) * BUDGET_UNIT
    }
}

/// The limits of a reader facing untrusted peers.
#[derive(Clone)]
pub struct ReadLimits {
    /// A frame must be complete this long after its first byte arrived.
    pub frame_timeout: Option<Duration>,
    /// Large frames reserve their length here before they are buffered.
    pub budget: Option<Arc<FrameBudget>>,
    pub events: Arc<dyn ReadEvents>,
}

/// A budget reservation for the frame being read; given back when it is complete.
struct Held {
    _permit: OwnedSemaphorePermit,
    bytes: usize,
}

/// The read side of a connection, cut into frames of at most `max_frame_size` bytes.
pub struct FrameReader<R> {
    rd: R,
    buf: BytesMut,
    max_frame_size: usize,
    limits: Option<ReadLimits>,
    /// When the first byte of the incomplete frame at the head of `buf` arrived.
    partial_since: Option<Instant>,
    last_read: Option<Instant>,
    held: Option<Held>,
}

/// One read from `rd` into `buf`, with at least `READ_LOW_WATER` bytes of room.
///
/// A connection that has to wait for bytes with nothing buffered waits holding no buffer: the
/// room reserved for the read is let go when the read is pending (the frames already cut from
/// it keep what they need) and reserved again when the connection is ready, so an idle
/// connection costs no read memory, and each burst starts at the front of a fresh buffer
/// rather than touching every page of an old one. Cancel-safe: bytes read are in `buf` before
/// the poll that read them returns.
async fn fill<R: AsyncRead + Unpin>(rd: &mut R, buf: &mut BytesMut) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| {
        if buf.capacity() - buf.len() < READ_LOW_WATER {
            buf.reserve(READ_RESERVE);
        }
        let r = tokio_util::io::poll_read_buf(Pin::new(&mut *rd), cx, buf);
        if r.is_pending() && buf.is_empty() {
            *buf = BytesMut::new();
        }
        r
    })
    .await
}

fn timed_out(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, what)
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader for a trusted peer (an upstream): no deadline, no budget.
    pub fn new(rd: R, max_frame_size: usize) -> Self {
        FrameReader {
            rd,
            buf: BytesMut::new(),
            max_frame_size,
            limits: None,
            partial_since: None,
            last_read: None,
            held: None,
        }
    }

    /// A reader for an untrusted peer (a client), under `limits`.
    pub fn guarded(rd: R, max_frame_size: usize, limits: ReadLimits) -> Self {
        let mut r = Self::new(rd, max_frame_size);
        r.limits = Some(limits);
        r
    }

    /// Reads once from the connection into the buffer: the byte count, 0 when the peer closed.
    /// A guarded reader first reserves a large frame's length from the budget, and fails with
    /// `TimedOut` when the frame at the head of the buffer is not complete within the frame
    /// timeout. Cancel-safe (a read cut short by `select!` loses nothing).
    pub async fn read(&mut self) -> std::io::Result<usize> {
        // Borrowed, not cloned: no reference-count traffic per read.
        let Some(limits) = &self.limits else {
            return fill(&mut self.rd, &mut self.buf).await;
        };
        let deadline = match (self.partial_since, limits.frame_timeout) {
            (Some(since), Some(t)) => Some(since + t),
            _ => None,
        };
        let buffered = self.buf.len();
        let expired = |what: &str| {
            limits.events.on_read_event(ReadEvent::FrameTimeout);
            timed_out(format!(
                "frame not complete within {} ms of its first byte ({what}; {buffered} bytes \
                 buffered)",
                limits.frame_timeout.unwrap_or_default().as_millis(),
            ))
        };
        if let (Some(budget), None, Some(len)) = (&limits.budget, &self.held, self.head_len()) {
            if len > FREE_FRAME_BYTES {
                let units = len.div_ceil(BUDGET_UNIT).min(budget.units as usize) as u32;
                let permit = match budget.sem.clone().try_acquire_many_owned(units) {
                    Ok(p) => p,
                    Err(_) => {
                        limits.events.on_read_event(ReadEvent::BudgetWait);
                        let acquire = budget.sem.clone().acquire_many_owned(units);
                        let p = match deadline {
                            Some(d) => tokio::time::timeout_at(d.into(), acquire)
                                .await
                                .map_err(|_| expired("waiting for frame memory"))?,
                            None => acquire.await,
                        };
                        p.map_err(|_| timed_out("the frame budget is closed".into()))?
                    }
                };
                let bytes = units as usize * BUDGET_UNIT;
                limits
                    .events
                    .on_read_event(ReadEvent::BudgetHeld(bytes as i64));
                self.held = Some(Held {
                    _permit: permit,
                    bytes,
                });
                // The whole frame in one allocation: no growth copies while it arrives.
                self.buf.reserve(len - self.buf.len());
            }
        }
        let read = fill(&mut self.rd, &mut self.buf);
        let n = match deadline {
            Some(d) => tokio::time::timeout_at(d.into(), read)
                .await
                .map_err(|_| expired("reading"))??,
            None => read.await?,
        };
        let now = Instant::now();
        self.last_read = Some(now);
        if self.partial_since.is_none() && n > 0 {
            self.partial_since = Some(now);
        }
        Ok(n)
    }

    /// The announced size of the frame at the head of the buffer (length prefix included),
    /// once its length is in.
    fn head_len(&self) -> Option<usize> {
        let b = self.buf.get(..4)?;
        let len = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        usize::try_from(len).ok().map(|l| l + 4)
    }

    /// The next whole frame already read, length prefix included; `Ok(None)` when more must be
    /// read first; an error when the stream cannot be framed (close the connection).
    #[inline]
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        let Some(n) = split(&self.buf, self.max_frame_size)? else {
            return Ok(None);
        };
        let frame = self.buf.split_to(n).freeze();
        if self.limits.is_some() {
            self.frame_done();
        }
        Ok(Some(frame))
    }

    /// A frame was taken off the buffer: give back its reservation, restart the clock for the
    /// next one (its first bytes, if any, came with the last read).
    fn frame_done(&mut self) {
        if let (Some(h), Some(l)) = (self.held.take(), &self.limits) {
            l.events
                .on_read_event(ReadEvent::BudgetHeld(-(h.bytes as i64)));
        }
        self.partial_since = if self.buf.is_empty() {
            None
        } else {
            self.last_read
        };
    }

    /// Bytes read but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether the buffer holds the start of a frame not yet complete.
    pub fn mid_frame(&self) -> bool {
        !self.buf.is_empty()
    }
}

impl<R> Drop for FrameReader<R> {
    fn drop(&mut self) {
        if let (Some(h), Some(l)) = (self.held.take(), &self.limits) {
            l.events
                .on_read_event(ReadEvent::BudgetHeld(-(h.bytes as i64)));
        }
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn frame(opaque: i32, body: usize) -> Vec<u8> {
        let mut c = RemotingCommand::request(10);
        c.opaque = opaque;
        c.body = vec![7; body];
        c.encode(SerializeType::Json).unwrap()
    }

    #[tokio::test]
    async fn an_idle_reader_holds_no_buffer_and_a_burst_gives_its_memory_back() {
        let (mut a, b) = tokio::io::duplex(1 << 20);
        let mut r = FrameReader::new(b, 1 << 20);
        // Waiting with nothing buffered: no buffer held (the read is cut off, losing nothing).
        async fn waiting(r: &mut FrameReader<tokio::io::DuplexStream>) -> bool {
            tokio::time::timeout(Duration::from_millis(20), r.read())
                .await
                .is_err()
        }
        assert!(waiting(&mut r).await);
        assert_eq!(r.buf.capacity(), 0, "an idle reader waits with no buffer");
        for i in 0..3 {
            a.write_all(&frame(i, 100)).await.unwrap();
            r.read().await.unwrap();
            assert!(r.next_frame().unwrap().is_some());
            assert!(waiting(&mut r).await);
            assert_eq!(r.buf.capacity(), 0);
        }
        // A burst, then quiet: the burst's buffer is let go.
        let burst: Vec<u8> = (0..400).flat_map(|i| frame(i, 1000)).collect();
        a.write_all(&burst).await.unwrap();
        let mut frames = 0;
        while frames < 400 {
            r.read().await.unwrap();
            while r.next_frame().unwrap().is_some() {
                frames += 1;
            }
        }
        assert!(waiting(&mut r).await);
        assert_eq!(r.buf.capacity(), 0);
        // Nothing was lost to the cut-off reads.
        a.write_all(&frame(9, 10)).await.unwrap();
        r.read().await.unwrap();
        assert!(r.next_frame().unwrap().is_some());
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

    #[derive(Default)]
    struct Events {
        waits: std::sync::atomic::AtomicU64,
        timeouts: std::sync::atomic::AtomicU64,
        held: std::sync::atomic::AtomicI64,
    }

    impl ReadEvents for Events {
        fn on_read_event(&self, e: ReadEvent) {
            use std::sync::atomic::Ordering::Relaxed;
            match e {
                ReadEvent::BudgetWait => self.waits.fetch_add(1, Relaxed),
                ReadEvent::FrameTimeout => self.timeouts.fetch_add(1, Relaxed),
                ReadEvent::BudgetHeld(n) => {
                    self.held.fetch_add(n, Relaxed);
                    0
                }
            };
        }
    }

    fn limits(budget: &Arc<FrameBudget>, events: &Arc<Events>, timeout: Duration) -> ReadLimits {
        ReadLimits {
            frame_timeout: Some(timeout),
            budget: Some(budget.clone()),
            events: events.clone(),
        }
    }

    /// Reads until a frame is complete; None if the read failed or the peer closed.
    async fn read_frame<R: AsyncRead + Unpin>(r: &mut FrameReader<R>) -> Option<Bytes> {
        loop {
            if let Some(f) = r.next_frame().unwrap() {
                return Some(f);
            }
            match r.read().await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    #[tokio::test]
    async fn a_large_frame_waits_for_room_in_the_shared_budget() {
        use std::sync::atomic::Ordering::Relaxed;
        let budget = FrameBudget::new(1 << 20);
        let events = Arc::new(Events::default());
        let long = Duration::from_secs(30);
        let big = frame(1, 700 * 1024);
        let (mut a_tx, a_rx) = tokio::io::duplex(1 << 16);
        let (mut b_tx, b_rx) = tokio::io::duplex(1 << 16);
        let mut a = FrameReader::guarded(a_rx, 1 << 20, limits(&budget, &events, long));
        let mut b = FrameReader::guarded(b_rx, 1 << 20, limits(&budget, &events, long));
        // A starts its frame and holds 700 KiB of the 1 MiB budget.
        a_tx.write_all(&big[..1000]).await.unwrap();
        a.read().await.unwrap();
        assert!(a.next_frame().unwrap().is_none());
        // Poll A's next read once: it reserves the frame's length, then waits for bytes.
        {
            let mut next_read = std::pin::pin!(a.read());
            std::future::poll_fn(|cx| {
                assert!(std::future::Future::poll(next_read.as_mut(), cx).is_pending());
                std::task::Poll::Ready(())
            })
            .await;
        }
        assert_eq!(budget.held(), big.len().div_ceil(1024) * 1024);
        // B's whole frame is sent, but B cannot reserve it: it waits.
        let b_send = tokio::spawn({
            let big = big.clone();
            async move { b_tx.write_all(&big).await.map(|_| b_tx) }
        });
        let b_read = tokio::spawn(async move { read_frame(&mut b).await.map(|f| f.len()) });
        let deadline = Instant::now() + Duration::from_secs(5);
        while events.waits.load(Relaxed) == 0 {
            assert!(Instant::now() < deadline, "B never waited for the budget");
            tokio::task::yield_now().await;
        }
        // A's frame completes and gives its reservation back; B gets it and finishes.
        let a_rest = tokio::spawn({
            let big = big.clone();
            async move { a_tx.write_all(&big[1000..]).await.map(|_| a_tx) }
        });
        assert_eq!(read_frame(&mut a).await.map(|f| f.len()), Some(big.len()));
        let _keep_open = (
            a_rest.await.unwrap().unwrap(),
            b_send.await.unwrap().unwrap(),
        );
        let got = tokio::time::timeout(Duration::from_secs(5), b_read)
            .await
            .expect("B reads its frame once A is done")
            .unwrap();
        assert_eq!(got, Some(big.len()));
        assert_eq!(budget.held(), 0);
        assert_eq!(events.held.load(Relaxed), 0);
        assert_eq!(events.timeouts.load(Relaxed), 0);
    }

    #[tokio::test]
    async fn a_frame_that_does_not_complete_in_time_fails_the_read() {
        use std::sync::atomic::Ordering::Relaxed;
        let budget = FrameBudget::new(1 << 20);
        let events = Arc::new(Events::default());
        let (mut tx, rx) = tokio::io::duplex(1 << 16);
        let mut r = FrameReader::guarded(
            rx,
            1 << 20,
            limits(&budget, &events, Duration::from_millis(100)),
        );
        let f = frame(1, 100 * 1024);
        tx.write_all(&f[..f.len() / 2]).await.unwrap();
        let e = loop {
            assert!(r.next_frame().unwrap().is_none());
            match r.read().await {
                Ok(n) => assert!(n > 0),
                Err(e) => break e,
            }
        };
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
        assert!(e.to_string().contains("100 ms"), "{e}");
        assert_eq!(events.timeouts.load(Relaxed), 1);
        drop(r);
        assert_eq!(budget.held(), 0, "the reservation goes with the reader");
        assert_eq!(events.held.load(Relaxed), 0);
    }
}
