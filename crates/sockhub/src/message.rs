//! Messages, channel names and session ids: the values every other module passes around.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

/// A channel's name. Shared (`Arc<str>`) because the hub, every subscriber's session and every
/// publication refer to the same name; cloning it never copies the text.
pub type ChannelName = Arc<str>;

/// The longest channel name accepted, in bytes (the Pusher protocol's limit, so names stay portable).
pub const MAX_CHANNEL_NAME_LEN: usize = 164;

/// Checks a channel name: 1 to [`MAX_CHANNEL_NAME_LEN`] bytes, no whitespace or control characters.
///
/// # Errors
/// A one-line reason suitable for an error event or HTTP 400 body.
///
/// ```
/// assert!(sockhub::validate_channel_name("lobby").is_ok());
/// assert!(sockhub::validate_channel_name("has space").is_err());
/// ```
pub fn validate_channel_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("channel name is empty".into());
    }
    if name.len() > MAX_CHANNEL_NAME_LEN {
        return Err(format!(
            "channel name is {} bytes, longer than {MAX_CHANNEL_NAME_LEN}",
            name.len()
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("channel name contains {c:?}"));
    }
    Ok(())
}

/// Whether a message is text (valid UTF-8, sent as a WebSocket text frame) or binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// UTF-8 text.
    Text,
    /// Arbitrary bytes.
    Binary,
}

/// One message: a payload and whether it is text. Cheap to clone (the payload is shared [`Bytes`]).
///
/// ```
/// use sockhub::Message;
/// let m = Message::text("hello");
/// assert_eq!(m.as_str(), Some("hello"));
/// assert!(Message::binary(vec![0xff]).as_str().is_none());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// Text or binary; text payloads are always valid UTF-8 (an invariant the constructors keep).
    kind: MessageKind,
    /// The bytes, shared with every subscriber that receives them.
    payload: Bytes,
    /// Event name and sending user, for protocols that carry them (Pusher); `None` for plain
    /// messages. One pointer, so a plain message stays small (it is queued per read and held
    /// by every publication).
    meta: Option<std::sync::Arc<Meta>>,
}

/// What some protocols add to a message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Meta {
    /// An event name (Pusher's `event`, json's `event`).
    event: Option<std::sync::Arc<str>>,
    /// The user who sent it, when the protocol says so (Pusher's `user_id` on client events
    /// in presence channels).
    user: Option<std::sync::Arc<str>>,
}

impl Message {
    /// A text message.
    pub fn text(text: impl Into<String>) -> Self {
        Message {
            kind: MessageKind::Text,
            payload: Bytes::from(text.into()),
            meta: None,
        }
    }

    /// A binary message.
    pub fn binary(payload: impl Into<Bytes>) -> Self {
        Message {
            kind: MessageKind::Binary,
            payload: payload.into(),
            meta: None,
        }
    }

    /// Text if the bytes are valid UTF-8, binary otherwise: how TCP lines and UDP datagrams,
    /// which carry no type of their own, are classified.
    pub fn from_bytes(payload: Bytes) -> Self {
        let kind = if std::str::from_utf8(&payload).is_ok() {
            MessageKind::Text
        } else {
            MessageKind::Binary
        };
        Message {
            kind,
            payload,
            meta: None,
        }
    }

    /// A text message from bytes already known to be valid UTF-8 (checked by a codec).
    ///
    /// # Panics
    /// In debug builds, if `payload` is not UTF-8.
    pub(crate) fn text_unchecked(payload: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&payload).is_ok());
        Message {
            kind: MessageKind::Text,
            payload,
            meta: None,
        }
    }

    /// Text or binary.
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// Is this a text message?
    pub fn is_text(&self) -> bool {
        self.kind == MessageKind::Text
    }

    /// The payload bytes.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The payload as text, if this is a text message.
    pub fn as_str(&self) -> Option<&str> {
        match self.kind {
            // The constructors guarantee text payloads are UTF-8, so this never fails.
            MessageKind::Text => std::str::from_utf8(&self.payload).ok(),
            MessageKind::Binary => None,
        }
    }

    /// The same message with an event name (what Pusher clients see as `event`; json clients
    /// get an `event` field; raw clients only see the payload).
    pub fn with_event(mut self, event: impl Into<std::sync::Arc<str>>) -> Self {
        std::sync::Arc::make_mut(self.meta.get_or_insert_with(Default::default)).event =
            Some(event.into());
        self
    }

    /// The event name, if any.
    pub fn event(&self) -> Option<&str> {
        self.meta.as_ref()?.event.as_deref()
    }

    /// The same message with the sending user's id.
    pub fn with_user(mut self, user: impl Into<std::sync::Arc<str>>) -> Self {
        std::sync::Arc::make_mut(self.meta.get_or_insert_with(Default::default)).user =
            Some(user.into());
        self
    }

    /// The sending user's id, if the protocol carried one.
    pub fn user(&self) -> Option<&str> {
        self.meta.as_ref()?.user.as_deref()
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.payload.len()
    }

    /// Is the payload empty?
    pub fn is_empty(&self) -> bool {
        self.payload.is_empty()
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(s) => write!(f, "Text({s:?})"),
            None => write!(f, "Binary({} bytes)", self.payload.len()),
        }
    }
}

impl From<&str> for Message {
    fn from(s: &str) -> Self {
        Message::text(s)
    }
}

impl From<String> for Message {
    fn from(s: String) -> Self {
        Message::text(s)
    }
}

/// A session's id, unique within one server process (a counter, never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The transport a session arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// WebSocket (RFC 6455) over the HTTP listener.
    WebSocket,
    /// Raw TCP with line or length-prefixed framing.
    Tcp,
    /// UDP datagrams; a peer address is a session.
    Udp,
}

impl Transport {
    /// Lower-case name used in logs and metrics: `ws`, `tcp`, `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::WebSocket => "ws",
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
