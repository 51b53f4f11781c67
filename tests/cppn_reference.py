"""An independent, deliberately plain reference for the CPPN encoding (docs/faithfulness.md,
"CPPN genome and mutation").

Written from the original code's description, not from `jaxfool.search.encodings.cppn`, so
that the golden tests in `tests/test_cppn.py` compare two independent readings of it.
Everything here is per pixel and per node, in float64, in the order the original code runs it:

* a genome (the padded `CppnGenome` arrays of ONE genome) becomes a plain graph: the alive nodes,
  the alive edges (parallel edges kept, each counted) and a topological order (Kahn);
* for a pixel at row j, column i of an S' x S' render of a genome of native size S, the inputs
  are x = i*r, y = j*r with r = (S-1)/(S'-1) (raw pixel indices at the native size; or the
  normalised xn, yn for `coords="normalized"`), d = sqrt(xn^2 + yn^2) with
  xn = -1 + 2i/(S'-1), yn = -1 + 2j/(S'-1), and bias 1;
* every non-input node takes act(sum of w * value[src] over its alive incoming edges), w = 20g-10
  (act(0) when it has none); the outputs are nodes NUM_INPUTS .. NUM_INPUTS+C-1;
* an output o becomes the byte |trunc(o * 255)|, computed like the C++ `int color = value*255`
  on a float `value`; colour bytes are OpenCV 8-bit H, L, S, turned into RGB with `colorsys`.

`evaluate` works on Python floats (the literal per-pixel form, `outputs_scalar`) and, with the very
same code, on NumPy arrays holding one value per pixel (`outputs`, used for speed). It also
carries a first-order bound of the float32 rounding error of each node value, so that a float32
implementation can be compared with a tolerance that follows each pixel's conditioning.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np

NUM_INPUTS = 4  # 0 = x, 1 = y, 2 = d, 3 = bias
IDENTITY = 4  # activation id stored for the inputs
ACTIVATIONS = ("sine", "sigmoid", "gaussian", "linear")

EPS32 = 2.0**-24  # unit roundoff of float32
# Lipschitz constants of the activations, and bounds on their second derivatives.
_LIPSCHITZ = (1.0, 0.5, math.sqrt(2.0 / math.e), 1.0 / 3.0)
_CURVATURE = (1.0, 0.2, 2.0, 0.0)


def activation(act: int, p):
    """The four CPPN activations of `modules/nn2/af_cppn.hpp` (scalars or arrays, float64)."""
    if act == 0:
        return np.sin(p)
    if act == 1:
        with np.errstate(over="ignore"):
            return 2.0 / (1.0 + np.exp(-p)) - 1.0
    if act == 2:
        return np.exp(-p * p)
    if act == 3:
        return np.clip(p, -3.0, 3.0) / 3.0
    raise ValueError(f"not a CPPN activation id: {act}")


def activation_slope(act: int, p):
    """|act'(p)|."""
    if act == 0:
        return np.abs(np.cos(p))
    if act == 1:
        with np.errstate(over="ignore"):
            e = np.exp(-np.abs(p))
        return 2.0 * e / (1.0 + e) ** 2
    if act == 2:
        return 2.0 * np.abs(p) * np.exp(-p * p)
    if act == 3:
        return np.where(np.abs(p) < 3.0, 1.0 / 3.0, 0.0)
    raise ValueError(f"not a CPPN activation id: {act}")


@dataclass(frozen=True)
class Graph:
    """The alive part of one genome: node -> activation id, edges (src, dst, w), an order."""

    num_outputs: int
    acts: dict[int, int]
    edges: tuple[tuple[int, int, float], ...]
    order: tuple[int, ...]

    def incoming(self, node: int) -> list[tuple[int, float]]:
        return [(s, w) for s, d, w in self.edges if d == node]


def _field(genome, name: str) -> np.ndarray:
    return np.asarray(genome[name] if isinstance(genome, dict) else getattr(genome, name))


def topological_order(nodes, edges) -> list[int]:
    """Kahn's algorithm over `nodes` and (src, dst) pairs; raises ValueError on a cycle."""
    nodes = sorted(nodes)
    indeg = {n: 0 for n in nodes}
    succ = {n: [] for n in nodes}
    for s, d in edges:
        succ[s].append(d)
        indeg[d] += 1
    ready = [n for n in nodes if indeg[n] == 0]
    order = []
    while ready:
        n = ready.pop()
        order.append(n)
        for m in succ[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    if len(order) != len(nodes):
        raise ValueError("the alive graph has a cycle")
    return order


def graph_from_genome(genome, num_outputs: int) -> Graph:
    """Reads ONE (unbatched) genome: a CppnGenome or a dict with its field names."""
    act = _field(genome, "act")
    node_alive = _field(genome, "node_alive").astype(bool)
    src = _field(genome, "src")
    dst = _field(genome, "dst")
    gene = _field(genome, "weight").astype(np.float64)
    edge_alive = _field(genome, "edge_alive").astype(bool)
    alive_nodes = [int(n) for n in np.flatnonzero(node_alive)]
    for n in range(NUM_INPUTS + num_outputs):
        if not node_alive[n]:
            raise ValueError(f"input/output node {n} is not alive")
    edges = []
    for e in np.flatnonzero(edge_alive):
        s, d = int(src[e]), int(dst[e])
        if not (0 <= s < len(act) and 0 <= d < len(act) and node_alive[s] and node_alive[d]):
            raise ValueError(f"alive edge {e} ({s} -> {d}) joins a dead or missing node")
        edges.append((s, d, 20.0 * float(gene[e]) - 10.0))
    order = topological_order(alive_nodes, [(s, d) for s, d, _ in edges])
    acts = {n: int(act[n]) for n in alive_nodes}
    return Graph(num_outputs, acts, tuple(edges), tuple(order))


def evaluate(graph: Graph, x, y, d, bias=1.0, with_error: bool = False):
    """The output values for inputs (x, y, d, bias): floats or broadcastable float64 arrays.

    Literal feed-forward evaluation in topological order. With `with_error`, also returns, per
    output, a first-order bound on how far a float32 evaluation (float32 inputs, w = 20g - 10 in
    float32, float32 sums and activations) can drift from this float64 one.
    """
    inputs = (x, y, d, bias)
    value, err = {}, {}
    for n in graph.order:
        if n < NUM_INPUTS:
            value[n] = inputs[n]
            err[n] = 3.0 * EPS32 * np.abs(inputs[n])  # i * r, sqrt(xn^2 + yn^2) in float32
            continue
        incoming = graph.incoming(n)
        p = 0.0
        for s, w in incoming:
            p = p + w * value[s]
        value[n] = activation(graph.acts[n], p)
        if with_error:
            perr = 0.0
            mag = 0.0
            for s, w in incoming:
                # the error of the source, of w = 20g - 10 in float32, and of the product
                perr = perr + abs(w) * err[s] + 30.0 * EPS32 * np.abs(value[s])
                mag = mag + np.abs(w * value[s])
            perr = perr + (len(incoming) + 1) * EPS32 * mag  # rounding of the running sum
            a = graph.acts[n]
            slope = np.minimum(_LIPSCHITZ[a], activation_slope(a, p) + _CURVATURE[a] * perr)
            if a == 3:  # the kinks of clip at +-3
                slope = np.where(np.abs(np.abs(p) - 3.0) <= perr, 1.0 / 3.0, slope)
            err[n] = np.minimum(2.0, slope * perr) + 4.0 * EPS32
    outs = [value[NUM_INPUTS + k] for k in range(graph.num_outputs)]
    if with_error:
        return outs, [err[NUM_INPUTS + k] for k in range(graph.num_outputs)]
    return outs


def pixel_inputs(i, j, native: int, size: int, coords: str = "raw"):
    """(x, y, d, bias) of the pixel at row j, column i of a size x size render."""
    xn = -1.0 + 2.0 * i / (size - 1)
    yn = -1.0 + 2.0 * j / (size - 1)
    d = np.sqrt(xn * xn + yn * yn)
    if coords == "raw":
        r = (native - 1) / (size - 1)
        return i * r, j * r, d, 1.0
    if coords == "normalized":
        return xn, yn, d, 1.0
    raise ValueError(f"unknown coords {coords!r}")


def outputs_scalar(genome, num_outputs: int, native: int, size: int, coords: str = "raw"):
    """Raw CPPN outputs [size, size, C], one pixel at a time with Python floats."""
    graph = graph_from_genome(genome, num_outputs)
    out = np.zeros((size, size, num_outputs))
    for j in range(size):
        for i in range(size):
            x, y, d, b = pixel_inputs(float(i), float(j), native, size, coords)
            out[j, i] = [float(v) for v in evaluate(graph, float(x), float(y), float(d), b)]
    return out


def outputs(genome, num_outputs: int, native: int, size: int, coords: str = "raw"):
    """(raw outputs [size, size, C], float32 error bounds [size, size, C]), all pixels at once.

    The same per-pixel formulas as `outputs_scalar`, with each scalar replaced by an array that
    holds its value at every pixel.
    """
    graph = graph_from_genome(genome, num_outputs)
    j, i = np.indices((size, size), dtype=np.float64)  # j[row, col] = row, i[row, col] = col
    x, y, d, b = pixel_inputs(i, j, native, size, coords)
    outs, errs = evaluate(graph, x, y, d, np.full_like(x, b), with_error=True)
    shape = (size, size)
    out = np.stack([np.broadcast_to(o, shape) for o in outs], axis=-1).astype(np.float64)
    err = np.stack([np.broadcast_to(e, shape) for e in errs], axis=-1).astype(np.float64)
    return out, err


def output_byte(o):
    """|trunc(value * 255)| for a float (C++ float) CPPN output, like `convert_to_color_scale`."""
    v = np.asarray(o, dtype=np.float32) * np.float32(255.0)
    return np.abs(np.trunc(v)).astype(np.int64)


def byte_range(o, tol):
    """The smallest and largest byte that an output anywhere in [o - tol, o + tol] can give."""
    lo = np.asarray(o, np.float64) - tol
    hi = np.asarray(o, np.float64) + tol
    b_lo = np.abs(np.trunc(lo * 255.0))
    b_hi = np.abs(np.trunc(hi * 255.0))
    straddles_zero = (lo < 0) & (hi > 0)
    smallest = np.where(straddles_zero, 0, np.minimum(b_lo, b_hi))
    largest = np.maximum(b_lo, b_hi)
    return smallest.astype(np.int64), np.minimum(largest, 255).astype(np.int64)


def hls_bytes_to_rgb(h: int, light: int, s: int) -> tuple[tuple[int, int, int], bool]:
    """OpenCV 8-bit HLS bytes -> (RGB bytes, whether a channel lies within 1e-3 of a .5 tie)."""
    hue = ((2 * int(h)) % 360) / 360.0
    rgb = colorsys.hls_to_rgb(hue, int(light) / 255.0, int(s) / 255.0)
    scaled = [c * 255.0 for c in rgb]
    near_tie = any(abs(v - math.floor(v) - 0.5) < 1e-3 for v in scaled)
    return tuple(int(round(v)) for v in scaled), near_tie


def hsv_bytes_to_rgb(h: int, s: int, v: int) -> tuple[tuple[int, int, int], bool]:
    """OpenCV 8-bit HSV bytes -> (RGB bytes, near-tie flag), as `hls_bytes_to_rgb`."""
    hue = ((2 * int(h)) % 360) / 360.0
    rgb = colorsys.hsv_to_rgb(hue, int(s) / 255.0, int(v) / 255.0)
    scaled = [c * 255.0 for c in rgb]
    near_tie = any(abs(x - math.floor(x) - 0.5) < 1e-3 for x in scaled)
    return tuple(int(round(x)) for x in scaled), near_tie


def render(genome, num_outputs: int, native: int, size: int, coords="raw", color="hls"):
    """uint8 image [size, size, C] (C = 3: RGB) from the float64 reference."""
    out, _ = outputs(genome, num_outputs, native, size, coords)
    b = output_byte(out)
    if num_outputs == 1:
        return b.astype(np.uint8)
    conv = hls_bytes_to_rgb if color == "hls" else hsv_bytes_to_rgb
    rgb = np.zeros((size, size, 3), np.uint8)
    for j in range(size):
        for i in range(size):
            rgb[j, i] = conv(*b[j, i])[0]
    return rgb


# --- mutation, for statistics only (its random stream is not the implementation's) ---


@dataclass
class MutableGenome:
    """A plain graph genome: alive node -> activation id, and [src, dst, gene] edges."""

    num_outputs: int
    acts: dict[int, int]
    edges: list[list]
    next_node: int


def init_genome(rng: np.random.Generator, num_outputs: int) -> MutableGenome:
    """No hidden node; every input joined to every output with a U[0, 1] gene."""
    acts = {n: IDENTITY for n in range(NUM_INPUTS)}
    for k in range(num_outputs):
        acts[NUM_INPUTS + k] = int(rng.integers(4))
    edges = [
        [i, NUM_INPUTS + k, float(rng.random())]
        for i in range(NUM_INPUTS)
        for k in range(num_outputs)
    ]
    return MutableGenome(num_outputs, acts, edges, NUM_INPUTS + num_outputs)


def polynomial_delta(u: float, eta: float) -> float:
    if u < 0.5:
        return (2.0 * u) ** (1.0 / (eta + 1.0)) - 1.0
    return 1.0 - (2.0 * (1.0 - u)) ** (1.0 / (eta + 1.0))


def ancestors(g: MutableGenome, node: int) -> set[int]:
    """`node` and every node with a path to it (BFS on the reversed graph)."""
    seen, todo = {node}, [node]
    while todo:
        n = todo.pop()
        for s, d, _ in g.edges:
            if d == n and s not in seen:
                seen.add(s)
                todo.append(s)
    return seen


def mutate(rng: np.random.Generator, g: MutableGenome) -> MutableGenome:
    """`DnnFF::mutate` as docs/faithfulness.md lists it, on a copy of `g`."""
    g = MutableGenome(g.num_outputs, dict(g.acts), [list(e) for e in g.edges], g.next_node)
    outputs_ = set(range(NUM_INPUTS, NUM_INPUTS + g.num_outputs))
    for e in g.edges:  # 1. weights
        if rng.random() < 0.1:
            e[2] = min(1.0, max(0.0, e[2] + polynomial_delta(rng.random(), 15.0)))
    for n in sorted(g.acts):  # 2. activations
        if n >= NUM_INPUTS and rng.random() < 0.1:
            g.acts[n] = int(rng.integers(4))
    if rng.random() < 0.5:  # 3. add a connection
        nodes = sorted(g.acts)
        src = int(rng.choice([n for n in nodes if n not in outputs_]))
        banned = ancestors(g, src)
        targets = [n for n in nodes if n >= NUM_INPUTS and n not in banned]
        if targets:
            g.edges.append([src, int(rng.choice(targets)), float(rng.random())])
    if rng.random() < 0.3 and g.edges:  # 4. delete a connection
        g.edges.pop(int(rng.integers(len(g.edges))))
    if rng.random() < 0.5 and g.edges:  # 5. add a neuron on a connection
        s, d, w = g.edges.pop(int(rng.integers(len(g.edges))))
        n = g.next_node
        g.next_node += 1
        g.acts[n] = int(rng.integers(4))
        g.edges += [[s, n, w], [n, d, w]]
    hidden = [n for n in sorted(g.acts) if n >= NUM_INPUTS + g.num_outputs]
    if rng.random() < 0.2 and hidden:  # 6. delete a hidden neuron and its connections
        h = int(rng.choice(hidden))
        del g.acts[h]
        g.edges = [e for e in g.edges if h not in (e[0], e[1])]
    return g
