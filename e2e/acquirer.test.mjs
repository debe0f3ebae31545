// Card deposits through Kassa's own card page to a direct ISO 8583 acquirer (issue 20, ADRs 49
// and 50), in real headless Chromium: the page checks the Luhn digit before sending; an
// approved card is charged by a `0200` to `kassa sim iso8583` and credits the player; a saved
// card pays the next deposit with one click.
//
// Starts `kassa sim iso8583` and `kassa serve` (with a config file naming the acquirer account
// and a vault key) on free ports. Run with `bash e2e/run.sh` or `node --test e2e/`.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';

import {
  ARTIFACTS,
  apiOk,
  balance,
  createPlayer,
  initDeposit,
  paymentIdOf,
  startWithAcquirerHost,
  state,
  waitForStatus,
  withPage,
} from './harness.mjs';

const APPROVED_CARD = '4000 0000 0000 0002';
const INSUFFICIENT_FUNDS_CARD = '4000 0000 0000 0051';
const LUHN_INVALID_CARD = '4000 0000 0000 0003';
// A vault master key for this test only: 32 bytes in base64.
const VAULT_KEY = Buffer.alloc(32, 7).toString('base64');

let stop; // stops kassa serve and the host simulator

before(async () => {
  stop = await startWithAcquirerHost(
    (address) => `[[providers.accounts]]
id = "acquirer"
merchant = "mch_demo"
kind = "iso8583"
name = "Direct acquirer"
credentials = {}
settings = { address = "${address}", terminal_id = "E2E00001", card_acceptor_id = "KASSA-E2E" }

[vault]
master_keys = { k1 = "${VAULT_KEY}" }
active_key = "k1"
`,
  );
});

after(async () => {
  await stop?.();
});

async function fillCard(page, number) {
  await page.fill('#number', number);
  await page.fill('#expiry', '12/34');
  await page.fill('#cvc', '123');
}

test('the card page refuses a Luhn-invalid number, then an approved card is charged, saved and credited', async () => {
  const player = 'e2e-acquirer';
  await createPlayer(player);
  const init = await initDeposit(player, '25.00');
  assert.match(init.redirect_url, /\/pay\/card\//, `not Kassa's card page: ${init.redirect_url}`);

  await withPage('acquirer-captured', async (page) => {
    await page.goto(init.redirect_url);
    const title = await page.locator('h1').textContent();
    assert.match(title, /25\.00/, `the page shows "${title}"`);

    // Refused in the page itself: the form is not sent.
    await fillCard(page, LUHN_INVALID_CARD);
    await page.click('#pay');
    await page.locator('#error:not([hidden])').waitFor();
    assert.match(await page.locator('#error').textContent(), /not valid/);
    assert.equal(page.url(), init.redirect_url, 'a refused number must keep the browser on the page');
    await page.screenshot({ path: path.join(ARTIFACTS, 'acquirer-luhn-invalid.png'), fullPage: true });

    await fillCard(page, APPROVED_CARD);
    await page.check('#save');
    await page.click('#pay');
    await page.waitForURL((url) => url.pathname === '/cashier/return');
    assert.equal(paymentIdOf(page.url()), init.payment_id);
    await waitForStatus(page, 'captured');
    await page.screenshot({ path: path.join(ARTIFACTS, 'acquirer-captured.png'), fullPage: true });
  });
  assert.equal((await balance(player)).available, '25.00');

  // The returning player pays with the saved card.
  const again = await initDeposit(player, '5.00');
  await withPage('acquirer-saved-card', async (page) => {
    await page.goto(again.redirect_url);
    const saved = page.locator('button.saved');
    assert.match(await saved.textContent(), /•••• 0002 \(12\/34\)/);
    const html = await page.content();
    assert.ok(!html.includes('4000000000000002'), 'the page shows the card number');
    await saved.click();
    await page.waitForURL((url) => url.pathname === '/cashier/return');
    await waitForStatus(page, 'captured');
  });
  assert.equal((await balance(player)).available, '30.00');
  assert.ok(!state.kassa.tail(200).includes('4000000000000002'), 'the card number is in the log');
});

test('a card the issuer refuses leaves the balance unchanged', async () => {
  const player = 'e2e-acquirer-declined';
  await createPlayer(player);
  const init = await initDeposit(player, '10.00');
  await withPage('acquirer-declined', async (page) => {
    await page.goto(init.redirect_url);
    await fillCard(page, INSUFFICIENT_FUNDS_CARD);
    await page.click('#pay');
    await page.waitForURL((url) => url.pathname === '/cashier/return');
    await waitForStatus(page, 'declined');
  });
  const payment = await apiOk('GET', `/v1/payments/${init.payment_id}`);
  assert.equal(payment.failure_reason, 'insufficient_funds', JSON.stringify(payment));
  assert.equal((await balance(player)).available, '0.00');
});
