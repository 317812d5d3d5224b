#!/usr/bin/env node
// Drives the portal page of a running mailpushd in Debian's Chromium (headless, puppeteer-core):
// a refused upload shows the API's message by its field, a creation shows the once-only keys and
// the certificate's days left, and the status of a certificate 10 days from its end is coloured.
// Run by tests/browser/portal_page_test.cpp, which starts mailpushd and moves the certificate's end
// between the steps (the --created-file / --moved-file handshake). Exits 0 only when every check
// held; prints no secret (password, invite code, keys).
'use strict';

const fs = require('node:fs');
const path = require('node:path');

const STEP_MS = 30_000; // every wait is bounded
const TOTAL_MS = 150_000; // the whole run, browser start included

function parseArgs(argv) {
  const wanted = ['port', 'invite-file', 'p12', 'password-file', 'out-dir', 'created-file',
    'moved-file', 'profile-dir'];
  const args = { chromium: '/usr/bin/chromium' };
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, '');
    if (![...wanted, 'chromium'].includes(name) || argv[i + 1] === undefined) {
      throw new Error(`unknown or incomplete option ${argv[i]}`);
    }
    args[name] = argv[i + 1];
  }
  for (const name of wanted) if (!args[name]) throw new Error(`--${name} is required`);
  return args;
}

class CheckFailed extends Error {}
function check(condition, what) {
  if (!condition) throw new CheckFailed(what);
  console.log(`ok - ${what}`);
}

async function waitForFile(file, ms) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (fs.existsSync(file)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new CheckFailed(`${path.basename(file)} did not appear within ${ms / 1000} s`);
}

let browser = null; // closed by main, or killed when the run overruns

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (!fs.existsSync(args.chromium)) {
    throw new CheckFailed(`Chromium is not installed at ${args.chromium}: run scripts/install-deps.sh`);
  }
  let puppeteer;
  try {
    puppeteer = require('puppeteer-core');
  } catch {
    throw new CheckFailed('puppeteer-core is missing in tests/browser/node_modules: run scripts/install-deps.sh');
  }
  const origin = `https://127.0.0.1:${args.port}`;
  const password = fs.readFileSync(args['password-file'], 'utf8');
  const invite = fs.readFileSync(args['invite-file'], 'utf8').trim();

  browser = await puppeteer.launch({
    executablePath: args.chromium,
    headless: true,
    // The dev CA is not in Chromium's trust store; only this test browser accepts it.
    acceptInsecureCerts: true,
    userDataDir: args['profile-dir'],
    timeout: STEP_MS,
    protocolTimeout: STEP_MS,
    args: [
      ...(process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : []),
      '--disable-dev-shm-usage', '--disable-gpu', '--no-first-run', '--disable-sync',
      '--disable-background-networking', '--disable-component-update', '--disable-domain-reliability',
      '--no-pings', '--disable-features=Translate,OptimizationHints,MediaRouter',
      // Nothing leaves loopback: every other host fails to resolve and goes to a dead proxy.
      '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1',
      '--proxy-server=http://127.0.0.1:9', '--proxy-bypass-list=127.0.0.1',
      '--window-size=1100,900',
    ],
  });
  try {
    await run(browser, args, origin, password, invite);
  } finally {
    await browser.close();
  }
}

async function run(browser, args, origin, password, invite) {
  const page = await browser.newPage();
  page.setDefaultTimeout(STEP_MS);
  await page.setViewport({ width: 1100, height: 900 });

  // Every console error and page error fails the test, except the browser's own note on the
  // 4xx answers this test provokes on purpose (one per refused API call).
  const problems = [];
  const expectedRefusals = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error' && m.type() !== 'warn') return;
    const url = (m.location() && m.location().url) || '';
    if (/^Failed to load resource: the server responded with a status of 4\d\d/.test(m.text()) &&
        url.startsWith(`${origin}/portal/v1/`)) {
      expectedRefusals.push(url);
      return;
    }
    problems.push(`console ${m.type()}: ${m.text()} (${url})`);
  });
  const requests = [];
  page.on('request', (r) => requests.push(r.url()));
  // CSP violations, recorded by the page itself (this hook runs outside the page's CSP).
  await page.evaluateOnNewDocument(() => {
    window.cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.cspViolations.push(`${e.violatedDirective}: ${e.blockedURI}`);
    });
  });

  // The page and its headers.
  const response = await page.goto(`${origin}/portal`, { waitUntil: 'load', timeout: STEP_MS });
  check(response.url() === `${origin}/portal/`, 'GET /portal redirects to /portal/');
  const h = response.headers();
  check(response.status() === 200 && h['content-type'].startsWith('text/html'), 'the page is served as HTML');
  check(/script-src 'self'/.test(h['content-security-policy'] || '') &&
        !/unsafe-inline/.test(h['content-security-policy']), 'a strict Content-Security-Policy');
  check(h['x-content-type-options'] === 'nosniff' && h['referrer-policy'] === 'no-referrer' &&
        h['cache-control'] === 'no-store', 'nosniff, no referrer, no-store');
  await page.waitForSelector('body[data-region="dev"]', { timeout: STEP_MS });
  check(await page.$eval('#create-region', (s) => s.value) === 'dev', 'this region is the default');
  check((await page.$$eval('#create-region option', (os) => os.map((o) => o.value))).join() === 'dev,eu-west-1',
    'the other regions are offered');

  // A refusal: wrong password. The API's message appears by the password field and the form.
  const fillCreate = async (pw) => {
    await page.$eval('#create-app-id', (e) => { e.value = ''; });
    await page.type('#create-app-id', 'com.example.mail');
    await (await page.$('#create-certificate')).uploadFile(args.p12);
    await page.type('#create-password', pw);
    await page.$eval('#create-invite-code', (e) => { e.value = ''; });
    await page.type('#create-invite-code', invite);
  };
  await fillCreate(`not-${password}`);
  const [refusal] = await Promise.all([
    page.waitForResponse((r) => r.url() === `${origin}/portal/v1/customers`, { timeout: STEP_MS }),
    page.click('#create-form button[type="submit"]'),
  ]);
  const refused = await refusal.json();
  check(refusal.status() === 422 && refused.error === 'wrong_password', 'the API refuses the wrong password');
  await page.waitForSelector('#create-password-error:not([hidden])', { timeout: STEP_MS });
  check(await page.$eval('#create-password-error', (e) => e.textContent) === refused.message,
    'the API\'s message is shown by the password field');
  check(await page.$eval('#create-error', (e) => e.textContent) === refused.message,
    'and at the foot of the form');
  check(await page.$eval('#create-password', (e) => e.getAttribute('aria-invalid')) === 'true',
    'the password field is marked invalid');
  check(await page.$eval('#create-password', (e) => e.value) === '', 'the password is cleared after the submit');
  check(await page.$eval('#create-result', (e) => e.hidden), 'no result is shown');

  // The creation.
  await fillCreate(password);
  await page.click('#create-form button[type="submit"]');
  await page.waitForSelector('#create-result:not([hidden])', { timeout: STEP_MS });
  const created = await page.evaluate(() => ({
    id: document.getElementById('created-customer-id').textContent,
    registrationKey: document.getElementById('created-registration-key').textContent,
    adminKey: document.getElementById('created-admin-key').textContent,
    topic: document.getElementById('created-topic').textContent,
    environments: document.getElementById('created-environments').textContent,
    days: Number(document.getElementById('created-days-left').dataset.days),
    daysText: document.getElementById('created-days-left').textContent,
    daysClass: document.getElementById('created-days-left').className,
    once: document.querySelector('#create-result .once').textContent,
    copyButtons: document.querySelectorAll('#create-result button.copy').length,
    errorShown: !document.getElementById('create-error').hidden,
  }));
  check(/^dev-[a-z2-7]{20}$/.test(created.id), `the Customer ID ${created.id} is shown`);
  check(created.registrationKey.startsWith('rk_') && created.adminKey.startsWith('ak_'),
    'the registration key and admin key are shown');
  check(created.copyButtons === 3 && /shown only once/i.test(created.once), 'with copy buttons and the once-only notice');
  check(created.topic === 'com.example.mail' && created.environments === 'development,production',
    'the certificate\'s topic and environments');
  check(created.days > 300 && created.daysText === `${created.days} days` && /days-ok/.test(created.daysClass),
    `days left: ${created.daysText}, not coloured as a warning`);
  check(!created.errorShown, 'the earlier error is gone');
  check(await page.$eval('#create-password', (e) => e.value) === '', 'the password is cleared after the creation');
  fs.writeFileSync(args['created-file'], JSON.stringify({ customer_id: created.id }));

  // The driver moves the certificate's end to 10 days from now; the status shows it in amber.
  await waitForFile(args['moved-file'], STEP_MS);
  check(await page.$eval('#status-customer-id', (e) => e.value) === created.id, 'the status form has the Customer ID');
  await page.type('#status-admin-key', created.adminKey);
  await page.click('#status-form button[type="submit"]');
  await page.waitForSelector('#status-result:not([hidden])', { timeout: STEP_MS });
  const status = await page.evaluate(() => {
    const days = document.getElementById('status-days-left');
    return {
      state: document.getElementById('status-state').textContent,
      days: Number(days.dataset.days),
      className: days.className,
      color: getComputedStyle(days).color,
      background: getComputedStyle(days).backgroundColor,
      warnings: [...document.querySelectorAll('#status-warnings li')].map((li) => li.textContent),
      rows: document.querySelectorAll('#status-certificates tr').length,
      rowDaysClass: document.querySelector('#status-certificates tr .days').className,
    };
  });
  check(status.state === 'active', 'status: the customer is active');
  check(status.days === 10, `status: ${status.days} days left`);
  check(/\bdays-warn\b/.test(status.className) && /\bdays-warn\b/.test(status.rowDaysClass),
    'status: days left carry the amber warning class');
  check(status.color === 'rgb(122, 74, 0)' && status.background === 'rgb(255, 244, 214)',
    `status: amber in the browser (${status.color} on ${status.background})`);
  check(status.warnings.some((w) => /expires in 10 days/.test(w)), 'status: the API\'s warning is listed');
  check(status.rows === 1, 'status: one certificate listed');
  // The artifact shows the keys' places, not the keys: blurred (inline style, allowed by the CSP).
  await page.$$eval('#created-registration-key, #created-admin-key', (els) => {
    for (const e of els) e.style.filter = 'blur(6px)';
  });
  const shot = path.join(args['out-dir'], 'browser-portal.png');
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot: ${shot}`);

  // A refused status (wrong key) shows its message by the key field.
  await page.$eval('#status-admin-key', (e) => { e.value = ''; });
  await page.type('#status-admin-key', 'ak_wrong');
  await page.click('#status-form button[type="submit"]');
  await page.waitForSelector('#status-admin-key-error:not([hidden])', { timeout: STEP_MS });
  check((await page.$eval('#status-admin-key-error', (e) => e.textContent)).length > 0 &&
        await page.$eval('#status-result', (e) => e.hidden), 'status with a wrong key: refused by the key field');

  // Renewal with a new .p12 (the same certificate here): back to a full year.
  await page.type('#renew-admin-key', created.adminKey);
  await (await page.$('#renew-certificate')).uploadFile(args.p12);
  await page.type('#renew-password', password);
  await page.click('#renew-form button[type="submit"]');
  await page.waitForSelector('#renew-result:not([hidden]), #renew-error:not([hidden])', { timeout: STEP_MS });
  check(await page.$eval('#renew-error', (e) => e.hidden), 'renewal accepted');
  check(await page.$eval('#renewed-days-left', (e) => Number(e.dataset.days) > 300 && e.classList.contains('days-ok')),
    'renewal: the new certificate\'s days left');
  check(await page.$eval('#renew-password', (e) => e.value) === '', 'renewal: the password is cleared');

  // What the page must never do: secrets in URLs, anything stored, requests off this origin.
  check(requests.every((u) => u.startsWith(`${origin}/`) || u.startsWith('data:')), 'every request stays on this origin');
  check(requests.every((u) => !u.includes('?') && !u.includes(created.adminKey)), 'no query strings, no key in a URL');
  check(await page.evaluate(() => localStorage.length === 0 && sessionStorage.length === 0), 'nothing in web storage');
  check(expectedRefusals.length === 2, 'the two refused calls were the only failed requests');
  check((await page.evaluate(() => window.cspViolations)).length === 0, 'no Content-Security-Policy violation');
  check(problems.length === 0, `no console or page errors${problems.length ? `:\n  ${problems.join('\n  ')}` : ''}`);

  // The policy is really enforced: an inline script is blocked and reported.
  await page.evaluate(() => {
    const s = document.createElement('script');
    s.textContent = 'window.inlineRan = true;';
    document.body.append(s);
  });
  await new Promise((r) => setTimeout(r, 200));
  check(await page.evaluate(() => window.inlineRan !== true && window.cspViolations.length > 0),
    'the CSP blocks an inline script in this browser');
}

const deadline = setTimeout(() => {
  console.error(`not ok - the run took longer than ${TOTAL_MS / 1000} s`);
  if (browser && browser.process()) browser.process().kill('SIGKILL');
  process.exit(1);
}, TOTAL_MS);

main().then(() => {
  clearTimeout(deadline);
  console.log('portal page: all checks passed');
}).catch((e) => {
  clearTimeout(deadline);
  console.error(`not ok - ${e instanceof CheckFailed ? e.message : e.stack || e}`);
  process.exitCode = 1;
});
