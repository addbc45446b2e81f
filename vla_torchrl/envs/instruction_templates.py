"""The 16 unseen instruction templates of the paper (Appendix A.4, *Unseen Instruction Phrasing*).

Copied verbatim from the paper, punctuation, capitalisation and the curly apostrophe of "it’s"
included; ``$O$`` / ``$R$`` (object / receptacle names) are written ``{object}`` /
``{receptacle}``. The training template ("put $O$ on $R$") lives in
``vla_torchrl.envs.instructions``.

Examples:
    >>> len(UNSEEN_INSTRUCTION_TEMPLATES)
    16
    >>> UNSEEN_INSTRUCTION_TEMPLATES[0].format(object="carrot", receptacle="plate")
    'Place the carrot on the plate'
"""

from __future__ import annotations

__all__ = ["UNSEEN_INSTRUCTION_TEMPLATES"]

UNSEEN_INSTRUCTION_TEMPLATES: tuple[str, ...] = (
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
    "Move {object} so it\u2019s on {receptacle}.",
    "Can you put {object} on {receptacle}?",
    "{object} on the {receptacle}, please.",
    "the {object} should be placed on the {receptacle}.",
)
