"""TorchRL's own pieces on our actor and critic (issue 16): get_dist / log_prob, exploration
type, set_keys, TorchRL's ClipPPOLoss giving VLAPPOLoss's loss on the tiny OpenVLA, and
TorchRL's GAE on our value network giving the advantages of a plain-loop GAE."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torchrl.envs import TransformedEnv
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.objectives import ClipPPOLoss
from torchrl.objectives.value import GAE

from vla_torchrl.envs.toy import make_toy_env
from vla_torchrl.envs.transforms import InstructionBytes
from vla_torchrl.keys import (
    ACTION_LOG_PROB_KEY,
    ACTION_TOKENS_KEY,
    ADVANTAGE_KEY,
    EVAL_TOKEN_LOG_PROBS_KEY,
    IMAGE_KEY,
    INSTRUCTION_BYTES_KEY,
    INSTRUCTION_KEY,
    VALUE_KEY,
    VALUE_TARGET_KEY,
)
from vla_torchrl.modules import SharedValueNetwork, build_policy
from vla_torchrl.objectives import VLAPPOLoss


@pytest.fixture(scope="module")
def bundle():
    torch.manual_seed(0)
    return build_policy("tiny", lora=False, critic="shared", text_tokenizer="builtin")


def _obs(n: int = 6, seed: int = 1) -> TensorDict:
    g = torch.Generator().manual_seed(seed)
    td = TensorDict(
        {IMAGE_KEY: torch.randint(0, 256, (n, 32, 32, 3), generator=g).to(torch.uint8)}, [n]
    )
    td[INSTRUCTION_KEY] = [f"put object {i} on the plate" for i in range(n)]
    return td


def test_get_dist_samples_tokens_and_scores_them_as_the_evaluator(bundle):
    td = _obs()
    dist = bundle.actor.get_dist(td)
    tokens = dist.sample()
    first, end = bundle.model.config.action_token_ids
    assert tokens.shape == (6, 7) and bool(((tokens >= first) & (tokens < end)).all())
    scored = td.clone().set(ACTION_TOKENS_KEY, tokens)
    with torch.no_grad():
        ref = bundle.evaluator(scored.clone())[EVAL_TOKEN_LOG_PROBS_KEY].sum(-1)
    log_prob = dist.log_prob(tokens)
    assert log_prob.requires_grad  # teacher-forced, with gradients
    torch.testing.assert_close(log_prob.detach(), ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(bundle.actor.log_prob(scored).detach(), ref, atol=1e-6, rtol=0)
    assert dist.sample((2,)).shape == (2, 6, 7)
    with pytest.raises(TypeError, match="ACTION_TOKENS_KEY"):
        dist.log_prob(torch.zeros(6, 7))


def test_deterministic_exploration_type_decodes_greedily(bundle):
    greedy = bundle.eval_actor(mode="greedy")
    expected = greedy(_obs())[ACTION_TOKENS_KEY]
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        a = bundle.actor(_obs())[ACTION_TOKENS_KEY]
        b = bundle.actor(_obs())[ACTION_TOKENS_KEY]
    assert torch.equal(a, expected) and torch.equal(b, expected)
    torch.testing.assert_close(bundle.actor.get_dist(_obs()).mode, expected)
    # RANDOM (the Collector's default) keeps the sampling actor sampling: draws differ
    with set_exploration_type(ExplorationType.RANDOM):
        draws = [bundle.actor(_obs())[ACTION_TOKENS_KEY] for _ in range(3)]
    assert not all(torch.equal(d, draws[0]) for d in draws[1:])


def test_set_keys_on_actor_evaluator_and_critic(bundle):
    td = _obs(2)
    renamed = TensorDict({("pixels", "rgb"): td[IMAGE_KEY]}, [2])
    renamed["task"] = td[INSTRUCTION_KEY]
    actor = bundle.eval_actor(mode="greedy")
    expected = actor(td.clone())[ACTION_TOKENS_KEY]
    assert actor.set_keys(image=("pixels", "rgb"), instruction="task") is actor
    assert actor.in_keys == [("pixels", "rgb"), "task"]
    assert torch.equal(actor(renamed.clone())[ACTION_TOKENS_KEY], expected)
    critic = SharedValueNetwork(bundle.model, bundle.processor, bundle.critic)
    v = critic(td.clone())[VALUE_KEY]
    critic.set_keys(image=("pixels", "rgb"), instruction="task", value="v")
    torch.testing.assert_close(critic(renamed.clone())["v"], v)
    evaluator = bundle.evaluator
    try:
        evaluator.set_keys(image=("pixels", "rgb"), instruction="task", action_tokens="tok")
        out = evaluator(renamed.clone().set("tok", expected))
        assert out[EVAL_TOKEN_LOG_PROBS_KEY].shape == (2, 7)
    finally:
        evaluator.set_keys(
            image=IMAGE_KEY, instruction=INSTRUCTION_KEY, action_tokens=ACTION_TOKENS_KEY
        )
    with pytest.raises(ValueError, match="accepted"):
        actor.set_keys(pixels="x")


def test_torchrl_clip_ppo_loss_on_our_actor_and_critic_equals_vla_ppo_loss(bundle):
    """ClipPPOLoss(actor, SharedValueNetwork) with set_keys(action=ACTION_TOKENS_KEY) and
    functional=False: the same loss terms as VLAPPOLoss (value loss with Huber width 1 =
    TorchRL's smooth_l1) within 1e-6, and the same gradients."""
    td = bundle.actor(_obs(8))
    g = torch.Generator().manual_seed(2)
    td.set(ACTION_LOG_PROB_KEY, td[ACTION_LOG_PROB_KEY] + 0.3 * torch.randn(8, generator=g))
    td.set(ADVANTAGE_KEY, torch.randn(8, 1, generator=g))
    td.set(VALUE_KEY, td[VALUE_KEY] + 0.4 * torch.randn(8, 1, generator=g))
    td.set(VALUE_TARGET_KEY, td[VALUE_KEY] + torch.randn(8, 1, generator=g))
    critic = SharedValueNetwork(bundle.model, bundle.processor, bundle.critic)
    theirs = ClipPPOLoss(
        bundle.actor,
        critic,
        clip_epsilon=0.2,
        entropy_coeff=0.01,
        critic_coeff=1.0,
        loss_critic_type="smooth_l1",
        clip_value=0.2,
        normalize_advantage=True,
        functional=False,
    )
    theirs.set_keys(action=ACTION_TOKENS_KEY, sample_log_prob=ACTION_LOG_PROB_KEY)
    ours = VLAPPOLoss(
        bundle.evaluator, clip_value=0.2, huber_delta=1.0, entropy_coeff=0.01, critic_coeff=1.0
    )
    a, b = theirs(td.clone()), ours(td.clone())
    for key in ("loss_objective", "loss_critic", "loss_entropy", "entropy", "clip_fraction"):
        torch.testing.assert_close(
            a[key].reshape(()).detach(), b[key].detach(), atol=1e-6, rtol=0, msg=key
        )
    assert 0 < float(b["clip_fraction"]) < 1
    params = [p for p in bundle.model.parameters() if p.requires_grad][-4:]
    params += list(bundle.critic.parameters())[-2:]
    total = lambda out: sum(v for k, v in out.items() if k.startswith("loss_"))  # noqa: E731
    ga = torch.autograd.grad(total(a), params, allow_unused=True)
    gb = torch.autograd.grad(total(b), params, allow_unused=True)
    for x, y in zip(ga, gb, strict=True):
        if x is None or y is None:
            assert x is None and y is None
            continue
        torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-5)


def test_image_convention_errors_name_the_key_and_shape(bundle):
    actor = bundle.eval_actor(mode="greedy")
    td = _obs(2)
    missing = td.clone().rename_key_(IMAGE_KEY, "rgb")
    with pytest.raises(KeyError, match=r"no image at .*set_keys\(image=\.\.\.\)"):
        actor(missing)
    chw = TensorDict({IMAGE_KEY: td[IMAGE_KEY].permute(0, 3, 1, 2).contiguous()}, [2])
    chw[INSTRUCTION_KEY] = td[INSTRUCTION_KEY]
    with pytest.raises(ValueError, match=r"\(2, 3, 32, 32\).*channels first.*PermuteTransform"):
        actor(chw)
    with pytest.raises(ValueError, match="unbatched"):
        actor(td[0])
    no_text = TensorDict({IMAGE_KEY: td[IMAGE_KEY]}, [2])
    with pytest.raises(KeyError, match="no instruction at"):
        actor(no_text)


def _plain_gae(values, next_values, rewards, dones, terminated, gamma, lmbda):
    """GAE (Eq. 2) by a backward loop over one env's steps: bootstrap with V(s_{t+1}) unless
    terminated, cut the recursion at every done."""
    adv = torch.zeros_like(rewards)
    running = 0.0
    for t in reversed(range(len(rewards))):
        if dones[t]:
            running = 0.0
        bootstrap = 0.0 if terminated[t] else gamma * next_values[t]
        delta = rewards[t] + bootstrap - values[t]
        running = delta + gamma * lmbda * running
        adv[t] = running
    return adv


def test_torchrl_gae_on_our_value_network_equals_a_plain_loop(bundle):
    """TorchRL's GAE with SharedValueNetwork reading InstructionBytes (deactivate_vmap=True):
    the advantages of a plain loop over the critic's own values, with truncations (step limit
    4) and hand-set terminations in the rollout; under vmap the error names the fix."""
    env = TransformedEnv(make_toy_env(3, seed=0, max_steps=4), InstructionBytes())
    torch.manual_seed(3)
    with torch.no_grad():
        rollout = env.rollout(7, bundle.actor, break_when_any_done=False)
    env.close()
    terminated = torch.zeros(3, 7, 1, dtype=torch.bool)
    terminated[0, 1] = terminated[2, 5] = True  # a success ends these episodes early
    rollout["next", "terminated"] = terminated
    rollout["next", "done"] = rollout["next", "done"] | terminated
    rollout["next", "reward"] = torch.randn(3, 7, 1, generator=torch.Generator().manual_seed(4))
    assert rollout["next", "done"].sum() >= 5  # truncations at the step limit, terminations
    bundle.model.eval()
    critic = SharedValueNetwork(bundle.model, bundle.processor, bundle.critic)
    critic.set_keys(instruction=INSTRUCTION_BYTES_KEY)
    data = rollout.clone().exclude(VALUE_KEY)
    with torch.no_grad():
        GAE(gamma=0.9, lmbda=0.8, value_network=critic, deactivate_vmap=True)(data)
        # the reference values: the same critic on the strings, one observation at a time
        string_critic = SharedValueNetwork(bundle.model, bundle.processor, bundle.critic)
        values = torch.stack([string_critic(rollout[:, t].clone())[VALUE_KEY] for t in range(7)], 1)
        next_values = torch.stack(
            [string_critic(rollout["next"][:, t].clone())[VALUE_KEY] for t in range(7)], 1
        )
    torch.testing.assert_close(data[VALUE_KEY], values, atol=1e-6, rtol=0)
    for e in range(3):
        expected = _plain_gae(
            values[e, :, 0],
            next_values[e, :, 0],
            rollout["next", "reward"][e, :, 0],
            rollout["next", "done"][e, :, 0],
            rollout["next", "terminated"][e, :, 0],
            gamma=0.9,
            lmbda=0.8,
        )
        torch.testing.assert_close(data[ADVANTAGE_KEY][e, :, 0], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(data[VALUE_TARGET_KEY], data[ADVANTAGE_KEY] + values)
    with pytest.raises(RuntimeError, match="deactivate_vmap=True"):
        GAE(gamma=0.9, lmbda=0.8, value_network=critic)(rollout.clone().exclude(VALUE_KEY))
