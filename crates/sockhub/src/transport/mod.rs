//! Transports turn sockets into session events and write outboxes back to sockets. They know
//! sessions and protocols, never the broker.

pub(crate) mod stream;
pub(crate) mod tcp;
pub(crate) mod udp;
pub(crate) mod ws;

use base64::Engine as _;

use crate::config::Protocol;
use crate::handler::{guarded, Incoming};
use crate::message::{ChannelName, Message};
use crate::protocol::{encode_event, parse_command, Command, Event, Framing};
use crate::session::Session;
use crate::webhook::Reply;

/// Routes one message a client sent: raw → the handler; json → executes the command (publish
/// goes to the handler with its target channel). Replies go to the session's outbox.
pub(crate) fn dispatch(session: &Session, message: Message) {
    let handler = &session.server().handler;
    match session.protocol() {
        Protocol::Raw => {
            report_message(session, None, &message);
            guarded("on_message", session, || {
                handler.on_message(
                    session,
                    Incoming {
                        message,
                        channel: None,
                    },
                )
            });
        }
        Protocol::Pusher => crate::pusher::dispatch(session, message),
        Protocol::Json => {
            let framing = session.format().framing;
            // Over UDP the source address is unverified: a reply may be at most 3x the datagram
            // that caused it (no amplification); a larger one is dropped.
            let budget = match framing {
                Framing::Datagram => message.len().saturating_mul(3),
                _ => usize::MAX,
            };
            let reply = |ev: Event<'_>| {
                let frame = encode_event(framing, &ev);
                if frame.len() <= budget {
                    session.send_control(frame);
                }
            };
            let cmd = match parse_command(message.payload()) {
                Ok(c) => c,
                Err(e) => {
                    reply(Event::Error {
                        code: "bad_request",
                        message: e,
                    });
                    return;
                }
            };
            match cmd {
                Command::Subscribe { channel } if !session.may_use(&channel) => {
                    reply(Event::Error {
                        code: "forbidden",
                        message: format!("channel {channel:?} is not allowed for this client"),
                    })
                }
                Command::Subscribe { channel } => match session.subscribe(&channel) {
                    Ok(()) => reply(Event::Subscribed { channel: &channel }),
                    Err(e) => reply(Event::Error {
                        code: e.code(),
                        message: e.to_string(),
                    }),
                },
                Command::Unsubscribe { channel } => {
                    session.unsubscribe(&channel);
                    reply(Event::Unsubscribed { channel: &channel })
                }
                Command::Ping { id } => reply(Event::Pong { id }),
                Command::Publish {
                    channel,
                    data,
                    data_base64,
                } => {
                    let message = match (data, data_base64) {
                        (Some(text), None) => Message::text(text),
                        (None, Some(b64)) => {
                            match base64::engine::general_purpose::STANDARD.decode(b64) {
                                Ok(bytes) => Message::binary(bytes),
                                Err(e) => {
                                    reply(Event::Error {
                                        code: "bad_request",
                                        message: format!("data_base64: {e}"),
                                    });
                                    return;
                                }
                            }
                        }
                        _ => {
                            reply(Event::Error {
                                code: "bad_request",
                                message: "publish needs exactly one of data, data_base64".into(),
                            });
                            return;
                        }
                    };
                    if let Err(e) = crate::message::validate_channel_name(&channel) {
                        reply(Event::Error {
                            code: "bad_channel",
                            message: e,
                        });
                        return;
                    }
                    if !session.may_use(&channel) {
                        reply(Event::Error {
                            code: "forbidden",
                            message: format!("channel {channel:?} is not allowed for this client"),
                        });
                        return;
                    }
                    report_message(session, Some(&channel), &message);
                    guarded("on_message", session, || {
                        handler.on_message(
                            session,
                            Incoming {
                                message,
                                channel: Some(ChannelName::from(channel)),
                            },
                        )
                    });
                }
            }
        }
    }
}

/// Tells the message webhook (if any) what a client sent, and acts on the backend's answer:
/// a reply to the sender, publishes to channels. Never waits: the request runs in its own task,
/// and when every webhook slot is busy the event is dropped and counted.
fn report_message(session: &Session, channel: Option<&str>, message: &Message) {
    let Some(webhooks) = &session.server().webhooks else {
        return;
    };
    let Some(request) = webhooks.message(&session.subject(), channel, message) else {
        return;
    };
    let session = session.clone();
    tokio::spawn(async move {
        let Some(answer) = request.await else {
            return;
        };
        if let Some(reply) = answer.reply {
            let out = match reply {
                Reply::Text(t) => Some(Message::text(t)),
                Reply::Message(m) => m.message(),
            };
            match out {
                Some(m) => {
                    let _ = session.send(m);
                }
                None => tracing::warn!("webhook reply needs exactly one of data, data_base64"),
            }
        }
        for p in answer.publish {
            match (p.channel.as_deref(), p.message()) {
                (Some(ch), Some(m)) if crate::message::validate_channel_name(ch).is_ok() => {
                    session.hub().publish(ch, m);
                }
                _ => tracing::warn!(
                    "webhook publish needs a valid channel and exactly one of data, data_base64"
                ),
            }
        }
    });
}
