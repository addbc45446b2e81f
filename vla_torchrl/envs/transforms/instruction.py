"""Unseen Instruction Phrasing: rewrite the training instruction with an episode-wise template.

Paper, Appendix A.4: "a language instruction template from the 16 unseen language templates is
chosen at the start of each episode, replacing the default language template ("put $O$ on
$R$")". The templates are in :mod:`vla_torchrl.envs.instruction_templates`.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey
from torchrl.data import Composite
from torchrl.envs.transforms import Transform

from vla_torchrl.envs.transforms._common import (
    draw_per_episode,
    not_for_stored_data,
    read_strings,
    reset_mask,
    write_strings,
)
from vla_torchrl.keys import INSTRUCTION_KEY

__all__ = ["InstructionRephrase", "parse_instruction"]

_FIELDS = ("object", "receptacle")


def _fields(template: str, name: str) -> list[str]:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as err:
        raise ValueError(f"{name}={template!r} is not a valid format string: {err}") from None
    unknown = [f for f in fields if f not in _FIELDS]
    if unknown:
        raise ValueError(
            f"{name}={template!r} uses the fields {unknown}; only {{object}} and {{receptacle}} "
            "are filled in"
        )
    return fields


def _template_regex(template: str) -> re.Pattern:
    fields = _fields(template, "train_template")
    if sorted(fields) != sorted(_FIELDS):
        raise ValueError(
            f"train_template={template!r} should contain {{object}} and {{receptacle}} once each, "
            f"it contains {fields}"
        )
    parts = []
    for literal, field, _, _ in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if field is not None:
            # non-greedy: an ambiguous split gives the shortest object name
            parts.append(f"(?P<{field}>.+?)")
    return re.compile("".join(parts), flags=re.DOTALL)


def parse_instruction(instruction: str, train_template: str) -> dict[str, str]:
    """The object and receptacle names of an instruction written with ``train_template``.

    Args:
        instruction: e.g. ``"put carrot on plate"``.
        train_template: e.g. ``"put {object} on {receptacle}"``.

    Returns:
        ``{"object": ..., "receptacle": ...}``.

    Raises:
        ValueError: when the instruction does not match the template.

    Examples:
        >>> parse_instruction("put carrot on yellow plate", "put {object} on {receptacle}")
        {'object': 'carrot', 'receptacle': 'yellow plate'}
    """
    match = _template_regex(train_template).fullmatch(instruction)
    if match is None:
        raise ValueError(
            f"instruction {instruction!r} does not match the training template "
            f"{train_template!r}; pass the template the env writes as train_template="
        )
    return match.groupdict()


class InstructionRephrase(Transform):
    """Rephrase the env's instruction with a template drawn once per episode.

    At each reset every reset env draws one of ``templates``; at that reset and at every step
    of the episode, the object and receptacle names are parsed out of the env's instruction
    (written with ``train_template``) and put into the drawn template. Partial resets change
    only the reset envs' templates. With a ``seed``, the same sequence of calls gives the same
    templates. :attr:`template_index` (``[num_envs]``) tells which template each env uses.

    Args:
        templates: format strings with ``{object}`` and/or ``{receptacle}``, e.g.
            :data:`~vla_torchrl.envs.instruction_templates.UNSEEN_INSTRUCTION_TEMPLATES`.
        train_template: the template the env's instructions follow (the paper's "put $O$ on
            $R$").
        instruction_key: the instruction entry (one string per env).
        seed: seed of the transform's generator; ``None`` draws one from the OS.

    Examples:
        >>> from tensordict import NonTensorStack, TensorDict
        >>> from vla_torchrl.keys import INSTRUCTION_KEY
        >>> rephrase = InstructionRephrase(["Can you put {object} on {receptacle}?"], seed=0)
        >>> td = TensorDict({INSTRUCTION_KEY: NonTensorStack("put carrot on plate")}, [1])
        >>> rephrase._reset(TensorDict({}, [1]), td).get(INSTRUCTION_KEY).tolist()
        ['Can you put carrot on plate?']
    """

    def __init__(
        self,
        templates: Sequence[str],
        *,
        train_template: str = "put {object} on {receptacle}",
        instruction_key: NestedKey = INSTRUCTION_KEY,
        seed: int | None = None,
    ) -> None:
        if isinstance(templates, str):
            raise TypeError("templates should be a sequence of strings, got a single string")
        templates = tuple(templates)
        if not templates:
            raise ValueError("templates is empty; pass at least one template")
        for i, template in enumerate(templates):
            if not isinstance(template, str):
                raise TypeError(f"templates[{i}] is a {type(template).__name__}, expected str")
            _fields(template, f"templates[{i}]")
        self._regex = _template_regex(train_template)
        self._template_regexes = [_template_regex(t) for t in templates]
        super().__init__(in_keys=[instruction_key], out_keys=[instruction_key])
        self.templates = templates
        self.train_template = train_template
        self.instruction_key = instruction_key
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))
        self.template_index: torch.Tensor | None = None

    def _rephrase(self, tensordict: TensorDictBase, apply: torch.Tensor | None = None) -> None:
        strings, batch = read_strings(tensordict, self.instruction_key)
        if self.template_index is None or self.template_index.numel() != len(strings):
            raise RuntimeError(
                f"{type(self).__name__} has no template for {len(strings)} envs; reset the env "
                "before stepping it (templates are drawn at reset)"
            )
        out = list(strings)
        for i, instruction in enumerate(strings):
            if apply is not None and not apply[i]:
                continue
            match = self._regex.fullmatch(instruction)
            if match is None and self._template_regexes[int(self.template_index[i])].fullmatch(
                instruction
            ):
                # already this env's rephrasing: a ParallelEnv's partial step (the other envs
                # still running) hands back a finished env's last, transformed, entries
                continue
            if match is None:
                raise ValueError(
                    f"instruction {instruction!r} (env {i}) does not match the training template "
                    f"{self.train_template!r}; pass the template the env writes as train_template="
                )
            out[i] = self.templates[int(self.template_index[i])].format(**match.groupdict())
        write_strings(tensordict, self.instruction_key, out)

    def _reset(
        self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase
    ) -> TensorDictBase:
        num_envs = math.prod(tensordict_reset.batch_size)
        mask = reset_mask(self, tensordict, num_envs)
        self.template_index = draw_per_episode(
            self.template_index, mask, len(self.templates), self.generator
        )
        self._rephrase(tensordict_reset, apply=mask)
        return tensordict_reset

    def _call(self, next_tensordict: TensorDictBase) -> TensorDictBase:
        self._rephrase(next_tensordict)
        return next_tensordict

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        raise not_for_stored_data(self)

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        if self.instruction_key not in observation_spec.keys(True, True):
            raise KeyError(
                f"{type(self).__name__}: the env's observation spec has no {self.instruction_key!r}"
            )
        return observation_spec

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_templates={len(self.templates)}, "
            f"train_template={self.train_template!r})"
        )
