// A fleet HTTP handler in Node, its standard library only, for fleet's
// tests: the same event types and answers as handler.py.
'use strict';
const http = require('node:http');

const requests = new Map(); // ce-id -> [times in ms]

function answer(res, status, body = '', headers = {}) {
  res.writeHead(status, { ...headers, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function reply(res, body) {
  answer(res, 200, JSON.stringify(body), { 'Content-Type': 'application/json' });
}

function handle(req, res, data) {
  const id = req.headers['ce-id'];
  const type = req.headers['ce-type'];
  // Fleet-Key is percent-encoded, as the ce-* values are.
  const key = decodeURIComponent(req.headers['fleet-key']);
  const times = requests.get(id) || [];
  times.push(performance.now());
  requests.set(id, times);
  const n = times.length;
  switch (type) {
    case 'inventory.received': {
      const qty = JSON.parse(data).quantity;
      const seen = `inv:{${key}}:seen`;
      const effects = [{ op: 'HINCRBY', key: `inv:{${key}}`, field: 'on_hand', delta: qty }];
      for (const h of ['idempotency-key', 'fleet-fence', 'fleet-attempt', 'ce-source', 'content-type', 'authorization']) {
        effects.push({ op: 'HSET', key: seen, field: h, value: req.headers[h] || '' });
      }
      return reply(res, { effects, result: `received ${qty}` });
    }
    case 'inventory.rejected':
      return answer(res, 422, 'no such sku');
    case 'inventory.flaky':
      if (n === 1) return answer(res, 503, 'warming up', { 'Retry-After': '1' });
      return reply(res, { effects: [{ op: 'HSET', key: `inv:{${key}}:flaky`, field: 'gap_ms', value: String(Math.round(times[1] - times[0])) }] });
    case 'inventory.slow':
      return setTimeout(() => reply(res, { effects: [{ op: 'INCRBY', key: `inv:{${key}}:slow`, delta: 1 }] }), 1500);
    case 'inventory.stuck': {
      const done = () => reply(res, { effects: [{ op: 'INCRBY', key: `inv:{${key}}:stuck`, delta: 1 }] });
      return n === 1 ? setTimeout(done, 3000) : done();
    }
    case 'inventory.broken':
      return reply(res, { effects: [{ op: 'FLUSHALL', key: `inv:{${key}}` }] });
    default:
      return answer(res, 404, 'unknown type');
  }
}

const server = http.createServer((req, res) => {
  if (req.method === 'GET') {
    const id = new URL(req.url, 'http://x').searchParams.get('id');
    return answer(res, 200, String((requests.get(id) || []).length));
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => handle(req, res, Buffer.concat(chunks).toString()));
});
server.listen(0, '127.0.0.1', () => console.log(`listening on ${server.address().port}`));
