// The vault's console in a real browser (Debian's Chromium, headless, driven by playwright-core):
// the article's portal steps clicked through, and sign-in, session and CSRF refusals.
// Run by tests/e2e/console-e2e.sh, which starts the vault and passes VAULT_URL, PASSWORD and
// (optionally) SCREENSHOTS, a directory for the README's pictures. Helpers: console.mjs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, openPage, signInTo, shot, flash, submit } from './console.mjs';

const url = process.env.VAULT_URL;
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });
const newPage = () => openPage(browser);
const signIn = (page, secret) => signInTo(page, url, secret);

test('a wrong password is refused, the right one signs in', async () => {
  const page = await newPage();
  await page.goto(`${url}/console/keys`);
  assert.match(page.url(), /\/console\/signin/);  // nothing without a session
  await signIn(page, 'not the password');
  assert.match(await flash(page), /Wrong password/);
  await signIn(page);
  assert.match(page.url(), /\/console\/keys$/);
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === '__Host-cmkfs-vault-session');
  assert.ok(session, 'a session cookie');
  assert.equal(session.httpOnly, true);
  assert.equal(session.secure, true);
  assert.equal(session.sameSite, 'Strict');
  assert.equal(session.path, '/');
  // A link cannot put its own words on the page: only the session's messages show.
  await page.goto(`${url}/console/keys?msg=Your+password+expired&err=1`);
  assert.equal(await page.locator('#flash').count(), 0);
  await page.context().close();
});

test('the portal steps: identity, key, versions, access policy, networking, audit', async () => {
  const page = await newPage();
  await signIn(page);

  // Managed identities > Create: the client and object ids are shown.
  await submit(page, 'header >> text=Identities');
  await page.fill('#identity-name', 'registry');
  await submit(page, 'button:has-text("Create")');
  assert.match(await flash(page), /Identity registry: client id [0-9a-f-]{36}, object id [0-9a-f-]{36}/);
  const row = page.locator('#identities tr', { hasText: 'registry' });
  assert.equal(await row.locator('td').nth(3).innerText(), 'User-assigned');
  const objectId = (await row.locator('td').nth(2).innerText()).trim();
  await shot(page, 'vault-console-identities');

  // Keys > Generate: RSA, then a new version; EC too.
  await submit(page, 'header >> text=Keys');
  await page.fill('#key-name', 'cmk');
  await page.selectOption('#key-type', 'RSA');
  await submit(page, 'button:has-text("Create")');
  assert.match(await flash(page), /Created key cmk/);
  assert.equal(await page.locator('#versions tr').count(), 2);  // header + one version
  await submit(page, 'button:has-text("New version")');
  assert.equal(await page.locator('#versions tr').count(), 3);
  // Disable the older version, then enable it again.
  await submit(page, page.locator('#versions tr').nth(2).locator('button:has-text("Disable")'));
  assert.equal(await page.locator('#versions tr').nth(2).locator('td').nth(1).innerText(), 'no');
  await submit(page, page.locator('#versions tr').nth(2).locator('button:has-text("Enable")'));
  assert.equal(await page.locator('#versions tr').nth(2).locator('td').nth(1).innerText(), 'yes');
  await shot(page, 'vault-console-key');
  await submit(page, 'header >> text=Keys');
  await page.fill('#key-name', 'signing');
  await page.selectOption('#key-type', 'EC');
  await submit(page, 'button:has-text("Create")');
  await submit(page, 'header >> text=Keys');
  assert.equal(await page.locator('#keys tr', { hasText: 'signing' }).locator('td').nth(1).innerText(), 'EC');

  // Delete and recover; purge protection is shown and purge not offered.
  await submit(page, '#keys >> text=signing');
  await submit(page, 'button:has-text("Delete key")');
  assert.match(await page.locator('#purge-protection').innerText(), /on/);
  const deleted = page.locator('#deleted-keys tr', { hasText: 'signing' });
  assert.match(await deleted.innerText(), /purge protected/);
  await submit(page, deleted.locator('button:has-text("Recover")'));
  assert.match(await flash(page), /Recovered signing/);
  await submit(page, 'header >> text=Keys');
  await shot(page, 'vault-console-keys');

  // Access policies > Add: get, wrap key, unwrap key (checked by default) to the identity.
  await submit(page, 'header >> text=Access policies');
  await page.selectOption('#principal', objectId);
  await submit(page, 'button:has-text("Add")');
  const policy = page.locator('#policies tr', { hasText: objectId });
  assert.equal(await policy.locator('td').nth(2).innerText(), 'get, unwrapKey, wrapKey');
  await shot(page, 'vault-console-policies');

  // Networking: selected networks only, trusted services bypass, one rule; then back.
  await submit(page, 'header >> text=Networking');
  await page.check('input[name=defaultAction][value=Deny]');
  await submit(page, 'button:has-text("Save")');
  await page.fill('#ip-rule', '10.1.2.3/8');
  await submit(page, 'button:has-text("Add")');
  assert.equal(await page.locator('#ip-rules td code').innerText(), '10.0.0.0/8');
  assert.ok(await page.isChecked('input[name=defaultAction][value=Deny]'));
  await shot(page, 'vault-console-networking');
  await page.fill('#ip-rule', 'not-an-address');
  await submit(page, 'button:has-text("Add")');
  assert.match(await flash(page), /not an IP address/);
  await submit(page, page.locator('#ip-rules tr', { hasText: '10.0.0.0/8' }).locator('button:has-text("Remove")'));
  await page.check('input[name=defaultAction][value=Allow]');
  await submit(page, 'button:has-text("Save")');
  assert.equal(await page.locator('#ip-rules td code').count(), 0);

  // Audit log, filtered by operation: the console's key creations, with the admin.
  await submit(page, 'header >> text=Audit log');
  await page.fill('input[name=operation]', 'console:create');
  await submit(page, 'button:has-text("Filter")');
  const rows = page.locator('#audit tr');
  for (const key of ['cmk', 'signing']) {
    assert.match(await rows.filter({ hasText: key }).first().innerText(), /console \/ admin/);
  }
  await page.fill('input[name=key]', 'cmk');
  await submit(page, 'button:has-text("Filter")');
  assert.equal(await rows.count(), 2);
  await shot(page, 'vault-console-audit');

  // Revoke by removing the access policy.
  await submit(page, 'header >> text=Access policies');
  await submit(page, page.locator('#policies tr', { hasText: objectId }).locator('button:has-text("Remove")'));
  assert.match(await flash(page), /Access policy removed/);
  await page.context().close();
});

test('a form posted without its CSRF token is refused and changes nothing', async () => {
  const page = await newPage();
  await signIn(page);
  await submit(page, 'header >> text=Identities');
  await page.fill('#identity-name', 'forged');
  // As a forged form would arrive: the same fields, no token.
  await page.locator('form:has(#identity-name) input[name=csrf]').evaluate((e) => e.remove());
  await submit(page, 'button:has-text("Create")');
  assert.match(await flash(page), /without its CSRF token: refused/);
  await page.goto(`${url}/console/identities`);
  assert.equal(await page.locator('#identities tr', { hasText: 'forged' }).count(), 0);
  await page.context().close();
});
