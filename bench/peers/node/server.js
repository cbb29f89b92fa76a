// Minimal Node `ws` echo/broadcast server (peer for bench/peers/run).
// node server.js --port PORT --mode echo|broadcast   (WebSocket on any path of 127.0.0.1)
'use strict';
const { WebSocketServer, WebSocket } = require('ws');

let port = 9003;
let mode = 'echo';
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--port') port = Number(argv[++i]);
  else if (argv[i] === '--mode') mode = argv[++i];
  else { console.error(`unknown argument ${argv[i]}`); process.exit(2); }
}
if (mode !== 'echo' && mode !== 'broadcast') { console.error('--mode echo|broadcast'); process.exit(2); }

const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false, clientTracking: true });

wss.on('connection', (ws) => {
  if (mode === 'echo') {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  } else {
    ws.on('message', (data, isBinary) => {
      for (const other of wss.clients) {
        if (other !== ws && other.readyState === WebSocket.OPEN) other.send(data, { binary: isBinary });
      }
    });
  }
  ws.on('error', () => {});
});
