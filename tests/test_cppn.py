"""Tests of the CPPN encoding against the independent reference in `tests/cppn_reference.py`.

1. Golden tests: genomes grown by long random mutation sequences (and random DAG genomes built
   directly in the padded format) are rendered by `CppnEncoding.outputs`/`render`/`express` and
   by the plain per-pixel float64 reference; raw outputs must agree within a per-pixel float32
   error bound, and bytes exactly, except one level where the reference lies within that bound
   of a byte boundary (counted; gray and HLS/HSV colour, raw and normalised coordinates, native
   and other sizes).
2. Property tests (hypothesis): the structural invariants of the padded genomes along random
   lineages, and capacity handling.
3. Initial genomes.
4. Statistics of the mutation operators, from one initial genome and along lineages (compared
   with the reference's own mutation of docs/faithfulness.md, "CPPN genome and mutation").
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxfool.search.encodings.cppn import (
    ACTIVATIONS,
    IDENTITY,
    NUM_INPUTS,
    CppnEncoding,
    CppnGenome,
)

try:
    from tests import cppn_reference as ref
except ImportError:  # tests/ run without being a package
    import cppn_reference as ref

# Tolerance on raw outputs: |impl - ref| <= ATOL + SAFETY * bound, where `bound` is the reference's
# first-order bound on the float32 rounding error at that pixel and output (`ref.evaluate`).
# A flat tolerance does not fit: raw x, y reach S - 1, weights reach 10, parallel edges add up, so
# sine arguments reach thousands (float32 rounding ~1e-4 there) and each further layer can multiply
# that error by |w| ~ 10. Such pixels get a looser tolerance; well-conditioned pixels a tight one.
ATOL = 1e-5
SAFETY = 4.0
# Share of compared pixels allowed one byte level off, each only where the reference lies within
# the tolerance of a byte boundary. Such cases come in clumps: a region saturated at 1 - 1e-7 in
# float64 is exactly 1.0 (byte 255, not 254) in float32, as in the original's float code.
MAX_BOUNDARY_FRACTION = 5e-3
MAX_ILL_FRACTION = 0.15  # share of pixels too ill-conditioned in float32 for a byte comparison

# Encodings shared by all tests, so that each jit compiles once (mutation ignores image size).
GRAY = CppnEncoding((28, 28, 1))  # default capacity 64 nodes / 256 edges
COLOR = CppnEncoding((20, 20, 3), max_nodes=16, max_edges=40)  # small: capacity limits bite
MAX_STEPS = 160  # longest mutation lineage in these tests
N_STATS = 2000  # genomes per `init` / vmapped `mutate` call in sections 3 and 4 (one shape)
BATCH = 14  # genomes per golden render; property tests pad to it to reuse the compiled renders


def _np(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


def _take(batch, k):
    return jax.tree_util.tree_map(lambda a: a[k], batch)


def _stack(genomes):
    """A batch from single genomes (stacked in NumPy: nothing to compile)."""
    return jax.tree_util.tree_map(lambda *a: np.stack([np.asarray(x) for x in a]), *genomes)


def _repeat(genome, n):
    return jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (n, *a.shape)), genome)


@functools.cache
def _mutate_fn(enc: CppnEncoding):
    return jax.jit(enc.mutate)


@functools.cache
def _vmutate_fn(enc: CppnEncoding):
    return jax.jit(jax.vmap(enc.mutate))


def _lineage(enc: CppnEncoding, seed: int, steps: int, every_step: bool = False):
    """`init` then `steps` sequential `mutate` calls; the final genome (or all of them)."""
    mutate = _mutate_fn(enc)
    key_init, key = jax.random.split(jax.random.key(seed))
    g = _take(enc.init(key_init, 1), 0)
    trail = [g]
    keys = jax.random.split(key, MAX_STEPS)  # one shape: split compiles once
    for t in range(steps):
        g = mutate(keys[t], g)
        trail.append(g)
    return trail if every_step else g


def _random_dag(rng: np.random.Generator, C: int, max_nodes: int, max_edges: int) -> CppnGenome:
    """A random valid genome built directly in the padded format (not through `mutate`).

    Hidden nodes sit in random slots, alive edges in random slots and in random order (not
    topological), parallel edges repeat, dead slots hold random junk that must be ignored,
    and a long chain makes the graph deep. Edges never leave an output nor enter an input.
    """
    first_hidden = NUM_INPUTS + C
    n_hidden = int(rng.integers(0, min(max_nodes - first_hidden, 10) + 1))
    hidden = rng.choice(np.arange(first_hidden, max_nodes), n_hidden, replace=False)
    act = rng.integers(0, 4, max_nodes).astype(np.int32)
    act[:NUM_INPUTS] = IDENTITY
    node_alive = np.zeros(max_nodes, bool)
    node_alive[:first_hidden] = True
    node_alive[hidden] = True
    # rank: inputs first, hidden in a random order, outputs last
    rank = {n: 0 for n in range(NUM_INPUTS)}
    rank.update({int(h): 1 + r for r, h in enumerate(rng.permutation(hidden))})
    rank.update({NUM_INPUTS + k: n_hidden + 1 for k in range(C)})
    alive = sorted(rank)
    chain = [int(rng.integers(NUM_INPUTS))] + sorted((int(h) for h in hidden), key=rank.get)
    chain.append(NUM_INPUTS + int(rng.integers(C)))
    pairs = list(zip(chain[:-1], chain[1:], strict=True))  # input -> h1 -> h2 -> ... -> an output
    # about as sparse as grown genomes: dense deep DAGs with |w| up to 10 are chaotic in float32
    n_edges = int(rng.integers(len(pairs), min(max_edges, len(pairs) + len(rank)) + 1))
    while len(pairs) < n_edges:
        s, d = (int(v) for v in rng.choice(alive, 2))
        if rank[s] < rank[d] and not (NUM_INPUTS <= s < first_hidden) and d >= NUM_INPUTS:
            pairs.append((s, d))
            if rng.random() < 0.15 and len(pairs) < n_edges:
                pairs.append((s, d))  # a parallel edge
    slots = rng.permutation(max_edges)[: len(pairs)]
    src = rng.integers(0, max_nodes, max_edges).astype(np.int32)  # junk in dead slots
    dst = rng.integers(0, max_nodes, max_edges).astype(np.int32)
    weight = rng.random(max_edges).astype(np.float32)
    weight[rng.random(max_edges) < 0.05] = 0.0
    weight[rng.random(max_edges) < 0.05] = 1.0
    edge_alive = np.zeros(max_edges, bool)
    for slot, (s, d) in zip(slots, pairs, strict=True):
        src[slot], dst[slot], edge_alive[slot] = s, d, True
    return CppnGenome(
        act=jnp.asarray(act),
        node_alive=jnp.asarray(node_alive),
        src=jnp.asarray(src),
        dst=jnp.asarray(dst),
        weight=jnp.asarray(weight),
        edge_alive=jnp.asarray(edge_alive),
        capacity_hits=jnp.asarray(0, jnp.int32),
    )


# --- structural invariants ---


def check_invariants(g, enc: CppnEncoding) -> None:
    """Asserts the invariants of ONE genome (numpy arrays)."""
    C = enc.image_shape[-1]
    n_fixed = NUM_INPUTS + C
    act, node_alive = np.asarray(g.act), np.asarray(g.node_alive)
    src, dst, gene = np.asarray(g.src), np.asarray(g.dst), np.asarray(g.weight)
    edge_alive = np.asarray(g.edge_alive)
    assert act.shape == node_alive.shape == (enc.max_nodes,)
    assert src.shape == dst.shape == gene.shape == edge_alive.shape == (enc.max_edges,)
    assert act.dtype == np.int32 and src.dtype == np.int32 and dst.dtype == np.int32
    assert gene.dtype == np.float32 and node_alive.dtype == bool and edge_alive.dtype == bool
    assert np.asarray(g.capacity_hits).shape == () and int(g.capacity_hits) >= 0
    assert node_alive[:n_fixed].all(), "an input or output node is dead"
    assert (act[:NUM_INPUTS] == IDENTITY).all(), "an input lost its IDENTITY activation"
    alive_act = act[NUM_INPUTS:][node_alive[NUM_INPUTS:]]
    assert ((alive_act >= 0) & (alive_act < len(ACTIVATIONS))).all(), alive_act
    s, d = src[edge_alive], dst[edge_alive]
    assert ((s >= 0) & (s < enc.max_nodes) & (d >= 0) & (d < enc.max_nodes)).all()
    assert node_alive[s].all() and node_alive[d].all(), "an alive edge joins a dead node"
    assert (d >= NUM_INPUTS).all(), "an alive edge enters an input"
    assert not ((s >= NUM_INPUTS) & (s < n_fixed)).any(), "an alive edge leaves an output"
    alive_gene = gene[edge_alive]
    assert np.isfinite(alive_gene).all() and (alive_gene >= 0).all() and (alive_gene <= 1).all()
    assert node_alive.sum() <= enc.max_nodes and edge_alive.sum() <= enc.max_edges
    # acyclic: Kahn's algorithm in the reference raises on a cycle
    ref.topological_order(
        np.flatnonzero(node_alive).tolist(), list(zip(s.tolist(), d.tolist(), strict=True))
    )


def _hidden_count(g, C):
    return int(np.asarray(g.node_alive)[NUM_INPUTS + C :].sum())


# --- 1. golden tests ---


@functools.cache
def _golden_genomes(enc: CppnEncoding):
    """8 lineage genomes (40..150 mutations) and 6 directly built random DAGs, as numpy trees."""
    steps = np.linspace(40, 150, 8).astype(int)
    genomes = [_np(_lineage(enc, 100 + k, int(n))) for k, n in enumerate(steps)]
    rng = np.random.default_rng(enc.max_nodes + enc.image_shape[-1])
    C = enc.image_shape[-1]
    genomes += [_np(_random_dag(rng, C, enc.max_nodes, enc.max_edges)) for _ in range(6)]
    assert len(genomes) == BATCH
    for g in genomes:
        check_invariants(g, enc)
    return genomes


def _boundary_rgb_ok(got, conv, lo, hi):
    """True when some H, L, S bytes in [lo, hi] (at most two adjacent levels each) map to `got`
    (allowing one level where the conversion sits at a rounding tie)."""
    for hls in itertools.product(*(range(a, b + 1) for a, b in zip(lo, hi, strict=True))):
        rgb, tie = conv(*hls)
        diff = np.abs(np.asarray(rgb) - got).max()
        if diff == 0 or (tie and diff <= 1):
            return True
    return False


def _compare(enc: CppnEncoding, genomes, size: int, report: dict, with_outputs=True) -> None:
    """Compares `outputs` (if `with_outputs`) and the bytes with the reference. The bytes come
    from `render(genomes, size)`, or at the native size from `express` in colour and from
    `render(genomes)` in gray (so both spellings of the native render are checked)."""
    S, C = enc.image_shape[0], enc.image_shape[-1]
    batch = _stack(genomes)
    if size != S:
        got_img = enc.render(batch, size)
    else:
        got_img = enc.express(batch) if C == 3 else enc.render(batch)
    got_img = np.asarray(got_img)
    assert got_img.shape == (len(genomes), size, size, C) and got_img.dtype == np.uint8
    if with_outputs:
        got_out = np.asarray(enc.outputs(batch, size))
        assert got_out.shape == (len(genomes), size, size, C) and got_out.dtype == np.float32
        assert np.isfinite(got_out).all() and (np.abs(got_out) <= 1).all()
    conv = ref.hls_bytes_to_rgb if enc.color == "hls" else ref.hsv_bytes_to_rgb
    for k, g in enumerate(genomes):
        out, bound = ref.outputs(g, C, S, size, enc.coords)
        tol = ATOL + SAFETY * bound
        err = np.abs(got_out[k].astype(np.float64) - out) if with_outputs else np.zeros_like(out)
        if (err > tol).any():
            j, i, c = np.argwhere(err > tol)[0]
            pytest.fail(
                f"{enc} size {size} genome {k}: outputs differ at row {j} col {i} out {c}: "
                f"impl {got_out[k, j, i, c]!r} ref {out[j, i, c]!r} (tol {tol[j, i, c]:.2e}); "
                f"x,y,d = {ref.pixel_inputs(float(i), float(j), S, size, enc.coords)[:3]}; "
                f"genome {g}"
            )
        report["pixels"] += size * size
        report["max_err"] = max(report["max_err"], float(err.max()))
        report["max_err_over_tol"] = max(report["max_err_over_tol"], float((err / tol).max()))
        report["varying"] += int(out.std(axis=(0, 1)).max() > 1e-3)
        report["genomes"] += 1
        if C == 1 and with_outputs:  # render is |trunc(outputs * 255)| of its own outputs
            own = np.abs(np.trunc(got_out[k] * np.float32(255))).astype(np.int64)
            gap = np.abs(got_img[k].astype(np.int64) - own)
            assert gap.max() <= 1, "render disagrees with |trunc(outputs * 255)|"
            report["render_vs_outputs"] += int((gap > 0).sum())
        # Bytes are compared where float32 pins them to within one level (tol <= 0.5 / 255);
        # elsewhere (chaotic pixels: deep sine chains of large weights) only outputs are checked.
        ill = (255.0 * tol > 0.5).any(axis=-1)
        report["ill_conditioned"] += int(ill.sum())
        want = ref.output_byte(out)
        lo, hi = ref.byte_range(out, tol)
        lo, hi = np.minimum(lo, want), np.maximum(hi, want)
        if C == 1:
            img = got_img[k, ..., 0].astype(np.int64)
            off = (img != want[..., 0]) & ~ill
            ok = ((img >= lo[..., 0]) & (img <= hi[..., 0])) | ill
            if not ok.all():
                j, i = np.argwhere(~ok)[0]
                pytest.fail(
                    f"{enc} size {size} genome {k}: byte at row {j} col {i} is {img[j, i]}, "
                    f"reference {want[j, i, 0]} (output {out[j, i, 0]!r}); genome {g}"
                )
            report["boundary"] += int(off.sum())
            continue
        for j in range(size):
            for i in range(size):
                if ill[j, i]:
                    continue
                got = got_img[k, j, i].astype(np.int64)
                rgb, tie = conv(*want[j, i])
                diff = np.abs(np.asarray(rgb) - got).max()
                if diff == 0:
                    continue
                if tie and diff <= 1:
                    report["rgb_ties"] += 1
                    continue
                if not _boundary_rgb_ok(got, conv, lo[j, i], hi[j, i]):
                    pytest.fail(
                        f"{enc} size {size} genome {k}: RGB at row {j} col {i} is {got}, "
                        f"reference {rgb} from H,L,S / H,S,V bytes {want[j, i]} "
                        f"(outputs {out[j, i]}); genome {g}"
                    )
                report["boundary"] += 1


def _new_report():
    keys = ("pixels", "boundary", "rgb_ties", "ill_conditioned", "render_vs_outputs")
    return dict.fromkeys(keys + ("varying", "genomes"), 0) | {
        "max_err": 0.0,
        "max_err_over_tol": 0.0,
    }


def _finish(report, label):
    print(f"\n[{label}] {report}")
    compared = report["pixels"] - report["ill_conditioned"]
    assert report["ill_conditioned"] <= MAX_ILL_FRACTION * report["pixels"], report
    assert report["boundary"] <= MAX_BOUNDARY_FRACTION * compared, report
    assert report["render_vs_outputs"] <= MAX_BOUNDARY_FRACTION * report["pixels"], report
    assert report["varying"] >= report["genomes"] // 3, "too few non-constant images to test"


def test_golden_gray():
    """Default capacity. Raw coordinates at the native 28 x 28: outputs and bytes; normalised
    coordinates at 40 x 40: bytes."""
    genomes = _golden_genomes(GRAY)
    report = _new_report()
    _compare(GRAY, genomes, 28, report)
    _compare(dataclasses.replace(GRAY, coords="normalized"), genomes, 40, report, False)
    _finish(report, "gray")


@pytest.mark.parametrize("color, coords, size", [("hls", "raw", 13), ("hsv", "normalized", 20)])
def test_golden_color(color, coords, size):
    """Small capacity (16 nodes, 40 edges). HLS (the original): raw coordinates scaled to 13 x 13,
    outputs and RGB bytes. HSV (an option; outputs taken as H, S, V bytes): normalised
    coordinates at the native 20 x 20, RGB bytes only."""
    genomes = _golden_genomes(COLOR)
    assert sum(int(g.capacity_hits) > 0 for g in genomes[:8]) >= 4, "capacity limits not reached"
    report = _new_report()
    enc = dataclasses.replace(COLOR, coords=coords, color=color)
    _compare(enc, genomes, size, report, with_outputs=color == "hls")
    _finish(report, f"colour {color}")


IMAGENET = CppnEncoding((256, 256, 3))  # the ImageNet runs' genomes: raw x, y up to 255, HLS
MAX_OFF_FRACTION = 0.01  # pixels whose bytes are not the reference's own (0.4% measured)


@pytest.mark.slow
def test_imagenet_size_every_pixel_byte_against_the_reference():
    """At the ImageNet size, 256 x 256 x 3, every pixel of `express` is checked against the
    float64 reference: its outputs within the float32 bound, and its RGB bytes those of the
    reference's H, L, S bytes, except at most 1% of pixels, each where the reference lies within
    that bound of a byte boundary, whose bytes must then come from H, L, S bytes in that range
    (no pixel is skipped: every pixel's range spans at most 5 levels per channel).
    Three genomes grown by 40 to 80 mutations, chosen for their colourful images."""
    genomes = [_np(_lineage(IMAGENET, seed, n)) for seed, n in ((200, 80), (201, 40), (202, 40))]
    batch = _stack(genomes)
    images = np.asarray(jax.jit(IMAGENET.express)(batch))
    outputs = np.asarray(jax.jit(IMAGENET.outputs, static_argnums=1)(batch, 256))
    assert images.shape == (3, 256, 256, 3) and images.dtype == np.uint8
    for k, g in enumerate(genomes):
        out, bound = ref.outputs(g, 3, 256, 256, "raw")
        colours = len(np.unique(images[k].reshape(-1, 3), axis=0))
        assert colours > 1000, f"genome {k}: {colours} colours; a flat image checks little"
        tol = ATOL + SAFETY * bound
        err = np.abs(outputs[k].astype(np.float64) - out)
        assert (err <= tol).all(), f"genome {k}: {int((err > tol).sum())} outputs off"
        want = ref.output_byte(out)  # H, L, S bytes [256, 256, 3]
        lo, hi = ref.byte_range(out, tol)
        lo, hi = np.minimum(lo, want), np.maximum(hi, want)
        assert (hi - lo).max() <= 4, f"genome {k}: a byte range too wide to check"
        # the reference's RGB of every pixel (colorsys, once per distinct H, L, S triple)
        triples, where = np.unique(want.reshape(-1, 3), axis=0, return_inverse=True)
        table = [ref.hls_bytes_to_rgb(*t) for t in triples]
        rgb = np.asarray([t[0] for t in table])[where.ravel()].reshape(256, 256, 3)
        tie = np.asarray([t[1] for t in table])[where.ravel()].reshape(256, 256)
        diff = np.abs(images[k].astype(np.int64) - rgb).max(axis=-1)
        off = np.argwhere((diff > 1) | ((diff == 1) & ~tie))
        assert len(off) <= MAX_OFF_FRACTION * 256 * 256, f"genome {k}: {len(off)} pixels off"
        for j, i in off:
            assert _boundary_rgb_ok(images[k, j, i], ref.hls_bytes_to_rgb, lo[j, i], hi[j, i]), (
                f"genome {k}: RGB at row {j} col {i} is {images[k, j, i]}, reference "
                f"{rgb[j, i]} from H, L, S bytes {want[j, i]} (outputs {out[j, i]})"
            )


def test_reference_scalar_matches_vectorised():
    """The per-pixel Python-float reference and its all-pixels NumPy form agree."""
    genomes = _golden_genomes(COLOR)
    for g in genomes[::4]:
        for coords, size in (("raw", 9), ("normalized", 7)):
            scalar = ref.outputs_scalar(g, 3, 20, size, coords)
            vector, _ = ref.outputs(g, 3, 20, size, coords)
            np.testing.assert_allclose(scalar, vector, rtol=0, atol=1e-9)


def test_reference_hand_computed_pixel():
    """One hand-computed pixel pins the reference's conventions (inputs, weights, bytes)."""
    act = np.array([IDENTITY] * 4 + [0, 1], np.int32)  # output sine; hidden 5 sigmoid
    # x -(g=.75, w=5)-> out, d -(g=.6, w=2)-> 5 -(g=.25, w=-5)-> out, bias twice (w=1, w=1)
    g = dict(
        act=act,
        node_alive=np.ones(6, bool),
        src=np.array([0, 2, 5, 3, 3], np.int32),
        dst=np.array([4, 5, 4, 4, 4], np.int32),
        weight=np.array([0.75, 0.6, 0.25, 0.55, 0.55], np.float32),
        edge_alive=np.ones(5, bool),
    )
    w_bias = 20 * float(np.float32(0.55)) - 10
    w_d = 20 * float(np.float32(0.6)) - 10
    out, _ = ref.outputs(g, 1, 28, 28)
    i, j = 3, 10  # column 3, row 10
    d = math.hypot(-1 + 2 * i / 27, -1 + 2 * j / 27)
    h = 2 / (1 + math.exp(-w_d * d)) - 1
    o = math.sin(5.0 * i - 5.0 * h + 2 * w_bias)
    assert out[j, i, 0] == pytest.approx(o, abs=1e-12)
    assert ref.output_byte(o) == abs(int(np.float32(o) * np.float32(255)))
    out17, _ = ref.outputs(g, 1, 28, 17)  # r = 27/16 at 17 x 17
    d17 = math.hypot(-1 + 2 * 4 / 16, -1 + 2 * 0 / 16)
    h17 = 2 / (1 + math.exp(-w_d * d17)) - 1
    assert out17[0, 4, 0] == pytest.approx(math.sin(5.0 * 4 * 27 / 16 - 5 * h17 + 2 * w_bias))


# --- 2. property tests ---

_PROPERTY_ENCODINGS = {"gray": GRAY, "color-small": COLOR}


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(_PROPERTY_ENCODINGS)),
    seed=st.integers(0, 2**31 - 1),
    steps=st.integers(1, 60),
)
def test_mutation_keeps_invariants(name, seed, steps):
    enc = _PROPERTY_ENCODINGS[name]
    trail = [_np(g) for g in _lineage(enc, seed, steps, every_step=True)]
    hits = [int(g.capacity_hits) for g in trail]
    assert hits == sorted(hits), "capacity_hits decreased along a lineage"
    for g in trail:
        check_invariants(g, enc)
    # renders at the (encoding, size) that the golden tests compile, padded to their batch size
    size = 13 if enc is COLOR else enc.image_shape[0]
    picks = _stack([trail[len(trail) * k // BATCH] for k in range(BATCH - 1)] + [trail[-1]])
    out = np.asarray(enc.outputs(picks, size))
    assert out.shape == (BATCH, size, size, enc.image_shape[-1])
    assert np.isfinite(out).all() and (np.abs(out) <= 1).all()


def test_vary_children_are_valid():
    enc = COLOR
    genomes = _golden_genomes(enc)
    a, b = _stack(genomes[:3]), _stack(genomes[3:6])
    children = _np(jax.jit(enc.vary)(jax.random.key(4), a, b, jnp.int32(7)))
    assert children.act.shape == (6, enc.max_nodes)
    for k in range(6):
        check_invariants(_take(children, k), enc)


def test_capacity_hits_when_nothing_fits():
    """No hidden slot (max_nodes = NUM_INPUTS + C) and no spare edge slot: add-neuron never fits
    and add-connection fits only after a deletion; the skipped ones are counted."""
    C = 1
    enc = CppnEncoding((8, 8, C), max_nodes=NUM_INPUTS + C, max_edges=NUM_INPUTS * C)
    trail = [_np(g) for g in _lineage(enc, 11, 30, every_step=True)]
    for g in trail:
        check_invariants(g, enc)
        assert _hidden_count(g, C) == 0
    assert int(trail[-1].capacity_hits) >= 10  # ~0.5 add-neuron + ~0.5 add-connection per step


def test_no_capacity_hits_with_room():
    for seed in range(3):
        assert int(_lineage(GRAY, seed, 10).capacity_hits) == 0


# --- 3. initial genomes ---


@pytest.mark.parametrize("enc", [GRAY, COLOR], ids=["gray", "color"])
def test_initial_genomes(enc):
    C = enc.image_shape[-1]
    if enc is GRAY:
        n = N_STATS
        pop = _np(enc.init(jax.random.key(5), n))
    else:  # one-genome calls, compiled already for the lineages
        n = 150
        pop = _stack([_take(enc.init(k, 1), 0) for k in jax.random.split(jax.random.key(6), n)])
    assert pop.act.shape == (n, enc.max_nodes) and pop.src.shape == (n, enc.max_edges)
    outs = np.arange(NUM_INPUTS, NUM_INPUTS + C)
    for k in range(0, n, 97):
        check_invariants(_take(pop, k), enc)
    assert not pop.node_alive[:, NUM_INPUTS + C :].any(), "an initial genome has a hidden node"
    assert (pop.capacity_hits == 0).all()
    assert (pop.edge_alive.sum(1) == NUM_INPUTS * C).all()
    # every input -> output pair exactly once per genome
    pair_count = np.zeros((n, NUM_INPUTS, C), int)
    rows, slots = np.nonzero(pop.edge_alive)
    src, dst = pop.src[rows, slots], pop.dst[rows, slots]
    assert (src < NUM_INPUTS).all() and ((dst >= NUM_INPUTS) & (dst < NUM_INPUTS + C)).all()
    np.add.at(pair_count, (rows, src, dst - NUM_INPUTS), 1)
    assert (pair_count == 1).all()
    out_acts = pop.act[:, outs].ravel()
    freq = np.bincount(out_acts, minlength=4) / out_acts.size
    assert np.all(np.abs(freq - 0.25) < 4.5 * math.sqrt(0.25 * 0.75 / out_acts.size)), freq
    w = 20.0 * pop.weight[pop.edge_alive].astype(np.float64) - 10.0
    assert w.size == n * NUM_INPUTS * C
    assert abs(w.mean()) < 0.5 and abs(w.std() - 20 / math.sqrt(12)) < 0.4
    assert w.min() >= -10 and w.max() <= 10 and w.min() < -9.8 and w.max() > 9.8
    hist = np.histogram(w, bins=10, range=(-10, 10))[0] / w.size
    assert np.all(np.abs(hist - 0.1) < 4.5 * math.sqrt(0.1 * 0.9 / w.size)), hist
    some = range(0, n, 7)
    assert len({tuple(pop.weight[k][pop.edge_alive[k]]) for k in some}) == len(some)


# --- 4. statistics of the mutation operators ---


def test_single_mutation_statistics():
    """2000 single mutations of one initial gray genome (4 input -> output edges, no hidden node).

    From that genome every operator is identifiable. With A (add connection, 0.5), D (delete
    connection, 0.3), N (add neuron, 0.5), X (delete neuron, 0.2) independent: the number of
    input -> output edges changes by A - D - N, and a hidden node survives iff N and not X
    (delete-neuron runs after add-neuron, so it can remove the new node: P = 0.5 * 0.8 = 0.4).
    """
    C, enc, n = 1, GRAY, N_STATS
    parent = _take(enc.init(jax.random.key(9), 1), 0)
    kids = _np(_vmutate_fn(enc)(jax.random.split(jax.random.key(10), n), _repeat(parent, n)))
    p = _np(parent)
    out_node = NUM_INPUTS
    io = kids.edge_alive & (kids.src < NUM_INPUTS) & (kids.dst == out_node)
    delta_io = io.sum(1) - NUM_INPUTS
    hidden = kids.node_alive[:, NUM_INPUTS + C :].sum(1)
    assert set(hidden.tolist()) <= {0, 1}
    # the joint law of (hidden survives, delta_io) under the spec
    expected = {}
    for a, d, nn, x in itertools.product((0, 1), repeat=4):
        prob = (0.5, 0.5)[a] * (0.7, 0.3)[d] * (0.5, 0.5)[nn] * (0.8, 0.2)[x]
        cell = (int(nn and not x), a - d - nn)
        expected[cell] = expected.get(cell, 0.0) + prob
    for cell, prob in expected.items():
        freq = np.mean((hidden == cell[0]) & (delta_io == cell[1]))
        sigma = math.sqrt(prob * (1 - prob) / n)
        assert abs(freq - prob) < 4.5 * sigma + 1e-3, (cell, freq, prob)
    assert abs(np.mean(hidden == 1) - 0.4) < 0.04
    assert sum(expected.values()) == pytest.approx(1.0)
    assert set(zip(hidden.tolist(), delta_io.tolist(), strict=True)) <= set(expected)
    # activation resampling: 0.1 per node, uniform over the 4 (so it changes w.p. 0.075)
    changed = np.mean(kids.act[:, out_node] != p.act[out_node])
    assert abs(changed - 0.075) < 0.02, changed
    assert (kids.act[:, :NUM_INPUTS] == IDENTITY).all()
    # weight mutation: 0.1 per edge, polynomial (eta 15): E|delta gene| = 1/17 before clipping
    same = kids.edge_alive & p.edge_alive & (kids.src == p.src) & (kids.dst == p.dst)
    moved = same & (kids.weight != p.weight)
    rate = moved.sum() / same.sum()
    assert abs(rate - 0.1) < 0.02, rate
    step = np.abs(kids.weight - p.weight)[moved]
    assert 0.035 < step.mean() < 0.07 and step.max() <= 1.0, step.mean()
    # the new hidden node: uniform activation, fed by an input, feeding the output, one gene twice
    rows = np.flatnonzero(hidden == 1)
    new_acts, exact = [], 0
    for r in rows:
        h = NUM_INPUTS + C + int(np.flatnonzero(kids.node_alive[r, NUM_INPUTS + C :])[0])
        new_acts.append(kids.act[r, h])
        e_in = np.flatnonzero(kids.edge_alive[r] & (kids.dst[r] == h))
        e_out = np.flatnonzero(kids.edge_alive[r] & (kids.src[r] == h))
        assert len(e_in) == 1 and len(e_out) == 1
        s = kids.src[r, e_in[0]]
        assert s < NUM_INPUTS and kids.dst[r, e_out[0]] == out_node
        assert kids.weight[r, e_in[0]] == kids.weight[r, e_out[0]]
        parent_gene = p.weight[p.edge_alive & (p.src == s)][0]
        exact += kids.weight[r, e_in[0]] == parent_gene
    freq = np.bincount(np.asarray(new_acts), minlength=4) / len(rows)
    assert np.all(np.abs(freq - 0.25) < 0.05), freq
    assert exact / len(rows) > 0.7  # the split edge keeps its (rarely just mutated) gene
    # a lone added connection (A, not D, not N): an input -> output edge with a U[0, 1] gene
    lone = np.flatnonzero((delta_io == 1) & (hidden == 0))
    new_genes = []
    for r in lone:
        fresh = kids.edge_alive[r] & ~(same[r])
        assert fresh.sum() == 1
        e = np.flatnonzero(fresh)[0]
        assert kids.src[r, e] < NUM_INPUTS and kids.dst[r, e] == out_node
        new_genes.append(kids.weight[r, e])
    new_genes = np.asarray(new_genes)
    assert abs(len(lone) / n - 0.5 * 0.7 * 0.5) < 0.03
    assert abs(new_genes.mean() - 0.5) < 0.05 and new_genes.min() < 0.05 and new_genes.max() > 0.95


def _structure(node_alive_ids, edges, C):
    """Summary statistics of a graph: hidden nodes, edges, edges into outputs, hidden nodes
    without inputs, parallel duplicates, and whether x, y or d reaches an output."""
    hidden = [n for n in node_alive_ids if n >= NUM_INPUTS + C]
    outs = set(range(NUM_INPUTS, NUM_INPUTS + C))
    reach, todo = {0, 1, 2}, [0, 1, 2]
    while todo:
        n = todo.pop()
        for s, d in edges:
            if s == n and d not in reach:
                reach.add(d)
                todo.append(d)
    return np.array(
        [
            len(hidden),
            len(edges),
            sum(d in outs for _, d in edges),
            sum(all(d != h for _, d in edges) for h in hidden),
            len(edges) - len(set(edges)),
            float(bool(reach & outs)),
        ]
    )


def test_lineage_statistics_match_reference_mutation():
    """After 30 mutations, the graph statistics of 2000 lineages of the implementation and of 250
    of the reference mutation (docs/faithfulness.md, its own random stream) agree in the mean."""
    C, steps, n, n_ref, enc = 1, 30, N_STATS, 250, GRAY
    mutate = _vmutate_fn(enc)
    g = enc.init(jax.random.key(21), n)
    for k in jax.random.split(jax.random.key(22), steps):
        g = mutate(jax.random.split(k, n), g)
    g = _np(g)
    assert int(g.capacity_hits.max()) == 0
    ours = np.stack(
        [
            _structure(
                np.flatnonzero(g.node_alive[k]).tolist(),
                list(
                    zip(
                        g.src[k][g.edge_alive[k]].tolist(),
                        g.dst[k][g.edge_alive[k]].tolist(),
                        strict=True,
                    )
                ),
                C,
            )
            for k in range(n)
        ]
    )
    rng = np.random.default_rng(23)
    theirs = []
    for _ in range(n_ref):
        r = ref.init_genome(rng, C)
        for _ in range(steps):
            r = ref.mutate(rng, r)
        theirs.append(_structure(sorted(r.acts), [(s, d) for s, d, _ in r.edges], C))
    theirs = np.stack(theirs)
    names = ("hidden", "edges", "into outputs", "sourceless hidden", "parallel", "x,y,d reach out")
    se = np.sqrt(ours.var(0) / n + theirs.var(0) / n_ref) + 1e-9
    z = (ours.mean(0) - theirs.mean(0)) / se
    print(
        "\n"
        + "\n".join(
            f"{a}: impl {b:.3f} ref {c:.3f} z {d:+.2f}"
            for a, b, c, d in zip(names, ours.mean(0), theirs.mean(0), z, strict=True)
        )
    )
    assert np.all(np.abs(z) < 4.5), dict(zip(names, z.round(2), strict=True))


# --- the graph helpers: packed-bit depths and ancestors, the logarithm-free pick ---


def _graph_walk(g) -> tuple[np.ndarray, np.ndarray]:
    """Longest-path depths [N] and the ancestor matrix [N, N] of one genome, by plain Python
    over its alive edges (anc[n, m]: m has a path to n, or m == n)."""
    src, dst = np.asarray(g.src), np.asarray(g.dst)
    edges = [
        (int(s), int(d)) for s, d, a in zip(src, dst, np.asarray(g.edge_alive), strict=True) if a
    ]
    n = g.act.shape[0]
    depth = [0] * n
    for _ in range(n):
        for s, d in edges:
            depth[d] = max(depth[d], depth[s] + 1)
    anc = np.eye(n, dtype=bool)
    for _ in range(n):
        for s, d in edges:
            anc[:, s] |= anc[:, d]
    return np.asarray(depth), anc


@pytest.mark.parametrize("max_nodes,max_edges", [(64, 256), (33, 70), (100, 120)])
def test_depths_and_ancestors_match_a_graph_walk(max_nodes, max_edges):
    from jaxfool.search.encodings.cppn_genome import ancestors, depths

    rng = np.random.default_rng(max_nodes)
    genomes = _stack([_random_dag(rng, 1, max_nodes, max_edges) for _ in range(12)])
    got_depth = np.asarray(jax.jit(jax.vmap(depths))(genomes))
    every_node = jax.vmap(lambda g: jax.vmap(lambda m: ancestors(g, m))(jnp.arange(max_nodes)))
    got_anc = np.asarray(jax.jit(every_node)(genomes))
    deepest = 0
    for k in range(12):
        depth, anc = _graph_walk(_take(genomes, k))
        np.testing.assert_array_equal(got_depth[k], depth)
        np.testing.assert_array_equal(got_anc[k], anc)
        deepest = max(deepest, depth.max())
    assert deepest >= 5  # the chains make deep graphs: the loops ran several steps


def test_gumbel_noise_is_strictly_increasing_on_every_uniform_draw():
    """`pick` takes argmax of u where `jax.random.categorical` takes argmax of -log(-log(u)):
    the same index only if that map never ties or reverses on the values u can take, which are
    tiny and k / 2**23 (k = 1 .. 2**23 - 1)."""
    tiny = np.finfo(np.float32).tiny
    u = jnp.concatenate([jnp.array([tiny], jnp.float32), jnp.arange(1, 2**23) * 2.0**-23])
    draws = jax.random.uniform(jax.random.key(0), (100_000,), minval=tiny, maxval=1.0)
    assert np.all(np.isin(np.asarray(draws), np.asarray(u)))
    gumbel = jax.jit(lambda u: -jnp.log(-jnp.log(u)))(u)
    assert np.all(np.diff(np.asarray(gumbel)) > 0)


@pytest.mark.parametrize("size", [5, 64, 256])
def test_pick_draws_what_categorical_draws(size):
    from jaxfool.search.encodings.cppn_genome import pick

    keys = jax.random.split(jax.random.key(size), 3000)
    density = jnp.linspace(0.0, 1.0, 3000)[:, None]
    masks = jax.random.uniform(jax.random.key(1), (3000, size)) < density
    masks = masks.at[:10].set(False).at[10:20].set(jnp.arange(size) == 3)  # none; exactly one
    index, some = jax.jit(jax.vmap(pick))(keys, masks)
    logits = jnp.where(masks, 0.0, -jnp.inf)
    expected = jax.jit(jax.vmap(jax.random.categorical))(keys, logits)
    np.testing.assert_array_equal(index, expected)
    np.testing.assert_array_equal(some, masks.any(axis=1))
    some = np.asarray(some)
    assert some[20:].sum() > 2500
    assert np.all(np.asarray(masks)[np.arange(3000)[some], np.asarray(index)[some]])
    assert np.all(np.asarray(index)[10:20] == 3)
