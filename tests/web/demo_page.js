#!/usr/bin/env node
/* The demo's page in a real browser: opens a running server's web page,
 * uploads an image, waits for the classes and the neighbours, checks that the
 * page shows exactly the neighbours' class names the caller got from the API
 * for the same image (in the same order), and saves a screenshot.
 *
 * usage: node demo_page.js --url http://127.0.0.1:PORT --image PNG
 *          --labels NAME,NAME,... [--k 10] --out PNG
 * Exit 77 (skip) when chromium or playwright-core is missing. */
'use strict';
const fs = require('fs');
const path = require('path');

function opt(name, def) {
  const i = process.argv.indexOf('--' + name);
  if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  if (def === undefined) { console.error(`demo_page.js: --${name} is required`); process.exit(2); }
  return def;
}

async function main() {
  const url = opt('url'), image = path.resolve(opt('image')), expect = opt('labels').split(',');
  const out = path.resolve(opt('out')), k = Number(opt('k', '10'));
  const exe = process.env.IMGRET_CHROMIUM || '/usr/bin/chromium';
  let pw;
  try { pw = require(path.join(__dirname, 'node_modules', 'playwright-core')); } catch (e) { pw = null; }
  if (!pw || !fs.existsSync(exe)) {
    console.log('SKIP: playwright-core or chromium missing (run scripts/deps.sh)');
    process.exit(77);
  }
  const browser = await pw.chromium.launch({ executablePath: exe, args: ['--no-sandbox'] });
  let failed = 0;
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 820 } });
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(url);
    await page.waitForSelector('#stat-items');
    await page.fill('#k', String(k));
    await page.setInputFiles('#file', image);
    await page.waitForFunction(() => document.body.dataset.state === 'done', null, { timeout: 120000 });
    await page.waitForFunction(() => [...document.querySelectorAll('#grid .thumb')].every((t) => t.dataset.loaded),
      null, { timeout: 60000 });
    const labels = await page.$$eval('#grid .card.hit .label', (ls) => ls.map((l) => l.textContent.trim()));
    const thumbs = await page.$$eval('#grid .card.hit .thumb', (ts) => ts.map((t) => t.dataset.loaded));
    console.log('neighbours: ' + labels.join(', '));
    const check = (ok, what) => { console.log((ok ? '  ok:   ' : '  FAIL: ') + what); if (!ok) failed++; };
    check(labels.length === k, `${k} neighbours shown (${labels.length})`);
    check(labels.join(',') === expect.join(','),
      `the neighbours are the API's, in its order (${expect.join(', ')})`);
    check(thumbs.length === k && thumbs.every((l) => l === 'yes'), 'every thumbnail loaded');
    check(errors.length === 0, 'no JavaScript errors ' + errors.join('; '));
    await page.screenshot({ path: out, fullPage: true });
    const size = fs.statSync(out).size;
    check(size > 20000, `screenshot ${out} (${size} bytes)`);
  } finally {
    await browser.close();
  }
  process.exit(failed ? 1 : 0);
}
main().catch((e) => { console.error(e.stack || e); process.exit(1); });
