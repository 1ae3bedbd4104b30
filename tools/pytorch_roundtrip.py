#!/usr/bin/env python3
"""Checks that model files travel both ways between specnn and PyTorch (needs torch and safetensors;
never run by CI). A PyTorch-initialised network saved with safetensors loads into specnn and gives the
same outputs; a specnn-initialised network loads into PyTorch with load_state_dict and gives the same
outputs. Usage: cargo build --release --examples && python3 tools/pytorch_roundtrip.py"""
import json, math, os, subprocess, sys, tempfile
import torch
from safetensors.torch import save_file, load_file
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benches"))
from pytorch_compare import VmpCnn, ResAnn

EXE = os.path.join(os.path.dirname(__file__), "..", "target", "release", "examples", "predict_file")
ARCHS = [
    ({"kind": "res_ann", "inputs": 143, "width": 64, "blocks": 2, "outputs": 3}, lambda: ResAnn(143, 64, 2, 3), (143,)),
    ({"kind": "vmp_cnn", "in_side": 64, "channels": [8, 16, 32], "kernel": 9, "padding": "same", "activation": "relu",
      "dense": [32, 16], "outputs": 4}, lambda: VmpCnn((8, 16, 32), 9, "same", (32, 16), 4), (1, 64, 64)),
]

def x_for(shape, batch=2):
    n = batch * math.prod(shape)
    return torch.tensor([math.sin(i) / 2 + 0.5 for i in range(n)], dtype=torch.float32).reshape(batch, *shape)

def run(*args):
    return torch.tensor(json.loads(subprocess.run([EXE, *args], check=True, capture_output=True, text=True).stdout))

ok = True
with tempfile.TemporaryDirectory() as d:
    for arch, make, shape in ARCHS:
        torch.manual_seed(0)
        net = make().eval()
        with torch.no_grad():
            want = net(x_for(shape)).flatten()
        p = os.path.join(d, "from_torch.safetensors")
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, p, metadata={"specnn-arch": json.dumps(arch)})
        got = run(p)
        err = (got - want).abs().max().item()
        print(f"{arch['kind']}: PyTorch -> specnn max |diff| {err:.2e}")
        ok &= err < 1e-4
        q = os.path.join(d, "from_specnn.safetensors")
        got = run(q, "--save-new", json.dumps(arch))
        net2 = make().eval()
        net2.load_state_dict(load_file(q))
        with torch.no_grad():
            want = net2(x_for(shape)).flatten()
        err = (got - want).abs().max().item()
        print(f"{arch['kind']}: specnn -> PyTorch max |diff| {err:.2e}")
        ok &= err < 1e-4
print("round trip", "ok" if ok else "FAILED")
sys.exit(0 if ok else 1)
