// The Redis key layout is unambiguous and keeps every key of a stream in the stream's hash slot, whatever the
// user id, room name or idempotency key contains.
import fc from 'fast-check';
import { Keys, part } from '../../services/gateway/src/engine/keys';
import { keySlot } from '../../services/gateway/src/engine/redis-connections';

const keys = new Keys('rc');
const hostile = fc.oneof(
  fc.string({ unit: fc.constantFrom(':', '{', '}', '|', '%', 'a', 'b', '3', 'A') }),
  fc.string({ unit: 'binary' }),
);

test('part() is injective and leaves no separator behind', () => {
  fc.assert(
    fc.property(hostile, hostile, (a, b) => {
      expect(part(a)).not.toMatch(/[:{}|]/);
      // Compared as the UTF-8 bytes Redis stores (lone surrogates would all become U+FFFD).
      if (a !== b) expect(Buffer.from(part(a)).equals(Buffer.from(part(b)))).toBe(false);
    }),
    { numRuns: 2000 },
  );
  expect(part('plain-name_1.x@y')).toBe('plain-name_1.x@y');
  expect(part('\ud800')).not.toBe(part('\udc00'));
  expect(part('👩‍👩‍👧')).toBe('👩‍👩‍👧');
});

test('two different (sender, key) pairs never share a dedup key', () => {
  const ref = { kind: 'inbox' as const, name: 'to' };
  fc.assert(
    fc.property(hostile, hostile, hostile, hostile, (s1, k1, s2, k2) => {
      if (s1 === s2 && k1 === k2) return;
      expect(keys.dedup(ref, s1, k1)).not.toBe(keys.dedup(ref, s2, k2));
    }),
    { numRuns: 2000 },
  );
  // The cases that collided when the parts were joined with ':' as they were.
  expect(keys.dedup(ref, 'x:y', 'z')).not.toBe(keys.dedup(ref, 'x', 'y:z'));
  expect(keys.dedup(ref, '', 'm1')).not.toBe(keys.dedup(ref, ':', 'm1'));
});

test('every key of a user or room lies in the hash slot of its channel, and different names have different keys', () => {
  fc.assert(
    fc.property(hostile, hostile, (user, other) => {
      const inbox = { kind: 'inbox' as const, name: user };
      const slot = keySlot(keys.channel(inbox));
      for (const k of [
        keys.meta(inbox),
        keys.history(inbox),
        keys.dedup(inbox, other, other),
        keys.connections(user),
        keys.sessions(user),
        keys.rate(user),
      ])
        expect(keySlot(k)).toBe(slot);
      const room = { kind: 'room' as const, name: user };
      for (const k of [keys.presence(user), keys.presenceUsers(user), keys.history(room)])
        expect(keySlot(k)).toBe(keySlot(keys.channel(room)));
      if (user !== other) {
        expect(keys.channel(inbox)).not.toBe(keys.channel({ kind: 'inbox', name: other }));
        expect(keys.meta(inbox)).not.toBe(keys.history({ kind: 'inbox', name: other }));
      }
    }),
    { numRuns: 2000 },
  );
});
