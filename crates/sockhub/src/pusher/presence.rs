//! Presence channels, on one node or many.
//!
//! Each node owns the members whose sockets it holds and announces them in its heartbeats
//! (see [`crate::relay`]); nobody else writes them. A channel's members are this node's plus
//! every live peer's, and each node tells *its own* subscribers about changes by comparing
//! that union with what it told them last (`shown`):
//!
//! - a user is added once, however many sockets or nodes they join from, and removed once
//!   when their last socket anywhere leaves;
//! - a node that dies stops heartbeating, and three seconds later its members are removed
//!   everywhere, with `member_removed` — nothing else would ever say they left;
//! - nobody relays member events, so nothing is announced twice when a change reaches a node
//!   both as an event and in a heartbeat.
//!
//! A node that changes its members sends a heartbeat at once (`Broker::announce`), so a
//! change on one node reaches the subscribers of another within a broker round trip.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde_json::{json, Value};

use crate::broker::{LocalDelivery, PresenceList};
use crate::hub::HubInner;
use crate::message::{ChannelName, Message, SessionId};

/// Members as announced: user id → user info.
type Members = BTreeMap<String, Value>;

#[derive(Default)]
struct State {
    /// Channel → user id → (user info, this node's sockets of that user in it).
    local: HashMap<String, HashMap<String, (Value, usize)>>,
    /// Channel → the members this node's subscribers know of, everywhere (kept for channels
    /// with a local member; every local presence subscriber is one).
    shown: HashMap<String, Members>,
}

/// Presence members of every channel.
#[derive(Default)]
pub(crate) struct Presence {
    state: Mutex<State>,
}

/// What a join or leave changed.
pub(crate) struct Change {
    /// The user appeared or disappeared cluster-wide (for the `member_added` /
    /// `member_removed` webhooks, which the node that made the change sends).
    pub user_changed: bool,
    /// For a join: `subscription_succeeded`'s data (`{"presence":{ids,hash,count}}`).
    pub snapshot: Value,
}

impl Presence {
    /// A socket (`session`) of `user` joined `channel`. Other local subscribers hear about
    /// every change this makes to the members they know; the joining socket hears nothing and
    /// gets the snapshot instead.
    pub(crate) fn join(
        &self,
        hub: &HubInner,
        channel: &str,
        user: &str,
        info: Value,
        session: SessionId,
    ) -> Change {
        let mut state = self.lock();
        let users = state.local.entry(channel.to_string()).or_default();
        let entry = users.entry(user.to_string()).or_insert((info, 0));
        entry.1 += 1;
        let first_here = entry.1 == 1;
        let remote = remote_members(hub, Some(channel)).remove(channel);
        let remote = remote.unwrap_or_default();
        sync(&mut state, hub, channel, &remote, Some(session));
        let snapshot = snapshot(state.shown.get(channel));
        drop(state);
        if first_here {
            hub.broker().announce();
        }
        Change {
            user_changed: first_here && !remote.contains_key(user),
            snapshot,
        }
    }

    /// A socket of `user` left `channel` (unsubscribed or closed).
    pub(crate) fn leave(&self, hub: &HubInner, channel: &str, user: &str) -> Change {
        let mut state = self.lock();
        let Some(users) = state.local.get_mut(channel) else {
            return Change {
                user_changed: false,
                snapshot: Value::Null,
            };
        };
        let last_here = match users.get_mut(user) {
            Some((_, n)) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                users.remove(user);
                true
            }
            None => false,
        };
        if users.is_empty() {
            state.local.remove(channel);
        }
        let remote = remote_members(hub, Some(channel)).remove(channel);
        let remote = remote.unwrap_or_default();
        sync(&mut state, hub, channel, &remote, None);
        drop(state);
        if last_here {
            hub.broker().announce();
        }
        Change {
            user_changed: last_here && !remote.contains_key(user),
            snapshot: Value::Null,
        }
    }

    /// Other nodes' members may have changed: bring every channel this node's subscribers
    /// follow up to date.
    pub(crate) fn peers_changed(&self, hub: &HubInner) {
        let mut state = self.lock();
        if state.shown.is_empty() {
            return;
        }
        let remote = remote_members(hub, None);
        let channels: Vec<String> = state.shown.keys().cloned().collect();
        let none = Members::new();
        for channel in channels {
            let theirs = remote.get(&channel).unwrap_or(&none);
            sync(&mut state, hub, &channel, theirs, None);
        }
    }

    /// `subscription_succeeded`'s data for `channel` as things stand.
    pub(crate) fn snapshot(&self, hub: &HubInner, channel: &str) -> Value {
        let members: Members = self.members(hub, channel).into_iter().collect();
        snapshot(Some(&members))
    }

    /// A channel's members on every node (user id, user info), by user id.
    pub(crate) fn members(&self, hub: &HubInner, channel: &str) -> Vec<(String, Value)> {
        let mut all = remote_members(hub, Some(channel))
            .remove(channel)
            .unwrap_or_default();
        let state = self.lock();
        if let Some(users) = state.local.get(channel) {
            for (id, (info, _)) in users {
                all.entry(id.clone()).or_insert_with(|| info.clone());
            }
        }
        all.into_iter().collect()
    }

    /// This node's members, for its heartbeats.
    pub(crate) fn local_list(&self) -> PresenceList {
        let state = self.lock();
        let mut list: PresenceList = state
            .local
            .iter()
            .map(|(channel, users)| {
                let mut members: Vec<(String, Value)> = users
                    .iter()
                    .map(|(id, (info, _))| (id.clone(), info.clone()))
                    .collect();
                members.sort_by(|a, b| a.0.cmp(&b.0));
                (channel.clone(), members)
            })
            .collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Members other live nodes announced: of one channel, or of every channel.
fn remote_members(hub: &HubInner, only: Option<&str>) -> HashMap<String, Members> {
    let mut all: HashMap<String, Members> = HashMap::new();
    let Some(cluster) = hub.broker().cluster() else {
        return all;
    };
    for peer in cluster.peers {
        for (channel, members) in peer.presence {
            if only.is_some_and(|c| c != channel) {
                continue;
            }
            let known = all.entry(channel).or_default();
            for (id, info) in members {
                known.entry(id).or_insert(info);
            }
        }
    }
    all
}

/// Compares `channel`'s members now (local ∪ `remote`) with what local subscribers were told,
/// tells them the difference (except `except`), and remembers the new list. Runs under the
/// presence lock, so subscribers hear changes in the order they were made.
fn sync(
    state: &mut State,
    hub: &HubInner,
    channel: &str,
    remote: &Members,
    except: Option<SessionId>,
) {
    let Some(local) = state.local.get(channel) else {
        // No local member, so no local presence subscriber left to tell.
        state.shown.remove(channel);
        return;
    };
    let mut now = remote.clone();
    for (id, (info, _)) in local {
        now.insert(id.clone(), info.clone());
    }
    let before = state.shown.remove(channel).unwrap_or_default();
    let added: Vec<String> = now
        .keys()
        .filter(|id| !before.contains_key(*id))
        .cloned()
        .collect();
    let removed: Vec<String> = before
        .keys()
        .filter(|id| !now.contains_key(*id))
        .cloned()
        .collect();
    let name = ChannelName::from(channel);
    for id in &removed {
        let data = json!({ "user_id": id }).to_string();
        let m = Message::text(data).with_event("pusher_internal:member_removed");
        hub.deliver_local(name.clone(), m, None, except);
    }
    for id in &added {
        let data = json!({ "user_id": id, "user_info": now[id] }).to_string();
        let m = Message::text(data).with_event("pusher_internal:member_added");
        hub.deliver_local(name.clone(), m, None, except);
    }
    state.shown.insert(channel.to_string(), now);
}

/// `subscription_succeeded`'s data for a presence channel.
fn snapshot(members: Option<&Members>) -> Value {
    let none = Members::new();
    let members = members.unwrap_or(&none);
    json!({
        "presence": {
            "ids": members.keys().collect::<Vec<_>>(),
            "hash": members,
            "count": members.len(),
        }
    })
}
