// A card deposit through Kassa's own card page to a direct ISO 8583 acquirer with 3-D Secure 2
// (issue 20 item 4, ADRs 67 and 68), in real headless Chromium: the card page sends the AReq
// to the embedded Directory Server (the account says `threeds = true` and names none), the
// browser is carried to the ACS's challenge page, the player types the code, the ACS sends its
// RReq to Kassa and posts the `cres` back through the browser, and Kassa's `0200` to
// `kassa sim iso8583` carries the ECI and CAVV (the host refuses this card without them).
// A wrong code ends the deposit declined with nothing sent to the acquirer.
//
// Starts `kassa sim iso8583` and `kassa serve` (with a config file naming the acquirer account)
// on free ports. Run with `bash e2e/run.sh` or `node --test e2e/`.

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

// The 3-D Secure simulator's challenge card (its code is 1234); the host wants 3-D Secure for it.
const CHALLENGE_CARD = '4000 0000 0000 3204';
const CHALLENGE_CODE = '1234';

let stop; // stops kassa serve and the host simulator

before(async () => {
  stop = await startWithAcquirerHost(
    (address) => `[[providers.accounts]]
id = "acquirer"
merchant = "mch_demo"
kind = "iso8583"
name = "Direct acquirer with 3-D Secure"
credentials = {}
settings = { address = "${address}", terminal_id = "E2E00003", card_acceptor_id = "KASSA-E2E-3DS", threeds = true }
`,
  );
});

after(async () => {
  await stop?.();
});

/** Types the challenge card on Kassa's card page and follows the browser to the ACS. */
async function payToChallenge(page, redirectUrl) {
  await page.goto(redirectUrl);
  await page.fill('#number', CHALLENGE_CARD);
  await page.fill('#expiry', '12/34');
  await page.fill('#cvc', '123');
  await page.click('#pay');
  // Kassa's page posts the creq to the ACS, whose page asks for the code.
  await page.locator('#code').waitFor();
  assert.match(await page.locator('h1').textContent(), /Confirm your payment/);
}

test('a 3-D Secure challenge passed in the browser, then the 0200 is approved and credited', async () => {
  const player = 'e2e-acquirer-3ds';
  await createPlayer(player);
  const init = await initDeposit(player, '25.00');
  assert.match(init.redirect_url, /\/pay\/card\//, `not Kassa's card page: ${init.redirect_url}`);

  await withPage('acquirer-3ds-passed', async (page) => {
    await payToChallenge(page, init.redirect_url);
    await page.screenshot({ path: path.join(ARTIFACTS, 'acquirer-3ds-challenge.png'), fullPage: true });
    await page.fill('#code', CHALLENGE_CODE);
    await page.click('#confirm');
    // The ACS posts the cres back to Kassa, which authorizes and sends the player on.
    await page.waitForURL((url) => url.pathname === '/cashier/return');
    assert.equal(paymentIdOf(page.url()), init.payment_id);
    await waitForStatus(page, 'captured');
    await page.screenshot({ path: path.join(ARTIFACTS, 'acquirer-3ds-captured.png'), fullPage: true });
  });
  assert.equal((await balance(player)).available, '25.00');
  assert.ok(!state.kassa.tail(200).includes('4000000000003204'), 'the card number is in the log');
});

test('a failed challenge declines the deposit without an authorization', async () => {
  const player = 'e2e-acquirer-3ds-failed';
  await createPlayer(player);
  const init = await initDeposit(player, '10.00');
  await withPage('acquirer-3ds-failed', async (page) => {
    await payToChallenge(page, init.redirect_url);
    await page.fill('#code', '0000');
    await page.click('#confirm');
    await page.waitForURL((url) => url.pathname === '/cashier/return');
    await waitForStatus(page, 'declined');
  });
  const payment = await apiOk('GET', `/v1/payments/${init.payment_id}`);
  assert.equal(payment.failure_reason, 'authentication_failed', JSON.stringify(payment));
  assert.equal(payment.provider_reference ?? null, `card-page:${init.payment_id}`, 'no authorization was sent');
  assert.equal((await balance(player)).available, '0.00');
});
