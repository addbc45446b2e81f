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
