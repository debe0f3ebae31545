// KYC step-up in real headless Chromium: a withdrawal refused with a verification_url, the
// sandbox ID provider's hosted page filled in and submitted in the browser, its signed
// webhook applied by Kassa, and the withdrawal then accepted (docs/kyc.md).
//
// Starts the real `kassa serve` binary (KASSA_BIN) with a fresh SQLite database and its
// embedded sandbox ID provider. Run with `bash e2e/run.sh` or `node --test e2e/`.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import path from 'node:path';

import { ARTIFACTS, api, apiOk, sleep, startAll, stopAll, withPage, STATUS_TIMEOUT_MS } from './harness.mjs';

before(() => startAll());

after(() => stopAll());

function requestPayout(playerId, amount) {
  return api(
    'POST',
    '/v1/payouts/init',
    { amount, currency: 'EUR', method: 'card', player_id: playerId },
    { 'Idempotency-Key': `e2e-${randomUUID()}` },
  );
}

async function waitForKyc(playerId, predicate) {
  const deadline = Date.now() + STATUS_TIMEOUT_MS;
  let last;
  while (Date.now() < deadline) {
    last = await apiOk('GET', `/v1/players/${playerId}/kyc`);
    if (predicate(last)) return last;
    await sleep(100);
  }
  assert.fail(`the KYC check did not complete in time: ${JSON.stringify(last)}`);
}

test('a withdrawal refused for KYC goes through once the player verifies on the hosted page', async () => {
  const player = 'e2e-kyc-player';
  await apiOk('PUT', `/v1/players/${player}`, { currency: 'EUR', country: 'MT', jurisdiction: 'MT' });
  await apiOk(
    'POST',
    '/v1/wallet/credit',
    { txn_id: `e2e-fund-${randomUUID()}`, player_id: player, amount: '50.00', currency: 'EUR' },
  );

  const refused = await requestPayout(player, '20.00');
  assert.equal(refused.status, 403, refused.text);
  assert.equal(refused.json.error, 'kyc_required', refused.text);
  const url = refused.json.details.verification_url;
  assert.ok(url, `no verification_url: ${refused.text}`);

  await withPage('kyc-verification', async (page) => {
    await page.goto(url);
    await page.fill('#first_name', 'Ada');
    await page.fill('#last_name', 'Lovelace');
    await page.fill('#birth_date', '1990-12-10');
    await page.fill('#document_number', 'P1234567');
    await page.selectOption('#document_country', 'SE');
    await page.fill('#document_file', 'passport.jpg');
    await page.screenshot({ path: path.join(ARTIFACTS, 'kyc-form.png'), fullPage: true });
    await page.click('#submit');
    await page.locator('#submitted').waitFor();
  });

  const kyc = await waitForKyc(player, (view) => view.levels.basic !== 'pending');
  assert.equal(kyc.levels.basic, 'verified', JSON.stringify(kyc));
  assert.equal(kyc.kyc_status, 'verified', JSON.stringify(kyc));
  assert.equal(kyc.kyc_country, 'SE', JSON.stringify(kyc));
  assert.ok(kyc.history[0].time_to_verify_ms >= 0, JSON.stringify(kyc));

  const accepted = await requestPayout(player, '20.00');
  assert.ok(accepted.status >= 200 && accepted.status < 300, accepted.text);
  assert.notEqual(accepted.json.status, 'rejected', accepted.text);
});
