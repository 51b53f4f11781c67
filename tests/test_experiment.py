"""The library's run loop (jaxfool.runs.experiment): configs, chunks, start-up signals, NaN stop,
resume settings, outputs."""

import dataclasses
import json

import numpy as np
import pytest

from jaxfool import runs
from jaxfool.base.errors import ConfigError, Interrupted
from jaxfool.runs import LoopConfig, RunConfig
from jaxfool.search import map_elites

SMALL = RunConfig(encoding="direct", population=20, seed=3)


class FakeStop:
    """A Stop whose signal has already arrived."""

    name = "SIGINT"

    def __bool__(self):
        return True


def quiet(msg):
    del msg


@pytest.mark.parametrize(
    "changes,field",
    [
        ({"population": 7}, "population"),
        ({"model": "resnet"}, "model"),
        ({"encoding": "pixels"}, "encoding"),
        ({"mutation_rate": 1.5}, "mutation_rate"),
        ({"seed": -1}, "seed"),
        ({"ten_crop": False}, "ten_crop"),
        ({"cppn_coords": "polar"}, "cppn_coords"),
    ],
)
def test_run_config_names_the_bad_field(changes, field):
    with pytest.raises(ConfigError) as e:
        RunConfig(**changes)
    assert e.value.field == field


@pytest.mark.parametrize(
    "changes,field",
    [({"generations": -1}, "generations"), ({"log_every": 0}, "log_every"),
     ({"checkpoint_every": -2}, "checkpoint_every")],
)  # fmt: skip
def test_loop_config_names_the_bad_field(changes, field):
    with pytest.raises(ConfigError) as e:
        LoopConfig(**changes)
    assert e.value.field == field


@pytest.mark.parametrize("start,total,log,ckpt", [(0, 10, 3, 0), (4, 50, 7, 5), (0, 0, 5, 2)])
def test_chunks_cover_the_run_and_end_on_every_checkpoint(start, total, log, ckpt):
    sizes = list(runs.chunk_sizes(start, total, log, ckpt))
    ends = np.cumsum([start] + sizes)[1:]
    assert sum(sizes) == total - start and all(0 < n <= log for n in sizes)
    if ckpt:
        assert set(range(ckpt * (start // ckpt + 1), total + 1, ckpt)) <= set(ends)


def test_signal_during_start_up_leaves_nothing(tmp_path):
    """Defect: Ctrl-C before the first chunk left a config.json that blocked a re-run."""
    out = tmp_path / "run"
    with pytest.raises(Interrupted, match="during start-up; nothing was written"):
        runs.start(SMALL, LoopConfig(out=str(out), generations=5), stop=FakeStop(), log=quiet)
    assert not out.exists()
    run = runs.start(SMALL, LoopConfig(out=str(out), generations=2), log=quiet)
    assert runs.drive(run)["status"] == "completed"  # the same --out is free again


def test_drive_writes_outputs_and_checkpoints_where_asked(tmp_path, monkeypatch):
    saved = []
    real = runs.store.save_checkpoint

    def counting(out, state, *args):
        saved.append(int(state.generation))
        return real(out, state, *args)

    monkeypatch.setattr(runs.store, "save_checkpoint", counting)
    loop = LoopConfig(out=str(tmp_path / "run"), generations=12, log_every=5, checkpoint_every=4)
    run = runs.start(SMALL, loop, log=quiet)
    summary = runs.drive(run)
    # generation 0 (a fault before the first chunk can resume), every 4, once more at the end
    assert saved == [0, 4, 8, 12, 12]
    rows = run.metrics()
    assert [r["generation"] for r in rows] == [4, 8, 12]
    assert rows[-1]["evaluations"] == summary["evaluations"] == 20 + 12 * 20
    files = json.loads((tmp_path / "run" / "manifest.json").read_text())["files"]
    on_disk = {p.relative_to(tmp_path / "run").as_posix() for p in (tmp_path / "run").rglob("*.*")}
    assert on_disk - {"manifest.json"} <= set(files)


def test_resume_keeps_log_and_checkpoint_settings(tmp_path):
    """Defect: --resume dropped --checkpoint_every and --log_every."""
    out = tmp_path / "run"
    loop = LoopConfig(out=str(out), generations=6, log_every=3, checkpoint_every=6)
    runs.drive(runs.start(SMALL, loop, log=quiet))
    given = {"generations"}
    config, resumed, _ = runs.store.resumed_configs(
        out, dataclasses.asdict(RunConfig()), LoopConfig(generations=12), given
    )
    assert config == dataclasses.replace(SMALL, initial_population=20)  # defaults filled
    assert (resumed.log_every, resumed.checkpoint_every) == (3, 6)
    assert resumed.generations == 12
    run = runs.start(config, resumed, resume=True, log=quiet)
    runs.drive(run, resuming=True)
    assert [r["generation"] for r in run.metrics()] == [3, 6, 9, 12]
    _, again, _ = runs.store.resumed_configs(
        out, dataclasses.asdict(RunConfig()), LoopConfig(), set()
    )
    assert again.generations == 12  # config.json now says where the run went on to


def test_resume_refuses_a_conflicting_setting(tmp_path):
    out = tmp_path / "run"
    runs.drive(runs.start(SMALL, LoopConfig(out=str(out), generations=1), log=quiet))
    with pytest.raises(ConfigError, match="--seed=4 conflicts"):
        runs.store.resumed_configs(
            out, dataclasses.asdict(RunConfig(seed=4)), LoopConfig(), {"seed"}
        )


def test_all_nan_classifier_stops_with_outputs(tmp_path, lenet):
    """Defect: a classifier scoring everything NaN crashed in the output writers."""
    import jax
    import jax.numpy as jnp

    def poison(path, leaf):  # the last layer's bias: every score NaN
        return jnp.full_like(leaf, jnp.nan) if "ip2" in str(path) and "bias" in str(path) else leaf

    params = jax.tree_util.tree_map_with_path(poison, lenet[1])
    run = runs.start(SMALL, LoopConfig(out=str(tmp_path / "run"), generations=5), log=quiet)
    run.params = params
    run.state = map_elites.init(run.evolution, params, map_elites.run_keys(3)[0])
    summary = runs.drive(run)
    assert summary["status"] == "stopped: NaN scores" and summary["classes"] == []
    assert summary["generations_completed"] == 0 and summary["nan_scores"] == 20
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["status"] == summary["status"]


@pytest.mark.parametrize(
    "changes,field",
    [({"emitter": "annealing"}, "emitter"), ({"emitter": "original:0.5"}, "emitter"),
     ({"emitter_params": "gradient.step_max=0.1"}, "emitter_params"),
     ({"emitter": "gradient", "emitter_params": "gradient.rate=2"}, "emitter_params"),
     ({"emitter": "gradient", "emitter_params": "gradient.step_max=x"}, "emitter_params")],
)  # fmt: skip
def test_emitter_settings_are_checked_once(changes, field):
    with pytest.raises(ConfigError) as e:
        RunConfig(**changes)
    assert e.value.field == field


@pytest.mark.parametrize(
    "emitter,params,message",
    [("gradient_walk", "gradient_walk.steps=0", "steps must be a whole number >= 1"),
     ("gradient_walk", "gradient_walk.steps=2.5", "steps must be a whole number >= 1"),
     ("gradient_walk", "gradient_walk.grow=-1", "grow must be > 0"),
     ("gradient_walk", "gradient_walk.adam=0.5", "adam must be 0 or 1"),
     ("gradient", "gradient.step_min=0", "step_min must be > 0"),
     ("gradient", "gradient.weak_target=1.5", "weak_target must be in [0, 1]"),
     ("gradient", "gradient.step_max=nan", "is not a finite number"),
     ("gradient", "gradient.step_max=inf", "is not a finite number"),
     ("isoline", "isoline.iso_sigma=-0.1", "iso_sigma must be >= 0"),
     ("original", "original.mutation_rate=2", "mutation_rate must be in [0, 1]")],
)  # fmt: skip
def test_emitter_params_out_of_range_are_refused(emitter, params, message):
    """A value no emitter could use is refused by name before anything runs."""
    with pytest.raises(ConfigError) as e:
        RunConfig(emitter=emitter, emitter_params=params)
    assert e.value.field == "emitter_params" and message in str(e.value)


def test_emitter_params_at_their_limits_are_accepted():
    RunConfig(
        emitter="gradient_walk:0.5,isoline:0.5",
        emitter_params="gradient_walk.steps=1,gradient_walk.greedy=0,gradient_walk.weak_target=1,"
        "isoline.iso_sigma=0",
    )


def test_original_rates_are_checked_against_the_encoding():
    """original.crossover_rate is a direct rate: a CPPN run refuses it before any file."""
    from jaxfool import classifiers

    clf, _ = classifiers.load_classifier("lenet")
    ok = RunConfig(encoding="direct", population=20, emitter_params="original.crossover_rate=0.2")
    (rates,) = runs.build(ok).emitter_params
    assert float(rates.crossover_rate) == pytest.approx(0.2) and float(rates.eta_c) == 10.0
    bad = RunConfig(encoding="cppn", population=20, emitter_params="original.crossover_rate=0.2")
    with pytest.raises(ConfigError) as e:
        runs.setup.evolution_config(bad, clf)
    assert e.value.field == "emitter_params" and "add_neuron_rate" in str(e.value)


def test_emitter_params_reach_the_emitters():
    config = RunConfig(
        encoding="direct", population=20, emitter="original:0.5,gradient:0.5",
        emitter_params="gradient.step_max=0.2,gradient.random_target=0.5",
    )  # fmt: skip
    setup = runs.build(config)
    shares = [(type(e).__name__, n) for e, n in setup.evolution.emitters]
    assert shares == [("Original", 10), ("Gradient", 10)]
    original, grad = setup.emitter_params
    assert float(grad.step_max) == pytest.approx(0.2) and float(grad.random_target) == 0.5
    assert float(grad.step_min) == pytest.approx(0.05)  # the direct default, untouched
