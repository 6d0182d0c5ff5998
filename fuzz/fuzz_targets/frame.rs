//! Frame splitting and the cheap view over arbitrary bytes.
//!
//! Asserts: `split` reports a frame exactly as long as its prefix says, never beyond the
//! limit or the input; its answer on any prefix of the input is "incomplete" or its answer
//! on the whole input, and once an error shows it stays; `FrameDecoder` fed the input in
//! chunks returns the same frames and the same error (at the stream offset); and for the
//! input as one frame and for every frame split from it, the view and the full decode agree
//! (`check_view_agrees`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rmqfast::codec::error::{FrameError, FrameErrorKind};
use rmqfast::codec::frame::{split, FrameDecoder, PRELUDE_LEN};
use rmqfast::codec::DEFAULT_MAX_FRAME_SIZE;
use rmqfast_fuzz::check_view_agrees;

/// A limit the fuzzer can exceed within `-max_len`, beside the real default.
const SMALL_MAX: usize = 256;

fuzz_target!(|data: &[u8]| {
    check_view_agrees(data);
    for max in [DEFAULT_MAX_FRAME_SIZE, SMALL_MAX] {
        check_prefixes(data, max);
        let (frames, end) = split_all(data, max);
        for f in &frames {
            check_view_agrees(&data[f.clone()]);
        }
        check_decoder(data, max, &frames, &end);
    }
});

/// Whole frames (as ranges of `data`), then how the stream ends: Ok(rest) or the error
/// shifted to its stream offset.
fn split_all(data: &[u8], max: usize) -> (Vec<std::ops::Range<usize>>, Result<usize, FrameError>) {
    let mut frames = Vec::new();
    let mut start = 0;
    loop {
        let rest = &data[start..];
        match split(rest, max) {
            Ok(Some(n)) => {
                let declared = i32::from_be_bytes(rest[..4].try_into().unwrap());
                assert_eq!(n, declared as usize + 4, "frame size is the prefix + 4");
                assert!(
                    n >= PRELUDE_LEN && n <= max && n <= rest.len(),
                    "frame size {n}"
                );
                frames.push(start..start + n);
                start += n;
            }
            Ok(None) => {
                if rest.len() >= 4 {
                    let declared = i32::from_be_bytes(rest[..4].try_into().unwrap());
                    assert!(declared >= 4, "incomplete with length {declared}");
                    assert!(rest.len() < declared as usize + 4, "incomplete yet whole");
                }
                return (frames, Ok(rest.len()));
            }
            Err(e) => {
                assert!(
                    !matches!(
                        e.kind,
                        FrameErrorKind::Incomplete { .. }
                            | FrameErrorKind::TrailingBytes(_)
                            | FrameErrorKind::MalformedJson(_)
                            | FrameErrorKind::MalformedBinary(_)
                            | FrameErrorKind::Unencodable(_)
                    ),
                    "split looks only at the prelude: {e}"
                );
                return (frames, Err(e.shifted(start)));
            }
        }
    }
}

/// Every prefix answers "incomplete" or what the whole input answers, and an answer other
/// than "incomplete" never changes as more bytes arrive.
///
/// `split` reads the length prefix, the header word and the frame's length, so its answer
/// can change only at cuts 4, 8 and the frame size: those cuts and their neighbours are
/// all the cuts there are to check.
fn check_prefixes(data: &[u8], max: usize) {
    let whole = split(data, max);
    let mut cuts: Vec<usize> = (0..=PRELUDE_LEN + 1).collect();
    if data.len() >= 4 {
        let size = i32::from_be_bytes(data[..4].try_into().unwrap()) as i64 + 4;
        if let Ok(size) = usize::try_from(size) {
            cuts.extend([size.saturating_sub(1), size, size + 1]);
        }
    }
    cuts.push(data.len());
    cuts.retain(|&c| c <= data.len());
    cuts.sort_unstable();
    cuts.dedup();
    let mut settled = false;
    for cut in cuts {
        let r = split(&data[..cut], max);
        if settled {
            assert_eq!(r, whole, "answer changed at cut {cut}");
        } else if r != Ok(None) {
            assert_eq!(r, whole, "prefix of {cut} bytes answers differently");
            settled = true;
        }
    }
}

/// `FrameDecoder` fed in chunks agrees with `split_all`.
fn check_decoder(
    data: &[u8],
    max: usize,
    frames: &[std::ops::Range<usize>],
    end: &Result<usize, FrameError>,
) {
    let chunk = 1 + usize::from(data.first().copied().unwrap_or(0) % 64);
    let mut d = FrameDecoder::new(max);
    let mut got = Vec::new();
    let mut error = None;
    // The trailing empty feed surfaces an error held back behind good frames.
    for piece in data.chunks(chunk).chain(std::iter::once(&[][..])) {
        match d.feed(piece) {
            Ok(fs) => got.extend(fs),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    let want: Vec<(usize, Vec<u8>)> = frames
        .iter()
        .map(|r| (r.start, data[r.clone()].to_vec()))
        .collect();
    assert_eq!(got, want, "FrameDecoder frames (chunks of {chunk})");
    match (end, error) {
        (Ok(rest), None) => assert_eq!(d.buffered(), *rest, "bytes left buffered"),
        (Err(e), Some(got)) => {
            assert_eq!(&got, e, "FrameDecoder error");
            assert_eq!(d.feed(b"x"), Err(got), "the error repeats");
        }
        (end, error) => panic!("FrameDecoder ended with {error:?}, split with {end:?}"),
    }
}
