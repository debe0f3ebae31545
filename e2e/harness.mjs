// What the browser end-to-end tests share: the real `kassa serve` binary (KASSA_BIN) on a free
// port with a fresh SQLite database, its API, and Debian's chromium (CHROMIUM_PATH) through
// playwright-core, with a failure report of what the page and Kassa showed.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ARTIFACTS = path.join(HERE, 'artifacts');
export const API_KEY = 'sk_test_e2e_key_000000000001';

// Every wait is bounded by one of these.
export const STARTUP_TIMEOUT_MS = 30_000; // kassa serve answering /healthz
export const STEP_TIMEOUT_MS = 15_000; // one page action or navigation
export const STATUS_TIMEOUT_MS = 15_000; // the return page showing the final status
export const FETCH_TIMEOUT_MS = 10_000; // one API call
export const STOP_TIMEOUT_MS = 5_000; // kassa exiting after SIGTERM

/** The Kassa process and the browser of this test file (each file runs in its own process). */
export const state = { kassa: null, browser: null };

// ---------------------------------------------------------------------------------------------
// Kassa

export function kassaBin() {
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

export function freePort() {
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

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Starts `kassa sim iso8583` on a free port and `kassa serve` with a config file whose
 * `[[providers.accounts]]` is `accountToml(hostAddress)` (it names the host's address);
 * answers a function that stops both and removes the config.
 */
export async function startWithAcquirerHost(accountToml) {
  const simPort = await freePort();
  const sim = spawn(kassaBin(), ['sim', 'iso8583', '--listen', `127.0.0.1:${simPort}`], {
    stdio: 'ignore',
  });
  await waitForPort(simPort);
  const configDir = mkdtempSync(path.join(tmpdir(), 'kassa-e2e-acquirer-'));
  const config = path.join(configDir, 'kassa.toml');
  writeFileSync(config, accountToml(`127.0.0.1:${simPort}`));
  await startAll({ args: ['--config', config] });
  return async () => {
    await stopAll();
    sim.kill('SIGTERM');
    rmSync(configDir, { recursive: true, force: true });
  };
}

/** Resolves once something accepts TCP connections on 127.0.0.1:`port` (a simulator started). */
export async function waitForPort(port) {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const open = await new Promise((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    await sleep(100);
  }
  throw new Error(`nothing listens on 127.0.0.1:${port} after ${STARTUP_TIMEOUT_MS} ms`);
}

/**
 * Starts `kassa serve` on a free port with a fresh SQLite database; `args` and `env` are added
 * (e.g. `--config FILE`).
 */
export async function startKassa({ args = [], env = {} } = {}) {
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
    ['serve', '--listen', `127.0.0.1:${port}`, '--database-url', `sqlite://${dir}/kassa.db`, ...args],
    {
      cwd: dir,
      env: {
        ...process.env,
        KASSA_DEMO_API_KEY: API_KEY,
        KASSA_RATE_LIMIT_RPS: '0',
        KASSA_LOG_FORMAT: 'text',
        NO_COLOR: '1',
        ...env,
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

export async function api(method, urlPath, body, headers = {}) {
  const res = await fetch(`${state.kassa.base}${urlPath}`, {
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

export async function apiOk(method, urlPath, body, headers) {
  const res = await api(method, urlPath, body, headers);
  assert.ok(res.status >= 200 && res.status < 300, `${method} ${urlPath} answered ${res.status}: ${res.text}`);
  return res.json;
}

export async function createPlayer(playerId) {
  await apiOk('PUT', `/v1/players/${playerId}`, { currency: 'EUR', country: 'MT' });
}

export async function balance(playerId) {
  return apiOk('GET', `/v1/players/${playerId}/balance`);
}

export async function initDeposit(playerId, amount) {
  const init = await apiOk(
    'POST',
    '/v1/payments/init',
    {
      amount,
      currency: 'EUR',
      method: 'card',
      player_id: playerId,
      return_url: `${state.kassa.base}/cashier/return`,
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

export async function newPage() {
  const context = await state.browser.newContext({ viewport: { width: 800, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.setDefaultNavigationTimeout(STEP_TIMEOUT_MS);
  const consoleLines = [];
  page.on('console', (msg) => consoleLines.push(`console.${msg.type()}: ${msg.text()}`));
  page.on('pageerror', (err) => consoleLines.push(`pageerror: ${err.message}`));
  return { context, page, consoleLines };
}

/** Runs `body(page)`; on failure prints what the page and Kassa showed, then fails. */
export async function withPage(name, body) {
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
        `--- kassa output (tail) ---\n${state.kassa ? state.kassa.tail() : '(not started)'}`,
      ].join('\n'),
    );
    throw err;
  } finally {
    await context.close().catch(() => {});
  }
}

/** Waits until the return page's `#status` reads `want` (the page follows it via SSE). */
export async function waitForStatus(page, want) {
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

export function paymentIdOf(url) {
  return new URL(url).searchParams.get('payment_id');
}

// ---------------------------------------------------------------------------------------------

/** Starts Kassa (with `options`, see `startKassa`) and chromium for this test file. */
export async function startAll(options) {
  mkdirSync(ARTIFACTS, { recursive: true });
  state.kassa = await startKassa(options);
  const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
  if (!existsSync(executablePath)) {
    throw new Error(`no chromium at ${executablePath}: apt-get install -y chromium, or set CHROMIUM_PATH`);
  }
  state.browser = await chromium.launch({
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
}

/** Closes chromium and stops Kassa. */
export async function stopAll() {
  await state.browser?.close().catch(() => {});
  await state.kassa?.stop();
}
