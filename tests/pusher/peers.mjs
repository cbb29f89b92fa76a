// Real Pusher peers against a running sockhub: pusher-js clients (public, private and presence
// channels through an auth endpoint, client events) and the `pusher` server SDK (trigger,
// batch, channel info, users, a wrong secret). Prints one `OK <step>` line per step, or
// `FAIL <step>: <why>` and exits 1. Usage: node peers.mjs HOST PORT APP_ID KEY SECRET
import http from 'node:http';
import Pusher from 'pusher-js';
import PusherServer from 'pusher';

const [host, port, appId, key, secret] = process.argv.slice(2);
const deadline = setTimeout(() => fail('everything', 'timed out after 30 s'), 30_000);

function fail(step, why) {
  console.log(`FAIL ${step}: ${why}`);
  process.exit(1);
}
function ok(step) {
  console.log(`OK ${step}`);
}
function within(step, ms, promise) {
  return Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`no result within ${ms} ms`)), ms)),
  ]).catch((e) => fail(step, e.message));
}

// With an encryption master key the SDK encrypts events on private-encrypted- channels and
// gives each subscriber the channel's shared secret through the auth endpoint.
const encryptionMasterKeyBase64 = Buffer.alloc(32, 7).toString('base64');
const server = new PusherServer({
  appId, key, secret, host, port, useTLS: false, encryptionMasterKeyBase64,
});

// The backend's auth endpoint, as an app would have it: authorizes private and presence
// channels for the user named in the request.
const auth = http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    const p = new URLSearchParams(body);
    const user = p.get('user');
    const channel = p.get('channel_name');
    const presence = channel.startsWith('presence-')
      ? { user_id: user, user_info: { name: user.toUpperCase() } }
      : undefined;
    const answer = server.authorizeChannel(p.get('socket_id'), channel, presence);
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(answer));
  });
});
await new Promise((r) => auth.listen(0, '127.0.0.1', r));
const authUrl = `http://127.0.0.1:${auth.address().port}/auth`;

function client(user) {
  return new Pusher(key, {
    cluster: 'mt1',
    wsHost: host,
    wsPort: Number(port),
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    channelAuthorization: {
      customHandler: async ({ socketId, channelName }, callback) => {
        try {
          const r = await fetch(authUrl, {
            method: 'POST',
            body: new URLSearchParams({ socket_id: socketId, channel_name: channelName, user }),
          });
          callback(null, await r.json());
        } catch (e) {
          callback(e, null);
        }
      },
    },
  });
}

function subscribed(channel) {
  return new Promise((resolve, reject) => {
    channel.bind('pusher:subscription_succeeded', resolve);
    channel.bind('pusher:subscription_error', (e) => reject(new Error(JSON.stringify(e))));
  });
}
function next(channel, event) {
  return new Promise((resolve) => channel.bind(event, resolve));
}
function connected(p) {
  return new Promise((resolve) => p.connection.bind('connected', resolve));
}

const alice = client('alice');
const bob = client('bob');
await within('connect', 5000, Promise.all([connected(alice), connected(bob)]));
if (!/^\d+\.\d+$/.test(alice.connection.socket_id)) fail('connect', `socket id ${alice.connection.socket_id}`);
ok('connect');

// Public channel + server SDK trigger.
const news = alice.subscribe('news');
await within('public subscribe', 5000, subscribed(news));
const update = next(news, 'update');
await server.trigger('news', 'update', { n: 1 });
const got = await within('trigger', 5000, update);
if (got.n !== 1) fail('trigger', JSON.stringify(got));
ok('public channel + trigger');

// Subscription counts (the app sets subscription_count): pusher-js turns sockhub's
// pusher_internal:subscription_count into pusher:subscription_count and keeps the number.
const counted = new Promise((resolve) =>
  news.bind('pusher:subscription_count', (d) => d.subscription_count === 2 && resolve(d)));
const bobNews = bob.subscribe('news');
await within('subscription count', 5000, Promise.all([subscribed(bobNews), counted]));
if (news.subscriptionCount !== 2) fail('subscription count', `${news.subscriptionCount}`);
ok('subscription count');

// Private channel through the auth endpoint + a client event, not echoed to its sender.
const aChat = alice.subscribe('private-chat');
const bChat = bob.subscribe('private-chat');
await within('private subscribe', 5000, Promise.all([subscribed(aChat), subscribed(bChat)]));
let echoed = false;
bChat.bind('client-typing', () => (echoed = true));
const typing = next(aChat, 'client-typing');
bChat.trigger('client-typing', { who: 'bob' });
const t = await within('client event', 5000, typing);
if (t.who !== 'bob') fail('client event', JSON.stringify(t));
ok('private channel + client event');

// End-to-end encrypted channel: sockhub relays the SDK's ciphertext untouched and pusher-js
// decrypts it with the shared secret from the auth endpoint.
const vault = alice.subscribe('private-encrypted-vault');
await within('encrypted subscribe', 5000, subscribed(vault));
const sealed = next(vault, 'secret');
await server.trigger('private-encrypted-vault', 'secret', { code: 42 });
const opened = await within('encrypted event', 5000, sealed);
if (opened.code !== 42) fail('encrypted channel', JSON.stringify(opened));
ok('encrypted channel');

// Presence: both see each other; alice sees bob arrive.
const aRoom = alice.subscribe('presence-room');
const aOk = await within('presence subscribe', 5000, subscribed(aRoom));
if (aOk.count !== 1 || aOk.me.id !== 'alice') fail('presence subscribe', JSON.stringify(aOk));
const added = next(aRoom, 'pusher:member_added');
const bRoom = bob.subscribe('presence-room');
const bOk = await within('presence subscribe', 5000, subscribed(bRoom));
const member = await within('member_added', 5000, added);
if (bOk.count !== 2 || member.id !== 'bob' || member.info.name !== 'BOB') {
  fail('presence', JSON.stringify({ count: bOk.count, member }));
}
ok('presence channel + member_added');

// Server SDK: channel info, users, batch.
const info = await (await server.get({ path: '/channels/presence-room', params: { info: 'user_count,subscription_count' } })).json();
if (info.occupied !== true || info.user_count !== 2 || info.subscription_count !== 2) fail('channel info', JSON.stringify(info));
const list = await (await server.get({ path: '/channels', params: { filter_by_prefix: 'presence-', info: 'user_count' } })).json();
if (list.channels['presence-room']?.user_count !== 2) fail('channels', JSON.stringify(list));
const users = await (await server.get({ path: '/channels/presence-room/users' })).json();
const ids = users.users.map((u) => u.id).sort().join(',');
if (ids !== 'alice,bob') fail('users', JSON.stringify(users));
ok('channel info + channels + users');

const b1 = next(news, 'batch-1');
const b2 = next(aChat, 'batch-2');
await server.triggerBatch([
  { channel: 'news', name: 'batch-1', data: { i: 1 } },
  { channel: 'private-chat', name: 'batch-2', data: { i: 2 } },
]);
const [r1, r2] = await within('batch', 5000, Promise.all([b1, b2]));
if (r1.i !== 1 || r2.i !== 2) fail('batch', JSON.stringify([r1, r2]));
ok('batch trigger');

// A wrong secret is refused with 401.
const wrong = new PusherServer({ appId, key, secret: 'not-the-secret', host, port, useTLS: false });
try {
  await wrong.trigger('news', 'x', {});
  fail('wrong secret', 'accepted');
} catch (e) {
  if (e.status !== 401) fail('wrong secret', `status ${e.status}`);
}
ok('wrong secret gets 401');

// member_removed when bob leaves, and the client event was never echoed to bob.
const removed = next(aRoom, 'pusher:member_removed');
bob.disconnect();
const gone = await within('member_removed', 5000, removed);
if (gone.id !== 'bob') fail('member_removed', JSON.stringify(gone));
if (echoed) fail('client event', 'echoed to its sender');
ok('member_removed');

alice.disconnect();
auth.close();
clearTimeout(deadline);
console.log('DONE');
process.exit(0);
