// A deposit through a Stripe-kind account (issue 17, ADR 59) in real headless Chromium: the
// account confirms with Stripe's 3-D Secure test card, so the player meets the Stripe
// simulator's challenge page, completes it, lands on Kassa's return page (Stripe's
// `redirect_status` added) and sees the deposit captured by the simulator's signed event.
//
// `kassa serve` runs the Stripe simulator in-process for the account, which names no
// `base_url`. Run with `bash e2e/run.sh` or `node --test e2e/`.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import {
  ARTIFACTS,
  apiOk,
  balance,
  createPlayer,
  initDeposit,
  paymentIdOf,
  startAll,
  stopAll,
  waitForStatus,
  withPage,
} from './harness.mjs';

let configDir;

before(async () => {
  configDir = mkdtempSync(path.join(tmpdir(), 'kassa-e2e-stripe-'));
  const config = path.join(configDir, 'kassa.toml');
  writeFileSync(
    config,
    `[[providers.accounts]]
id = "stripe"
merchant = "mch_demo"
kind = "stripe"
name = "Stripe (simulator)"
credentials = { secret_key = "sk_test_e2e_stripe", webhook_secret = "whsec_e2e_stripe" }
settings = { payment_method = "pm_card_threeDSecure2Required" }

[sandbox]
webhook_delay_ms = 50
`,
  );
  await startAll({ args: ['--config', config] });
});

after(async () => {
  await stopAll();
  if (configDir) rmSync(configDir, { recursive: true, force: true });
});

test('a Stripe deposit passes the 3-D Secure challenge page and is captured by Stripe\'s event', async () => {
  const player = 'e2e-stripe';
  await createPlayer(player);
  const init = await initDeposit(player, '30.00');
  assert.match(init.redirect_url, /\/3ds\/pi_/, `not the Stripe challenge page: ${init.redirect_url}`);

  await withPage('stripe-3ds', async (page) => {
    await page.goto(init.redirect_url);
    assert.match(await page.locator('h1').textContent(), /3D Secure/);
    await page.screenshot({ path: path.join(ARTIFACTS, 'stripe-3ds-challenge.png'), fullPage: true });
    await page.click('#complete');
    await page.waitForURL((url) => url.pathname === '/cashier/return' && url.searchParams.has('payment_id'));
    const landed = new URL(page.url());
    assert.equal(paymentIdOf(page.url()), init.payment_id, 'the return page is about another payment');
    assert.equal(landed.searchParams.get('redirect_status'), 'succeeded');
    assert.match(landed.searchParams.get('payment_intent') ?? '', /^pi_/);
    await waitForStatus(page, 'captured');
    await page.screenshot({ path: path.join(ARTIFACTS, 'stripe-captured.png'), fullPage: true });
  });

  const payment = await apiOk('GET', `/v1/payments/${init.payment_id}`);
  assert.equal(payment.status, 'captured', JSON.stringify(payment));
  assert.equal(payment.provider, 'stripe', JSON.stringify(payment));
  assert.equal((await balance(player)).available, '30.00');
});
