// Laravel Echo (the `reverb` and the `pusher` broadcasters) against a running sockhub:
// `channel().listen`, `private().whisper / listenForWhisper`, `join().here / joining`.
// Prints `OK <broadcaster> <step>` lines or `FAIL …` and exits 1.
// Usage: node echo.mjs HOST PORT APP_ID KEY SECRET
import Echo from 'laravel-echo';
import Pusher from 'pusher-js';
import PusherServer from 'pusher';

const [host, port, appId, key, secret] = process.argv.slice(2);
setTimeout(() => fail('all', 'timed out after 30 s'), 30_000).unref();
const server = new PusherServer({ appId, key, secret, host, port, useTLS: false });

function fail(step, why) {
  console.log(`FAIL ${step}: ${why}`);
  process.exit(1);
}
function within(step, ms, promise) {
  return Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`no result within ${ms} ms`)), ms)),
  ]).catch((e) => fail(step, e.message));
}

// Authorizes like a Laravel backend would (here in-process, with the server SDK).
function echo(broadcaster, user) {
  return new Echo({
    broadcaster,
    Pusher,
    key,
    cluster: 'mt1',
    wsHost: host,
    wsPort: Number(port),
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    authorizer: (channel) => ({
      authorize: (socketId, callback) => {
        const presence = channel.name.startsWith('presence-')
          ? { user_id: user, user_info: { name: user } }
          : undefined;
        callback(null, server.authorizeChannel(socketId, channel.name, presence));
      },
    }),
  });
}

for (const broadcaster of ['reverb', 'pusher']) {
  const a = echo(broadcaster, 'ann');
  const b = echo(broadcaster, 'ben');
  const step = (s) => `${broadcaster} ${s}`;

  // channel().listen: Echo prefixes event names with the App\Events namespace unless they
  // start with a dot.
  const orders = a.channel(`orders-${broadcaster}`);
  const heard = new Promise((r) => orders.listen('.shipped', r));
  await within(step('channel'), 5000, new Promise((r) => orders.subscribed(r)));
  await server.trigger(`orders-${broadcaster}`, 'shipped', { id: 7 });
  const order = await within(step('channel'), 5000, heard);
  if (order.id !== 7) fail(step('channel'), JSON.stringify(order));
  console.log(`OK ${step('channel')}`);

  // join().here / joining.
  const here = new Promise((r) => a.join(`room-${broadcaster}`).here(r));
  const first = await within(step('here'), 5000, here);
  if (first.length !== 1 || first[0].name !== 'ann') fail(step('here'), JSON.stringify(first));
  const joining = new Promise((r) => a.join(`room-${broadcaster}`).joining(r));
  const bHere = await within(step('here'), 5000, new Promise((r) => b.join(`room-${broadcaster}`).here(r)));
  if (bHere.length !== 2) fail(step('here'), JSON.stringify(bHere));
  const joined = await within(step('joining'), 5000, joining);
  if (joined.name !== 'ben') fail(step('joining'), JSON.stringify(joined));
  console.log(`OK ${step('join here joining')}`);

  // private().whisper → listenForWhisper (a client event).
  const aChat = a.private(`chat-${broadcaster}`);
  const whispered = new Promise((r) => aChat.listenForWhisper('typing', r));
  const bChat = b.private(`chat-${broadcaster}`);
  await within(
    step('whisper'),
    5000,
    Promise.all([new Promise((r) => aChat.subscribed(r)), new Promise((r) => bChat.subscribed(r))]),
  );
  bChat.whisper('typing', { who: 'ben' });
  const w = await within(step('whisper'), 5000, whispered);
  if (w.who !== 'ben') fail(step('whisper'), JSON.stringify(w));
  console.log(`OK ${step('private whisper')}`);

  a.disconnect();
  b.disconnect();
}
console.log('DONE');
process.exit(0);
