// Bad input on the HTTP API (malformed percent-encoding, wrong JSON types, wrong shapes) gets 400 with a JSON
// reason, never a 500, and the node keeps serving. Runs on the memory engine and on a real Redis.
import { startGateway, startRedis, type GatewayProc, type RedisProc } from '../helpers/harness';

const API_KEY = 'test-api-key-0123456789';
const auth = { authorization: `Bearer ${API_KEY}` };

let redis: RedisProc;
const gateways: Record<string, GatewayProc> = {};

beforeAll(async () => {
  redis = await startRedis();
  [gateways.memory, gateways.redis] = await Promise.all([
    startGateway({ API_KEY }),
    startGateway({ API_KEY, REDIS_URL: redis.url }),
  ]);
});
afterAll(async () => {
  await Promise.all(Object.values(gateways).map((g) => g.kill()));
  await redis?.stop();
});

type Case = [name: string, method: 'GET' | 'POST', path: string, body?: string];
const cases: Case[] = [
  ['a truncated percent-escape in the presence path', 'GET', '/api/presence/%E0%A4%A'],
  ['a lone % in the presence path', 'GET', '/api/presence/%'],
  ['a percent-escape that is not UTF-8', 'GET', '/api/presence/%FF%FE'],
  ['an invalid room name in the presence path', 'GET', '/api/presence/no%20spaces'],
  ['an empty presence path', 'GET', '/api/presence/'],
  ['publish with a body that is not JSON', 'POST', '/api/publish', '{"room":'],
  ['publish with a JSON array', 'POST', '/api/publish', '["room","body"]'],
  ['publish with a numeric room', 'POST', '/api/publish', '{"room":5,"body":1}'],
  ['publish with a numeric key', 'POST', '/api/publish', '{"room":"r","body":1,"key":7}'],
  ['publish with an object key', 'POST', '/api/publish', '{"room":"r","body":1,"key":{"a":1}}'],
  ['publish with an empty key', 'POST', '/api/publish', '{"room":"r","body":1,"key":""}'],
  ['publish with a numeric from', 'POST', '/api/publish', '{"room":"r","body":1,"from":9}'],
  ['publish with an empty from', 'POST', '/api/publish', '{"room":"r","body":1,"from":""}'],
  ['publish without a body', 'POST', '/api/publish', '{"room":"r"}'],
  ['publish to an invalid room', 'POST', '/api/publish', '{"room":"a b","body":1}'],
  ['disconnect with a numeric user', 'POST', '/api/disconnect', '{"user":1}'],
  ['disconnect with null', 'POST', '/api/disconnect', 'null'],
];

describe.each(['memory', 'redis'])('HTTP API on the %s engine', (engine) => {
  // One argument per case (an array shorter than the callback's parameters would make jest pass `done`).
  test.each(cases.map(([name, method, path, body]) => ({ name, method, path, body })))(
    '$name: 400 with a JSON reason',
    async ({ method, path, body }) => {
      const gw = gateways[engine]!;
      const res = await fetch(`${gw.url}${path}`, { method, body, headers: auth });
      const text = await res.text();
      expect(res.status).toBe(400);
      const reply = JSON.parse(text) as { error?: { code?: string; message?: string } };
      expect(reply.error?.code).toBe('bad_request');
      expect(typeof reply.error?.message).toBe('string');
      expect(reply.error!.message!.length).toBeGreaterThan(0);
      // The node still serves.
      expect((await fetch(`${gw.url}/healthz`)).status).toBe(200);
      const ok = await fetch(`${gw.url}/api/presence/fine`, { headers: auth });
      expect(ok.status).toBe(200);
    },
  );
});
