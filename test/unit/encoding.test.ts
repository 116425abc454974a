// The wire encodings' pure parts: negotiation, the JSON -> MessagePack conversion at egress (with the $bin rule),
// one conversion per bus message for all MessagePack subscribers, and the guarded MessagePack decode.
import { Packr, Unpackr } from 'msgpackr';
import {
  chooseEncoding,
  decodeMsgpack,
  DecodeError,
  jsonToMsgpack,
  Packed,
  Prepared,
  subprotocols,
} from '../../services/gateway/src/protocol/encoding';

const plain = new Unpackr({ useRecords: false, mapsAsObjects: true });
const packr = new Packr({ useRecords: false, moreTypes: false });

test('the first offered encoding wins; no encoding of ours means JSON with nothing echoed', () => {
  expect(
    chooseEncoding(subprotocols('relaychat.token.a.b.c, relaychat.v1.msgpack, relaychat.v1.json')),
  ).toEqual({
    encoding: 'msgpack',
    echo: 'relaychat.v1.msgpack',
  });
  expect(chooseEncoding(subprotocols('relaychat.v1.json,relaychat.v1.msgpack'))).toEqual({
    encoding: 'json',
    echo: 'relaychat.v1.json',
  });
  expect(chooseEncoding(subprotocols('relaychat.token.x, chat.v9'))).toEqual({ encoding: 'json', echo: '' });
  expect(chooseEncoding(subprotocols(''))).toEqual({ encoding: 'json', echo: '' });
});

test('a JSON frame converts to the same value in plain MessagePack, and $bin objects become bin', () => {
  const frame =
    '{"type":"message","offset":7,"body":{"a":[1,2.5,null,true,"é"],"img":{"$bin":"AAEC"},"x":{"$bin":"AA","y":1}}}';
  const value = plain.unpack(jsonToMsgpack(frame)) as { body: Record<string, unknown> };
  expect(value.body.a).toEqual([1, 2.5, null, true, 'é']);
  expect(Buffer.from(value.body.img as Uint8Array).equals(Buffer.from([0, 1, 2]))).toBe(true);
  expect(value.body.x).toEqual({ $bin: 'AA', y: 1 }); // not the marker: it has another key
  expect(plain.unpack(jsonToMsgpack(Buffer.from(frame)))).toEqual(value);
  // No msgpackr records or other extensions: the bytes hold no ext type codes (0xc7-0xc9, 0xd4-0xd8).
  const bytes = jsonToMsgpack('{"a":1,"b":{"a":1},"c":[{"a":1},{"a":2}]}');
  expect([...bytes].some((b) => (b >= 0xc7 && b <= 0xc9) || (b >= 0xd4 && b <= 0xd8))).toBe(false);
});

test('a prepared frame is converted once, however many MessagePack connections take it', () => {
  const p = new Prepared('{"type":"presence","room":"r","event":"join","user":"u"}');
  expect(p.for('json')).toBe(p.json);
  const first = p.for('msgpack');
  expect(first).toBeInstanceOf(Packed);
  for (let i = 0; i < 10; i++) expect(p.for('msgpack')).toBe(first);
  expect(p.size('msgpack')).toBe((first as Packed).bytes.length);
});

test('decode turns bin into the $bin marker and keeps plain values as JSON.parse would', () => {
  const v = decodeMsgpack(
    packr.pack({ id: 1, type: 'publish', room: 'r', body: { b: Buffer.from([255]), n: [1, 'x'] } }),
    8,
  );
  expect(v).toEqual({ id: 1, type: 'publish', room: 'r', body: { b: { $bin: '/w==' }, n: [1, 'x'] } });
});

test('decode refuses deep nesting by its own depth count, without recursion limits', () => {
  const nest = (n: number): unknown => (n === 0 ? 1 : [nest(n - 1)]);
  // maxDepth counts levels of objects and arrays: 8 nested arrays pass 8, a ninth is refused.
  expect(decodeMsgpack(packr.pack(nest(8)), 8)).toEqual(nest(8));
  expect(() => decodeMsgpack(packr.pack(nest(9)), 8)).toThrow('deeper than 8');
  const deep = Buffer.concat([Buffer.alloc(200_000, 0x91), Buffer.from([0xc0])]);
  expect(() => decodeMsgpack(deep, 64)).toThrow(DecodeError);
});

test('a key "__proto__" is an ordinary key, not the prototype', () => {
  const v = decodeMsgpack(Buffer.from('81a95f5f70726f746f5f5f81a16101', 'hex'), 8) as Record<string, unknown>;
  expect(Object.getPrototypeOf(v)).toBe(Object.prototype);
  expect(Object.keys(v)).toEqual(['__proto__']);
  expect(JSON.stringify(v)).toBe('{"__proto__":{"a":1}}');
});

test.each([
  ['an extension', 'd40500'],
  ['a timestamp', 'd6ff00000001'],
  ['undefined', 'd40000'],
  ['0xc1', 'c1'],
  ['NaN', 'cb7ff8000000000000'],
  ['trailing bytes', 'c001'],
  ['truncation', '92c0'],
  ['a msgpackr record', 'd4724092a26964a47479706501a470696e67'],
  ['an integer map key', '8101c0'],
  ['invalid UTF-8', 'a2c328'],
  ['a str length past the end', 'dbffffffff41'],
])('decode refuses %s with DecodeError', (_name, hex) => {
  expect(() => decodeMsgpack(Buffer.from(hex, 'hex'), 64)).toThrow(DecodeError);
});
