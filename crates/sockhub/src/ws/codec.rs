//! Sans-I/O RFC 6455 WebSocket frame codec.
//!
//! This module never touches a socket. [`Decoder`] is fed whatever bytes the
//! transport read and yields complete messages (fragments already reassembled)
//! and control frames as [`Event`]s; the free functions ([`encode_frame`],
//! [`server_frame`], [`close_frame`]) produce wire frames, and [`accept_key`]
//! computes the opening-handshake `Sec-WebSocket-Accept` value.
//!
//! Every rule of RFC 6455 §5 that a receiver must enforce is checked here and
//! reported as a [`ProtocolError`], which maps to the close code to send with
//! [`ProtocolError::close_code`]. Failures are detected as early as the bytes
//! allow: header violations after the byte that carries them, oversized
//! messages as soon as the length field is known (before any payload is
//! buffered), and invalid UTF-8 as soon as the offending byte arrives, even in
//! the middle of a frame or of a fragmented message.
//!
//! No extension is supported, so all three RSV bits must be zero.

use bytes::{BufMut, Bytes, BytesMut};
use sha1::{Digest, Sha1};

/// Largest payload a control frame may carry (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

/// Largest possible frame header: 2 fixed bytes, 8 length bytes, 4 mask bytes.
const MAX_HEADER: usize = 14;

/// Largest close reason that fits a control frame next to the 2-byte code.
const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// GUID appended to `Sec-WebSocket-Key` to derive `Sec-WebSocket-Accept`.
const HANDSHAKE_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Bytes charged against `max_message_size` for every fragment of a message after the first.
pub const FRAGMENT_OVERHEAD: u64 = 16;

/// RSV1: with permessage-deflate negotiated (RFC 7692) it marks the first frame
/// of a compressed data message; never allowed on continuation or control frames.
const RSV1: u8 = 0x40;

/// Which end of the connection this codec serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// We are the server: every frame received from the client must be masked.
    Server,
    /// We are the client: frames received from the server must not be masked.
    Client,
}

/// WebSocket opcodes (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// `0x0`: continues a fragmented data message.
    Continuation,
    /// `0x1`: first frame of a UTF-8 text message.
    Text,
    /// `0x2`: first frame of a binary message.
    Binary,
    /// `0x8`: connection close (control).
    Close,
    /// `0x9`: ping (control).
    Ping,
    /// `0xA`: pong (control).
    Pong,
}

impl OpCode {
    /// The 4-bit wire value of this opcode.
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Parses a wire opcode; `None` for the reserved values 3-7 and 11-15
    /// (and anything above 15).
    pub fn from_u8(value: u8) -> Option<OpCode> {
        match value {
            0x0 => Some(OpCode::Continuation),
            0x1 => Some(OpCode::Text),
            0x2 => Some(OpCode::Binary),
            0x8 => Some(OpCode::Close),
            0x9 => Some(OpCode::Ping),
            0xA => Some(OpCode::Pong),
            _ => None,
        }
    }

    /// Whether this is a control opcode (Close, Ping or Pong).
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

/// The payload of a non-empty Close frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CloseFrame {
    /// Close status code; always passes [`is_valid_close_code`] when decoded.
    pub code: u16,
    /// Human-readable reason (possibly empty), at most 123 bytes on the wire.
    pub reason: String,
}

/// What the decoder yields: complete messages (fragments already
/// reassembled) and control frames.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Event {
    /// A complete text message; guaranteed to be valid UTF-8.
    Text(Bytes),
    /// A complete binary message.
    Binary(Bytes),
    /// A ping with its (at most 125-byte) application data.
    Ping(Bytes),
    /// A pong with its (at most 125-byte) application data.
    Pong(Bytes),
    /// A close frame; `None` when its payload was empty.
    Close(Option<CloseFrame>),
    /// A complete permessage-deflate compressed message (RSV1 on its first
    /// frame; only with [`Decoder::set_compression`]). The payload is the raw
    /// DEFLATE data without the trailing `00 00 ff ff`; UTF-8 of a text message
    /// can only be checked after inflating it.
    Compressed {
        /// Text (true) or binary (false) once inflated.
        text: bool,
        /// Compressed bytes.
        payload: Bytes,
    },
}

/// A protocol violation by the peer, mapped to the close code the endpoint
/// must send before dropping the connection (see [`ProtocolError::close_code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// An RSV bit was set although no extension was negotiated.
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// A reserved opcode (3-7, 11-15) was used.
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    /// A control frame had FIN cleared.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A control frame announced more than 125 bytes of payload.
    #[error("control frame payload longer than 125 bytes")]
    ControlTooLong,
    /// A continuation frame arrived with no fragmented message in progress.
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    /// A new text/binary frame arrived while a fragmented message was in progress.
    #[error("new data frame while a fragmented message is in progress")]
    ExpectedContinuation,
    /// A server received an unmasked frame from a client.
    #[error("unmasked frame from client")]
    UnmaskedClientFrame,
    /// A client received a masked frame from a server.
    #[error("masked frame from server")]
    MaskedServerFrame,
    /// A 64-bit payload length had its most significant bit set.
    #[error("invalid payload length (most significant bit set)")]
    InvalidLength,
    /// The frame, or the running total of a fragmented message, exceeds the limit.
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
    MessageTooLarge {
        /// Size the message would reach (bytes already received plus the
        /// declared length of the offending frame).
        size: u64,
        /// The configured `max_message_size`.
        max: usize,
    },
    /// A text message or a close reason was not valid UTF-8.
    #[error("invalid UTF-8 in text message or close reason")]
    InvalidUtf8,
    /// A close frame carried a code not allowed on the wire.
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// A close frame payload of exactly one byte (a code needs two).
    #[error("close frame payload of one byte")]
    InvalidClosePayload,
}

impl ProtocolError {
    /// The close code to send for this violation: 1002 (protocol error),
    /// 1007 (invalid UTF-8 in a text message or close reason) or 1009
    /// (message too big).
    pub fn close_code(&self) -> u16 {
        match self {
            ProtocolError::InvalidUtf8 => 1007,
            ProtocolError::MessageTooLarge { .. } => 1009,
            ProtocolError::ReservedBits
            | ProtocolError::UnknownOpcode(_)
            | ProtocolError::FragmentedControl
            | ProtocolError::ControlTooLong
            | ProtocolError::UnexpectedContinuation
            | ProtocolError::ExpectedContinuation
            | ProtocolError::UnmaskedClientFrame
            | ProtocolError::MaskedServerFrame
            | ProtocolError::InvalidLength
            | ProtocolError::InvalidCloseCode(_)
            | ProtocolError::InvalidClosePayload => 1002,
        }
    }
}

/// Where the decoder is within the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting header bytes into `Decoder::header`.
    Header,
    /// Receiving the payload of the current frame.
    Payload,
    /// A Close frame has been returned; all further input is ignored.
    Closed,
}

/// Streaming, sans-I/O RFC 6455 frame decoder.
///
/// Feed it bytes with [`Decoder::decode`]; it keeps every piece of partial
/// state (a partial header in a fixed array, partial payload in its message
/// buffer), so bytes are never fed twice. Typical use:
///
/// ```ignore
/// let mut rest: &[u8] = &read_buf;
/// while !rest.is_empty() {
///     let (used, event) = decoder.decode(rest)?; // on Err: send close(err.close_code())
///     rest = &rest[used..];
///     if let Some(event) = event { handle(event); }
/// }
/// ```
///
/// After a Close event has been returned the decoder is finished: later calls
/// consume all input and return no events. After an error the decoder is
/// poisoned: later calls return the same error again.
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    max_message_size: usize,
    state: State,
    /// Partial (or complete) header of the current frame.
    header: [u8; MAX_HEADER],
    /// Number of valid bytes in `header` (at most `MAX_HEADER`; a byte keeps the decoder small,
    /// and one is stored in every WebSocket connection).
    header_len: u8,
    /// Declared payload length of the current frame, once its length field is parsed.
    frame_len: u64,
    /// FIN bit of the current frame.
    frame_fin: bool,
    /// Opcode of the current frame.
    frame_opcode: OpCode,
    /// Masking key of the current frame.
    frame_mask: Option<[u8; 4]>,
    /// Payload bytes of the current frame not yet received.
    frame_remaining: u64,
    /// Payload bytes of the current frame received so far, modulo 4.
    mask_offset: u8,
    /// Opcode (Text or Binary) of the data message in progress, if any.
    message: Option<OpCode>,
    /// Reassembled, unmasked payload of the data message in progress.
    buf: Vec<u8>,
    /// Prefix of `buf` known to be complete, valid UTF-8 (text messages only).
    utf8_valid: usize,
    /// Payload of the control frame in progress, unmasked as it arrives.
    /// (Heap, and only while a control frame arrives: an idle decoder holds no buffer.)
    control: Vec<u8>,
    /// The error that poisoned this decoder, if any (boxed: it is rare, and the decoder is
    /// part of every connection).
    error: Option<Box<ProtocolError>>,
    /// permessage-deflate was negotiated: RSV1 may mark a message compressed.
    compression: bool,
    /// RSV1 of the current frame.
    frame_rsv1: bool,
    /// The data message in progress is compressed.
    compressed: bool,
    /// Fragments of the data message in progress received before the current one.
    fragments: u64,
}

impl Decoder {
    /// A decoder for the given `role` that rejects data messages larger than
    /// `max_message_size` bytes (total over all fragments) with
    /// [`ProtocolError::MessageTooLarge`]. Control frames are bounded by the
    /// protocol (125 bytes) and not subject to this limit.
    pub fn new(role: Role, max_message_size: usize) -> Self {
        Decoder {
            role,
            max_message_size,
            state: State::Header,
            header: [0; MAX_HEADER],
            header_len: 0,
            frame_len: 0,
            frame_fin: false,
            frame_opcode: OpCode::Continuation,
            frame_mask: None,
            frame_remaining: 0,
            mask_offset: 0,
            message: None,
            buf: Vec::new(),
            utf8_valid: 0,
            control: Vec::new(),
            error: None,
            compression: false,
            frame_rsv1: false,
            compressed: false,
            fragments: 0,
        }
    }

    /// Accept permessage-deflate compressed messages (RSV1 on a message's first
    /// frame), yielded as [`Event::Compressed`]. Call once the extension was
    /// negotiated in the handshake.
    pub fn set_compression(&mut self, enabled: bool) {
        self.compression = enabled;
    }

    /// Streaming decode.
    ///
    /// Consumes bytes from the front of `input` and returns how many it
    /// consumed, plus at most one event. All partial state is kept inside the
    /// decoder, so the caller never re-feeds bytes: it loops
    /// `while !input.is_empty()`, calling `decode` on the unconsumed rest and
    /// handling each event, and stops on error. `(n, None)` is only returned
    /// with `n == input.len()` and means "need more bytes". When an event is
    /// returned, `n` is the offset just past the frame that completed it.
    ///
    /// After a [`Event::Close`] has been returned, further input is ignored:
    /// every call consumes all of `input` and returns no event.
    ///
    /// # Errors
    ///
    /// A [`ProtocolError`] as soon as the bytes seen so far violate RFC 6455.
    /// The decoder is then poisoned and returns the same error on every later
    /// call; the connection must be closed with [`ProtocolError::close_code`].
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Option<Event>), ProtocolError> {
        if let Some(err) = &self.error {
            return Err(ProtocolError::clone(err));
        }
        let result = self.decode_inner(input);
        if let Err(err) = &result {
            self.error = Some(Box::new(err.clone()));
            self.buf = Vec::new();
            self.message = None;
        }
        result
    }

    /// Heap bytes currently held for a partially received data message (the
    /// capacity of the message buffer: at least the payload bytes received so
    /// far, never more than the declared lengths of the frames received).
    /// Zero when no data message is in progress.
    pub fn buffered(&self) -> usize {
        self.buf.capacity()
    }

    /// Drops the message buffer's allocation when no data message is in
    /// progress, so an idle connection holds no heap. Does nothing while a
    /// fragmented message is being received.
    pub fn shrink_idle(&mut self) {
        if self.message.is_none() {
            self.buf = Vec::new();
            self.utf8_valid = 0;
        }
    }

    fn decode_inner(&mut self, input: &[u8]) -> Result<(usize, Option<Event>), ProtocolError> {
        let mut pos = 0;
        loop {
            match self.state {
                State::Closed => return Ok((input.len(), None)),
                State::Header => {
                    if pos == input.len() {
                        return Ok((pos, None));
                    }
                    let (used, complete) = self.read_header(&input[pos..])?;
                    pos += used;
                    if !complete {
                        return Ok((pos, None));
                    }
                }
                State::Payload => {
                    if self.frame_remaining > 0 {
                        let available = input.len() - pos;
                        if available == 0 {
                            return Ok((pos, None));
                        }
                        let n = usize::try_from(self.frame_remaining)
                            .map_or(available, |remaining| remaining.min(available));
                        self.read_payload(&input[pos..pos + n])?;
                        pos += n;
                        if self.frame_remaining > 0 {
                            return Ok((pos, None));
                        }
                    }
                    self.state = State::Header;
                    if let Some(event) = self.finish_frame()? {
                        return Ok((pos, Some(event)));
                    }
                }
            }
        }
    }

    /// Copies header bytes until `header_len == target` or `input` runs out.
    /// Returns whether the target was reached.
    fn fill_header(&mut self, input: &[u8], pos: &mut usize, target: usize) -> bool {
        let have = usize::from(self.header_len);
        let n = (target - have).min(input.len() - *pos);
        self.header[have..have + n].copy_from_slice(&input[*pos..*pos + n]);
        // have + n <= target <= MAX_HEADER (14), so it fits a byte.
        self.header_len = (have + n) as u8;
        *pos += n;
        have + n == target
    }

    /// Reads (part of) a frame header, validating each part as soon as it is
    /// complete. Returns the bytes consumed and whether the header is complete.
    fn read_header(&mut self, input: &[u8]) -> Result<(usize, bool), ProtocolError> {
        let mut pos = 0;
        if self.header_len < 2 {
            if !self.fill_header(input, &mut pos, 2) {
                return Ok((pos, false));
            }
            self.check_first_bytes()?;
            if self.length_field_size() == 0 {
                self.check_length()?;
            }
        }
        let length_end = 2 + self.length_field_size();
        if usize::from(self.header_len) < length_end {
            if !self.fill_header(input, &mut pos, length_end) {
                return Ok((pos, false));
            }
            self.check_length()?;
        }
        let masked = self.header[1] & 0x80 != 0;
        let header_end = length_end + if masked { 4 } else { 0 };
        if usize::from(self.header_len) < header_end
            && !self.fill_header(input, &mut pos, header_end)
        {
            return Ok((pos, false));
        }
        self.start_frame(masked, length_end);
        Ok((pos, true))
    }

    /// Size of the extended payload length field announced by the second header byte.
    fn length_field_size(&self) -> usize {
        match self.header[1] & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        }
    }

    /// Validates the first two header bytes (everything but the length value).
    fn check_first_bytes(&mut self) -> Result<(), ProtocolError> {
        let b0 = self.header[0];
        let b1 = self.header[1];
        let raw_opcode = b0 & 0x0F;
        let rsv = b0 & 0x70;
        let starts_message = matches!(raw_opcode, 0x1 | 0x2);
        if rsv & !RSV1 != 0 || (rsv == RSV1 && !(self.compression && starts_message)) {
            return Err(ProtocolError::ReservedBits);
        }
        self.frame_rsv1 = rsv == RSV1;
        let opcode = OpCode::from_u8(raw_opcode).ok_or(ProtocolError::UnknownOpcode(raw_opcode))?;
        let fin = b0 & 0x80 != 0;
        match opcode {
            OpCode::Close | OpCode::Ping | OpCode::Pong => {
                if !fin {
                    return Err(ProtocolError::FragmentedControl);
                }
            }
            OpCode::Continuation => {
                if self.message.is_none() {
                    return Err(ProtocolError::UnexpectedContinuation);
                }
            }
            OpCode::Text | OpCode::Binary => {
                if self.message.is_some() {
                    return Err(ProtocolError::ExpectedContinuation);
                }
            }
        }
        let masked = b1 & 0x80 != 0;
        match (self.role, masked) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedClientFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedServerFrame),
            _ => {}
        }
        self.frame_fin = fin;
        self.frame_opcode = opcode;
        Ok(())
    }

    /// Parses the payload length (header bytes 1..2+ext) and enforces the
    /// length rules and the message size limit before any payload is read.
    fn check_length(&mut self) -> Result<(), ProtocolError> {
        let len = match self.header[1] & 0x7F {
            126 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
            127 => {
                let mut be = [0u8; 8];
                be.copy_from_slice(&self.header[2..10]);
                u64::from_be_bytes(be)
            }
            short => u64::from(short),
        };
        if len & (1 << 63) != 0 {
            return Err(ProtocolError::InvalidLength);
        }
        if self.frame_opcode.is_control() {
            // Non-minimal length encodings are tolerated, so a 16/64-bit
            // length may still be a valid control length.
            if len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(ProtocolError::ControlTooLong);
            }
        } else {
            // For a continuation this is the running total of the message, plus a charge per
            // earlier fragment: a flood of tiny or empty fragments costs the sender its budget
            // (and us CPU per frame) even though it adds no payload.
            // Only continuations: a new message starts from zero (fuzzing found the previous
            // message's fragments charged to the next one).
            let size = if self.frame_opcode == OpCode::Continuation {
                self.buf.len() as u64 + len + FRAGMENT_OVERHEAD * self.fragments
            } else {
                len
            };
            if size > self.max_message_size as u64 {
                return Err(ProtocolError::MessageTooLarge {
                    size,
                    max: self.max_message_size,
                });
            }
        }
        self.frame_len = len;
        Ok(())
    }

    /// The header is complete: set up payload reception.
    fn start_frame(&mut self, masked: bool, length_end: usize) {
        self.frame_mask = masked.then(|| {
            [
                self.header[length_end],
                self.header[length_end + 1],
                self.header[length_end + 2],
                self.header[length_end + 3],
            ]
        });
        self.frame_remaining = self.frame_len;
        self.mask_offset = 0;
        self.header_len = 0;
        self.state = State::Payload;
        match self.frame_opcode {
            OpCode::Text | OpCode::Binary => {
                self.message = Some(self.frame_opcode);
                self.fragments = 0;
                self.compressed = self.frame_rsv1;
                self.buf.clear();
                self.utf8_valid = 0;
            }
            OpCode::Continuation => {}
            OpCode::Close | OpCode::Ping | OpCode::Pong => {
                self.control.clear();
                // frame_len <= 125 was checked on the header.
                self.control.reserve_exact(self.frame_len as usize);
            }
        }
    }

    /// Takes `chunk` (no longer than the rest of the current frame's payload),
    /// unmasking it into the control or message buffer.
    fn read_payload(&mut self, chunk: &[u8]) -> Result<(), ProtocolError> {
        let n = chunk.len();
        let offset = usize::from(self.mask_offset);
        if self.frame_opcode.is_control() {
            let start = self.control.len();
            self.control.extend_from_slice(chunk);
            if let Some(mask) = self.frame_mask {
                apply_mask(&mut self.control[start..], mask, offset);
            }
        } else {
            self.reserve_payload(n);
            let start = self.buf.len();
            self.buf.extend_from_slice(chunk);
            if let Some(mask) = self.frame_mask {
                apply_mask(&mut self.buf[start..], mask, offset);
            }
            if self.message == Some(OpCode::Text) && !self.compressed {
                self.validate_utf8()?;
            }
        }
        self.mask_offset = ((offset + n) & 3) as u8;
        self.frame_remaining -= n as u64;
        Ok(())
    }

    /// Grows the message buffer for `incoming` more bytes: amortised doubling,
    /// but never beyond the end of the current frame, so the capacity never
    /// exceeds what was declared and a frame that arrives whole costs exactly
    /// one allocation (with capacity == length, so `Bytes::from` reuses it).
    fn reserve_payload(&mut self, incoming: usize) {
        let len = self.buf.len();
        let needed = len + incoming;
        if needed > self.buf.capacity() {
            // frame_remaining <= max_message_size (checked), so it fits usize.
            let frame_end = len + self.frame_remaining as usize;
            let target = (self.buf.capacity() * 2).clamp(needed, frame_end);
            self.buf.reserve_exact(target - len);
        }
    }

    /// Validates the not-yet-validated tail of a text message. An incomplete
    /// sequence at the very end is fine (more bytes may follow); anything that
    /// can never become valid fails immediately.
    fn validate_utf8(&mut self) -> Result<(), ProtocolError> {
        match std::str::from_utf8(&self.buf[self.utf8_valid..]) {
            Ok(_) => self.utf8_valid = self.buf.len(),
            Err(err) => {
                if err.error_len().is_some() {
                    return Err(ProtocolError::InvalidUtf8);
                }
                self.utf8_valid += err.valid_up_to();
            }
        }
        Ok(())
    }

    /// The current frame's payload is complete; produce its event, if any.
    fn finish_frame(&mut self) -> Result<Option<Event>, ProtocolError> {
        match self.frame_opcode {
            OpCode::Ping => Ok(Some(Event::Ping(self.control_payload()))),
            OpCode::Pong => Ok(Some(Event::Pong(self.control_payload()))),
            OpCode::Close => {
                let close = parse_close_payload(&self.control)?;
                self.control = Vec::new();
                self.state = State::Closed;
                self.message = None;
                self.buf = Vec::new();
                self.utf8_valid = 0;
                Ok(Some(Event::Close(close)))
            }
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                if !self.frame_fin {
                    self.fragments += 1;
                    return Ok(None);
                }
                let kind = self.message.take();
                let data = Bytes::from(std::mem::take(&mut self.buf));
                if std::mem::take(&mut self.compressed) {
                    self.utf8_valid = 0;
                    return Ok(Some(Event::Compressed {
                        text: kind == Some(OpCode::Text),
                        payload: data,
                    }));
                }
                let valid = self.utf8_valid == data.len();
                self.utf8_valid = 0;
                match kind {
                    Some(OpCode::Text) if valid => Ok(Some(Event::Text(data))),
                    Some(OpCode::Text) => Err(ProtocolError::InvalidUtf8),
                    _ => Ok(Some(Event::Binary(data))),
                }
            }
        }
    }

    /// Hands over the control payload buffer (sized exactly, so no copy) and leaves none.
    fn control_payload(&mut self) -> Bytes {
        Bytes::from(std::mem::take(&mut self.control))
    }
}

/// Parses and validates a close frame payload (RFC 6455 §5.5.1, §7.4).
fn parse_close_payload(payload: &[u8]) -> Result<Option<CloseFrame>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::InvalidClosePayload),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(ProtocolError::InvalidCloseCode(code));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(Some(CloseFrame {
                code,
                reason: reason.to_owned(),
            }))
        }
    }
}

/// XORs `buf` with `mask`, where `buf[0]` is payload byte number `offset`
/// of its frame (so unmasking can resume across reads).
fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let key = [
        mask[offset & 3],
        mask[(offset + 1) & 3],
        mask[(offset + 2) & 3],
        mask[(offset + 3) & 3],
    ];
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, hence of 4: the key is aligned.
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i & 3];
    }
}

/// Total encoded size of a frame with a `len`-byte payload.
fn frame_size(len: usize, masked: bool) -> usize {
    let length_field = match len {
        0..=125 => 0,
        126..=0xFFFF => 2,
        _ => 8,
    };
    2 + length_field + if masked { 4 } else { 0 } + len
}

/// Encodes one complete (FIN) frame into `dst`.
///
/// Server frames are unmasked (`mask = None`); pass `Some(mask)` for client
/// frames. The minimal length encoding is always used. Control frames must
/// carry at most 125 bytes (checked by a debug assertion).
pub fn encode_frame(opcode: OpCode, payload: &[u8], mask: Option<[u8; 4]>, dst: &mut BytesMut) {
    debug_assert!(
        !opcode.is_control() || payload.len() <= MAX_CONTROL_PAYLOAD,
        "control frame payload longer than 125 bytes"
    );
    let len = payload.len();
    dst.reserve(frame_size(len, mask.is_some()));
    dst.put_u8(0x80 | opcode.as_u8());
    let mask_bit = if mask.is_some() { 0x80 } else { 0x00 };
    if len <= 125 {
        dst.put_u8(mask_bit | len as u8);
    } else if let Ok(len16) = u16::try_from(len) {
        dst.put_u8(mask_bit | 126);
        dst.put_u16(len16);
    } else {
        dst.put_u8(mask_bit | 127);
        dst.put_u64(len as u64);
    }
    match mask {
        Some(mask) => {
            dst.put_slice(&mask);
            let start = dst.len();
            dst.put_slice(payload);
            apply_mask(&mut dst[start..], mask, 0);
        }
        None => dst.put_slice(payload),
    }
}

/// A whole unmasked server frame as shared bytes (header and payload
/// contiguous, built with a single allocation).
pub fn server_frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut dst = BytesMut::with_capacity(frame_size(payload.len(), false));
    encode_frame(opcode, payload, None, &mut dst);
    dst.freeze()
}

/// An unmasked close frame carrying `code` and `reason`; the reason is
/// truncated at a char boundary so that it fits in 123 bytes.
///
/// `code` should pass [`is_valid_close_code`]; it is sent as given.
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    server_frame(OpCode::Close, &payload[..2 + end])
}

/// A whole unmasked server frame of a permessage-deflate compressed message
/// (RSV1 set; `compressed` is raw DEFLATE without the trailing `00 00 ff ff`).
pub fn server_frame_compressed(opcode: OpCode, compressed: &[u8]) -> Bytes {
    let mut dst = BytesMut::with_capacity(compressed.len() + 10);
    encode_frame(opcode, compressed, None, &mut dst);
    dst[0] |= RSV1;
    dst.freeze()
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64 of the SHA-1 of
/// the key followed by the RFC 6455 GUID.
pub fn accept_key(key: &[u8]) -> String {
    use base64::Engine as _;
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(HANDSHAKE_GUID);
    base64::engine::general_purpose::STANDARD.encode(sha1.finalize())
}

/// Whether a close code may appear on the wire: 1000-1003, 1007-1014 and
/// 3000-4999 (1004-1006 and 1015 are reserved, 1016-2999 are unassigned).
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    const MAX: usize = 1 << 20;

    /// A masked (client → server) frame with explicit FIN and opcode bits.
    fn client_raw(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut dst = BytesMut::new();
        encode_frame(OpCode::Binary, payload, Some(MASK), &mut dst);
        dst[0] = if fin { 0x80 } else { 0x00 } | opcode;
        dst.to_vec()
    }

    /// A masked, final client frame.
    fn client(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut dst = BytesMut::new();
        encode_frame(opcode, payload, Some(MASK), &mut dst);
        dst.to_vec()
    }

    /// Feeds `input` in one go, the way a transport would.
    fn decode_all(dec: &mut Decoder, mut input: &[u8]) -> Result<Vec<Event>, ProtocolError> {
        let mut events = Vec::new();
        while !input.is_empty() {
            let (used, event) = dec.decode(input)?;
            assert!(used <= input.len());
            if event.is_none() {
                assert_eq!(used, input.len(), "None must mean all input consumed");
            }
            input = &input[used..];
            events.extend(event);
        }
        Ok(events)
    }

    /// Feeds `input` split into the given chunk sizes (cycled).
    fn decode_chunked(
        dec: &mut Decoder,
        input: &[u8],
        sizes: &[usize],
    ) -> Result<Vec<Event>, ProtocolError> {
        let mut events = Vec::new();
        let mut start = 0;
        for &size in sizes.iter().cycle() {
            if start >= input.len() {
                break;
            }
            let end = (start + size.max(1)).min(input.len());
            events.extend(decode_all(dec, &input[start..end])?);
            start = end;
        }
        Ok(events)
    }

    fn server_decode(input: &[u8]) -> Result<Vec<Event>, ProtocolError> {
        decode_all(&mut Decoder::new(Role::Server, MAX), input)
    }

    fn server_err(input: &[u8]) -> ProtocolError {
        server_decode(input).expect_err("expected a protocol error")
    }

    fn text(s: &str) -> Event {
        Event::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn binary(b: &[u8]) -> Event {
        Event::Binary(Bytes::copy_from_slice(b))
    }

    fn naive_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= mask[(offset + i) % 4];
        }
    }

    /// A deterministic pseudo-random byte sequence.
    fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (seed >> 33) as u8
            })
            .collect()
    }

    // ---- handshake, close codes, opcodes ---------------------------------

    #[test]
    fn accept_key_matches_rfc_example() {
        // RFC 6455 §1.3: SHA-1 = b37a4f2c c0624f16 90f64606 cf385945 b2bec4ea.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn close_code_validity() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
        ] {
            assert!(is_valid_close_code(code), "{code}");
        }
        for code in [3000, 3999, 4000, 4999] {
            assert!(is_valid_close_code(code), "{code}");
        }
        for code in [
            0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!is_valid_close_code(code), "{code}");
        }
    }

    #[test]
    fn opcode_round_trip() {
        for op in [
            OpCode::Continuation,
            OpCode::Text,
            OpCode::Binary,
            OpCode::Close,
            OpCode::Ping,
            OpCode::Pong,
        ] {
            assert_eq!(OpCode::from_u8(op.as_u8()), Some(op));
            assert_eq!(
                op.is_control(),
                matches!(op, OpCode::Close | OpCode::Ping | OpCode::Pong)
            );
        }
        for raw in (3..=7).chain(11..=15).chain([16, 255]) {
            assert_eq!(OpCode::from_u8(raw), None, "{raw}");
        }
    }

    #[test]
    fn error_close_codes() {
        let protocol = [
            ProtocolError::ReservedBits,
            ProtocolError::UnknownOpcode(3),
            ProtocolError::FragmentedControl,
            ProtocolError::ControlTooLong,
            ProtocolError::UnexpectedContinuation,
            ProtocolError::ExpectedContinuation,
            ProtocolError::UnmaskedClientFrame,
            ProtocolError::MaskedServerFrame,
            ProtocolError::InvalidLength,
            ProtocolError::InvalidCloseCode(1005),
            ProtocolError::InvalidClosePayload,
        ];
        for err in protocol {
            assert_eq!(err.close_code(), 1002, "{err}");
        }
        assert_eq!(ProtocolError::InvalidUtf8.close_code(), 1007);
        let too_large = ProtocolError::MessageTooLarge { size: 10, max: 5 };
        assert_eq!(too_large.close_code(), 1009);
        assert_eq!(
            too_large.to_string(),
            "message of 10 bytes exceeds the limit of 5 bytes"
        );
    }

    // ---- masking -----------------------------------------------------------

    #[test]
    fn apply_mask_matches_naive_for_all_offsets_and_lengths() {
        let mask = [0x01, 0x23, 0x45, 0x89];
        for len in 0..40 {
            for offset in 0..8 {
                let data = pseudo_random(len, (len * 8 + offset) as u64);
                let mut fast = data.clone();
                let mut slow = data.clone();
                apply_mask(&mut fast, mask, offset);
                naive_mask(&mut slow, mask, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
                apply_mask(&mut fast, mask, offset);
                assert_eq!(fast, data);
            }
        }
    }

    // ---- RFC 6455 §5.7 examples ---------------------------------------------

    #[test]
    fn rfc_examples_decode() {
        // Single-frame unmasked text (server → client).
        let mut client = Decoder::new(Role::Client, MAX);
        let frame = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(decode_all(&mut client, &frame), Ok(vec![text("Hello")]));

        // Single-frame masked text (client → server).
        let frame = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(server_decode(&frame), Ok(vec![text("Hello")]));

        // Fragmented unmasked text.
        let mut client = Decoder::new(Role::Client, MAX);
        let frames = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
        assert_eq!(decode_all(&mut client, &frames), Ok(vec![text("Hello")]));

        // Unmasked ping, masked pong.
        let mut client = Decoder::new(Role::Client, MAX);
        let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(
            decode_all(&mut client, &ping),
            Ok(vec![Event::Ping(Bytes::from_static(b"Hello"))])
        );
        let pong = [
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            server_decode(&pong),
            Ok(vec![Event::Pong(Bytes::from_static(b"Hello"))])
        );
    }

    #[test]
    fn rfc_examples_encode() {
        let mut dst = BytesMut::new();
        encode_frame(OpCode::Text, b"Hello", Some(MASK), &mut dst);
        assert_eq!(
            &dst[..],
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        assert_eq!(
            &server_frame(OpCode::Text, b"Hello")[..],
            [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
        );
        assert_eq!(
            &server_frame(OpCode::Ping, b"Hello")[..],
            [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
        );
    }

    #[test]
    fn encode_length_forms() {
        for (len, header) in [
            (0usize, vec![0x82, 0x00]),
            (125, vec![0x82, 125]),
            (126, vec![0x82, 126, 0x00, 126]),
            (0xFFFF, vec![0x82, 126, 0xFF, 0xFF]),
            (0x1_0000, vec![0x82, 127, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]),
        ] {
            let payload = pseudo_random(len, len as u64);
            let frame = server_frame(OpCode::Binary, &payload);
            assert_eq!(frame.len(), header.len() + len, "len {len}");
            assert_eq!(&frame[..header.len()], &header[..], "len {len}");
            assert_eq!(&frame[header.len()..], &payload[..], "len {len}");

            let mut client = Decoder::new(Role::Client, MAX);
            assert_eq!(decode_all(&mut client, &frame), Ok(vec![binary(&payload)]));
        }
    }

    #[test]
    fn masked_16_and_64_bit_lengths() {
        for len in [126usize, 256, 0xFFFF, 0x1_0000, 70_000] {
            let payload = pseudo_random(len, 7);
            let frame = client(OpCode::Binary, &payload);
            let expected_header = if len <= 0xFFFF { 8 } else { 14 };
            assert_eq!(frame.len(), expected_header + len);
            assert_eq!(frame[1] & 0x7F, if len <= 0xFFFF { 126 } else { 127 });
            assert_eq!(server_decode(&frame), Ok(vec![binary(&payload)]), "{len}");
        }
    }

    #[test]
    fn non_minimal_length_encodings_accepted() {
        // 5-byte payloads announced with a 16-bit and a 64-bit length field.
        let mut frame16 = vec![0x82, 0x80 | 126, 0, 5];
        frame16.extend_from_slice(&MASK);
        let mut payload = *b"abcde";
        naive_mask(&mut payload, MASK, 0);
        frame16.extend_from_slice(&payload);
        assert_eq!(server_decode(&frame16), Ok(vec![binary(b"abcde")]));

        let mut frame64 = vec![0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 5];
        frame64.extend_from_slice(&MASK);
        frame64.extend_from_slice(&payload);
        assert_eq!(server_decode(&frame64), Ok(vec![binary(b"abcde")]));

        // Also for a control frame, as long as the length is <= 125.
        let mut ping = vec![0x89, 0x80 | 126, 0, 5];
        ping.extend_from_slice(&MASK);
        ping.extend_from_slice(&payload);
        assert_eq!(
            server_decode(&ping),
            Ok(vec![Event::Ping(Bytes::from_static(b"abcde"))])
        );
    }

    // ---- streaming ------------------------------------------------------------

    fn mixed_stream() -> (Vec<u8>, Vec<Event>) {
        let long = pseudo_random(300, 1);
        let mut input = Vec::new();
        input.extend(client(
            OpCode::Text,
            "héllo wörld, a longer text ✓".as_bytes(),
        ));
        input.extend(client(OpCode::Binary, &long));
        input.extend(client_raw(false, 0x1, "κό".as_bytes()));
        input.extend(client(OpCode::Ping, b"ping payload"));
        input.extend(client_raw(false, 0x0, &"σμε".as_bytes()[..3]));
        input.extend(client_raw(false, 0x0, b""));
        input.extend(client_raw(true, 0x0, &"σμε".as_bytes()[3..]));
        input.extend(client(OpCode::Pong, b""));
        input.extend(client(OpCode::Text, b""));
        input.extend(client(OpCode::Close, &[0x03, 0xE8, b'b', b'y', b'e']));
        let events = vec![
            text("héllo wörld, a longer text ✓"),
            binary(&long),
            Event::Ping(Bytes::from_static(b"ping payload")),
            text("κόσμε"),
            Event::Pong(Bytes::new()),
            text(""),
            Event::Close(Some(CloseFrame {
                code: 1000,
                reason: "bye".into(),
            })),
        ];
        (input, events)
    }

    #[test]
    fn whole_stream() {
        let (input, events) = mixed_stream();
        assert_eq!(server_decode(&input), Ok(events));
    }

    #[test]
    fn one_byte_at_a_time_equals_whole() {
        let (input, events) = mixed_stream();
        let mut dec = Decoder::new(Role::Server, MAX);
        assert_eq!(decode_chunked(&mut dec, &input, &[1]), Ok(events));
    }

    #[test]
    fn arbitrary_chunkings_equal_whole() {
        let (input, events) = mixed_stream();
        for seed in 0..50u64 {
            let sizes: Vec<usize> = pseudo_random(16, seed)
                .iter()
                .map(|&b| usize::from(b % 23) + 1)
                .collect();
            let mut dec = Decoder::new(Role::Server, MAX);
            assert_eq!(
                decode_chunked(&mut dec, &input, &sizes),
                Ok(events.clone()),
                "sizes {sizes:?}"
            );
        }
    }

    #[test]
    fn decode_stops_right_after_each_event() {
        let first = client(OpCode::Text, b"one");
        let second = client(OpCode::Binary, b"two");
        let input = [first.clone(), second.clone()].concat();
        let mut dec = Decoder::new(Role::Server, MAX);
        let (used, event) = dec.decode(&input).unwrap();
        assert_eq!(used, first.len());
        assert_eq!(event, Some(text("one")));
        let (used, event) = dec.decode(&input[first.len()..]).unwrap();
        assert_eq!(used, second.len());
        assert_eq!(event, Some(binary(b"two")));
        assert_eq!(dec.decode(&[]), Ok((0, None)));
    }

    #[test]
    fn partial_header_then_rest() {
        let frame = client(OpCode::Binary, &pseudo_random(70_000, 3));
        let mut dec = Decoder::new(Role::Server, MAX);
        // 1 byte, then the rest of the 64-bit length field piecewise, then the mask.
        for piece in [
            &frame[..1],
            &frame[1..2],
            &frame[2..6],
            &frame[6..11],
            &frame[11..14],
        ] {
            assert_eq!(dec.decode(piece), Ok((piece.len(), None)));
        }
        assert_eq!(dec.buffered(), 0);
        let events = decode_all(&mut dec, &frame[14..]).unwrap();
        assert_eq!(events, vec![binary(&pseudo_random(70_000, 3))]);
    }

    // ---- framing rules ----------------------------------------------------------

    #[test]
    fn reserved_bits_rejected() {
        for rsv in [0x40, 0x20, 0x10, 0x70] {
            let mut frame = client(OpCode::Text, b"x");
            frame[0] |= rsv;
            let err = server_err(&frame);
            assert_eq!(err, ProtocolError::ReservedBits);
            assert_eq!(err.close_code(), 1002);
            // Detected from the first two bytes alone.
            let mut dec = Decoder::new(Role::Server, MAX);
            assert_eq!(dec.decode(&frame[..2]), Err(ProtocolError::ReservedBits));
        }
        // Also on control frames.
        let mut ping = client(OpCode::Ping, b"");
        ping[0] |= 0x40;
        assert_eq!(server_err(&ping), ProtocolError::ReservedBits);
    }

    #[test]
    fn unknown_opcodes_rejected() {
        for op in (3..=7u8).chain(11..=15) {
            let err = server_err(&client_raw(true, op, b"payload"));
            assert_eq!(err, ProtocolError::UnknownOpcode(op));
            assert_eq!(err.close_code(), 1002);
        }
    }

    #[test]
    fn fragmented_control_rejected() {
        for op in [0x8, 0x9, 0xA] {
            let err = server_err(&client_raw(false, op, b""));
            assert_eq!(err, ProtocolError::FragmentedControl);
            assert_eq!(err.close_code(), 1002);
        }
    }

    #[test]
    fn control_payload_limit() {
        let ok = vec![b'a'; 125];
        assert_eq!(
            server_decode(&client_raw(true, 0x9, &ok)),
            Ok(vec![Event::Ping(Bytes::from(ok.clone()))])
        );
        for op in [0x8, 0x9, 0xA] {
            let frame = client_raw(true, op, &[b'a'; 126]);
            let err = server_err(&frame);
            assert_eq!(err, ProtocolError::ControlTooLong);
            assert_eq!(err.close_code(), 1002);
            // Rejected from the header alone (2 bytes + 16-bit length).
            let mut dec = Decoder::new(Role::Server, MAX);
            assert_eq!(dec.decode(&frame[..4]), Err(ProtocolError::ControlTooLong));
        }
    }

    #[test]
    fn continuation_sequencing() {
        // Continuation with nothing in progress.
        for fin in [true, false] {
            let err = server_err(&client_raw(fin, 0x0, b"x"));
            assert_eq!(err, ProtocolError::UnexpectedContinuation);
            assert_eq!(err.close_code(), 1002);
        }
        // Continuation after a completed message.
        let input = [client(OpCode::Text, b"done"), client_raw(true, 0x0, b"x")].concat();
        assert_eq!(server_err(&input), ProtocolError::UnexpectedContinuation);

        // New data frame while a fragmented message is in progress.
        for op in [0x1, 0x2] {
            let input = [client_raw(false, 0x2, b"part"), client_raw(true, op, b"x")].concat();
            let err = server_err(&input);
            assert_eq!(err, ProtocolError::ExpectedContinuation);
            assert_eq!(err.close_code(), 1002);
        }
    }

    #[test]
    fn masking_must_match_role() {
        let unmasked = server_frame(OpCode::Text, b"hi");
        let err = server_err(&unmasked);
        assert_eq!(err, ProtocolError::UnmaskedClientFrame);
        assert_eq!(err.close_code(), 1002);
        // Also for control frames and empty payloads.
        assert_eq!(
            server_err(&server_frame(OpCode::Ping, b"")),
            ProtocolError::UnmaskedClientFrame
        );

        let mut client_dec = Decoder::new(Role::Client, MAX);
        let err = decode_all(&mut client_dec, &client(OpCode::Text, b"hi")).unwrap_err();
        assert_eq!(err, ProtocolError::MaskedServerFrame);
        assert_eq!(err.close_code(), 1002);
    }

    #[test]
    fn length_with_msb_set_rejected() {
        let mut frame = vec![0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1];
        frame.extend_from_slice(&MASK);
        let mut dec = Decoder::new(Role::Server, usize::MAX);
        let err = dec.decode(&frame).unwrap_err();
        assert_eq!(err, ProtocolError::InvalidLength);
        assert_eq!(err.close_code(), 1002);
    }

    #[test]
    fn empty_frames_fragments_and_messages() {
        // Empty text and binary messages.
        assert_eq!(
            server_decode(&client(OpCode::Text, b"")),
            Ok(vec![text("")])
        );
        assert_eq!(
            server_decode(&client(OpCode::Binary, b"")),
            Ok(vec![binary(b"")])
        );
        // A message made only of zero-length fragments.
        let input = [
            client_raw(false, 0x1, b""),
            client_raw(false, 0x0, b""),
            client_raw(true, 0x0, b""),
        ]
        .concat();
        assert_eq!(server_decode(&input), Ok(vec![text("")]));
        // Empty ping / pong.
        let input = [client(OpCode::Ping, b""), client(OpCode::Pong, b"")].concat();
        assert_eq!(
            server_decode(&input),
            Ok(vec![Event::Ping(Bytes::new()), Event::Pong(Bytes::new())])
        );
        // An unmasked empty frame is complete after two bytes.
        let mut client_dec = Decoder::new(Role::Client, MAX);
        assert_eq!(
            client_dec.decode(&[0x8A, 0x00]),
            Ok((2, Some(Event::Pong(Bytes::new()))))
        );
    }

    #[test]
    fn ping_between_fragments() {
        let mut dec = Decoder::new(Role::Server, MAX);
        assert_eq!(
            decode_all(&mut dec, &client_raw(false, 0x2, b"abc")),
            Ok(vec![])
        );
        assert_eq!(dec.buffered(), 3);
        assert_eq!(
            decode_all(&mut dec, &client(OpCode::Ping, b"p")),
            Ok(vec![Event::Ping(Bytes::from_static(b"p"))])
        );
        assert_eq!(dec.buffered(), 3, "partial message undisturbed");
        dec.shrink_idle();
        assert_eq!(dec.buffered(), 3, "shrink_idle keeps a message in progress");
        assert_eq!(
            decode_all(&mut dec, &client(OpCode::Pong, b"q")),
            Ok(vec![Event::Pong(Bytes::from_static(b"q"))])
        );
        assert_eq!(
            decode_all(&mut dec, &client_raw(true, 0x0, b"def")),
            Ok(vec![binary(b"abcdef")])
        );
        assert_eq!(dec.buffered(), 0);
    }

    // ---- size limit -------------------------------------------------------------

    #[test]
    fn declared_length_over_limit_rejected_from_header_alone() {
        let max = 1000;
        // 16-bit length: header (2 + 2) is enough; the mask key is not needed.
        let mut dec = Decoder::new(Role::Server, max);
        let err = dec.decode(&[0x82, 0x80 | 126, 0x03, 0xE9]).unwrap_err();
        assert_eq!(err, ProtocolError::MessageTooLarge { size: 1001, max });
        assert_eq!(err.close_code(), 1009);
        assert_eq!(dec.buffered(), 0);

        // 64-bit length, full header including mask, no payload at all.
        let mut header = vec![0x81, 0x80 | 127, 0, 0, 0, 1, 0, 0, 0, 0];
        header.extend_from_slice(&MASK);
        let mut dec = Decoder::new(Role::Server, max);
        assert_eq!(
            dec.decode(&header),
            Err(ProtocolError::MessageTooLarge { size: 1 << 32, max })
        );
        assert_eq!(dec.buffered(), 0);

        // 7-bit length.
        let mut dec = Decoder::new(Role::Server, 10);
        assert_eq!(
            dec.decode(&[0x82, 0x80 | 11]),
            Err(ProtocolError::MessageTooLarge { size: 11, max: 10 })
        );
    }

    #[test]
    fn size_limit_boundary() {
        let mut dec = Decoder::new(Role::Server, 10);
        let payload = [7u8; 10];
        assert_eq!(
            decode_all(&mut dec, &client(OpCode::Binary, &payload)),
            Ok(vec![binary(&payload)])
        );
        let mut dec = Decoder::new(Role::Server, 0);
        assert_eq!(
            decode_all(&mut dec, &client(OpCode::Text, b"")),
            Ok(vec![text("")])
        );
        // Control frames are not subject to the data message limit.
        assert_eq!(
            decode_all(&mut dec, &client(OpCode::Ping, b"abc")),
            Ok(vec![Event::Ping(Bytes::from_static(b"abc"))])
        );
    }

    #[test]
    fn fragmented_running_total_over_limit() {
        // Two earlier fragments are charged FRAGMENT_OVERHEAD each.
        let max = 10 + 2 * FRAGMENT_OVERHEAD as usize;
        let mut dec = Decoder::new(Role::Server, max);
        assert_eq!(
            decode_all(&mut dec, &client_raw(false, 0x1, b"123456")),
            Ok(vec![])
        );
        assert_eq!(
            decode_all(&mut dec, &client_raw(false, 0x0, b"7890")),
            Ok(vec![])
        );
        // Exactly at the limit so far; one more byte announced is too much,
        // detected from the first two header bytes.
        let next = client_raw(true, 0x0, b"x");
        let err = dec.decode(&next[..2]).unwrap_err();
        assert_eq!(
            err,
            ProtocolError::MessageTooLarge {
                size: 11 + 2 * FRAGMENT_OVERHEAD,
                max
            }
        );
        assert_eq!(err.close_code(), 1009);
    }

    #[test]
    fn fragment_overhead_carried_into_next_message() {
        // Found by the ws_roundtrip fuzz target: a fragmented message followed by a message
        // that fits was refused with 1009.
        let mut dec = Decoder::new(Role::Server, 20);
        let mut input = client_raw(false, 0x2, b"a");
        input.extend(client_raw(true, 0x0, b"b"));
        input.extend(client(OpCode::Binary, b"0123456789"));
        assert_eq!(
            decode_all(&mut dec, &input),
            Ok(vec![
                Event::Binary(Bytes::from_static(b"ab")),
                Event::Binary(Bytes::from_static(b"0123456789"))
            ])
        );
    }

    #[test]
    fn a_flood_of_empty_fragments_runs_out_of_budget() {
        let max = 1024;
        let mut dec = Decoder::new(Role::Server, max);
        let mut input = client_raw(false, 0x2, b"");
        for _ in 0..1000 {
            input.extend(client_raw(false, 0x0, b""));
        }
        let err = decode_all(&mut dec, &input).unwrap_err();
        assert!(matches!(err, ProtocolError::MessageTooLarge { .. }));
        assert!(dec.buffered() <= max);
    }

    #[test]
    fn buffer_grows_only_with_received_bytes() {
        // Announce 64 KiB, send 1 byte: only that byte is buffered.
        let payload = vec![0x55u8; 0x1_0000];
        let frame = client(OpCode::Binary, &payload);
        let header_len = 14;
        let mut dec = Decoder::new(Role::Server, MAX);
        assert_eq!(
            dec.decode(&frame[..header_len + 1]),
            Ok((header_len + 1, None))
        );
        assert_eq!(dec.buffered(), 1);
        // Growth never exceeds the declared frame length.
        assert_eq!(
            decode_all(&mut dec, &frame[header_len + 1..header_len + 40_000]),
            Ok(vec![])
        );
        assert!(dec.buffered() >= 39_999 && dec.buffered() <= payload.len());
        assert_eq!(
            decode_all(&mut dec, &frame[header_len + 40_000..]),
            Ok(vec![binary(&payload)])
        );
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn whole_frame_buffer_is_exact() {
        // A frame that arrives whole is reserved exactly once with no slack.
        let payload = pseudo_random(5000, 9);
        let frame = client_raw(false, 0x2, &payload);
        let mut dec = Decoder::new(Role::Server, MAX);
        assert_eq!(decode_all(&mut dec, &frame), Ok(vec![]));
        assert_eq!(dec.buf.len(), payload.len());
        assert_eq!(dec.buf.capacity(), payload.len());
    }

    #[test]
    fn shrink_idle_releases_buffer() {
        let mut dec = Decoder::new(Role::Server, MAX);
        assert_eq!(
            decode_all(&mut dec, &client(OpCode::Binary, &[1; 100])),
            Ok(vec![binary(&[1; 100])])
        );
        dec.shrink_idle();
        assert_eq!(dec.buffered(), 0);
        assert_eq!(dec.buf.capacity(), 0);
        // Still usable afterwards.
        assert_eq!(
            decode_all(&mut dec, &client(OpCode::Text, b"again")),
            Ok(vec![text("again")])
        );
    }

    // ---- UTF-8 --------------------------------------------------------------------

    #[test]
    fn multibyte_char_split_across_fragments() {
        // U+1F600 (4 bytes) split 1 + 2 + 1 across three fragments.
        let smile = "😀".as_bytes();
        let input = [
            client_raw(false, 0x1, &[b'a', smile[0]]),
            client_raw(false, 0x0, &smile[1..3]),
            client_raw(true, 0x0, &[smile[3], b'b']),
        ]
        .concat();
        assert_eq!(server_decode(&input), Ok(vec![text("a😀b")]));
        let mut dec = Decoder::new(Role::Server, MAX);
        assert_eq!(
            decode_chunked(&mut dec, &input, &[1]),
            Ok(vec![text("a😀b")])
        );
    }

    #[test]
    fn invalid_utf8_fails_fast_in_first_fragment() {
        // Autobahn 6.4.1 style: the first fragment is valid, the second
        // contains an impossible sequence; the message never completes.
        let mut dec = Decoder::new(Role::Server, MAX);
        assert_eq!(
            decode_all(&mut dec, &client_raw(false, 0x1, "κόσμε".as_bytes())),
            Ok(vec![])
        );
        let err =
            decode_all(&mut dec, &client_raw(false, 0x0, &[0xF4, 0x90, 0x80, 0x80])).unwrap_err();
        assert_eq!(err, ProtocolError::InvalidUtf8);
        assert_eq!(err.close_code(), 1007);

        // Invalid byte in the very first, non-final fragment.
        let err = server_err(&client_raw(false, 0x1, &[b'o', b'k', 0xFF]));
        assert_eq!(err, ProtocolError::InvalidUtf8);
    }

    #[test]
    fn invalid_utf8_fails_fast_within_a_frame() {
        // Autobahn 6.4.3/6.4.4 style: one frame, delivered in pieces; the error
        // is reported as soon as the offending byte arrives.
        let mut payload = "κόσμε".as_bytes().to_vec();
        payload.extend_from_slice(&[0xF4, 0x90, 0x80, 0x80]);
        payload.extend_from_slice("edited".as_bytes());
        let frame = client(OpCode::Text, &payload);
        let header = 6;
        let bad_at = header + "κόσμε".len() + 1; // index of 0x90
        let mut dec = Decoder::new(Role::Server, MAX);
        assert_eq!(
            dec.decode(&frame[..bad_at]),
            Ok((bad_at, None)),
            "0xF4 alone may still be a valid prefix"
        );
        assert_eq!(
            dec.decode(&frame[bad_at..bad_at + 1]),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    #[test]
    fn invalid_sequence_split_across_fragments() {
        let input = [
            client_raw(false, 0x1, &[b'a', 0xED]),
            client_raw(true, 0x0, &[0xA0, 0x80]),
        ]
        .concat();
        assert_eq!(server_err(&input), ProtocolError::InvalidUtf8);
    }

    #[test]
    fn incomplete_utf8_at_end_of_message_rejected() {
        let smile = "😀".as_bytes();
        let err = server_err(&client(OpCode::Text, &smile[..3]));
        assert_eq!(err, ProtocolError::InvalidUtf8);
        let input = [
            client_raw(false, 0x1, &smile[..2]),
            client_raw(true, 0x0, b""),
        ]
        .concat();
        assert_eq!(server_err(&input), ProtocolError::InvalidUtf8);
    }

    #[test]
    fn invalid_utf8_cases() {
        for bad in [
            &[0xFF][..],
            &[0xC0, 0x80],             // overlong
            &[0xE0, 0x80, 0x80],       // overlong
            &[0xED, 0xA0, 0x80],       // surrogate
            &[0xF4, 0x90, 0x80, 0x80], // > U+10FFFF
            &[0x80],                   // lone continuation
            &[0xCE, 0x41],             // truncated then ASCII
        ] {
            assert_eq!(
                server_err(&client(OpCode::Text, bad)),
                ProtocolError::InvalidUtf8,
                "{bad:x?}"
            );
            // Binary messages are not validated.
            assert_eq!(
                server_decode(&client(OpCode::Binary, bad)),
                Ok(vec![binary(bad)])
            );
        }
    }

    #[test]
    fn valid_utf8_edge_cases() {
        for ok in [
            "\u{0}",
            "\u{7F}",
            "\u{80}",
            "\u{7FF}",
            "\u{800}",
            "\u{FFFF}",
            "\u{10000}",
            "\u{10FFFF}",
        ] {
            assert_eq!(
                server_decode(&client(OpCode::Text, ok.as_bytes())),
                Ok(vec![text(ok)])
            );
        }
    }

    // ---- close frames --------------------------------------------------------------

    #[test]
    fn close_empty_payload() {
        assert_eq!(
            server_decode(&client(OpCode::Close, b"")),
            Ok(vec![Event::Close(None)])
        );
    }

    #[test]
    fn close_one_byte_payload_rejected() {
        let err = server_err(&client(OpCode::Close, &[0x03]));
        assert_eq!(err, ProtocolError::InvalidClosePayload);
        assert_eq!(err.close_code(), 1002);
    }

    #[test]
    fn close_codes_checked() {
        for code in [1000u16, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert_eq!(
                server_decode(&client(OpCode::Close, &code.to_be_bytes())),
                Ok(vec![Event::Close(Some(CloseFrame {
                    code,
                    reason: String::new()
                }))]),
                "{code}"
            );
        }
        for code in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            let err = server_err(&client(OpCode::Close, &code.to_be_bytes()));
            assert_eq!(err, ProtocolError::InvalidCloseCode(code));
            assert_eq!(err.close_code(), 1002);
        }
    }

    #[test]
    fn close_reason_must_be_utf8() {
        let err = server_err(&client(OpCode::Close, &[0x03, 0xE8, b'a', 0xFF]));
        assert_eq!(err, ProtocolError::InvalidUtf8);
        assert_eq!(err.close_code(), 1007);
    }

    #[test]
    fn close_frame_round_trip() {
        let frame = close_frame(1001, "going away");
        assert_eq!(&frame[..4], [0x88, 12, 0x03, 0xE9]);
        let mut client_dec = Decoder::new(Role::Client, MAX);
        assert_eq!(
            decode_all(&mut client_dec, &frame),
            Ok(vec![Event::Close(Some(CloseFrame {
                code: 1001,
                reason: "going away".into()
            }))])
        );

        // Masked client close decoded by the server.
        let mut payload = 4000u16.to_be_bytes().to_vec();
        payload.extend_from_slice("ciao ✓".as_bytes());
        assert_eq!(
            server_decode(&client(OpCode::Close, &payload)),
            Ok(vec![Event::Close(Some(CloseFrame {
                code: 4000,
                reason: "ciao ✓".into()
            }))])
        );
    }

    #[test]
    fn close_frame_truncates_reason_at_char_boundary() {
        let reason = "é".repeat(100); // 200 bytes
        let frame = close_frame(1000, &reason);
        assert_eq!(frame[1] as usize, 2 + 122);
        assert_eq!(frame.len(), 2 + 2 + 122);
        let mut client_dec = Decoder::new(Role::Client, MAX);
        assert_eq!(
            decode_all(&mut client_dec, &frame),
            Ok(vec![Event::Close(Some(CloseFrame {
                code: 1000,
                reason: "é".repeat(61)
            }))])
        );
        // ASCII fits exactly 123 bytes.
        let frame = close_frame(1000, &"a".repeat(500));
        assert_eq!(frame[1] as usize, 125);
        // Short reasons are untouched; empty reason gives a 2-byte payload.
        assert_eq!(&close_frame(1000, "")[..], [0x88, 0x02, 0x03, 0xE8]);
    }

    #[test]
    fn input_after_close_is_ignored() {
        let input = [
            client(OpCode::Close, &1000u16.to_be_bytes()),
            client(OpCode::Text, b"ignored"),
            vec![0xFF, 0xFF, 0xFF],
        ]
        .concat();
        let mut dec = Decoder::new(Role::Server, MAX);
        let (used, event) = dec.decode(&input).unwrap();
        assert_eq!(used, 8);
        assert!(matches!(event, Some(Event::Close(Some(_)))));
        assert_eq!(dec.decode(&input[used..]), Ok((input.len() - used, None)));
        assert_eq!(dec.decode(b"garbage"), Ok((7, None)));
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn close_during_fragmented_message() {
        let input = [
            client_raw(false, 0x1, b"partial"),
            client(OpCode::Close, b""),
            client_raw(true, 0x0, b"ignored"),
        ]
        .concat();
        let mut dec = Decoder::new(Role::Server, MAX);
        assert_eq!(decode_all(&mut dec, &input), Ok(vec![Event::Close(None)]));
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn errors_are_sticky() {
        let mut dec = Decoder::new(Role::Server, MAX);
        let bad = client_raw(true, 0x3, b"");
        assert_eq!(dec.decode(&bad), Err(ProtocolError::UnknownOpcode(3)));
        assert_eq!(
            dec.decode(&client(OpCode::Text, b"fine")),
            Err(ProtocolError::UnknownOpcode(3))
        );
    }

    #[test]
    fn server_frame_decodes_in_client_role_for_all_opcodes() {
        let mut dec = Decoder::new(Role::Client, MAX);
        let input = [
            server_frame(OpCode::Text, b"t"),
            server_frame(OpCode::Binary, b"b"),
            server_frame(OpCode::Ping, b"pi"),
            server_frame(OpCode::Pong, b"po"),
            close_frame(1000, "x"),
        ]
        .concat();
        assert_eq!(
            decode_chunked(&mut dec, &input, &[3, 1, 2]),
            Ok(vec![
                text("t"),
                binary(b"b"),
                Event::Ping(Bytes::from_static(b"pi")),
                Event::Pong(Bytes::from_static(b"po")),
                Event::Close(Some(CloseFrame {
                    code: 1000,
                    reason: "x".into()
                })),
            ])
        );
    }
}
