// The in-memory copy of the revocation denylist that every node keeps (both engines use it): checked on every
// upgrade and refresh without I/O. Entries are merged (the stricter one wins) and dropped once expired, so its
// size is bounded by what the store holds.
import { revokes, type Revocation, type TokenRef } from './engine';

export class Denylist {
  private readonly jtis = new Map<string, number>();
  private readonly users = new Map<string, { issuedBefore: number; expiresAt: number }>();

  get size(): number {
    return this.jtis.size + this.users.size;
  }

  /**
   * Merges r in. Returns the entry now held (r widened by what was there) when that revokes more than before,
   * or undefined when nothing changed (already held, or already expired).
   */
  add(r: Revocation, now = Date.now()): Revocation | undefined {
    if (r.expiresAt <= now) return undefined;
    if (r.kind === 'jti') {
      const prev = this.jtis.get(r.jti);
      if (prev !== undefined && prev >= r.expiresAt) return undefined;
      this.jtis.set(r.jti, r.expiresAt);
      return r;
    }
    const prev = this.users.get(r.user);
    if (prev && prev.issuedBefore >= r.issuedBefore && prev.expiresAt >= r.expiresAt) return undefined;
    const entry = {
      issuedBefore: Math.max(r.issuedBefore, prev?.issuedBefore ?? 0),
      expiresAt: Math.max(r.expiresAt, prev?.expiresAt ?? 0),
    };
    this.users.set(r.user, entry);
    return { kind: 'user', user: r.user, ...entry };
  }

  has(t: TokenRef, now = Date.now()): boolean {
    if (t.jti !== undefined) {
      const at = this.jtis.get(t.jti);
      if (at !== undefined && at > now) return true;
    }
    const u = this.users.get(t.user);
    return u !== undefined && u.expiresAt > now && revokes({ kind: 'user', user: t.user, ...u }, t);
  }

  prune(now = Date.now()): void {
    for (const [k, at] of this.jtis) if (at <= now) this.jtis.delete(k);
    for (const [k, u] of this.users) if (u.expiresAt <= now) this.users.delete(k);
  }
}
