// What survives a reload of the page: who is signed in and which conversations are open. Kept in
// sessionStorage, so it belongs to this tab and is gone when the tab closes; signing out clears it.
//   dev mode (signed in by name): the name only; every connection and every refresh before expiry mints a
//     fresh token through POST /dev/token (the SDK calls the token getter for both).
//   a pasted JWT: the token itself, for its lifetime: once expired it is dropped and the sign-in form shows.
import { readClaims } from './auth';

export type SavedSession = { kind: 'dev'; name: string } | { kind: 'token'; token: string };

export interface SavedView {
  /** Rooms joined, in the order they were joined. */
  rooms: string[];
  /** The conversation on screen: `room:<name>` or `dm:<user>`. */
  active?: string;
}

const SESSION = 'relaychat.session';
const VIEW = 'relaychat.view';

function read<T>(key: string): T | undefined {
  try {
    const raw = sessionStorage.getItem(key);
    return raw ? (JSON.parse(raw) as T) : undefined;
  } catch {
    return undefined;
  }
}

function write(key: string, value: unknown): void {
  try {
    sessionStorage.setItem(key, JSON.stringify(value));
  } catch {
    // storage full or disabled: the page still works, a reload signs out
  }
}

export function saveSession(s: SavedSession): void {
  write(SESSION, s);
}

/** The saved session, unless it is malformed or its token has expired (then it is cleared). */
export function loadSession(now = Date.now()): SavedSession | undefined {
  const s = read<SavedSession>(SESSION);
  if (s?.kind === 'dev' && typeof s.name === 'string' && s.name) return s;
  if (s?.kind === 'token' && typeof s.token === 'string') {
    const exp = readClaims(s.token).exp;
    if (exp === undefined || exp * 1000 > now + 5000) return s;
  }
  clearSession();
  return undefined;
}

export function saveView(view: SavedView): void {
  write(VIEW, view);
}

export function loadView(): SavedView | undefined {
  const v = read<SavedView>(VIEW);
  if (!v || !Array.isArray(v.rooms) || !v.rooms.every((r) => typeof r === 'string')) return undefined;
  return { rooms: v.rooms, active: typeof v.active === 'string' ? v.active : undefined };
}

export function clearSession(): void {
  try {
    sessionStorage.removeItem(SESSION);
    sessionStorage.removeItem(VIEW);
  } catch {
    // nothing saved
  }
}
