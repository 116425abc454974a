// The chat page in Debian's Chromium (playwright-core, never a downloaded browser) against two real gateway
// nodes on one real Redis: two browsers on different nodes chat in a room and by DM, a page whose node is
// killed shows "reconnecting" and comes back on the other node with nothing missing, and user text is never
// run as HTML. With UPDATE_SCREENSHOT=1 it also writes docs/screenshot.png.
import { build } from 'esbuild';
import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import WebSocket from 'ws';
import { ChatClient } from '../../client/src';
import { ROOT, startGateway, startRedis, token, type GatewayProc, type RedisProc } from '../helpers/harness';
import { TcpProxy } from '../client/tcp-proxy';

const TIMEOUT = 60_000;

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

let webDir: string;
let redis: RedisProc;
let a: GatewayProc;
let b: GatewayProc;
let toA: TcpProxy; // bob's way to node A, held during the failover so missed messages pile up
const browsers: Browser[] = [];
let alice: Page;
let bob: Page;
const pageErrors: string[] = [];

/** Bundles the page from source into a temp dir the gateways serve (STATIC_DIR), so the test runs this code. */
async function buildWeb(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'rc-web-'));
  cpSync(join(ROOT, 'web', 'public'), dir, { recursive: true });
  await build({
    entryPoints: [join(ROOT, 'web', 'src', 'main.ts')],
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: 'es2020',
    outfile: join(dir, 'app.js'),
    logLevel: 'warning',
  });
  return dir;
}

/** WebSocket frames each page received, by kind: alice's page speaks JSON, bob's MessagePack. */
const received: Record<string, { text: number; binary: number }> = {};

async function openPage(
  origin: GatewayProc,
  gateways: string[],
  name: string,
  encoding: 'json' | 'msgpack' = 'json',
): Promise<Page> {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  browsers.push(browser);
  const page = await browser.newPage({ viewport: { width: 1280, height: 760 } });
  page.on('pageerror', (err) => pageErrors.push(`${name}: ${err.message}`));
  page.on('dialog', (d) => {
    pageErrors.push(`${name}: unexpected dialog ${d.message()}`);
    void d.dismiss();
  });
  const counts = (received[name] = { text: 0, binary: 0 });
  page.on('websocket', (ws) =>
    ws.on('framereceived', (f) => {
      if (typeof f.payload === 'string') counts.text++;
      else counts.binary++;
    }),
  );
  await page.goto(`${origin.url}/?gateways=${gateways.join(',')}&encoding=${encoding}`);
  return page;
}

/** Signs in through the name form: the page mints its token with POST /dev/token. */
async function signInByName(page: Page, user: string): Promise<void> {
  await page.fill('#signin-name', user);
  await page.click('#signin-button');
}

async function signInWithToken(page: Page, user: string): Promise<void> {
  await page.locator('summary').click();
  await page.fill('#signin-token', token(user, { expiresIn: 3600 }));
  await page.click('#signin-button');
}

async function expectConnected(page: Page, node: GatewayProc): Promise<void> {
  await page.waitForSelector(`#conn[data-state="connected"][data-node="${node.nodeId}"]`);
}

async function say(page: Page, text: string): Promise<void> {
  await page.fill('#composer-input', text);
  await page.press('#composer-input', 'Enter');
}

/** Bodies of the confirmed messages shown in the open conversation, top to bottom. */
function shown(page: Page): Promise<string[]> {
  return page.$$eval('#message-list li.msg:not(.system):not(.pending):not(.failed) .msg-body', (els) =>
    els.map((e) => e.textContent ?? ''),
  );
}

async function waitShown(page: Page, text: string): Promise<void> {
  await page.waitForFunction(
    (t) =>
      [...document.querySelectorAll('#message-list li.msg:not(.pending) .msg-body')].some(
        (e) => e.textContent === t,
      ),
    text,
  );
}

async function openRoom(page: Page, room: string): Promise<void> {
  await page.click(`#rooms li[data-room="${room}"]`);
  await page.waitForSelector(`#chat-title:text-is("#${room}")`);
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no browser at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  }
  webDir = await buildWeb();
  redis = await startRedis();
  // JWT_SECRET (the harness's) with DEV_TOKENS: people sign in by name on any node, and a token minted by one
  // node is good on the other. Node ids are ours to pick: this Redis belongs to this test alone.
  const CLUSTER_ENV = { REDIS_URL: redis.url, STATIC_DIR: webDir, DEV_TOKENS: 'true', USER_MSG_RATE: '1000' };
  [a, b] = await Promise.all([
    startGateway({ ...CLUSTER_ENV, NODE_ID: 'gw-1' }),
    startGateway({ ...CLUSTER_ENV, NODE_ID: 'gw-2' }),
  ]);
  toA = await TcpProxy.start(a.port);
  // alice: page from node A, connected to A. bob: page from node B, connected to B, then (via the proxy) A.
  [alice, bob] = await Promise.all([
    openPage(a, [a.wsUrl, b.wsUrl], 'alice'),
    openPage(b, [b.wsUrl, toA.wsUrl], 'bob', 'msgpack'),
  ]);
  await Promise.all([signInByName(alice, 'alice'), signInByName(bob, 'bob')]);
  await Promise.all([expectConnected(alice, a), expectConnected(bob, b)]);
}, TIMEOUT);

afterAll(async () => {
  await Promise.all(browsers.map((br) => br.close()));
  await toA?.close();
  await Promise.all([a?.kill(), b?.kill()]);
  await redis?.stop();
  if (webDir) rmSync(webDir, { recursive: true, force: true });
}, TIMEOUT);

afterEach(() => {
  expect(pageErrors).toEqual([]);
}, TIMEOUT);

test(
  'two browsers on two nodes, one on JSON and one on MessagePack, chat in a room and by direct message, and see each other present',
  async () => {
    await alice.waitForSelector('#conn[data-encoding="json"]');
    await bob.waitForSelector('#conn[data-encoding="msgpack"]');
    await alice.waitForSelector('#presence li[data-user="bob"]');
    await bob.waitForSelector('#presence li[data-user="alice"]');
    await expect(alice.locator('#conn-text').textContent()).resolves.toBe(`Connected · ${a.nodeId}`);

    await say(alice, 'hello from node A');
    await waitShown(bob, 'hello from node A');
    await say(bob, 'hi alice, bob here on node B');
    await waitShown(alice, 'hi alice, bob here on node B');
    expect(await shown(alice)).toEqual(['hello from node A', 'hi alice, bob here on node B']);
    expect(await shown(bob)).toEqual(['hello from node A', 'hi alice, bob here on node B']);
    await expect(bob.locator('li[data-from="alice"] .msg-from').first().textContent()).resolves.toBe('alice');

    await alice.fill('#dm-user', 'bob');
    await alice.press('#dm-user', 'Enter');
    await alice.waitForSelector('#chat-title:text-is("@bob")');
    await say(alice, 'psst, a direct message');
    await bob.waitForSelector('#dms li[data-user="alice"] .badge');
    await bob.click('#dms li[data-user="alice"]');
    await waitShown(bob, 'psst, a direct message');
    await say(bob, 'got it');
    await waitShown(alice, 'got it');
    expect(await shown(alice)).toEqual(['psst, a direct message', 'got it']);
    // Every frame alice's page got was JSON text and every frame bob's got was binary MessagePack.
    expect(received.alice).toEqual({ text: expect.any(Number), binary: 0 });
    expect(received.bob).toEqual({ text: 0, binary: expect.any(Number) });
    expect(received.alice!.text).toBeGreaterThan(5);
    expect(received.bob!.binary).toBeGreaterThan(5);

    await openRoom(alice, 'lobby');
    await openRoom(bob, 'lobby');
  },
  TIMEOUT,
);

test(
  'a message containing HTML is shown as text and runs nothing',
  async () => {
    const evil = `<img src=x onerror="window.__pwned=1;document.title='pwned'"><script>window.__pwned=2</script>`;
    await say(alice, evil);
    await waitShown(bob, evil);
    for (const page of [alice, bob]) {
      await waitShown(page, evil);
      expect(await page.locator('#message-list img, #message-list script').count()).toBe(0);
      expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
      expect(await page.title()).toBe('relaychat');
    }
  },
  TIMEOUT,
);

test(
  'killing the node a page is on shows "reconnecting", then the page is back on the other node with no message missing',
  async () => {
    const before = await shown(bob);
    toA.hold(); // bob's reconnect to node A waits until the messages below are stored
    await b.kill();
    await bob.waitForSelector('#conn[data-state="reconnecting"]');
    await expect(bob.locator('#conn-text').textContent()).resolves.toMatch(/^Reconnecting/);

    const missed = Array.from({ length: 5 }, (_, i) => `sent while bob was away ${i + 1}`);
    for (const text of missed) {
      await say(alice, text);
      await waitShown(alice, text); // confirmed: stored
    }
    await alice.click('#dms li[data-user="bob"]');
    await say(alice, 'a DM while you were away');
    await waitShown(alice, 'a DM while you were away');
    await openRoom(alice, 'lobby');
    // bob types while reconnecting: queued, sent once the page is back.
    await say(bob, 'typed while reconnecting');
    await bob.waitForSelector('#message-list li.pending');
    expect(await bob.locator('#conn').getAttribute('data-state')).toBe('reconnecting');

    toA.release();
    await expectConnected(bob, a);
    await expect(bob.locator('#conn-text').textContent()).resolves.toBe(`Connected · ${a.nodeId}`);
    await waitShown(bob, 'typed while reconnecting');
    await waitShown(alice, 'typed while reconnecting');
    for (const text of missed) await waitShown(bob, text);

    const expected = [...before, ...missed, 'typed while reconnecting'];
    expect(await shown(bob)).toEqual(expected);
    expect(await shown(alice)).toEqual(expected);
    expect(await bob.locator('#message-list li.system').count()).toBe(0); // no gap
    await bob.click('#dms li[data-user="alice"]');
    await waitShown(bob, 'a DM while you were away');
    expect(await shown(bob)).toEqual(['psst, a direct message', 'got it', 'a DM while you were away']);
  },
  TIMEOUT,
);

test(
  'the page renders a conversation worth a screenshot (docs/screenshot.png with UPDATE_SCREENSHOT=1)',
  async () => {
    const carolPage = await openPage(a, [a.wsUrl], 'carol');
    await signInWithToken(carolPage, 'carol');
    await expectConnected(carolPage, a);
    for (const page of [alice, bob, carolPage]) {
      await page.fill('#join-room', 'design-review');
      await page.press('#join-room', 'Enter');
      await page.waitForSelector('#chat-title:text-is("#design-review")');
    }
    await alice.waitForSelector('#presence li[data-user="carol"]');
    const script: [Page, string][] = [
      [carolPage, 'Morning! The two-node demo is up: node A and node B behind one Redis.'],
      [alice, 'Nice. I killed node B a minute ago and bob came back on A without losing a message.'],
      [bob, 'Confirmed, the page said "Reconnecting…" for a moment, then replayed everything in order.'],
      [bob, 'History scroll-back works too.'],
      [carolPage, 'Shipping it. Presence on the right shows who is in the room.'],
    ];
    for (const [page, text] of script) {
      await say(page, text);
      await waitShown(alice, text);
    }
    await alice.fill('#composer-input', 'Great work, everyone');
    await alice.setViewportSize({ width: 1200, height: 600 });
    await alice.mouse.move(100, 560); // nothing hovered
    const path = process.env.UPDATE_SCREENSHOT
      ? join(ROOT, 'docs', 'screenshot.png')
      : join(tmpdir(), `rc-screenshot-${process.pid}.png`);
    const png = await alice.screenshot({ path });
    expect(png.length).toBeGreaterThan(10_000);
    if (!process.env.UPDATE_SCREENSHOT) rmSync(path, { force: true });
  },
  TIMEOUT,
);

test(
  'scroll-back: a room with more history than one page loads older messages on demand, in order',
  async () => {
    // Three pages of history, 40 messages per feeder connection (under its command burst).
    for (let from = 1; from <= 120; from += 40) {
      const feeder = new ChatClient({ url: a.wsUrl, token: token('feeder'), WebSocket });
      try {
        await feeder.join('long-room');
        for (let i = from; i < from + 40; i++) await feeder.publish('long-room', `history ${i}`);
      } finally {
        feeder.close();
      }
    }
    const range = (from: number, to: number) =>
      Array.from({ length: to - from + 1 }, (_, i) => `history ${i + from}`);
    await alice.fill('#join-room', 'long-room');
    await alice.press('#join-room', 'Enter');
    await waitShown(alice, 'history 120');
    expect(await shown(alice)).toEqual(range(71, 120));
    // Two ways to ask for the page before: the "Load older messages" button, and scrolling the list to its top.
    // The button sits at the top of the list, so a pointer click first scrolls the list there, which already
    // loads the page; the button is therefore clicked without scrolling (the list stays at the bottom), and the
    // scroll path is taken on its own after it.
    await alice.waitForSelector('#older', { state: 'visible' });
    await alice.$eval('#older', (b) => (b as HTMLButtonElement).click());
    await waitShown(alice, 'history 21');
    expect(await shown(alice)).toEqual(range(21, 120));
    await alice.$eval('#messages', (box) => {
      box.scrollTop = 0;
    });
    await waitShown(alice, 'history 1');
    expect(await shown(alice)).toEqual(range(1, 120));
    await alice.waitForSelector('#older', { state: 'hidden' });
  },
  TIMEOUT,
);

test(
  'in dev mode a user signs in by name (POST /dev/token) and chats; a gateway with a key asks for a token instead',
  async () => {
    const [keyed, dev] = await Promise.all([
      startGateway({ STATIC_DIR: webDir }),
      startGateway({ JWT_SECRET: '', STATIC_DIR: webDir }),
    ]);
    try {
      const page = await openPage(keyed, [keyed.wsUrl], 'dev');
      await page.fill('#signin-name', 'dana');
      await page.click('#signin-button');
      await page.waitForSelector('#token-box[open]');
      await expect(page.locator('#signin-error').textContent()).resolves.toMatch(/not in dev mode/);
      expect(await page.locator('#app').isHidden()).toBe(true);

      await page.goto(`${dev.url}/`);
      await page.fill('#signin-name', 'dana');
      await page.click('#signin-button');
      await expectConnected(page, dev);
      await expect(page.locator('#me-name').textContent()).resolves.toBe('dana');
      await page.waitForSelector('#chat-title:text-is("#lobby")');
      await say(page, 'dev mode works');
      await waitShown(page, 'dev mode works');
    } finally {
      await Promise.all([keyed.kill(), dev.kill()]);
    }
  },
  TIMEOUT,
);
