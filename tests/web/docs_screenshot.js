#!/usr/bin/env node
/* docs/web.png: the page with results, from a real `imgret serve` holding
 * Fashion-MNIST test images added through the Add RPC (thumbnails kept), and
 * one held-out test image uploaded as the query.
 *
 * usage: node docs_screenshot.js --imgret BIN --model M [--autoencoder AE]
 *          [--items N (1000)] [--query I (test image index, default 9000)]
 *          [--k K (9)] [--metric euclidean|hamming] --out PNG
 * The model should be a trained one (e.g. the Fashion-MNIST run's model). */
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const h = require('./helpers');

function opt(name, def) {
  const i = process.argv.indexOf('--' + name);
  if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  if (def === undefined) { console.error(`docs_screenshot.js: --${name} is required`); process.exit(2); }
  return def;
}

async function main() {
  const imgret = path.resolve(opt('imgret')), model = path.resolve(opt('model')), out = path.resolve(opt('out'));
  const ae = opt('autoencoder', ''), n = Number(opt('items', '1000')), q = Number(opt('query', '9000'));
  const k = Number(opt('k', '9')), metric = opt('metric', 'euclidean');
  const { chromium } = require(path.join(__dirname, 'node_modules', 'playwright-core'));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imgret-shot-'));
  const args = ['serve', '--model', model, '--store', path.join(dir, 'store'), '--port', '0'];
  if (ae) args.push('--autoencoder', path.resolve(ae));
  const server = await h.startServer(imgret, args, dir);
  let browser = null;
  try {
    const fm = h.fashionMnistTest();
    const t0 = Date.now();
    const ids = await h.addFashionMnist(server.base, fm, 0, n);
    console.log(`added ${ids.length} Fashion-MNIST test images in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const query = path.join(dir, `fashion-mnist-test-${q}.png`);
    fs.writeFileSync(query, fm.png(q));
    console.log(`query: test image ${q}, a ${h.FMNIST_NAMES[fm.label(q)]}`);
    browser = await chromium.launch({ executablePath: process.env.IMGRET_CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
    const page = await browser.newPage({ viewport: { width: 1280, height: 820 } });
    await page.goto(server.base);
    await page.waitForSelector('#stat-items');
    await page.fill('#k', String(k));
    if (metric === 'hamming') await page.click('label[for=metric-hamming]');
    await page.setInputFiles('#file', query);
    await page.waitForFunction(() => document.body.dataset.state === 'done', null, { timeout: 120000 });
    await page.waitForFunction(() => [...document.querySelectorAll('#grid .thumb')].every((t) => t.dataset.loaded));
    const hits = await page.$$eval('#grid .card.hit', (cs) => cs.map((c) => c.querySelector('.label').textContent + ' ' + c.querySelector('.dist').textContent));
    console.log('neighbours: ' + hits.join(', '));
    await page.evaluate(() => document.activeElement && document.activeElement.blur());
    await page.screenshot({ path: out, fullPage: true });
    console.log(`wrote ${out} (${fs.statSync(out).size} bytes)`);
  } finally {
    if (browser) await browser.close();
    await h.stopServer(server);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
main().catch((e) => { console.error(e.stack || e); process.exit(1); });
