// A deposit made in real headless Chromium through the sandbox PSP's hosted card page and its
// 3-D Secure page ends with the player's balance credited.
//
// Starts the real `kassa serve` binary (KASSA_BIN) on a free port with a fresh SQLite database,
// drives Debian's chromium (CHROMIUM_PATH, default /usr/bin/chromium) with playwright-core, and
// checks the outcome through Kassa's API. Run with `bash e2e/run.sh` or `node --test e2e/`.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = path.join(HERE, 'artifacts');
const API_KEY = 'sk_test_e2e_key_000000000001';

// Every wait is bounded by one of these.
const STARTUP_TIMEOUT_MS = 30_000; // kassa serve answering /healthz
const STEP_TIMEOUT_MS = 15_000; // one page action or navigation
const STATUS_TIMEOUT_MS = 15_000; // the return page showing the final status
const FETCH_TIMEOUT_MS = 10_000; // one API call
const STOP_TIMEOUT_MS = 5_000; // kassa exiting after SIGTERM

const CHALLENGE_CARD = '4000 0000 0000 3220';
const DECLINED_CARD = '4000 0000 0000 9995';
const LUHN_INVALID_CARD = '4242 4242 4242 4241';

let kassa; // { base, child, tail(), stop() }
let browser;

// ---------------------------------------------------------------------------------------------
// Kassa

function kassaBin() {
  const bin = process.env.KASSA_BIN;
  if (!bin) {
    throw new Error(
      'KASSA_BIN is not set: point it at a built kassa binary, e.g. ' +
        'KASSA_BIN="$CARGO_TARGET_DIR/debug/kassa" node --test e2e/ (or run bash e2e/run.sh, which builds it)',
    );
  }
  const resolved = path.resolve(bin);
  if (!existsSync(resolved)) {
    throw new Error(`KASSA_BIN=${bin} does not exist (resolved to ${resolved}); build it with cargo build -p kassa`);
  }
  return resolved;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function startKassa() {
  const bin = kassaBin();
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const dir = mkdtempSync(path.join(tmpdir(), 'kassa-e2e-'));
  const lines = [];
  const keep = (chunk) => {
    for (const line of chunk.toString().replace(/\x1b\[[0-9;]*m/g, '').split('\n')) {
      if (line.trim() === '') continue;
      lines.push(line);
      if (lines.length > 200) lines.shift();
    }
  };
  const child = spawn(
    bin,
    ['serve', '--listen', `127.0.0.1:${port}`, '--database-url', `sqlite://${dir}/kassa.db`],
    {
      cwd: dir,
      env: {
        ...process.env,
        KASSA_DEMO_API_KEY: API_KEY,
        KASSA_RATE_LIMIT_RPS: '0',
        KASSA_LOG_FORMAT: 'text',
        NO_COLOR: '1',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exited = null;
  const exitedPromise = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
    child.on('error', (err) => {
      exited = { error: err.message };
      resolve(exited);
    });
  });
  // A test runner killed mid-run must not leave kassa behind.
  const killOnExit = () => child.kill('SIGKILL');
  process.on('exit', killOnExit);

  const handle = {
    base,
    dir,
    child,
    tail: (n = 40) => lines.slice(-n).join('\n'),
    async stop() {
      process.off('exit', killOnExit);
      if (exited === null) {
        child.kill('SIGTERM');
        const done = await Promise.race([exitedPromise, sleep(STOP_TIMEOUT_MS).then(() => null)]);
        if (done === null) {
          child.kill('SIGKILL');
          await Promise.race([exitedPromise, sleep(STOP_TIMEOUT_MS)]);
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };

  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  let lastError = 'no answer yet';
  while (Date.now() < deadline) {
    if (exited !== null) {
      await handle.stop();
      throw new Error(`kassa serve exited before it answered: ${JSON.stringify(exited)}\n--- kassa output ---\n${handle.tail()}`);
    }
    try {
      const res = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(1_000) });
      if (res.ok) return handle;
      lastError = `GET /healthz answered ${res.status}`;
    } catch (err) {
      lastError = err.message;
    }
    await sleep(200);
  }
  await handle.stop();
  throw new Error(
    `kassa serve did not answer GET /healthz within ${STARTUP_TIMEOUT_MS} ms (${lastError})\n--- kassa output ---\n${handle.tail()}`,
  );
}

async function api(method, urlPath, body, headers = {}) {
  const res = await fetch(`${kassa.base}${urlPath}`, {
    method,
    headers: {
      Authorization: `Bearer ${API_KEY}`,
      ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
      ...headers,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text };
}

async function apiOk(method, urlPath, body, headers) {
  const res = await api(method, urlPath, body, headers);
  assert.ok(res.status >= 200 && res.status < 300, `${method} ${urlPath} answered ${res.status}: ${res.text}`);
  return res.json;
}

async function createPlayer(playerId) {
  await apiOk('PUT', `/v1/players/${playerId}`, { currency: 'EUR', country: 'MT' });
}

async function balance(playerId) {
  return apiOk('GET', `/v1/players/${playerId}/balance`);
}

async function initDeposit(playerId, amount) {
  const init = await apiOk(
    'POST',
    '/v1/payments/init',
    {
      amount,
      currency: 'EUR',
      method: 'card',
      player_id: playerId,
      return_url: `${kassa.base}/cashier/return`,
      meta: { country: 'MT' },
    },
    { 'Idempotency-Key': `e2e-${randomUUID()}` },
  );
  assert.ok(init.payment_id, `init answered no payment_id: ${JSON.stringify(init)}`);
  assert.ok(init.redirect_url, `init answered no redirect_url: ${JSON.stringify(init)}`);
  return init;
}

// ---------------------------------------------------------------------------------------------
// The browser

async function newPage() {
  const context = await browser.newContext({ viewport: { width: 800, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.setDefaultNavigationTimeout(STEP_TIMEOUT_MS);
  const consoleLines = [];
  page.on('console', (msg) => consoleLines.push(`console.${msg.type()}: ${msg.text()}`));
  page.on('pageerror', (err) => consoleLines.push(`pageerror: ${err.message}`));
  return { context, page, consoleLines };
}

/** Runs `body(page)`; on failure prints what the page and Kassa showed, then fails. */
async function withPage(name, body) {
  const { context, page, consoleLines } = await newPage();
  try {
    await body(page);
  } catch (err) {
    let text = '(unreadable)';
    try {
      text = (await page.evaluate(() => document.body?.innerText ?? '')).slice(0, 3_000);
    } catch {}
    let shot = '(none)';
    try {
      shot = path.join(ARTIFACTS, `${name}-failure.png`);
      await page.screenshot({ path: shot, fullPage: true, timeout: 5_000 });
    } catch {}
    console.error(
      [
        `=== ${name} failed: ${err.message}`,
        `page URL: ${page.url()}`,
        `page text:\n${text}`,
        `browser console:\n${consoleLines.join('\n') || '(nothing)'}`,
        `failure screenshot: ${shot}`,
        `--- kassa output (tail) ---\n${kassa ? kassa.tail() : '(not started)'}`,
      ].join('\n'),
    );
    throw err;
  } finally {
    await context.close().catch(() => {});
  }
}

async function fillCardForm(page, cardNumber) {
  await page.fill('#card-number', cardNumber);
  await page.fill('#expiry', '12/34');
  await page.fill('#cvc', '123');
  await page.fill('#cardholder', 'E2E Player');
}

/** Waits until the return page's `#status` reads `want` (the page follows it via SSE). */
async function waitForStatus(page, want) {
  try {
    await page.waitForFunction(
      (s) => document.getElementById('status')?.textContent.trim() === s,
      want,
      { timeout: STATUS_TIMEOUT_MS, polling: 100 },
    );
  } catch (err) {
    const shown = await page.locator('#status').textContent({ timeout: 1_000 }).catch(() => '(no #status)');
    throw new Error(`#status did not show "${want}" within ${STATUS_TIMEOUT_MS} ms; it shows "${shown}" (${err.message.split('\n')[0]})`);
  }
}

function paymentIdOf(url) {
  return new URL(url).searchParams.get('payment_id');
}

// ---------------------------------------------------------------------------------------------

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  kassa = await startKassa();
  const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
  if (!existsSync(executablePath)) {
    throw new Error(`no chromium at ${executablePath}: apt-get install -y chromium, or set CHROMIUM_PATH`);
  }
  browser = await chromium.launch({
    executablePath,
    timeout: STARTUP_TIMEOUT_MS,
    args: [
      '--headless=new',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
});

after(async () => {
  await browser?.close().catch(() => {});
  await kassa?.stop();
});

test('a deposit through the card page and a 3-D Secure challenge credits the balance', async () => {
  const player = 'e2e-player';
  await createPlayer(player);
  const init = await initDeposit(player, '25.00');

  await withPage('deposit-captured', async (page) => {
    await page.goto(init.redirect_url);
    const amount = await page.locator('#amount').textContent();
    assert.match(amount, /25\.00/, `#amount shows "${amount}"`);
    assert.match(amount, /EUR|€/, `#amount shows "${amount}"`);

    await fillCardForm(page, CHALLENGE_CARD);
    await page.click('#pay');

    // The challenge card goes to the 3-D Secure page.
    await page.waitForURL(/\/3ds\//);
    await page.screenshot({ path: path.join(ARTIFACTS, '3ds-challenge.png'), fullPage: true });
    await page.fill('#otp', '123456');
    await page.click('#submit-otp');

    // The sandbox sends the browser back to Kassa's return page (303).
    await page.waitForURL((url) => url.pathname === '/cashier/return' && url.searchParams.has('payment_id'));
    assert.equal(paymentIdOf(page.url()), init.payment_id, 'the return page is about another payment');
    await waitForStatus(page, 'captured');
    await page.screenshot({ path: path.join(ARTIFACTS, 'deposit-captured.png'), fullPage: true });
  });

  const payment = await apiOk('GET', `/v1/payments/${init.payment_id}`);
  assert.equal(payment.status, 'captured', JSON.stringify(payment));
  const credited = await balance(player);
  assert.equal(credited.available, '25.00', JSON.stringify(credited));
  assert.equal(credited.currency, 'EUR', JSON.stringify(credited));
});

test('a Luhn-invalid number is refused on the page; a declined card leaves the balance unchanged', async () => {
  const player = 'e2e-player-declined';
  await createPlayer(player);
  const initial = await balance(player);
  const init = await initDeposit(player, '10.00');

  await withPage('deposit-declined', async (page) => {
    await page.goto(init.redirect_url);
    const formUrl = page.url();

    // Luhn-invalid: the form comes back with the error on the field; nothing was paid.
    await fillCardForm(page, LUHN_INVALID_CARD);
    await page.click('#pay');
    await page.locator('#card-number[aria-invalid="true"]').waitFor();
    assert.equal(page.url(), formUrl, 'a refused card number must keep the browser on the card page');
    const alert = (await page.locator('[role="alert"]').first().textContent()).trim();
    assert.ok(alert.length > 0, 'no error summary (role="alert") is shown');
    const describedBy = (await page.getAttribute('#card-number', 'aria-describedby')) ?? '';
    const fieldMessages = [];
    for (const id of describedBy.split(/\s+/).filter(Boolean)) {
      fieldMessages.push(((await page.locator(`[id="${id}"]`).textContent().catch(() => '')) ?? '').trim());
    }
    assert.ok(
      fieldMessages.some((m) => /not valid|invalid|luhn/i.test(m)),
      `no error message linked to #card-number by aria-describedby (${describedBy}): ${JSON.stringify(fieldMessages)}`,
    );
    const html = await page.content();
    assert.ok(!html.includes('4242 4242 4242 4241') && !html.includes('4242424242424241'), 'the page echoes the card number');
    await page.screenshot({ path: path.join(ARTIFACTS, 'card-luhn-invalid.png'), fullPage: true });

    // A declined card, frictionless: straight back to the return page, which ends "declined".
    await fillCardForm(page, DECLINED_CARD);
    await page.click('#pay');
    await page.waitForURL((url) => url.pathname === '/cashier/return' && url.searchParams.has('payment_id'));
    assert.equal(paymentIdOf(page.url()), init.payment_id, 'the return page is about another payment');
    await waitForStatus(page, 'declined');
    await page.screenshot({ path: path.join(ARTIFACTS, 'deposit-declined.png'), fullPage: true });
  });

  const payment = await apiOk('GET', `/v1/payments/${init.payment_id}`);
  assert.equal(payment.status, 'declined', JSON.stringify(payment));
  const afterBalance = await balance(player);
  assert.equal(afterBalance.available, initial.available, `balance moved: ${JSON.stringify(initial)} -> ${JSON.stringify(afterBalance)}`);
  assert.equal(afterBalance.held, initial.held, `held moved: ${JSON.stringify(initial)} -> ${JSON.stringify(afterBalance)}`);
});
