// The chat page: plain DOM over the client SDK. Everything a user typed reaches the DOM as text nodes.
import {
  ChatClient,
  ChatError,
  randomKey,
  type DirectMessageEvent,
  type GapInfo,
  type MessageEvent,
  type StateChange,
  type TokenGetter,
} from '../../client/src';
import { CLOSE, DEFAULT_LIMITS, roomRuleText, validRoom } from '../../protocol';
import { NotDevModeError, devTokenGetter, gatewayUrls, readClaims, tokenOrigins } from './auth';
import { avatar, byId, colorOf, formatDay, formatTime, h, initial } from './dom';
import { clearSession, loadSession, loadView, saveSession, saveView, type SavedSession } from './session';

const HISTORY_PAGE = 50;
const MAX_ENTRIES = 1000;
const GROUP_WINDOW_MS = 5 * 60_000;
const DEFAULT_ROOM = 'lobby';

interface Entry {
  /** id, `pending:<key>` or `sys:<n>` */
  key: string;
  id?: string;
  offset?: number;
  from: string;
  ts: number;
  text: string;
  status: 'ok' | 'pending' | 'failed' | 'system';
  note?: string;
}

interface Conversation {
  kind: 'room' | 'dm';
  name: string;
  entries: Entry[];
  ids: Set<string>;
  unread: number;
  /** Lowest offset loaded from history (rooms). */
  oldest?: number;
  moreHistory: boolean;
  loadingHistory: boolean;
}

const ui = {
  conn: byId('conn'),
  connText: byId('conn-text'),
  me: byId('me'),
  meName: byId('me-name'),
  meAvatar: byId('me-avatar'),
  signout: byId<HTMLButtonElement>('signout'),
  signin: byId('signin'),
  signinForm: byId<HTMLFormElement>('signin-form'),
  signinName: byId<HTMLInputElement>('signin-name'),
  signinToken: byId<HTMLTextAreaElement>('signin-token'),
  tokenBox: byId<HTMLDetailsElement>('token-box'),
  signinButton: byId<HTMLButtonElement>('signin-button'),
  signinError: byId('signin-error'),
  app: byId('app'),
  menu: byId<HTMLButtonElement>('menu'),
  rooms: byId('rooms'),
  joinForm: byId<HTMLFormElement>('join-form'),
  joinRoom: byId<HTMLInputElement>('join-room'),
  dms: byId('dms'),
  dmForm: byId<HTMLFormElement>('dm-form'),
  dmUser: byId<HTMLInputElement>('dm-user'),
  chatTitle: byId('chat-title'),
  chatSub: byId('chat-sub'),
  leave: byId<HTMLButtonElement>('leave'),
  messages: byId('messages'),
  older: byId<HTMLButtonElement>('older'),
  list: byId('message-list'),
  empty: byId('empty'),
  composer: byId<HTMLFormElement>('composer'),
  composerInput: byId<HTMLInputElement>('composer-input'),
  presence: byId('presence'),
  presenceCount: byId('presence-count'),
  toasts: byId('toasts'),
};

const urls = gatewayUrls(window.location);
/** `?encoding=msgpack` switches the page to MessagePack frames; JSON otherwise. */
const encoding =
  new URLSearchParams(window.location.search).get('encoding') === 'msgpack' ? 'msgpack' : 'json';
const convs = new Map<string, Conversation>();
let client: ChatClient | undefined;
let me = '';
let active: string | undefined;
let systemSeq = 0;

// ------------------------------------------------------------------ conversations

function convKey(kind: 'room' | 'dm', name: string): string {
  return `${kind}:${name}`;
}

function ensureConv(kind: 'room' | 'dm', name: string): Conversation {
  const key = convKey(kind, name);
  let conv = convs.get(key);
  if (!conv) {
    conv = {
      kind,
      name,
      entries: [],
      ids: new Set(),
      unread: 0,
      moreHistory: kind === 'room',
      loadingHistory: false,
    };
    convs.set(key, conv);
  }
  return conv;
}

function bodyText(body: unknown): string {
  if (typeof body === 'string') return body;
  if (body && typeof body === 'object' && typeof (body as { text?: unknown }).text === 'string') {
    return (body as { text: string }).text;
  }
  return JSON.stringify(body);
}

function order(a: Entry, b: Entry): number {
  const pa = a.status === 'pending' || a.status === 'failed';
  const pb = b.status === 'pending' || b.status === 'failed';
  if (pa !== pb) return pa ? 1 : -1;
  if (a.offset !== undefined && b.offset !== undefined) return a.offset - b.offset;
  return a.ts - b.ts;
}

/** Adds an entry once (by id) in order; returns false for a duplicate. */
function addEntry(conv: Conversation, entry: Entry): boolean {
  if (entry.id !== undefined) {
    if (conv.ids.has(entry.id)) return false;
    conv.ids.add(entry.id);
  }
  const list = conv.entries;
  let i = list.length;
  while (i > 0 && order(list[i - 1]!, entry) > 0) i--;
  list.splice(i, 0, entry);
  if (list.length > MAX_ENTRIES) {
    const dropped = list.splice(0, list.length - MAX_ENTRIES);
    for (const d of dropped) if (d.id) conv.ids.delete(d.id);
    conv.oldest = list.find((e) => e.offset !== undefined)?.offset;
    conv.moreHistory = conv.kind === 'room';
  }
  return true;
}

function messageEntry(ev: MessageEvent | DirectMessageEvent, withOffset: boolean): Entry {
  return {
    key: ev.id,
    id: ev.id,
    offset: withOffset ? ev.offset : undefined,
    from: ev.from,
    ts: ev.ts,
    text: bodyText(ev.body),
    status: 'ok',
  };
}

function systemEntry(conv: Conversation, text: string): void {
  const last = conv.entries[conv.entries.length - 1];
  conv.entries.push({
    key: `sys:${++systemSeq}`,
    // Keep it where it happened in offset order.
    offset: last?.offset,
    from: '',
    ts: Date.now(),
    text,
    status: 'system',
  });
}

function touched(conv: Conversation, unread: boolean): void {
  const key = convKey(conv.kind, conv.name);
  if (key === active) renderMessages();
  else if (unread) conv.unread++;
  renderSidebar();
}

// ------------------------------------------------------------------ rendering

function renderConn(change?: StateChange): void {
  const state = client?.state ?? 'disconnected';
  ui.conn.dataset.state = state;
  ui.conn.dataset.encoding = encoding;
  const node = client?.node;
  if (node) ui.conn.dataset.node = node;
  else delete ui.conn.dataset.node;
  let text: string;
  switch (state) {
    case 'connected':
      text = `Connected · ${node ?? ''}`;
      break;
    case 'connecting':
      text = 'Connecting…';
      break;
    case 'reconnecting':
      text =
        change?.attempt && change.attempt > 1 ? `Reconnecting… (attempt ${change.attempt})` : 'Reconnecting…';
      break;
    default:
      text = client ? 'Disconnected' : 'Not signed in';
  }
  ui.connText.textContent = text;
  ui.conn.title = client?.url ? `gateway ${client.url}` : '';
}

function listItem(conv: Conversation, label: string, onLeave?: () => void): HTMLElement {
  const key = convKey(conv.kind, conv.name);
  const li = h(
    'li',
    {
      class: key === active ? 'active' : undefined,
      'data-room': conv.kind === 'room' ? conv.name : undefined,
      'data-user': conv.kind === 'dm' ? conv.name : undefined,
    },
    conv.kind === 'dm' ? avatar(conv.name, 'tiny') : h('span', { class: 'hash', 'aria-hidden': 'true' }, '#'),
    h('span', { class: 'label' }, label),
    conv.unread > 0
      ? h('span', { class: 'badge', 'aria-label': `${conv.unread} unread` }, String(conv.unread))
      : null,
  );
  li.addEventListener('click', () => setActive(key));
  if (onLeave) {
    const x = h(
      'button',
      { type: 'button', class: 'x', title: `Leave #${conv.name}`, 'aria-label': 'Leave' },
      '×',
    );
    x.addEventListener('click', (e) => {
      e.stopPropagation();
      onLeave();
    });
    li.append(x);
  }
  return li;
}

function renderSidebar(): void {
  const rooms: HTMLElement[] = [];
  const dms: HTMLElement[] = [];
  const sorted = [...convs.values()].sort((a, b) => a.name.localeCompare(b.name));
  for (const conv of sorted) {
    if (conv.kind === 'room') rooms.push(listItem(conv, conv.name, () => void leaveRoom(conv.name)));
    else dms.push(listItem(conv, conv.name));
  }
  ui.rooms.replaceChildren(...rooms);
  ui.dms.replaceChildren(...dms);
  if (dms.length === 0) ui.dms.append(h('li', { class: 'hint muted' }, 'No conversations yet'));
}

function renderMessages(opts: { keepOffsetFromBottom?: boolean } = {}): void {
  const conv = active ? convs.get(active) : undefined;
  const box = ui.messages;
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const fromBottom = box.scrollHeight - box.scrollTop;

  const items: HTMLElement[] = [];
  let prev: Entry | undefined;
  let prevDay = '';
  for (const e of conv?.entries ?? []) {
    if (e.status === 'system') {
      items.push(h('li', { class: 'msg system' }, h('span', { class: 'msg-body' }, e.text)));
      prev = undefined;
      continue;
    }
    const day = formatDay(e.ts);
    if (day !== prevDay) {
      items.push(h('li', { class: 'day' }, h('span', {}, day)));
      prevDay = day;
      prev = undefined;
    }
    const compact = prev !== undefined && prev.from === e.from && e.ts - prev.ts < GROUP_WINDOW_MS;
    const classes = [
      'msg',
      compact ? 'compact' : '',
      e.from === me ? 'mine' : '',
      e.status !== 'ok' ? e.status : '',
    ]
      .filter(Boolean)
      .join(' ');
    const time = h('time', { class: 'msg-time', datetime: new Date(e.ts).toISOString() }, formatTime(e.ts));
    time.title = new Date(e.ts).toLocaleString();
    items.push(
      h(
        'li',
        { class: classes, 'data-id': e.id, 'data-from': e.from, 'data-offset': e.offset?.toString() },
        compact ? h('span', { class: 'avatar-space' }, formatTime(e.ts)) : avatar(e.from),
        h(
          'div',
          { class: 'msg-main' },
          compact ? null : h('div', { class: 'msg-meta' }, h('span', { class: 'msg-from' }, e.from), time),
          h('div', { class: 'msg-body' }, e.text),
          e.status === 'pending' ? h('div', { class: 'msg-note' }, 'sending…') : null,
          e.status === 'failed' ? h('div', { class: 'msg-note' }, `not sent: ${e.note ?? 'error'}`) : null,
        ),
      ),
    );
    prev = e;
  }
  ui.list.replaceChildren(...items);
  ui.empty.hidden = !conv || conv.entries.length > 0 || conv.loadingHistory;
  ui.older.hidden = !conv || conv.kind !== 'room' || !conv.moreHistory || conv.entries.length === 0;
  ui.older.disabled = !!conv?.loadingHistory;

  if (opts.keepOffsetFromBottom) box.scrollTop = box.scrollHeight - fromBottom;
  else if (atBottom) box.scrollTop = box.scrollHeight;
}

function renderHeader(): void {
  const conv = active ? convs.get(active) : undefined;
  ui.chatTitle.textContent = !conv ? '—' : conv.kind === 'room' ? `#${conv.name}` : `@${conv.name}`;
  ui.chatSub.textContent = conv?.kind === 'dm' ? 'direct message' : '';
  ui.leave.hidden = conv?.kind !== 'room';
  ui.composerInput.placeholder = !conv
    ? 'Join a room to chat'
    : conv.kind === 'room'
      ? `Message #${conv.name}`
      : `Message @${conv.name}`;
  ui.composerInput.disabled = !conv;
}

function renderPresence(): void {
  const conv = active ? convs.get(active) : undefined;
  const people = conv?.kind === 'room' && client ? client.presence(conv.name) : conv ? [me, conv.name] : [];
  ui.presenceCount.textContent = conv?.kind === 'room' ? String(people.length) : '';
  ui.presence.replaceChildren(
    ...people.map((user) => {
      const li = h(
        'li',
        { 'data-user': user },
        avatar(user, 'tiny'),
        h('span', { class: 'label' }, user),
        user === me ? h('span', { class: 'you muted' }, 'you') : null,
      );
      if (user !== me) {
        li.title = `Message ${user}`;
        li.addEventListener('click', () => openDm(user));
      }
      return li;
    }),
  );
}

function setActive(key: string | undefined): void {
  active = key;
  setMenu(false);
  persistView();
  const conv = key ? convs.get(key) : undefined;
  if (conv) conv.unread = 0;
  renderHeader();
  renderSidebar();
  renderPresence();
  ui.messages.scrollTop = ui.messages.scrollHeight;
  renderMessages();
  ui.messages.scrollTop = ui.messages.scrollHeight;
  if (conv) ui.composerInput.focus();
}

function toast(text: string, kind: 'error' | 'info' = 'error'): void {
  const el = h('div', { class: `toast ${kind}` }, text);
  ui.toasts.append(el);
  setTimeout(() => el.remove(), 6000);
}

function errorText(err: unknown): string {
  if (err instanceof ChatError) return `${err.message} (${err.code})`;
  return err instanceof Error ? err.message : String(err);
}

// ------------------------------------------------------------------ actions

async function loadHistory(conv: Conversation): Promise<void> {
  if (!client || conv.loadingHistory || !conv.moreHistory) return;
  conv.loadingHistory = true;
  const isActive = active === convKey(conv.kind, conv.name);
  if (isActive) renderMessages({ keepOffsetFromBottom: true });
  try {
    const page = await client.history(conv.name, {
      limit: HISTORY_PAGE,
      before: conv.oldest,
    });
    for (const m of page.messages) addEntry(conv, messageEntry(m, true));
    const first = page.messages[0];
    if (first) conv.oldest = Math.min(conv.oldest ?? Infinity, first.offset);
    conv.moreHistory = page.messages.length === HISTORY_PAGE && (first?.offset ?? 0) > 1;
  } catch (err) {
    toast(`history of #${conv.name}: ${errorText(err)}`);
  } finally {
    conv.loadingHistory = false;
  }
  if (active === convKey(conv.kind, conv.name)) renderMessages({ keepOffsetFromBottom: true });
}

async function joinRoom(name: string): Promise<void> {
  if (!client) return;
  // The gateway's default MAX_ROOM_NAME_LENGTH; a deployment with a different one still answers bad_request.
  if (!validRoom(name, DEFAULT_LIMITS.maxRoomNameLength)) {
    toast(`Invalid room name: ${roomRuleText(DEFAULT_LIMITS.maxRoomNameLength)}`);
    return;
  }
  const existed = convs.has(convKey('room', name));
  const conv = ensureConv('room', name);
  setActive(convKey('room', name));
  try {
    await client.join(name);
  } catch (err) {
    toast(`join #${name}: ${errorText(err)}`);
    if (!existed) {
      convs.delete(convKey('room', name));
      setActive(firstConversation());
    }
    return;
  }
  if (active === convKey('room', name)) renderPresence();
  if (conv.entries.length === 0) await loadHistory(conv);
}

async function leaveRoom(name: string): Promise<void> {
  if (!client) return;
  const key = convKey('room', name);
  convs.delete(key);
  if (active === key) setActive(firstConversation());
  else renderSidebar();
  persistView();
  try {
    await client.leave(name);
  } catch (err) {
    toast(`leave #${name}: ${errorText(err)}`);
  }
}

// ------------------------------------------------------------------ phone menu and reloads

/** Opens or closes the conversation list (a menu at phone width; always shown on wider screens). */
function setMenu(open: boolean): void {
  ui.app.classList.toggle('nav-open', open);
  ui.menu.setAttribute('aria-expanded', String(open));
}

/** Saves the joined rooms and the conversation on screen, for a reload of this tab. */
function persistView(): void {
  if (!client) return;
  const rooms = [...convs.values()].filter((c) => c.kind === 'room').map((c) => c.name);
  saveView({ rooms, active });
}

/** Signs back in after a reload with what sessionStorage kept (see session.ts). */
function resume(saved: SavedSession): void {
  if (saved.kind === 'token') {
    startClient(saved.token, readClaims(saved.token).sub ?? '');
    return;
  }
  ui.signinName.value = saved.name;
  startClient(devTokenGetter(saved.name, tokenOrigins(window.location, urls)), saved.name);
}

function firstConversation(): string | undefined {
  return [...convs.keys()].sort()[0];
}

function openDm(user: string): void {
  const name = user.trim();
  if (!name) return;
  ensureConv('dm', name);
  setActive(convKey('dm', name));
}

async function send(text: string): Promise<void> {
  const conv = active ? convs.get(active) : undefined;
  if (!client || !conv) return;
  const key = randomKey();
  const entry: Entry = { key: `pending:${key}`, from: me, ts: Date.now(), text, status: 'pending' };
  addEntry(conv, entry);
  ui.messages.scrollTop = ui.messages.scrollHeight;
  renderMessages();
  ui.messages.scrollTop = ui.messages.scrollHeight;
  try {
    const r =
      conv.kind === 'room'
        ? await client.publish(conv.name, text, { key })
        : await client.dm(conv.name, text, { key });
    const i = conv.entries.indexOf(entry);
    if (i >= 0) conv.entries.splice(i, 1);
    if (!conv.ids.has(r.id)) {
      addEntry(conv, {
        ...entry,
        key: r.id,
        id: r.id,
        offset: conv.kind === 'room' ? r.offset : undefined,
        ts: r.ts,
        status: 'ok',
      });
    }
  } catch (err) {
    entry.status = 'failed';
    entry.note = errorText(err);
  }
  touched(conv, false);
}

function onGap(gap: GapInfo): void {
  const range = gap.to !== undefined && gap.to >= gap.from ? `${gap.from}–${gap.to}` : `from ${gap.from}`;
  const reset = gap.previousEpoch !== undefined && gap.previousEpoch !== gap.epoch;
  if (gap.room !== undefined) {
    const conv = convs.get(convKey('room', gap.room));
    if (!conv) return;
    systemEntry(
      conv,
      reset
        ? '⚠ The history of this room was reset on the server; earlier messages may be missing.'
        : `⚠ Messages ${range} could not be recovered.`,
    );
    touched(conv, false);
  } else {
    toast('Some direct messages could not be recovered.');
  }
}

// ------------------------------------------------------------------ session

function startClient(token: string | TokenGetter, user: string): void {
  me = user;
  const c = new ChatClient({ url: urls, token, inboxSince: { offset: 0 }, encoding });
  client = c;
  c.on('state', (change) => renderConn(change));
  c.on('connected', (info) => {
    me = info.user;
    paintMe();
    renderConn();
    renderPresence();
  });
  c.on('disconnected', (info) => {
    if (!info.willReconnect && client === c)
      toast(`Disconnected (${info.code}${info.reason ? `: ${info.reason}` : ''})`);
  });
  c.on('message', (ev) => {
    const conv = convs.get(convKey('room', ev.room));
    if (conv && addEntry(conv, messageEntry(ev, true))) touched(conv, ev.from !== me);
  });
  c.on('dm', (ev) => {
    const partner = ev.from === me ? ev.to : ev.from;
    const conv = ensureConv('dm', partner);
    if (addEntry(conv, messageEntry(ev, false))) touched(conv, ev.from !== me);
  });
  c.on('presence', (ev) => {
    if (active === convKey('room', ev.room)) renderPresence();
  });
  c.on('gap', onGap);
  c.on('left', ({ rooms }) => {
    // The refreshed token no longer allows these rooms; the server already left them.
    for (const room of rooms) convs.delete(convKey('room', room));
    if (active && !convs.has(active)) setActive(firstConversation());
    else renderSidebar();
    toast(`No longer allowed in ${rooms.map((r) => `#${r}`).join(', ')}`, 'info');
  });
  c.on('signedOut', ({ code }) => {
    // Revoked (4004) or expired with nothing to refresh it (4001): back to the sign-in form, no reconnect.
    if (client !== c) return;
    signOut();
    ui.signinError.textContent =
      code === CLOSE.tokenRevoked
        ? 'You were signed out: your token was revoked.'
        : 'Your session expired: sign in again.';
  });
  c.on('error', (err) => {
    if (client === c) toast(errorText(err));
  });

  ui.signin.hidden = true;
  ui.app.hidden = false;
  ui.me.hidden = false;
  paintMe();
  renderConn();
  c.connect().catch((err: unknown) => toast(errorText(err)));
  // After a reload: the rooms that were joined, and the conversation that was on screen, with its history.
  const view = loadView();
  const rooms = new URLSearchParams(window.location.search).get('rooms');
  for (const room of rooms ? rooms.split(',') : (view?.rooms ?? [DEFAULT_ROOM])) void joinRoom(room.trim());
  if (view?.active?.startsWith('dm:')) openDm(view.active.slice(3));
  else if (view?.active && convs.has(view.active)) setActive(view.active);
}

function paintMe(): void {
  ui.meName.textContent = me;
  ui.meAvatar.textContent = initial(me);
  ui.meAvatar.style.background = colorOf(me);
}

function signOut(): void {
  clearSession();
  client?.close();
  client = undefined;
  convs.clear();
  active = undefined;
  me = '';
  ui.app.hidden = true;
  ui.me.hidden = true;
  ui.signin.hidden = false;
  renderConn();
  ui.signinName.focus();
}

ui.signinForm.addEventListener('submit', (e) => {
  e.preventDefault();
  void (async () => {
    ui.signinError.textContent = '';
    const pasted = ui.signinToken.value.trim();
    const name = ui.signinName.value.trim();
    if (pasted) {
      const sub = readClaims(pasted).sub;
      saveSession({ kind: 'token', token: pasted });
      startClient(pasted, sub ?? '');
      return;
    }
    if (!name) {
      ui.signinError.textContent = 'Enter a name (or paste a token).';
      return;
    }
    ui.signinButton.disabled = true;
    try {
      const getter = devTokenGetter(name, tokenOrigins(window.location, urls));
      let first: string | undefined = await getter();
      localStorage.setItem('relaychat.name', name);
      saveSession({ kind: 'dev', name });
      startClient(() => {
        const t = first;
        first = undefined;
        return t ?? getter();
      }, name);
    } catch (err) {
      if (err instanceof NotDevModeError) ui.tokenBox.open = true;
      ui.signinError.textContent = errorText(err);
    } finally {
      ui.signinButton.disabled = false;
    }
  })();
});

ui.signout.addEventListener('click', signOut);
ui.menu.addEventListener('click', () => setMenu(!ui.app.classList.contains('nav-open')));

ui.joinForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const name = ui.joinRoom.value.trim().replace(/^#/, '');
  if (!name) return;
  ui.joinRoom.value = '';
  if (convs.has(convKey('room', name))) setActive(convKey('room', name));
  else void joinRoom(name);
});

ui.dmForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const user = ui.dmUser.value.trim().replace(/^@/, '');
  ui.dmUser.value = '';
  openDm(user);
});

ui.leave.addEventListener('click', () => {
  const conv = active ? convs.get(active) : undefined;
  if (conv?.kind === 'room') void leaveRoom(conv.name);
});

ui.older.addEventListener('click', () => {
  const conv = active ? convs.get(active) : undefined;
  if (conv) void loadHistory(conv);
});

ui.messages.addEventListener('scroll', () => {
  const conv = active ? convs.get(active) : undefined;
  if (conv && ui.messages.scrollTop < 8 && conv.entries.length > 0) void loadHistory(conv);
});

ui.composer.addEventListener('submit', (e) => {
  e.preventDefault();
  const text = ui.composerInput.value;
  if (!text.trim()) return;
  ui.composerInput.value = '';
  void send(text);
});

ui.signinName.value = localStorage.getItem('relaychat.name') ?? '';
renderConn();
renderHeader();
const saved = loadSession();
if (saved) resume(saved);
