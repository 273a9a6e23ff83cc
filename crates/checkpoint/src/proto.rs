//! The protobuf wire format, as much of it as CRIU's rpc.proto and its
//! stats image need: varints, length-delimited fields and nested messages.
//! A hand-written codec keeps the binary small (no generated code, no
//! protobuf runtime) for the dozen messages we exchange.

/// Builds one message, field by field.
#[derive(Default)]
pub struct Encoder(Vec<u8>);

const VARINT: u8 = 0;
const LEN: u8 = 2;

impl Encoder {
    pub fn new() -> Encoder {
        Encoder::default()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint(u64::from(field) << 3 | u64::from(wire));
    }

    pub fn uint(&mut self, field: u32, v: u64) -> &mut Self {
        self.key(field, VARINT);
        self.varint(v);
        self
    }

    /// int32 and enums: a negative value is sign-extended to ten bytes.
    pub fn int32(&mut self, field: u32, v: i32) -> &mut Self {
        self.uint(field, i64::from(v) as u64)
    }

    pub fn bool(&mut self, field: u32, v: bool) -> &mut Self {
        self.uint(field, u64::from(v))
    }

    /// A bool that CRIU treats as unset when false: sent only when true.
    pub fn flag(&mut self, field: u32, v: bool) -> &mut Self {
        if v {
            self.bool(field, true);
        }
        self
    }

    pub fn bytes(&mut self, field: u32, b: &[u8]) -> &mut Self {
        self.key(field, LEN);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }

    pub fn string(&mut self, field: u32, s: &str) -> &mut Self {
        self.bytes(field, s.as_bytes())
    }

    pub fn message(&mut self, field: u32, m: Encoder) -> &mut Self {
        self.bytes(field, &m.0)
    }
}

/// One field of a decoded message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// fixed32/fixed64: not used by CRIU's messages we read; skipped.
    Fixed,
}

/// The fields of one message in wire order; stops (with an error) at the
/// first malformed byte.
pub struct Fields<'a> {
    buf: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed;

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8]) -> Fields<'a> {
        Fields { buf }
    }

    fn varint(&mut self) -> Result<u64, Malformed> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let (&b, rest) = self.buf.split_first().ok_or(Malformed)?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << shift.min(63);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Malformed)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if n > self.buf.len() {
            return Err(Malformed);
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let r = (|| {
            let key = self.varint()?;
            let field = u32::try_from(key >> 3).map_err(|_| Malformed)?;
            let v = match key & 7 {
                0 => Value::Varint(self.varint()?),
                1 => {
                    self.take(8)?;
                    Value::Fixed
                }
                2 => {
                    let n = usize::try_from(self.varint()?).map_err(|_| Malformed)?;
                    Value::Bytes(self.take(n)?)
                }
                5 => {
                    self.take(4)?;
                    Value::Fixed
                }
                _ => return Err(Malformed),
            };
            Ok((field, v))
        })();
        if r.is_err() {
            self.buf = &[];
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, 0xffff_ffff, u64::MAX] {
            let mut e = Encoder::new();
            e.uint(5, v);
            let b = e.into_bytes();
            let got: Vec<_> = Fields::new(&b).collect::<Result<_, _>>().unwrap();
            assert_eq!(got, vec![(5, Value::Varint(v))]);
        }
    }

    #[test]
    fn negative_int32_is_ten_bytes() {
        let mut e = Encoder::new();
        e.int32(1, -1);
        let b = e.into_bytes();
        assert_eq!(b.len(), 11);
        let (_, v) = Fields::new(&b).next().unwrap().unwrap();
        assert_eq!(v, Value::Varint(u64::MAX));
    }

    #[test]
    fn known_encoding_of_a_request() {
        // criu_req { type: CHECK (3), opts { images_dir_fd: 5 } }
        let mut opts = Encoder::new();
        opts.int32(1, 5);
        let mut req = Encoder::new();
        req.uint(1, 3).message(2, opts);
        assert_eq!(req.into_bytes(), vec![0x08, 0x03, 0x12, 0x02, 0x08, 0x05]);
    }

    #[test]
    fn truncated_input_is_malformed() {
        let b = [0x12, 0x05, 0x01];
        assert!(Fields::new(&b).next().unwrap().is_err());
    }
}
