"""Oracle tests of weight interop: a paper-shaped AlexNet with random weights
is written by this script as ONNX (onnx.helper, the standard ops as the model
zoo's bvlcalexnet has them) or as a .caffemodel (a small protobuf encoder
written here from Caffe's own field numbers, so a wrong number in imgret's
caffe.proto cannot hide by making the test files too), imported with
`imgret import`, run by interop_forward, and compared with PyTorch in
float64 on the same input.

    oracle_interop.py CASE IMGRET INTEROP_FORWARD WORKDIR

Pass: relative error ||imgret - torch|| / ||torch|| of the logits < 1e-4,
and each comparison is shown to be sensitive to what it checks."""
import os
import struct
import subprocess
import sys
import time

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

TOL = 1e-4
PAPER = dict(conv=[96, 256, 384, 384, 256], fc=[4096, 4096], classes=1000)
SMALL = dict(conv=[16, 32, 48, 48, 32], fc=[64, 64], classes=10)
# kernel, stride, pad, groups of conv1..conv5 (the paper's)
GEOM = [(11, 4, 0, 1), (5, 1, 2, 2), (3, 1, 1, 1), (3, 1, 1, 2), (3, 1, 1, 2)]
BATCH = 2
failures = 0


def check(ok, what):
    global failures
    failures += not ok
    print(f"{'ok  ' if ok else 'FAIL'} {what}", flush=True)


def rel(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def pool_out(n, ceil):
    return -(-(n - 3) // 2) + 1 if ceil else (n - 3) // 2 + 1


def random_weights(widths, in_hw, seed):
    """He-initialised weights (activations keep their scale, so LRN and every
    layer matter), small random biases; names as imgret names them."""
    rng = np.random.default_rng(seed)
    w, c, hw = {}, 3, in_hw
    for i, (out, (k, s, p, g)) in enumerate(zip(widths["conv"], GEOM)):
        fan = c // g * k * k
        w[f"conv{i + 1}.weight"] = (rng.standard_normal((out, c // g, k, k), dtype=np.float32)
                                    * np.float32(np.sqrt(2.0 / fan)))
        w[f"conv{i + 1}.bias"] = rng.standard_normal(out, dtype=np.float32) * np.float32(0.1)
        c, hw = out, (hw + 2 * p - k) // s + 1
        if i in (0, 1, 4):
            hw = pool_out(hw, True)
    fin = c * hw * hw
    for i, out in enumerate(widths["fc"] + [widths["classes"]]):
        w[f"fc{i + 6}.weight"] = (rng.standard_normal((out, fin), dtype=np.float32)
                                  * np.float32(np.sqrt(2.0 / fin)))
        w[f"fc{i + 6}.bias"] = rng.standard_normal(out, dtype=np.float32) * np.float32(0.1)
        fin = out
    return w


def image_batch(in_hw, seed):
    """Pixel-like values minus a mean: the scale imgret's inputs have."""
    rng = np.random.default_rng(seed)
    return (rng.uniform(0, 255, (BATCH, 3, in_hw, in_hw)) - 120).astype(np.float32)


# ---------------------------------------------------------------- ONNX files

def write_onnx(path, w, in_hw, opset, pool, raw=True, reshape=False, dropout=True, lrn=(5, 1e-4, 0.75, 2.0)):
    """pool: 'ceil' (ceil_mode=1), 'pads' ([0,0,1,1], the opset-9 way) or
    'floor'. Names follow the zoo file (data_0, conv1_1, ..., softmaxout_1)."""
    nodes, inits = [], []
    for name, a in w.items():
        t = (numpy_helper.from_array(a, name) if raw else
             helper.make_tensor(name, TensorProto.FLOAT, a.shape, a.flatten().tolist()))
        inits.append(t)
    cur = "data_0"

    def node(op, inputs, name, **attrs):
        nonlocal cur
        nodes.append(helper.make_node(op, [cur] + inputs, [name], name=name, **attrs))
        cur = name

    size, alpha, beta, k = lrn
    for i, (k_, s, p, g) in enumerate(GEOM):
        n = i + 1
        node("Conv", [f"conv{n}.weight", f"conv{n}.bias"], f"conv{n}_1", kernel_shape=[k_, k_],
             strides=[s, s], pads=[p] * 4, group=g, dilations=[1, 1])
        node("Relu", [], f"conv{n}_2")
        if n in (1, 2):
            node("LRN", [], f"norm{n}_1", size=size, alpha=alpha, beta=beta, bias=k)
        if n in (1, 2, 5):
            attrs = dict(kernel_shape=[3, 3], strides=[2, 2])
            if pool == "ceil":
                attrs.update(ceil_mode=1, pads=[0, 0, 0, 0])
            elif pool == "pads":
                attrs.update(pads=[0, 0, 1, 1])
            node("MaxPool", [], f"pool{n}_1", **attrs)
    if reshape:
        fin = w["fc6.weight"].shape[1]
        inits.append(numpy_helper.from_array(np.array([BATCH, fin], dtype=np.int64), "fc6_shape"))
        node("Reshape", ["fc6_shape"], "OC2_DUMMY_0")
    else:
        node("Flatten", [], "flatten_0", axis=1)
    for n in (6, 7, 8):
        node("Gemm", [f"fc{n}.weight", f"fc{n}.bias"], f"fc{n}_1", transB=1, alpha=1.0, beta=1.0)
        if n < 8:
            node("Relu", [], f"fc{n}_2")
            if dropout:
                if opset >= 12:
                    node("Dropout", [], f"fc{n}_3")
                else:
                    node("Dropout", [], f"fc{n}_3", ratio=0.5)
    node("Softmax", [], "softmaxout_1", axis=1)
    classes = w["fc8.weight"].shape[0]
    graph = helper.make_graph(
        nodes, "bvlcalexnet-like", [helper.make_tensor_value_info("data_0", TensorProto.FLOAT, [BATCH, 3, in_hw, in_hw])],
        [helper.make_tensor_value_info("softmaxout_1", TensorProto.FLOAT, [BATCH, classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="oracle_interop.py")
    model.ir_version = 7 if opset >= 12 else 4
    onnx.checker.check_model(model)
    onnx.save(model, path)


def run_onnx_torch(path, x, upto_logits=True):
    """Evaluates an ONNX file in PyTorch (float64), op by op: the peer for
    what the file means. Returns the input of the final Softmax (logits)."""
    m = onnx.load(path)
    env = {t.name: torch.tensor(numpy_helper.to_array(t).astype(np.float64)
                                if numpy_helper.to_array(t).dtype == np.float32
                                else numpy_helper.to_array(t)) for t in m.graph.initializer}
    data = [i.name for i in m.graph.input if i.name not in env][0]
    env[data] = torch.tensor(x, dtype=torch.float64)
    logits = None
    for n in m.graph.node:
        a = {at.name: helper.get_attribute_value(at) for at in n.attribute}
        ins = [env[i] for i in n.input if i]
        v = ins[0] if ins else None
        if n.op_type == "Constant":
            env[n.output[0]] = torch.tensor(numpy_helper.to_array(a["value"]))
            continue
        if n.op_type == "Conv":
            p = a.get("pads", [0, 0, 0, 0])
            assert p[0] == p[2] and p[1] == p[3]
            y = F.conv2d(v, ins[1], ins[2] if len(ins) > 2 else None, stride=a.get("strides", [1, 1]),
                         padding=p[:2], groups=a.get("group", 1))
        elif n.op_type == "Relu":
            y = F.relu(v)
        elif n.op_type == "LRN":
            # ONNX and PyTorch both divide alpha by size; bias is k.
            y = F.local_response_norm(v, a["size"], alpha=a.get("alpha", 1e-4),
                                      beta=a.get("beta", 0.75), k=a.get("bias", 1.0))
        elif n.op_type == "MaxPool":
            p = a.get("pads", [0, 0, 0, 0])
            v = F.pad(v, (p[1], p[3], p[0], p[2]), value=float("-inf"))
            y = F.max_pool2d(v, a["kernel_shape"], a.get("strides"), 0,
                             ceil_mode=bool(a.get("ceil_mode", 0)))
        elif n.op_type == "Flatten":
            y = v.flatten(a.get("axis", 1))
        elif n.op_type == "Reshape":
            y = v.reshape([int(s) for s in ins[1]])
        elif n.op_type == "Gemm":
            b = ins[1].t() if a.get("transB", 0) else ins[1]
            y = v @ b + ins[2]
        elif n.op_type in ("Dropout", "Identity"):
            y = v
        elif n.op_type == "Softmax":
            logits = v
            y = torch.softmax(v, dim=a.get("axis", 1))
        else:
            raise ValueError("op " + n.op_type)
        env[n.output[0]] = y
    return (logits if upto_logits else y).numpy()


# ------------------------------------------------------------ Caffe files

def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def key(field, wire):
    return varint(field << 3 | wire)


def f_varint(field, v):
    return key(field, 0) + varint(v)


def f_float(field, v):
    return key(field, 5) + struct.pack("<f", v)


def f_bytes(field, b):
    if isinstance(b, str):
        b = b.encode()
    return key(field, 2) + varint(len(b)) + b


def f_packed_floats(field, a):
    return f_bytes(field, np.ascontiguousarray(a, dtype="<f4").tobytes())


def blob(a, v1, fc=False):
    """V1: num/channels/height/width (fc weights as (1,1,out,in), biases as
    (1,1,1,out), as in 2014 files). Current: BlobShape."""
    if v1:
        s = list(a.shape)
        s = [1] * (4 - len(s)) + s
        return (f_varint(1, s[0]) + f_varint(2, s[1]) + f_varint(3, s[2]) + f_varint(4, s[3]) +
                f_packed_floats(5, a))
    shape = b"".join(varint(d) for d in a.shape)
    return f_bytes(7, f_bytes(1, shape)) + f_packed_floats(5, a)


V1 = dict(CONVOLUTION=4, DATA=5, DROPOUT=6, INNER_PRODUCT=14, LRN=15, POOLING=17, RELU=18,
          SOFTMAX_LOSS=21, ACCURACY=1)
NEW = dict(CONVOLUTION="Convolution", DATA="Data", DROPOUT="Dropout", INNER_PRODUCT="InnerProduct",
           LRN="LRN", POOLING="Pooling", RELU="ReLU", SOFTMAX_LOSS="SoftmaxWithLoss",
           ACCURACY="Accuracy")


def caffe_layer(v1, name, kind, bottom, top, blobs=(), param=None, extra=b""):
    """param: (which, bytes) where which is conv/dropout/ip/lrn/pool."""
    if v1:
        fields = dict(conv=10, dropout=12, ip=17, lrn=18, pool=19)
        b = f_bytes(4, name) + f_varint(5, V1[kind])
        b += b"".join(f_bytes(2, x) for x in bottom) + b"".join(f_bytes(3, x) for x in top)
        b += b"".join(f_bytes(6, x) for x in blobs)
        if kind in ("CONVOLUTION", "INNER_PRODUCT"):
            b += f_float(7, 1.0) + f_float(7, 2.0)  # blobs_lr: unknown to imgret, skipped
        if param:
            b += f_bytes(fields[param[0]], param[1])
        return f_bytes(2, b + extra)
    fields = dict(conv=106, dropout=108, ip=117, lrn=118, pool=121)
    b = f_bytes(1, name) + f_bytes(2, NEW[kind])
    b += b"".join(f_bytes(3, x) for x in bottom) + b"".join(f_bytes(4, x) for x in top)
    b += b"".join(f_bytes(7, x) for x in blobs)
    if param:
        b += f_bytes(fields[param[0]], param[1])
    return f_bytes(100, b + extra)


def write_caffemodel(path, w_bgr, v1, lrn_alpha=1e-4, lrn_k=1.0):
    """A bvlc_alexnet-shaped net: data, conv/relu/norm/pool..., fc, loss,
    accuracy; BGR conv1 as given; Caffe's LRN (alpha/size, k)."""
    L = lambda *a, **k: caffe_layer(v1, *a, **k)
    out = f_bytes(1, "AlexNet")
    # A data layer with a field imgret does not know (transform_param), skipped.
    out += L("data", "DATA", [], ["data", "label"], extra=f_bytes(100 if v1 else 101, f_varint(3, 227)))
    cur = "data"
    for i, (k, s, p, g) in enumerate(GEOM):
        n = i + 1
        wt, bs = w_bgr[f"conv{n}.weight"], w_bgr[f"conv{n}.bias"]
        conv = (f_varint(1, wt.shape[0]) + f_varint(3, p) + f_varint(4, k) + f_varint(5, g) +
                f_varint(6, s))
        out += L(f"conv{n}", "CONVOLUTION", [cur], [f"conv{n}"], [blob(wt, v1), blob(bs, v1)], ("conv", conv))
        out += L(f"relu{n}", "RELU", [f"conv{n}"], [f"conv{n}"])
        cur = f"conv{n}"
        if n in (1, 2):
            lrn = f_varint(1, 5) + f_float(2, lrn_alpha) + f_float(3, 0.75) + f_float(5, lrn_k)
            out += L(f"norm{n}", "LRN", [cur], [f"norm{n}"], param=("lrn", lrn))
            cur = f"norm{n}"
        if n in (1, 2, 5):
            out += L(f"pool{n}", "POOLING", [cur], [f"pool{n}"],
                     param=("pool", f_varint(1, 0) + f_varint(2, 3) + f_varint(3, 2)))
            cur = f"pool{n}"
    for n in (6, 7, 8):
        wt, bs = w_bgr[f"fc{n}.weight"], w_bgr[f"fc{n}.bias"]
        out += L(f"fc{n}", "INNER_PRODUCT", [cur], [f"fc{n}"],
                 [blob(wt, v1, True), blob(bs, v1, True)], ("ip", f_varint(1, wt.shape[0])))
        cur = f"fc{n}"
        if n < 8:
            out += L(f"relu{n}", "RELU", [cur], [cur])
            out += L(f"drop{n}", "DROPOUT", [cur], [cur], param=("dropout", f_float(1, 0.5)))
    out += L("loss", "SOFTMAX_LOSS", [cur, "label"], ["loss"])
    out += L("accuracy", "ACCURACY", [cur, "label"], ["accuracy"])
    with open(path, "wb") as f:
        f.write(out)


def caffe_torch(w_bgr, x_bgr, lrn=True, lrn_alpha=1e-4, lrn_k=1.0):
    """The net as Caffe computes it, in float64 on BGR input."""
    t = {k: torch.tensor(v, dtype=torch.float64) for k, v in w_bgr.items()}
    v = torch.tensor(x_bgr, dtype=torch.float64)
    for i, (k, s, p, g) in enumerate(GEOM):
        n = i + 1
        v = F.relu(F.conv2d(v, t[f"conv{n}.weight"], t[f"conv{n}.bias"], stride=s, padding=p, groups=g))
        if n in (1, 2) and lrn:
            v = F.local_response_norm(v, 5, alpha=lrn_alpha, beta=0.75, k=lrn_k)
        if n in (1, 2, 5):
            v = F.max_pool2d(v, 3, 2, ceil_mode=True)
    v = v.flatten(1)
    for n in (6, 7, 8):
        v = F.linear(v, t[f"fc{n}.weight"], t[f"fc{n}.bias"])
        if n < 8:
            v = F.relu(v)
    return v.numpy()


# ------------------------------------------------------------------ running

def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        print(r.stdout + r.stderr)
        raise SystemExit(f"FAIL {' '.join(cmd)} exited {r.returncode}")
    return r.stdout


def imgret_logits(fwd, model, x, d, mean_out=None):
    xp = os.path.join(d, "x.f32")
    lp = os.path.join(d, "logits.f32")
    x.astype(np.float32).tofile(xp)
    run([fwd, model, xp, str(len(x)), lp] + ([mean_out] if mean_out else []))
    return np.fromfile(lp, dtype=np.float32).reshape(len(x), -1)


def onnx_case(imgret, fwd, d, widths, in_hw, opset, pool, **kw):
    w = random_weights(widths, in_hw, seed=in_hw + opset)
    x = image_batch(in_hw, seed=1)
    src = os.path.join(d, "model.onnx")
    write_onnx(src, w, in_hw, opset, pool, **kw)
    model = os.path.join(d, "model.imgret")
    t0 = time.time()
    print(run([imgret, "import", "onnx", src, "-o", model]).strip())
    dt = time.time() - t0
    ref = run_onnx_torch(src, x)
    got = imgret_logits(fwd, model, x, d)
    e = rel(got, ref)
    mb = os.path.getsize(src) / 2**20
    check(e < TOL, f"onnx opset {opset} {in_hw}x{in_hw} pool={pool}: logits rel err {e:.3e} "
                   f"(tol {TOL:g}; {mb:.0f} MB imported in {dt:.2f} s)")
    info = run([imgret, "info", model])
    check("paper-shaped AlexNet" in info, "imgret info calls it a paper-shaped AlexNet")
    return w, x, model, got


def case_caffe(imgret, fwd, d, widths, v1, full):
    in_hw = 227
    w = random_weights(widths, in_hw, seed=11 if v1 else 12)
    # The file holds a BGR conv1 (Caffe's); imgret must reverse it.
    w_bgr = dict(w)
    x = image_batch(in_hw, seed=2)  # RGB, as imgret takes it
    x_bgr = x[:, ::-1].copy()
    src = os.path.join(d, "model.caffemodel")
    write_caffemodel(src, w_bgr, v1)
    rng = np.random.default_rng(5)
    mean_bgr = rng.uniform(90, 130, (3, 256, 256)).astype(np.float32)
    mean_path = os.path.join(d, "mean.binaryproto")
    with open(mean_path, "wb") as f:
        f.write(blob(mean_bgr[None], True))
    labels = os.path.join(d, "synset_words.txt")
    with open(labels, "w") as f:
        for i in range(widths["classes"]):
            f.write(f"n{i:08d} class {i}, synonym\n")
    model = os.path.join(d, "model.imgret")
    t0 = time.time()
    print(run([imgret, "import", "caffe", src, "--mean", mean_path, "--labels", labels, "-o", model]).strip())
    dt = time.time() - t0
    ref = caffe_torch(w_bgr, x_bgr)
    mean_out = os.path.join(d, "mean.f32")
    got = imgret_logits(fwd, model, x, d, mean_out)
    e = rel(got, ref)
    mb = os.path.getsize(src) / 2**20
    fmt = "2014 V1" if v1 else "current"
    check(e < TOL, f"caffe ({fmt} format) 227: logits rel err {e:.3e} (tol {TOL:g})")
    if full:
        print(f"     timing: import of the full-size {fmt} .caffemodel ({mb:.0f} MB) + mean + "
              f"labels, written as .imgret: {dt:.2f} s (target < 2 s)")
    e_rgb = rel(caffe_torch(w_bgr, x), ref)
    check(e_rgb > 100 * TOL, f"sensitivity: feeding the Caffe net RGB instead of BGR moves the logits by {e_rgb:.3e}")
    e_lrn = rel(caffe_torch(w_bgr, x_bgr, lrn=False), ref)
    check(e_lrn > 100 * TOL, f"sensitivity: dropping LRN moves the logits by {e_lrn:.3e}")
    e_paper = rel(caffe_torch(w_bgr, x_bgr, lrn_k=2.0), ref)
    check(e_paper > 100 * TOL, f"sensitivity: the paper's k=2 instead of Caffe's k=1 moves them by {e_paper:.3e}")
    mean_rgb = np.fromfile(mean_out, dtype=np.float32).reshape(3, 256, 256)
    check(np.array_equal(mean_rgb, mean_bgr[::-1]), "mean image stored exactly, reordered BGR -> RGB")
    info = run([imgret, "info", model])
    check(f"{widths['classes']} names" in info and "RGB" in info and "alpha/size" in info,
          "imgret info shows the class names, RGB input and Caffe's LRN convention")


def case_export_round_trip(imgret, fwd, d):
    w, x, model, got = onnx_case(imgret, fwd, d, SMALL, 224, 9, "pads", raw=False, reshape=True)
    for opset in (12, 9):
        out = os.path.join(d, f"export{opset}.onnx")
        print(run([imgret, "export", "onnx", model, "--opset", str(opset), "-o", out]).strip())
        m = onnx.load(out)
        try:
            onnx.checker.check_model(m, full_check=True)
            ok = True
        except Exception as ex:  # noqa: BLE001 - report any checker failure
            print(ex)
            ok = False
        check(ok, f"exported ONNX (opset {opset}) passes onnx.checker (full_check, shape inference)")
        pools = [n for n in m.graph.node if n.op_type == "MaxPool"]
        attrs = {a.name: helper.get_attribute_value(a) for a in pools[0].attribute}
        if opset == 9:
            check(attrs.get("pads") == [0, 0, 1, 1] and "ceil_mode" not in attrs,
                  "opset 9 export writes rounding up as pads [0,0,1,1]")
        else:
            check(attrs.get("ceil_mode") == 1, "opset 12 export writes ceil_mode=1")
        e = rel(run_onnx_torch(out, x), run_onnx_torch(os.path.join(d, "model.onnx"), x))
        check(e < TOL, f"exported ONNX (opset {opset}) run by PyTorch: rel err {e:.3e} vs the source file")
        back = os.path.join(d, f"back{opset}.imgret")
        run([imgret, "import", "onnx", out, "-o", back])
        again = imgret_logits(fwd, back, x, d)
        check(np.array_equal(again, got), f"export (opset {opset}) -> import: identical logits")
    # Damage: imgret says what is wrong and does not crash.
    src = os.path.join(d, "model.onnx")
    raw = open(src, "rb").read()
    bad = os.path.join(d, "bad.onnx")
    for cut in (10, len(raw) // 2, len(raw) - 3):
        open(bad, "wb").write(raw[:cut])
        r = subprocess.run([imgret, "import", "onnx", bad, "-o", os.path.join(d, "bad.imgret")],
                           capture_output=True, text=True)
        check(r.returncode == 1 and "imgret import:" in r.stderr,
              f"truncated ONNX (cut at {cut}) is an error: {r.stderr.strip()[:110]}")
    m = onnx.load(src)
    m.graph.node[3].op_type = "AveragePool"
    onnx.save(m, bad)
    r = subprocess.run([imgret, "import", "onnx", bad, "-o", os.path.join(d, "bad.imgret")],
                       capture_output=True, text=True)
    check(r.returncode == 1 and "AveragePool" in r.stderr, f"unknown op named: {r.stderr.strip()[:140]}")


def main():
    case, imgret, fwd, d = sys.argv[1:5]
    os.makedirs(d, exist_ok=True)
    torch.set_num_threads(2)
    if case == "onnx227_full":
        onnx_case(imgret, fwd, d, PAPER, 227, 12, "floor")
    elif case == "onnx224_ceil_full":
        onnx_case(imgret, fwd, d, PAPER, 224, 12, "ceil")
    elif case == "onnx224_pads_small":
        onnx_case(imgret, fwd, d, SMALL, 224, 9, "pads", raw=False, reshape=True)
    elif case == "caffe_v1_full":
        case_caffe(imgret, fwd, d, PAPER, True, True)
    elif case == "caffe_new_small":
        case_caffe(imgret, fwd, d, SMALL, False, False)
    elif case == "export_round_trip":
        case_export_round_trip(imgret, fwd, d)
    else:
        raise SystemExit("unknown case " + case)
    # Full-size files are 240 MB each: do not leave them behind.
    for f in os.listdir(d):
        if f.endswith((".onnx", ".caffemodel", ".imgret")):
            os.remove(os.path.join(d, f))
    print(f"{'FAILED' if failures else 'passed'}: {failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
