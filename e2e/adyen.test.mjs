// A deposit through an Adyen account (issue 17) in real headless Chromium: Kassa's
// `POST /v1/payments/init` answers the Adyen simulator's hosted payment page; the player types
// the 3-D Secure 2 test card, answers the challenge with Adyen's test password, comes back to
// Kassa's `/cashier/return`, and the AUTHORISATION notification captures the payment.
//
// Starts `kassa serve` with a config file naming one `adyen` account without a `base_url`, so
// Kassa runs the Adyen simulator in-process. Run with `bash e2e/run.sh` or `node --test e2e/`.

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

const THREE_DS2_CARD = '4212 3456 7890 1237';
const CHALLENGE_PASSWORD = 'password';
const STOLEN_CARD = '4000 3000 1111 2220';

let configDir;

before(async () => {
  configDir = mkdtempSync(path.join(tmpdir(), 'kassa-e2e-adyen-'));
  const config = path.join(configDir, 'kassa.toml');
  writeFileSync(
    config,
    `[[providers.accounts]]
id = "adyen"
merchant = "mch_demo"
kind = "adyen"
name = "Adyen (simulated)"
credentials = { api_key = "AQE_e2e_api_key", hmac_key = "9F3C1A2B4D5E6F708192A3B4C5D6E7F8091A2B3C4D5E6F708192A3B4C5D6E7F8" }
settings = { base_url = "", merchant_account = "KassaE2E" }
`,
  );
  await startAll({ args: ['--config', config] });
});

after(async () => {
  await stopAll();
  if (configDir) rmSync(configDir, { recursive: true, force: true });
});

async function fillCard(page, number) {
  await page.fill('#card_number', number);
  await page.fill('#expiry', '12/34');
  await page.fill('#cvc', '737');
  await page.fill('#cardholder', 'Ada Lovelace');
  await page.click('#pay');
}

test('a 3-D Secure 2 card passes the challenge on the hosted page and is captured', async () => {
  const player = 'e2e-adyen';
  await createPlayer(player);
  const init = await initDeposit(player, '25.00');
  assert.equal(init.provider, 'adyen', JSON.stringify(init));
  assert.match(init.redirect_url, /\/hpp\//, `not the hosted payment page: ${init.redirect_url}`);

  await withPage('adyen-3ds2-captured', async (page) => {
    await page.goto(init.redirect_url);
    assert.equal(await page.locator('#amount').textContent(), '2500 EUR');
    await fillCard(page, THREE_DS2_CARD);
    await page.waitForURL((url) => url.pathname.startsWith('/3ds/'));
    await page.screenshot({ path: path.join(ARTIFACTS, 'adyen-3ds2-challenge.png'), fullPage: true });
    await page.fill('#otp', CHALLENGE_PASSWORD);
    await page.click('#submit-otp');
    await page.waitForURL((url) => url.pathname === '/cashier/return');
    assert.equal(paymentIdOf(page.url()), init.payment_id);
    assert.ok(new URL(page.url()).searchParams.get('redirectResult'), page.url());
    await waitForStatus(page, 'captured');
    await page.screenshot({ path: path.join(ARTIFACTS, 'adyen-captured.png'), fullPage: true });
  });
  assert.equal((await balance(player)).available, '25.00');
});

test('a stolen card is refused on the hosted page and leaves the balance unchanged', async () => {
  const player = 'e2e-adyen-refused';
  await createPlayer(player);
  const init = await initDeposit(player, '10.00');
  await withPage('adyen-refused', async (page) => {
    await page.goto(init.redirect_url);
    await fillCard(page, STOLEN_CARD);
    await page.waitForURL((url) => url.pathname === '/cashier/return');
    await waitForStatus(page, 'declined');
  });
  const payment = await apiOk('GET', `/v1/payments/${init.payment_id}`);
  assert.equal(payment.failure_reason, 'stolen_card', JSON.stringify(payment));
  assert.equal((await balance(player)).available, '0.00');
});
