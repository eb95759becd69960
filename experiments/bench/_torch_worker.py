"""PyTorch side of experiments.bench.torch_compare: run by the benchmark's own torch venv's python
(never imported by the project; torch is no dependency of it). Reads JSON commands on stdin, one
per line, answers one JSON line each on stdout:

    {"cmd": "threads", "n": 1}
    {"cmd": "build", "key": "d256-float32", "model": {...}, "batch": 16, "seq": 256}
    {"cmd": "time", "key": "d256-float32", "steps": 3}     -> {"s": seconds per step}

The model is the project's decoder (lm.model) written in eager PyTorch: token embedding plus
learned positions or RoPE, pre-norm blocks (RMSNorm; one fused q/k/v projection; causal
scaled_dot_product_attention; GELU MLP of d_ff or SwiGLU), final RMSNorm, untied unembedding,
float32 cross-entropy, AdamW. bfloat16 is autocast (float32 parameters, bf16 matmuls), as lm's
compute_dtype does.
"""

import json
import math
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn


def rope(x, theta=10000.0):
    """Rotary positions on x [B, H, L, E] (halves rotated, as lm.model)."""
    e, length = x.shape[-1], x.shape[-2]
    freqs = theta ** (-torch.arange(0, e // 2, dtype=torch.float32, device=x.device) * 2 / e)
    angles = torch.arange(length, dtype=torch.float32, device=x.device)[:, None] * freqs[None]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., : e // 2], x[..., e // 2:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Block(nn.Module):
    def __init__(self, m):
        super().__init__()
        d, self.heads, self.head_dim = m["d_model"], m["n_heads"], m["head_dim"]
        inner = self.heads * self.head_dim
        self.norm1, self.norm2 = nn.RMSNorm(d, eps=1e-6), nn.RMSNorm(d, eps=1e-6)
        self.qkv, self.out = nn.Linear(d, 3 * inner, bias=False), nn.Linear(inner, d, bias=False)
        self.swiglu, self.rope, self.scale = m["activation"] == "swiglu", m["positions"] == "rope", m["attn_scale"]
        self.up = nn.Linear(d, (2 if self.swiglu else 1) * m["d_ff"], bias=False)
        self.down = nn.Linear(m["d_ff"], d, bias=False)

    def forward(self, x):
        b, length, _ = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, length, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.rope:
            q, k = rope(q), rope(k)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        x = x + self.out(a.transpose(1, 2).reshape(b, length, -1))
        h = self.up(self.norm2(x))
        if self.swiglu:
            gate, lin = h.chunk(2, dim=-1)
            h = F.silu(gate) * lin
        else:
            h = F.gelu(h)
        return x + self.down(h)


class Model(nn.Module):
    def __init__(self, m, seq):
        super().__init__()
        self.embed = nn.Embedding(m["vocab_size"], m["d_model"])
        self.pos = nn.Parameter(torch.randn(seq, m["d_model"]) * 0.02) if m["positions"] == "learned" else None
        self.blocks = nn.ModuleList(Block(m) for _ in range(m["n_layers"]))
        self.norm = nn.RMSNorm(m["d_model"], eps=1e-6)
        self.head = nn.Linear(m["d_model"], m["vocab_size"], bias=False)
        self.logit_mult = m["logit_mult"]

    def forward(self, tokens):
        x = self.embed(tokens)
        if self.pos is not None:
            x = x + self.pos[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)) * self.logit_mult


def build(cmd):
    torch.manual_seed(0)
    m = cmd["model"]
    model = Model(m, cmd["seq"])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    data = torch.randint(0, m["vocab_size"], (cmd["batch"], cmd["seq"] + 1))
    bf16 = m["dtype"] == "bfloat16"

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(data[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), data[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    step()
    return step


def main():
    steps = {}
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "threads":
            torch.set_num_threads(cmd["n"])
            out = {"torch": torch.__version__, "threads": torch.get_num_threads()}
        elif cmd["cmd"] == "build":
            steps[cmd["key"]] = build(cmd)
            out = {"built": cmd["key"]}
        else:
            fn = steps[cmd["key"]]
            clock = time.process_time if cmd.get("clock") == "cpu" else time.perf_counter
            t0 = clock()
            for _ in range(cmd["steps"]):
                loss = fn()
            out = {"s": (clock() - t0) / cmd["steps"], "loss": loss if math.isfinite(loss) else None}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
