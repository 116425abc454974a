// Pure parts of the hostile-input defences: nesting depth found without recursion, deep frames refused before
// JSON.parse with their id, stored frames spliced into replies untouched, close codes folded into fixed labels.
import {
  closeBucket,
  FrameError,
  jsonDepth,
  okReplyWithFrames,
  parseCommand,
  valueDepth,
} from '../../protocol';

const limits = { maxMessageBytes: 1_000_000, maxRoomNameLength: 16, maxBodyDepth: 4 };
const nest = (d: number, inner = '1') => `${'['.repeat(d)}${inner}${']'.repeat(d)}`;
const refusal = (text: string) => {
  try {
    parseCommand(text, limits);
    return 'ok';
  } catch (err) {
    return `${(err as FrameError).id}:${(err as FrameError).code}:${(err as Error).message}`;
  }
};

test('jsonDepth counts arrays and objects outside strings, in one pass, stopping past the limit', () => {
  expect(jsonDepth('1', 10)).toBe(0);
  expect(jsonDepth('{"a":[1,{"b":[]}]}', 10)).toBe(4);
  expect(jsonDepth('"[[[[[[" ', 10)).toBe(0);
  expect(jsonDepth('["\\"[[[[", {"k\\\\":[[]]}]', 10)).toBe(4);
  // A million levels: no stack involved, and it stops counting at limit + 1.
  expect(jsonDepth(nest(1_000_000), 32)).toBe(33);
});

test('valueDepth walks a parsed value without recursion', () => {
  expect(valueDepth('x', 5)).toBe(0);
  expect(valueDepth({ a: [1, { b: [] }] }, 10)).toBe(4);
  let deep: unknown = 1;
  for (let i = 0; i < 200_000; i++) deep = [deep];
  expect(valueDepth(deep, 32)).toBe(33);
});

test('a body deeper than the limit is bad_request with its id; at the limit it is accepted', () => {
  expect(refusal(`{"id":7,"type":"publish","room":"r","body":${nest(4)}}`)).toBe('ok');
  expect(refusal(`{"id":7,"type":"publish","room":"r","body":${nest(5)}}`)).toBe(
    '7:bad_request:body is nested deeper than 4 levels',
  );
  expect(refusal(`{"type":"dm","to":"x","body":${nest(100_000)},"id":12}`)).toMatch(/^12:bad_request:/);
  // The id is read only at the top level; a nested "id" is not the frame's.
  expect(refusal(`{"type":"publish","body":{"id":3,"x":${nest(10)}}}`)).toMatch(/^null:bad_request:/);
  // Brackets inside strings are text, not nesting.
  expect(refusal(`{"id":8,"type":"publish","room":"r","body":"${'['.repeat(1000)}"}`)).toBe('ok');
});

test('stored frames are spliced into a reply as stored', () => {
  const deep = `{"type":"message","offset":1,"body":${nest(50_000)}}`;
  const reply = okReplyWithFrames(3, { room: 'r', offset: 2, epoch: 'e' }, 'messages', [
    deep,
    '{"offset":2}',
  ]);
  expect(reply.startsWith('{"re":3,"ok":true,"room":"r","offset":2,"epoch":"e","messages":[{"type"')).toBe(
    true,
  );
  expect(reply.endsWith(`${']'.repeat(50_000)}},{"offset":2}]}`)).toBe(true);
  expect(JSON.parse(okReplyWithFrames(1, { room: 'r' }, 'messages', []))).toEqual({
    re: 1,
    ok: true,
    room: 'r',
    messages: [],
  });
});

test('close codes fold into a fixed set of metric labels', () => {
  const labels = new Set<string>();
  for (let code = 0; code < 5000; code++) labels.add(closeBucket(code));
  expect([...labels].sort()).toEqual(
    [
      'error',
      'expired',
      'going_away',
      'kicked',
      'normal',
      'other',
      'policy',
      'revoked',
      'slow',
      'too_many',
    ].sort(),
  );
  expect(closeBucket(1000)).toBe('normal');
  expect(closeBucket(1001)).toBe('going_away');
  expect(closeBucket(4008)).toBe('slow');
  expect(closeBucket(4999)).toBe('other');
});
