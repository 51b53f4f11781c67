"""Sharded == unsharded: the population split over 4 (simulated) devices gives the same run, and
chunked scoring over 4 devices keeps each device's block on its device.

JAX fixes the device count when it starts, so both happen in one child process started with
XLA_FLAGS=--xla_force_host_platform_device_count=4.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

CHILD = textwrap.dedent(
    """
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec
    from jaxfool import classifiers
    from jaxfool.classifiers import scoring
    from jaxfool.search import map_elites as evolve
    from jaxfool.search.encodings.cppn import CppnEncoding
    from jaxfool.search.encodings.direct import DirectEncoding

    assert jax.device_count() == 4, jax.devices()
    clf, params = classifiers.load_classifier("lenet")
    results = {}
    encodings = [
        ("direct", DirectEncoding()),
        ("direct_blocks", DirectEncoding(vary_block_genes=2 * 2 * 784)),  # 2 pairs per block
        ("cppn", CppnEncoding(image_shape=(28, 28, 1))),
    ]
    for name, enc in encodings:
        for devices in (0, 1, 4):
            mesh = evolve.population_mesh(jax.devices()[:devices]) if devices else None
            # population 10 over 4 devices: padded to 12, the padding must never be archived
            config = evolve.EvolutionConfig(
                enc, clf, tuple(range(10)), population=10, initial_population=6,
                eval_chunk=2, mesh=mesh,
            )
            init_key, loop_key = evolve.run_keys(3)
            state = evolve.init(config, params, init_key)
            state = evolve.run(config, params, state, loop_key, 6)
            leaves = jax.tree.leaves(jax.device_get(state))
            results[f"{name}/{devices}"] = [np.asarray(x).tobytes().hex() for x in leaves]
            if devices == 4:
                hlo = evolve.run.lower(config, params, state, loop_key, 1).compile().as_text()
                results[f"{name}/sharded_hlo"] = "num_partitions=4" in hlo
            results[f"{name}/evaluations"] = int(state.evaluations)

    # scoring.score(chunk, mesh): 24 images, 6 per device, in chunks of 1, 4, 5 (padded), 6
    w = jax.random.randint(jax.random.key(1), (12, 5), -3, 4).astype(jnp.float32) / 64

    def logits(p, images):  # exact in float32 (bytes times multiples of 1/64)
        return images.reshape(images.shape[0], -1).astype(jnp.float32) @ p

    images = jax.random.randint(jax.random.key(2), (24, 2, 2, 3), 0, 256).astype(jnp.uint8)
    mesh = evolve.population_mesh()
    split = jax.device_put(images, NamedSharding(mesh, PartitionSpec(evolve.POP_AXIS)))
    whole = np.asarray(scoring.score(logits, w, images))  # no mesh, no chunks
    for chunk in (1, 4, 5, 6):
        f = jax.jit(lambda p, x, chunk=chunk: scoring.score(logits, p, x, chunk, mesh))
        got = f(w, split)
        hlo = f.lower(w, split).compile().as_text()
        results[f"score/{chunk}"] = {
            "rows_equal": bool(np.array_equal(np.asarray(got), whole)),
            "split": "num_partitions=4" in hlo and len(got.sharding.device_set) == 4,
            "moves": [op for op in ("all-gather", "all-to-all", "collective-permute",
                                    "all-reduce") if op in hlo],
        }
    print(json.dumps(results))
    """
)


@pytest.fixture(scope="module")
def four_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_four_devices_equal_one_device_and_no_mesh(four_devices):
    results = four_devices
    for name in ("direct", "direct_blocks", "cppn"):
        assert results[f"{name}/sharded_hlo"], "the population was not split over the devices"
        assert results[f"{name}/evaluations"] == 6 + 6 * 10  # padding is not counted
        assert results[f"{name}/4"] == results[f"{name}/0"], f"{name}: 4 devices != no mesh"
        assert results[f"{name}/1"] == results[f"{name}/0"], f"{name}: 1 device != no mesh"


@pytest.mark.slow  # shares the child process above (a 4-device JAX start-up)
def test_chunked_scoring_over_four_devices_keeps_each_block_and_row_order(four_devices):
    """score(chunk, mesh) over 4 devices: each step takes the next chunk of every device's block,
    so the rows come back in order (bit for bit the unchunked, unsharded scores), the program
    is split 4 ways and no image or score moves between devices (no collective op)."""
    for chunk in (1, 4, 5, 6):
        result = four_devices[f"score/{chunk}"]
        assert result["rows_equal"], f"chunk {chunk}: rows differ from one unsharded batch"
        assert result["split"], f"chunk {chunk}: not split over the 4 devices"
        assert result["moves"] == [], f"chunk {chunk}: data moves between devices"
