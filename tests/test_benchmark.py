"""experiments/benchmark.py and jaxfool.studies.benchmark: the JSON lines carry every field with
sane values (the stage profile times each emitter's own `emit`), flags are checked, and the
suites' tables give the cases they always gave. (The NumPy baseline's tests are in
test_numpy_baseline.py.)"""

import hashlib
import json
import re
import sys

import pytest

from jaxfool.runs.presets import IMAGENET_EVAL_CHUNK

from . import script_runner
from .conftest import REPO

BENCHMARK = [sys.executable, str(REPO / "experiments" / "benchmark.py")]

ENVIRONMENT = ("platform", "device_kind", "device_count", "jax_version", "cpu_count")
GENERATION_FIELDS = (
    "population", "image_shape", "eval_chunk", "init_s", "compile_s", "generation_s",
    "generations_per_s", "evaluations_per_s", "classifier_only_s",
    "classifier_only_generations_per_s", "overhead_ratio", "stage_s", "flops_per_image",
    "device_flops_per_s", "limit_generation_s", "fraction_of_limit",
    "original_evaluations_per_s", "speedup_over_original", "numpy_generations_per_s",
    "speedup_over_numpy", "peak_host_rss_mib", "peak_device_mib", "overhead_ratio_cpu",
    "cpu_cores_used", "load_avg_1m", "isolated", "compute_dtype", "run_device_mib",
)  # fmt: skip


def benchmark(*args):
    return script_runner.run(BENCHMARK + list(args), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def smoke_rows():
    res = benchmark("--suite=smoke")
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    return {row["kind"]: row for row in rows}


def test_generation_line_has_every_field(smoke_rows):
    row = smoke_rows["generation"]
    for key in ENVIRONMENT + GENERATION_FIELDS:
        assert key in row, key
    assert row["platform"] == "cpu" and row["device_count"] >= 1
    assert row["population"] == 8 and row["image_shape"] == [28, 28, 1]
    assert row["generations_per_s"] == pytest.approx(1 / row["generation_s"], rel=1e-2)
    assert row["evaluations_per_s"] == pytest.approx(8 * row["generations_per_s"], rel=1e-2)
    assert row["overhead_ratio"] == pytest.approx(
        row["generation_s"] / row["classifier_only_s"], rel=1e-2
    )
    assert set(row["stage_s"]) == {"emit/original", "express", "insert", "classifier"}
    assert all(v > 0 for v in row["stage_s"].values())
    # LeNet: 2 x (conv1 20*24*24*25 + conv2 50*8*8*500 + ip1 800*500 + ip2 500*10) MACs
    assert row["flops_per_image"] == pytest.approx(4.59e6, rel=0.05)
    assert row["device_flops_per_s"] > 1e9
    assert row["limit_generation_s"] == pytest.approx(
        row["flops_per_image"] * 8 / row["device_flops_per_s"], rel=1e-2
    )
    assert 0 < row["fraction_of_limit"] < 2
    assert row["original_evaluations_per_s"] == pytest.approx(133.3, rel=1e-3)
    assert row["numpy_generations_per_s"] > 0 and row["speedup_over_numpy"] > 0
    before, after = row["numpy_median_log_prob"]
    assert after >= before
    assert row["peak_host_rss_mib"] > 100 and row["peak_device_mib"] is None
    assert row["compile_s"] >= 0 and row["init_s"] > 0


def test_insert_line(smoke_rows):
    row = smoke_rows["insert"]
    assert row["cells"] == 10 and row["children"] == 8
    assert row["insert_s"] > 0 and row["inserts_per_s"] == pytest.approx(1 / row["insert_s"], 0.01)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--suite=fast"], "--suite=fast"),
        (["--suite=custom", "--population=3"], "--population=3"),
        (["--population=x"], "--population"),  # absl's own parse error, kept to one line
        (["--suite=custom", "--emitter=nope"], "--emitter"),
        (
            ["--suite=custom", "--emitter=gradient", "--emitter_params=gradient.bogus=1"],
            "--emitter_params",
        ),  # fmt: skip
        (["--suite=custom", "--encoding=dense"], "--encoding"),
    ],
)
def test_bad_flags_are_one_line_errors(args, message):
    res = benchmark(*args)
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and message in res.stderr
    assert res.stdout == ""


# --- the suites' cases ---------------------------------------------------------------------------

# Runs in a subprocess (the script's flags would clash with other scripts' in this process):
# imports benchmark.py, parses each argument list and prints {" ".join(args): the selected cases
# as dicts, or the error's message}.
SELECT = r"""
import dataclasses, json, sys
sys.path.insert(0, sys.argv[1])
import benchmark
from absl import flags

out = {}
for args in json.loads(sys.argv[2]):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["benchmark.py", *args])
    try:
        out[" ".join(args)] = [dataclasses.asdict(c) for c in benchmark.selected_cases()]
    except ValueError as e:  # a FlagError or the library's ConfigError
        out[" ".join(args)] = str(e)
print(json.dumps(out))
"""
SUITES = (
    "quick", "all", "gpu", "smoke", "device", "mnist-direct", "mnist-cppn", "imagenet-direct",
    "imagenet-cppn", "classifiers", "render", "archive-insert", "emitters", "classifiers-torch",
    "gpu-runs", "custom",
)  # fmt: skip
CUSTOM = ["--suite=custom", "--model=caffenet", "--encoding=cppn", "--population=10",
          "--generations=3", "--noten_crop", "--weights=random"]  # fmt: skip
# a custom case with an emitter (issue 28: a walk run's generation at its own population)
CUSTOM_WALK = ["--suite=custom", "--model=efficientnet_lite0", "--encoding=dense_cppn",
               "--population=192", "--generations=1", "--nostages",
               "--emitter=gradient_walk_relay",
               "--emitter_params=gradient_walk_relay.steps=37,"
               "gradient_walk_relay.relay=0.9"]  # fmt: skip
CHOICES = [[f"--suite={s}", *extra] for s in SUITES for extra in ([], ["--tiny"])]
CHOICES += [CUSTOM, CUSTOM_WALK]
# sha256 of json.dumps(cases of CHOICES, sort_keys=True): every field of every case of every
# suite, with and without --tiny. A change meant to be made (a new configuration) changes it:
# print the new digest and put it here. Taken when --suite=gpu was sized for its first GPU run
# (issue 32: ImageNet at 400 on random weights in one classifier call, no stage profile, one
# NumPy generation at MNIST 4000, the goals' cases first; every other suite's cases
# unchanged). Before it, with the bf16 twins of issue 15:
# a51c9ce1507151771eba7c5b855a0ac1335bc43cb533c60ccff364a0c0c003d6; without them
# and the compute_dtype field, the cases gave the digest of before the suites became tables,
# 6084ad28524e304bca494ad522a48d5eadf051abdf629d6473df0a2bc22da190.
CHOICES_SHA256 = "e692a9454f8ac44c72d91f7bf2e53bab5d733eded89f26c7ee204f30062ed4e7"

BASIC_NAMES = ["device", "mnist-direct/lenet/direct/p200", "mnist-cppn/lenet/cppn/p200",
    "imagenet-direct/efficientnet_lite0/direct/p64", "imagenet-direct/caffenet-10crop/direct/p64",
    "imagenet-cppn/efficientnet_lite0/cppn/p64", "imagenet-cppn/caffenet-10crop/cppn/p64",
    "imagenet-cppn/caffenet-10crop/cppn/p400", "classifiers/lenet", "classifiers/caffenet",
    "classifiers/alexnet_caffe", "classifiers/alexnet_torchvision",
    "classifiers/efficientnet_lite0", "render/28x28x1/b200", "render/256x256x3/b64",
    "render/1024x1024x3/b4", "insert/mnist-direct", "insert/imagenet-direct",
    "insert/imagenet-cppn"]  # fmt: skip
# the suite of each --suite=all case: the basic suite it comes from
BASIC_SUITES = ["device", "mnist-direct", "mnist-cppn", *["imagenet-direct"] * 2,
                *["imagenet-cppn"] * 3, *["classifiers"] * 5, *["render"] * 3,
                *["archive-insert"] * 3]  # fmt: skip
GPU_MNIST = ["mnist-direct/lenet/direct/p200", "mnist-direct/lenet/direct/p4000",
             "mnist-cppn/lenet/cppn/p200", "mnist-cppn/lenet/cppn/p4000"]  # fmt: skip
GPU_IMAGENET_CPPN = ["imagenet-cppn/efficientnet_lite0/cppn/p400",
                     "imagenet-cppn/caffenet-10crop/cppn/p400"]  # fmt: skip
GPU_IMAGENET_DIRECT = ["imagenet-direct/efficientnet_lite0/direct/p400",
                       "imagenet-direct/caffenet-10crop/direct/p400"]  # fmt: skip
GPU_IMAGENET = GPU_IMAGENET_CPPN + GPU_IMAGENET_DIRECT
GPU_GENERATIONS = GPU_MNIST + GPU_IMAGENET


def both_dtypes(cases):
    return [n + dtype for n in cases for dtype in ("", "/bf16")]


# issue 32: the goals' figures first (MNIST, ImageNet CPPN, the renderer), so that a run cut
# short by a time limit keeps them
GPU_NAMES = ["device", *both_dtypes(GPU_MNIST), *both_dtypes(GPU_IMAGENET_CPPN),
    "render/28x28x1/b4000", "render/256x256x3/b400", "render/1024x1024x3/b64",
    *both_dtypes(GPU_IMAGENET_DIRECT), "classifiers/lenet", "classifiers/caffenet",
    "classifiers/alexnet_caffe", "classifiers/alexnet_torchvision",
    "classifiers/efficientnet_lite0", "insert/mnist-direct", "insert/imagenet-direct",
    "insert/imagenet-cppn"]  # fmt: skip
GPU_RUNS_NAMES = ["runs/lenet/direct/p200/r8", "runs/lenet/direct/p200/r64",
                  "runs/lenet/cppn/p200/r8", "runs/lenet/cppn/p200/r64"]  # fmt: skip
QUICK_NAMES = ["quick/lenet/direct/p200", "quick/lenet/cppn/p200", "render/256x256x3/b16",
               "insert/imagenet-direct", "quick/efficientnet_lite0/cppn/p16"]  # fmt: skip
# a Case's defaults, then the smoke suite's two cases in full
DEFAULTS = dict(model="lenet", weights=None, ten_crop=True, encoding="direct", population=200,
                generations=1, repeats=3, eval_chunk=None, classifier_only=True, stages=True,
                numpy_generations=0, size=256, channels=3, cells=1000,
                compute_dtype="float32", emitter="original", emitter_params="", runs=1,
                script_args=[])  # fmt: skip
SMOKE = [
    dict(DEFAULTS, kind="generation", suite="smoke", name="smoke/lenet/direct/p8", population=8,
         generations=2, repeats=1, numpy_generations=1),
    dict(DEFAULTS, kind="insert", suite="smoke", name="insert/mnist-direct", population=8,
         generations=2, repeats=1, size=28, channels=1, cells=10),
]  # fmt: skip


def select(*choices):
    res = script_runner.run(
        [sys.executable, "-c", SELECT, str(REPO / "experiments"), json.dumps(choices)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def chosen():
    return select(*CHOICES)


def names(cases):
    return [c["name"] for c in cases]


def test_every_case_of_every_suite_is_as_before(chosen):
    # the emitters suite (issue 13) is new, and so is the `emitter` field (original elsewhere):
    # without them the digest is the one of before
    new_suites = (
        "--suite=emitters", "--suite=classifiers-torch", "--suite=gpu-runs", "--suite=startup",
    )  # fmt: skip
    old = [a for a in CHOICES if a[0] not in new_suites and a != CUSTOM_WALK]
    cases = [[dict(c) for c in chosen[" ".join(args)]] for args in old]
    for case in (c for cs in cases for c in cs):
        assert case.pop("emitter") == "original", case["name"]
        assert case.pop("emitter_params") == "", case["name"]  # the 1000-class walk's (issue 28)
        assert case.pop("runs") == 1, case["name"]
        assert case.pop("script_args") == [], case["name"]  # the startup suite's field (issue 29)
    text = json.dumps(cases, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()
    assert digest == CHOICES_SHA256, f"the suites' cases changed; new digest {digest}"


def test_suite_names_and_order(chosen):
    assert names(chosen["--suite=all"]) == BASIC_NAMES
    assert names(chosen["--suite=gpu"]) == GPU_NAMES
    assert names(chosen["--suite=quick"]) == QUICK_NAMES
    assert chosen["--suite=smoke"] == SMOKE
    assert [c["suite"] for c in chosen["--suite=all"]] == BASIC_SUITES
    for suite in SUITES:
        assert chosen[f"--suite={suite}"], suite
        assert len(set(names(chosen[f"--suite={suite}"]))) == len(chosen[f"--suite={suite}"])
    (custom,) = chosen[" ".join(CUSTOM)]
    assert custom == dict(
        DEFAULTS, kind="generation", suite="custom", name="custom/caffenet/cppn/p10",
        model="caffenet", weights="random", ten_crop=False, encoding="cppn", population=10,
        generations=3,
    )  # fmt: skip
    (walk,) = chosen[" ".join(CUSTOM_WALK)]
    assert walk == dict(
        DEFAULTS, kind="generation", suite="custom",
        name="custom/efficientnet_lite0/dense_cppn/p192/gradient_walk_relay",
        model="efficientnet_lite0", encoding="dense_cppn", population=192, generations=1,
        stages=False, emitter="gradient_walk_relay",
        emitter_params="gradient_walk_relay.steps=37,gradient_walk_relay.relay=0.9",
    )  # fmt: skip


def test_gpu_suite_times_every_generation_case_in_bf16_too(chosen):
    cases = {c["name"]: c for c in chosen["--suite=gpu"]}
    for name in GPU_GENERATIONS:
        f32, bf16 = cases[name], cases[name + "/bf16"]
        assert f32["compute_dtype"] == "float32"
        assert bf16 == dict(f32, name=name + "/bf16", compute_dtype="bfloat16", stages=False,
                            numpy_generations=0)  # fmt: skip


def test_gpu_suite_sizes_and_weights(chosen):
    # issue 32: ImageNet at the paper's population of 400 on random weights (the GPU machine has
    # no weights package), the whole population in one classifier call, no per-stage profile;
    # MNIST on its shipped LeNet, with the stage profile
    cases = {c["name"]: c for c in chosen["--suite=gpu"]}
    for name in both_dtypes(GPU_IMAGENET):
        case = cases[name]
        assert case["population"] == 400 and case["weights"] == "random", name
        assert case["eval_chunk"] == 400 and not case["stages"], name
    for name in GPU_MNIST:
        assert cases[name]["weights"] is None and cases[name]["stages"], name
    assert [cases[n]["population"] for n in GPU_MNIST] == [200, 4000, 200, 4000]
    assert {c["model"] for c in cases.values() if "lite0" in c["name"]} == {"efficientnet_lite0"}


def test_gpu_runs_suite(chosen):
    cases = chosen["--suite=gpu-runs"]
    assert names(cases) == GPU_RUNS_NAMES
    assert [(c["kind"], c["runs"], c["generations"]) for c in cases] == [
        ("runs", 8, 100), ("runs", 64, 100), ("runs", 8, 50), ("runs", 64, 50)
    ]  # fmt: skip
    assert all(c["population"] == 200 and c["model"] == "lenet" for c in cases)


def test_emitters_suite_has_every_emitter_on_mnist_and_lite0(chosen):
    specs = ["original", "isoline", "gradient", "gradient_full", "original:0.5,gradient:0.5"]
    per = [(e, s) for e in ("direct", "cppn") for s in specs
           if e == "cppn" or s != "gradient_full"]  # fmt: skip
    want = [f"emitters/{m}/{e}/p{p}" + ("" if s == "original" else f"/{s}")
            for m, p in (("lenet", 200), ("efficientnet_lite0", 64)) for e, s in per]  # fmt: skip
    want += [f"emitters/lenet/{e}/p200/gradient_walk" for e in ("direct", "cppn")]
    want += ["emitters/efficientnet_lite0/dense_cppn/p32/gradient_walk"]
    want += ["emitters/efficientnet_lite0/dense_cppn/p64/gradient_walk_relay"]
    cases = chosen["--suite=emitters"]
    assert names(cases) == [*want, "runs/lenet/direct/p200/r8", "runs/lenet/cppn/p200/r8"]
    emitters = [s for _, s in per] * 2 + ["gradient_walk"] * 3 + ["gradient_walk_relay"]
    assert [c["emitter"] for c in cases] == emitters + ["original"] * 2
    assert [c["runs"] for c in cases] == [1] * 22 + [8, 8]
    assert all(c["stages"] for c in cases[:20])  # each emitter's own emit is profiled
    # the Lite0 walks fill one eval_chunk exactly, as a run's gradient calls do
    chunk = IMAGENET_EVAL_CHUNK  # fool.py's default for Lite0
    assert [c["population"] for c in cases[20:22]] == [chunk, 2 * chunk]
    # the 1000-class walk and its relay are measured with the presets' own params
    for case, preset in ((cases[20], "walk"), (cases[21], "walk_relay")):
        text = (REPO / f"experiments/configs/imagenet1000_lite0_cppn_{preset}.flags").read_text()
        assert f"--emitter_params={case['emitter_params']}\n" in text
    # the relay preset's walks (half its population) fill whole eval chunks: no padded gradients
    text = (REPO / "experiments/configs/imagenet1000_lite0_cppn_walk_relay.flags").read_text()
    (population,) = [int(v) for v in re.findall(r"^--population=(\d+)$", text, re.M)]
    assert "--eval_chunk" not in text and (population // 2) % chunk == 0
    assert all(c["emitter_params"] == "" for c in cases[:20] + cases[22:])


def test_gradient_emitter_generation_line():
    # the trailing "/" leaves out gradient_walk's case
    res = benchmark("--suite=emitters", "--tiny", "--only=lenet/direct/p200/gradient/")
    assert res.returncode == 0, res.stderr[-2000:]
    (row,) = [json.loads(line) for line in res.stdout.splitlines()]
    assert row["emitter"] == "gradient" and row["generations_per_s"] > 0
    assert row["overhead_ratio"] > 0
    # the stage profile times the gradient emitter's own emit, not the original's variation
    assert set(row["stage_s"]) == {"emit/gradient", "express", "insert", "classifier"}
    assert row["stage_s"]["emit/gradient"] > 0


def test_run_many_line():
    res = benchmark("--suite=emitters", "--tiny", "--only=runs/lenet/direct")
    assert res.returncode == 0, res.stderr[-2000:]
    (row,) = [json.loads(line) for line in res.stdout.splitlines()]
    assert row["runs"] == 8 and row["run_many_speedup"] > 0 and row["same_takeovers"]
    assert row["batch"] == "map" and row["max_abs_delta_log_prob"] == 0  # CPU: bit for bit
    assert row["vmap_speedup"] > 0


def test_cpu_flops_counts_from_shapes():
    # issue 32: FLOPs are counted on the CPU backend wherever the run is (an H200's own count
    # left out cuDNN's convolutions: LeNet 0.83 of 4.6 MFLOPs)
    import jax
    import jax.numpy as jnp

    from jaxfool.studies.benchmark.timing import cpu_flops

    def conv(x, w):
        dims = ("NHWC", "HWIO", "NHWC")
        return jax.lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=dims)

    x = jax.ShapeDtypeStruct((2, 16, 16, 8), jnp.float32)
    w = jnp.ones((3, 3, 8, 4))
    a = jnp.ones((64, 32))
    assert cpu_flops(conv, x, w) == pytest.approx(2 * 2 * 14 * 14 * 4 * 9 * 8, rel=0.01)
    assert cpu_flops(jnp.matmul, a, a.T) == pytest.approx(2 * 64 * 32 * 64, rel=0.01)


def test_classifier_line():
    res = benchmark("--suite=classifiers", "--tiny", "--only=lenet")
    assert res.returncode == 0, res.stderr[-2000:]
    (row,) = [json.loads(line) for line in res.stdout.splitlines()]
    assert row["weights"] == "random" and row["flax_images_per_s"] > 0
    assert row["flops_per_image"] == pytest.approx(4.59e6, rel=0.05)


def test_bf16_generation_line():
    res = benchmark("--suite=gpu", "--tiny", "--only=mnist-direct/lenet/direct/p200/bf16")
    assert res.returncode == 0, res.stderr[-2000:]
    (row,) = [json.loads(line) for line in res.stdout.splitlines()]
    assert row["compute_dtype"] == "bfloat16" and row["generations_per_s"] > 0
    assert row["device_flops_per_s"] > 1e8 and 0 < row["fraction_of_limit"]  # bf16 probes
    error = row["log_prob_error_vs_float32"]
    assert 0 < error["max_abs_delta_log_prob"] < 1 and 0 <= error["top_class_agreement"] <= 1
    assert error["max_abs_delta_log_prob_top"] <= error["max_abs_delta_log_prob"]
    assert row["run_device_mib"]["total"] > 0


def test_tiny_shrinks_every_case(chosen):
    for suite in SUITES:
        full, tiny = chosen[f"--suite={suite}"], chosen[f"--suite={suite} --tiny"]
        assert len(full) == len(tiny), suite
        for f, t in zip(full, tiny, strict=True):
            assert t == dict(
                f, name=f["name"] + "/tiny", population=min(f["population"], 4), generations=1,
                repeats=1, numpy_generations=min(f["numpy_generations"], 1),
                size=min(f["size"], 64),
            )  # fmt: skip


def test_repeats_eval_chunk_and_only_apply_to_the_chosen_cases():
    got = select(["--suite=all", "--only=lite0", "--repeats=2", "--eval_chunk=7", "--tiny"],
                 ["--suite=smoke", "--only=lite0"], ["--suite=fast"])  # fmt: skip
    cases = got["--suite=all --only=lite0 --repeats=2 --eval_chunk=7 --tiny"]
    assert names(cases) == ["imagenet-direct/efficientnet_lite0/direct/p64/tiny",
                            "imagenet-cppn/efficientnet_lite0/cppn/p64/tiny",
                            "classifiers/efficientnet_lite0/tiny"]  # fmt: skip
    assert all(c["repeats"] == 2 and c["eval_chunk"] == 7 for c in cases)
    assert got["--suite=smoke --only=lite0"] == "--only=lite0: no case of --suite=smoke matches"
    assert got["--suite=fast"].startswith("--suite=fast: choose one of quick, all, gpu, smoke,")
