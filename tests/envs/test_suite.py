from __future__ import annotations

from vla_torchrl.envs.suite import SUITE, task_names


def test_suite_is_appendix_a4():
    assert task_names("vision") == ["table", "texture-w", "texture-s", "noise-w", "noise-s"]
    assert task_names("semantics") == [
        "obj",
        "recep",
        "instruct",
        "m-obj-ind",
        "m-obj-ood",
        "disturb-recep",
        "m-recep",
    ]
    assert task_names("execution") == ["obj-pos", "robot-pose", "obj-rep"]
    assert task_names("ind") == ["ind"] and len(SUITE) == 16
    assert SUITE["texture-w"].perturbation.alpha == 0.3
    assert SUITE["noise-s"].perturbation.alpha == 0.5
    assert SUITE["texture-s"].perturbation.region == "foreground"
    assert SUITE["noise-w"].perturbation.region == "image"
    assert SUITE["m-obj-ood"].scene.num_objects == 2
    assert SUITE["m-obj-ood"].scene.object_pool == "objects_unseen"
    assert SUITE["m-recep"].scene.num_receptacles == 2
    assert SUITE["obj-rep"].scene.reposition_step == 5
    assert SUITE["ind"].scene.object_pool == "objects_train"
    assert SUITE["ind"].scene.receptacle_pool == "receptacle_train"


def test_unknown_perturbation_kind_or_region_is_rejected():
    import pytest

    from vla_torchrl.envs.suite import Perturbation

    with pytest.raises(ValueError, match="kind='jitter' is unknown"):
        Perturbation(kind="jitter", alpha=0.3)
    with pytest.raises(ValueError, match="region='background' is unknown"):
        Perturbation(kind="texture", alpha=0.3, region="background")
    assert Perturbation(kind="instruction").kind == "instruction"


def test_registered_task_reaches_parallel_workers_as_its_spec(monkeypatch):
    """register_task: known to SUITE / task_names, and ParallelEnv's worker functions carry the
    TaskSpec itself (a spawned worker re-imports SUITE without the registration)."""
    import functools
    import pickle

    import pytest

    from vla_torchrl.envs import builder
    from vla_torchrl.envs.suite import SceneOptions, TaskSpec, register_task

    spec = TaskSpec("test-far-plate", "execution", "plate far away", SceneOptions())
    monkeypatch.setitem(SUITE, "ind", SUITE["ind"])  # restores SUITE's state on exit
    try:
        register_task(spec)
        assert "test-far-plate" in task_names("execution")
        with pytest.raises(ValueError, match="already in SUITE"):
            register_task(spec)
        with pytest.raises(ValueError, match="axis='other' is unknown"):
            register_task(TaskSpec("x", "other", "d"))  # type: ignore[arg-type]
        captured = {}

        class _StubParallel:
            def __init__(self, n, fns, **kwargs):
                captured["fns"] = fns

        monkeypatch.setattr(builder, "ParallelEnv", _StubParallel)
        builder.make_env("test-far-plate", num_envs=2, parallel=True, sim_backend="cpu")
        fn = pickle.loads(pickle.dumps(captured["fns"][0]))  # what a spawned worker receives
        # the worker's function may be wrapped (e.g. tied to its parent's lifetime): unwrap
        while isinstance(fn.args[0], functools.partial):
            fn = fn.args[0]
        assert fn.args[0] == spec and isinstance(fn.args[0], TaskSpec)
    finally:
        SUITE.pop("test-far-plate", None)
