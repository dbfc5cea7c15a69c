"""Writes the inputs of bench/caffe_import.sh: full-size synthetic
.caffemodel files with bvlc_alexnet's shapes (60,965,224 parameters, 233 MB)
in the 2014 V1 format (as bvlc_alexnet.caffemodel is) and in the current
one, a 3x256x256 mean .binaryproto and a 1,000-line synset_words.txt. The
encoder is tests/interop/oracle_interop.py's (written from caffe.proto's
field numbers, not from imgret's .proto).

    /usr/bin/python3 bench/caffe_import.py DIR
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "interop"))
import oracle_interop as oi  # noqa: E402


def main():
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    w = oi.random_weights(oi.PAPER, 227, seed=11)
    oi.write_caffemodel(os.path.join(d, "alexnet_v1.caffemodel"), w, True)
    oi.write_caffemodel(os.path.join(d, "alexnet_new.caffemodel"), w, False)
    mean = np.random.default_rng(5).uniform(90, 130, (1, 3, 256, 256)).astype(np.float32)
    with open(os.path.join(d, "imagenet_mean.binaryproto"), "wb") as f:
        f.write(oi.blob(mean, True))
    with open(os.path.join(d, "synset_words.txt"), "w") as f:
        for i in range(1000):
            f.write(f"n{i:08d} class {i}, synonym\n")


if __name__ == "__main__":
    main()
