#!/usr/bin/env node
/* The web page (GET /) in a real browser: headless Chromium (Debian's
 * chromium) driven by playwright-core, against the real `imgret serve`.
 *
 * Fixture: a small random AlexNet (web_fixture_model) with the Fashion-MNIST
 * class names; `imgret extract` of 400 Fashion-MNIST training images and
 * `imgret ae-train` of a 16-bit autoencoder on them; `imgret serve` on port 0;
 * 48 Fashion-MNIST test images (as PNG) added through the Add RPC with
 * thumbnails kept. The test's own side of the protocol is Debian's protoc
 * (--encode/--decode from proto/imgret/v1/service.proto), independent of the
 * page's JavaScript codec, which is checked against it byte for byte.
 *
 * In the browser: Stats on load; upload an image -> top-5 classes and k
 * neighbours with distances and loaded thumbnails; Hamming; search by id
 * (ids compared with a protoc-made Search); click a neighbour; errors
 * (corrupt image -> invalid_argument, unknown id -> not_found, a bad id typed);
 * a screenshot checked for size, dimensions and pixel variety. Then the same
 * store behind --token --token-scope all: the page shows unauthenticated,
 * takes the token, and searches with thumbnails fetched with it.
 *
 * usage: node test_web.js --imgret BIN --fixture BIN --out DIR
 * Exit 77 (ctest SKIP) when chromium or playwright-core is missing, or when
 * the imgret binary has no `serve` command. */
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');
const h = require('./helpers');

const SKIP = 77;
const CHROMIUM = process.env.IMGRET_CHROMIUM || '/usr/bin/chromium';
const N_ITEMS = 48;
const K = 8;
const VIEW = { width: 1280, height: 900 };

function arg(name) {
  const i = process.argv.indexOf('--' + name);
  if (i < 0 || i + 1 >= process.argv.length) { console.error(`usage: test_web.js --imgret BIN --fixture BIN --out DIR (missing --${name})`); process.exit(2); }
  return path.resolve(process.argv[i + 1]);
}
function skip(why) { console.log('SKIP: ' + why); process.exit(SKIP); }
let failures = 0;
function check(cond, what) {
  if (cond) console.log('ok   ' + what);
  else { failures++; console.log('FAIL ' + what); }
  return cond;
}
function must(cond, what) { if (!check(cond, what)) throw new Error('cannot go on: ' + what); }

const IMGRET = arg('imgret'), FIXTURE = arg('fixture'), OUT = arg('out');

/* ------------------------------------------------------------ skips */
if (!fs.existsSync(CHROMIUM)) skip(`${CHROMIUM} not found: install Debian's chromium (scripts/deps.sh)`);
let playwright;
try { playwright = require(path.join(__dirname, 'node_modules', 'playwright-core')); }
catch (e) { skip('playwright-core is not installed in tests/web/node_modules: run scripts/deps.sh'); }
{
  const r = spawnSync(IMGRET, ['serve', '--help'], { encoding: 'utf8' });
  if (r.status !== 0 || !/--store/.test(r.stdout + r.stderr))
    skip(`the imgret binary has no 'serve' command yet (the server is absent): ${(r.stderr || '').split('\n')[0]}`);
}
if (spawnSync('protoc', ['--version']).status !== 0) { console.error('protoc not found (Debian protobuf-compiler; scripts/deps.sh)'); process.exit(1); }

const { protocEncode, protocDecode, textBytes, hex, rpc } = h;
const run = (cmd, args, what) => h.run(cmd, args, what, OUT);

/* -------------------------------------------------------------- main */
async function main() {
  fs.rmSync(OUT, { recursive: true, force: true });
  fs.mkdirSync(OUT, { recursive: true });

  run(FIXTURE, ['model.imgret'], 'random small AlexNet (web_fixture_model)');
  run(IMGRET, ['extract', '--model', 'model.imgret', '--data', 'fashion-mnist', '--limit', '400', '-o', 'train.feat'], 'imgret extract (400 images)');
  run(IMGRET, ['ae-train', '--features', 'train.feat', '--bits', '16', '--hidden', '64', '--epochs', '20', '--noise', '0', '--noise-ramp', '10', '--lr', '0.01', '--standardise', 'per-dim', '--normalise', 'none', '--balance', '0', '--limit', '0', '--val-rows', '0', '-o', 'ae.imgret'], 'imgret ae-train (16 bits)');

  // Images: the first N_ITEMS test images to store, image 1000 as the query.
  const fm = h.fashionMnistTest();
  const queryPng = fm.png(1000);
  fs.writeFileSync(path.join(OUT, 'query.png'), queryPng);
  // A JPEG header then garbage: the server must refuse it as invalid_argument.
  fs.writeFileSync(path.join(OUT, 'corrupt.jpg'), Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 16]), Buffer.from('JFIF\0 this is not a picture at all')]));

  const server = await h.startServer(IMGRET, ['serve', '--model', 'model.imgret', '--autoencoder', 'ae.imgret', '--store', 'store', '--port', '0'], OUT);
  console.log('     server at ' + server.base);
  let browser = null;
  try {
    // Add through the RPC, encoded by protoc.
    const ids = await h.addFashionMnist(server.base, fm, 0, N_ITEMS);
    must(ids.length === N_ITEMS, `Add stored ${N_ITEMS} items (got ${ids.length} ids)`);

    browser = await playwright.chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    const page = await browser.newPage({ viewport: VIEW });
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => { if (m.type() === 'error') console.log('     console: ' + m.text()); });
    const outside = [];
    page.on('request', (r) => { if (!r.url().startsWith(server.base) && !/^(blob|data):/.test(r.url())) outside.push(r.url()); });
    await page.goto(server.base);
    const waitState = (s) => page.waitForFunction((want) => document.body.dataset.state === want, s, { timeout: 60000 });

    // The page's codec against protoc, byte for byte and value for value.
    const enc = async (type, obj) => hex(Uint8Array.from(await page.evaluate(([t, o]) => {
      const fix = (x) => (typeof x === 'string' && /^\d+n$/.test(x) ? BigInt(x.slice(0, -1)) : x);
      for (const k of Object.keys(o)) o[k] = fix(o[k]);
      return Array.from(window.imgret.pb.encode(window.imgret.schemas[t], o));
    }, [type, obj])));
    check(await enc('SearchRequest', { item_id: '1099511627779n', k: 7, metric: 2, rerank: true }) ===
          hex(protocEncode('SearchRequest', 'item_id: 1099511627779 k: 7 metric: HAMMING rerank: true')), 'codec: SearchRequest by id, 64-bit id');
    check(await enc('SearchRequest', { item_id: '0n', k: 3 }) === hex(protocEncode('SearchRequest', 'item_id: 0 k: 3')), 'codec: item_id 0 is written (oneof presence)');
    check(await enc('ClassifyRequest', { image: [255, 216, 0, 7], k: 5, crops: 2 }) ===
          hex(protocEncode('ClassifyRequest', 'image: "\\377\\330\\000\\007" k: 5 crops: TEN')), 'codec: ClassifyRequest bytes');
    const resp = protocEncode('SearchResponse', 'hits { id: 9007199254740993 distance: 1.5 uri: "dir/\u00fcber.png" label: -1 label_name: "" } ' +
      'hits { id: 2 distance: 0.1 label: 4 label_name: "Coat" } metric: HAMMING reranked: true classes { index: 3 name: "Dress" probability: 0.25 }');
    const dec = await page.evaluate((b) => {
      const r = window.imgret.pb.decode(window.imgret.schemas.SearchResponse, Uint8Array.from(b));
      return JSON.stringify(r, (k, v) => (typeof v === 'bigint' ? v.toString() + 'n' : v));
    }, Array.from(resp));
    const d = JSON.parse(dec);
    check(d.hits.length === 2 && d.hits[0].id === '9007199254740993n' && d.hits[0].label === -1 && d.hits[0].uri === 'dir/\u00fcber.png' &&
          d.hits[0].distance === 1.5 && d.hits[1].id === '2n' && Math.abs(d.hits[1].distance - 0.1) < 1e-7 && d.hits[1].label_name === 'Coat' &&
          d.metric === 2 && d.reranked === true && d.classes[0].name === 'Dress' && d.classes[0].probability === 0.25,
          'codec: SearchResponse decoded (id > 2^53, label -1, UTF-8, floats) ' + dec);
    const st = protocEncode('StatsResponse', 'items: 123456789012 index_kinds: "fc7:Flat" index_kinds: "code:BFlat" uptime_seconds: 3.25 fc7_dim: 4096 requests: 18446744073709551615');
    const sd = JSON.parse(await page.evaluate((b) => JSON.stringify(window.imgret.pb.decode(window.imgret.schemas.StatsResponse, Uint8Array.from(b)),
      (k, v) => (typeof v === 'bigint' ? v.toString() + 'n' : v)), Array.from(st)));
    check(sd.items === '123456789012n' && sd.index_kinds.join() === 'fc7:Flat,code:BFlat' && sd.uptime_seconds === 3.25 && sd.fc7_dim === 4096 &&
          sd.requests === '18446744073709551615n', 'codec: StatsResponse (int64, repeated string, double, uint64 max)');
    check(await page.evaluate(() => { try { window.imgret.pb.decode(window.imgret.schemas.SearchResponse, Uint8Array.from([10, 5, 8])); return false; } catch (e) { return /truncated|past the end/.test(e.message); } }),
          'codec: a truncated message is an error');

    // Stats on load.
    await page.waitForFunction((n) => { const e = document.querySelector('#stat-items b'); return e && e.textContent === String(n); }, N_ITEMS, { timeout: 30000 });
    check(true, `Stats on load: ${N_ITEMS} items`);
    check((await page.textContent('#stat-model')).includes('model'), 'Stats: model name shown: ' + (await page.textContent('#stat-model')));
    check(!(await page.isDisabled('#metric-hamming')), 'Hamming is offered (the server has an autoencoder)');

    // Upload an image.
    await page.fill('#k', String(K));
    await page.setInputFiles('#file', path.join(OUT, 'query.png'));
    await waitState('done');
    const classes = await page.$$eval('#classes li', (lis) => lis.map((li) => [li.querySelector('.cname').textContent, parseFloat(li.querySelector('.prob').textContent)]));
    const fmNames = h.FMNIST_NAMES;
    check(classes.length === 5 && classes.every(([n, p]) => fmNames.includes(n) && p >= 0 && p <= 100) &&
          classes.every((c, i) => i === 0 || c[1] <= classes[i - 1][1] + 0.05) && classes.reduce((s, c) => s + c[1], 0) <= 100.5,
          'top-5 classes with probabilities, in order: ' + JSON.stringify(classes));
    const waitThumbs = () => page.waitForFunction(() => [...document.querySelectorAll('#grid .thumb')].every((t) => t.dataset.loaded), null, { timeout: 30000 });
    await waitThumbs();
    const grid = async () => page.$$eval('#grid .card.hit', (cs) => cs.map((c) => {
      const i = c.querySelector('.thumb img');
      return { id: c.dataset.id, dist: c.querySelector('.dist').textContent, label: c.querySelector('.label').textContent,
               uri: (c.querySelector('.uri') || {}).textContent || '', w: i ? i.naturalWidth : 0 };
    }));
    let g = await grid();
    check(g.length === K, `grid holds k = ${K} neighbours (got ${g.length})`);
    const dist = (s) => parseFloat(s.replace(/^d²\s*/, ''));
    check(g.every((h) => /^d² -?[0-9.]+(e[+-]?\d+)?$/.test(h.dist)) && g.every((h, i) => i === 0 || dist(h.dist) >= dist(g[i - 1].dist)),
          'Euclidean distances shown, nearest first: ' + g.map((h) => h.dist).join(', '));
    check(g.every((h) => h.w > 0), 'every neighbour thumbnail loaded (naturalWidth > 0): ' + g.map((h) => h.w).join(','));
    check(g.every((h) => fmNames.includes(h.label) && /^fashion-mnist-test\/\d+\.png$/.test(h.uri) && ids.includes(h.id)), 'labels, uris and ids of stored items');
    check(await page.$eval('#grid .card.query img', (i) => i.naturalWidth > 0), 'the query is the first tile');
    check(await page.$eval('#query-img', (i) => i.naturalWidth === 28), 'the query image is shown');
    await page.screenshot({ path: path.join(OUT, 'web_euclidean.png') });

    // Hamming.
    await page.click('label[for=metric-hamming]');
    await page.waitForFunction(() => document.body.dataset.state === 'done' && /Hamming/.test(document.querySelector('#summary').textContent), null, { timeout: 60000 });
    await waitThumbs();
    g = await grid();
    check(g.length === K && g.every((h) => /^\d+ bits?$/.test(h.dist)) && g.every((h, i) => i === 0 || parseInt(h.dist) >= parseInt(g[i - 1].dist)) &&
          g.every((h) => parseInt(h.dist) <= 16), 'Hamming: k neighbours with bit distances (0..16), nearest first: ' + g.map((h) => h.dist).join(', '));
    check(g.every((h) => h.w > 0), 'Hamming: thumbnails loaded');
    const refH = protocDecode('SearchResponse', await rpc(server.base, 'Search', protocEncode('SearchRequest', `image: ${textBytes(queryPng)} k: ${K} metric: HAMMING`)));
    const refBits = [...refH.matchAll(/^\s*distance: (\S+)/gm)].map((m) => Math.round(parseFloat(m[1])));
    check(JSON.stringify(g.map((h) => parseInt(h.dist))) === JSON.stringify(refBits) && refBits[refBits.length - 1] > 0,
          'Hamming: the same distances as protoc\'s Search (ties may order ids differently): ' + refBits.join(','));
    await page.click('label[for=metric-euclidean]');
    await page.waitForFunction(() => document.body.dataset.state === 'done' && /Euclidean/.test(document.querySelector('#summary').textContent), null, { timeout: 60000 });

    // Search by id, against a Search made by protoc.
    const qid = ids[5];
    await page.fill('#id-input', qid);
    await page.click('#id-go');
    await page.waitForFunction((id) => document.body.dataset.state === 'done' && /id \d+/.test(document.querySelector('#grid .card.query').textContent) &&
                               document.querySelector('#grid .card.query .id').textContent === 'id ' + id, qid, { timeout: 60000 });
    await waitThumbs();
    g = await grid();
    const ref = protocDecode('SearchResponse', await rpc(server.base, 'Search', protocEncode('SearchRequest', `item_id: ${qid} k: ${K} metric: EUCLIDEAN`)));
    const refIds = [...ref.matchAll(/^\s*id: (\d+)/gm)].map((m) => m[1]);
    check(g.length === K && g.every((h) => h.id !== qid), `search by id ${qid}: k neighbours, the item itself not among them`);
    check(JSON.stringify(g.map((h) => h.id)) === JSON.stringify(refIds), `search by id: same ids as protoc's Search: ${g.map((h) => h.id).join(',')} vs ${refIds.join(',')}`);
    check(g.every((h) => h.w > 0) && (await page.$eval('#grid .card.query img', (i) => i.naturalWidth > 0)), 'search by id: query thumbnail and neighbour thumbnails loaded');
    check((await page.textContent('#grid .card.query .uri')) === `fashion-mnist-test/${ids.indexOf(qid)}.png`, 'search by id: the query tile names the stored item');

    // A click on a neighbour searches by it.
    const next = g[2].id;
    await page.click(`#grid .card.hit[data-id="${next}"]`);
    await page.waitForFunction((id) => document.body.dataset.state === 'done' && document.querySelector('#grid .card.query .id').textContent === 'id ' + id, next, { timeout: 60000 });
    check((await page.inputValue('#id-input')) === next && (await grid()).length === K, `a click on neighbour ${next} searches by it`);

    // Errors: a corrupt image, an unknown id, a bad id typed.
    await page.setInputFiles('#file', path.join(OUT, 'corrupt.jpg'));
    await waitState('error');
    let code = await page.textContent('#error .code'), msg = await page.textContent('#error .msg');
    check(await page.isVisible('#error') && code === 'invalid_argument' && msg.length > 0, `corrupt image: Twirp error shown: ${code}: ${msg} (${await page.textContent('#error .http')})`);
    check((await grid()).length === 0, 'corrupt image: no stale results under the error');
    await page.fill('#id-input', '999999999');
    await page.click('#id-go');
    await waitState('error');
    code = await page.textContent('#error .code'); msg = await page.textContent('#error .msg');
    check(code === 'not_found' && msg.length > 0, `unknown id: ${code}: ${msg}`);
    await page.fill('#id-input', '12ab');
    await page.click('#id-go');
    check((await page.textContent('#error .code')) === 'invalid_argument' && /whole number/.test(await page.textContent('#error .msg')), 'a typed non-number id is refused by the page');

    // Back to results; the screenshot.
    await page.setInputFiles('#file', path.join(OUT, 'query.png'));
    await waitState('done');
    await waitThumbs();
    check(!(await page.isVisible('#error')), 'a good query clears the error');
    const shotPath = path.join(OUT, 'web.png');
    const shot = await page.screenshot({ path: shotPath });
    const size = h.pngSize(shot);
    check(size && size.width === VIEW.width && size.height === VIEW.height && shot.length > 20000,
          `screenshot ${shotPath}: PNG ${size && size.width}x${size && size.height}, ${shot.length} bytes`);
    const variety = await page.evaluate(async (b64) => {
      const im = new Image(); im.src = 'data:image/png;base64,' + b64; await im.decode();
      const c = document.createElement('canvas'); c.width = im.width; c.height = im.height;
      const x = c.getContext('2d'); x.drawImage(im, 0, 0);
      const px = x.getImageData(0, 0, c.width, c.height).data, colours = new Set();
      let dark = 0;
      for (let i = 0; i < px.length; i += 4) { colours.add((px[i] >> 3) << 10 | (px[i + 1] >> 3) << 5 | px[i + 2] >> 3); if (px[i] + px[i + 1] + px[i + 2] < 150) dark++; }
      return { colours: colours.size, darkShare: dark / (px.length / 4) };
    }, shot.toString('base64'));
    check(variety.colours > 200 && variety.darkShare > 0.02 && variety.darkShare < 0.9, `screenshot is not blank: ${variety.colours} colours, ${(100 * variety.darkShare).toFixed(1)}% dark pixels`);
    check(pageErrors.length === 0, 'no JavaScript errors on the page' + (pageErrors.length ? ': ' + pageErrors.join('; ') : ''));
    check(outside.length === 0, 'the page fetched nothing outside the server' + (outside.length ? ': ' + outside.join(', ') : ''));
  } finally {
    const how = await h.stopServer(server);
    if (how !== 0) console.log(`     imgret serve ended with ${how}; its output:\n${server.log()}`);
    check(how === 0, `imgret serve stopped by SIGTERM exits 0 (got ${how})`);
    if (failures && browser) { await browser.close(); browser = null; }
  }
  if (!browser) return;
  try {
    await tokenPhase(browser);
  } finally {
    await browser.close();
  }
}

// The same store behind --token --token-scope all: every call and /thumb
// needs the bearer token; the page asks for it and then works.
async function tokenPhase(browser) {
  const server = await h.startServer(IMGRET, ['serve', '--model', 'model.imgret', '--autoencoder', 'ae.imgret', '--store', 'store',
                                              '--port', '0', '--token', 's3cret', '--token-scope', 'all'], OUT);
  try {
    const page = await browser.newPage({ viewport: VIEW });
    await page.goto(server.base);
    await page.waitForFunction(() => document.querySelector('#error').classList.contains('show'), null, { timeout: 30000 });
    const code = await page.textContent('#error .code');
    check(code === 'unauthenticated' && (await page.$eval('#access', (d) => d.open)),
          `token: without one, Stats fails with ${code}: ${await page.textContent('#error .msg')} and the token field opens`);
    await page.fill('#token', 's3cret');
    await page.click('#token-go');
    await page.waitForFunction((n) => { const e = document.querySelector('#stat-items b'); return e && e.textContent === String(n); }, N_ITEMS, { timeout: 30000 });
    await page.setInputFiles('#file', path.join(OUT, 'query.png'));
    await page.waitForFunction(() => document.body.dataset.state === 'done', null, { timeout: 60000 });
    await page.waitForFunction(() => [...document.querySelectorAll('#grid .thumb')].every((t) => t.dataset.loaded), null, { timeout: 30000 });
    const w = await page.$$eval('#grid .card.hit .thumb img', (is) => is.map((i) => i.naturalWidth));
    check(w.length === 10 && w.every((x) => x > 0) && !(await page.isVisible('#error')),
          `token: with it, Stats, Search and the thumbnails (fetched with the token) work: ${w.join(',')}`);
  } finally {
    await h.stopServer(server);
  }
}

main().then(() => {
  console.log(failures ? `${failures} check(s) failed` : 'all checks passed');
  process.exit(failures ? 1 : 0);
}, (e) => { console.error('FAIL ' + (e.stack || e)); process.exit(1); });
