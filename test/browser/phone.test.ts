// The chat page at phone size and across reloads, in Debian's Chromium (playwright-core) against a real gateway:
// at 390×844 the top bar is one line and a ☰ menu opens the room and DM list; a reload keeps the user signed in
// and returns to the room that was open, with its recent messages; signing out, or a pasted token that has
// expired, ends that.
import { build } from 'esbuild';
import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { ROOT, startGateway, token, type GatewayProc } from '../helpers/harness';

const TIMEOUT = 60_000;
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const PHONE = { width: 390, height: 844 };

let webDir: string;
let gw: GatewayProc;
let browser: Browser;
const pageErrors: string[] = [];

async function newPhonePage(): Promise<Page> {
  const page = await browser.newPage({ viewport: PHONE, isMobile: true, hasTouch: true });
  page.on('pageerror', (err) => pageErrors.push(err.message));
  await page.goto(gw.url);
  return page;
}

/** Every visible item of the top bar sits on one line, inside the bar, and nothing overflows the screen width. */
async function topBarIsOneLine(page: Page): Promise<void> {
  const r = await page.evaluate(() => {
    const bar = document.querySelector('.topbar')!.getBoundingClientRect();
    const items = [...document.querySelectorAll('.topbar > *')]
      .filter((e) => (e as HTMLElement).offsetParent !== null)
      .map((e) => e.getBoundingClientRect());
    return {
      barHeight: bar.height,
      within: items.every(
        (i) => i.top >= bar.top && i.bottom <= bar.bottom && i.right <= window.innerWidth + 0.5,
      ),
      centres: items.map((i) => i.top + i.height / 2),
      scrollWidth: document.documentElement.scrollWidth,
    };
  });
  expect(r.barHeight).toBeLessThanOrEqual(56);
  expect(r.within).toBe(true);
  for (const c of r.centres) expect(Math.abs(c - r.centres[0]!)).toBeLessThanOrEqual(4);
  expect(r.scrollWidth).toBeLessThanOrEqual(PHONE.width);
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`no browser at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  webDir = mkdtempSync(join(tmpdir(), 'rc-web-phone-'));
  cpSync(join(ROOT, 'web', 'public'), webDir, { recursive: true });
  await build({
    entryPoints: [join(ROOT, 'web', 'src', 'main.ts')],
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: 'es2020',
    outfile: join(webDir, 'app.js'),
    logLevel: 'warning',
  });
  gw = await startGateway({ STATIC_DIR: webDir, DEV_TOKENS: 'true' });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-quic'],
  });
}, TIMEOUT);

afterAll(async () => {
  await browser?.close();
  await gw?.stop();
  if (webDir) rmSync(webDir, { recursive: true, force: true });
}, TIMEOUT);

afterEach(() => {
  expect(pageErrors).toEqual([]);
});

test(
  'at phone width the menu opens the conversation list, and the top bar stays on one line',
  async () => {
    const page = await newPhonePage();
    await topBarIsOneLine(page); // signed out
    await page.fill('#signin-name', 'phoebe-with-a-rather-long-name');
    await page.click('#signin-button');
    await page.waitForSelector('#conn[data-state="connected"]');
    await page.waitForSelector('#chat-title:text-is("#lobby")');
    await topBarIsOneLine(page); // signed in: menu, logo, status, name, sign out

    // The list is hidden until the menu opens it; choosing a conversation closes it.
    await expect(page.isVisible('#rooms')).resolves.toBe(false);
    await expect(page.isVisible('#menu')).resolves.toBe(true);
    await page.click('#menu');
    await page.waitForSelector('#rooms', { state: 'visible' });
    await expect(page.getAttribute('#menu', 'aria-expanded')).resolves.toBe('true');
    await page.fill('#join-room', 'pocket');
    await page.press('#join-room', 'Enter');
    await page.waitForSelector('#chat-title:text-is("#pocket")');
    await page.waitForSelector('#rooms', { state: 'hidden' });
    await page.click('#menu');
    await page.click('#rooms li[data-room="lobby"]');
    await page.waitForSelector('#chat-title:text-is("#lobby")');
    await page.waitForSelector('#rooms', { state: 'hidden' });
    // The composer is usable at this size.
    await expect(page.isVisible('#composer-input')).resolves.toBe(true);
    await page.close();
  },
  TIMEOUT,
);

test(
  'a reload keeps the user signed in and returns to the open room with its recent messages; sign-out ends it',
  async () => {
    const page = await newPhonePage();
    await page.fill('#signin-name', 'rita');
    await page.click('#signin-button');
    await page.waitForSelector('#conn[data-state="connected"]');
    await page.click('#menu');
    await page.fill('#join-room', 'reloads');
    await page.press('#join-room', 'Enter');
    await page.waitForSelector('#chat-title:text-is("#reloads")');
    await page.fill('#composer-input', 'before the reload');
    await page.press('#composer-input', 'Enter');
    await page.waitForSelector('#message-list li.msg:not(.pending) .msg-body:text-is("before the reload")');

    await page.reload();
    await page.waitForSelector('#conn[data-state="connected"]');
    await expect(page.isVisible('#signin')).resolves.toBe(false);
    await expect(page.textContent('#me-name')).resolves.toBe('rita');
    await page.waitForSelector('#chat-title:text-is("#reloads")');
    await page.waitForSelector('#message-list li.msg .msg-body:text-is("before the reload")');
    // Both rooms are still joined.
    await page.click('#menu');
    await page.waitForSelector('#rooms li[data-room="lobby"]');
    await page.waitForSelector('#rooms li[data-room="reloads"]');
    await page.click('#menu');

    await page.click('#signout');
    await page.reload();
    await page.waitForSelector('#signin', { state: 'visible' });
    await expect(page.isVisible('#app')).resolves.toBe(false);
    await page.close();
  },
  TIMEOUT,
);

test(
  'a pasted token is kept across a reload while valid, and dropped once expired',
  async () => {
    const page = await newPhonePage();
    await page.locator('summary').click();
    await page.fill('#signin-token', token('tess', { expiresIn: 3600 }));
    await page.click('#signin-button');
    await page.waitForSelector('#conn[data-state="connected"]');
    await page.reload();
    await page.waitForSelector('#conn[data-state="connected"]');
    await expect(page.textContent('#me-name')).resolves.toBe('tess');

    // An expired token in storage: the page shows the sign-in form instead of trying it.
    const expired = token('tess', { expiresIn: -60 });
    await page.evaluate((t) => {
      sessionStorage.setItem('relaychat.session', JSON.stringify({ kind: 'token', token: t }));
    }, expired);
    await page.reload();
    await page.waitForSelector('#signin', { state: 'visible' });
    await expect(page.evaluate(() => sessionStorage.getItem('relaychat.session'))).resolves.toBeNull();
    await page.close();
  },
  TIMEOUT,
);
