// cmkfs console with the vault's, in a real browser: the article's "Encryption" steps on a
// mounted store. Keys and access are changed in the vault's console, the store's key in cmkfs's;
// the store is made and mounted with the command line (the console has no init). The
// tests/e2e/console-e2e.sh harness passes VAULT_URL, VAULT_DIR, CONSOLE_URL, CMKFS, WORK.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { launch, openPage, signInTo, shot, flash, eventually, submit } from './console.mjs';

const { VAULT_URL: vaultUrl, VAULT_DIR: vaultDir, CONSOLE_URL: consoleUrl, CMKFS: cmkfs, WORK: work } = process.env;
const store = `${work}/store`, mnt = `${work}/mnt`;
let browser, vault, host;

before(async () => {
  browser = await launch();
  vault = await openPage(browser);
  host = await openPage(browser);
  await signInTo(vault, vaultUrl);
});
after(async () => { await browser?.close(); });

const cli = (...args) => execFileSync(cmkfs, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

// Vault console helpers: the portal's steps.
async function grant(objectId) {
  await vault.goto(`${vaultUrl}/console/policies`);
  await vault.selectOption('#principal', objectId);
  await submit(vault, 'button:has-text("Add")');
  assert.match(await flash(vault), /Access policy saved/);
}
async function removeGrant(objectId) {
  await vault.goto(`${vaultUrl}/console/policies`);
  await submit(vault, vault.locator('#policies tr', { hasText: objectId }).locator('button:has-text("Remove")'));
  assert.match(await flash(vault), /Access policy removed/);
}
async function openStore() {
  await host.goto(`${consoleUrl}/console/store?path=${encodeURIComponent(store)}`);
}
const field = (id) => host.locator(`#${id}`).innerText();
async function changeKey(key, identity) {
  await openStore();
  await host.fill('#new-key', key);
  await host.check(`input[name=identity-type][value=${identity}]`);
  await submit(host, 'button:has-text("Save")');
  assert.match(await flash(host), /wrapped by the new key/);
}
async function expectState(state, seconds) {
  const seen = await eventually(seconds, async () => {
    await openStore();
    return (await field('key-state')) === state;
  });
  assert.ok(seen, `the console shows ${state} within ${seconds}s (shows ${await field('key-state')})`);
}

test('change key with and without a version, to the system identity; revoke and restore seen', async () => {
  // The vault: an identity and a key, the identity and the system identity granted.
  await vault.goto(`${vaultUrl}/console/identities`);
  await vault.fill('#identity-name', 'store-registry');
  await submit(vault, 'button:has-text("Create")');
  const [, clientId, objectId] = (await flash(vault)).match(/client id ([0-9a-f-]{36}), object id ([0-9a-f-]{36})/);
  const systemId = (await vault.locator('#identities tr', { hasText: 'System-assigned' }).locator('td').nth(2).innerText()).trim();
  await vault.goto(`${vaultUrl}/console/keys`);
  await vault.fill('#key-name', 'store-cmk');
  await submit(vault, 'button:has-text("Create")');
  const keyId = await vault.locator('#key-id').innerText();
  await grant(objectId);
  await grant(systemId);

  // A store under the user-assigned identity, mounted with checks every second.
  cli('init', store, '--key-encryption-key', keyId, '--identity', clientId, '--identity-endpoint',
      `${vaultUrl}/metadata/identity/oauth2/token`, '--vault-ca', `${vaultDir}/ca.pem`, '--audit-log',
      `${work}/store-audit.jsonl`);
  cli('mount', store, mnt, '--key-check-interval', '1s', '--audit-log', `${work}/store-audit.jsonl`, '--log-file',
      `${work}/store.log`);

  // The host's stores: this one, mounted, its key available. (Signed in now: the console's
  // sessions here end after a few idle seconds, for the expiry test.)
  await signInTo(host, consoleUrl);
  await host.goto(`${consoleUrl}/console/stores`);
  const row = host.locator('#stores tr', { hasText: store });
  assert.match(await row.innerText(), /available/);
  await submit(host, row.locator('a'));
  assert.equal(await field('key-identifier'), keyId);
  assert.equal(await field('identity'), clientId);
  assert.match(await field('rotation'), /automatic/);

  // Change key with a version: a new version made in the vault, pinned here (manual rotation).
  await vault.goto(`${vaultUrl}/console/keys/store-cmk`);
  await submit(vault, 'button:has-text("New version")');
  const v2 = await vault.locator('#versions tr').nth(1).locator('td code').innerText();
  await changeKey(v2, 'keep');
  assert.equal(await field('versioned-key'), v2);
  assert.match(await field('rotation'), /manual/);
  // And without one: the latest is followed (automatic rotation).
  await changeKey(keyId, 'keep');
  assert.match(await field('rotation'), /automatic/);
  // To the vault's system-assigned identity.
  await changeKey(keyId, 'system');
  assert.equal(await field('identity'), '[system]');
  await expectState('available', 5);
  await shot(host, 'cmkfs-console-store');

  // Revoke: remove the system identity's access policy; the console shows it within two checks.
  await removeGrant(systemId);
  await expectState('revoked', 3.5);
  assert.ok(await host.locator('#timeline circle.event-revoke').count() >= 1, 'the timeline marks the revocation');
  await shot(host, 'cmkfs-console-revoked');
  // Restore: grant it again; the mount serves, no remount.
  await grant(systemId);
  await expectState('available', 3.5);
  assert.ok(await host.locator('#timeline circle.event-restore').count() >= 1, 'the timeline marks the restore');

  // Data-key rotation from the console: a new generation, the mount re-encrypting behind it.
  await openStore();
  assert.equal(await field('generation'), '1');
  await submit(host, 'button:has-text("Rotate the data key")');
  assert.match(await flash(host), /A new data key is in use/);
  assert.ok(await eventually(5, async () => { await openStore(); return (await field('generation')) === '2'; }),
            `the console shows data-key generation 2 (shows ${await field('generation')})`);
  await host.goto(`${consoleUrl}/console/stores`);
  await shot(host, 'cmkfs-console-stores');
});

test('a store the console does not know is not acted on', async () => {
  await host.goto(`${consoleUrl}/console/store?path=${encodeURIComponent('/etc')}`);
  assert.match(await host.locator('main').innerText(), /Not a store this console knows/);
  // A forged change-key form naming another path, with a valid token: refused all the same.
  await openStore();
  await host.locator('input[name=path]').first().evaluate((e) => { e.value = '/tmp'; });
  await host.fill('#new-key', 'https://example.invalid/keys/x');
  await submit(host, 'button:has-text("Save")');
  assert.match(await flash(host), /Not a store this console knows/);
});

test('an idle session expires and asks to sign in again', async () => {
  const page = await openPage(browser);
  await signInTo(page, consoleUrl);
  await new Promise((r) => setTimeout(r, Number(process.env.SESSION_IDLE_SECONDS) * 1000 + 1500));
  await submit(page, 'header >> text=Stores');
  assert.match(page.url(), /\/console\/signin/);
  assert.match(await flash(page), /session expired/);
  await page.context().close();
});
