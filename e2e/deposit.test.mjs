// A deposit made in real headless Chromium through the sandbox PSP's hosted card page and its
// 3-D Secure page ends with the player's balance credited.
//
// Starts the real `kassa serve` binary (KASSA_BIN) on a free port with a fresh SQLite database,
// drives Debian's chromium (CHROMIUM_PATH, default /usr/bin/chromium) with playwright-core, and
// checks the outcome through Kassa's API. Run with `bash e2e/run.sh` or `node --test e2e/`.

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
  startAll,
  stopAll,
  waitForStatus,
  withPage,
} from './harness.mjs';

const CHALLENGE_CARD = '4000 0000 0000 3220';
const DECLINED_CARD = '4000 0000 0000 9995';
const LUHN_INVALID_CARD = '4242 4242 4242 4241';

async function fillCardForm(page, cardNumber) {
  await page.fill('#card-number', cardNumber);
  await page.fill('#expiry', '12/34');
  await page.fill('#cvc', '123');
  await page.fill('#cardholder', 'E2E Player');
}

before(() => startAll());

after(() => stopAll());

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
