//! RecordIO, the framing of the Mesos event stream: `<decimal length>\n<record bytes>`,
//! repeated, with nothing between records.
//!
//! [`RecordIoDecoder`] is a [`tokio_util::codec::Decoder`]: feed it bytes in whatever chunks
//! the HTTP body delivers and it yields whole records. HTTP chunk boundaries have nothing to do
//! with record boundaries. A length that is not a decimal number, or that exceeds the
//! configured maximum, is an error *before* any of the record is buffered, so a hostile stream
//! cannot make the client allocate without bound. [`encode_record`] writes the same framing
//! (the fake master uses it).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::Decoder;

/// The default largest record accepted: 64 MiB (an OFFERS event for a big cluster is a few
/// MB at most).
pub const DEFAULT_MAX_RECORD: usize = 64 * 1024 * 1024;

/// More digits than this cannot be a sane length (u64::MAX has 20).
const MAX_LENGTH_DIGITS: usize = 20;

/// A malformed RecordIO stream. Every variant means the stream cannot be resynchronised and
/// must be dropped.
#[derive(Debug, thiserror::Error)]
pub enum RecordIoError {
    #[error("recordio: byte {byte:#04x} in a record length (expected a decimal digit or '\\n')")]
    NonDigitLength { byte: u8 },
    #[error("recordio: empty record length (a '\\n' with no digits before it)")]
    EmptyLength,
    #[error("recordio: record length {length} exceeds the maximum of {max} bytes")]
    TooLarge { length: u128, max: usize },
    #[error("recordio: stream ended inside a record length ({digits} digit(s) read)")]
    TruncatedLength { digits: usize },
    #[error("recordio: stream ended inside a record ({got} of {expected} bytes read)")]
    TruncatedRecord { expected: usize, got: usize },
    #[error("recordio: i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Where the decoder is within the current record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the decimal length; `value` so far from `digits` digits.
    Length { value: u128, digits: usize },
    /// The header is read; waiting for `len` record bytes.
    Body { len: usize },
}

/// Splits a byte stream into RecordIO records.
#[derive(Debug, Clone)]
pub struct RecordIoDecoder {
    max_record: usize,
    state: State,
}

impl Default for RecordIoDecoder {
    fn default() -> Self {
        RecordIoDecoder::new(DEFAULT_MAX_RECORD)
    }
}

impl RecordIoDecoder {
    /// A decoder refusing records longer than `max_record` bytes.
    pub fn new(max_record: usize) -> RecordIoDecoder {
        RecordIoDecoder {
            max_record,
            state: State::Length {
                value: 0,
                digits: 0,
            },
        }
    }

    /// The largest record this decoder accepts.
    pub fn max_record(&self) -> usize {
        self.max_record
    }
}

impl Decoder for RecordIoDecoder {
    type Item = Bytes;
    type Error = RecordIoError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, RecordIoError> {
        loop {
            match self.state {
                State::Length {
                    mut value,
                    mut digits,
                } => {
                    let mut consumed = 0;
                    let mut complete = false;
                    for &b in src.iter() {
                        consumed += 1;
                        match b {
                            b'0'..=b'9' => {
                                digits += 1;
                                value = value * 10 + u128::from(b - b'0');
                                if digits > MAX_LENGTH_DIGITS || value > self.max_record as u128 {
                                    return Err(RecordIoError::TooLarge {
                                        length: value,
                                        max: self.max_record,
                                    });
                                }
                            }
                            b'\n' => {
                                if digits == 0 {
                                    return Err(RecordIoError::EmptyLength);
                                }
                                complete = true;
                                break;
                            }
                            other => return Err(RecordIoError::NonDigitLength { byte: other }),
                        }
                    }
                    src.advance(consumed);
                    if !complete {
                        self.state = State::Length { value, digits };
                        return Ok(None);
                    }
                    // `value <= max_record` was checked digit by digit.
                    let len = value as usize;
                    self.state = State::Body { len };
                    src.reserve(len.saturating_sub(src.len()));
                }
                State::Body { len } => {
                    if src.len() < len {
                        return Ok(None);
                    }
                    let record = src.split_to(len).freeze();
                    self.state = State::Length {
                        value: 0,
                        digits: 0,
                    };
                    return Ok(Some(record));
                }
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, RecordIoError> {
        if let Some(record) = self.decode(src)? {
            return Ok(Some(record));
        }
        match self.state {
            State::Length { digits: 0, .. } if src.is_empty() => Ok(None),
            State::Length { digits, .. } => Err(RecordIoError::TruncatedLength { digits }),
            State::Body { len } => Err(RecordIoError::TruncatedRecord {
                expected: len,
                got: src.len(),
            }),
        }
    }
}

/// Frames one record: `<len>\n<data>` (what a master writes; the fake master and the tests
/// frame their streams with it).
pub fn encode_record(data: &[u8]) -> Bytes {
    let header = data.len().to_string();
    let mut buf = BytesMut::with_capacity(header.len() + 1 + data.len());
    buf.put_slice(header.as_bytes());
    buf.put_u8(b'\n');
    buf.put_slice(data);
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` one after another, collecting every record; then signals EOF.
    fn run(decoder: &mut RecordIoDecoder, chunks: &[&[u8]]) -> Result<Vec<Bytes>, RecordIoError> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(r) = decoder.decode(&mut buf)? {
                out.push(r);
            }
        }
        while let Some(r) = decoder.decode_eof(&mut buf)? {
            out.push(r);
        }
        Ok(out)
    }

    fn byte_by_byte(data: &[u8]) -> Vec<&[u8]> {
        data.chunks(1).collect()
    }

    #[test]
    fn empty_input_yields_nothing_and_is_not_an_error() {
        let mut d = RecordIoDecoder::default();
        assert!(run(&mut d, &[]).unwrap().is_empty());
        assert!(run(&mut d, &[b""]).unwrap().is_empty());
    }

    #[test]
    fn single_record_whole() {
        let mut d = RecordIoDecoder::default();
        let out = run(&mut d, &[b"5\nhello"]).unwrap();
        assert_eq!(out, vec![Bytes::from_static(b"hello")]);
    }

    #[test]
    fn length_split_across_chunks() {
        let mut d = RecordIoDecoder::default();
        let rec = vec![b'x'; 123];
        let mut data = b"123\n".to_vec();
        data.extend_from_slice(&rec);
        let out = run(&mut d, &[&data[..1], &data[1..2], &data[2..3], &data[3..]]).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0][..], &rec[..]);
    }

    #[test]
    fn record_split_across_chunks_byte_by_byte() {
        let mut d = RecordIoDecoder::default();
        let data = b"11\nhello world3\nabc";
        let chunks = byte_by_byte(data);
        let out = run(&mut d, &chunks).unwrap();
        assert_eq!(
            out,
            vec![
                Bytes::from_static(b"hello world"),
                Bytes::from_static(b"abc")
            ]
        );
    }

    #[test]
    fn every_split_point_gives_the_same_records() {
        let mut data = Vec::new();
        for rec in [
            &b"{\"type\":\"HEARTBEAT\"}"[..],
            b"",
            b"0123456789",
            b"\n\n",
        ] {
            data.extend_from_slice(&encode_record(rec));
        }
        let want = vec![
            Bytes::from_static(b"{\"type\":\"HEARTBEAT\"}"),
            Bytes::new(),
            Bytes::from_static(b"0123456789"),
            Bytes::from_static(b"\n\n"),
        ];
        for i in 0..=data.len() {
            for j in i..=data.len() {
                let mut d = RecordIoDecoder::default();
                let out = run(&mut d, &[&data[..i], &data[i..j], &data[j..]]).unwrap();
                assert_eq!(out, want, "split at {i}/{j}");
            }
        }
    }

    #[test]
    fn many_records_in_one_chunk() {
        let mut data = Vec::new();
        for i in 0..100 {
            data.extend_from_slice(&encode_record(format!("record-{i}").as_bytes()));
        }
        let mut d = RecordIoDecoder::default();
        let out = run(&mut d, &[&data]).unwrap();
        assert_eq!(out.len(), 100);
        assert_eq!(&out[0][..], b"record-0");
        assert_eq!(&out[99][..], b"record-99");
    }

    #[test]
    fn truncation_inside_a_record_at_eof_is_an_error() {
        let mut d = RecordIoDecoder::default();
        let err = run(&mut d, &[b"10\nabc"]).unwrap_err();
        assert!(
            matches!(
                err,
                RecordIoError::TruncatedRecord {
                    expected: 10,
                    got: 3
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn truncation_inside_a_length_at_eof_is_an_error() {
        let mut d = RecordIoDecoder::default();
        let err = run(&mut d, &[b"3\nabc12"]).unwrap_err();
        assert!(
            matches!(err, RecordIoError::TruncatedLength { digits: 2 }),
            "{err:?}"
        );
    }

    #[test]
    fn non_digit_length_is_an_error() {
        for bad in [
            &b"1a\nxx"[..],
            b"-1\n",
            b" 5\nhello",
            b"5\r\nhello",
            b"{\"type\"",
        ] {
            let mut d = RecordIoDecoder::default();
            let err = run(&mut d, &byte_by_byte(bad)).unwrap_err();
            assert!(
                matches!(err, RecordIoError::NonDigitLength { .. }),
                "{bad:?}: {err:?}"
            );
        }
    }

    #[test]
    fn empty_length_is_an_error() {
        let mut d = RecordIoDecoder::default();
        let err = run(&mut d, &[b"\nabc"]).unwrap_err();
        assert!(matches!(err, RecordIoError::EmptyLength), "{err:?}");
    }

    #[test]
    fn oversize_length_is_refused_before_the_record_is_buffered() {
        let mut d = RecordIoDecoder::new(1000);
        let mut buf = BytesMut::from(&b"1001"[..]);
        // The error comes as soon as the digits exceed the maximum, before the '\n' and before
        // any record byte arrived.
        let err = d.decode(&mut buf).unwrap_err();
        assert!(
            matches!(
                err,
                RecordIoError::TooLarge {
                    length: 1001,
                    max: 1000
                }
            ),
            "{err:?}"
        );
        assert!(buf.capacity() < 1001, "nothing reserved for the record");

        // A length of exactly the maximum is fine.
        let mut d = RecordIoDecoder::new(3);
        assert_eq!(
            run(&mut d, &[b"3\nabc"]).unwrap(),
            vec![Bytes::from_static(b"abc")]
        );
    }

    #[test]
    fn absurdly_long_length_is_refused_without_overflow() {
        let mut d = RecordIoDecoder::new(usize::MAX);
        let digits = vec![b'9'; 100];
        let err = run(&mut d, &[&digits]).unwrap_err();
        assert!(matches!(err, RecordIoError::TooLarge { .. }), "{err:?}");
    }

    #[test]
    fn zero_length_record_yields_an_empty_record() {
        let mut d = RecordIoDecoder::default();
        let out = run(&mut d, &[b"0\n", b"2\nok"]).unwrap();
        assert_eq!(out, vec![Bytes::new(), Bytes::from_static(b"ok")]);
    }

    #[test]
    fn leading_zeros_are_decimal() {
        let mut d = RecordIoDecoder::default();
        let out = run(&mut d, &[b"003\nabc"]).unwrap();
        assert_eq!(out, vec![Bytes::from_static(b"abc")]);
    }

    #[test]
    fn encoder_writes_length_newline_data_and_nothing_else() {
        assert_eq!(&encode_record(b"hello")[..], b"5\nhello");
        assert_eq!(&encode_record(b"")[..], b"0\n");
    }

    proptest::proptest! {
        /// Any records, cut into any chunks, come back unchanged.
        #[test]
        fn any_records_in_any_chunks_round_trip(
            records in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..300), 0..20),
            cuts in proptest::collection::vec(0usize..5000, 0..30),
        ) {
            let mut data = Vec::new();
            for r in &records {
                data.extend_from_slice(&encode_record(r));
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (data.len() + 1)).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut at = 0;
            for c in cuts {
                chunks.push(&data[at..c]);
                at = c;
            }
            chunks.push(&data[at..]);
            let mut d = RecordIoDecoder::new(300);
            let out = run(&mut d, &chunks).unwrap();
            let want: Vec<Bytes> = records.into_iter().map(Bytes::from).collect();
            proptest::prop_assert_eq!(out, want);
        }

        /// Arbitrary bytes never panic, and the buffer never holds more than one maximal
        /// record plus its header.
        #[test]
        fn garbage_never_panics_and_stays_bounded(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..200), 0..30),
        ) {
            let max = 64;
            let mut d = RecordIoDecoder::new(max);
            let mut buf = BytesMut::new();
            'feed: for c in &chunks {
                buf.extend_from_slice(c);
                loop {
                    match d.decode(&mut buf) {
                        Ok(Some(r)) => proptest::prop_assert!(r.len() <= max),
                        Ok(None) => break,
                        Err(_) => break 'feed,
                    }
                }
                proptest::prop_assert!(buf.len() <= max + 200, "buffered {}", buf.len());
            }
        }
    }

    #[test]
    fn decodes_the_recorded_real_json_stream() {
        let Some(data) = crate::mesos::fixture("05-subscribe-json.response.recordio") else {
            return;
        };
        let mut d = RecordIoDecoder::default();
        let out = run(&mut d, &[&data]).unwrap();
        assert_eq!(out.len(), 18, "the README's timeline lists 18 events");
        for rec in &out {
            let v: serde_json::Value = serde_json::from_slice(rec).unwrap();
            assert!(v.get("type").is_some(), "{v}");
        }
        // And split byte by byte.
        let mut d = RecordIoDecoder::default();
        assert_eq!(run(&mut d, &byte_by_byte(&data)).unwrap(), out);
    }
}
