//! The `encoding/gob` stream that Go's tableflip uses to hand the list of inherited file
//! names from the parent to the child: exactly what `gob.NewEncoder(w).Encode(v)` writes for
//! a `[][]string` on a fresh encoder, and a decoder for such a stream.
//!
//! Wire format, as used here:
//! - unsigned ints: below 128 a single byte; otherwise the negated byte count followed by the
//!   big-endian bytes without leading zeros. Signed ints are zig-zag folded into an unsigned.
//! - a stream is a sequence of messages, each a uint length and then the body. A body starts
//!   with a signed type id: `-id` introduces a `wireType` definition of type `id`, a positive
//!   id a value of that type.
//! - structs are `(field delta, field value)*` closed by a zero delta; a top-level non-struct
//!   value is preceded by a zero ("singleton") delta; a slice is a uint count then its elements;
//!   a string is a uint length then its bytes.

use std::io::Read;

/// Largest message the decoder accepts (bytes after the length prefix).
pub(crate) const MAX_MESSAGE: usize = 16 << 20;

/// Go's predefined type id of `string`.
const STRING_ID: i64 = 6;
/// The first type id Go hands out to user types; smaller ids are predefined.
const FIRST_USER_ID: i64 = 64;
/// The id a fresh Go process assigns to `[]string`.
const INNER_ID: i64 = 65;
/// The id a fresh Go process assigns to `[][]string`.
const OUTER_ID: i64 = 66;
/// How many type definitions a stream may carry before its value.
const MAX_TYPE_DEFS: usize = 32;
/// Upper bound on speculative `Vec` capacity; larger vectors grow as elements arrive.
const PREALLOC_LIMIT: usize = 1024;
/// Field names of Go's `wireType` struct, in field-number order.
const WIRE_FIELDS: [&str; 7] = [
    "array",
    "slice",
    "struct",
    "map",
    "GobEncoder",
    "BinaryMarshaler",
    "TextMarshaler",
];

/// Why a names stream could not be decoded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GobError {
    /// Reading from the underlying reader failed, including an unexpected end of input.
    #[error("cannot read the gob stream")]
    Io(#[from] std::io::Error),
    /// A message length prefix exceeds [`MAX_MESSAGE`].
    #[error("gob message of {0} bytes exceeds the limit of {MAX_MESSAGE} bytes")]
    MessageTooLarge(u64),
    /// An unsigned integer announces more than eight bytes.
    #[error("malformed gob unsigned integer")]
    MalformedUint,
    /// A message ends in the middle of an item.
    #[error("gob message ends in the middle of an item")]
    Truncated,
    /// A count or length (first field) claims more items than there are bytes left in the
    /// message (second field).
    #[error("gob count {0} exceeds the {1} bytes left in the message")]
    CountTooLarge(u64, usize),
    /// A value refers to a type id that was never defined.
    #[error("gob type id {0} is not defined")]
    UnknownType(i64),
    /// A type definition tries to redefine a predefined type id.
    #[error("gob type definition redefines predefined type id {0}")]
    BuiltinRedefined(i64),
    /// A type id is defined twice.
    #[error("gob type id {0} is defined twice")]
    DuplicateType(i64),
    /// A type definition (of the id in the first field) is of a kind (second field) this
    /// decoder does not support.
    #[error("gob type {0} is a {1} type; only slice types are supported")]
    UnsupportedType(i64, &'static str),
    /// A type definition sets none of the `wireType` fields.
    #[error("gob type definition of id {0} is empty")]
    EmptyTypeDefinition(i64),
    /// A struct in a type definition (named by the first field) has no such field number.
    #[error("gob {0} has no field number {1}")]
    BadField(&'static str, u64),
    /// The value is not a `[][]string`.
    #[error("gob value of type id {0} is not a [][]string")]
    TypeMismatch(i64),
    /// The singleton delta before a top-level value is not zero.
    #[error("gob value has a non-zero singleton delta {0}")]
    NonZeroSingletonDelta(u64),
    /// A string is not valid UTF-8.
    #[error("gob string is not valid UTF-8")]
    InvalidUtf8,
    /// Bytes are left in a message after its item was decoded.
    #[error("{0} trailing bytes in a gob message")]
    TrailingBytes(usize),
    /// The stream carries more than `MAX_TYPE_DEFS` type definitions.
    #[error("gob stream carries more than {MAX_TYPE_DEFS} type definitions")]
    TooManyTypes,
}

/// Appends `v` as a gob unsigned integer.
fn put_uint(out: &mut Vec<u8>, v: u64) {
    // Below 0x80 this keeps exactly the last byte.
    let skip = (v.leading_zeros() as usize / 8).min(7);
    if v >= 0x80 {
        // 1..=8 bytes follow; the count byte holds their number, negated.
        out.push(((8 - skip) as u8).wrapping_neg());
    }
    out.extend_from_slice(&v.to_be_bytes()[skip..]);
}

/// Appends `v` as a gob signed integer.
fn put_int(out: &mut Vec<u8>, v: i64) {
    // Zig-zag: v << 1 for v >= 0, (!v << 1) | 1 for v < 0.
    put_uint(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// Appends `body` as one message: its length, then the bytes.
fn put_message(out: &mut Vec<u8>, body: &[u8]) {
    put_uint(out, body.len() as u64);
    out.extend_from_slice(body);
}

/// The body of a message defining type `id` as a slice of `elem`, as Go writes it
/// (no name, since the slice types are unnamed).
fn slice_definition(id: i64, elem: i64) -> Vec<u8> {
    let mut body = Vec::new();
    put_int(&mut body, -id);
    put_uint(&mut body, 2); // wireType.SliceT (field 1)
    put_uint(&mut body, 1); // sliceType.CommonType (field 0)
    put_uint(&mut body, 2); // CommonType.Id (field 1)
    put_int(&mut body, id);
    put_uint(&mut body, 0); // end of CommonType
    put_uint(&mut body, 1); // sliceType.Elem (field 1)
    put_int(&mut body, elem);
    put_uint(&mut body, 0); // end of sliceType
    put_uint(&mut body, 0); // end of wireType
    body
}

/// Encodes `names` exactly as Go's `gob.NewEncoder(w).Encode(names)` does for a `[][]string`.
pub(crate) fn encode_names(names: &[Vec<String>]) -> Vec<u8> {
    let mut out = Vec::new();
    // Go sends the outer type first, then the element type it refers to.
    put_message(&mut out, &slice_definition(OUTER_ID, INNER_ID));
    put_message(&mut out, &slice_definition(INNER_ID, STRING_ID));
    let mut body = Vec::new();
    put_int(&mut body, OUTER_ID);
    put_uint(&mut body, 0); // singleton delta
    put_uint(&mut body, names.len() as u64);
    for entry in names {
        put_uint(&mut body, entry.len() as u64);
        for s in entry {
            put_uint(&mut body, s.len() as u64);
            body.extend_from_slice(s.as_bytes());
        }
    }
    put_message(&mut out, &body);
    out
}

/// Finishes decoding an unsigned integer whose first byte is `first`; `more` fills the
/// slice it is given with the bytes that follow.
fn uint_from(
    first: u8,
    more: impl FnOnce(&mut [u8]) -> Result<(), GobError>,
) -> Result<u64, GobError> {
    if first < 0x80 {
        return Ok(first.into());
    }
    let n = usize::from(first.wrapping_neg());
    let mut bytes = [0u8; 8];
    let start = 8usize.checked_sub(n).ok_or(GobError::MalformedUint)?;
    more(bytes.get_mut(start..).ok_or(GobError::MalformedUint)?)?;
    Ok(u64::from_be_bytes(bytes))
}

/// Reads one message body from `r`, consuming exactly its length prefix and its bytes.
fn read_message<R: Read>(r: &mut R) -> Result<Vec<u8>, GobError> {
    let mut first = [0u8; 1];
    r.read_exact(&mut first)?;
    let len = uint_from(first[0], |rest| r.read_exact(rest).map_err(GobError::Io))?;
    let want = usize::try_from(len)
        .ok()
        .filter(|&n| n <= MAX_MESSAGE)
        .ok_or(GobError::MessageTooLarge(len))?;
    // Grow with the bytes that actually arrive instead of trusting the prefix up front.
    let mut body = Vec::new();
    r.by_ref().take(len).read_to_end(&mut body)?;
    if body.len() != want {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
    }
    Ok(body)
}

/// A read position inside one message body.
struct Cursor<'a> {
    /// The bytes not yet consumed.
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    /// Consumes one byte.
    fn byte(&mut self) -> Result<u8, GobError> {
        let (&b, rest) = self.buf.split_first().ok_or(GobError::Truncated)?;
        self.buf = rest;
        Ok(b)
    }

    /// Consumes `n` bytes.
    fn take(&mut self, n: usize) -> Result<&'a [u8], GobError> {
        let (head, rest) = self.buf.split_at_checked(n).ok_or(GobError::Truncated)?;
        self.buf = rest;
        Ok(head)
    }

    /// Consumes an unsigned integer.
    fn uint(&mut self) -> Result<u64, GobError> {
        let first = self.byte()?;
        uint_from(first, |dst| {
            dst.copy_from_slice(self.take(dst.len())?);
            Ok(())
        })
    }

    /// Consumes a signed integer.
    fn int(&mut self) -> Result<i64, GobError> {
        let u = self.uint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    /// Consumes a count of items that each take at least one byte, so it cannot exceed the
    /// bytes left; this bounds every allocation by the message size.
    fn count(&mut self) -> Result<usize, GobError> {
        let claimed = self.uint()?;
        let remaining = self.buf.len();
        usize::try_from(claimed)
            .ok()
            .filter(|&n| n <= remaining)
            .ok_or(GobError::CountTooLarge(claimed, remaining))
    }

    /// Consumes a string's length and bytes.
    fn string(&mut self) -> Result<&'a [u8], GobError> {
        let len = self.count()?;
        self.take(len)
    }

    /// Consumes the next field delta of a struct with `fields` fields; `next` is one past
    /// the previous field number. Returns the field number, or `None` at the end.
    fn field(
        &mut self,
        next: &mut u64,
        fields: usize,
        what: &'static str,
    ) -> Result<Option<usize>, GobError> {
        let delta = self.uint()?;
        if delta == 0 {
            return Ok(None);
        }
        let field = next.saturating_add(delta - 1);
        let index = usize::try_from(field)
            .ok()
            .filter(|&f| f < fields)
            .ok_or(GobError::BadField(what, field))?;
        *next = field + 1;
        Ok(Some(index))
    }

    /// Fails if bytes are left.
    fn finish(&self) -> Result<(), GobError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(GobError::TrailingBytes(self.buf.len()))
        }
    }
}

/// Parses a `CommonType` struct, whose name and id are not needed.
fn common_type(cur: &mut Cursor<'_>) -> Result<(), GobError> {
    let mut next = 0;
    while let Some(field) = cur.field(&mut next, 2, "CommonType")? {
        if field == 0 {
            cur.string()?; // Name
        } else {
            cur.int()?; // Id
        }
    }
    Ok(())
}

/// Parses a `wireType` struct defining type `id`; returns the element type id of the slice.
fn wire_type(cur: &mut Cursor<'_>, id: i64) -> Result<i64, GobError> {
    let mut next = 0;
    let mut elem = None;
    while let Some(field) = cur.field(&mut next, WIRE_FIELDS.len(), "wireType")? {
        if field != 1 {
            let kind = WIRE_FIELDS.get(field).copied().unwrap_or("unknown");
            return Err(GobError::UnsupportedType(id, kind));
        }
        // sliceType { CommonType; Elem typeId }
        let mut slice_next = 0;
        let mut slice_elem = 0;
        while let Some(f) = cur.field(&mut slice_next, 2, "sliceType")? {
            if f == 0 {
                common_type(cur)?;
            } else {
                slice_elem = cur.int()?;
            }
        }
        elem = Some(slice_elem);
    }
    elem.ok_or(GobError::EmptyTypeDefinition(id))
}

/// Reads one gob stream carrying a `[][]string` from `r` (type definitions, then the value)
/// and returns the value. Reads exactly the bytes of the messages it needs and nothing after
/// them (read the length prefix byte by byte, then `read_exact` the body), so that the caller
/// can go on reading the same pipe afterwards.
pub(crate) fn decode_names<R: Read>(r: &mut R) -> Result<Vec<Vec<String>>, GobError> {
    // Slice types defined so far, as (id, element id).
    let mut slices = std::collections::HashMap::new();
    loop {
        let msg = read_message(r)?;
        let mut cur = Cursor { buf: &msg };
        let id = cur.int()?;
        if id < 0 {
            if slices.len() >= MAX_TYPE_DEFS {
                return Err(GobError::TooManyTypes);
            }
            let id = id.checked_neg().ok_or(GobError::UnknownType(id))?;
            if id < FIRST_USER_ID {
                return Err(GobError::BuiltinRedefined(id));
            }
            if slices.contains_key(&id) {
                return Err(GobError::DuplicateType(id));
            }
            let elem = wire_type(&mut cur, id)?;
            cur.finish()?;
            slices.insert(id, elem);
            continue;
        }
        let inner = match slices.get(&id) {
            Some(&inner) => inner,
            None if (1..FIRST_USER_ID).contains(&id) => return Err(GobError::TypeMismatch(id)),
            None => return Err(GobError::UnknownType(id)),
        };
        if slices.get(&inner) != Some(&STRING_ID) {
            return Err(GobError::TypeMismatch(id));
        }
        let value = names_value(&mut cur)?;
        cur.finish()?;
        return Ok(value);
    }
}

/// Parses a singleton `[][]string` value.
fn names_value(cur: &mut Cursor<'_>) -> Result<Vec<Vec<String>>, GobError> {
    let delta = cur.uint()?;
    if delta != 0 {
        return Err(GobError::NonZeroSingletonDelta(delta));
    }
    let count = cur.count()?;
    let mut names = Vec::with_capacity(count.min(PREALLOC_LIMIT));
    for _ in 0..count {
        let len = cur.count()?;
        let mut entry = Vec::with_capacity(len.min(PREALLOC_LIMIT));
        for _ in 0..len {
            let bytes = cur.string()?;
            let s = std::str::from_utf8(bytes).map_err(|_| GobError::InvalidUtf8)?;
            entry.push(s.to_owned());
        }
        names.push(entry);
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VECTORS: &str = include_str!("../tests/vectors/go-tableflip-names.tsv");

    /// Parses the vectors' JSON column, an array of arrays of strings.
    fn parse_json(text: &str) -> Vec<Vec<String>> {
        let (mut out, mut chars, mut depth) = (Vec::<Vec<String>>::new(), text.chars(), 0);
        while let Some(c) = chars.next() {
            match c {
                '[' => {
                    depth += 1;
                    if depth == 2 {
                        out.push(Vec::new());
                    }
                }
                ']' => depth -= 1,
                '"' => {
                    let mut s = String::new();
                    loop {
                        match chars.next().expect("unterminated string") {
                            '"' => break,
                            '\\' => s.push(match chars.next().expect("escape") {
                                'n' => '\n',
                                c => c,
                            }),
                            c => s.push(c),
                        }
                    }
                    out.last_mut().expect("string outside an entry").push(s);
                }
                c => assert!(c == ',' || c.is_whitespace(), "bad JSON {text}"),
            }
        }
        assert_eq!(depth, 0, "bad JSON {text}");
        out
    }

    /// (name, input, Go's bytes) for every vector.
    fn vectors() -> Vec<(String, Vec<Vec<String>>, Vec<u8>)> {
        let cases: Vec<_> = VECTORS
            .lines()
            .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
            .map(|line| {
                let cols: Vec<&str> = line.split('\t').collect();
                assert_eq!(cols.len(), 3, "bad vector line {line:?}");
                (cols[0].to_owned(), parse_json(cols[1]), hex(cols[2].trim()))
            })
            .collect();
        assert!(cases.len() >= 6, "vectors missing");
        cases
    }

    fn hex(text: &str) -> Vec<u8> {
        let digit = |i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex");
        (0..text.len()).step_by(2).map(digit).collect()
    }

    fn decode(bytes: &[u8]) -> Result<Vec<Vec<String>>, GobError> {
        decode_names(&mut &bytes[..])
    }

    /// The two type definitions Go writes, followed by a value message with `body`.
    fn with_value(body: &[u8]) -> Vec<u8> {
        let mut out = encode_names(&[]);
        out.truncate(out.len() - 5);
        put_message(&mut out, body);
        out
    }

    #[test]
    fn vectors_match_go() {
        for (name, input, bytes) in vectors() {
            assert_eq!(encode_names(&input), bytes, "encoding {name}");
            let mut followed = bytes.clone();
            followed.extend_from_slice(b"\x05after");
            let mut reader = &followed[..];
            assert_eq!(decode_names(&mut reader).expect(&name), input, "{name}");
            assert_eq!(reader, b"\x05after", "{name} read past its end");
            for len in 0..bytes.len() {
                assert!(decode(&bytes[..len]).is_err(), "{name} cut at {len}");
            }
        }
    }

    #[test]
    fn ints_match_go() {
        let uints = [
            (0, "00"),
            (127, "7f"),
            (128, "ff80"),
            (256, "fe0100"),
            (1 << 60, "f81000000000000000"),
            (u64::MAX, "f8ffffffffffffffff"),
        ];
        for (v, text) in uints {
            let bytes = hex(text);
            let mut out = Vec::new();
            put_uint(&mut out, v);
            assert_eq!(out, bytes, "{v}");
            assert_eq!(Cursor { buf: &bytes }.uint().unwrap(), v);
        }
        let ints = [
            (0, 0),
            (1, 2),
            (-1, 1),
            (-66, 131),
            (i64::MAX, u64::MAX - 1),
            (i64::MIN, u64::MAX),
        ];
        for (v, zigzag) in ints {
            let (mut signed, mut unsigned) = (Vec::new(), Vec::new());
            put_int(&mut signed, v);
            put_uint(&mut unsigned, zigzag);
            assert_eq!(signed, unsigned);
            assert_eq!(Cursor { buf: &signed }.int().unwrap(), v);
        }
    }

    #[test]
    fn accepts_other_ids_names_and_order() {
        // []string as id 80 named "abc", defined before [][]string as id 70, whose
        // definition has no CommonType at all.
        let stream = "11 ff9f 020101 03616263 01ffa0 00 010c 0000 \
                      08 ff8b 02 02ffa0 00 00 \
                      08 ff8c 00 01 02 0178 00";
        assert_eq!(decode(&hex(&stream.replace(' ', ""))).unwrap(), [["x", ""]]);
    }

    #[test]
    fn rejects_bad_streams() {
        let huge = "f81000000000000000"; // 2^60
        let value = |text: &str| with_value(&hex(&format!("ff8400{text}")));
        let mut too_many = Vec::new();
        for id in 100..100 + MAX_TYPE_DEFS as i64 + 1 {
            put_message(&mut too_many, &slice_definition(id, STRING_ID));
        }
        let cases = [
            (hex(&format!("{huge}ff")), "MessageTooLarge"),
            (hex("fdff000001"), "Io"),
            (hex("80"), "MalformedUint"),
            (value("f7"), "MalformedUint"),
            (value(huge), "CountTooLarge(1152921504606846976, 0)"),
            (
                value(&format!("0101{huge}78")),
                "CountTooLarge(1152921504606846976, 1)",
            ),
            (with_value(&hex("ff8200010178")), "TypeMismatch(65)"), // a []string value
            (hex("030c0000"), "TypeMismatch(6)"),
            (hex("04ffc80000"), "UnknownType(100)"),
            (
                hex("0aff81030102ff82000000"),
                "UnsupportedType(65, \"struct\")",
            ),
            (hex("03ff8100"), "EmptyTypeDefinition(65)"),
            (hex("03ff8109"), "BadField(\"wireType\", 8)"),
            (hex("020b00"), "BuiltinRedefined(6)"),
            ([&value("")[..14], &value("")].concat(), "DuplicateType(66)"),
            (with_value(&hex("ff840100")), "NonZeroSingletonDelta(1)"),
            (value("0000"), "TrailingBytes(1)"),
            (value("010101ff"), "InvalidUtf8"),
            (too_many, "TooManyTypes"),
        ];
        for (bytes, want) in cases {
            let err = decode(&bytes).unwrap_err();
            assert!(
                format!("{err:?}").starts_with(want),
                "{bytes:02x?}: {err:?}"
            );
        }
    }

    #[test]
    fn long_values_round_trip() {
        let names = vec![vec!["y".repeat(70_000), String::new()]; 200];
        assert_eq!(decode(&encode_names(&names)).unwrap(), names);
        let names = [vec!["y".repeat(MAX_MESSAGE)]];
        let err = decode(&encode_names(&names)).unwrap_err();
        assert!(matches!(err, GobError::MessageTooLarge(_)));
    }

    proptest! {
        #[test]
        fn round_trips(names in prop::collection::vec(
            prop::collection::vec(any::<String>(), 0..6), 0..6)) {
            prop_assert_eq!(decode(&encode_names(&names)).unwrap(), names);
        }

        #[test]
        fn arbitrary_bytes_do_not_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
            let _ = decode(&with_value(&bytes));
        }

        #[test]
        fn mutations_do_not_panic(
            which in any::<prop::sample::Index>(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let cases = vectors();
            let mut bytes = which.get(&cases).2.clone();
            let at = at.index(bytes.len());
            bytes[at] = byte;
            let _ = decode(&bytes);
            let _ = decode(&bytes[..cut.index(bytes.len())]);
        }
    }

    /// Hands out at most `step` bytes per read, as a pipe may.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
    }

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.bytes.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    /// An encoded signed integer followed by arbitrary bytes: the start of a message as a
    /// type definition (negative id) or a value (positive id) begins.
    fn id_then(id: i64, tail: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        put_int(&mut body, id);
        body.extend_from_slice(tail);
        body
    }

    proptest! {
        /// Well-framed messages with arbitrary bodies reach the type-definition and value
        /// parsers, which random bytes rarely do.
        #[test]
        fn arbitrary_framed_messages_do_not_panic(
            bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..48), 0..6),
        ) {
            let mut stream = Vec::new();
            for body in &bodies {
                put_message(&mut stream, body);
            }
            if let Err(e) = decode(&stream) {
                prop_assert!(!e.to_string().contains('\n'));
            }
        }

        #[test]
        fn arbitrary_type_definitions_and_values_do_not_panic(
            defs in prop::collection::vec((-200i64..0, prop::collection::vec(any::<u8>(), 0..32)), 0..4),
            value_id in 0i64..200,
            value in prop::collection::vec(any::<u8>(), 0..48),
        ) {
            let mut stream = Vec::new();
            for (id, tail) in &defs {
                put_message(&mut stream, &id_then(*id, tail));
            }
            put_message(&mut stream, &id_then(value_id, &value));
            let _ = decode(&stream);
            let mut with_go_types = encode_names(&[]);
            with_go_types.truncate(with_go_types.len() - 5);
            with_go_types.extend_from_slice(&stream);
            let _ = decode(&with_go_types);
        }

        /// A pipe delivers the stream in pieces: the outcome must not depend on them.
        #[test]
        fn decoding_does_not_depend_on_how_reads_are_split(
            names in prop::collection::vec(prop::collection::vec(".{0,12}", 0..4), 0..4),
            damage in prop::option::of((any::<prop::sample::Index>(), any::<u8>())),
            step in 1usize..9,
        ) {
            let mut bytes = encode_names(&names);
            if let Some((at, byte)) = damage {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
            let whole = decode(&bytes).map_err(|e| e.to_string());
            let pieces = decode_names(&mut Trickle { bytes: &bytes, step })
                .map_err(|e| e.to_string());
            prop_assert_eq!(whole, pieces);
        }
    }
}
