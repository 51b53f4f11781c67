"""Sharded == unsharded: the population split over 4 (simulated) devices gives the same run.

JAX fixes the device count when it starts, so the runs happen in a child process started with
XLA_FLAGS=--xla_force_host_platform_device_count=4.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np

from jaxfool.classifiers import scoring
from jaxfool.search import map_elites as evolve
from tests.conftest import REPO

CHILD = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    from jaxfool import classifiers
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
    print(json.dumps(results))
    """
)


def test_four_devices_equal_one_device_and_no_mesh():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in ("direct", "direct_blocks", "cppn"):
        assert results[f"{name}/sharded_hlo"], "the population was not split over the devices"
        assert results[f"{name}/evaluations"] == 6 + 6 * 10  # padding is not counted
        assert results[f"{name}/4"] == results[f"{name}/0"], f"{name}: 4 devices != no mesh"
        assert results[f"{name}/1"] == results[f"{name}/0"], f"{name}: 1 device != no mesh"


def test_chunked_scoring_per_device_block_equals_one_batch():
    """score(chunk, mesh) keeps each device's block together and returns rows in order."""
    w = jax.random.normal(jax.random.key(1), (12, 5))

    def logits(params, images):
        return images.reshape(images.shape[0], -1).astype(jnp.float32) @ params

    images = jax.random.randint(jax.random.key(2), (24, 2, 2, 3), 0, 256).astype(jnp.uint8)
    mesh = evolve.population_mesh(jax.devices()[:1])
    full = scoring.score(logits, w, images)
    for chunk in (1, 5, 24):
        got = scoring.score(logits, w, images, chunk, mesh)
        np.testing.assert_allclose(got, full, rtol=1e-5, atol=1e-6)
