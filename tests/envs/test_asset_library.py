from __future__ import annotations

import numpy as np
import pytest

from vla_torchrl.envs.asset_library import AssetLibrary
from vla_torchrl.envs.instructions import TRAIN_INSTRUCTION_TEMPLATE, format_instruction


def _sources():
    out = ["procedural"]
    from vla_torchrl.assets import AssetPaths

    if AssetPaths.resolve().rl4vla_dir is not None:
        out.append("rl4vla")
    return out


@pytest.mark.parametrize("source", _sources())
def test_paper_splits_and_disjoint_pools(source):
    lib = AssetLibrary.load(source)
    assert (len(lib.objects_train), len(lib.objects_unseen)) == (16, 9)
    assert (len(lib.tables_train), len(lib.tables_unseen)) == (16, 5)
    assert len(lib.receptacles_unseen) == 16 and len(lib.textures) == 16
    train = {o.name for o in lib.objects_train}
    unseen = {o.name for o in lib.objects_unseen}
    assert not train & unseen
    assert lib.receptacle_train.name == "plate"
    assert lib.receptacle_train.name not in {r.name for r in lib.receptacles_unseen}
    for a in (*lib.objects, *lib.receptacles):
        assert a.name.replace(" ", "").replace("7up", "up").isalpha(), a.name
        assert np.all(a.size > 0)


def test_procedural_images_are_deterministic_and_varied():
    a, b = AssetLibrary.procedural(seed=0), AssetLibrary.procedural(seed=0)
    c = AssetLibrary.procedural(seed=1)
    img = a.tables_train[0].image((48, 64))
    assert np.array_equal(img, b.tables_train[0].image((48, 64)))
    assert not np.array_equal(img, c.tables_train[0].image((48, 64)))
    means = {
        tuple(t.image((24, 32)).mean((0, 1)).round()) for t in a.tables_train + a.tables_unseen
    }
    assert len(means) == 21


def test_train_template_is_the_papers():
    assert (
        format_instruction(TRAIN_INSTRUCTION_TEMPLATE, "carrot", "plate") == "put carrot on plate"
    )
    with pytest.raises(ValueError, match="object"):
        format_instruction("put it on {receptacle}", "carrot", "plate")
