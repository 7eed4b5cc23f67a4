// What the console tests share: Debian's Chromium, a fresh profile per test, sign-in, pictures.
import { chromium } from 'playwright-core';

export const password = process.env.PASSWORD;

export function launch() {
  return chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
}

// A fresh profile; the consoles' certificates come from their own CAs, not the system's.
export async function openPage(browser) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1200, height: 800 } });
  return context.newPage();
}

export async function signInTo(page, base, secret = password) {
  await page.goto(`${base}/console/signin`);
  await page.fill('#password', secret);
  await submit(page, 'button:has-text("Sign in")');
}

export async function shot(page, name) {
  if (process.env.SCREENSHOTS) await page.screenshot({ path: `${process.env.SCREENSHOTS}/${name}.png`, fullPage: true });
}

export const flash = (page) => page.locator('#flash').innerText();

// Clicks what submits a form and waits for the page that answers it. A count taken right after
// a bare click may read the old page, or one still loading (seen under the sanitizers).
export async function submit(page, target) {
  const button = typeof target === 'string' ? page.locator(target) : target;
  await Promise.all([page.waitForEvent('load'), button.click()]);
}

// Runs `probe` every 200 ms until it returns true or `seconds` pass.
export async function eventually(seconds, probe) {
  for (let i = 0; i < seconds * 5; i++) {
    if (await probe()) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return probe();
}
