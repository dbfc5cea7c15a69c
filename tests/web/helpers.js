/* Shared by test_web.js and docs_screenshot.js: the test's own side of the
 * protocol (Debian's protoc as an independent protobuf implementation, plus
 * fetch), Fashion-MNIST images as PNG files, and `imgret serve` as a child
 * process. */
'use strict';
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');
const { spawn, spawnSync } = require('child_process');

const ROOT = path.resolve(__dirname, '..', '..');
const PROTO_DIR = path.join(ROOT, 'proto');
const PROTO = path.join(PROTO_DIR, 'imgret', 'v1', 'service.proto');
const FMNIST = '/usr/share/datasets/fashion-mnist';
const FMNIST_NAMES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];
const ENV = { ...process.env, OMP_WAIT_POLICY: 'passive' };

function run(cmd, args, what, cwd) {
  const t0 = Date.now();
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd, env: ENV, maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${what} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  console.log(`     ${what}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return r.stdout;
}

function protocEncode(type, text) {
  const r = spawnSync('protoc', [`--encode=imgret.v1.${type}`, '-I', PROTO_DIR, PROTO], { input: text, maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`protoc --encode ${type}: ${r.stderr}`);
  return new Uint8Array(r.stdout);
}
function protocDecode(type, bytes) {
  const r = spawnSync('protoc', [`--decode=imgret.v1.${type}`, '-I', PROTO_DIR, PROTO], { input: Buffer.from(bytes), maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`protoc --decode ${type}: ${r.stderr}`);
  return r.stdout.toString('utf8');
}
// Bytes as a protobuf text-format string literal (octal escapes).
const textBytes = (u8) => '"' + Array.from(u8, (b) => '\\' + b.toString(8).padStart(3, '0')).join('') + '"';
const hex = (u8) => Buffer.from(u8).toString('hex');

async function rpc(base, method, body) {
  const res = await fetch(base + 'twirp/imgret.v1.ImageSearch/' + method, {
    method: 'POST', headers: { 'Content-Type': 'application/protobuf' }, body });
  const buf = new Uint8Array(await res.arrayBuffer());
  if (!res.ok) throw new Error(`${method}: HTTP ${res.status} ${Buffer.from(buf).toString()}`);
  return buf;
}

// Adds Fashion-MNIST test images [first, first+n) with thumbnails, 64 a call
// (the server's limit on image items per Add); returns the ids.
async function addFashionMnist(base, set, first, n, batch = 64) {
  const ids = [];
  for (let i0 = first; i0 < first + n; i0 += batch) {
    let text = '';
    for (let i = i0; i < Math.min(first + n, i0 + batch); i++)
      text += `items { image: ${textBytes(set.png(i))} uri: "fashion-mnist-test/${i}.png" label: ${set.label(i)} keep_thumbnail: true }\n`;
    const reply = protocDecode('AddResponse', await rpc(base, 'Add', protocEncode('AddRequest', text)));
    ids.push(...[...reply.matchAll(/ids: (\d+)/g)].map((m) => m[1]));
  }
  return ids;
}

// PNG: zlib and a CRC-32 are all it needs.
const CRC = new Int32Array(256).map((_, n) => { let c = n; for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1; return c; });
function crc32(buf) { let c = -1; for (const b of buf) c = CRC[(c ^ b) & 255] ^ (c >>> 8); return (c ^ -1) >>> 0; }
function chunk(type, data) {
  const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}
function pngGrey(w, h, px) {
  const raw = Buffer.alloc((w + 1) * h);
  for (let y = 0; y < h; y++) px.copy(raw, y * (w + 1) + 1, y * w, (y + 1) * w);
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4); ihdr[8] = 8; ihdr[9] = 0;
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr),
                        chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}
function pngSize(buf) {
  const sig = Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]);
  if (buf.length < 24 || !buf.subarray(0, 8).equals(sig) || buf.toString('ascii', 12, 16) !== 'IHDR') return null;
  return { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) };
}

// The Fashion-MNIST test split (Debian's dataset-fashion-mnist): PNG and label of item i.
function fashionMnistTest() {
  const images = zlib.gunzipSync(fs.readFileSync(path.join(FMNIST, 't10k-images-idx3-ubyte.gz')));
  const labels = zlib.gunzipSync(fs.readFileSync(path.join(FMNIST, 't10k-labels-idx1-ubyte.gz')));
  return { png: (i) => pngGrey(28, 28, images.subarray(16 + i * 784, 16 + (i + 1) * 784)), label: (i) => labels[8 + i] };
}

function startServer(imgret, args, cwd) {
  return new Promise((resolve, reject) => {
    const p = spawn(imgret, args, { cwd, env: ENV });
    let out = '', err = '';
    const timer = setTimeout(() => { p.kill('SIGKILL'); reject(new Error('imgret serve did not say where it listens in 120 s\n' + out + err)); }, 120000);
    p.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+\/)/.exec(out);
      if (m) { clearTimeout(timer); p.removeAllListeners('exit'); resolve({ proc: p, base: m[1], log: () => out + err }); }
    });
    p.stderr.on('data', (d) => { err += d; });
    p.on('exit', (code) => { clearTimeout(timer); reject(new Error(`imgret serve exited (${code}) before listening:\n${out}${err}`)); });
  });
}
// SIGTERM (graceful), SIGKILL after 15 s; resolves with the exit code or signal.
function stopServer(s) {
  return new Promise((resolve) => {
    if (s.proc.exitCode !== null || s.proc.signalCode !== null) return resolve(s.proc.exitCode ?? s.proc.signalCode);
    const t = setTimeout(() => { s.proc.kill('SIGKILL'); }, 15000);
    s.proc.on('exit', (code, sig) => { clearTimeout(t); resolve(sig || code); });
    s.proc.kill('SIGTERM');
  });
}

module.exports = { ROOT, FMNIST_NAMES, run, protocEncode, protocDecode, textBytes, hex, rpc, addFashionMnist,
                   pngGrey, pngSize, fashionMnistTest, startServer, stopServer };
