"""InstructionRephrase and the paper's unseen templates (Appendix A.4)."""

from __future__ import annotations

import pytest
import torch
from torchrl.envs import TransformedEnv

from vla_torchrl.envs.instruction_templates import UNSEEN_INSTRUCTION_TEMPLATES
from vla_torchrl.envs.transforms import InstructionRephrase, parse_instruction
from vla_torchrl.keys import ACTION_KEY, IMAGE_KEY, INSTRUCTION_KEY

# Written by hand from the paper's Appendix A.4 ($O$ -> {object}, $R$ -> {receptacle}).
PAPER_TEMPLATES = [
    "Place the {object} on the {receptacle}",
    "set {object} on {receptacle}",
    "move the {object} to the {receptacle}",
    "Take the {object} and put it on the {receptacle}",
    "pick up {object} and set it down on {receptacle}",
    "please put the {object} on the {receptacle}",
    "Put {object} onto {receptacle}.",
    "place the {object} onto the {receptacle} surface",
    "Make sure {object} is on {receptacle}.",
    "on the {receptacle}, put the {object}",
    "put the {object} where the {receptacle} is",
    "Move the {object} from the table to the {receptacle}",
    "Move {object} so it\N{RIGHT SINGLE QUOTATION MARK}s on {receptacle}.",
    "Can you put {object} on {receptacle}?",
    "{object} on the {receptacle}, please.",
    "the {object} should be placed on the {receptacle}.",
]

B = 3
INSTRUCTIONS = ["put carrot on plate", "put green cube on yellow plate", "put eggplant on towel"]
NAMES = [("carrot", "plate"), ("green cube", "yellow plate"), ("eggplant", "towel")]


def test_unseen_templates_are_the_papers_sixteen():
    assert list(UNSEEN_INSTRUCTION_TEMPLATES) == PAPER_TEMPLATES
    assert len(set(UNSEEN_INSTRUCTION_TEMPLATES)) == 16
    assert "\u2019" in UNSEEN_INSTRUCTION_TEMPLATES[12]  # curly apostrophe, not "'"


def test_parse_instruction():
    assert parse_instruction("put green cube on yellow plate", "put {object} on {receptacle}") == {
        "object": "green cube",
        "receptacle": "yellow plate",
    }
    with pytest.raises(ValueError, match="does not match"):
        parse_instruction("place carrot on plate", "put {object} on {receptacle}")


def _env(mock_env, templates, seed=0, instructions=INSTRUCTIONS):
    image = torch.zeros(B, 4, 4, 3, dtype=torch.uint8)
    return TransformedEnv(
        mock_env(image, None, instructions), InstructionRephrase(templates, seed=seed)
    )


def _step(env, td):
    td.set(ACTION_KEY, torch.zeros(B, 7))
    return env.step(td)["next"]


def _strings(td) -> list[str]:
    return td.get(INSTRUCTION_KEY).tolist()


def _by_hand(template_index: int, env: int) -> str:
    obj, rec = NAMES[env]
    return PAPER_TEMPLATES[template_index].replace("{object}", obj).replace("{receptacle}", rec)


def test_template_kept_over_the_episode(mock_env):
    env = _env(mock_env, UNSEEN_INSTRUCTION_TEMPLATES)
    td = env.reset()
    first = _strings(td)
    index = env.transform.template_index.tolist()
    assert first == [_by_hand(index[b], b) for b in range(B)]
    for _ in range(4):
        td = _step(env, td)
        assert _strings(td) == first


def test_template_changes_across_resets_and_covers_the_list(mock_env):
    env = _env(mock_env, UNSEEN_INSTRUCTION_TEMPLATES, seed=1)
    seen = set()
    for _ in range(40):
        td = env.reset()
        seen.add(_strings(td)[0])
        assert _strings(_step(env, td))[0] == _strings(td)[0]
    allowed = {_by_hand(i, 0) for i in range(16)}
    assert seen <= allowed
    assert len(seen) >= 8  # 40 draws out of 16 templates


def test_partial_reset_changes_only_the_reset_env(mock_env):
    env = _env(mock_env, UNSEEN_INSTRUCTION_TEMPLATES, seed=2)
    td = _step(env, env.reset())
    start = _strings(td)
    seen = {start[2]}
    for _ in range(10):
        td.set("_reset", torch.tensor([[False], [False], [True]]))
        td = _step(env, env.reset(td))
        now = _strings(td)
        assert now[:2] == start[:2]
        seen.add(now[2])
    assert len(seen) > 1


def test_same_seed_same_templates(mock_env):
    def run(seed):
        env = _env(mock_env, UNSEEN_INSTRUCTION_TEMPLATES, seed=seed)
        return [_strings(env.reset()) for _ in range(5)]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_instruction_off_the_train_template_is_an_error(mock_env):
    env = _env(mock_env, ["set {object} on {receptacle}"], instructions=["go home", "a", "b"])
    with pytest.raises(ValueError, match="'go home'.*does not match"):
        env.reset()


def test_bad_templates_are_refused():
    with pytest.raises(ValueError, match="empty"):
        InstructionRephrase([])
    with pytest.raises(ValueError, match="fields"):
        InstructionRephrase(["put {thing} on {receptacle}"])
    with pytest.raises(ValueError, match="train_template"):
        InstructionRephrase(["put {object}"], train_template="put {object} somewhere")
    with pytest.raises(TypeError, match="single string"):
        InstructionRephrase("put {object} on {receptacle}")


def test_rephrases_the_toy_env(mock_env):
    from vla_torchrl.envs.toy import make_toy_env

    env = TransformedEnv(make_toy_env(2, seed=0), InstructionRephrase(PAPER_TEMPLATES[:1], seed=0))
    td = env.reset()
    for text in _strings(td):
        assert text.startswith("Place the dot on the ") and text.endswith(" square")
    assert td[IMAGE_KEY].shape[0] == 2


def test_a_finished_envs_carried_instruction_is_kept_not_refused():
    """A ParallelEnv's partial step (TorchRL's rollout waiting for the envs still running)
    hands back a finished env's last entries, already rephrased: the SUITE's `instruct` task
    stopped with "does not match the training template" on one. Its own rephrasing is kept;
    another template's rephrasing is still an error."""
    from tensordict import NonTensorStack, TensorDict

    rephrase = InstructionRephrase(PAPER_TEMPLATES, seed=0)
    raw = TensorDict({INSTRUCTION_KEY: NonTensorStack(*INSTRUCTIONS)}, [B])
    first = _strings(rephrase._reset(TensorDict({}, [B]), raw.clone()))
    index = rephrase.template_index.tolist()
    assert first == [_by_hand(index[b], b) for b in range(B)]
    carried = TensorDict({INSTRUCTION_KEY: NonTensorStack(first[0], *INSTRUCTIONS[1:])}, [B])
    assert _strings(rephrase._call(carried)) == first
    other = (index[0] + 1) % len(PAPER_TEMPLATES)
    foreign = TensorDict(
        {INSTRUCTION_KEY: NonTensorStack(_by_hand(other, 0), *INSTRUCTIONS[1:])}, [B]
    )
    with pytest.raises(ValueError, match="does not match the training template"):
        rephrase._call(foreign)
